"""The built-in suite's evaluation splits as registered eval tasks.

`instill.data.builtin` makes rows and their checkers only; turning those rows into `EvalTask`s
is evaluation's job, so it lives here and the data layer never imports eval. Registered names:
`builtin-heldout-families`, `builtin-heldout-phrasings` and `builtin-format` (one task per
evaluation split, built from `build_suite()` with its default seed and sizes). `eval/__init__.py`
imports this module, so the tasks are registered whenever anything of `instill.eval` is used.
"""

from __future__ import annotations

from dataclasses import replace

from instill.data.builtin.suite import EVAL_SPLITS, Suite, build_suite, eval_row
from instill.data.sources import RawRow
from instill.eval.tasks import EvalTask, parse_eval_row, register_task


def suite_tasks(
    suite: Suite,
    splits: tuple[str, ...] = EVAL_SPLITS,
    max_new_tokens: int = 96,
    long_cap: int | None = None,
) -> list[EvalTask]:
    """The evaluation splits of `suite` as eval tasks (one per split; families kept per prompt).

    `max_new_tokens` is the budget of short answers; a long-form prompt keeps the budget of its
    reference length, capped at `long_cap` when given.
    """
    tasks = []
    for split in splits:
        items = [
            parse_eval_row(RawRow(eval_row(r), r["id"]), "generate", "exact_match")
            for r in suite.rows[split]
        ]
        if long_cap is not None:
            items = [
                replace(i, max_new_tokens=min(i.max_new_tokens, long_cap))
                if i.max_new_tokens
                else i
                for i in items
            ]
        tasks.append(EvalTask(name=split, items=items, max_new_tokens=max_new_tokens))
    return tasks


def task_name(split: str) -> str:
    """The registered task name of an evaluation split: `heldout_families` -> `builtin-...`."""
    return f"builtin-{split.replace('_', '-')}"


def _register_builtin_tasks() -> None:
    """Register one task per evaluation split of the default built-in suite."""
    for split in EVAL_SPLITS:
        name = task_name(split)

        def factory(split: str = split, name: str = name) -> EvalTask:
            (task,) = suite_tasks(build_suite(), (split,))
            task.name = name
            return task

        register_task(name, factory)


_register_builtin_tasks()
