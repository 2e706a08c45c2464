"""`instill prepare`: raw files -> validated conversations -> masked tokens -> packed rows on disk.

Stages are plain functions over plain data, so each can be tested alone:
`read_conversations` (formats + validation + mixing), `encode_conversations` (render, mask,
truncate; multi-process for large inputs), `pack_examples` (packing.py), and `write_prepared`.
Nothing is dropped silently: every row that does not reach the output is counted by reason in
`stats.json` and written with its reason to `rejected.jsonl`.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instill.config import Config, DataConfig, SourceConfig
from instill.data.conversation import Conversation
from instill.data.formats import RowFormat, detect_format, get_format, parse_row
from instill.data.masking import Renderer, TokenizedExample
from instill.data.packing import pack_examples
from instill.data.sources import RawRow, read_source
from instill.data.templates import chat_template_source, get_template, prepare_tokenizer
from instill.errors import RowError, TemplateError

CHUNK = 256
PARALLEL_MIN_ROWS = 4000  # below this, starting workers costs more than it saves


@dataclass
class Rejected:
    """A row that did not make it into the output, with why."""

    location: str
    reason: str
    message: str
    field: str | None = None
    row: Any = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "location": self.location,
                "reason": self.reason,
                "field": self.field,
                "message": self.message,
                "row": self.row,
            },
            ensure_ascii=False,
            default=str,
        )


@dataclass
class SourceStats:
    name: str
    weight: float
    files: int = 0
    rows_read: int = 0
    rows_valid: int = 0
    rows_after_mixing: int = 0


@dataclass
class ReadResult:
    conversations: list[Conversation]
    rejected: list[Rejected] = field(default_factory=list)
    sources: list[SourceStats] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def read_conversations(
    data: DataConfig, seed: int = 0, require_response: bool = True
) -> ReadResult:
    """Read and validate every source, then apply the mixing weights.

    Raises:
        RowError: on the first bad row when `data.on_bad_row` is `error`.
    """
    result = ReadResult([])
    for k, src in enumerate(data.sources):
        stats = SourceStats(src.label, src.weight)
        convs: list[Conversation] = []
        for _file, rows in read_source(src.path, src.file_type, src.split):
            stats.files += 1
            for item in _parse_rows(rows, src):
                stats.rows_read += 1
                if isinstance(item, RowError):
                    if data.on_bad_row == "error":
                        raise _with_hint(item)
                    result.rejected.append(
                        Rejected(
                            item.location,
                            item.reason,
                            item.message,
                            item.field,
                            getattr(item, "row", None),
                        )
                    )
                    continue
                convs.append(item)
        stats.rows_valid = len(convs)
        mixed = apply_weight(convs, src.weight, random.Random(seed * 1000 + k))
        stats.rows_after_mixing = len(mixed)
        result.conversations += mixed
        result.sources.append(stats)
    return result


def _with_hint(err: RowError) -> RowError:
    err.args = (
        f"{err.args[0]}\n(set data.on_bad_row=skip to skip bad rows; they are counted "
        "and written to rejected.jsonl)",
    )
    return err


def _parse_rows(
    rows: Iterator[RawRow | RowError], src: SourceConfig
) -> Iterator[Conversation | RowError]:
    fmt: RowFormat | None = None if src.format == "auto" else get_format(src.format)
    for raw in rows:
        if isinstance(raw, RowError):
            yield raw
            continue
        if fmt is None:
            from instill.data.formats import apply_columns

            try:
                fmt = detect_format(
                    apply_columns(raw.data, src.columns, raw.location), raw.location
                )
            except RowError as e:
                e.row = raw.data
                yield e
                continue
        try:
            yield parse_row(raw.data, raw.location, fmt, src.columns, src.roles)
        except RowError as e:
            e.row = raw.data
            yield e


def apply_weight(
    convs: list[Conversation], weight: float, rng: random.Random
) -> list[Conversation]:
    """Repeat each row `floor(weight)` times and add a seeded sample for the fraction.

    Rows stay in source order (repeats adjacent), so the output is deterministic; training
    shuffles per epoch.
    """
    whole = math.floor(weight)
    frac = weight - whole
    extra = set(rng.sample(range(len(convs)), round(frac * len(convs)))) if frac else set()
    out = []
    for i, c in enumerate(convs):
        out += [c] * (whole + (1 if i in extra else 0))
    return out


# --------------------------------------------------------------------------- encoding

_WORKER: dict[str, Any] = {}


def _encode_chunk(args: tuple[Sequence[Conversation], int, str]) -> list:
    convs, max_length, policy = args
    renderer: Renderer = _WORKER["renderer"]
    failed: dict[int, TemplateError] = {}
    encoded = renderer.encode_many(convs, on_error=failed.__setitem__)
    result: list = []
    for i, c in enumerate(convs):
        if i in failed:
            result.append(Rejected(c.source, "template_error", str(failed[i]), row=c.to_dict()))
            continue
        ex = renderer.fit(c, encoded[i], max_length, policy)
        if ex is None:
            result.append(
                Rejected(
                    c.source,
                    "too_long",
                    f"longer than data.max_length={max_length} tokens and "
                    "data.truncation is drop_row",
                    row=c.to_dict(),
                )
            )
        elif ex.supervised_tokens == 0:
            why = (
                "truncation removed every response token"
                if ex.truncated
                else "no assistant turn is trained (train: false / masking strategy)"
            )
            result.append(
                Rejected(
                    c.source,
                    "no_supervised_tokens",
                    f"no token would be trained: {why}",
                    row=c.to_dict(),
                )
            )
        else:
            ex.pieces = []
            result.append(ex)
    return result


def encode_conversations(
    renderer: Renderer,
    convs: Sequence[Conversation],
    max_length: int,
    policy: str,
    num_proc: int = 0,
    progress=None,
) -> list[TokenizedExample | Rejected]:
    """Render, mask and truncate every conversation, in input order.

    Args:
        num_proc: worker processes; 0 uses every core for large inputs and 1 otherwise.
        progress: optional callable advanced by the number of rows done.
    """
    if num_proc == 0:
        num_proc = (os.cpu_count() or 1) if len(convs) >= PARALLEL_MIN_ROWS else 1
    chunks = [(convs[i : i + CHUNK], max_length, policy) for i in range(0, len(convs), CHUNK)]
    _WORKER["renderer"] = renderer
    results: list = []
    if num_proc > 1 and "fork" in mp.get_all_start_methods() and len(chunks) > 1:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        with mp.get_context("fork").Pool(num_proc) as pool:
            for part in pool.imap(_encode_chunk, chunks):
                results += part
                if progress:
                    progress(len(part))
    else:
        for chunk in chunks:
            part = _encode_chunk(chunk)
            results += part
            if progress:
                progress(len(part))
    return results


# --------------------------------------------------------------------------- the whole stage


@dataclass
class Prepared:
    """What `prepare` produced."""

    output_dir: Path
    stats: dict
    examples: list[TokenizedExample]
    rejected: list[Rejected]
    renderer: Renderer


def build_renderer(config: Config, tokenizer=None) -> tuple[Renderer, list[str]]:
    """Load the tokenizer, build the template, add missing special tokens."""
    if tokenizer is None:
        from instill.models.tokenizer_loading import load_tokenizer

        tokenizer = load_tokenizer(
            config.model.tokenizer or config.model.path,
            trust_remote_code=config.model.trust_remote_code,
        )
    template = get_template(config.data.template, tokenizer, config.data.end_of_turn)
    added = prepare_tokenizer(tokenizer, template)
    # The saved tokenizer renders prompts exactly as training did, whatever serves the model.
    tokenizer.chat_template = chat_template_source(template)
    return Renderer(tokenizer, template, config.data.masking), added


def prepare(config: Config, tokenizer=None, progress: bool = True) -> Prepared:
    """Run the whole data stage and write `<output_dir>/prepared/` plus its reports."""
    data = config.data
    renderer, added = build_renderer(config, tokenizer)
    t0 = time.perf_counter()  # the pipeline's own time, without loading the tokenizer
    read = read_conversations(data, config.seed)
    convs = read.conversations
    with _progress(progress, len(convs)) as advance:
        results = encode_conversations(
            renderer, convs, data.max_length, data.truncation, data.num_proc, advance
        )
    examples = [r for r in results if isinstance(r, TokenizedExample)]
    rejected = read.rejected + [r for r in results if isinstance(r, Rejected)]
    out = Path(config.output_dir)
    rows = pack_examples(examples, data.max_length) if data.packing else None
    stats = compute_stats(read, examples, rejected, rows, renderer, added, data)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    stats["rows_per_second"] = round(stats["rows_read"] / max(stats["seconds"], 1e-9), 1)
    write_prepared(out, config, examples, rows, rejected, stats, renderer)
    return Prepared(out, stats, examples, rejected, renderer)


class _progress:
    """A rich progress bar when asked for and the input is large enough to need one."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and total >= 2000
        self.total = total

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import Progress

        self._p = Progress(transient=True)
        self._p.__enter__()
        task = self._p.add_task("render + mask", total=self.total)
        return lambda n: self._p.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._p.__exit__(*exc)


