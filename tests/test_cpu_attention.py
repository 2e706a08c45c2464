"""Causal attention on CPU as matmuls and compiled softmax kernels (`instill.models.cpu_attention`):
SDPA's result and gradients, exactly in float64 and within bf16 rounding in bf16, with GQA,
sliding windows and query blocks; packed training rows go through it; a compiler failure falls
back."""

import logging

import pytest
import torch
import torch.nn.functional as F

from instill.models import cpu_attention, packed_attention
from instill.models.tiny import TINY_NAMES, build_tiny_model

BF16_UNIT = 2.0**-8  # bf16's unit roundoff: 8 significant bits


def _inputs(n, heads, kv_heads, dim, length, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    # queries laid out as the packed path hands them over: a transposed [n, L, heads, dim]
    q = torch.randn(n, length, heads, dim, generator=g).to(dtype).transpose(1, 2)
    k = torch.randn(n, kv_heads, length, dim, generator=g).to(dtype)
    v = torch.randn(n, kv_heads, length, dim, generator=g).to(dtype)
    grad = torch.randn(n, heads, length, dim, generator=g).to(dtype)
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), grad


def _reference(q, k, v, grad, window):
    """float64 SDPA with an explicit mask and K/V repeated per query head."""
    group = q.shape[1] // k.shape[1]
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    i = torch.arange(q.shape[2])
    mask = i[:, None] >= i[None, :]
    if window:
        mask &= i[:, None] - i[None, :] < window
    out = F.scaled_dot_product_attention(
        q64, k64.repeat_interleave(group, 1), v64.repeat_interleave(group, 1), attn_mask=mask
    )
    out.backward(grad.double())
    return out.detach(), q64.grad, k64.grad, v64.grad


def _ours(q, k, v, grad, window, compiled):
    for x in (q, k, v):
        x.grad = None
    out = cpu_attention.causal_attention(q, k, v, None, window, compiled)
    out.backward(grad)
    return out.detach(), q.grad, k.grad, v.grad


SHAPES = [  # n, heads, kv_heads, dim, length, window
    (2, 6, 2, 16, 96, None),  # GQA, causal
    (3, 4, 1, 32, 64, 20),  # one key/value head, a sliding window
    (1, 2, 2, 8, 33, None),  # no GQA, an odd length
]


