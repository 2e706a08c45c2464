"""Everything the loop needs, built before it starts: data, model, optimizer, schedule, logs.

Kept apart from `loop.py` so that the loop reads top to bottom without set-up detail.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed

from instill.allocator import describe as describe_allocator
from instill.config import Config
from instill.data.masking import Renderer
from instill.data.templates import get_template
from instill.errors import InstillError
from instill.models import packed_attention
from instill.models.adapters import (
    apply_method,
    disable_adapter_input_casts,
    fuse_lora_outputs,
    is_row_masked,
    trainable_parameter_count,
)
from instill.models.bundle import stop_token_ids
from instill.train.data import steps_per_epoch
from instill.train.objectives import Objective
from instill.train.sft import SFTObjective


@dataclass
class Run:
    """The assembled run."""

    config: Config
    accelerator: Accelerator
    model: torch.nn.Module  # the (PEFT-wrapped) causal LM, unwrapped
    objective: Objective
    loss_model: torch.nn.Module  # the objective's loss module, prepared by accelerate
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    tokenizer: Any
    renderer: Renderer
    train_rows: Any  # what objective.load_rows returned (TokenRows for SFT)
    val_rows: Any | None
    packed: bool
    total_steps: int
    steps_per_epoch: int
    global_batch: int
    stop_ids: list[int]
    output_dir: Path
    eval_tasks: list = field(default_factory=list)
    base_dtype: torch.dtype = (
        torch.float32
    )  # what the frozen base was loaded in (QLoRA quantized it)
    gradient_checkpointing: bool = False  # as chosen (train.gradient_checkpointing resolved)

    @property
    def engine_accumulates(self) -> bool:
        """DeepSpeed: its engine accumulates micro-batches, steps and clips by itself."""
        return self.accelerator.distributed_type == DistributedType.DEEPSPEED

    @property
    def loss_scale(self) -> float:
        """What each micro-batch's loss sum is multiplied by before division by the step weight.

        DDP and FSDP average gradients over ranks, so the sum is scaled by the world size to make
        the result the step's mean; DeepSpeed's engine also divides by its accumulation steps.
        """
        scale = float(self.accelerator.num_processes)
        if self.engine_accumulates:
            scale *= self.config.train.grad_accum
        return scale

    @property
    def sharded(self) -> bool:
        """Weights are sharded over ranks (FSDP, DeepSpeed): saving is a collective."""
        return self.accelerator.distributed_type in (
            DistributedType.FSDP,
            DistributedType.DEEPSPEED,
        )


def weights_sharded(accelerator: Accelerator) -> bool:
    """No single process holds the whole model (FSDP, DeepSpeed ZeRO-3)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return False


