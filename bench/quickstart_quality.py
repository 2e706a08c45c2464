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
    # configs/quickstart.yaml as shipped (make demo): Gemma 3 270M base, LoRA r64, 24 rows per
    # short-answer family and 40 per long-form family (90% with added constraints), two epochs
    "default": [],
    # the same, plus the DPO stage (instill quickstart --dpo)
    "dpo": ["quickstart.dpo.enabled=true"],
    # the longer recipe: configs/quality.yaml (rank 64, 80 rows per long-form family, 3 epochs)
    "quality": ["--config=configs/quality.yaml"],
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
SPLITS = ("heldout_families", "heldout_phrasings", "format", "heldout_if")


def run_setting(name: str, out_root: Path) -> Path:
    out = out_root / name
    overrides = [o for o in SETTINGS[name] if not o.startswith("--config=")]
    config = next(
        (o.removeprefix("--config=") for o in SETTINGS[name] if o.startswith("--config=")), CONFIG
    )
    cmd = [
        str(ROOT / ".venv" / "bin" / "instill"),
        "quickstart",
        config,
        *overrides,
        f"output_dir={out}",
    ]
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with open(out_root / f"{name}.log", "w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    print(f"  {name}: {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)
    return out


def summarize(run_dir: Path) -> dict:
    """Per split and overall, per model: score, delta vs base, 95% CI, stop rate (from
    report.json); `tuned+dpo` too when the run had the DPO stage."""
    report = json.loads((run_dir / "report" / "report.json").read_text())
    comparison = report["comparison"]
    models = comparison["models"]
    rows = {}
    for row in comparison["rows"]:
        if row["level"] not in ("task", "overall"):
            continue
        base = row["models"]["base"]
        entry = {"n": base["n"], "base": 100 * base["score"], "stop_base": 100 * base["stop_rate"]}
        for m in models[1:]:
            s = row["models"][m]
            key = "tuned" if m == "tuned" else m
            entry[key] = 100 * s["score"]
            entry[f"delta_{key}" if key != "tuned" else "delta"] = 100 * s["delta"]
            entry[f"ci95_{key}" if key != "tuned" else "ci95"] = [100 * x for x in s["ci95"]]
            entry[f"stop_{key}"] = 100 * s["stop_rate"]
        rows[row["name"]] = entry
    return {
        "run": str(run_dir),
        "models": models,
        "minutes": round(comparison["seconds"] / 60, 1),
        "training_rows": comparison["training_rows"],
        "splits": rows,
        "dpo": comparison.get("dpo"),
        "goal_met": rows["heldout_families"]["delta"] >= 20
        and rows["heldout_phrasings"]["delta"] >= 20
        and rows["all"]["stop_tuned"] >= 90,
    }


def table(summary: dict) -> str:
    extra = [m for m in summary["models"][1:] if m != "tuned"]
    head = "| split | n | base | tuned | delta (95% CI) |"
    for m in extra:
        head += f" {m} | delta {m} (95% CI) |"
    head += " stop " + " / ".join(summary["models"]) + " |"
    lines = [
        f"`{summary['run']}`: {summary['training_rows']} training rows, "
        f"{summary['minutes']} min end to end; goal met: {summary['goal_met']}",
        "",
        head,
        "|---|---:|---:|---:|---|" + "---:|---|" * len(extra) + "---|",
    ]
    for name in (*SPLITS, "all"):
        r = summary["splits"].get(name)
        if r is None:
            continue
        cells = (
            f"| {name} | {r['n']} | {r['base']:.1f} | {r['tuned']:.1f} | "
            f"{r['delta']:+.1f} ({r['ci95'][0]:+.1f}, {r['ci95'][1]:+.1f}) |"
        )
        for m in extra:
            lo, hi = r[f"ci95_{m}"]
            cells += f" {r[m]:.1f} | {r[f'delta_{m}']:+.1f} ({lo:+.1f}, {hi:+.1f}) |"
        stops = [r["stop_base"], r["stop_tuned"], *(r[f"stop_{m}"] for m in extra)]
        lines.append(cells + " " + " / ".join(f"{x:.1f}" for x in stops) + " |")
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
