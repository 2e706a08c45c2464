"""Eval tasks: prompts (from a file or a registered generator) plus how to score the answers.

A task file is JSON/JSONL/Parquet/CSV with one prompt per row, in any of the training formats
(the assistant answer, if present, becomes the reference) or the eval-only shape
`{"prompt": str | messages, "reference": ..., "constraints": [...], "choices": [...]}`. Rows are
validated with the same per-row errors as training data. Tasks are registered explicitly with
`register_task`, which refuses duplicate or malformed names; the built-in suite's tasks are
registered by `builtin_tasks.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from instill.data.conversation import Message
from instill.data.formats import ROLE_ALIASES, check_object, check_turns
from instill.data.sources import RawRow, read_source
from instill.errors import InstillError, RowError

TaskKind = Literal["generate", "loglik_choice", "perplexity"]


@dataclass(frozen=True)
class EvalItem:
    """One prompt of a task."""

    id: str
    messages: tuple[Message, ...]  # ends with the user's turn
    reference: Any = None
    constraints: tuple[dict, ...] = ()
    choices: tuple[str, ...] = ()
    family: str | None = None
    metric: str | None = None  # overrides the task's metric for this prompt
    metric_options: dict | None = None
    max_new_tokens: int | None = None  # this prompt's own budget (a long-form request)


@dataclass
class EvalTask:
    """A named set of prompts and the metric that scores answers to them.

    Attributes:
        kind: `generate` (answer, then score with `metric`), `loglik_choice` (pick the choice
            with the highest log-likelihood, no generation) or `perplexity` (loss of the
            reference answers).
        metric: a registered metric name (`generate` tasks); `constraints` checks each row's
            verifiable constraints.
    """

    name: str
    items: list[EvalItem]
    kind: TaskKind = "generate"
    metric: str = "exact_match"
    metric_options: dict = field(default_factory=dict)
    family: str | None = None
    max_new_tokens: int | None = None

    def family_of(self, item: EvalItem) -> str:
        return item.family or self.family or self.name


_TASKS: dict[str, Callable[[], EvalTask]] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")


def register_task(name: str, factory: Callable[[], EvalTask]) -> None:
    """Register a task generator under `name` (lowercase letters, digits, `_ . -`)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"task name {name!r} must match {_NAME_RE.pattern}")
    if name in _TASKS:
        raise ValueError(f"task {name!r} is already registered")
    _TASKS[name] = factory


def registered_task_names() -> list[str]:
    """Every registered task name (the built-in ones are registered by `eval/__init__.py`)."""
    return sorted(_TASKS)


