"""The SFT loop: one explicit loop on accelerate, read top to bottom.

Each optimizer step takes the next rows of the epoch's seeded permutation, runs this rank's
micro-batches, and scales every micro-batch's summed loss by `world / supervised tokens of the
whole step`. DDP then averages gradients over ranks, so the gradient is exactly that of the mean
token loss over the step, whatever the split into micro-batches and ranks. Set-up lives in
`setup.py`, checkpoints in `checkpoint.py`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import gather_object

from instill.config import Config
from instill.errors import InstillError
from instill.train.checkpoint import (
    TrainState,
    capture_rng,
    find_checkpoint,
    load_checkpoint,
    restore_rng,
    rng_to_json,
    save_checkpoint,
)
from instill.train.data import collate, epoch_permutation, micro_batches, step_rows
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
    acc, t = run.accelerator, config.train
    state = TrainState()
    if resume:
        path = find_checkpoint(run.output_dir, resume)
        state, rng = load_checkpoint(
            path, run.model, run.optimizer, run.scheduler, acc.process_index
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
    fixed = config.require_data("train").max_length if run.packed else None
    pad_id = run.tokenizer.pad_token_id
    rng_at_step_start = capture_rng()
    try:
        with _progress(acc.is_main_process, run.total_steps, state.step) as bar:
            while state.step < run.total_steps:
                perm = epoch_permutation(len(run.train_rows), config.seed, state.epoch)
                while state.step_in_epoch < run.steps_per_epoch and state.step < run.total_steps:
                    rng_at_step_start = capture_rng()
                    began = time.perf_counter()
                    rows = step_rows(perm, state.step_in_epoch, run.global_batch)
                    n_sup = sum(run.train_rows.supervised[i] for i in rows)  # the whole step
                    micro = micro_batches(
                        rows, t.batch_size, acc.num_processes, acc.process_index, t.grad_accum
                    )
                    loss_sum = torch.zeros((), device=acc.device)
                    for m, idx in enumerate(micro):
                        batch = {
                            k: v.to(acc.device) if v is not None else None
                            for k, v in collate(run.train_rows, idx, pad_id, fixed).items()
                        }
                        last = m == len(micro) - 1
                        sync = contextlib.nullcontext() if last else acc.no_sync(run.loss_model)
                        with sync, acc.autocast():
                            part, _ = run.loss_model(**batch)
                        acc.backward(part * acc.num_processes / n_sup)
                        loss_sum += part.detach()
                    loss = acc.reduce(loss_sum, "sum").item() / n_sup
                    if not math.isfinite(loss):
                        raise TrainingDiverged(
                            f"the loss became {loss} at step {state.step + 1}; stopping. The last "
                            f"good checkpoint is kept in {run.output_dir / 'checkpoints'}. Lower "
                            "train.lr, raise warmup, or look for broken rows in the data"
                        )
                    grad_norm = float(
                        acc.clip_grad_norm_(
                            run.loss_model.parameters(), t.max_grad_norm or math.inf
                        )
                    )
                    result.grad_norms.append(grad_norm)
                    lr = run.scheduler.get_last_lr()[0]
                    run.optimizer.step()
                    run.scheduler.step()
                    run.optimizer.zero_grad(set_to_none=True)

                    tokens = sum(len(run.train_rows.input_ids[i]) for i in rows)
                    state.step += 1
                    state.step_in_epoch += 1
                    state.tokens_seen += tokens
                    state.supervised_tokens_seen += n_sup
                    state.last_loss = loss
                    result.losses.append(loss)
                    seconds = time.perf_counter() - began
                    if state.step % t.log_every == 0 or state.step == run.total_steps:
                        metrics = {
                            "train/loss": loss,
                            "train/lr": lr,
                            "train/epoch": state.epoch + state.step_in_epoch / run.steps_per_epoch,
                            "train/tokens_per_s": tokens / seconds,
                            "train/supervised_tokens_per_s": n_sup / seconds,
                        }
                        metrics["train/grad_norm"] = grad_norm
                        logger.log(state.step, metrics)
                    bar(state.step, loss, lr, n_sup / seconds)
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
    """Checkpoint on the main process with every rank's RNG state."""
    rngs = (
        gather_object([rng_to_json(rng)])
        if run.accelerator.num_processes > 1
        else [rng_to_json(rng)]
    )
    path = None
    if run.accelerator.is_main_process:
        path = save_checkpoint(
            run.output_dir / "checkpoints",
            run.model,
            run.optimizer,
            run.scheduler,
            state,
            rngs,
            run.config.to_yaml(),
            run.config.train.keep_last,
        )
    run.accelerator.wait_for_everyone()
    return path


