"""The training-objective seam: what differs between SFT, DPO and the next objective.

The loop (`loop.py`) owns everything objectives share: the data order, micro-batches across
ranks and accumulation steps, the loss normalisation, clipping, the optimizer, checkpoints,
logging and resume. An objective decides only three things:

* the **weight** of a set of rows: what the step's summed loss is divided by (supervised tokens
  for SFT, preference pairs for DPO). The loop sums it over the whole step, all ranks included,
  before any backward, so that the gradient is the same however the step is split;
* how rows become a **batch** of tensors;
* the **loss sum** of a batch: a module (so accelerate can wrap it for DDP / FSDP / DeepSpeed)
  whose forward returns the summed loss and summed extra metrics, each divided by the step weight
  by the loop.

Objectives are plain classes satisfying this `Protocol`; `sft.py` is the first.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Objective(Protocol):
    """What a training objective provides to the loop."""

    #: what `weight` counts, for logs (`supervised_tokens`, `pairs`).
    weight_name: str

    def load_rows(self, directory: Path) -> Sized:
        """The prepared rows of `directory` (a `prepare` output)."""
        ...

    def weight(self, rows: Sized, idx: Sequence[int]) -> int:
        """The normaliser of rows `idx`: the loop divides the step's loss sum by it."""
        ...

    def token_count(self, rows: Sized, idx: Sequence[int]) -> int:
        """Tokens the model processes for rows `idx` (throughput logs)."""
        ...

    def batch(self, rows: Sized, idx: Sequence[int]) -> dict[str, torch.Tensor | None]:
        """The tensors of one micro-batch (an empty `idx` gives a batch with zero weight)."""
        ...

    def loss_module(self, model: nn.Module) -> nn.Module:
        """A module whose `forward(**batch)` returns `(loss_sum, {metric: sum})`."""
        ...
