"""Training-throughput benchmark: instill `train` vs TRL `SFTTrainer`, side by side, on the CPU.

Every (model, method, system) runs in its own child process, one after the other (never two at
once), alternating systems within each model and method, so that peak RSS is per system and a
slow spell of this shared machine hits every system rather than one.

Same work for every system (bench/../shared BENCHMARKS.md section 1):

* the same deterministic synthetic Alpaca-style conversational rows as `bench/data_pipeline.py`
  (median ~134 tokens with SmolLM2's template), the same tokenizer and chat template (the model's
  own for SmolLM2 and the tiny model; instill's built-in `gemma` template for Gemma 3 base, which
  TRL gets through the `chat_template` of the tokenizer instill prepares), response-only loss
  (instill: assistant turns; TRL: conversational prompt-completion rows, i.e. completion-only
  loss), `max_length` 512, batch 8 rows, grad accumulation 1, LoRA (r=16, alpha=32, all linear
  layers, no dropout) or full fine-tuning, AdamW (betas 0.9/0.999, eps 1e-8, no weight decay),
  the same constant learning rate without warm-up, gradient clipping at 1.0, bf16 autocast, the
  same number of optimizer steps, 2 threads.
* **instill** runs with its defaults otherwise: `instill.train.loop.train(validate_config(...))`
  with packing on (best-fit-decreasing rows of <= 512 tokens), supervised-only chunked logits,
  no gradient checkpointing, frozen LoRA base weights stored in bf16.
* **TRL defaults**: `SFTConfig` defaults (no packing, gradient checkpointing on, model loaded in
  float32, `bf16=True`); rows given in the order instill's seeded permutation uses them, read
  sequentially (`train_sampling_strategy="sequential"`, the switch behind
  `Trainer._get_train_sampler`).
* **TRL fastest**: `packing=True` (BFD, which turns padding-free on) and gradient checkpointing off;
  TRL's own random sampler over its packed rows (sequential order would feed BFD's longest-first
  rows).

What is measured in each child: the wall time from the end of optimizer step `--warmup-steps` to
the end of the last step (instill: the loop's metric call of each step; TRL: `on_step_end`), the
tokens of those steps taken from the exact batches each system trained on (instill: a wrapper
around `collate`; TRL: its `compute_loss` inputs), peak RSS (`getrusage` of the child: the
whole process; and the largest 20 Hz psutil sample once training started), and MFU: model FLOPs
actually needed over the matmul peak of the compute dtype (bf16 where the CPU has it natively,
else fp32 for every system) measured in the same run (see `flops()`).
The instill child stops after the last step is logged (TRL saves nothing either).

Correctness parity (BENCHMARKS.md section 2): full fine-tuning, fp32 (no autocast), no packing,
instill's data order for TRL (sequential sampler), gradient checkpointing off on both (it does not
change the math), the first `--parity-steps` per-step mean token losses of instill and TRL are
compared. TRL runs twice: on instill's exact tokenized rows (`input_ids` + `labels`, so the labels
are identical) and on its own tokenization of the prompt-completion rows (which also trains the
newline after the end-of-turn token, see bench/RESULTS.md "Data pipeline").

Prints one JSON line per system and setting on stdout, and a Markdown table on stderr.
Run `.venv/bin/python bench/train_throughput.py --help`; smoke test: `--models tiny --steps 3`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import contextlib
import itertools
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_pipeline import (
    as_messages,
    as_prompt_completion,
    command,
    machine,
    make_rows,
    source_digest,
    versions,
    write_jsonl,
)

IGNORE_INDEX = -100
MAX_LENGTH = 512
BATCH = 8
SEED = 0
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "targets": "all-linear"}
LR = {"lora": 2e-4, "full": 2e-5}
# bench name -> (instill model name, instill data.template)
MODELS = {
    "tiny": ("tiny-random-qwen", "tokenizer"),
    "smollm2": ("smollm2-135m-instruct", "tokenizer"),
    "gemma": ("gemma-3-270m", "gemma"),
}
SYSTEMS = ("instill", "instill-gc", "trl-defaults", "trl-fastest", "trl-liger")
DEFAULT_SYSTEMS = ("instill", "trl-defaults", "trl-fastest")
SETTING = {
    "instill": "defaults (packing, no grad ckpt)",
    "instill-gc": "packing, gradient_checkpointing=true",
    "trl-defaults": "defaults (no packing, grad ckpt)",
    "trl-fastest": "packing=bfd (padding-free), no grad ckpt",
    "trl-liger": "packing=bfd (padding-free), no grad ckpt, Liger kernels",
}


DEFAULT_STEPS = "smollm2=4,gemma=3"
FALLBACK_STEPS = 4


def parse_steps(text: str) -> dict[str, int]:
    """`12` (every model) or `smollm2=4,gemma=3` (others: FALLBACK_STEPS)."""
    out = {"*": FALLBACK_STEPS}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        name, _, n = part.rpartition("=")
        if name and name not in MODELS:
            raise ValueError(f"--steps: unknown model {name!r}")
        out[name or "*"] = int(n)
    return out


def steps_for(steps: dict[str, int], model: str) -> int:
    return steps.get(model, steps["*"])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# =========================================================================== child side


class RssSampler:
    """Samples this process's RSS at 20 Hz; `peak_since_mark` is the peak after `mark()`."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = 0
        self.peak_since_mark = 0
        self.at_mark = None
        self._marked = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> int:
        rss = self._proc.memory_info().rss
        self.peak = max(self.peak, rss)
        if self._marked:
            self.peak_since_mark = max(self.peak_since_mark, rss)
        return rss

    def mark(self) -> None:
        if not self._marked:
            self.at_mark = self.sample()
            self._marked = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def max_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def doc_lengths(position_ids: list[int]) -> list[int]:
    """Lengths of the sequences in a packed row (position ids restart at 0 for each)."""
    starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(position_ids)]
    return [b - a for a, b in itertools.pairwise(starts) if b > a]


