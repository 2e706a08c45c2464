"""A KV cache that grows in place, for the decoding loop (stream.py).

transformers' `DynamicLayer` appends a step's keys and values with `torch.cat`, which copies the
whole cache every step: O(length) bytes per token, O(length^2) over an answer. At batch 16 on
SmolLM2 that copy was 19% of a decode step's time (a profile in bench/RESULTS.md).
`GrowingLayer` keeps keys and values in buffers with spare columns and writes each step into
them; the layer's `keys` / `values` are views of the filled part, so everything that reads or
assigns them (the model's attention, `Cache.batch_select_indices`, `merge_caches`) works as
with the stock layer. A buffer that is full is reallocated with room for half again its length,
so the copying is O(1) columns per step on average.

`GrowingSlidingLayer` does the same for a sliding-window layer (Gemma 3's local layers): it
returns the stored `window - 1` columns plus the new ones, and keeps the last `window - 1`,
exactly as `DynamicSlidingWindowLayer` does.

The values are the stock layer's, bit for bit (a test compares the two on every step); only
where they live changes.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

MIN_SPARE = 64  # columns of room a (re)allocated buffer gets at least


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose states live in buffers with spare columns (see the module doc)."""

    def __init__(self, **kwargs) -> None:
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._start = self._end = 0  # the stored columns: buffer[..., start:end, :]
        super().__init__(**kwargs)

    # `keys` / `values`: views of the stored columns. Assigning one stores the tensor as its
    # buffer (no spare room: the next append reallocates) and narrows the other buffer to its
    # view, so the two keep one span; transformers and `merge_caches` assign both, same length.
    @property
    def keys(self) -> torch.Tensor | None:
        return self._view(self._k)

    @keys.setter
    def keys(self, value: torch.Tensor | None) -> None:
        self._v = self._view(self._v)
        self._k = value
        self._reset_span(value)

    @property
    def values(self) -> torch.Tensor | None:
        return self._view(self._v)

    @values.setter
    def values(self, value: torch.Tensor | None) -> None:
        self._k = self._view(self._k)
        self._v = value
        self._reset_span(value)

    def _view(self, buffer: torch.Tensor | None) -> torch.Tensor | None:
        if buffer is None or buffer.dim() != 4:
            return buffer  # unset, or transformers' 1-d empty placeholder
        return buffer[:, :, self._start : self._end, :]

    def _reset_span(self, value: torch.Tensor | None) -> None:
        self._start = 0
        self._end = value.shape[-2] if value is not None and value.dim() == 4 else 0

    def _append(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Write the new columns after the stored ones, reallocating when there is no room."""
        new = key_states.shape[-2]
        if self._k is None or self._k.dim() != 4 or self._end + new > self._k.shape[-2]:
            self._reallocate(key_states, value_states, new)
        end = self._end + new
        self._k[:, :, self._end : end, :].copy_(key_states)
        self._v[:, :, self._end : end, :].copy_(value_states)
        self._end = end

    def _reallocate(self, key_states: torch.Tensor, value_states: torch.Tensor, new: int) -> None:
        stored = self._end - self._start
        columns = stored + new + max(MIN_SPARE, (stored + new) // 2)
        k = key_states.new_empty((*key_states.shape[:2], columns, key_states.shape[-1]))
        v = value_states.new_empty((*value_states.shape[:2], columns, value_states.shape[-1]))
        if stored:
            k[:, :, :stored, :].copy_(self._k[:, :, self._start : self._end, :])
            v[:, :, :stored, :].copy_(self._v[:, :, self._start : self._end, :])
        self._k, self._v, self._start, self._end = k, v, 0, stored

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._append(key_states, value_states)
        return self.keys, self.values


class GrowingSlidingLayer(GrowingLayer, DynamicSlidingWindowLayer):
    """A `DynamicSlidingWindowLayer` on growing buffers: returns the stored columns plus the new
    ones, then keeps the last `sliding_window - 1`."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.record_past:  # rollback bookkeeping (assisted decoding): the stock path
            return DynamicSlidingWindowLayer.update(self, key_states, value_states, *args, **kwargs)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        visible = self._end - self._start + key_states.shape[-2]
        self._append(key_states, value_states)
        full_k = self._k[:, :, self._end - visible : self._end, :]
        full_v = self._v[:, :, self._end - visible : self._end, :]
        self._start = self._end - min(visible, self.sliding_window - 1)
        return full_k, full_v


GROWING = {DynamicLayer: GrowingLayer, DynamicSlidingWindowLayer: GrowingSlidingLayer}


def grow_in_place(cache) -> bool:
    """Swap each stock dynamic layer of `cache` for its growing twin, keeping its states and
    bookkeeping; True if every layer is now a growing one (False: left as it was)."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) not in (*GROWING, *GROWING.values()) for layer in layers):
        return False
    for i, layer in enumerate(layers):
        if type(layer) in GROWING.values():
            continue
        state = dict(vars(layer))  # device, is_initialized, sliding window, cumulative length
        keys, values = state.pop("keys", None), state.pop("values", None)
        twin = GROWING[type(layer)].__new__(GROWING[type(layer)])
        vars(twin).update(state, _k=None, _v=None, _start=0, _end=0)
        twin.keys, twin.values = keys, values
        layers[i] = twin
    return True
