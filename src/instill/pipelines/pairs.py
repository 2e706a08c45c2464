"""`instill data pairs`: preference pairs from verifiers, with no human labels.

Any prompt whose answers can be checked gives pairs: the built-in suite's rows (each carries its
checker and a reference answer), an eval task (a registered name or a task file with its
metric or per-row constraints). For each prompt the current model samples `samples` answers
through the generate layer (the same renderer and stop tokens as training); then

* **chosen** is the reference answer when it passes its own checker, else a sampled answer that
  passes (and stops);
* **rejected** is a sampled answer that fails the checker, or one that does not stop within the
  token budget (`rejected_reason`: `failed_check` or `no_stop`).

A prompt whose samples all pass gives no pair (the model already does it right), nor one without
any passing answer. Rows are written in TRL's conversational preference shape (`prompt` messages,
`chosen` / `rejected` one assistant message each), which `train.objective: dpo` reads directly;
`id`, `family`, `chosen_from` and `rejected_reason` ride along for analysis.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from instill.eval.runner import score_answer
from instill.eval.tasks import EvalItem, EvalTask
from instill.generate.engine import Generation, Generator, SamplingConfig


@dataclass(frozen=True)
class Checkable:
    """A prompt with its checker (the task's metric or the item's constraints) and, if known,
    an answer that should pass it."""

    task: EvalTask
    item: EvalItem
    answer: str | None = None


@dataclass
class PairsResult:
    """The pairs built and how every prompt ended."""

    rows: list[dict]
    stats: dict = field(default_factory=dict)
    path: Path | None = None


def builtin_checkables(spec: str = "builtin:train") -> list[Checkable]:
    """The built-in suite's rows of a split as checkable prompts with their reference answers.

    Args:
        spec: `builtin:<split>[?seed=N&per_family=N&eval_per_family=N]` (as the data source).
    """
    from urllib.parse import parse_qs

    from instill.data.builtin.source import PARAMETERS, suite_kwargs
    from instill.data.builtin.suite import SPLITS, build_suite
    from instill.errors import InstillError

    body = spec.removeprefix("builtin:")
    split, _, query = body.partition("?")
    if split not in SPLITS:
        raise InstillError(f"{spec}: unknown built-in split {split!r}; use one of {SPLITS}")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise InstillError(f"{spec}: unknown parameter(s) {', '.join(unknown)}")
    suite = build_suite(**suite_kwargs(spec, params))
    return suite_checkables(suite.rows[split], f"builtin-{split}")


def suite_checkables(rows: Sequence[dict], name: str = "builtin") -> list[Checkable]:
    """Built-in suite rows (`instill.data.builtin.suite.make_row`) as checkable prompts whose
    candidate chosen answer is the row's own answer."""
    from instill.data.builtin.suite import eval_row
    from instill.data.sources import RawRow
    from instill.eval.tasks import parse_eval_row

    items = [parse_eval_row(RawRow(eval_row(r), r["id"]), "generate", "exact_match") for r in rows]
    task = EvalTask(name=name, items=items, max_new_tokens=96)
    return [
        Checkable(task, item, row["messages"][-1]["content"])
        for item, row in zip(items, rows, strict=True)
    ]


def task_checkables(tasks: Sequence[EvalTask]) -> list[Checkable]:
    """Eval tasks' prompts; the first reference (a string or number, or one of a list of them)
    that passes the prompt's own checker is the candidate chosen answer."""
    out = []
    for task in tasks:
        if task.kind != "generate":
            continue  # multiple-choice and perplexity tasks have no answer to sample and check
        for item in task.items:
            ref = item.reference
            candidates = ref if isinstance(ref, list) else [ref]
            texts = [str(x) for x in candidates if isinstance(x, (str, int, float))]
            c = Checkable(task, item)
            answer = next((t for t in texts if t.strip() and passes(c, t)), None)
            out.append(Checkable(task, item, answer))
    return out


def passes(c: Checkable, text: str) -> bool:
    """Whether `text` passes the prompt's checker (full score)."""
    return score_answer(c.task, c.item, text)[0] >= 1.0


def build_pairs(
    generator: Generator,
    checkables: Sequence[Checkable],
    samples: int = 4,
    sampling: SamplingConfig | None = None,
    on_answer: Callable[[int], None] | None = None,
) -> PairsResult:
    """Sample `samples` answers per prompt and keep (passing, failing) pairs.

    Args:
        generator: the current model behind the generate layer.
        checkables: the prompts with their checkers.
        samples: answers sampled per prompt (seeded: prompt k's j-th answer uses seed
            `sampling.seed + k * samples + j`, whatever the batch).
        sampling: decoding settings; default temperature 1.0, 128 new tokens (a prompt with
            its own `max_new_tokens`, a long-form request, keeps its own budget).
        on_answer: called with 1 per finished answer (progress).
    """
    sampling = sampling or SamplingConfig(max_new_tokens=128, do_sample=True, temperature=1.0)
    if not sampling.do_sample and samples > 1:
        raise ValueError("samples > 1 needs sampling (do_sample with a temperature > 0)")
    conversations = [c.item.messages for c in checkables for _ in range(samples)]
    budgets = [c.item.max_new_tokens for c in checkables for _ in range(samples)]
    answers = generator.generate(conversations, sampling, on_batch=on_answer, budgets=budgets)
    rows: list[dict] = []
    outcome: Counter[str] = Counter()
    for k, c in enumerate(checkables):
        mine = answers[k * samples : (k + 1) * samples]
        row, why = make_pair(c, mine)
        outcome[why] += 1
        if row is not None:
            rows.append(row)
    stats = {
        "prompts": len(checkables),
        "samples_per_prompt": samples,
        "pairs": len(rows),
        "outcome": dict(outcome.most_common()),
        "rejected_reason": dict(Counter(r["rejected_reason"] for r in rows).most_common()),
        "chosen_from": dict(Counter(r["chosen_from"] for r in rows).most_common()),
    }
    return PairsResult(rows, stats)


def make_pair(c: Checkable, answers: Sequence[Generation]) -> tuple[dict | None, str]:
    """One prompt's pair from its sampled answers, and what happened (`pair`, `all_passed`,
    `no_passing_answer`)."""
    verdicts = [(g, g.stopped and passes(c, g.text)) for g in answers]
    chosen, chosen_from = None, "reference"
    if c.answer is not None and c.answer.strip() and passes(c, c.answer):
        chosen = c.answer
    else:
        good = [g.text for g, ok in verdicts if ok and g.text.strip()]
        chosen, chosen_from = (good[0], "sample") if good else (None, "")
    if chosen is None:
        return None, "no_passing_answer"
    for g, ok in verdicts:
        if ok or not g.text.strip() or g.text.strip() == chosen.strip():
            continue
        reason = "no_stop" if not g.stopped else "failed_check"
        return {
            "id": c.item.id,
            "family": c.task.family_of(c.item),
            "prompt": [m.to_dict() for m in c.item.messages],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": g.text}],
            "chosen_from": chosen_from,
            "rejected_reason": reason,
        }, "pair"
    return None, "all_passed"


def write_pairs(result: PairsResult, out: Path) -> Path:
    """`out` (JSONL, one pair per line) and `<out>.stats.json` beside it, written atomically."""
    from instill.atomic import write_atomic

    out = Path(out)
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.rows))
    write_atomic(out.with_suffix(".stats.json"), json.dumps(result.stats, indent=2) + "\n")
    result.path = out
    return out
