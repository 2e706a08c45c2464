"""`instill quickstart`: the whole point in one command, on the embedded default model.

1. Build the built-in instruction suite (seeded) and export it to `<output_dir>/suite/`.
2. Evaluate the *base* model zero-shot on the three evaluation splits (held-out families,
   held-out phrasings, format compliance).
3. LoRA-tune it on the training split (response-masked, the configured template).
4. Evaluate the tuned model on the very same prompts.
5. Report base vs tuned per split and per family, the share of answers that stop at the
   end-of-turn token, and a few side-by-side answers; `<output_dir>/report/` keeps report.json,
   report.md, chart.png, report.html and every answer.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from urllib.parse import parse_qs

from instill.config import Config
from instill.errors import InstillError


def suite_params(config: Config) -> dict:
    """Seed and rows per family of the config's `builtin:train` source."""
    data = config.require_data("quickstart")
    specs = [s.path for s in data.sources if s.path.startswith("builtin:train")]
    if not specs:
        raise InstillError(
            "instill quickstart trains on the built-in suite: data.sources must include "
            "`builtin:train` (e.g. path: builtin:train?per_family=30)"
        )
    query = parse_qs(specs[0].partition("?")[2])
    return {
        # The `builtin:` source's own default (0), so the exported eval suite is the one the
        # training rows came from whatever the run's seed is.
        "seed": int(query.get("seed", [0])[-1]),
        "train_per_family": int(query.get("per_family", [80])[-1]),
    }


def run_quickstart(config: Config, log=print) -> dict:
    """Run the five steps above; returns the comparison (also in report/report.json)."""
    from instill.data.builtin.suite import build_suite, export_suite
    from instill.eval.builtin_tasks import suite_tasks
    from instill.eval.runner import compare, evaluate, write_report
    from instill.generate.engine import SamplingConfig
    from instill.models.bundle import load_bundle
    from instill.train.loop import train

    started = time.perf_counter()
    out = Path(config.output_dir)
    params = suite_params(config)
    suite = build_suite(eval_per_family=config.quickstart.eval_per_family, **params)
    export_suite(suite, out / "suite")
    counts = suite.counts()
    log(
        f"built-in suite: {counts['train']} training rows; evaluation prompts: "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "train")
    )
    tasks = suite_tasks(suite)
    ev = config.eval
    sampling = SamplingConfig(
        ev.max_new_tokens, ev.do_sample, ev.temperature, ev.top_p, ev.seed, ev.batch_size
    )
    for task in tasks:
        task.max_new_tokens = ev.max_new_tokens
    data = config.require_data("quickstart")

    log(f"[1/3] evaluating the base model {config.model.path}")
    base = load_bundle(config.model.path, name="base", template=data.template)
    records = evaluate(base, tasks, sampling, bar=True)
    del base
    gc.collect()

    log("[2/3] tuning")
    result = train(config)
    curation = json.loads((out / "stats.json").read_text()).get("curation")
    log(curation_line(curation))

    log("[3/3] evaluating the tuned model")
    tuned = load_bundle(str(result.final_dir), name="tuned")
    records += evaluate(tuned, tasks, sampling, bar=True)
    del tuned
    gc.collect()

    comparison = compare(
        records,
        ["base", "tuned"],
        ev.bootstrap_samples,
        ev.seed,
        examples_per_task=config.quickstart.examples,
    )
    comparison["prompts"] = {k: v for k, v in counts.items() if k != "train"}
    comparison["training_rows"] = counts["train"]
    comparison["seconds"] = round(time.perf_counter() - started, 1)
    comparison["curation"] = curation
    paths = write_report(out / "report", records, comparison)
    comparison["paths"] = {k: str(v) for k, v in paths.items()}
    keys = ("prompts", "training_rows", "seconds", "curation")
    (out / "report" / "quickstart.json").write_text(
        json.dumps({k: comparison[k] for k in keys}, indent=2)
    )
    return comparison


def curation_line(curation: dict | None) -> str:
    """What curation did to the training split: rows removed and the decontamination verdict."""
    if not curation:
        return "curation: off"
    removed = curation["removed_by_step"]
    dc = curation.get("decontaminate")
    text = (
        f"curation of the training split: {curation['funnel']['valid']} rows, "
        f"{removed['exact_dedup']} exact duplicates removed"
    )
    if dc:
        text += (
            f"; decontaminated against {dc['prompts']} prompts of the evaluation splits "
            f"({dc['ngram']}-grams, a row is removed when it holds >= {dc['min_score']:.0%} of "
            f"a prompt's n-grams): {removed['decontaminate']} rows removed"
        )
        if removed["decontaminate"] == 0:
            text += " (the splits are disjoint by construction)"
        if dc["kept_below_min_score"]:
            text += (
                f"; {dc['kept_below_min_score']} rows share some context n-grams with an eval "
                f"prompt (at most {dc['max_score_kept']:.0%} of it) and are kept"
            )
    return text + f"; report: {curation['report']}"
