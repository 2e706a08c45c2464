"""Issue 10's levers one at a time: train the embedded default with one change each, then score
every model on the same enlarged long-form instruction-following and format prompts.

Each setting is `instill train configs/quickstart.yaml` plus its overrides (one subprocess per
setting, one at a time, into `<out>/<setting>/`); the evaluation builds the built-in suite with
`--eval-per-family` prompts per family (20: 125 `heldout_if` prompts, 120 `format`), greedy, the
per-prompt long-answer budgets capped at 640 tokens as `make demo`'s, and prints one Markdown
table: score, paired-bootstrap 95% interval of the difference to the first setting, the share of
answers that stop at the end-of-turn token, and the median words of the long-form answers.

    .venv/bin/python bench/if_levers.py                          # train + evaluate every setting
    .venv/bin/python bench/if_levers.py --settings before,shipped
    .venv/bin/python bench/if_levers.py --eval-only              # evaluate the finished runs
    .venv/bin/python bench/if_levers.py --eval-only --models a=runs/x/final,b=runs/y/final
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/quickstart.yaml"
_SPEC = "data.sources.0.path=builtin:train?"
SETTINGS: dict[str, list[str]] = {
    # make demo before issue 10's data levers: 28 rows per family, 40% augmented, one epoch
    "before": [_SPEC + "per_family=28", "train.epochs=1"],
    # long-form data: 56 rows per long-form family, 14 per short-answer family, one epoch
    "longform": [_SPEC + "per_family=14&longform_per_family=56", "train.epochs=1"],
    # + constraint augmentation of 90% of the long-form rows (was 40%)
    "longform_augment": [
        _SPEC + "per_family=14&longform_per_family=56&longform_augment=0.9",
        "train.epochs=1",
    ],
    # + twice the learning rate, still one epoch
    "lr6e-4": [
        _SPEC + "per_family=14&longform_per_family=56&longform_augment=0.9",
        "train.epochs=1",
        "train.lr=6.0e-4",
    ],
    # + a second epoch instead
    "two_epochs": [
        _SPEC + "per_family=14&longform_per_family=56&longform_augment=0.9",
        "train.epochs=2",
    ],
    # configs/quickstart.yaml as shipped (make demo): 40 per long-form family, two epochs
    "shipped": [],
}
SPLITS = ("format", "heldout_if")


def train_setting(name: str, out_root: Path) -> Path:
    out = out_root / name
    cmd = [
        str(ROOT / ".venv" / "bin" / "instill"),
        "train",
        CONFIG,
        *SETTINGS[name],
        "train.logging.tensorboard=false",
        f"output_dir={out}",
    ]
    print(f"[{name}] {' '.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f"[{name}] trained in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out / "final"


def evaluate_models(models: dict[str, str], eval_per_family: int, cap: int = 640) -> list:
    """Records of every model on the enlarged `format` and `heldout_if` splits."""
    from instill.data.builtin.suite import build_suite
    from instill.eval.builtin_tasks import suite_tasks
    from instill.eval.runner import evaluate
    from instill.generate.engine import SamplingConfig
    from instill.models.bundle import load_bundle

    # the evaluation prompts of make demo's suite (seed 0), only more of them per family
    suite = build_suite(seed=0, train_per_family=28, eval_per_family=eval_per_family)
    tasks = suite_tasks(suite, SPLITS, max_new_tokens=64, long_cap=cap)
    records = []
    for name, path in models.items():
        started = time.perf_counter()
        # a tuned run's final/ carries its template; a base model gets make demo's
        template = "auto" if (Path(path) / "instill.json").is_file() else "gemma"
        lm = load_bundle(path, name=name, template=template)
        records += evaluate(lm, tasks, SamplingConfig(64, batch_size=64), bar=False)
        del lm
        print(f"[{name}] evaluated in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return records


def table(records: list, models: list[str]) -> str:
    from instill.eval.runner import bootstrap_delta

    by = {(r.model, r.task, r.id): r for r in records}
    lines = [
        "| setting | " + " | ".join(f"{s} (n)" for s in SPLITS) + " | "
        + " | ".join(f"{s} vs {models[0]} (95% CI)" for s in SPLITS)
        + " | stop heldout_if | median words heldout_if |",
        "|---|" + "---:|" * len(SPLITS) + "---|" * len(SPLITS) + "---:|---:|",
    ]  # fmt: skip
    for model in models:
        cells, deltas = [], []
        for split in SPLITS:
            mine = sorted((r for r in records if r.model == model and r.task == split), key=str)
            ids = [r.id for r in mine]
            score = 100 * sum(r.score for r in mine) / len(mine)
            cells.append(f"{score:.1f} ({len(mine)})")
            base = [by[(models[0], split, i)].score for i in ids]
            d, lo, hi = bootstrap_delta(base, [r.score for r in mine])
            deltas.append(f"{100 * d:+.1f} ({100 * lo:+.1f}, {100 * hi:+.1f})")
        longform = [r for r in records if r.model == model and r.task == "heldout_if"]
        stop = 100 * sum(bool(r.stopped) for r in longform) / len(longform)
        words = statistics.median(len(r.response.split()) for r in longform)
        lines.append(
            f"| {model} | " + " | ".join(cells) + " | " + " | ".join(deltas)
            + f" | {stop:.1f}% | {words:.0f} |"
        )  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated")
    parser.add_argument("--out", default="runs/bench-levers", help="root of the run dirs")
    parser.add_argument("--eval-only", action="store_true", help="evaluate finished runs only")
    parser.add_argument("--models", help="name=path,...: evaluate these model dirs instead")
    parser.add_argument("--eval-per-family", type=int, default=20)
    parser.add_argument("--max-long-new-tokens", type=int, default=640, help="as make demo's")
    parser.add_argument("--records", help="write every answer to this JSONL file")
    args = parser.parse_args(argv)

    out_root = Path(args.out)
    if args.models:
        models = dict(item.split("=", 1) for item in args.models.split(","))
    else:
        names = [s for s in args.settings.split(",") if s]
        unknown = [s for s in names if s not in SETTINGS]
        if unknown:
            parser.error(f"unknown setting(s) {unknown}; use {', '.join(SETTINGS)}")
        models = {}
        for name in names:
            final = out_root / name / "final"
            if not args.eval_only:
                final = train_setting(name, out_root)
            if not final.is_dir():
                parser.error(f"{final}: no finished run for setting {name!r}")
            models[name] = str(final)
    records = evaluate_models(models, args.eval_per_family, args.max_long_new_tokens)
    if args.records:
        with open(args.records, "w") as f:
            for r in records:
                f.write(json.dumps(r.__dict__) + "\n")
    print(table(records, list(models)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