@dataclass
class BatchStats:
    tokens: int  # non-pad tokens
    supervised: int  # positions whose next-token label is trained
    sum_sq_len: int  # sum over sequences of length^2 (attention FLOPs)
    rows: int  # batch rows
    sequences: int  # examples (documents) in the batch

    def to_json(self) -> dict:
        return self.__dict__.copy()


def model_shape(model) -> dict:
    """Parameter counts of the matmul paths and the attention width, for `flops()`."""
    from torch import nn

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    body = lora = 0
    for name, m in decoder.named_modules():
        if isinstance(m, nn.Linear):
            if "lora_" in name:
                lora += m.weight.numel()
            else:
                body += m.weight.numel()
    head = base.get_output_embeddings().weight
    emb = base.get_input_embeddings().weight
    cfg = base.config.get_text_config()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return {
        "body_linear_params": body,
        "lora_params": lora,
        "head_params": head.numel(),
        "tied_embeddings": head.data_ptr() == emb.data_ptr(),
        "total_params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "layers": cfg.num_hidden_layers,
        "attn_width": heads * head_dim,
        "vocab": head.shape[0],
    }


def flops(shape: dict, method: str, stats: list[dict]) -> float:
    """Model FLOPs actually needed to train on `stats` (the batches), forward + backward.

    Per non-pad token t and supervised position s (both counted from the real batches):

    * full:  6 x body_linear x t  +  6 x head x s
    * LoRA:  4 x body_linear x t  +  4 x head x s  +  6 x lora x t  (the standard approximation:
      frozen weights need the forward and the input-gradient matmuls, 2 + 2 FLOPs per weight and
      token, but no weight gradient; adapters need all three)
    * plus causal attention, 6 x layers x (heads x head_dim) x sum over sequences of length^2
      (QK^T and AV forward are 2 x width x n^2 / 2 each, backward twice the forward).

    The LM head is counted only where a label is trained, for every system: that is the work
    the objective needs (computing logits elsewhere is waste, not useful FLOPs). Embedding
    lookups and norms are not counted.
    """
    t = sum(b["tokens"] for b in stats)
    s = sum(b["supervised"] for b in stats)
    sq = sum(b["sum_sq_len"] for b in stats)
    attn = 6 * shape["layers"] * shape["attn_width"] * sq
    if method == "full":
        return 6 * shape["body_linear_params"] * t + 6 * shape["head_params"] * s + attn
    return (
        4 * shape["body_linear_params"] * t
        + 4 * shape["head_params"] * s
        + 6 * shape["lora_params"] * t
        + attn
    )


class Recorder:
    """What a child collects while its system trains."""

    def __init__(self, rss: RssSampler) -> None:
        self.rss = rss
        self.step_end: list[float] = []  # perf_counter at the end of each optimizer step
        self.step_cpu: list[float] = []  # CPU seconds of this process (all threads) by then
        self.batches: list[dict] = []  # BatchStats of each micro-batch, in order
        self.losses: list[float] = []
        self.train_started: float | None = None

    def end_step(self) -> None:
        self.step_end.append(time.perf_counter())
        self.step_cpu.append(time.process_time())

    def start(self) -> None:
        if self.train_started is None:
            self.train_started = time.perf_counter()
            self.rss.mark()


def instill_config(spec: dict) -> dict:
    name, template = MODELS[spec["model"]]
    train = {
        "method": spec["method"],
        "max_steps": spec["steps"],
        "batch_size": BATCH,
        "grad_accum": 1,
        "lr": spec["lr"],
        "schedule": "constant",
        "warmup_ratio": 0.0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "log_every": 1,
        "save_every": 0,
        "gradient_checkpointing": spec["system"] == "instill-gc",
        "logging": {"tensorboard": False},
    }
    if spec["method"] == "lora":
        train["lora"] = dict(LORA)
    return {
        "model": {"path": name, "dtype": spec["dtype"]},
        "data": {
            "sources": [{"path": spec["messages_jsonl"]}],
            "template": template,
            "max_length": MAX_LENGTH,
            "packing": spec["packing"],
            "num_proc": 1,
        },
        "train": train,
        "output_dir": spec["output_dir"],
        "seed": SEED,
    }


