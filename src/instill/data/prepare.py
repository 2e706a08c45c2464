"""`instill prepare`: raw files -> validated conversations -> masked tokens -> packed rows on disk.

Stages are plain functions over plain data, so each can be tested alone: `read_conversations`
(formats + validation), `encode_conversations` (render, mask, truncate; multi-process for large
inputs), `apply_weight` (mixing, on encoded rows so a repeated row is encoded and counted once),
`pack_examples` (packing.py) and `write_prepared`. Nothing is dropped silently: every row that
does not reach the output is counted by reason in `stats.json` and written with its reason to
`rejected.jsonl`, and a source that ends up contributing nothing is an error.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing as mp
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instill.atomic import atomic_directory
from instill.config import Config, DataConfig, SourceConfig
from instill.data.conversation import Conversation
from instill.data.curate import CurationResult, EvalPrompt, curate
from instill.data.curate.mix import composition, mix_source
from instill.data.curate.report import write_report as write_curation_report
from instill.data.formats import RowFormat, get_format, parse_row
from instill.data.masking import Renderer, TokenizedExample
from instill.data.packing import PackedRow, pack_examples
from instill.data.prepared import TokenRows
from instill.data.sources import RawRow, read_source
from instill.data.templates import chat_template_source, get_template, prepare_tokenizer
from instill.errors import InstillError, RowError, TemplateError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CHUNK = 256
PARALLEL_MIN_ROWS = 4000  # below this, starting workers costs more than it saves
SKIP_HINT = (
    "set data.on_bad_row=skip to skip bad rows; they are counted and written to rejected.jsonl"
)


@dataclass
class Rejected:
    """A row that did not make it into the output, with why.

    Its line in rejected.jsonl holds `row`, the row as read, or `raw` instead, the row's text as
    written, for a row that could not be decoded (a line that is not JSON or not UTF-8, a CSV
    record with the wrong number of fields).
    """

    location: str
    reason: str
    message: str
    field: str | None = None
    row: Any = None
    raw: str | None = None

    def to_json(self) -> str:
        d = asdict(self)
        del d["row" if self.raw is not None else "raw"]
        return json.dumps(d, ensure_ascii=False, default=str)


@dataclass
class SourceStats:
    """Per-source counts, reported in stats.json."""

    name: str
    weight: float
    files: int = 0
    rows_read: int = 0
    rows_valid: int = 0
    rows_kept: int = 0
    rows_validation: int = 0
    examples_after_mixing: int = 0


@dataclass
class ReadResult:
    """Valid rows per source (in config order: conversations, or preference pairs), and the rows
    rejected while reading."""

    per_source: list[list[Any]]
    rejected: list[Rejected] = field(default_factory=list)
    sources: list[SourceStats] = field(default_factory=list)

    @property
    def conversations(self) -> list[Conversation]:
        return [c for convs in self.per_source for c in convs]


# --------------------------------------------------------------------------- reading


def read_conversations(data: DataConfig, exclude: Path | None = None) -> ReadResult:
    """Read and validate every source, keeping file order within each source.

    Args:
        data: the data config.
        exclude: a directory whose files are never read as data (the run's output directory).

    Raises:
        RowError: on the first bad row when `data.on_bad_row` is `error`.
        InstillError: for file-level problems and for a source without a single row.
    """
    return read_rows(data, _parse_rows, Conversation, exclude)


def read_rows(
    data: DataConfig,
    parse: Callable[[Iterator[RawRow | RowError], SourceConfig], Iterator[Any]],
    kind: type,
    exclude: Path | None = None,
) -> ReadResult:
    """Read every source with `parse` (one file's raw rows -> `kind` items or `RowError`s).

    The one reading loop of SFT rows (`read_conversations`) and preference pairs
    (`preference.read_pairs`): file order kept, per-source counts, bad rows raised or
    collected as `data.on_bad_row` says.
    """
    result = ReadResult([])
    for src in data.sources:
        stats = SourceStats(src.label, src.weight)
        items: list = []
        for _file, rows in read_source(src.path, src.file_type, src.split, exclude):
            stats.files += 1
            for item in parse(rows, src):
                stats.rows_read += 1
                if isinstance(item, kind):
                    items.append(item)
                elif data.on_bad_row == "error":
                    raise RowError(
                        item.location, item.field, item.reason, f"{item.message}\n({SKIP_HINT})"
                    )
                else:
                    result.rejected.append(
                        Rejected(
                            item.location, item.reason, item.message, item.field, item.row, item.raw
                        )
                    )
        if stats.rows_read == 0:
            raise InstillError(f"source {src.label}: no rows found (empty file or directory)")
        stats.rows_valid = len(items)
        result.per_source.append(items)
        result.sources.append(stats)
    return result


def _parse_rows(
    rows: Iterator[RawRow | RowError], src: SourceConfig
) -> Iterator[Conversation | RowError]:
    """Parse a file's rows; with `format: auto` the first parseable row fixes the format."""
    fmt: RowFormat | None = None if src.format == "auto" else get_format(src.format)
    for raw in rows:
        if isinstance(raw, RowError):
            yield raw
            continue
        try:
            conv, fmt = parse_row(raw.data, raw.location, fmt, src.columns, src.roles)
            yield conv
        except RowError as e:
            e.row = raw.data
            yield e


# --------------------------------------------------------------------------- encoding

_STATE: dict[str, Any] = {}  # per worker process: the renderer and the work list (see _init)


def _init(renderer: Renderer, convs: Sequence[Conversation], max_length: int, policy: str):
    _STATE.update(renderer=renderer, convs=convs, max_length=max_length, policy=policy)


def _encode_range(bounds: tuple[int, int]) -> list[TokenizedExample | Rejected]:
    renderer: Renderer = _STATE["renderer"]
    convs = _STATE["convs"][bounds[0] : bounds[1]]
    max_length, policy = _STATE["max_length"], _STATE["policy"]
    failed: dict[int, TemplateError] = {}
    encoded = renderer.encode_many(convs, on_error=failed.__setitem__)
    result: list[TokenizedExample | Rejected] = []
    for i, c in enumerate(convs):
        example = encoded[i]
        try:
            if example is not None:
                example = renderer.fit(c, example, max_length, policy)
        except TemplateError as e:
            failed[i] = e
        if i in failed:
            result.append(Rejected(c.source, "template_error", str(failed[i]), row=c.to_dict()))
        elif example is None:
            result.append(
                Rejected(
                    c.source,
                    "too_long",
                    f"longer than data.max_length={max_length} tokens and data.truncation is "
                    "drop_row",
                    row=c.to_dict(),
                )
            )
        elif example.supervised_tokens == 0:
            why = (
                "truncation removed every response token"
                if example.truncated
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
            example.pieces = []  # not needed downstream; keeps results small to send back
            result.append(example)
    return result


def usable_cores() -> int:
    """Cores this process may run on (containers can report the host's count otherwise)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def encode_conversations(
    renderer: Renderer,
    convs: Sequence[Conversation],
    max_length: int,
    policy: str,
    num_proc: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[TokenizedExample | Rejected]:
    """Render, mask and truncate every conversation; results are in input order.

    Args:
        renderer: the renderer (tokenizer + template + masking strategy).
        convs: the conversations.
        max_length: the truncation length.
        policy: the truncation policy.
        num_proc: worker processes; 0 uses every core for large inputs and 1 otherwise.
        progress: optional callable advanced by the number of rows done.
    """
    if num_proc == 0:
        num_proc = usable_cores() if len(convs) >= PARALLEL_MIN_ROWS else 1
    ranges = [(i, min(i + CHUNK, len(convs))) for i in range(0, len(convs), CHUNK)]
    results: list[TokenizedExample | Rejected] = []
    if num_proc > 1 and len(ranges) > 1 and "fork" in mp.get_all_start_methods():
        # Forked workers inherit the renderer and the conversations; only index ranges go out
        # and encoded rows come back. The Rust tokenizer's own threads would fight the workers,
        # so they are off in the workers (and on again here afterwards).
        before = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            ctx = mp.get_context("fork")
            with ctx.Pool(num_proc, _init, (renderer, convs, max_length, policy)) as pool:
                for part in pool.imap(_encode_range, ranges):
                    results += part
                    if progress:
                        progress(len(part))
        finally:
            if before is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = before
    else:
        _init(renderer, convs, max_length, policy)
        for bounds in ranges:
            part = _encode_range(bounds)
            results += part
            if progress:
                progress(len(part))
    _STATE.clear()
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
    validation: list[TokenizedExample] = field(default_factory=list)


def build_renderer(
    config: Config, tokenizer: PreTrainedTokenizerBase
) -> tuple[Renderer, list[str]]:
    """Build the template for `tokenizer` and add the special tokens it lacks.

    Args:
        config: the validated config (its `data` section).
        tokenizer: the model's tokenizer, already loaded (the caller loads it, e.g. with
            `instill.models.tokenizer_loading.load_tokenizer_for`: the data layer never loads
            models); it is modified in place.

    Returns:
        The renderer and the tokens that were added to the tokenizer.
    """
    data = config.require_data("prepare")
    template = get_template(data.template, tokenizer, data.end_of_turn)
    added = prepare_tokenizer(tokenizer, template)
    # The saved tokenizer renders prompts exactly as training did, whatever serves the model.
    tokenizer.chat_template = chat_template_source(template)
    return Renderer(tokenizer, template, data.masking), added


def prepare(
    config: Config,
    tokenizer: PreTrainedTokenizerBase,
    progress: bool = True,
    *,
    eval_prompts: Sequence[EvalPrompt] | None = None,
) -> Prepared:
    """Run the whole data stage and write `<output_dir>/prepared/` plus its reports.

    Args:
        config: the validated config.
        tokenizer: the model's tokenizer (it gets modified: template tokens are added); load it
            with `instill.models.tokenizer_loading.load_tokenizer_for(config)`.
        progress: show a progress bar for large inputs.
        eval_prompts: the prompts to decontaminate against when `data.curate.decontaminate` is
            on, as plain text (`instill.eval.prompts.eval_prompts_for(config)` gathers them).

    Raises:
        InstillError: for bad input (see `read_conversations`), a template that cannot mask a
            row exactly (with `on_bad_row: error`), or a source that contributes no example.
    """
    if config.train.objective == "dpo":  # prompt/chosen/rejected rows: see preference.py
        from instill.data.preference import prepare_preferences

        return prepare_preferences(config, tokenizer, progress)
    data = config.require_data("prepare")
    out = Path(config.output_dir)
    renderer, added = build_renderer(config, tokenizer)
    t0 = time.perf_counter()  # the pipeline's own time, without building the renderer
    read = read_conversations(data, exclude=out)
    curated = curate_read(read, data, tokenizer, eval_prompts, progress)
    convs = read.conversations
    # Millions of small lists are created and kept: the cyclic GC would rescan them for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with _progress_bar(progress, len(convs)) as advance:
            results = encode_conversations(
                renderer, convs, data.max_length, data.truncation, data.num_proc, advance
            )
    finally:
        if gc_was_enabled:
            gc.enable()
    rejected = list(read.rejected) + [
        Rejected(r.location, r.reason, r.message, row=r.row) for r in curated.removed
    ]
    mixture: list[int] = []
    examples: list[TokenizedExample] = []
    validation: list[TokenizedExample] = []
    problems: list[str] = []
    start = 0
    for k, (src, stats, src_convs) in enumerate(
        zip(data.sources, read.sources, read.per_source, strict=True)
    ):
        part = results[start : start + len(src_convs)]
        start += len(src_convs)
        if data.on_bad_row == "error":
            for r in part:
                if isinstance(r, Rejected) and r.reason == "template_error":
                    raise TemplateError(f"{r.location}: {r.message}\n({SKIP_HINT})")
        kept = [r for r in part if isinstance(r, TokenizedExample)]
        rejected += [r for r in part if isinstance(r, Rejected)]
        stats.rows_kept = len(kept)
        rng = random.Random(config.seed * 1000 + k)
        if data.val_fraction and kept:
            # Held out before mixing, so no copy of a validation row is trained on.
            held = set(rng.sample(range(len(kept)), round(data.val_fraction * len(kept))))
            validation += [e for i, e in enumerate(kept) if i in held]
            kept = [e for i, e in enumerate(kept) if i not in held]
            stats.rows_validation = len(held)
        mixed = mix_source(kept, src.weight, src.max_examples, rng)
        mixture.append(len(kept))
        stats.examples_after_mixing = len(mixed)
        examples += mixed
        if not kept and stats.rows_validation:
            problems.append(
                f"source {src.label}: data.val_fraction={data.val_fraction} leaves none of its "
                f"{stats.rows_kept} rows for training"
            )
        elif not kept:
            problems.append(
                f"source {src.label}: none of its {stats.rows_read} rows is usable "
                "(see rejected.jsonl for why)"
            )
        elif not mixed:
            problems.append(
                f"source {src.label}: weight {src.weight} keeps 0 of its {len(kept)} rows; "
                "raise the weight or remove the source"
            )
    if data.val_fraction and not validation and not problems:
        problems.append(
            f"data.val_fraction={data.val_fraction} holds out no row of "
            f"{sum(s.rows_kept for s in read.sources)}; raise it or set it to 0"
        )
    rows = pack_examples(examples, data.max_length) if data.packing else None
    stats = compute_stats(read, examples, rejected, rows, renderer, added, data)
    stats["validation_examples"] = len(validation)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    stats["rows_per_second"] = round(stats["rows_read"] / max(stats["seconds"], 1e-9), 1)
    stats["curation"] = curation_summary(curated, data, read, mixture, out)
    write_reports(out, config, rejected, stats)
    if problems:
        raise InstillError("\n".join(problems))
    write_prepared(out, examples, rows, renderer)
    shutil.rmtree(out / "prepared_val", ignore_errors=True)
    if validation:
        val_rows = pack_examples(validation, data.max_length) if data.packing else None
        write_dataset(out / "prepared_val", validation, val_rows)
    return Prepared(out, stats, examples, rejected, renderer, validation)


def curate_read(
    read: ReadResult,
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase | None,
    eval_prompts: Sequence[EvalPrompt] | None,
    progress: bool,
) -> CurationResult:
    """Run `data.curate` over the rows read, in place: `read.per_source` keeps what survives."""
    count_tokens = None
    if tokenizer is not None and data.curate.filters.length_unit == "tokenizer":

        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    result = curate(
        read.per_source,
        data.curate,
        source_names=[s.name for s in read.sources],
        rows_read=[s.rows_read for s in read.sources],
        eval_prompts=eval_prompts,
        count_tokens=count_tokens,
        progress=progress,
    )
    read.per_source = result.per_source
    return result


def curation_summary(
    curated: CurationResult, data: DataConfig, read: ReadResult, kept: list[int], out: Path
) -> dict:
    """Add the mixture to the curation report, write it, and return what stats.json shows."""
    names = [s.name for s in read.sources]
    examples = [s.examples_after_mixing for s in read.sources][: len(kept)]
    if len(kept) == len(data.sources):
        curated.stats["mixture"] = composition(
            names,
            kept,
            [s.weight for s in data.sources],
            [s.max_examples for s in data.sources],
            examples,
        )
    report_dir = Path(data.curate.output_dir) if data.curate.output_dir else out / "curation"
    paths = write_curation_report(report_dir, curated)
    stats = curated.stats
    return {
        "funnel": stats["funnel"]["total"],
        "removed_by_step": stats["removed_by_step"],
        "removed_by_reason": stats["removed_by_reason"],
        "decontaminate": {
            k: stats["decontaminate"][k]
            for k in (
                "prompts",
                "tasks",
                "rows_checked",
                "ngram",
                "min_score",
                "kept_below_min_score",
                "max_score_kept",
            )
        }
        if "decontaminate" in stats
        else None,
        "report": str(paths["md"]),
    }


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[int], None] | None]:
    """Progress (a bar, or plain lines off a terminal) when the input is large enough to need it."""
    if not enabled or total < 2000:
        yield None
        return
    from instill.progress import track

    with track("render + mask", total, unit="rows", transient=True) as tracker:
        yield tracker.advance


def row_and_token_stats(
    read: ReadResult, rejected: list[Rejected], examples: list, sequences: list
) -> dict:
    """The stats.json keys SFT and preference runs share: row counts of `read` and `rejected`,
    and token counts / length percentiles over the tokenized `sequences` as trained."""
    lengths = sorted(len(e.input_ids) for e in sequences)
    supervised = sum(e.supervised_tokens for e in sequences)
    total = sum(lengths)

    def pct(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))] if lengths else 0

    return {
        "rows_read": sum(s.rows_read for s in read.sources),
        "rows_kept": sum(s.rows_kept for s in read.sources),
        "rows_rejected": len(rejected),
        "rejected_by_reason": dict(Counter(r.reason for r in rejected).most_common()),
        "examples": len(examples),
        "sources": [asdict(s) for s in read.sources],
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
    }


def compute_stats(
    read: ReadResult,
    examples: list[TokenizedExample],
    rejected: list[Rejected],
    rows: list[PackedRow] | None,
    renderer: Renderer,
    added: list[str],
    data: DataConfig,
) -> dict:
    """The numbers written to stats.json; token counts are over the examples as trained."""
    stats: dict = {
        **row_and_token_stats(read, rejected, examples, examples),
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
            "fill": round(stats["tokens_total"] / (len(rows) * data.max_length), 4)
            if rows
            else 0.0,
        }
    return stats


def write_reports(out: Path, config: Config, rejected: list[Rejected], stats: dict) -> None:
    """Write stats.json, rejected.jsonl and the resolved config (also when preparing fails)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    with (out / "rejected.jsonl").open("w", encoding="utf-8") as f:
        for r in rejected:
            f.write(r.to_json() + "\n")
    config.save(out)


def write_prepared(
    out: Path,
    examples: list[TokenizedExample],
    rows: list[PackedRow] | None,
    renderer: Renderer,
) -> None:
    """Write the training dataset to `out/prepared/` and the tokenizer to `out/tokenizer/`."""
    write_dataset(out / "prepared", examples, rows)
    renderer.tokenizer.save_pretrained(str(out / "tokenizer"))


def write_dataset(
    target: Path, examples: list[TokenizedExample], rows: list[PackedRow] | None
) -> None:
    """Save packed rows (or, unpacked, the examples) atomically: a temp dir renamed into place."""
    import datasets

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
    with atomic_directory(target) as tmp:
        ds.save_to_disk(str(tmp))
        # The flat int32 columns the training loop memory-maps (see `data/prepared.py`).
        TokenRows.from_table(ds.data.table).save_arrays(tmp)
