"""Prompts this project did not write: base vs tuned on the Self-Instruct seed tasks and the
252 expert-written user-oriented instructions (../shared/data/self-instruct, Apache-2.0).

Four eval tasks through `instill eval`'s own code (`build_tasks` + `run_eval`), one report:

- `user-oriented` and `seed-tasks`: every prompt (instruction + its first instance's input),
  scored by ROUGE-L F1 against the human-written output;
- `user-oriented-stated` and `seed-tasks-stated`: only the prompts that state a checkable
  format in words ("in one sentence", "in 4 sentences"), scored by that format
  (`stated_formats: only`, `instill.eval.stated`).

    .venv/bin/python bench/selfinstruct_eval.py --model base=gemma-3-270m --template gemma \\
        --model tuned=runs/quickstart/final --out runs/selfinstruct
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "self-instruct"
FILES = {"user-oriented": "user_oriented_instructions.jsonl", "seed-tasks": "seed_tasks.jsonl"}


def task_specs(data: Path, limit: int | None) -> list[dict]:
    specs = []
    for name, file in FILES.items():
        path = str(data / file)
        specs.append({"name": name, "path": path, "metric": "rouge_l", "limit": limit})
        specs.append({"name": f"{name}-stated", "path": path, "stated_formats": "only"})
    return specs


def main(argv: list[str] | None = None) -> int:
    from instill.config import EvalConfig
    from instill.eval.runner import build_tasks, markdown_table, run_eval

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="NAME=PATH (repeatable)")
    p.add_argument("--template", default="auto", help="template for base models without one")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--limit", type=int, default=None, help="first N prompts of each file")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "selfinstruct")
    args = p.parse_args(argv)
    models = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        models.append({"name": name, "path": path, "template": args.template})
    cfg = EvalConfig.model_validate(
        {
            "models": models,
            "tasks": task_specs(args.data, args.limit),
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
        }
    )
    tasks = build_tasks(cfg.tasks)
    _, comparison, paths = run_eval(cfg.models, tasks, cfg, args.out, bar=True)
    print(markdown_table(comparison, "task"))
    summary = {
        r["name"]: {m: s and round(100 * s["score"], 1) for m, s in r["models"].items()}
        for r in comparison["rows"]
        if r["level"] == "task"
    }
    print(json.dumps({"tasks": summary, "report": str(paths["md"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
