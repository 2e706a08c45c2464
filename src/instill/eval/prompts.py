"""The prompts of a config's eval tasks as plain text, for decontaminating the training data.

Curation lives in the data layer and never imports evaluation; this module, which knows the
tasks, turns them into `EvalPrompt(task, id, text)` values that `prepare(..., eval_prompts=...)`,
`instill curate` and `instill train` pass down. A prompt's text is its user turns (with any
attached input), joined by newlines: system prompts are instructions shared by many prompts, not
the content a training row could have copied.

Sources, all de-duplicated by (task, text):
- `train.eval_tasks` and `eval.tasks` (when `data.curate.decontaminate.config_tasks`), and
  `data.curate.decontaminate.tasks`: registered names (`builtin-format`, ...) or task files;
- the built-in suite's evaluation splits (`data.curate.decontaminate.builtin_suite`), built with
  the seed of the config's `builtin:train` source and at least as many prompts per family as the
  registered tasks and `instill quickstart` use, so both are covered;
- `data.curate.decontaminate.files`: `.txt` files (one prompt per line) or JSON/JSONL/Parquet/
  CSV files in any eval or training format.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from instill.config import Config, DecontaminateConfig, EvalTaskConfig
from instill.data.curate.decontaminate import EvalPrompt
from instill.errors import InstillError
from instill.eval.tasks import EvalItem, EvalTask

#: Prompts per family of the registered `builtin-*` tasks (`build_suite`'s default).
BUILTIN_EVAL_PER_FAMILY = 6


def item_text(item: EvalItem) -> str:
    """The user turns of an eval prompt, as a training row would contain them."""
    return "\n".join(m.text_for_chat() for m in item.messages if m.role == "user")


def task_prompts(task: EvalTask) -> list[EvalPrompt]:
    return [EvalPrompt(task.name, item.id, item_text(item)) for item in task.items]


def builtin_suite_prompts(config: Config) -> list[EvalPrompt]:
    """The evaluation splits of the built-in suite the config trains on (seed of its source)."""
    from instill.data.builtin.source import suite_kwargs
    from instill.data.builtin.suite import build_suite
    from instill.eval.builtin_tasks import suite_tasks, task_name

    # The source's own defaults (seed 0, 80 rows per family...): evaluation prompts that collide
    # with a training prompt are regenerated, so the training rows are part of the suite.
    kwargs = suite_kwargs("builtin:train", {})
    for src in config.data.sources if config.data else []:
        if src.path.startswith("builtin:"):
            query = {k: v[-1] for k, v in parse_qs(src.path.partition("?")[2]).items()}
            kwargs = suite_kwargs(src.path, query)
            break
    kwargs["eval_per_family"] = max(BUILTIN_EVAL_PER_FAMILY, config.quickstart.eval_per_family)
    suite = build_suite(**kwargs)
    out = []
    for task in suite_tasks(suite):
        task.name = task_name(task.name)
        out += task_prompts(task)
    return out


def file_prompts(path: str) -> list[EvalPrompt]:
    """Prompts of an extra file: `.txt` (one per non-empty line) or any eval/training format."""
    p = Path(path)
    if not p.exists():
        raise InstillError(f"data.curate.decontaminate.files: {path}: no such file")
    if p.suffix.lower() == ".txt":
        lines = p.read_text(encoding="utf-8").splitlines()
        return [
            EvalPrompt(p.stem, f"{path}:line {k}", line)
            for k, line in enumerate(lines, start=1)
            if line.strip()
        ]
    from instill.eval.tasks import load_task_file

    # `json_valid` needs no reference answer, so prompt-only files load too; only the prompts
    # are used here.
    return task_prompts(load_task_file(path, name=p.stem, metric="json_valid"))


def eval_prompts_for(
    config: Config, decontaminate: DecontaminateConfig | None = None
) -> list[EvalPrompt]:
    """Every eval prompt that `data.curate.decontaminate` names for this config.

    Args:
        config: the run's config (its eval tasks, its built-in source's seed).
        decontaminate: the settings to follow instead of `data.curate.decontaminate` (synth
            passes `synth.curate.decontaminate`).
    """
    from instill.eval.runner import build_tasks

    dc = decontaminate or config.require_data("curate").curate.decontaminate
    specs: list[EvalTaskConfig] = []
    if dc.config_tasks:
        specs += list(config.train.eval_tasks) + list(config.eval.tasks)
    specs += list(dc.tasks)
    seen: set[tuple] = set()
    unique_specs = []
    for spec in specs:
        key = (spec.name, spec.path)
        if key not in seen:
            seen.add(key)
            unique_specs.append(spec)
    prompts: list[EvalPrompt] = []
    # Only the prompts matter: a task's limit is ignored, every prompt it has is checked.
    for spec in unique_specs:
        full = spec.model_copy(update={"limit": None})
        for task in build_tasks([full]):
            prompts += task_prompts(task)
    if dc.builtin_suite:
        prompts += builtin_suite_prompts(config)
    for path in dc.files:
        prompts += file_prompts(path)
    out, texts = [], set()
    for p in prompts:
        if (p.task, p.text) not in texts:
            texts.add((p.task, p.text))
            out.append(p)
    return out
