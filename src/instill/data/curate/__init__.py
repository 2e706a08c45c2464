"""Curation between reading and rendering: dedup, quality filters, decontamination, mixing.

`curate(per_source, cfg, eval_prompts=...)` (stage.py) runs the enabled steps in order (exact
dedup -> near dedup -> filters -> decontamination) over validated conversations and returns the
kept rows, one `Removal` record per removed row and the counts of every step; `report.py` writes
them (`removed.jsonl`, `report.json`, `report.md`, `report.html`). `instill prepare` and
`instill train` run it under `data.curate:` (default: exact dedup only), `instill curate` runs
it alone. The modules: `text.py` (views and normalisation), `dedup.py` (exact and MinHash LSH),
`filters.py`, `decontaminate.py` (eval prompts arrive as plain text: this layer never imports
evaluation), `mix.py` (weights and caps), `distributed.py` (the MinHash steps as Arrow batch
functions for Ray Data / Spark / `datasets`).
"""

from instill.data.curate.decontaminate import EvalPrompt
from instill.data.curate.stage import CurationResult, Removal, curate

__all__ = ["CurationResult", "EvalPrompt", "Removal", "curate"]
