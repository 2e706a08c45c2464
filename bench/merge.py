"""Merging the embedded default's LoRA adapter: time, peak memory, the check, and what merging
buys at generation time.

    .venv/bin/python bench/merge.py                       # trains a short adapter first (~3 min)
    .venv/bin/python bench/merge.py --adapter runs/quickstart/final

1. The adapter: `--adapter`, else `instill train configs/quickstart.yaml` for `--steps` steps
   (the quickstart recipe: Gemma 3 270M base, LoRA r=16 on every linear layer, the turn-token
   rows trained) into runs/bench-merge/. Merge cost depends on the shapes, not on training time.
2. `instill merge` in a child process per output dtype (bf16: what users ship; fp32): wall time
   and peak RSS of the child (`getrusage`), the check's max |delta logit| and agreement.
3. Greedy generation speed of the same prompts through instill's generator, PEFT unmerged vs
   merged, alternating twice (the host is shared and drifts); bf16 weights for both. The bf16
   matmul peak is measured in the same run.

Prints one JSON line per result and a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Write a short paragraph about the ocean.",
    "List five fruits, one per line.",
    "Explain what a verb is in two sentences.",
    "Give three tips for a job interview.",
]


def run(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds and standard output of a child process (peak RSS: the child reports it)."""
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return seconds, out.stdout


def child_merge(adapter: str, out: str, dtype: str) -> None:
    from instill.models.export import merge_adapter

    report = merge_adapter(adapter, out, dtype=dtype)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({**report.to_dict(), "peak_rss_bytes": rss}))


def generation_speed(adapter: str, merged: str, new_tokens: int, rounds: int = 2) -> dict:
    import torch

    from instill.data.conversation import Message
    from instill.generate.engine import Generator, SamplingConfig
    from instill.models.bundle import load_bundle

    torch.set_num_threads(2)
    models = {
        "peft_unmerged": load_bundle(adapter, dtype=torch.bfloat16, merge_adapter=False),
        "merged": load_bundle(merged, dtype=torch.bfloat16),
    }
    convs = [[Message("user", p)] for p in PROMPTS]
    sampling = SamplingConfig(max_new_tokens=new_tokens, batch_size=len(convs))
    speeds: dict[str, list[float]] = {k: [] for k in models}
    answers: dict[str, list[str]] = {}
    for _ in range(rounds):
        for name, bundle in models.items():
            gen = Generator.for_bundle(bundle)
            t = time.perf_counter()
            outs = gen.generate(convs, sampling)
            seconds = time.perf_counter() - t
            speeds[name].append(sum(len(o.token_ids) for o in outs) / seconds)
            answers[name] = [o.text for o in outs]
    same = sum(a == b for a, b in zip(answers["peft_unmerged"], answers["merged"], strict=True))
    return {
        "tokens_per_s": {k: max(v) for k, v in speeds.items()},
        "all_runs": speeds,
        "same_greedy_answers": f"{same}/{len(PROMPTS)}",
    }


def matmul_peak() -> float:
    import torch

    torch.set_num_threads(2)
    best = 0.0
    for n, reps in ((1024, 20), (2048, 8)):
        a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e12)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--out", default="runs/bench-merge")
    parser.add_argument("--child", nargs=3, metavar=("ADAPTER", "OUT", "DTYPE"))
    args = parser.parse_args()
    if args.child:
        child_merge(*args.child)
        return
    py = sys.executable
    out = Path(args.out)
    header = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "date": time.strftime("%Y-%m-%d"),
        "bf16_matmul_peak_tflops": round(matmul_peak(), 3),
    }
    print(json.dumps({"bench": "merge", **header}), flush=True)
    adapter = args.adapter
    if adapter is None:
        adapter = str(out / "run" / "final")
        if not Path(adapter, "adapter_config.json").is_file():
            seconds, _ = run(
                [
                    py,
                    "-m",
                    "instill.cli",
                    "train",
                    "configs/quickstart.yaml",
                    f"train.max_steps={args.steps}",
                    "train.sample_prompts=[]",
                    f"output_dir={out / 'run'}",
                ]
            )
            print(json.dumps({"trained_adapter": adapter, "seconds": round(seconds, 1)}))
    rows = []
    for dtype in ("bfloat16", "float32"):
        target = out / f"merged-{dtype}"
        seconds, text = run([py, __file__, "--child", adapter, str(target), dtype])
        report = json.loads(text.strip().splitlines()[-1])
        report["child_wall_seconds"] = seconds
        print(json.dumps({"merge": dtype, **report}), flush=True)
        rows.append(report)
    speed = generation_speed(adapter, str(out / "merged-bfloat16"), args.new_tokens)
    print(json.dumps({"generation": speed}), flush=True)
    print()
    print(
        "| merge to | wall s (child) | merge s | peak RSS | output | max abs dlogit | agreement |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["check"]
        print(
            f"| {r['dtype']} | {r['child_wall_seconds']:.1f} | {r['seconds']:.1f} | "
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB | {r['size_bytes'] / 2**20:.0f} MiB | "
            f"{c['max_abs_logit_delta']:.3g} | {100 * c['greedy_agreement']:.2f}% of "
            f"{c['answer_tokens']} |"
        )
    t = speed["tokens_per_s"]
    print()
    print(
        f"greedy generation, {len(PROMPTS)} prompts x {args.new_tokens} tokens, bf16: PEFT "
        f"unmerged {t['peft_unmerged']:.1f} tok/s, merged {t['merged']:.1f} tok/s "
        f"({t['merged'] / t['peft_unmerged']:.2f}x); same greedy answers "
        f"{speed['same_greedy_answers']}; bf16 matmul peak {header['bf16_matmul_peak_tflops']} "
        "TFLOP/s"
    )


if __name__ == "__main__":
    main()