class _StopAfterLastStep(Exception):
    """Raised from the metric logger after the last step: nothing after it is measured."""


def child_instill(spec: dict, rec: Recorder) -> dict:
    from instill.config import validate_config
    from instill.train import loop, sft

    steps = spec["steps"]
    captured = {}
    orig_build_run, orig_collate, orig_logger = loop.build_run, sft.collate, loop.MetricLogger

    def build_run(config, resume=False):
        run = orig_build_run(config, resume)
        captured["run"] = run
        return run

    def collate(data, idx, pad_id, fixed):
        rec.start()
        lengths, sq, sup = 0, 0, 0
        seqs = 0
        for i in idx:
            row = data.row(i)
            n = len(row["input_ids"])
            lengths += n
            docs = doc_lengths(row["position_ids"].tolist()) if data.packed else [n]
            seqs += len(docs)
            sq += sum(d * d for d in docs)
            sup += int(data.supervised[i])
        rec.batches.append(BatchStats(lengths, sup, sq, len(idx), seqs).to_json())
        return orig_collate(data, idx, pad_id, fixed)

    class Logger(orig_logger):
        def log(self, step, metrics):
            super().log(step, metrics)
            if "train/loss" in metrics:
                rec.end_step()
                rec.losses.append(float(metrics["train/loss"]))
                if step >= steps:
                    raise _StopAfterLastStep

    loop.build_run, sft.collate, loop.MetricLogger = build_run, collate, Logger
    with contextlib.suppress(_StopAfterLastStep):
        loop.train(validate_config(instill_config(spec)))
    run = captured["run"]
    loop.build_run, sft.collate, loop.MetricLogger = orig_build_run, orig_collate, orig_logger
    extra = {
        "packed": run.packed,
        "training_rows": len(run.train_rows),
        "compute": "bf16 autocast" if run.accelerator.mixed_precision == "bf16" else "fp32",
        "attn_implementation": run.model.config._attn_implementation
        if hasattr(run.model, "config")
        else None,
        "gradient_checkpointing": run.gradient_checkpointing,
        "optimizer": type(run.optimizer).__name__,
        "attention_kernels": attention_kernels(run),
    }
    return {"shape": model_shape(run.model), **extra}


def attention_kernels(run) -> list[str]:
    """The attention kernels one packed forward of the trained model runs (profiler names).

    On a GPU, packed rows should reach flash / varlen kernels (`flash`, `fmha`, `varlen`);
    on the CPU, SDPA's flash-attention-for-CPU kernel.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    batch = run.objective.batch(run.train_rows, [0])
    batch = {k: v.to(run.accelerator.device) if v is not None else None for k, v in batch.items()}
    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with torch.no_grad(), run.accelerator.autocast(), profile(activities=activities) as prof:
        run.loss_model(**batch)
    keys = ("flash", "fmha", "varlen", "attention", "scaled_dot_product")
    names = {e.key for e in prof.key_averages() if any(k in e.key.lower() for k in keys)}
    return sorted(names)


def trl_dataset(spec: dict):
    """The rows TRL trains on, in instill's epoch-0 order (see the module docstring)."""
    import datasets

    order = json.loads(Path(spec["order_json"]).read_text())
    if spec.get("pretokenized"):  # instill's exact input_ids and labels
        ex = json.loads(Path(spec["examples_json"]).read_text())
        return datasets.Dataset.from_dict(
            {
                "input_ids": [ex["input_ids"][i] for i in order],
                "labels": [ex["labels"][i] for i in order],
            }
        )
    rows = [json.loads(line) for line in Path(spec["rows_jsonl"]).read_text().splitlines()]
    return datasets.Dataset.from_list([as_prompt_completion(rows[i]) for i in order])


