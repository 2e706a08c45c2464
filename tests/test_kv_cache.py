"""The growing KV cache returns the stock dynamic layers' states, step for step."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

from instill.generate.kv_cache import GrowingLayer, GrowingSlidingLayer, grow_in_place
from instill.generate.stream import DecodeEngine, DecodeRequest, mergeable
from instill.models.bundle import load_bundle


def _states(batch: int, columns: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 2, columns, 4, generator=g),
        torch.randn(batch, 2, columns, 4, generator=g),
    )


@pytest.mark.parametrize("window", [None, 5, 200])
def test_growing_layers_return_the_stock_states_through_appends_selects_and_reallocations(window):
    stock = DynamicLayer() if window is None else DynamicSlidingWindowLayer(sliding_window=window)
    grow = GrowingLayer() if window is None else GrowingSlidingLayer(sliding_window=window)
    steps = [(4, 7)] + [(4, 1)] * 80 + [(3, 1)] * 20 + [(3, 2)] * 10  # prefill, decode, a row left
    batch = 4
    for step, (rows, new) in enumerate(steps):
        if rows < batch:  # rows leave the batch, as the engine does when answers finish
            index = torch.tensor([0, 2, 3][:rows])
            stock.batch_select_indices(index)
            grow.batch_select_indices(index)
            batch = rows
        k, v = _states(rows, new, step)
        want_k, want_v = stock.update(k, v)
        got_k, got_v = grow.update(k, v)
        assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v), step
        assert torch.equal(grow.keys, stock.keys) and torch.equal(grow.values, stock.values)
        assert grow.get_seq_length() == stock.get_seq_length()
        assert grow.get_mask_sizes(1) == stock.get_mask_sizes(1)
    # Appends wrote in place: the buffer has spare columns beyond the stored ones.
    assert grow._k.shape[-2] > grow.keys.shape[-2]


def test_grow_in_place_keeps_states_and_refuses_unknown_layers():
    cache = DynamicCache()
    cache.layers = [DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=3)]
    k, v = _states(2, 5, 0)
    for i in range(2):
        cache.update(k, v, i)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    length = cache.layers[1].cumulative_length
    assert grow_in_place(cache) and mergeable(cache)
    assert [type(layer) for layer in cache.layers] == [GrowingLayer, GrowingSlidingLayer]
    for layer, (keys, values) in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
    assert cache.layers[1].cumulative_length == length and cache.layers[1].sliding_window == 3

    class Other(DynamicLayer):
        pass

    odd = DynamicCache()
    odd.layers = [DynamicLayer(), Other()]
    assert not grow_in_place(odd)
    assert [type(layer) for layer in odd.layers] == [DynamicLayer, Other]


@pytest.mark.parametrize("model", ["tiny-random-gemma", "tiny-random-llama"])
def test_engine_answers_equal_generate_past_the_sliding_window(model):
    """Decoding past tiny Gemma's 64-column window, with reallocations on the way: the growing
    cache gives `generate`'s answers (which use the stock cache)."""
    bundle = load_bundle(model, name="tiny", dtype=torch.float32)
    engine = DecodeEngine.for_bundle(bundle)
    prompts = [list(range(3, 3 + n)) for n in (5, 40, 23)]
    got = engine.run([DecodeRequest(p, max_new_tokens=90) for p in prompts])
    for p, answer in zip(prompts, got, strict=True):
        with torch.no_grad():
            out = bundle.model.generate(
                input_ids=torch.tensor([p]),
                max_new_tokens=90,
                do_sample=False,
                eos_token_id=list(engine.stop_ids),
                pad_token_id=engine.pad_id,
            )
        new = out[0, len(p) :].tolist()
        stop = next((k for k, t in enumerate(new) if t in engine.stop_ids), None)
        assert answer.token_ids == (new if stop is None else new[: stop + 1])
    # Past the window, and past the first buffer (prompt + MIN_SPARE columns): reallocated.
    assert max(len(p) + len(a.token_ids) for p, a in zip(prompts, got, strict=True)) > 40 + 64
