"""The training loop: one explicit loop on accelerate, read top to bottom, for every objective.

Each optimizer step takes the next rows of the epoch's seeded permutation, runs this rank's
micro-batches, and scales every micro-batch's summed loss by `world / weight of the whole step`
(the objective's weight: supervised tokens for SFT). DDP then averages gradients over ranks, so
the gradient is exactly that of the step's mean loss, whatever the split into micro-batches and
ranks. What is objective-specific (batches, the loss, the weight) comes from `objectives.py`;
set-up lives in `setup.py`, checkpoints in `checkpoint.py`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import gather_object

from instill.config import Config
from instill.errors import InstillError
from instill.models.bundle import Bundle, base_signature, save_bundle
from instill.train.checkpoint import (
    TrainState,
    capture_rng,
    find_checkpoint,
    load_checkpoint,
    restore_rng,
    rng_to_json,
    save_checkpoint,
    save_sharded_checkpoint,
)
from instill.train.data import epoch_permutation, micro_batches, step_rows
from instill.train.logging import MetricLogger, NullLogger
from instill.train.setup import Run, build_run


class TrainingDiverged(InstillError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path
    state: TrainState
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)  # before clipping
    val_losses: list[float] = field(default_factory=list)
    eval_scores: list[dict[str, float]] = field(default_factory=list)
    is_main_process: bool = True


def train(config: Config, resume: str | bool | None = None) -> TrainResult:
    """Fine-tune `config.model` on `config.data` as `config.train` says.

    Args:
        config: the validated config.
        resume: True (or "latest") to continue from the run's latest checkpoint, or a path.
    """
    run = build_run(config, resume=bool(resume))
    acc, t, objective = run.accelerator, config.train, run.objective
    state = TrainState()
    if resume:
        path = find_checkpoint(run.output_dir, resume)
        state, rng = load_checkpoint(
            path, run.model, run.optimizer, run.scheduler, acc.process_index, acc
        )
        restore_rng(rng)
        acc.print(f"resumed from {path} at step {state.step}")
    logger = (
        MetricLogger(run.output_dir, t.logging, config.model_dump(mode="json"))
        if acc.is_main_process
        else NullLogger()
    )
    result = TrainResult(
        run.output_dir, run.output_dir / "final", state, is_main_process=acc.is_main_process
    )
    rng_at_step_start = capture_rng()
    # SFT's weight is supervised tokens ("tok/s" as before); DPO's is pairs ("pairs/s").
    rate = "tok/s" if objective.weight_name == "supervised_tokens" else f"{objective.weight_name}/s"
    try:
        with _progress(acc.is_main_process, run.total_steps, state.step, rate) as bar:
            while state.step < run.total_steps:
                perm = epoch_permutation(len(run.train_rows), config.seed, state.epoch)
                while state.step_in_epoch < run.steps_per_epoch and state.step < run.total_steps:
                    rng_at_step_start = capture_rng()
                    began = time.perf_counter()
                    rows = step_rows(perm, state.step_in_epoch, run.global_batch)
                    weight = objective.weight(run.train_rows, rows)  # the whole step, all ranks
                    micro = micro_batches(
                        rows, t.batch_size, acc.num_processes, acc.process_index, t.grad_accum
                    )
                    loss_sum = torch.zeros((), device=acc.device, dtype=torch.float64)
                    extra: dict[str, torch.Tensor] = {}
                    for m, idx in enumerate(micro):
                        batch = _to_device(objective.batch(run.train_rows, idx), acc.device)
                        last = m == len(micro) - 1
                        if run.engine_accumulates:
                            # DeepSpeed accumulates in its engine: the step's last micro-batch
                            # is the boundary where it syncs, clips and steps.
                            acc.sync_gradients = last
                            sync = contextlib.nullcontext()
                        elif last:
                            sync = contextlib.nullcontext()
                        else:  # gradients sync over ranks once, on the last micro-batch
                            sync = acc.no_sync(run.loss_model)
                        with sync, acc.autocast():
                            part, metrics = run.loss_model(**batch)
                        acc.backward(part * run.loss_scale / max(weight, 1))
                        loss_sum += part.detach().double()
                        for k, v in metrics.items():
                            extra[k] = extra.get(k, 0.0) + v.detach().double()
                    loss = acc.reduce(loss_sum, "sum").item() / max(weight, 1)
                    if not math.isfinite(loss):
                        raise TrainingDiverged(
                            f"the loss became {loss} at step {state.step + 1}; stopping. The last "
                            f"good checkpoint is kept in {run.output_dir / 'checkpoints'}. Lower "
                            "train.lr, raise warmup, or look for broken rows in the data"
                        )
                    grad_norm = _clip(run, t.max_grad_norm)
                    result.grad_norms.append(grad_norm)
                    lr = run.scheduler.get_last_lr()[0]
                    run.optimizer.step()
                    run.scheduler.step()
                    run.optimizer.zero_grad(set_to_none=True)

                    tokens = objective.token_count(run.train_rows, rows)
                    state.step += 1
                    state.step_in_epoch += 1
                    state.tokens_seen += tokens
                    state.supervised_tokens_seen += weight
                    state.last_loss = loss
                    result.losses.append(loss)
                    seconds = time.perf_counter() - began
                    if state.step % t.log_every == 0 or state.step == run.total_steps:
                        logged = {
                            "train/loss": loss,
                            "train/lr": lr,
                            "train/epoch": state.epoch + state.step_in_epoch / run.steps_per_epoch,
                            "train/tokens_per_s": tokens / seconds,
                            f"train/{objective.weight_name}_per_s": weight / seconds,
                            "train/grad_norm": grad_norm,
                        }
                        for k, v in extra.items():
                            logged[f"train/{k}"] = acc.reduce(v, "sum").item() / max(weight, 1)
                        logger.log(state.step, logged)
                    bar(state.step, loss, lr, weight / seconds)
                    if t.eval_every and state.step % t.eval_every == 0:
                        _validate(run, state, logger, result)
                    if t.save_every and state.step % t.save_every == 0:
                        _save(run, state, capture_rng())
                state.epoch += 1
                state.step_in_epoch = 0
    except KeyboardInterrupt:
        run.optimizer.zero_grad(set_to_none=True)
        path = _save(run, state, rng_at_step_start)
        acc.print(f"interrupted: saved {path}; continue with --resume")
        logger.close()
        raise
    except torch.OutOfMemoryError as e:
        raise InstillError(
            f"out of memory at step {state.step + 1}: lower train.batch_size (and raise "
            "train.grad_accum to keep the batch), lower data.max_length, set "
            "train.gradient_checkpointing=true, or use method lora/qlora"
        ) from e
    _validate(run, state, logger, result)
    _save(run, state, capture_rng())
    _save_final(run, state, result.final_dir)
    logger.close()
    acc.wait_for_everyone()
    return result


def _save(run: Run, state: TrainState, rng: dict) -> Path | None:
    """Checkpoint with every rank's RNG state (sharded runs: every rank writes its shard)."""
    acc = run.accelerator
    rngs = gather_object([rng_to_json(rng)]) if acc.num_processes > 1 else [rng_to_json(rng)]
    directory, cfg, keep = (
        run.output_dir / "checkpoints",
        run.config.to_yaml(),
        run.config.train.keep_last,
    )
    if run.sharded:
        return save_sharded_checkpoint(acc, directory, run.scheduler, state, rngs, cfg, keep)
    path = None
    if acc.is_main_process:
        path = save_checkpoint(
            directory, run.model, run.optimizer, run.scheduler, state, rngs, cfg, keep
        )
    acc.wait_for_everyone()
    return path


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if v is not None else None for k, v in batch.items()}


