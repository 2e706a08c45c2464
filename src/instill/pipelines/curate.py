"""`instill curate CONFIG`: curation alone, from the config's sources to curated rows + a report.

1. Read and validate every source of `data.sources` (as `instill prepare` does; with
   `data.on_bad_row: skip` invalid rows are counted and listed, at the `valid` step).
2. Gather the prompts of every eval task the config names (`instill.eval.prompts`) when
   `data.curate.decontaminate` is on.
3. Run the enabled steps of `data.curate` (`instill.data.curate.curate`).
4. Mix: each source's `weight`, then its `max_examples` cap.
5. Write `<report dir>/curated.jsonl` (the mixture, in the OpenAI messages format, each row with
   the `source` it came from), `removed.jsonl`, `report.json`, `report.md`, `report.html` and
   `timings.json`; the report dir is `data.curate.output_dir`, default `<output_dir>/curation`.

`curated.jsonl` trains as it is (`path: <report dir>/curated.jsonl`); it is already curated,
so the curation of that run finds nothing more unless its settings differ.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from instill.atomic import atomic_file
from instill.config import Config
from instill.data.conversation import Conversation
from instill.data.curate import CurationResult, Removal, curate
from instill.data.curate.mix import composition, mix_source
from instill.data.curate.report import write_report
from instill.data.prepare import read_conversations


@dataclass
class CurateRun:
    """What `run_curate` produced."""

    result: CurationResult
    mixture: list[Conversation]
    paths: dict[str, Path]


def curated_row(conv: Conversation) -> dict:
    """A kept row in the OpenAI messages format (an input is part of its user turn)."""
    if conv.is_text:
        return {"text": conv.text, "source": conv.source}
    messages = []
    for m in conv.messages:
        item: dict = {"role": m.role, "content": m.text_for_chat()}
        if m.train is not None:
            item["train"] = m.train
        messages.append(item)
    return {"messages": messages, "source": conv.source}


def run_curate(config: Config, log=print, progress: bool = True) -> CurateRun:
    """Run the steps above; returns the curation result, the mixture and the files written."""
    data = config.require_data("curate")
    out = Path(data.curate.output_dir or Path(config.output_dir) / "curation")
    read = read_conversations(data, exclude=out)
    names = [s.name for s in read.sources]
    prompts = None
    if data.curate.decontaminate.enabled:
        from instill.eval.prompts import eval_prompts_for

        prompts = eval_prompts_for(config)
        tasks = Counter(p.task for p in prompts)
        log(
            f"decontaminating against {len(prompts)} eval prompts: "
            + ", ".join(f"{t} ({n})" for t, n in tasks.items())
        )
    count_tokens = None
    if data.curate.filters.length_unit == "tokenizer":
        from instill.models.tokenizer_loading import load_tokenizer_for

        tokenizer = load_tokenizer_for(config)

        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    result = curate(
        read.per_source,
        data.curate,
        source_names=names,
        rows_read=[s.rows_read for s in read.sources],
        eval_prompts=prompts,
        count_tokens=count_tokens,
        progress=progress,
    )
    add_invalid_rows(result, read.rejected, names, read)
    mixture: list[Conversation] = []
    counts = []
    for k, (src, kept) in enumerate(zip(data.sources, result.per_source, strict=True)):
        mixed = mix_source(
            kept, src.weight, src.max_examples, random.Random(config.seed * 1000 + k)
        )
        counts.append(len(mixed))
        mixture += mixed
    result.stats["mixture"] = composition(
        names,
        [len(k) for k in result.per_source],
        [s.weight for s in data.sources],
        [s.max_examples for s in data.sources],
        counts,
    )
    paths = write_report(out, result)
    paths["curated"] = out / "curated.jsonl"
    with atomic_file(paths["curated"]) as tmp, tmp.open("w", encoding="utf-8") as f:
        for conv in mixture:
            f.write(json.dumps(curated_row(conv), ensure_ascii=False) + "\n")
    config.save(out)
    return CurateRun(result, mixture, paths)


def add_invalid_rows(result: CurationResult, rejected, names: list[str], read) -> None:
    """List the rows that failed validation (with `on_bad_row: skip`) at the `valid` step."""
    if not rejected:
        result.stats["removed_by_step"] = {"valid": 0, **result.stats["removed_by_step"]}
        return
    # Which source a rejected row came from: sources are read in order, each row once.
    bounds, total = [], 0
    for s in read.sources:
        total += s.rows_read - s.rows_valid
        bounds.append(total)
    records = []
    for k, r in enumerate(rejected):
        source = names[next(i for i, b in enumerate(bounds) if k < b)]
        row = r.row if r.row is not None else {"raw": r.raw}
        message = r.message + (f" (field {r.field})" if r.field else "")
        records.append(Removal(r.location, source, "valid", r.reason, message, row))
    result.removed[:0] = records
    by_reason = Counter(r.reason for r in result.removed)
    result.stats["removed_by_step"] = {"valid": len(records), **result.stats["removed_by_step"]}
    result.stats["removed_by_reason"] = dict(
        sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    )
