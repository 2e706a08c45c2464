"""The GPU check, in one script: instill vs TRL (and TRL + Liger kernels) training on a lent GPU.

For SmolLM2-135M and Gemma 3 270M, LoRA and full fine-tuning, it runs `instill train`, TRL's
`SFTTrainer` with its defaults and with its fastest settings, and those plus Liger kernels when
`liger-kernel` imports, each in its own child process through `bench/train_throughput.py`'s
children (the same rows, batch 8 x 512, settings and FLOP count). It prints one JSON line per run:
tokens/s and supervised tokens/s per GPU, MFU against the bf16 matmul peak measured on that GPU
in the same run, peak allocated GPU memory, and the attention kernels a packed forward of
instill's model used (flash / varlen expected for packed rows). Runs that would start after the
time budget (`--budget-s`, default 8 minutes) are printed as skipped, not run.

    python bench/gpu_bench.py --install          # on the GPU machine (8 minutes at most)
    python bench/gpu_bench.py --dry-run           # CPU path, tiny model, seconds (a test runs it)

`--install` pip-installs what is missing (trl, peft, liger-kernel, the project itself) from the
package registries; a package that cannot be installed is reported and its runs are skipped.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PACKAGES = {"trl": "trl>=0.20", "peft": "peft", "liger_kernel": "liger-kernel", "psutil": "psutil"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def install(missing_ok: bool = True) -> dict[str, str]:
    """pip-install the project and what the anchors need; what happened to each."""
    status = {}
    if importlib.util.find_spec("instill") is None:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "-e", str(HERE.parent)]
        ok = subprocess.run(cmd, check=False).returncode == 0
        status["instill"] = "installed" if ok else "install failed"
    for module, spec in PACKAGES.items():
        if importlib.util.find_spec(module) is not None:
            status[module] = "present"
            continue
        cmd = [sys.executable, "-m", "pip", "install", "-q", spec]
        ok = subprocess.run(cmd, check=False).returncode == 0
        status[module] = "installed" if ok else "install failed"
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma")
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=3, help="first steps not timed")
    parser.add_argument("--budget-s", type=float, default=480, help="no run starts after this")
    parser.add_argument("--install", action="store_true", help="pip-install what is missing")
    parser.add_argument(
        "--dry-run", action="store_true", help="the CPU path: tiny model, 3 steps, no Liger"
    )
    parser.add_argument("--workdir", default=None)
    opts = parser.parse_args(argv)
    started = time.perf_counter()
    installed = install() if opts.install else {}

    import warnings

    warnings.filterwarnings("ignore")
    import torch
    import train_throughput as tt
    from data_pipeline import as_messages, machine, make_rows, versions, write_jsonl

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not opts.dry_run:
        parser.error("no CUDA device here: run with --dry-run for the CPU path")
    models = ["tiny"] if opts.dry_run else opts.models.split(",")
    methods = opts.methods.split(",")
    steps = 3 if opts.dry_run else opts.steps
    warmup = 1 if opts.dry_run else opts.warmup_steps
    systems = ["instill", "trl-defaults", "trl-fastest"]
    has_trl = importlib.util.find_spec("trl") is not None
    if not opts.dry_run and importlib.util.find_spec("liger_kernel") is not None:
        systems.append("trl-liger")

    workdir = Path(tempfile.mkdtemp(prefix="bench-gpu-", dir=opts.workdir))
    rows = make_rows(max(256, steps * tt.BATCH * 5), tt.SEED)
    files = {
        "messages": write_jsonl(workdir / "rows.messages.jsonl", map(as_messages, rows)),
        "rows": write_jsonl(workdir / "rows.jsonl", rows),
    }
    peak = tt.run_child("--peak", {}, workdir, "peak", 300)
    compute = peak["compute"]
    peak_tflops = peak[compute]["tflops"]
    device = torch.cuda.get_device_name(0) if on_gpu else "cpu"
    info = {
        "bench": "gpu_bench",
        "device": device,
        "machine": machine(),
        "versions": {**versions(), "liger_kernel": tt._version("liger-kernel")},
        "installed": installed,
        "compute_dtype": compute,
        "matmul_peak_tflops": round(peak_tflops, 3),
        "dry_run": opts.dry_run,
    }
    log(f"{device}: {compute} matmul peak {peak_tflops:.1f} TFLOP/s")
    print(json.dumps({**info, "run": "matmul_peak", "peak": peak}), flush=True)
    failures = 0
    for model in models:
        inputs = tt.prepare_model_inputs(model, workdir, files["messages"])
        for method in methods:
            for system in systems:
                label = f"{model}-{method}-{system}"
                line = {**info, "model": model, "method": method, "system": system}
                line["setting"] = tt.SETTING[system]
                if system.startswith("trl") and not has_trl:
                    print(json.dumps({**line, "skipped": "trl is not installed"}), flush=True)
                    continue
                if time.perf_counter() - started > opts.budget_s:
                    print(json.dumps({**line, "skipped": "time budget spent"}), flush=True)
                    continue
                spec = {
                    "system": system,
                    "model": model,
                    "method": method,
                    "steps": steps,
                    "lr": tt.LR[method],
                    "dtype": "auto",
                    "packing": True,
                    "messages_jsonl": str(files["messages"]),
                    "rows_jsonl": str(files["rows"]),
                    "output_dir": str(workdir / label),
                    **inputs,
                }
                left = max(60.0, opts.budget_s - (time.perf_counter() - started) + 120)
                try:
                    res = tt.run_child("--child", spec, workdir, label, left)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    failures += 1
                    print(json.dumps({**line, "failed": str(e)[-2000:]}), flush=True)
                    continue
                fig = tt.summarize(res, method, warmup, peak_tflops)
                allocated = res.get("peak_cuda_allocated_bytes")
                line.update(
                    tokens_per_s_per_gpu=fig["tokens_per_s"],
                    supervised_tokens_per_s_per_gpu=fig["supervised_tokens_per_s"],
                    seconds_per_step=fig["seconds_per_step"],
                    mfu=fig["mfu"],
                    peak_allocated_gb=round(allocated / 1e9, 3) if allocated else None,
                    peak_rss_gb=fig["peak_rss_gb"],
                    attention_kernels=res.get("attention_kernels"),
                    attn_implementation=res.get("attn_implementation"),
                    gradient_checkpointing=res.get("gradient_checkpointing"),
                    losses=fig["losses"],
                )
                log(
                    f"{label}: {fig['supervised_tokens_per_s']:.0f} supervised tok/s, "
                    f"MFU {100 * fig['mfu']:.1f}%"
                )
                print(json.dumps(line), flush=True)
    log(f"whole run: {time.perf_counter() - started:.0f}s; work files in {workdir}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
