"""`curate()`: the curation stage, from validated conversations to kept rows and removal records.

The steps run in a fixed order, each on the rows the previous ones kept:
read -> valid -> exact dedup -> near dedup -> filters -> decontam -> kept. Every removed row
becomes one `Removal` with its location (`file:line N`), its step, a reason code, a message and,
for duplicates and contamination, the row or eval prompt it collided with; nothing is dropped
without a record. The output is a pure function of the rows, the config and the eval prompts
(ties are broken by position, hashes are seeded), so running twice gives the same result.

Inside a group of duplicates the kept row is chosen by `keep`: `quality` (the fewest failed
quality checks, then the longest response, then the first seen), `longest_response` (then the
first seen) or `first` (source order, then file order).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from instill.config import CurateConfig
from instill.data.conversation import Conversation
from instill.data.curate.decontaminate import EvalIndex, EvalPrompt, contaminated_rows
from instill.data.curate.dedup import MinHashParams, exact_duplicates, near_duplicates
from instill.data.curate.filters import FilterHit, QualityFilter
from instill.data.curate.text import preview, response_length, view
from instill.errors import InstillError

STEPS = ("exact_dedup", "near_dedup", "filters", "decontaminate")
FUNNEL = ("read", "valid", *STEPS, "kept")
PROGRESS_MIN_ROWS = 2000


@dataclass
class Removal:
    """A row that curation removed, and why.

    Attributes:
        location: where the row was read (`file:line N`, `file[row N]`).
        source: the label of its source.
        step: `exact_dedup`, `near_dedup`, `filters` or `decontaminate`.
        reason: a short code (`exact_duplicate`, `near_duplicate`, `refusal`, `contaminated`...).
        message: what was seen, in words.
        row: the row as validated (messages or text).
        duplicate_of: for duplicates, the kept row: its `location`, `source` and `text`.
        similarity: for near duplicates, the estimated Jaccard similarity to that row.
        eval_prompt: for contamination, the eval prompt matched: `task`, `id` and `text`.
        score: for contamination, the share of the eval prompt's n-grams found in the row.
        shared_ngrams: for contamination, how many of its n-grams are shared.
        ngram: for contamination, one shared n-gram.
    """

    location: str
    source: str
    step: str
    reason: str
    message: str
    row: dict
    duplicate_of: dict | None = None
    similarity: float | None = None
    eval_prompt: dict | None = None
    score: float | None = None
    shared_ngrams: int | None = None
    ngram: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class CurationResult:
    """What `curate` kept, what it removed and the counts of each step.

    Attributes:
        per_source: the kept conversations of each source, in input order.
        removed: one record per removed row, by step and then row order.
        stats: the funnel per source and in total, removals by step and reason, examples and
            the parameters used (deterministic: no timings).
        timings: seconds and rows per second of each step (these vary from run to run).
    """

    per_source: list[list[Conversation]]
    removed: list[Removal]
    stats: dict
    timings: dict = field(default_factory=dict)

    @property
    def kept(self) -> list[Conversation]:
        return [c for convs in self.per_source for c in convs]


def curate(
    per_source: Sequence[Sequence[Conversation]],
    cfg: CurateConfig,
    *,
    source_names: Sequence[str] | None = None,
    rows_read: Sequence[int] | None = None,
    eval_prompts: Sequence[EvalPrompt] | None = None,
    count_tokens: Callable[[str], int] | None = None,
    progress: bool = False,
) -> CurationResult:
    """Run the enabled curation steps over the conversations of every source.

    Args:
        per_source: the valid conversations of each source, in order (each knows its location).
        cfg: the `data.curate` settings.
        source_names: a label per source (default `source 1`, `source 2`, ...).
        rows_read: rows read per source, valid or not, for the funnel (default: the valid ones).
        eval_prompts: the prompts to decontaminate against, as plain text; required when
            `cfg.decontaminate.enabled` (the caller gathers them: `instill.eval.prompts`).
        count_tokens: token counter for the response length bounds when
            `cfg.filters.length_unit` is `tokenizer`.
        progress: show progress for large inputs.

    Raises:
        InstillError: decontamination is on without eval prompts, or the length unit is
            `tokenizer` without a token counter.
    """
    names = list(source_names or [f"source {k + 1}" for k in range(len(per_source))])
    rows: list[Conversation] = [c for convs in per_source for c in convs]
    source_of: list[int] = [k for k, convs in enumerate(per_source) for _ in convs]
    alive = list(range(len(rows)))
    removed: list[Removal] = []
    timings: dict[str, dict] = {}
    funnel = [
        {"source": n, "read": rows_read[k] if rows_read else len(per_source[k])}
        for k, n in enumerate(names)
    ]
    for k, convs in enumerate(per_source):
        funnel[k]["valid"] = len(convs)
    # The settings that decide the output (not the worker count or where the report goes).
    stats: dict[str, Any] = {
        "settings": cfg.model_dump(mode="json", exclude={"num_proc", "output_dir"})
    }

    index = _eval_index(cfg, eval_prompts)
    uses_quality = cfg.filters.enabled or cfg.keep == "quality"
    if cfg.filters.length_unit == "tokenizer" and count_tokens is None and uses_quality:
        raise InstillError(
            "data.curate.filters.length_unit=tokenizer needs the model's tokenizer; "
            "this caller has none (use length_unit: words)"
        )
    quality = (
        QualityFilter(cfg.filters, count_tokens)
        if cfg.filters.enabled or cfg.keep == "quality"
        else None
    )
    hits: dict[int, list[FilterHit]] = {}

    def hits_of(i: int) -> list[FilterHit]:
        if i not in hits:
            hits[i] = quality.check(rows[i])  # type: ignore[union-attr]
        return hits[i]

    def keep_key(i: int) -> tuple:
        if cfg.keep == "first":
            return (i,)
        if cfg.keep == "longest_response":
            return (-response_length(rows[i]), i)
        return (len(hits_of(i)), -response_length(rows[i]), i)

    if cfg.filters.enabled:
        started = time.perf_counter()
        with _track(progress, "quality checks", len(rows)) as advance:
            for i in range(len(rows)):
                hits_of(i)
                if advance and (i + 1) % 1000 == 0:
                    advance(1000)
            if advance:
                advance(len(rows) % 1000)
        timings["quality_checks"] = _timing(started, len(rows))

    def remove(i: int, step: str, reason: str, message: str, **extra) -> None:
        conv = rows[i]
        removed.append(
            Removal(
                conv.source, names[source_of[i]], step, reason, message, conv.to_dict(), **extra
            )
        )

    def collided(j: int, scope: str) -> dict:
        return {
            "location": rows[j].source,
            "source": names[source_of[j]],
            "text": preview(view(rows[j], scope)),
        }

    # exact duplicates
    if cfg.exact_dedup.enabled:
        started = time.perf_counter()
        scope = cfg.exact_dedup.scope
        texts = [view(rows[i], scope) for i in alive]
        dups = exact_duplicates(texts, lambda k: keep_key(alive[k]))
        gone = set()
        for d in dups:
            i, j = alive[d.removed], alive[d.kept]
            gone.add(i)
            remove(
                i,
                "exact_dedup",
                "exact_duplicate",
                f"same normalised {_scope_words(scope)} as {rows[j].source}",
                duplicate_of=collided(j, scope),
            )
        alive = [i for i in alive if i not in gone]
        timings["exact_dedup"] = _timing(started, len(texts))
    _count(funnel, "exact_dedup", alive, source_of)

    # near duplicates
    params = MinHashParams.from_config(cfg.near_dedup)
    if cfg.near_dedup.enabled:
        started = time.perf_counter()
        scope = cfg.near_dedup.scope
        texts = [view(rows[i], scope) for i in alive]
        order = sorted(range(len(alive)), key=lambda k: keep_key(alive[k]))
        rank = [0] * len(alive)
        for place, k in enumerate(order):
            rank[k] = place
        with _track(progress, "near dedup (MinHash)", len(texts)) as advance:
            dups = near_duplicates(texts, rank, params, cfg.num_proc, advance)
        gone = set()
        for d in dups:
            i, j = alive[d.removed], alive[d.kept]
            gone.add(i)
            remove(
                i,
                "near_dedup",
                "near_duplicate",
                f"{_scope_words(scope)} ~{d.similarity:.2f} similar (Jaccard of "
                f"{params.shingle} {params.shingle_size}-grams, threshold {params.threshold}) to "
                f"{rows[j].source}",
                duplicate_of=collided(j, scope),
                similarity=d.similarity,
            )
        alive = [i for i in alive if i not in gone]
        timings["near_dedup"] = _timing(started, len(texts))
    _count(funnel, "near_dedup", alive, source_of)

    # quality filters
    if cfg.filters.enabled:
        started = time.perf_counter()
        gone = set()
        for i in alive:
            if hits_of(i):
                gone.add(i)
                found_hits = hits_of(i)
                remove(i, "filters", found_hits[0].reason, "; ".join(h.message for h in found_hits))
        timings["filters"] = _timing(started, len(alive))
        alive = [i for i in alive if i not in gone]
    _count(funnel, "filters", alive, source_of)

    # decontamination
    if index is not None:
        started = time.perf_counter()
        dc = cfg.decontaminate
        texts = [view(rows[i], dc.scope) for i in alive]
        with _track(progress, "decontaminate", len(texts)) as advance:
            found = contaminated_rows(texts, index, 0.0, cfg.num_proc, advance)
        gone = set()
        by_task: Counter[str] = Counter()
        below: list[dict] = []  # rows sharing n-grams with a prompt, under min_score: kept
        for c in found:
            i = alive[c.row]
            p = index.prompts[c.prompt]
            if c.score < dc.min_score:
                below.append(
                    {
                        "location": rows[i].source,
                        "eval_prompt": f"{p.task}/{p.id}",
                        "score": c.score,
                        "ngram": c.ngram,
                    }
                )
                continue
            gone.add(i)
            by_task[p.task] += 1
            remove(
                i,
                "decontaminate",
                "contaminated",
                f"contains eval prompt {p.task}/{p.id}: {c.shared} shared n-gram(s), "
                f"{c.score:.0%} of the prompt's n-grams",
                eval_prompt={"task": p.task, "id": p.id, "text": preview(p.text, 400)},
                score=c.score,
                shared_ngrams=c.shared,
                ngram=c.ngram,
            )
        alive = [i for i in alive if i not in gone]
        timings["decontaminate"] = _timing(started, len(texts))
        stats["decontaminate"] = {
            **asdict(index.stats),
            "ngram": index.n,
            "rows_checked": len(texts),
            "removed_by_task": dict(sorted(by_task.items())),
            "min_score": dc.min_score,
            "kept_below_min_score": len(below),
            "max_score_kept": max((b["score"] for b in below), default=None),
            "kept_below_min_score_examples": sorted(below, key=lambda b: -b["score"])[
                : cfg.examples
            ],
        }
    _count(funnel, "decontaminate", alive, source_of)
    _count(funnel, "kept", alive, source_of)

    kept: list[list[Conversation]] = [[] for _ in per_source]
    for i in alive:
        kept[source_of[i]].append(rows[i])
    stats["funnel"] = {
        "sources": funnel,
        "total": {s: sum(f[s] for f in funnel) for s in FUNNEL} | {"source": "total"},
    }
    stats["removed_by_step"] = {s: sum(r.step == s for r in removed) for s in STEPS}
    stats["removed_by_reason"] = dict(
        sorted(Counter(r.reason for r in removed).items(), key=lambda kv: (-kv[1], kv[0]))
    )
    stats["enabled"] = {
        "exact_dedup": cfg.exact_dedup.enabled,
        "near_dedup": cfg.near_dedup.enabled,
        "filters": cfg.filters.enabled,
        "decontaminate": cfg.decontaminate.enabled,
    }
    if cfg.near_dedup.enabled:
        stats["near_dedup"] = {
            "candidate_probability": {
                f"{j:.2f}": round(params.candidate_probability(j), 4)
                for j in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
            }
        }
    stats["examples"] = {
        s: [r.to_dict() for r in removed if r.step == s][: cfg.examples] for s in STEPS
    }
    return CurationResult(kept, removed, stats, timings)


def _eval_index(cfg: CurateConfig, prompts: Sequence[EvalPrompt] | None) -> EvalIndex | None:
    dc = cfg.decontaminate
    if not dc.enabled:
        return None
    if prompts is None:
        raise InstillError(
            "data.curate.decontaminate is on but no eval prompts were passed; run it through "
            "`instill prepare|train|curate` (which gather the prompts of the config's eval "
            "tasks), or pass eval_prompts= (see instill.eval.prompts.eval_prompts_for)"
        )
    if not prompts:
        raise InstillError(
            "data.curate.decontaminate is on but there is no eval prompt to decontaminate "
            "against: name eval tasks (train.eval_tasks, eval.tasks, "
            "data.curate.decontaminate.tasks), set data.curate.decontaminate.builtin_suite: "
            "true, or list prompt files in data.curate.decontaminate.files"
        )
    return EvalIndex(
        prompts, dc.ngram, dc.boilerplate_min_prompts, dc.boilerplate_share, dc.min_prompt_words
    )


def _count(funnel: list[dict], step: str, alive: list[int], source_of: list[int]) -> None:
    counts = Counter(source_of[i] for i in alive)
    for k, f in enumerate(funnel):
        f[step] = counts.get(k, 0)


def _scope_words(scope: str) -> str:
    return {"conversation": "conversation", "user": "user turns", "first_user": "first user turn"}[
        scope
    ]


def _timing(started: float, rows: int) -> dict:
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "rows": rows,
        "rows_per_second": round(rows / max(seconds, 1e-9), 1),
    }


@contextlib.contextmanager
def _track(enabled: bool, label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    if not enabled or total < PROGRESS_MIN_ROWS:
        yield None
        return
    from instill.progress import track

    with track(label, total, unit="rows", transient=True) as tracker:
        yield tracker.advance