def child_trl(spec: dict, rec: Recorder) -> dict:
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    fastest = spec["system"] in ("trl-fastest", "trl-liger")
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    kwargs = {}
    if fastest:
        kwargs.update(packing=True, gradient_checkpointing=False)
    if spec["system"] == "trl-liger":
        kwargs["use_liger_kernel"] = True
    if spec.get("gradient_checkpointing") is not None:
        kwargs["gradient_checkpointing"] = spec["gradient_checkpointing"]
    if not fastest:
        kwargs["train_sampling_strategy"] = "sequential"
    args = SFTConfig(
        output_dir=spec["output_dir"],
        max_length=MAX_LENGTH,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_steps=spec["steps"],
        bf16=spec["dtype"] == "auto" and compute_dtype_name() == "bfloat16",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=device_name() == "cpu",
        seed=SEED,
        dataset_num_proc=None,
        disable_tqdm=True,
        **kwargs,
    )
    peft_config = None
    if spec["method"] == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules="all-linear",
            bias="none",
            task_type="CAUSAL_LM",
        )

    class Trainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                rec.start()
                rec.batches.append(trl_batch_stats(inputs).to_json())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def training_step(self, *a, **kw):
            loss = super().training_step(*a, **kw)
            rec.losses.append(float(loss))
            return loss

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            rec.end_step()

    trainer = Trainer(
        model=spec["model_dir"],
        args=args,
        train_dataset=trl_dataset(spec),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[Clock()],
    )
    check = None
    if spec.get("examples_json") and not fastest and not spec.get("pretokenized"):
        check = same_work_check(spec, trainer.train_dataset, tokenizer)
    model = trainer.model
    extra = {
        "packing": args.packing,
        "padding_free": trainer.padding_free,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "completion_only_loss": trainer.completion_only_loss,
        "compute": "bf16 autocast" if args.bf16 else "fp32",
        "weights_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "attn_implementation": getattr(
            getattr(model, "config", None), "_attn_implementation", None
        ),
        "optim": str(args.optim),
        "sampler": "sequential" if not fastest else "random (TRL default)",
        "training_rows": len(trainer.train_dataset),
    }
    trainer.train()
    return {"shape": model_shape(model), **extra, "same_work_check": check}


def trl_batch_stats(inputs: dict) -> BatchStats:
    labels = inputs["labels"]
    sup = int((labels[:, 1:] != IGNORE_INDEX).sum())
    if inputs.get("attention_mask") is not None:
        lens = inputs["attention_mask"].sum(dim=1).tolist()
        seqs = lens
    else:  # padding-free: one row, sequences marked by restarting position ids
        seqs = []
        for row in inputs["position_ids"].tolist():
            seqs += doc_lengths(row)
    return BatchStats(
        tokens=int(sum(seqs)),
        supervised=sup,
        sum_sq_len=int(sum(n * n for n in seqs)),
        rows=int(labels.shape[0]),
        sequences=len(seqs),
    )


def same_work_check(spec: dict, ds, tokenizer) -> dict:
    """TRL's tokenized rows against instill's unpacked examples, in the same order."""
    ex = json.loads(Path(spec["examples_json"]).read_text())
    order = json.loads(Path(spec["order_json"]).read_text())
    ids, labels = ds["input_ids"], ds["labels"]
    n = min(len(order), len(ids))
    same_ids = same_labels = 0
    only_trl: dict[str, int] = {}
    only_instill = 0
    for k in range(n):
        a_ids, a_lab = ex["input_ids"][order[k]], ex["labels"][order[k]]
        same_ids += a_ids == ids[k]
        if a_lab == labels[k]:
            same_labels += 1
            continue
        for x, y in zip(a_lab, labels[k], strict=False):
            if x == IGNORE_INDEX and y != IGNORE_INDEX:
                key = tokenizer.convert_ids_to_tokens(y)
                only_trl[key] = only_trl.get(key, 0) + 1
            elif x != IGNORE_INDEX and y == IGNORE_INDEX:
                only_instill += 1
    return {
        "rows_compared": n,
        "identical_input_ids": same_ids,
        "identical_labels": same_labels,
        "tokens_trained_only_by_trl": only_trl,
        "tokens_trained_only_by_instill": only_instill,
    }


def child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    rss = RssSampler()
    rec = Recorder(rss)
    t0 = time.perf_counter()
    import torch

    # A short matmul probe (in the compute dtype) before each run: this machine's speed drifts
    # (shared host), and the run's peak is the best of all probes.
    probe = matmul_tflops(getattr(torch, compute_dtype_name()), ((1024, 20), (2048, 8)))
    torch.manual_seed(SEED)
    if spec["system"].startswith("instill"):
        info = child_instill(spec, rec)
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        info = child_trl(spec, rec)
    rss.stop()
    out = {
        **info,
        "torch_threads": torch.get_num_threads(),
        "matmul_probe": probe,
        "peak_cuda_allocated_bytes": torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else None,
        "step_end": [t - rec.train_started for t in rec.step_end],
        "step_cpu": rec.step_cpu,
        "loadavg_end": os.getloadavg(),
        "batches": rec.batches,
        "losses": rec.losses,
        "peak_rss_bytes": max_rss_bytes(),
        "train_peak_rss_bytes": rss.peak_since_mark,
        "rss_at_train_start_bytes": rss.at_mark,
        "child_seconds": time.perf_counter() - t0,
    }
    Path(spec["result_json"]).write_text(json.dumps(out))
    return 0


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype_name() -> str:
    """What instill computes in here (`model.dtype: auto`): bf16 where the hardware has it.

    A CPU without native bf16 (AVX2 only) emulates bf16 matmuls at ~1 GFLOP/s; every system
    then runs fp32, and MFU is against the fp32 peak.
    """
    from instill.models.load import detect_compute_dtype

    return str(detect_compute_dtype(device_name())).removeprefix("torch.")


