"""Best-fit-decreasing packing into rows of `max_length`, with per-sequence `position_ids`.

A packed row concatenates several examples; `position_ids` restart at 0 at each example, which is
both what the model needs for positions and the marker of sequence boundaries. No token may attend
across examples. transformers (>= 4.56) derives the sequence boundaries from `position_ids` when a
batch is passed with `attention_mask=None` and no KV cache: flash-attention uses its varlen kernel,
and SDPA / eager / flex build a block-diagonal causal mask, sliding-window layers (Gemma 3)
included. We measured this path exact on CPU for Llama, Qwen2 and Gemma 3 with SDPA and eager
(`tests/test_packing.py` checks it), whereas a hand-made dense 4D mask is wrong for sliding-window
layers and for eager attention, so the collator passes position ids and no mask.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from instill.data.masking import IGNORE_INDEX, TokenizedExample


@dataclass(slots=True)
class PackedRow:
    """Several examples in one row (at most `max_length` tokens, unpadded)."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    sources: list[str]


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Assign items to bins of `capacity` by best-fit-decreasing.

    Items are placed longest first, each into the open bin with the least room that still fits
    it (found by bisection over the sorted remaining capacities of the bins still open; a bin
    too full for the smallest item is closed). Bins are returned in the order of their first
    item's index and hold item indices in ascending order, so the output is deterministic and
    close to source order.

    Raises:
        ValueError: if an item is longer than `capacity`.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    smallest = min(lengths, default=0)
    free: list[tuple[int, int]] = []  # sorted (remaining capacity, bin index) of open bins
    bins: list[list[int]] = []
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"item {i} has length {n} > capacity {capacity}; truncate it first")
        pos = bisect.bisect_left(free, (n, -1))
        if pos == len(free):
            bins.append([i])
            b, room = len(bins) - 1, capacity - n
        else:
            room, b = free.pop(pos)
            bins[b].append(i)
            room -= n
        if room >= smallest:  # a bin that no item can fit into any more is closed
            bisect.insort(free, (room, b))
    for b in bins:
        b.sort()
    bins.sort(key=lambda b: b[0])
    return bins


def pack_examples(examples: Sequence[TokenizedExample], max_length: int) -> list[PackedRow]:
    """Pack tokenized examples into rows of at most `max_length` tokens."""
    bins = best_fit_decreasing([len(e.input_ids) for e in examples], max_length)
    rows = []
    for b in bins:
        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        sources = []
        for i in b:
            e = examples[i]
            ids += e.input_ids
            labels += e.labels
            pos += range(len(e.input_ids))
            sources.append(e.source)
        rows.append(PackedRow(ids, labels, pos, sources))
    return rows


def collate_packed(rows: Sequence[dict], pad_token_id: int, length: int | None = None) -> dict:
    """Stack packed rows into tensors, right-padding to `length` (default: the longest row).

    Padding gets label -100 and its own position ids starting at 0, so it forms a separate
    sequence that no real token attends to. Call the model with these tensors, `use_cache=False`
    and no `attention_mask`, so that transformers isolates the packed sequences (see above).
    """
    import torch

    n = length or max(len(r["input_ids"]) for r in rows)
    ids, labels, pos = [], [], []
    for r in rows:
        pad = n - len(r["input_ids"])
        if pad < 0:
            raise ValueError(f"row of {len(r['input_ids'])} tokens does not fit length {n}")
        ids.append(list(r["input_ids"]) + [pad_token_id] * pad)
        labels.append(list(r["labels"]) + [IGNORE_INDEX] * pad)
        pos.append(list(r["position_ids"]) + list(range(pad)))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(pos, dtype=torch.long),
    }
