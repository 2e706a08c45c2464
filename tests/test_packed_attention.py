"""Packed rows attend one sequence at a time (`instill.models.packed_attention`): the same
hidden states and gradients as transformers' dense block-diagonal mask, on every tiny
architecture, in float64 so that nothing hides in rounding."""

import pytest
import torch

from instill.models import packed_attention
from instill.models.loss import decoder_hidden_states
from instill.models.tiny import TINY_NAMES, build_tiny_model

# One row: sequences of 5, 37 (over a bucket), 100 (over tiny Gemma's 64-token window) and 1
# token, then 17 tokens of padding (their own sequence, as collate writes it); a second row: one
# sequence filling it, so rows with one and with several sequences share a batch.
LENGTHS = [[5, 37, 100, 1, 17], [160]]


def _positions() -> torch.Tensor:
    return torch.tensor([[p for n in row for p in range(n)] for row in LENGTHS])


def test_sequence_ids_follow_transformers_rule():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1, 5, 6]])
    ids = packed_attention.packed_sequence_ids(pos)
    assert ids.shape == (1, 1, 1, 10) and ids.dtype == torch.int32
    # a new sequence wherever the position does not follow on by one (0 -> 0, 1 -> 5)
    assert ids.flatten().tolist() == [1, 1, 1, 2, 2, 3, 4, 4, 5, 5]
    assert packed_attention.packed_sequence_ids(torch.arange(4)).flatten().tolist() == [1] * 4


def _hidden_and_grads(model, ids, pos, mask=None):
    model.zero_grad(set_to_none=True)
    hidden = decoder_hidden_states(model, ids, pos, mask)
    weights = torch.linspace(-1, 1, hidden.numel(), dtype=hidden.dtype).view_as(hidden)
    (hidden * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return hidden.detach(), grads


@pytest.mark.parametrize("name", TINY_NAMES)
def test_packed_rows_equal_the_dense_block_mask(name):
    model = build_tiny_model(name).to(torch.float64)
    pos = _positions()
    ids = torch.randint(
        3, model.config.vocab_size, pos.shape, generator=torch.Generator().manual_seed(0)
    )
    assert model.config._attn_implementation == "sdpa"
    dense, dense_grads = _hidden_and_grads(model, ids, pos)
    model.set_attn_implementation(packed_attention.register())
    packed, packed_grads = _hidden_and_grads(model, ids, pos)
    torch.testing.assert_close(packed, dense, rtol=1e-10, atol=1e-12)
    assert packed_grads.keys() == dense_grads.keys()
    for n in dense_grads:
        torch.testing.assert_close(packed_grads[n], dense_grads[n], rtol=1e-10, atol=1e-12)
    # and each sequence alone gives the same states: nothing leaks across sequences
    start = 0
    for n in LENGTHS[0][:-1]:
        alone = decoder_hidden_states(model, ids[:1, start : start + n]).detach()
        torch.testing.assert_close(packed[0, start : start + n], alone[0], rtol=1e-10, atol=1e-12)
        start += n


@pytest.mark.parametrize("name", TINY_NAMES)
def test_other_inputs_go_through_sdpa_unchanged(name):
    """Padding masks, plain rows and cached decoding: the switched model is SDPA itself."""
    model = build_tiny_model(name).to(torch.float64).eval()
    ids = torch.randint(
        3, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1)
    )
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :4] = 0  # left padding
    with torch.no_grad():
        before = model(ids, attention_mask=mask).logits
        steps_before = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
        model.set_attn_implementation(packed_attention.register())
        after = model(ids, attention_mask=mask).logits
        steps_after = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(before, after)
    assert torch.equal(steps_before, steps_after)


def test_training_switches_packed_runs_only(tmp_path):
    from instill.config import validate_config
    from instill.train.setup import build_run
    from tests.test_train import make_config

    for packing in (True, False):
        raw = make_config(tmp_path / str(packing), max_steps=1)
        raw["output_dir"] = str(tmp_path / f"run-{packing}")
        raw["data"]["packing"] = packing
        run = build_run(validate_config(raw))
        want = packed_attention.ATTENTION if packing else "sdpa"
        assert run.model.config._attn_implementation == want