def compute_stats(
    read: ReadResult,
    examples: list[TokenizedExample],
    rejected: list[Rejected],
    rows,
    renderer: Renderer,
    added: list[str],
    data: DataConfig,
) -> dict:
    lengths = sorted(len(e.input_ids) for e in examples)
    supervised = sum(e.supervised_tokens for e in examples)
    total = sum(lengths)

    def pct(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))] if lengths else 0

    stats: dict = {
        "rows_read": sum(s.rows_read for s in read.sources),
        "rows_valid": sum(s.rows_valid for s in read.sources),
        "rows_after_mixing": len(read.conversations),
        "rows_kept": len(examples),
        "rows_rejected": len(rejected),
        "rejected_by_reason": dict(Counter(r.reason for r in rejected).most_common()),
        "sources": [vars(s) for s in read.sources],
        "tokens_total": total,
        "tokens_supervised": supervised,
        "supervised_fraction": round(supervised / total, 4) if total else 0.0,
        "length": {
            "min": lengths[0] if lengths else 0,
            "p50": pct(0.5),
            "p90": pct(0.9),
            "p99": pct(0.99),
            "max": lengths[-1] if lengths else 0,
            "mean": round(total / len(lengths), 1) if lengths else 0.0,
        },
        "truncated_rows": sum(e.truncated for e in examples),
        "rows_with_dropped_turns": sum(1 for e in examples if e.dropped_turns),
        "zero_supervision_rows": sum(r.reason == "no_supervised_tokens" for r in rejected),
        "template": renderer.template.name,
        "end_of_turn": renderer.template.end_of_turn,
        "masking": renderer.strategy,
        "added_tokens": added,
        "max_length": data.max_length,
        "packing": None,
    }
    if rows is not None:
        stats["packing"] = {
            "rows": len(rows),
            "fill": round(total / (len(rows) * data.max_length), 4) if rows else 0.0,
        }
    return stats


