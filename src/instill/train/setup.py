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
from accelerate.utils import set_seed

from instill.config import Config
from instill.data.masking import Renderer
from instill.data.templates import get_template
from instill.errors import InstillError
from instill.models.adapters import (
    apply_method,
    disable_adapter_input_casts,
    is_row_masked,
    trainable_parameter_count,
)
from instill.train.data import Rows, steps_per_epoch
from instill.train.loss import SupervisedLoss


@dataclass
class Run:
    """The assembled run."""

    config: Config
    accelerator: Accelerator
    model: torch.nn.Module  # the (PEFT-wrapped) causal LM, unwrapped
    loss_model: torch.nn.Module  # SupervisedLoss, prepared by accelerate
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    tokenizer: Any
    renderer: Renderer
    train_rows: Rows
    val_rows: Rows | None
    packed: bool
    total_steps: int
    steps_per_epoch: int
    global_batch: int
    end_of_turn_ids: list[int]
    output_dir: Path
    eval_tasks: list = field(default_factory=list)


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
    # is told 1 and never rescales the loss.
    return Accelerator(
        mixed_precision="bf16" if dtype == torch.bfloat16 else "no",
        gradient_accumulation_steps=1,
        cpu=device == "cpu",
    )


def _compute_dtype(config: Config, device: str, detect) -> torch.dtype:
    if config.model.dtype == "bfloat16":
        return torch.bfloat16
    if config.model.dtype == "float32":
        return torch.float32
    return detect(device)


def prepare_data(
    config: Config, accelerator: Accelerator, resume: bool
) -> tuple[Any, Rows, Rows | None, dict]:
    """Run `instill prepare` on the main process (unless resuming) and load its outputs.

    Returns:
        The prepared tokenizer, the training rows, the validation rows (if
        `data.val_fraction`) and the prepare statistics.
    """
    import datasets
    from transformers import AutoTokenizer

    from instill.data.prepare import prepare

    out = Path(config.output_dir)
    if accelerator.is_main_process and not (resume and (out / "prepared").is_dir()):
        prepare(config, progress=True)
    accelerator.wait_for_everyone()
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    stats = json.loads((out / "stats.json").read_text())
    train_rows = _load_rows(out / "prepared")
    val_dir = out / "prepared_val"
    return tokenizer, train_rows, _load_rows(val_dir) if val_dir.is_dir() else None, stats


def _load_rows(directory: Path) -> Rows:
    import datasets

    ds = datasets.load_from_disk(str(directory))
    columns = {c: ds[c] for c in ("input_ids", "labels", "position_ids") if c in ds.column_names}
    return Rows.from_columns(columns)


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


def build_run(config: Config, resume: bool = False) -> Run:
    """Assemble data, model, optimizer and schedule for `config`."""
    from instill.models.load import (
        choose_attn_implementation,
        load_model,
        quantize_linear_4bit,
        resize_embeddings_for_tokenizer,
    )

    data = config.require_data("train")
    accelerator = make_accelerator(config)
    set_seed(config.seed)
    tokenizer, train_rows, val_rows, stats = prepare_data(config, accelerator, resume)
    packed = train_rows.position_ids is not None

    device = accelerator.device
    compute = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32
    # Frozen weights are stored in the compute dtype; trained ones are kept in fp32.
    load_dtype = torch.float32 if config.train.method == "full" else compute
    model = load_model(
        config.model.path,
        dtype=load_dtype,
        attn_implementation=choose_attn_implementation(config.model.attn_implementation, device),
        trust_remote_code=config.model.trust_remote_code,
        vocab_size=len(tokenizer),
    )
    resize_embeddings_for_tokenizer(model, tokenizer)
    if config.train.method == "qlora":
        quantize_linear_4bit(model, compute)
    token_ids = tokenizer.convert_tokens_to_ids(stats.get("added_tokens", []))
    trained_markers: list[str] = []
    if config.train.method != "full" and _train_template_tokens(config, stats):
        trained_markers = template_marker_tokens(tokenizer, stats["end_of_turn"])
        token_ids += tokenizer.convert_tokens_to_ids(trained_markers)
    model.config.use_cache = False
    if config.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = apply_method(model, config.train, token_ids)
    if compute == torch.bfloat16 and config.train.method in ("lora", "qlora"):
        disable_adapter_input_casts(model)  # every forward of the run is under bf16 autocast
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    trainable, total = trainable_parameter_count(model)
    if trainable == 0:
        raise InstillError("no parameter is trainable with this train.method configuration")

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
    loss_model = SupervisedLoss(model, t.loss_chunk_tokens)
    loss_model, optimizer = accelerator.prepare(loss_model, optimizer)

    # The prepared tokenizer carries the exact template training used (built-ins exported).
    template = get_template("tokenizer", tokenizer, stats["end_of_turn"])
    renderer = Renderer(tokenizer, template, data.masking)
    eot_ids = list(
        dict.fromkeys(
            i
            for i in (tokenizer.convert_tokens_to_ids(template.end_of_turn), tokenizer.eos_token_id)
            if i is not None
        )
    )
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
        end_of_turn_ids=eot_ids,
        output_dir=Path(config.output_dir),
    )