def matmul_tflops(dtype, sizes=((1024, 40), (2048, 12), (4096, 6)), device=None) -> dict:
    """Best TFLOP/s of square `torch.matmul`s of each size (the fastest size is the peak)."""
    import torch

    device = device or device_name()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = {}
    for n, reps in sizes:
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        for _ in range(3):
            torch.matmul(a, b)
        seconds = float("inf")
        for _ in range(reps):
            sync()
            t = time.perf_counter()
            torch.matmul(a, b)
            sync()
            seconds = min(seconds, time.perf_counter() - t)
        best[n] = 2 * n**3 / seconds / 1e12
    n = max(best, key=best.get)
    return {"tflops": best[n], "n": n, "by_size": {str(k): round(v, 3) for k, v in best.items()}}


def peak_main(result_path: str) -> int:
    """bf16 (where native) and fp32 matmul peaks with 2 threads: best of several runs."""
    import torch

    torch.set_num_threads(2)
    dtypes = [torch.float32]
    if compute_dtype_name() == "bfloat16":
        dtypes.insert(0, torch.bfloat16)
    sizes = (
        ((4096, 20), (8192, 10)) if device_name() == "cuda" else ((1024, 40), (2048, 12), (4096, 6))
    )
    out = {str(d).removeprefix("torch."): matmul_tflops(d, sizes) for d in dtypes}
    out["compute"] = compute_dtype_name()
    out["threads"] = torch.get_num_threads()
    Path(result_path).write_text(json.dumps(out))
    return 0


# =========================================================================== parent side


def run_child(
    kind: str, spec: dict, workdir: Path, label: str, timeout: float, allocator: str = "system"
) -> dict:
    """Run one child process to completion (the only heavy process), return its result.

    `allocator` (an `INSTILL_ALLOCATOR` value) is preloaded in the child as the `instill` command
    preloads it; `system` leaves the C library's malloc (as TRL runs).
    """
    from instill.allocator import choose

    chosen = choose(allocator)
    env = chosen.environ() if chosen else dict(os.environ)
    if chosen is None:  # this process's own preload (if any) would carry over
        env.pop("LD_PRELOAD", None)
    spec_path = workdir / f"{label}.spec.json"
    result_path = workdir / f"{label}.result.json"
    log_path = workdir / f"{label}.log"
    spec = {**spec, "result_json": str(result_path)}
    spec_path.write_text(json.dumps(spec))
    arg = [str(result_path)] if kind == "--peak" else [str(spec_path)]
    started = time.perf_counter()
    with log_path.open("w") as f:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), kind, *arg],
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            env=env,
        )
    if proc.returncode != 0 or not result_path.is_file():
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{label} failed (exit {proc.returncode}); log tail:\n{tail}")
    result = json.loads(result_path.read_text())
    result["allocator"] = chosen.name if chosen else "system"
    result["wall_seconds"] = time.perf_counter() - started
    return result


def prepare_model_inputs(model: str, workdir: Path, messages_jsonl: Path) -> dict:
    """instill's unpacked examples (order, labels) and its prepared tokenizer, for TRL."""
    from instill.config import validate_config
    from instill.data.prepare import prepare
    from instill.models.tokenizer_loading import load_tokenizer_for
    from instill.train.data import epoch_permutation

    name, template = MODELS[model]
    out = workdir / f"{model}-prepare"
    config = validate_config(
        {
            "model": {"path": name},
            "data": {
                "sources": [{"path": str(messages_jsonl)}],
                "template": template,
                "max_length": MAX_LENGTH,
                "packing": False,
                "num_proc": 1,
            },
            "output_dir": str(out),
        }
    )
    prepared = prepare(config, load_tokenizer_for(config), progress=False)
    examples = {
        "input_ids": [e.input_ids for e in prepared.examples],
        "labels": [e.labels for e in prepared.examples],
    }
    examples_json = workdir / f"{model}-examples.json"
    examples_json.write_text(json.dumps(examples))
    order_json = workdir / f"{model}-order.json"
    order_json.write_text(json.dumps(epoch_permutation(len(prepared.examples), SEED, 0)))
    if model == "tiny":
        from transformers import AutoTokenizer

        from instill.models.tiny import build_tiny_model

        tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
        model_dir = workdir / "tiny-model"
        build_tiny_model(name, vocab_size=len(tok)).save_pretrained(str(model_dir))
    else:
        from instill.models.registry import resolve_model_source
        from instill.models.tokenizer_loading import gguf_cache_dir

        model_dir = gguf_cache_dir(resolve_model_source(name).ref) / "model"
    lengths = sorted(len(x) for x in examples["input_ids"])
    return {
        "tokenizer_dir": str(out / "tokenizer"),
        "model_dir": str(model_dir),
        "examples_json": str(examples_json),
        "order_json": str(order_json),
        "examples": len(lengths),
        "median_tokens": statistics.median(lengths),
        "mean_tokens": round(statistics.mean(lengths), 1),
        "template": prepared.renderer.template.name,
    }