@torch.no_grad()
def _validate(run: Run, state: TrainState, logger, result: TrainResult) -> None:
    """Validation loss over the held-out rows, and sample answers to `train.sample_prompts`."""
    acc, t = run.accelerator, run.config.train
    run.loss_model.eval()
    if run.val_rows is not None:
        fixed = run.config.require_data("train").max_length if run.packed else None
        idx = list(range(acc.process_index, len(run.val_rows), acc.num_processes))
        total = torch.zeros((), device=acc.device)
        for start in range(0, max(len(idx), 1), t.batch_size):
            batch = collate(
                run.val_rows, idx[start : start + t.batch_size], run.tokenizer.pad_token_id, fixed
            )
            batch = {k: v.to(acc.device) if v is not None else None for k, v in batch.items()}
            with acc.autocast():
                part, _ = run.loss_model(**batch)
            total += part
        val = acc.reduce(total, "sum").item() / max(1, sum(run.val_rows.supervised))
        result.val_losses.append(val)
        logger.log(state.step, {"val/loss": val, "val/perplexity": math.exp(min(val, 50))})
    if run.eval_tasks and acc.is_main_process:
        from instill.eval.models import LoadedModel
        from instill.eval.runner import evaluate, summarize
        from instill.generate.engine import SamplingConfig

        lm = LoadedModel("train", run.model, run.renderer, run.end_of_turn_ids)
        with acc.autocast():
            records = evaluate(
                lm,
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
        for k, text in enumerate(t.sample_prompts):
            logger.log_text(state.step, f"samples/{k}", f"{text}\n---\n{generate(run, text)}")
    run.loss_model.train()


def generate(run: Run, prompt: str) -> str:
    """Greedy answer to one user message, stopping at the end-of-turn token."""
    from instill.data.conversation import Message

    ids = run.renderer.encode_prompt([Message("user", prompt)])
    model = run.model
    with run.accelerator.autocast():
        out = model.generate(
            input_ids=torch.tensor([ids], device=run.accelerator.device),
            max_new_tokens=run.config.train.sample_max_new_tokens,
            do_sample=False,
            eos_token_id=run.end_of_turn_ids,
            pad_token_id=run.tokenizer.pad_token_id,
            use_cache=True,
        )
    return run.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


def _save_final(run: Run, state: TrainState, final: Path) -> None:
    """The tuned model as transformers / PEFT / vLLM load it, with tokenizer and stop tokens."""
    acc = run.accelerator
    if not acc.is_main_process:
        return
    import shutil

    from transformers import GenerationConfig

    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = run.model
    model.save_pretrained(str(tmp), safe_serialization=True)
    run.tokenizer.save_pretrained(str(tmp))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    gen = GenerationConfig.from_model_config(base.config)
    gen.eos_token_id = (
        run.end_of_turn_ids if len(run.end_of_turn_ids) > 1 else (run.end_of_turn_ids[0])
    )
    gen.pad_token_id = run.tokenizer.pad_token_id
    gen.bos_token_id = run.tokenizer.bos_token_id
    gen.save_pretrained(str(tmp))
    (tmp / "instill.json").write_text(
        json.dumps(
            {
                "base_model": run.config.model.path,
                "method": run.config.train.method,
                "template": run.renderer.template.name,
                "end_of_turn": run.renderer.template.end_of_turn,
                "steps": state.step,
                "final_loss": state.last_loss,
            },
            indent=2,
        )
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, done: int):
    """A rich progress bar: step, loss, learning rate, supervised tokens/s, ETA."""
    if not enabled:
        yield lambda *a: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[tps]} tok/s"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns) as progress:
        task = progress.add_task("train", total=total, completed=done, loss="-", lr="-", tps="-")

        def update(step: int, loss: float, lr: float, tps: float) -> None:
            progress.update(
                task, completed=step, loss=f"{loss:.4f}", lr=f"{lr:.2e}", tps=f"{tps:,.0f}"
            )

        yield update