@pytest.mark.parametrize("small_blocks", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_float64_equals_sdpa(shape, small_blocks, monkeypatch):
    if small_blocks:  # several query blocks, each reading only the keys it can see
        monkeypatch.setattr(cpu_attention, "SCORE_ELEMENTS", shape[1] * 40 * shape[0])
    *dims, window = shape
    q, k, v, grad = _inputs(*dims, torch.float64)
    assert len(cpu_attention._blocks(dims[0], dims[1], dims[4])) == (
        (3 if dims[4] == 96 else 2) if small_blocks else 1
    )
    for got, want in zip(
        _ours(q, k, v, grad, window, False), _reference(q, k, v, grad, window), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_bf16_compiled_within_bf16_rounding(shape, monkeypatch):
    """The compiled kernels in bf16: each result within a few bf16 roundings of float64 (the
    scores, probabilities and products are each rounded once to bf16; SDPA's own bf16 error
    on these inputs is 0.3-1.4% of the largest entry)."""
    monkeypatch.setattr(cpu_attention, "kernels", cpu_attention._Kernels())
    *dims, window = shape
    q, k, v, grad = _inputs(*dims, torch.bfloat16)
    got = _ours(q, k, v, grad, window, True)
    assert set(cpu_attention.kernels.compiled) == {"probs", "grads"}
    assert not cpu_attention.kernels.failed
    for g, want in zip(got, _reference(q, k, v, grad, window), strict=True):
        assert g.dtype == torch.bfloat16
        rel = ((g.double() - want).abs().max() / want.abs().max()).item()
        assert rel < 4 * BF16_UNIT


def test_enabled_only_where_it_applies(monkeypatch):
    q32 = torch.zeros(1, 2, 4, 8)
    assert not cpu_attention.enabled(q32)  # fp32 without autocast: SDPA
    assert cpu_attention.enabled(q32.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cpu_attention.enabled(q32)  # SDPA would run in bf16 here
        assert not cpu_attention.enabled(q32, dropout=0.1)
    monkeypatch.setenv(cpu_attention.ENV, "0")
    assert not cpu_attention.enabled(q32.bfloat16())
    with pytest.raises(ValueError, match="3 query heads over 2"):
        cpu_attention.causal_attention(torch.zeros(1, 3, 4, 8), *[torch.zeros(1, 2, 4, 8)] * 2)


def test_autocast_inputs_are_cast_like_sdpa():
    q, k, v, grad = _inputs(1, 4, 2, 16, 40, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cpu_attention.causal_attention(q, k, v, compiled=False)
    assert out.dtype == torch.bfloat16
    out.backward(grad.bfloat16())
    assert q.grad.dtype == torch.float32  # the cast is part of the graph, as SDPA's
    want = _reference(q, k, v, grad, None)
    rel = ((q.grad.double() - want[1]).abs().max() / want[1].abs().max()).item()
    assert rel < 4 * BF16_UNIT


def test_compiler_failure_falls_back(monkeypatch, caplog):
    """A compiler that fails: the call is computed eagerly (same result), said once, and the
    packed path goes back to SDPA."""
    monkeypatch.setattr(cpu_attention, "kernels", cpu_attention._Kernels())

    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler\nmore detail")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    q, k, v, grad = _inputs(2, 4, 2, 8, 24, torch.bfloat16)
    assert cpu_attention.enabled(q)
    with caplog.at_level(logging.WARNING, logger="instill.models.cpu_attention"):
        got = _ours(q, k, v, grad, None, True)
    assert cpu_attention.kernels.failed
    assert "compiling instill's CPU attention failed (RuntimeError: no C++ compiler)" in caplog.text
    assert cpu_attention.ENV in caplog.text
    eager = _ours(q, k, v, grad, None, False)
    for a, b in zip(got, eager, strict=True):
        assert torch.equal(a, b)
    assert not cpu_attention.enabled(q)


# Packed rows through the model (as test_packed_attention.py): sequences of 5, 37, 100 (over
# tiny Gemma's 64-token window) and 1 token plus 17 of padding, and a row of one sequence.
LENGTHS = [[5, 37, 100, 1, 17], [160]]


@pytest.mark.parametrize("name", TINY_NAMES)
def test_packed_rows_through_matmul_attention_equal_the_dense_mask(name, monkeypatch):
    """float64 with the kernels run eagerly (their arithmetic is the compiled one's): the packed
    model through `causal_attention` computes the dense block-diagonal mask's states and
    gradients, windows included."""
    from instill.models.loss import decoder_hidden_states

    monkeypatch.setattr(cpu_attention, "DTYPES", (torch.float64,))
    kernels = cpu_attention._Kernels()
    kernels.compiled = {"probs": cpu_attention._probs, "grads": cpu_attention._grads}
    monkeypatch.setattr(cpu_attention, "kernels", kernels)
    calls = []
    real = cpu_attention.causal_attention
    monkeypatch.setattr(
        cpu_attention, "causal_attention", lambda *a, **kw: calls.append(a[4]) or real(*a, **kw)
    )
    model = build_tiny_model(name).to(torch.float64)
    pos = torch.tensor([[p for n in row for p in range(n)] for row in LENGTHS])
    ids = torch.randint(3, model.config.vocab_size, pos.shape, generator=torch.Generator())

    def run():
        model.zero_grad(set_to_none=True)
        hidden = decoder_hidden_states(model, ids, pos)
        (hidden * torch.linspace(-1, 1, hidden.numel()).view_as(hidden)).sum().backward()
        return hidden.detach(), {n: p.grad for n, p in model.named_parameters()}

    dense, dense_grads = run()
    model.set_attn_implementation(packed_attention.register())
    packed, packed_grads = run()
    assert calls, "the packed path did not use causal_attention"
    if getattr(model.config, "sliding_window", None) and "gemma" in name:
        assert model.config.sliding_window in calls  # the 100-token sequence's windowed bucket
    torch.testing.assert_close(packed, dense, rtol=1e-10, atol=1e-12)
    for n, g in dense_grads.items():
        torch.testing.assert_close(packed_grads[n], g, rtol=1e-10, atol=1e-12)