def summarize(res: dict, method: str, warmup: int, peak_tflops: float) -> dict:
    """Figures over the timed steps (after the first `warmup`)."""
    ends = res["step_end"]
    steps = len(ends)
    timed = res["batches"][warmup:steps]
    seconds = ends[-1] - ends[warmup - 1] if warmup > 0 else ends[-1]
    tokens = sum(b["tokens"] for b in timed)
    sup = sum(b["supervised"] for b in timed)
    fl = flops(res["shape"], method, timed)
    cpu = res["step_cpu"][-1] - res["step_cpu"][warmup - 1]
    return {
        "steps": steps,
        "timed_steps": steps - warmup,
        "timed_seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / max(1, steps - warmup), 3),
        "timed_tokens": tokens,
        "timed_supervised_tokens": sup,
        "timed_sequences": sum(b["sequences"] for b in timed),
        "tokens_per_s": round(tokens / seconds, 2),
        "supervised_tokens_per_s": round(sup / seconds, 2),
        "model_tflops": round(fl / 1e12, 4),
        "achieved_tflops_per_s": round(fl / seconds / 1e12, 4),
        "mfu": round(fl / seconds / 1e12 / peak_tflops, 4),
        # < 1 when other processes took CPU time from this one (this machine is shared)
        "cpu_share": round(cpu / seconds / max(1, res["torch_threads"]), 3),
        "loadavg_1min_at_end": round(res["loadavg_end"][0], 2),
        "peak_rss_gb": round(res["peak_rss_bytes"] / 1e9, 2),
        "train_peak_rss_gb": round(res["train_peak_rss_bytes"] / 1e9, 2),
        "rss_at_train_start_gb": round((res["rss_at_train_start_bytes"] or 0) / 1e9, 2),
        "losses": [round(x, 5) for x in res["losses"]],
    }


def fmt_ratio(x: float | None) -> str:
    return f"{x:.2f}x" if x else "-"