def get_task(name: str) -> EvalTask:
    """Build the registered task `name`."""
    if name not in _TASKS:
        import difflib

        close = difflib.get_close_matches(name, list(_TASKS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InstillError(
            f"unknown eval task {name!r}{hint} Registered tasks: "
            f"{', '.join(registered_task_names()) or 'none'}; or give a path to a task file"
        )
    return _TASKS[name]()


# --------------------------------------------------------------------------- task files


def load_task_file(
    path: str | Path,
    name: str | None = None,
    kind: TaskKind = "generate",
    metric: str = "exact_match",
    metric_options: dict | None = None,
    family: str | None = None,
    max_new_tokens: int | None = None,
    limit: int | None = None,
    stated_formats: str = "off",
) -> EvalTask:
    """Read a task file; every row is validated and a bad row is an error naming file and line.

    Rows may be in any training format or Self-Instruct's task shape (`instruction` with
    `instances: [{input, output}]`: the first instance is the prompt's input and reference).
    With `stated_formats="only"` the task keeps just the prompts that state a checkable format
    in words (`instill.eval.stated`), scored by the constraints found (metric `constraints`).
    """
    if stated_formats not in ("off", "only"):
        raise InstillError(f"stated_formats must be 'off' or 'only', got {stated_formats!r}")
    from instill.eval.metrics import validate_metric_options

    # `constraints` scores each row by its own verifiable constraints (eval/constraints.py).
    if kind == "generate" and metric != "constraints":
        validate_metric_options(metric, metric_options or {}, where=str(path))
    items: list[EvalItem] = []
    for _file, rows in read_source(str(path)):
        for raw in rows:
            if isinstance(raw, RowError):
                raise raw
            item = parse_eval_row(raw, kind, metric)
            if stated_formats == "only":
                item = _with_stated_format(item)
                if item is None:
                    continue
            items.append(item)
            if limit and len(items) >= limit:
                break
    if not items:
        if stated_formats == "only":
            raise InstillError(
                f"{path}: no prompt states a checkable format (stated_formats: only)"
            )
        raise InstillError(f"{path}: the task file has no rows")
    return EvalTask(
        name=name or Path(path).stem,
        items=items,
        kind=kind,
        metric=metric,
        metric_options=dict(metric_options or {}),
        family=family,
        max_new_tokens=max_new_tokens,
    )


def _with_stated_format(item: EvalItem) -> EvalItem | None:
    """The item scored by the formats its last user turn states; None when it states none."""
    from dataclasses import replace

    from instill.eval.stated import stated_constraints

    found = stated_constraints(item.messages[-1].content)
    if not found:
        return None
    return replace(item, constraints=tuple(found), metric="constraints", metric_options={})


def parse_eval_row(raw: RawRow, kind: TaskKind, metric: str) -> EvalItem:
    where = raw.location
    row = check_object(raw.data, where)
    messages, reference = _prompt_and_reference(row, where)
    if "reference" in row:
        reference = row["reference"]
    constraints = row.get("constraints") or []
    if not isinstance(constraints, list):
        raise RowError(where, "constraints", "wrong_type", "constraints must be a list")
    if constraints:
        from instill.eval.constraints import validate_constraint

        for k, c in enumerate(constraints):
            validate_constraint(c, where=f"{where}: constraints[{k}]")
    choices = row.get("choices") or []
    if kind == "loglik_choice":
        if not (
            isinstance(choices, list)
            and len(choices) >= 2
            and all(isinstance(c, str) for c in choices)
        ):
            raise RowError(
                where,
                "choices",
                "wrong_type",
                "a loglik_choice task needs `choices`: a list of at least 2 strings",
            )
        if reference not in choices and not (
            isinstance(reference, int) and 0 <= reference < len(choices)
        ):
            raise RowError(
                where,
                "reference",
                "wrong_type",
                "the reference must be one of the choices or its index",
            )
    elif row.get("metric") is not None:
        pass  # checked below against the row's own metric
    elif metric == "constraints" and not constraints:
        raise RowError(
            where,
            "constraints",
            "missing_field",
            "metric `constraints` needs a non-empty `constraints` list per row",
        )
    elif (
        kind in ("generate", "perplexity")
        and reference is None
        and metric not in ("constraints", "json_valid", "length_between")
    ):
        raise RowError(
            where,
            "reference",
            "missing_field",
            f"metric {metric!r} needs a reference answer: add `reference` (or an "
            "`output` / final assistant message)",
        )
    row_metric = row.get("metric")
    row_options = row.get("metric_options")
    if row_metric is not None:
        if not isinstance(row_metric, str):
            raise RowError(where, "metric", "wrong_type", "metric must be a metric name")
        if row_metric == "constraints":
            if not constraints:
                raise RowError(
                    where,
                    "constraints",
                    "missing_field",
                    "metric `constraints` needs a non-empty `constraints` list",
                )
        else:
            from instill.eval.metrics import validate_metric_options

            validate_metric_options(row_metric, row_options or {}, where=where)
    family = row.get("family")
    budget = row.get("max_new_tokens")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
    ):
        raise RowError(
            where,
            "max_new_tokens",
            "wrong_type",
            f"max_new_tokens must be a positive integer (this prompt's token budget), got "
            f"{budget!r}",
        )
    return EvalItem(
        id=str(row.get("id", where)),
        messages=tuple(messages),
        reference=reference,
        constraints=tuple(constraints),
        choices=tuple(choices),
        family=str(family) if family is not None else None,
        metric=row_metric,
        metric_options=dict(row_options or {}) if row_metric is not None else None,
        max_new_tokens=budget,
    )


def _prompt_and_reference(row: Mapping[str, Any], where: str) -> tuple[list[Message], Any]:
    """The prompt messages (ending with the user's turn) and the answer, if the row has one."""
    reference = None
    if "messages" in row or "conversations" in row or isinstance(row.get("prompt"), list):
        key = (
            "messages"
            if "messages" in row
            else ("conversations" if "conversations" in row else "prompt")
        )
        messages = _messages(row[key], where, key)
    elif "prompt" in row:
        if not isinstance(row["prompt"], str):
            raise RowError(
                where,
                "prompt",
                "non_string_content",
                "prompt must be a string or a list of messages",
            )
        messages = [Message("user", row["prompt"])]
        reference = row.get("completion")
    elif "instruction" in row:
        if not isinstance(row["instruction"], str) or not row["instruction"].strip():
            raise RowError(
                where, "instruction", "missing_field", "instruction must be a non-empty string"
            )
        messages = []
        if isinstance(row.get("system"), str) and row["system"]:
            messages.append(Message("system", row["system"]))
        context, reference = row.get("input") or None, row.get("output")
        if "instances" in row:  # Self-Instruct's task shape: the first instance
            instances = row["instances"]
            if (
                not isinstance(instances, list)
                or not instances
                or not isinstance(instances[0], Mapping)
            ):
                raise RowError(
                    where,
                    "instances",
                    "wrong_type",
                    "instances must be a non-empty list of {input, output} objects",
                )
            context = instances[0].get("input") or None
            reference = instances[0].get("output")
        messages.append(Message("user", row["instruction"], context=context))
    else:
        raise RowError(
            where,
            None,
            "undetectable_format",
            "an eval row needs `prompt`, `messages`, `conversations` or `instruction`",
        )
    if messages and messages[-1].role == "assistant":
        reference = messages[-1].content
        messages = messages[:-1]
    check_turns(messages, where, "prompt", require_response=False)
    if messages[-1].role != "user":
        raise RowError(
            where,
            "prompt",
            "not_alternating",
            "the prompt must end with a user turn for the model to answer",
        )
    return messages, reference


def _messages(value: Any, where: str, key: str) -> list[Message]:
    if not isinstance(value, list):
        raise RowError(where, key, "wrong_type", "expected a list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping):
            raise RowError(where, f"{key}[{i}]", "wrong_type", "expected a message object")
        role_raw = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        role = ROLE_ALIASES.get(str(role_raw).lower()) if isinstance(role_raw, str) else None
        if role is None:
            raise RowError(where, f"{key}[{i}].role", "unknown_role", f"unknown role {role_raw!r}")
        if not isinstance(content, str):
            raise RowError(
                where,
                f"{key}[{i}].content",
                "non_string_content",
                f"expected a string, got {type(content).__name__}",
            )
        out.append(Message(role, content))  # type: ignore[arg-type]
    return out