def make_accelerator(config: Config) -> Accelerator:
    from instill.models.load import detect_compute_dtype

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = _compute_dtype(config, device, detect_compute_dtype)
    # accelerate keeps its settings in a process-wide singleton; a second `train()` in the same
    # process (scripts, notebooks, tests) may use another precision. The distributed state
    # (process group) is kept.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    # Gradient accumulation is done by the loop (it owns the loss normalisation), so accelerate
    # is told 1 and never rescales the loss. DeepSpeed's engine accumulates by itself: its
    # config is set from train.* (see `configure_deepspeed`).
    accelerator = Accelerator(
        mixed_precision="bf16" if dtype == torch.bfloat16 else "no",
        gradient_accumulation_steps=1,
        cpu=device == "cpu",
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        configure_deepspeed(accelerator, config)
    return accelerator


def configure_deepspeed(accelerator: Accelerator, config: Config) -> None:
    """Make DeepSpeed's engine accumulate and clip exactly as `config.train` says.

    The loop prepares no dataloader, so the batch sizes accelerate would take from one are set
    here, as accelerate documents for that case; the engine's gradient accumulation is
    `train.grad_accum` (the loop marks each step's last micro-batch as the boundary and undoes
    the engine's division of the loss by it), and its clipping is `train.max_grad_norm`.
    Under ZeRO-3 the engine is also told to gather the full weights when saving: `final/` is
    written from them (accelerate's `get_state_dict` refuses otherwise, and the accelerate
    config's `zero3_save_16bit_model` defaults to false).
    """
    t = config.train
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = t.batch_size
    ds["gradient_accumulation_steps"] = t.grad_accum
    ds["train_batch_size"] = t.batch_size * t.grad_accum * accelerator.num_processes
    ds["gradient_clipping"] = float(t.max_grad_norm or 0.0)
    zero = ds.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True


def _compute_dtype(config: Config, device: str, detect) -> torch.dtype:
    if config.model.dtype == "bfloat16":
        return torch.bfloat16
    if config.model.dtype == "float32":
        return torch.float32
    if config.model.dtype == "float64":
        return torch.float64
    return detect(device)


def prepare_data(config: Config, accelerator: Accelerator, resume: bool) -> tuple[Any, dict]:
    """Run `instill prepare` on the main process (unless resuming).

    Returns:
        The prepared tokenizer and the prepare statistics; the rows are in
        `<output_dir>/prepared` (and `prepared_val` with `data.val_fraction`).
    """
    import datasets
    from transformers import AutoTokenizer

    from instill.data.prepare import prepare
    from instill.models.tokenizer_loading import load_tokenizer_for

    out = Path(config.output_dir)
    if accelerator.is_main_process and not (resume and (out / "prepared").is_dir()):
        from instill.eval.prompts import eval_prompts_for

        data = config.require_data("train")
        # Decontamination gets the eval tasks' prompts as plain text (data never imports eval).
        prompts = eval_prompts_for(config) if data.curate.decontaminate.enabled else None
        prepare(config, load_tokenizer_for(config), progress=True, eval_prompts=prompts)
    accelerator.wait_for_everyone()
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    stats = json.loads((out / "stats.json").read_text())
    return tokenizer, stats


def make_objective(config: Config, tokenizer, accelerator: Accelerator | None = None) -> Objective:
    """The training objective `config.train.objective` asks for (`sft` or `dpo`)."""
    data = config.require_data("train")
    t = config.train
    if t.objective == "dpo":
        from instill.train.dpo import DPOObjective

        return DPOObjective(
            tokenizer.pad_token_id,
            t.dpo,
            t.dpo_reference,
            t.loss_chunk_tokens,
            batch_size=t.batch_size,
            cache_dir=Path(t.dpo.reference_cache).expanduser() if t.dpo.reference_cache else None,
            accelerator=accelerator,
        )
    # FSDP and ZeRO-3 gather the head's weight inside its own call: the fused loss needs it whole.
    fused = accelerator is None or not weights_sharded(accelerator)
    return SFTObjective(tokenizer.pad_token_id, data.max_length, t.loss_chunk_tokens, fused)


def lr_lambda(schedule: str, warmup: int, total: int):
    """Warmup then cosine / linear decay to 0, or constant."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def make_optimizer(params: list[torch.nn.Parameter], config: Config) -> torch.optim.Optimizer:
    """AdamW, fused where this torch build supports it for the parameters' device."""
    kwargs = dict(
        lr=config.train.peak_lr,
        weight_decay=config.train.weight_decay,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    # Row-masked embeddings (freeze + trained template tokens) get no weight decay, which would
    # otherwise shrink every frozen row.
    masked = [p for p in params if is_row_masked(p)]
    groups = [{"params": [p for p in params if not is_row_masked(p)]}]
    if masked:
        groups.append({"params": masked, "weight_decay": 0.0})
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


def _train_template_tokens(config: Config, stats: dict) -> bool:
    setting = config.train.train_template_tokens
    if setting == "auto":
        # The tokenizer's own template is a format the model was trained on; anything else
        # (a built-in template or a Jinja file on a base model) is new to it.
        return stats.get("template") != "tokenizer"
    return bool(setting)


def template_marker_tokens(tokenizer, end_of_turn: str | None) -> list[str]:
    """The special tokens the chat template writes around turns (never BOS, pad or unk).

    Found by rendering a probe conversation with the prepared tokenizer's template, so built-in
    templates and Jinja files are treated alike; the end-of-turn marker is always included.
    """
    from instill.data.conversation import Message
    from instill.data.templates import get_template

    specials = set(getattr(tokenizer, "all_special_ids", []))
    specials |= {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    specials -= {tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    template = get_template("tokenizer", tokenizer, end_of_turn)
    probe = [
        Message("user", "Hi"),
        Message("assistant", "Hello"),
        Message("user", "Bye"),
        Message("assistant", "Goodbye"),
    ]
    ids = tokenizer(template.render(probe, add_generation_prompt=False), add_special_tokens=False)
    found = [i for i in dict.fromkeys(ids["input_ids"]) if i in specials]
    eot = tokenizer.convert_tokens_to_ids(template.end_of_turn) if template.end_of_turn else None
    if eot is not None and eot not in found and eot != tokenizer.unk_token_id:
        found.append(eot)
    return tokenizer.convert_ids_to_tokens(found)


def choose_gradient_checkpointing(
    config: Config,
    model: torch.nn.Module,
    accelerator: Accelerator,
    compute: torch.dtype,
    trainable: int,
) -> tuple[bool, str]:
    """Resolve `train.gradient_checkpointing` for this run: (on?, the reason, for the log).

    `auto` turns it on only when the estimated peak of a step without it exceeds the budget
    (`train.memory_budget_gb`, or most of the device's free memory); see `instill.models.memory`.
    """
    from instill.models.memory import GB, available_memory, estimate_training_memory

    t = config.train
    if t.gradient_checkpointing != "auto":
        return bool(
            t.gradient_checkpointing
        ), f"train.gradient_checkpointing={t.gradient_checkpointing}"
    data = config.require_data("train")
    seq = data.max_length
    rows = t.batch_size
    if t.objective == "dpo":
        # chosen and rejected: two rows per pair, or one row holding both after the prompt
        seq, rows = (2 * seq, rows) if t.dpo.share_prompt else (seq, 2 * rows)
    device = accelerator.device
    attn = getattr(model.config, "_attn_implementation", "sdpa")
    estimate = estimate_training_memory(
        model,
        tokens=rows * seq,
        seq_len=seq,
        compute_dtype=compute,
        trainable_params=trainable,
        chunk_tokens=t.loss_chunk_tokens,
        attention_materialized=attn == "eager" or device.type != "cuda",
        weight_shards=accelerator.num_processes if weights_sharded(accelerator) else 1,
    )
    if t.memory_budget_gb is not None:
        budget, source = int(t.memory_budget_gb * GB), "train.memory_budget_gb"
    else:
        share = 0.9 if device.type == "cuda" else 0.85
        budget = int(share * available_memory(device))
        source = f"{int(100 * share)}% of the {'GPU' if device.type == 'cuda' else 'host'}'s free"
    # Ranks of one host share its RAM.
    if device.type != "cuda" and accelerator.num_processes > 1:
        budget //= accelerator.num_processes
    off, on = estimate.total(False), estimate.total(True)
    figures = f"estimated peak {off / GB:.1f} GiB without, {on / GB:.1f} GiB with; budget "
    figures += f"{budget / GB:.1f} GiB ({source})"
    if off <= budget:
        return False, f"auto: {figures}"
    if on > budget:
        accelerator.print(
            f"warning: even with gradient checkpointing a step may not fit ({figures}); lower "
            "train.batch_size (raise train.grad_accum to keep the batch) or data.max_length, "
            "or use train.method lora/qlora"
        )
    return True, f"auto: {figures}"


def build_run(config: Config, resume: bool = False) -> Run:
    """Assemble data, model, optimizer and schedule for `config`."""
    from instill.models.load import (
        choose_attn_implementation,
        describe_compute,
        load_model,
        quantize_linear_4bit,
        resize_embeddings_for_tokenizer,
    )

    data = config.require_data("train")
    accelerator = make_accelerator(config)
    if weights_sharded(accelerator) and (config.train.sample_prompts or config.train.eval_tasks):
        raise InstillError(
            "train.sample_prompts and train.eval_tasks generate on one process, which needs the "
            "whole model; under FSDP and DeepSpeed ZeRO-3 the weights are sharded over the "
            "ranks. Leave them empty for this run and evaluate its final/ afterwards "
            "(instill eval --model <output_dir>/final ...)"
        )
    set_seed(config.seed)
    tokenizer, stats = prepare_data(config, accelerator, resume)
    objective = make_objective(config, tokenizer, accelerator)
    out = Path(config.output_dir)
    train_rows = objective.load_rows(out / "prepared")
    val_rows = (
        objective.load_rows(out / "prepared_val") if (out / "prepared_val").is_dir() else None
    )
    packed = bool(getattr(train_rows, "packed", False))

    device = accelerator.device
    compute = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32
    if config.model.dtype == "float64":
        compute = torch.float64  # numerical checks (the invariant tests): no rounding to hide in
    # Frozen weights are stored in the compute dtype; trained ones in at least fp32.
    load_dtype = (
        compute if compute == torch.float64 or config.train.method != "full" else torch.float32
    )
    model = load_model(
        config.model.path,
        dtype=load_dtype,
        attn_implementation=choose_attn_implementation(config.model.attn_implementation, device),
        trust_remote_code=config.model.trust_remote_code,
        vocab_size=len(tokenizer),
    )
    resize_embeddings_for_tokenizer(model, tokenizer)
    if packed and model.config._attn_implementation == "sdpa":
        # Packed rows: each sequence attends on its own instead of through a dense block mask
        # (same result, a fraction of the work); every other input still goes through SDPA.
        model.set_attn_implementation(packed_attention.register())
    if config.train.method == "qlora":
        quantize_linear_4bit(model, compute)
    token_ids = tokenizer.convert_tokens_to_ids(stats.get("added_tokens", []))
    trained_markers: list[str] = []
    if config.train.method != "full" and _train_template_tokens(config, stats):
        trained_markers = template_marker_tokens(tokenizer, stats["end_of_turn"])
        token_ids += tokenizer.convert_tokens_to_ids(trained_markers)
    model.config.use_cache = False
    model = apply_method(model, config.train, token_ids)
    if compute == torch.bfloat16 and config.train.method in ("lora", "qlora"):
        disable_adapter_input_casts(model)  # every forward of the run is under bf16 autocast
    if config.train.method in ("lora", "qlora"):
        fuse_lora_outputs(model)  # the update added in the GEMM's epilogue, not in two passes
    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16):
            p.data = p.data.float()
    trainable, total = trainable_parameter_count(model)
    if trainable == 0:
        raise InstillError("no parameter is trainable with this train.method configuration")
    checkpointing, why = choose_gradient_checkpointing(
        config, model, accelerator, compute, trainable
    )
    if checkpointing:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        kwargs = {"use_reentrant": False}
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.2x
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        base.enable_input_require_grads()
    accelerator.print(f"compute: {describe_compute(compute, accelerator.device)}")
    accelerator.print(f"gradient checkpointing: {'on' if checkpointing else 'off'} ({why})")
    accelerator.print(f"allocator: {describe_allocator()}")

    t = config.train
    global_batch = t.batch_size * accelerator.num_processes * t.grad_accum
    per_epoch = steps_per_epoch(len(train_rows), global_batch)
    total_steps = t.max_steps or t.epochs * per_epoch
    warmup = round(t.warmup_ratio * total_steps)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    if trained_markers:
        accelerator.print(
            "training the embedding rows of the template's turn tokens too: "
            + ", ".join(trained_markers)
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(t.schedule, warmup, total_steps)
    )
    loss_model = objective.loss_module(model)
    loss_model, optimizer = accelerator.prepare(loss_model, optimizer)

    # The prepared tokenizer carries the exact template training used (built-ins exported).
    template = get_template("tokenizer", tokenizer, stats["end_of_turn"])
    renderer = Renderer(tokenizer, template, data.masking)
    accelerator.print(
        f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%); "
        f"{len(train_rows)} training rows{' (packed)' if packed else ''}, "
        f"{total_steps} steps of {global_batch} rows"
    )
    eval_tasks = []
    if t.eval_tasks:
        from instill.eval.runner import build_tasks

        eval_tasks = build_tasks(t.eval_tasks)
    return Run(
        eval_tasks=eval_tasks,
        config=config,
        accelerator=accelerator,
        model=model,
        objective=objective,
        loss_model=loss_model,
        optimizer=optimizer,
        scheduler=scheduler,
        tokenizer=tokenizer,
        renderer=renderer,
        train_rows=train_rows,
        val_rows=val_rows,
        packed=packed,
        total_steps=total_steps,
        steps_per_epoch=per_epoch,
        global_batch=global_batch,
        stop_ids=stop_token_ids(tokenizer, template),
        output_dir=Path(config.output_dir),
        base_dtype=load_dtype,
        gradient_checkpointing=checkpointing,
    )
