"""The quality goal of the embedded default: base vs tuned on the built-in suite's held-out splits.

Runs `instill quickstart` (one subprocess per run, one at a time) for each recorded setting and
prints a Markdown table per split: base and tuned scores, the delta, its paired-bootstrap 95%
interval, the tuned stop rate and the wall time. `--table DIR...` only tabulates finished runs.

    .venv/bin/python bench/quickstart_quality.py                      # all settings, ~1 h
    .venv/bin/python bench/quickstart_quality.py --settings default   # the `make demo` run only
    .venv/bin/python bench/quickstart_quality.py --table runs/bench-quality/default

Goal (issue 5): tuned beats base by >= 20 points on held-out families and on held-out phrasings,
and >= 90% of tuned answers stop at the end-of-turn token within the budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/quickstart.yaml"
SETTINGS: dict[str, list[str]] = {
    # configs/quickstart.yaml as shipped: Gemma 3 270M base, LoRA r=16, 24 rows per family, 2 epochs
    "default": [],
    # more compute: twice the rows, 3 epochs, rank 64
    "longer": [
        "data.sources.0.path=builtin:train?per_family=48",
        "train.epochs=3",
        "train.lora.r=64",
        "train.lora.alpha=128",
    ],
    # a second model that is already instruction-tuned, with its own chat template
    "smollm2": ["model.path=smollm2-135m-instruct", "data.template=tokenizer"],
}
SPLITS = ("heldout_families", "heldout_phrasings", "format")


def run_setting(name: str, out_root: Path) -> Path:
    out = out_root / name
    cmd = [
        str(ROOT / ".venv" / "bin" / "instill"),
        "quickstart",
        CONFIG,
        *SETTINGS[name],
        f"output_dir={out}",
    ]
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with open(out_root / f"{name}.log", "w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    print(f"  {name}: {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)
    return out


def summarize(run_dir: Path) -> dict:
    """Per split and overall: base/tuned score, delta, 95% CI, stop rates (from report.json)."""
    report = json.loads((run_dir / "report" / "report.json").read_text())
    comparison = report["comparison"]
    rows = {}
    for row in comparison["rows"]:
        if row["level"] not in ("task", "overall"):
            continue
        base, tuned = row["models"]["base"], row["models"]["tuned"]
        rows[row["name"]] = {
            "n": base["n"],
            "base": 100 * base["score"],
            "tuned": 100 * tuned["score"],
            "delta": 100 * tuned["delta"],
            "ci95": [100 * x for x in tuned["ci95"]],
            "stop_base": 100 * base["stop_rate"],
            "stop_tuned": 100 * tuned["stop_rate"],
        }
    return {
        "run": str(run_dir),
        "minutes": round(comparison["seconds"] / 60, 1),
        "training_rows": comparison["training_rows"],
        "splits": rows,
        "goal_met": rows["heldout_families"]["delta"] >= 20
        and rows["heldout_phrasings"]["delta"] >= 20
        and rows["all"]["stop_tuned"] >= 90,
    }


def table(summary: dict) -> str:
    lines = [
        f"`{summary['run']}`: {summary['training_rows']} training rows, "
        f"{summary['minutes']} min end to end; goal met: {summary['goal_met']}",
        "",
        "| split | n | base | tuned | delta (95% CI) | stop base / tuned |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name in (*SPLITS, "all"):
        r = summary["splits"][name]
        lines.append(
            f"| {name} | {r['n']} | {r['base']:.1f} | {r['tuned']:.1f} | "
            f"{r['delta']:+.1f} ({r['ci95'][0]:+.1f}, {r['ci95'][1]:+.1f}) | "
            f"{r['stop_base']:.1f} / {r['stop_tuned']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated")
    parser.add_argument("--out", default="runs/bench-quality", help="root of the run dirs")
    parser.add_argument("--table", nargs="+", metavar="DIR", help="tabulate finished runs only")
    args = parser.parse_args(argv)
    if args.table:
        dirs = [Path(d) for d in args.table]
    else:
        names = [s for s in args.settings.split(",") if s]
        unknown = sorted(set(names) - set(SETTINGS))
        if unknown:
            parser.error(f"unknown settings {unknown}; choose from {sorted(SETTINGS)}")
        out_root = Path(args.out)
        out_root.mkdir(parents=True, exist_ok=True)
        dirs = [run_setting(name, out_root) for name in names]
    header = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "command": shlex.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }
    print(json.dumps({"bench": "quickstart_quality", **header}))
    for d in dirs:
        summary = summarize(d)
        print(json.dumps({"bench": "quickstart_quality", **summary}))
        print(table(summary) + "\n", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
