"""lm-evaluation-harness on the models instill loads (base, full fine-tune, base + adapter).

An optional extra (`pip install 'instill[lm-eval]'`): the harness runs its own tasks through its
Python API on the very model object `instill eval` would evaluate. An adapter is merged into a
copy of the base in memory first, so the harness sees a plain transformers model. Local task
YAMLs (e.g. a task over a local JSONL file, for machines that cannot reach the hub) are passed
with `include`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instill.atomic import write_atomic
from instill.errors import InstillError


def run_lm_eval(
    spec: Any,
    tasks: list[str],
    include: str | None = None,
    limit: int | None = None,
    out_dir: Path | None = None,
    batch_size: int = 8,
) -> dict:
    """Run harness `tasks` on the model of `spec` (`EvalModelConfig`).

    Returns:
        `{"results": <harness results dict>, "table": <its Markdown table>}`; the results are
        also written to `out_dir/lm_eval-<model>.json` when `out_dir` is given.
    """
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
        from lm_eval.utils import make_table
    except ImportError as e:
        raise InstillError(
            "--lm-eval needs lm-evaluation-harness: pip install 'instill[lm-eval]'"
        ) from e
    from instill.models.bundle import load_bundle

    lm = load_bundle(spec.path, name=spec.name, adapter=spec.adapter, template=spec.template)
    model = lm.model.merge_and_unload() if hasattr(lm.model, "merge_and_unload") else lm.model
    manager = TaskManager(include_path=include) if include else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise InstillError(
            f"unknown lm-eval task(s): {', '.join(unknown)}; pass --lm-eval-include DIR for "
            "local task YAMLs"
        )
    harness_model = HFLM(pretrained=model, tokenizer=lm.renderer.tokenizer, batch_size=batch_size)
    results = simple_evaluate(
        model=harness_model, tasks=tasks, task_manager=manager, limit=limit, log_samples=False
    )
    if results is None:  # non-main ranks
        return {"results": {}, "table": ""}
    table = make_table(results)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in lm.name)[-80:]
        target = out_dir / f"lm_eval-{safe}.json"
        write_atomic(target, json.dumps(results.get("results", {}), indent=2, default=str))
    return {"results": results, "table": table}