def write_prepared(
    out: Path,
    config: Config,
    examples: list[TokenizedExample],
    rows,
    rejected: list[Rejected],
    stats: dict,
    renderer: Renderer,
) -> None:
    """Write the dataset, tokenizer, stats, rejected rows and resolved config."""
    import datasets

    out.mkdir(parents=True, exist_ok=True)
    ints = datasets.Sequence(datasets.Value("int32"))
    if rows is not None:
        table = {
            "input_ids": [r.input_ids for r in rows],
            "labels": [r.labels for r in rows],
            "position_ids": [r.position_ids for r in rows],
            "row_ids": [r.sources for r in rows],
        }
        features = datasets.Features(
            {
                "input_ids": ints,
                "labels": ints,
                "position_ids": ints,
                "row_ids": datasets.Sequence(datasets.Value("string")),
            }
        )
    else:
        table = {
            "input_ids": [e.input_ids for e in examples],
            "labels": [e.labels for e in examples],
            "row_id": [e.source for e in examples],
        }
        features = datasets.Features(
            {"input_ids": ints, "labels": ints, "row_id": datasets.Value("string")}
        )
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict(table, features=features)
    target = out / "prepared"
    tmp = out / "prepared.tmp"
    _rmtree(tmp)
    ds.save_to_disk(str(tmp))
    _rmtree(target)
    tmp.rename(target)
    renderer.tokenizer.save_pretrained(str(out / "tokenizer"))
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    with (out / "rejected.jsonl").open("w") as f:
        for r in rejected:
            f.write(r.to_json() + "\n")
    config.save(out)


def _rmtree(p: Path) -> None:
    import shutil

    if p.exists():
        shutil.rmtree(p)
