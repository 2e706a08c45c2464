"""Prepared rows -> micro-batches, with the sharding that keeps the loss invariant.

Every rank maps the whole prepared dataset (`data.prepared.TokenRows`: flat int32 buffers of a
memory-mapped Arrow file, shared by the ranks through the page cache) and derives the same
per-epoch permutation from the seed, so no sampler state needs saving: the data position of a
resumed run is just (epoch, step in epoch). An optimizer step takes the next
`batch_size x world_size x grad_accum` rows of the permutation; micro-batch m of rank r is the
slice `(m * world + r) * batch_size`. The weight of the *whole step* (its supervised tokens for
SFT) is known to every rank from the rows alone, so the loss normaliser needs no communication.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from instill.data.masking import IGNORE_INDEX
from instill.data.prepared import TokenRows


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


def gather_rows(flat: np.ndarray, offsets: np.ndarray, idx: np.ndarray, width: int, fill):
    """Rows `idx` of a flat buffer as a `[len(idx), width]` array, right-padded with `fill`.

    One vectorised gather: no Python loop over rows, no tensor per row. `fill` may be a scalar
    or a `[len(idx), width]` array of the values to put past each row's end.
    """
    starts = offsets[idx]  # [batch]
    lengths = offsets[idx + 1] - starts  # [batch]
    cols = np.arange(width, dtype=np.int64)  # [width]
    valid = cols[None, :] < lengths[:, None]  # [batch, width]
    where = np.where(valid, starts[:, None] + cols[None, :], 0)
    values = flat[where] if len(flat) else np.zeros(where.shape, dtype=flat.dtype)
    return np.where(valid, values, fill), valid


def collate(data: TokenRows, idx: Sequence[int], pad_id: int, fixed_length: int | None) -> dict:
    """Tensors for one micro-batch.

    Packed rows are padded to `fixed_length` (one shape for every step: CPU kernels are planned
    once) and carry restarting position ids and no attention mask; unpadded rows are padded to
    the longest row (rounded up to a multiple of 8) with a 2D attention mask. An empty index list
    gives one all-padding row with no supervised token, so every rank still runs forward/backward.
    """
    packed = data.position_ids is not None
    if len(idx) == 0:
        n = fixed_length or 8
        return {
            "input_ids": torch.full((1, n), pad_id, dtype=torch.long),
            "labels": torch.full((1, n), IGNORE_INDEX, dtype=torch.long),
            "position_ids": torch.arange(n).unsqueeze(0) if packed else None,
            "attention_mask": None if packed else torch.ones(1, n, dtype=torch.long),
        }
    rows = np.asarray(idx, dtype=np.int64)
    longest = int(data.lengths[rows].max())
    n = fixed_length if (fixed_length and packed) else -(-longest // 8) * 8
    ids, valid = gather_rows(data.input_ids, data.offsets, rows, n, pad_id)
    labels, _ = gather_rows(data.labels, data.offsets, rows, n, IGNORE_INDEX)
    batch = {
        "input_ids": torch.from_numpy(ids.astype(np.int64)),
        "labels": torch.from_numpy(labels.astype(np.int64)),
    }
    if packed:
        # Padding is a sequence of its own: its positions restart at 0 after the row's end.
        past_end = np.arange(n)[None, :] - valid.sum(axis=1, keepdims=True)
        pos, _ = gather_rows(data.position_ids, data.offsets, rows, n, past_end)
        batch["position_ids"] = torch.from_numpy(pos.astype(np.int64))
        batch["attention_mask"] = None
    else:
        batch["position_ids"] = None
        batch["attention_mask"] = torch.from_numpy(valid.astype(np.int64))
    return batch