def _clip(run: Run, max_norm: float | None) -> float:
    """Clip the step's gradient to `max_norm` (None: only measure it); the norm before clipping.

    DeepSpeed clips inside its engine (`gradient_clipping` in its config) and reports the norm
    after its step; accelerate's `clip_grad_norm_` covers DDP and FSDP.
    """
    acc = run.accelerator
    if run.engine_accumulates:
        engine = run.loss_model
        norm = engine.get_global_grad_norm() if hasattr(engine, "get_global_grad_norm") else None
        return float(norm) if norm is not None else math.nan
    return float(acc.clip_grad_norm_(run.loss_model.parameters(), max_norm or math.inf))


@torch.no_grad()
def _validate(run: Run, state: TrainState, logger, result: TrainResult) -> None:
    """Validation loss over the held-out rows, and sample answers to `train.sample_prompts`."""
    acc, t, objective = run.accelerator, run.config.train, run.objective
    run.loss_model.eval()
    if run.val_rows is not None:
        idx = list(range(acc.process_index, len(run.val_rows), acc.num_processes))
        # Every rank runs the same number of batches (empty ones where it has no rows left): a
        # sharded forward (FSDP, ZeRO-3) is a collective, and a rank that stops early hangs it.
        per_rank = -(-len(run.val_rows) // acc.num_processes)
        total = torch.zeros((), device=acc.device, dtype=torch.float64)
        for start in range(0, max(per_rank, 1), t.batch_size):
            batch = _to_device(
                objective.batch(run.val_rows, idx[start : start + t.batch_size]), acc.device
            )
            with acc.autocast():
                part, _ = run.loss_model(**batch)
            total += part.double()
        weight = objective.weight(run.val_rows, range(len(run.val_rows)))
        val = acc.reduce(total, "sum").item() / max(1, weight)
        result.val_losses.append(val)
        logger.log(state.step, {"val/loss": val, "val/perplexity": math.exp(min(val, 50))})
    if run.eval_tasks and acc.is_main_process:
        from instill.eval.runner import evaluate, summarize
        from instill.generate.engine import SamplingConfig

        with acc.autocast():
            records = evaluate(
                _bundle(run, "train"),
                run.eval_tasks,
                SamplingConfig(max_new_tokens=t.eval_max_new_tokens, batch_size=t.batch_size),
            )
        metrics = {}
        for task, s in summarize(records)["train"]["task"].items():
            metrics[f"eval/{task}/score"] = s["score"]
            if s["stop_rate"] is not None:
                metrics[f"eval/{task}/stop_rate"] = s["stop_rate"]
        logger.log(state.step, metrics)
        result.eval_scores.append(metrics)
    if t.sample_prompts and acc.is_main_process:
        answers = generate(run, t.sample_prompts)
        for k, (text, answer) in enumerate(zip(t.sample_prompts, answers, strict=True)):
            logger.log_text(state.step, f"samples/{k}", f"{text}\n---\n{answer}")
    run.loss_model.train()


def _bundle(run: Run, name: str) -> Bundle:
    return Bundle(name, run.model, run.renderer, run.stop_ids, {})


def generate(run: Run, prompts: list[str]) -> list[str]:
    """Greedy answers to single user messages, stopping at the end-of-turn token."""
    from instill.data.conversation import Message
    from instill.generate.engine import Generator, SamplingConfig

    generator = Generator.for_bundle(_bundle(run, "train"))
    sampling = SamplingConfig(
        max_new_tokens=run.config.train.sample_max_new_tokens, batch_size=len(prompts)
    )
    with run.accelerator.autocast():
        gens = generator.generate([[Message("user", p)] for p in prompts], sampling)
    return [g.text for g in gens]


def _save_final(run: Run, state: TrainState, final: Path) -> None:
    """The tuned model as transformers / PEFT / vLLM load it, with tokenizer and stop tokens.

    Every rank takes part: under FSDP / DeepSpeed ZeRO-3 the weights are sharded and
    `get_state_dict` gathers them (a collective); the main process then writes the bundle.
    """
    acc = run.accelerator
    state_dict = None
    if run.sharded:
        state_dict = acc.get_state_dict(run.loss_model)
        prefix = "model."
        state_dict = {
            k[len(prefix) :]: v for k, v in (state_dict or {}).items() if k.startswith(prefix)
        }
    if not acc.is_main_process:
        return
    info = {
        "base_model": run.config.model.path,
        "method": run.config.train.method,
        "base_dtype": str(run.base_dtype).removeprefix("torch."),
        "base_signature": base_signature(run.model),
        "steps": state.step,
        "final_loss": state.last_loss,
    }
    save_bundle(final, _bundle(run, "final"), info, state_dict=state_dict)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, done: int, rate: str = "tok/s"):
    """Step, loss, learning rate, the objective's weight per second (supervised tokens for SFT,
    pairs for DPO) and ETA: a bar on a terminal, else lines."""
    from instill.progress import track

    digits = 0 if rate == "tok/s" else 2  # a few pairs per second on a CPU
    with track("train", total, done=done, unit="steps", enabled=enabled) as tracker:

        def update(step: int, loss: float, lr: float, tps: float) -> None:
            tracker.update(step, f"loss {loss:.4f}  lr {lr:.2e}  {tps:,.{digits}f} {rate}")

        yield update
