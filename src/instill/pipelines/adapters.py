"""`instill adapters combine`: combine task adapters, then show what combining cost.

Combining (`instill.models.adapter_ops.combine_adapters`) is cheap; knowing whether the result
still does each input's task is not. This pipeline evaluates every input adapter and the
combination on the tasks the inputs were trained for (the eval tasks their runs' `config.yaml`
name, or the tasks given) and writes the usual base-vs-tuned report with the first input as the
baseline: scores with bootstrap intervals per task, stop rates and examples.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path

from instill.config import EvalTaskConfig, load_config
from instill.errors import InstillError
from instill.models.adapter_ops import CombineReport, combine_adapters


@dataclass
class CombineResult:
    report: CombineReport
    comparison: dict | None  # None when not evaluated
    paths: dict[str, Path]


def recorded_tasks(adapter: str | Path) -> list[EvalTaskConfig]:
    """The eval tasks named by the run an adapter comes from (`RUN/final` -> `RUN/config.yaml`)."""
    config_file = Path(adapter).parent / "config.yaml"
    if not config_file.is_file():
        return []
    config = load_config(config_file, [])
    return list(config.train.eval_tasks) + list(config.eval.tasks)


def task_specs(adapters: list[str], tasks: list[str] | None) -> list[EvalTaskConfig]:
    """`tasks` (registered names or task files) or, by default, the inputs' recorded tasks."""
    if tasks:
        return [
            EvalTaskConfig(path=t) if Path(t).is_file() else EvalTaskConfig(name=t) for t in tasks
        ]
    specs: dict[str, EvalTaskConfig] = {}
    for a in adapters:
        for spec in recorded_tasks(a):
            specs.setdefault(spec.path or spec.name, spec)
    if not specs:
        raise InstillError(
            "the input runs name no eval tasks (train.eval_tasks / eval.tasks in their "
            "config.yaml): pass --task NAME_OR_FILE (repeatable), or --no-eval"
        )
    return list(specs.values())


def combine_and_evaluate(
    adapters: list[str],
    out: str | Path,
    weights: list[float] | None = None,
    method: str = "cat",
    density: float = 0.5,
    base: str | None = None,
    tasks: list[str] | None = None,
    evaluate_tasks: bool = True,
    max_new_tokens: int = 128,
    limit: int | None = None,
    bootstrap_samples: int = 1000,
    log=print,
) -> CombineResult:
    """Combine `adapters` into `out`, then evaluate inputs and combination (report in
    `out/report/`, which is also written beside the adapter so it travels with it)."""
    from instill.eval.runner import build_tasks, compare, evaluate, write_report
    from instill.generate.engine import SamplingConfig
    from instill.models.bundle import load_bundle

    specs = task_specs(adapters, tasks) if evaluate_tasks else []
    if limit:
        specs = [s.model_copy(update={"limit": limit}) for s in specs]
    built = build_tasks(specs)
    report = combine_adapters(adapters, out, weights, method, density, base)
    log(
        f"combined {len(adapters)} adapters ({method}, weights "
        f"{', '.join(f'{w:g}' for w in report.weights)}) into {report.out} (r={report.r})"
    )
    if not evaluate_tasks:
        return CombineResult(report, None, {})
    for task in built:
        task.max_new_tokens = max_new_tokens
    sampling = SamplingConfig(max_new_tokens=max_new_tokens)
    names = [*_labels(adapters), "combined"]
    records = []
    for name, path in zip(names, [*adapters, report.out], strict=True):
        log(f"evaluating {name} on {', '.join(t.name for t in built)}")
        kwargs = {"adapter": path} if base else {}
        lm = load_bundle(base or path, name=name, **kwargs)
        records += evaluate(lm, built, sampling)
        del lm
        gc.collect()
    comparison = compare(records, names, bootstrap_samples, 0)
    comparison["combine"] = report.to_dict()
    paths = write_report(Path(report.out) / "report", records, comparison)
    (Path(report.out) / "report" / "combine.json").write_text(
        json.dumps(report.to_dict(), indent=2)
    )
    return CombineResult(report, comparison, paths)


def _labels(adapters: list[str]) -> list[str]:
    """Short distinct names: the run dir's name for `RUN/final`, else the dir name."""
    labels = []
    for a in adapters:
        p = Path(a).resolve()
        label = p.parent.name if p.name == "final" else p.name
        while label in labels:
            label += "'"
        labels.append(label)
    return labels
