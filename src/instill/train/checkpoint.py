"""Atomic checkpoints that resume exactly: weights, optimizer, scheduler, RNG and data position.

A checkpoint is a directory `checkpoints/step-000040/` written under a temporary name and renamed
into place only when complete, so a kill during a save leaves the previous checkpoint intact and
a half-written one is never mistaken for a checkpoint. Only trainable parameters are stored (the
adapter for LoRA, everything for full fine-tuning), in safetensors; the optimizer and scheduler
states go through `torch.save` of plain tensors and numbers and are loaded with
`weights_only=True`. RNG states are those at the *start* of the step being resumed, so a run
interrupted mid-step (Ctrl-C) replays that step exactly.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from instill.atomic import atomic_directory
from instill.errors import InstillError

STEP_DIR = re.compile(r"^step-(\d+)$")
#: where a sharded run (FSDP, DeepSpeed) keeps accelerate's `save_state` inside a checkpoint.
SHARDED_STATE = "accelerate_state"


@dataclass
class TrainState:
    """Where the loop is: resumed runs continue from exactly here."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    step_in_epoch: int = 0
    tokens_seen: int = 0
    supervised_tokens_seen: int = 0
    last_loss: float | None = None


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_to_json(state: dict[str, Any]) -> dict:
    """RNG states as JSON-able data (gathered from every rank before a save)."""
    version, internal, gauss = state["python"]
    kind, keys, pos, has_gauss, cached = state["numpy"]
    data = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": state["torch"].tolist(),
    }
    if "cuda" in state:
        data["cuda"] = [s.tolist() for s in state["cuda"]]
    return data


def rng_from_json(data: dict) -> dict[str, Any]:
    version, internal, gauss = data["python"]
    kind, keys, pos, has_gauss, cached = data["numpy"]
    state: dict[str, Any] = {
        "python": (version, tuple(internal), gauss),
        "numpy": (kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached),
        "torch": torch.tensor(data["torch"], dtype=torch.uint8),
    }
    if "cuda" in data:
        state["cuda"] = [torch.tensor(s, dtype=torch.uint8) for s in data["cuda"]]
    return state


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (contiguous CPU copies)."""
    return {
        name: p.detach().to("cpu").contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainState,
    rngs: list[dict],
    config_yaml: str,
    keep_last: int | None = None,
) -> Path:
    """Write `directory/step-NNNNNN/` atomically and prune old checkpoints.

    Call on the main process only (DDP ranks hold identical weights); `rngs` holds every rank's
    RNG state (`rng_to_json`), gathered beforehand.
    """
    final = directory / f"step-{state.step:06d}"
    with atomic_directory(final) as tmp:  # the checkpoint exists only once it is complete
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        _write_loop_state(tmp, scheduler, state, rngs, config_yaml)
    _prune(directory, keep_last)
    return final


def _write_loop_state(
    tmp: Path, scheduler: Any, state: TrainState, rngs: list[dict], config_yaml: str
) -> None:
    """What every checkpoint holds besides weights and optimizer: schedule, RNG, data position."""
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "rng.json").write_text(json.dumps(rngs))
    (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))


def _prune(directory: Path, keep_last: int | None) -> None:
    if keep_last:
        for old in list_checkpoints(directory)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def save_sharded_checkpoint(
    accelerator: Any,
    directory: Path,
    scheduler: Any,
    state: TrainState,
    rngs: list[dict],
    config_yaml: str,
    keep_last: int | None = None,
) -> Path:
    """The same checkpoint for a run whose weights are sharded over ranks (FSDP, DeepSpeed).

    Call on *every* rank: accelerate's `save_state` (the way accelerate documents for sharded
    engines) has each rank write its shard of the weights and optimizer into the temp dir; the
    main process then adds the scheduler, RNG states, config and loop state and renames the
    directory into place, so the checkpoint is just as atomic as an unsharded one.
    """
    final = directory / f"step-{state.step:06d}"
    tmp = directory / f"step-{state.step:06d}.tmp"  # the same name on every rank
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / SHARDED_STATE))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_loop_state(tmp, scheduler, state, rngs, config_yaml)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        _prune(directory, keep_last)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp dirs of interrupted saves are ignored)."""
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = STEP_DIR.match(p.name)
        if m and (p / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def find_checkpoint(output_dir: Path, resume: str | bool) -> Path:
    """Resolve `--resume`: True means the latest checkpoint of the run, a string a given one."""
    if resume is True or resume == "latest":
        found = list_checkpoints(output_dir / "checkpoints")
        if not found:
            raise InstillError(
                f"--resume: no checkpoint in {output_dir / 'checkpoints'}; start without --resume"
            )
        return found[-1]
    path = Path(str(resume))
    if not (path / "state.json").is_file():
        raise InstillError(f"--resume {path}: not a checkpoint directory (no state.json)")
    return path


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rank: int = 0,
    accelerator: Any = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Load a checkpoint into model/optimizer/scheduler; returns the state and RNG to restore.

    A sharded checkpoint (`save_sharded_checkpoint`) is loaded by accelerate's `load_state` on
    every rank, which needs the run's `accelerator`.
    """
    if (path / SHARDED_STATE).is_dir():
        if accelerator is None:
            raise InstillError(
                f"{path}: a sharded (FSDP / DeepSpeed) checkpoint; resume it with the same "
                "`accelerate launch` configuration it was saved with"
            )
        accelerator.load_state(str(path / SHARDED_STATE))
        return _loop_state(path, scheduler, rank)
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != trainable:
        missing = sorted(trainable - set(weights))[:3]
        extra = sorted(set(weights) - trainable)[:3]
        raise InstillError(
            f"{path}: checkpoint does not match this run's trainable parameters (missing "
            f"{missing}, unexpected {extra}); resume with the config it was saved with"
        )
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return _loop_state(path, scheduler, rank)


def _loop_state(path: Path, scheduler: Any, rank: int) -> tuple[TrainState, dict[str, Any]]:
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    state = TrainState(**json.loads((path / "state.json").read_text()))
    rngs = json.loads((path / "rng.json").read_text())
    # Resumed on more ranks than were saved: the extra ranks reuse rank 0's state.
    return state, rng_from_json(rngs[rank] if rank < len(rngs) else rngs[0])