def markdown_table(lines: list[dict]) -> str:
    out = [
        "| system | setting | malloc | model | method | supervised tok/s | tok/s | peak RSS GB "
        "(in training) | MFU | vs TRL defaults | vs TRL fastest |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in lines:
        f = t["figures"]
        out.append(
            f"| {t['system']} | {t['setting']} | {t['settings'].get('allocator', 'system')} "
            f"| {t['model']} | {t['method']} "
            f"| {f['supervised_tokens_per_s']:.1f} | {f['tokens_per_s']:.1f} "
            f"| {f['peak_rss_gb']:.2f} ({f['train_peak_rss_gb']:.2f}) | {100 * f['mfu']:.1f}% "
            f"| {fmt_ratio(t['vs_trl_defaults'])} | {fmt_ratio(t['vs_trl_fastest'])} |"
        )
    return "\n".join(out)


def parity(
    model: str, inputs: dict, files: dict, workdir: Path, steps: int, labels: str, timeout: float
) -> dict:
    """First `steps` losses: instill vs TRL, full FT, fp32, no packing, the same order."""
    base = {
        "model": model,
        "method": "full",
        "steps": steps,
        "lr": LR["full"],
        "dtype": "float32",
        **inputs,
    }
    runs = {}
    specs = {
        "instill": {
            **base,
            "system": "instill",
            "packing": False,
            "messages_jsonl": str(files["messages"]),
        },
        "trl-same-labels": {
            **base,
            "system": "trl-defaults",
            "pretokenized": True,
            "gradient_checkpointing": False,
        },
        "trl-own-labels": {
            **base,
            "system": "trl-defaults",
            "rows_jsonl": str(files["rows"]),
            "gradient_checkpointing": False,
        },
    }
    if labels == "same":
        specs.pop("trl-own-labels")
    for name, spec in specs.items():
        label = f"parity-{model}-{name}"
        spec["output_dir"] = str(workdir / label)
        log(f"parity: {name} ({steps} steps, full, fp32) ...")
        res = run_child("--child", spec, workdir, label, timeout)
        runs[name] = res
        log(f"  losses {[round(x, 4) for x in res['losses'][:6]]} ... ({res['wall_seconds']:.0f}s)")
    ref = runs["instill"]["losses"][:steps]
    out = {"bench": "train_throughput_parity", "model": model, "steps": steps, "runs": {}}
    out["raw"] = runs
    for name, res in runs.items():
        losses = res["losses"][:steps]
        entry = {
            "losses": [round(x, 6) for x in losses],
            "supervised_tokens_per_step": [b["supervised"] for b in res["batches"][:steps]],
        }
        if name != "instill":
            rel = [abs(a - b) / abs(a) for a, b in zip(ref, losses, strict=False)]
            entry["max_rel_diff_vs_instill"] = max(rel) if rel else None
            entry["mean_rel_diff_vs_instill"] = statistics.mean(rel) if rel else None
            entry["first_step_rel_diff"] = rel[0] if rel else None
        out["runs"][name] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1])
    if argv[:1] == ["--peak"]:
        return peak_main(argv[1])
    from instill.allocator import CHOICES as ALLOCATORS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="smollm2,gemma", help="comma-separated: tiny, smollm2, gemma"
    )
    parser.add_argument("--methods", default="lora,full", help="comma-separated: lora, full")
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help="comma-separated subset of instill, instill-gc (instill with gradient "
        "checkpointing), trl-defaults, trl-fastest, trl-liger (TRL fastest + Liger kernels) "
        "(trl = both TRL); none: parity only",
    )
    parser.add_argument(
        "--steps",
        default=DEFAULT_STEPS,
        help="optimizer steps per run: N for every model, or MODEL=N,... (missing models: "
        f"{FALLBACK_STEPS}) (default: {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=2, help="first steps not timed (at least 1)"
    )
    parser.add_argument(
        "--parity-steps",
        type=int,
        default=0,
        help="losses compared in the parity check (0: skip it; the recorded check uses 20)",
    )
    parser.add_argument(
        "--parity-labels",
        choices=("same", "both"),
        default="both",
        help="TRL parity runs: on instill's labels only, or also on TRL's own tokenization",
    )
    parser.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default=os.environ.get("INSTILL_ALLOCATOR") or "auto",
        help="malloc of instill's runs, as the `instill` command picks it (INSTILL_ALLOCATOR; "
        "default auto: mimalloc where installed)",
    )
    parser.add_argument(
        "--trl-allocator",
        choices=ALLOCATORS,
        default="system",
        help="malloc of TRL's runs (default: the C library's, as TRL users run it)",
    )
    parser.add_argument("--rows", type=int, default=0, help="synthetic rows (0: enough)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per child")
    parser.add_argument("--workdir", default=None, help="parent of the temp dir (default: /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, specs)")
    opts = parser.parse_args(argv)
    try:
        opts.steps = parse_steps(opts.steps)
    except ValueError as e:
        parser.error(str(e))
    if opts.warmup_steps < 1 or min(opts.steps.values()) <= opts.warmup_steps:
        parser.error("need 1 <= --warmup-steps < --steps")

    models = [m.strip() for m in opts.models.split(",") if m.strip()]
    methods = [m.strip() for m in opts.methods.split(",") if m.strip()]
    systems = []
    for s in (s.strip() for s in opts.systems.replace("none", "").split(",")):
        systems += ["trl-defaults", "trl-fastest"] if s == "trl" else [s] if s else []
    for bad in set(models) - set(MODELS):
        parser.error(f"unknown model {bad!r}")
    for bad in set(methods) - set(LR):
        parser.error(f"unknown method {bad!r}")
    for bad in set(systems) - set(SYSTEMS):
        parser.error(f"unknown system {bad!r}")
    systems = [s for s in SYSTEMS if s in systems]

    warnings.filterwarnings("ignore")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()

    t_start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-train-", dir=opts.workdir))
    # Packed runs take ~3-4 examples per 512-token row: enough rows that no run wraps an epoch.
    most = max(steps_for(opts.steps, m) for m in models)
    n_rows = opts.rows or max(256, most * BATCH * 5, opts.parity_steps * BATCH + 64)
    rows = make_rows(n_rows, SEED)
    files = {
        "messages": write_jsonl(workdir / "rows.messages.jsonl", map(as_messages, rows)),
        "rows": write_jsonl(workdir / "rows.jsonl", rows),
    }

    try:
        runs, par, peaks = run_all(opts, models, methods, systems, workdir, files)
    except BaseException:
        log(f"failed; logs and work files kept in {workdir}")
        raise
    # MFU against the best peak of the compute dtype measured in this run (before and after:
    # others share the machine)
    compute = peaks[0]["compute"]
    probes = [res["matmul_probe"]["tflops"] for _, _, g in runs for _, res, _ in g]
    if par:
        probes += [r["matmul_probe"]["tflops"] for r in par.pop("raw").values()]
    peak_tflops = max([p[compute]["tflops"] for p in peaks] + probes)
    info = {
        "machine": machine(),
        "versions": {**versions(), "peft": _version("peft")},
        "command": command(),
        "compute_dtype": compute,
        "matmul_peak_tflops": round(peak_tflops, 3),
        "matmul_peaks": peaks,
        "probe_tflops_range": [round(min(probes), 3), round(max(probes), 3)] if probes else None,
    }
    info["versions"]["instill_source_sha256"] = source_digest()
    lines = []
    for model, method, group in runs:
        out = []
        for system, res, inp in group:
            fig = summarize(res, method, opts.warmup_steps, peak_tflops)
            settings = {k: v for k, v in res.items() if k not in _RAW_KEYS}
            line = {
                "bench": "train_throughput",
                "system": "instill" if system.startswith("instill") else "trl",
                "setting": SETTING[system],
                "model": model,
                "model_name": MODELS[model][0],
                "method": method,
                "settings": {
                    "max_length": MAX_LENGTH,
                    "batch_rows": BATCH,
                    "grad_accum": 1,
                    "lr": LR[method],
                    "schedule": "constant, no warm-up",
                    "optimizer": "AdamW(0.9, 0.999, eps 1e-8, wd 0), clip 1.0",
                    "lora": LORA if method == "lora" else None,
                    "template": inp["template"],
                    "data": {k: inp[k] for k in ("examples", "median_tokens", "mean_tokens")},
                    "steps": steps_for(opts.steps, model),
                    "warmup_steps": opts.warmup_steps,
                    **settings,
                },
                **info,
                "figures": fig,
            }
            if res.get("same_work_check"):
                line["same_work_check"] = res["same_work_check"]
            out.append(line)
        ref = {t["setting"]: t["figures"]["supervised_tokens_per_s"] for t in out}
        d, f = ref.get(SETTING["trl-defaults"]), ref.get(SETTING["trl-fastest"])
        for t in out:
            sup = t["figures"]["supervised_tokens_per_s"]
            t["vs_trl_defaults"] = round(sup / d, 2) if d else None
            t["vs_trl_fastest"] = round(sup / f, 2) if f else None
            print(json.dumps(t), flush=True)
        lines += out
    if par:
        par.update(info)
        print(json.dumps(par), flush=True)

    log("\n" + markdown_table(lines))
    if par:
        for name, entry in par["runs"].items():
            if "max_rel_diff_vs_instill" in entry:
                log(
                    f"parity {par['model']} {name}: max relative loss difference over "
                    f"{par['steps']} steps {100 * entry['max_rel_diff_vs_instill']:.4f}% "
                    f"(mean {100 * entry['mean_rel_diff_vs_instill']:.4f}%)"
                )
    log(f"whole run: {time.perf_counter() - t_start:.0f}s")
    if opts.keep:
        log(f"work files kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


_RAW_KEYS = (
    "step_end",
    "step_cpu",
    "batches",
    "losses",
    "peak_rss_bytes",
    "train_peak_rss_bytes",
    "rss_at_train_start_bytes",
    "loadavg_end",
    "same_work_check",
)


def run_all(opts, models, methods, systems, workdir: Path, files: dict):
    """Every child, one at a time: matmul peak, the throughput runs, parity, matmul peak."""
    peaks = [run_child("--peak", {}, workdir, "matmul-peak-start", 600)]
    log(
        f"matmul peak, 2 threads: {peaks[0]['compute']} "
        f"{peaks[0][peaks[0]['compute']]['tflops']:.3f} TFLOP/s, "
        f"fp32 {peaks[0]['float32']['tflops']:.3f} TFLOP/s"
    )
    inputs = {}
    for model in models:
        t = time.perf_counter()
        inputs[model] = prepare_model_inputs(model, workdir, files["messages"])
        log(
            f"{model}: {inputs[model]['examples']} examples, median "
            f"{inputs[model]['median_tokens']} tokens ({time.perf_counter() - t:.1f}s, untimed)"
        )
    runs = []
    for model in models:
        for method in methods:
            group = []
            for system in systems:
                label = f"{model}-{method}-{system}"
                spec = {
                    "system": system,
                    "model": model,
                    "method": method,
                    "steps": steps_for(opts.steps, model),
                    "lr": LR[method],
                    "dtype": "auto",
                    "packing": True,
                    "messages_jsonl": str(files["messages"]),
                    "rows_jsonl": str(files["rows"]),
                    "output_dir": str(workdir / label),
                    **inputs[model],
                }
                log(f"{label}: {spec['steps']} steps ...")
                allocator = opts.allocator if system.startswith("instill") else opts.trl_allocator
                res = run_child("--child", spec, workdir, label, opts.timeout, allocator)
                fig = summarize(
                    res, method, opts.warmup_steps, peaks[0][peaks[0]["compute"]]["tflops"]
                )
                log(
                    f"  {fig['supervised_tokens_per_s']:.1f} supervised tok/s, "
                    f"{fig['tokens_per_s']:.1f} tok/s, {fig['seconds_per_step']:.2f} s/step, "
                    f"peak RSS {fig['peak_rss_gb']:.2f} GB "
                    f"(training {fig['train_peak_rss_gb']:.2f}), MFU ~{100 * fig['mfu']:.1f}%, "
                    f"CPU share {fig['cpu_share']:.2f} "
                    f"({res['wall_seconds']:.0f}s in all)"
                )
                group.append((system, res, inputs[model]))
            runs.append((model, method, group))
    par = None
    if opts.parity_steps:
        pmodel = "smollm2" if "smollm2" in models else models[0]
        par = parity(
            pmodel,
            inputs[pmodel],
            files,
            workdir,
            opts.parity_steps,
            opts.parity_labels,
            opts.timeout,
        )
    peaks.append(run_child("--peak", {}, workdir, "matmul-peak-end", 600))
    log(f"matmul peak at the end: {peaks[1][peaks[1]['compute']]['tflops']:.3f} TFLOP/s")
    return runs, par, peaks


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
