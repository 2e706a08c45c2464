"""Prepared rows -> micro-batches, with the sharding that keeps the loss invariant.

Every rank holds the whole prepared dataset (it is small next to the model) and derives the same
per-epoch permutation from the seed, so no sampler state needs saving: the data position of a
resumed run is just (epoch, step in epoch). An optimizer step takes the next
`batch_size x world_size x grad_accum` rows of the permutation; micro-batch m of rank r is the
slice `(m * world + r) * batch_size`. The number of supervised tokens of the *whole step* is known
to every rank from the rows alone, so the loss normaliser needs no communication.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from instill.data.masking import IGNORE_INDEX


@dataclass
class Rows:
    """The training (or validation) rows in memory."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    position_ids: list[list[int]] | None  # set for packed rows
    supervised: list[int]  # supervised tokens per row (labels != -100, first label excluded)

    def __len__(self) -> int:
        return len(self.input_ids)

    @classmethod
    def from_columns(cls, columns: dict) -> Rows:
        labels = columns["labels"]
        return cls(
            input_ids=columns["input_ids"],
            labels=labels,
            position_ids=columns.get("position_ids"),
            supervised=[sum(1 for x in row[1:] if x != IGNORE_INDEX) for row in labels],
        )

    def subset(self, idx: list[int]) -> Rows:
        pos = [self.position_ids[i] for i in idx] if self.position_ids is not None else None
        return Rows(
            [self.input_ids[i] for i in idx],
            [self.labels[i] for i in idx],
            pos,
            [self.supervised[i] for i in idx],
        )


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The seeded shuffle of epoch `epoch` (the same on every rank and after a resume)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def steps_per_epoch(n_rows: int, global_batch: int) -> int:
    return math.ceil(n_rows / global_batch)


def step_rows(perm: list[int], step_in_epoch: int, global_batch: int) -> list[int]:
    return perm[step_in_epoch * global_batch : (step_in_epoch + 1) * global_batch]


def micro_batches(
    rows: list[int], batch_size: int, world: int, rank: int, accum: int
) -> list[list[int]]:
    """This rank's micro-batches of a step (possibly empty ones at the end of an epoch)."""
    out = []
    for m in range(accum):
        start = (m * world + rank) * batch_size
        out.append(rows[start : start + batch_size])
    # Drop trailing micro-batches that are empty on *every* rank (same decision everywhere).
    while out and len(rows) <= (len(out) - 1) * world * batch_size:
        out.pop()
    return out


def collate(data: Rows, idx: list[int], pad_id: int, fixed_length: int | None) -> dict:
    """Tensors for one micro-batch.

    Packed rows are padded to `fixed_length` (one shape for every step: CPU kernels are planned
    once) and carry restarting position ids and no attention mask; unpadded rows are padded to
    the longest row (rounded up to a multiple of 8) with a 2D attention mask. An empty index list
    gives one all-padding row with no supervised token, so every rank still runs forward/backward.
    """
    if not idx:
        n = fixed_length or 8
        return {
            "input_ids": torch.full((1, n), pad_id, dtype=torch.long),
            "labels": torch.full((1, n), IGNORE_INDEX, dtype=torch.long),
            "position_ids": torch.arange(n).unsqueeze(0) if data.position_ids else None,
            "attention_mask": None if data.position_ids else torch.ones(1, n, dtype=torch.long),
        }
    longest = max(len(data.input_ids[i]) for i in idx)
    n = fixed_length if (fixed_length and data.position_ids is not None) else -(-longest // 8) * 8
    ids = torch.full((len(idx), n), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), n), IGNORE_INDEX, dtype=torch.long)
    if data.position_ids is not None:
        pos = torch.zeros((len(idx), n), dtype=torch.long)
        for b, i in enumerate(idx):
            k = len(data.input_ids[i])
            ids[b, :k] = torch.tensor(data.input_ids[i])
            labels[b, :k] = torch.tensor(data.labels[i])
            pos[b, :k] = torch.tensor(data.position_ids[i])
            pos[b, k:] = torch.arange(n - k)  # padding is a sequence of its own
        return {"input_ids": ids, "labels": labels, "position_ids": pos, "attention_mask": None}
    mask = torch.zeros((len(idx), n), dtype=torch.long)
    for b, i in enumerate(idx):
        k = len(data.input_ids[i])
        ids[b, :k] = torch.tensor(data.input_ids[i])
        labels[b, :k] = torch.tensor(data.labels[i])
        mask[b, :k] = 1
    return {"input_ids": ids, "labels": labels, "position_ids": None, "attention_mask": mask}
