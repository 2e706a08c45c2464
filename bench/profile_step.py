"""Where an instill training step's time goes: a torch.profiler breakdown of real steps.

Runs `instill.train.loop.train` on the same synthetic rows, model, batch (8 x 512, packed) and
settings as `bench/train_throughput.py`, lets `--warmup-steps` steps pass untimed, then profiles
the next `--steps` optimizer steps and attributes every operator's *self* CPU time (time spent
in the operator itself, not in the operators it calls) to one component:

* ``phase``: the data (collate), forward, backward and optimizer parts of each step, from
  `record_function` labels put around the loop's calls (wall time, children included);
* ``component``: matmuls split by their shapes into the LM head (an operand with the
  vocabulary's size), LoRA's low-rank matmuls (an operand of size r) and the body's linears;
  attention (SDPA kernels, or every operator of instill's CPU attention, its matmuls and
  compiled kernels included, forward and backward); dtype casts and copies; the optimizer's
  kernels; everything else (norms, activations, rotary, indexing, elementwise).

Each matmul's FLOPs are counted from its shapes, so the table also shows the TFLOP/s each kind of
matmul reaches against the matmul peak of the run's compute dtype, measured in the same run.
Prints one JSON line on stdout and a Markdown table on stderr.

    .venv/bin/python bench/profile_step.py --model smollm2 --method lora
    .venv/bin/python bench/profile_step.py --model tiny --steps 1 --warmup-steps 1   # smoke test
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import contextlib
import json
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_pipeline import as_messages, command, machine, make_rows, versions, write_jsonl
from train_throughput import BATCH, LR, MODELS, SEED, instill_config, matmul_tflops

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv")
CASTS = ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous")


def matmul_flops(name: str, shapes: list) -> int:
    """2 x m x n x k of one matmul event, from its recorded input shapes."""
    dims = [s for s in shapes if isinstance(s, list) and len(s) >= 2]
    if name in ("aten::mm", "aten::addmm") and len(dims) >= 2:
        a, b = dims[-2], dims[-1]
        return 2 * a[0] * a[1] * b[1]
    if name in ("aten::bmm", "aten::baddbmm") and len(dims) >= 2:
        a, b = dims[-2], dims[-1]
        return 2 * a[0] * a[1] * a[2] * b[2]
    return 0


# Autograd nodes whose operators are attention or the LM head's loss whatever their names (the
# matmul attention of `instill.models.cpu_attention`, the fused loss of `models/loss.py`).
SCOPES = {
    "CausalAttention": "attention",
    "CausalAttentionBackward": "attention",
    "LinearCrossEntropy": "loss (log-softmax, NLL)",
    "LinearCrossEntropyBackward": "loss (log-softmax, NLL)",
}


def scope_of(ev) -> str | None:
    """The `SCOPES` component of the nearest enclosing autograd node, if any."""
    parent = ev.cpu_parent
    while parent is not None:
        name = parent.name.removeprefix("autograd::engine::evaluate_function: ")
        if name in SCOPES:
            return SCOPES[name]
        parent = parent.cpu_parent
    return None


def classify(
    name: str, shapes: list, vocab: int, rank: int | None, scope: str | None = None
) -> str:
    if scope == "attention":  # its matmuls too: the attention's, not the body's
        return scope
    if name in MATMULS:
        flat = {d for s in shapes if isinstance(s, list) for d in s}
        if vocab in flat:
            return "matmul: LM head"
        if rank is not None and rank in flat:
            return "matmul: LoRA low-rank"
        return "matmul: body linears"
    if "scaled_dot_product" in name or "flash_attention" in name or "attention" in name:
        return "attention"
    if scope is not None:  # a compiled kernel of the loss
        return scope
    if name in CASTS:
        return "casts and copies"
    if "adam" in name.lower() or name.startswith("aten::_foreach"):
        return "optimizer kernels"
    if "nll_loss" in name or "log_softmax" in name or "cross_entropy" in name:
        return "loss (log-softmax, NLL)"
    return "other (norms, activations, rotary, indexing, elementwise)"


class _Stop(Exception):
    pass


def profile(opts) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, record_function

    from instill.config import validate_config
    from instill.models.load import detect_compute_dtype
    from instill.train import loop, sft

    torch.set_num_threads(opts.threads)
    # The peak of the dtype the run computes in: bf16 where the CPU has it natively, else fp32
    # (emulated bf16 matmuls run at ~1 GFLOP/s on an AVX2-only host: no run uses them there).
    dtype = detect_compute_dtype("cpu")
    peak = matmul_tflops(dtype)["tflops"]
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    rows = make_rows(max(256, (opts.warmup_steps + opts.steps) * BATCH * 5), SEED)
    messages = write_jsonl(workdir / "rows.messages.jsonl", map(as_messages, rows))
    spec = {
        "system": "instill-gc" if opts.gradient_checkpointing else "instill",
        "model": opts.model,
        "method": opts.method,
        "steps": opts.warmup_steps + opts.steps,
        "lr": LR[opts.method],
        "dtype": "auto",
        "packing": True,
        "messages_jsonl": str(messages),
        "output_dir": str(workdir / "run"),
    }
    config = validate_config(instill_config(spec))
    prof = torch.profiler.profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    captured: dict = {"ends": []}
    orig_build_run, orig_collate, orig_logger = loop.build_run, sft.collate, loop.MetricLogger

    def labelled(fn, label):
        def wrapper(*a, **kw):
            with record_function(label):
                return fn(*a, **kw)

        return wrapper

    def build_run(config, resume=False):
        run = orig_build_run(config, resume)
        captured["run"] = run
        run.loss_model.forward = labelled(run.loss_model.forward, "phase: forward")
        run.accelerator.backward = labelled(run.accelerator.backward, "phase: backward")
        run.optimizer.step = labelled(run.optimizer.step, "phase: optimizer step")
        return run

    class Logger(orig_logger):
        def log(self, step, metrics):
            super().log(step, metrics)
            if "train/loss" not in metrics:
                return
            captured["ends"].append(time.perf_counter())
            if step == opts.warmup_steps:
                prof.start()
            if step == opts.warmup_steps + opts.steps:
                prof.stop()
                raise _Stop

    loop.build_run, loop.MetricLogger = build_run, Logger
    sft.collate = labelled(orig_collate, "phase: data (collate)")
    try:
        with contextlib.suppress(_Stop):
            loop.train(config)
    finally:
        loop.build_run, sft.collate, loop.MetricLogger = orig_build_run, orig_collate, orig_logger
    run = captured["run"]
    base = run.model.get_base_model() if hasattr(run.model, "get_base_model") else run.model
    vocab = base.get_output_embeddings().weight.shape[0]
    rank = config.train.lora.r if opts.method in ("lora", "qlora") else None
    ends = captured["ends"]
    wall = ends[-1] - ends[opts.warmup_steps - 1]

    phases: dict[str, float] = defaultdict(float)
    comps: dict[str, float] = defaultdict(float)
    comp_flops: dict[str, int] = defaultdict(int)
    ops: dict[str, float] = defaultdict(float)
    shaped: dict[str, float] = defaultdict(float)
    for ev in prof.events():
        if ev.name.startswith("phase: "):
            phases[ev.name.removeprefix("phase: ")] += ev.cpu_time_total / 1e6
            continue
        compiled = ev.name.startswith("## Call CompiledFxGraph")  # a torch.compile'd kernel
        if ev.name.startswith("ProfilerStep") or (ev.name.startswith("## ") and not compiled):
            continue
        self_s = ev.self_cpu_time_total / 1e6
        if self_s <= 0:
            continue
        kind = classify(ev.name, ev.input_shapes or [], vocab, rank, scope_of(ev))
        comps[kind] += self_s
        ops[ev.name] += self_s
        shaped[f"{ev.name} {ev.input_shapes}"] += self_s
        if kind.startswith("matmul"):
            comp_flops[kind] += matmul_flops(ev.name, ev.input_shapes or [])
    profiled = sum(comps.values())
    table = []
    for kind, s in sorted(comps.items(), key=lambda kv: -kv[1]):
        entry = {"component": kind, "seconds_per_step": round(s / opts.steps, 3)}
        entry["share_of_op_time"] = round(s / profiled, 4)
        if comp_flops.get(kind):
            tf = comp_flops[kind] / s / 1e12
            entry["tflops"] = round(tf, 3)
            entry["share_of_peak"] = round(tf / peak, 3)
        table.append(entry)
    top = sorted(ops.items(), key=lambda kv: -kv[1])[: opts.top]
    top_shaped = sorted(shaped.items(), key=lambda kv: -kv[1])[: opts.top]
    out = {
        "bench": "profile_step",
        "model": opts.model,
        "model_name": MODELS[opts.model][0],
        "method": opts.method,
        "gradient_checkpointing": opts.gradient_checkpointing,
        "batch": f"{BATCH} x {config.data.max_length} (packed)",
        "steps_profiled": opts.steps,
        "wall_seconds_per_step": round(wall / opts.steps, 3),
        "op_seconds_per_step": round(profiled / opts.steps, 3),
        "compute_dtype": str(dtype).removeprefix("torch."),
        "matmul_peak_tflops": round(peak, 3),
        "matmul_share_of_peak": round(
            sum(comp_flops.values()) / max(1e-9, sum(comps[k] for k in comp_flops)) / 1e12 / peak,
            3,
        ),
        "phases_seconds_per_step": {k: round(v / opts.steps, 3) for k, v in phases.items()},
        "components": table,
        "top_ops": [{"op": k, "seconds_per_step": round(v / opts.steps, 3)} for k, v in top],
        "top_ops_by_shape": [
            {"op": k, "seconds_per_step": round(v / opts.steps, 3)} for k, v in top_shaped
        ],
        "machine": machine(),
        "versions": versions(),
        "command": command(),
        "threads": torch.get_num_threads(),
    }
    if not opts.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return out


def markdown(out: dict) -> str:
    lines = [
        f"{out['model_name']} {out['method']}, batch {out['batch']}: "
        f"{out['wall_seconds_per_step']} s/step wall, {out['op_seconds_per_step']} s/step in "
        f"operators; {out['compute_dtype']} matmul peak {out['matmul_peak_tflops']} TFLOP/s",
        "",
        "| phase | s/step |",
        "|---|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in out["phases_seconds_per_step"].items()),
        "",
        "| component (self time) | s/step | share | TFLOP/s | of peak |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in out["components"]:
        tf = f"{c['tflops']:.3f}" if "tflops" in c else ""
        pk = f"{100 * c['share_of_peak']:.0f}%" if "share_of_peak" in c else ""
        lines.append(
            f"| {c['component']} | {c['seconds_per_step']:.3f} | "
            f"{100 * c['share_of_op_time']:.1f}% | {tf} | {pk} |"
        )
    lines += ["", "| top operator | s/step |", "|---|---:|"]
    lines += [f"| `{o['op']}` | {o['seconds_per_step']:.3f} |" for o in out["top_ops"]]
    lines += ["", "| top operator, by input shapes | s/step |", "|---|---:|"]
    lines += [f"| `{o['op']}` | {o['seconds_per_step']:.3f} |" for o in out["top_ops_by_shape"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", choices=sorted(MODELS))
    parser.add_argument("--method", default="lora", choices=sorted(LR))
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps profiled")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps before profiling")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15, help="operators listed by self time")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    opts = parser.parse_args(argv)
    if opts.steps < 1 or opts.warmup_steps < 1:
        parser.error("need --steps >= 1 and --warmup-steps >= 1")
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    out = profile(opts)
    print(json.dumps(out), flush=True)
    print(markdown(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
