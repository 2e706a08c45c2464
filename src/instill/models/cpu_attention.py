"""Causal attention for CPU training: batched matmuls around two compiled softmax kernels.

torch's CPU flash-attention kernel works tile by tile with scalar bookkeeping and reaches a
tenth of the bf16 matmul peak; its backward costs 2-3x its forward. On a packed SmolLM2-135M
full fine-tuning step (batch 8 x 512) it was 28% of the step, the largest item after the
linears (bench/RESULTS.md). Here a bucket of equal-length sequences `[n, heads, L, dim]` is
computed the textbook way, with the matmuls in the compute dtype (oneDNN, ~85% of peak) and the
element-wise parts as two kernels compiled by `torch.compile` that read the low-precision
scores once, keep max, sum and gradient in fp32 and write one low-precision tensor:

* forward: `S = Q K^T`; `P, lse = softmax(scale * S)` under the causal (and sliding-window)
  mask, with the log-sum-exp kept per query; `O = P V`.
* backward: `S` is recomputed (no `[L, L]` tensor is kept between the passes, as in flash
  attention: what is saved is Q, K, V, O and the log-sum-exp); `dP = dO V^T`; one kernel makes
  `P = exp(scale * S - lse)` and `dS = P * (dP - rowsum(dO * O)) * scale`; `dV = P^T dO`,
  `dQ = dS K`, `dK = dS^T Q`.

GQA's `heads // kv_heads` query heads of a group are rows of one matmul against their key /
value head (no copies of K or V). Queries are split into blocks so that one score tensor holds
at most `SCORE_ELEMENTS` entries; a block reads only the keys its queries can see (causality
skips the rest), and the keys' gradients are summed over blocks in fp32.

The scores pass through the compute dtype between the matmul and the softmax (as in
transformers' eager attention under autocast); the softmax, the log-sum-exp and the gradient
arithmetic are fp32. Tests compare it with float64 attention: its errors are of the size of
SDPA's own in bf16. Where compiling fails (no C++ compiler) the call is computed eagerly, said
once, and later calls go back to SDPA; `INSTILL_CPU_ATTENTION=0` keeps SDPA throughout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch

from instill.models.compiled import CompiledOrEager

logger = logging.getLogger(__name__)

ENV = "INSTILL_CPU_ATTENTION"
SCORE_ELEMENTS = 1 << 23  # entries of one block's score tensor (16 MiB in bf16)
DTYPES = (torch.bfloat16, torch.float16)  # where it was measured faster than SDPA's kernel
SDPA_AFTER_FAILURE = "this call runs eagerly, later ones through SDPA"


def _keep(rows: int, cols: int, queries: int, q_start: int, k_start: int, window: int):
    """`[rows, cols]` mask: row r is query `q_start + r % queries` (the group's heads are
    stacked), column c is key `k_start + c`; a query sees keys at or before it, and within
    `window` of it when `window` > 0."""
    q = torch.arange(rows)[:, None] % queries + q_start
    k = torch.arange(cols)[None, :] + k_start
    keep = k <= q
    if window > 0:
        keep = keep & (q - k < window)
    return keep


def _wide(x: torch.Tensor) -> torch.Tensor:
    """`x` in fp32, or in its own dtype where that is wider (float64 in tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _probs(scores, scale: float, queries: int, q_start: int, k_start: int, window: int):
    """Masked softmax of `scale * scores` in fp32: (probabilities in the scores' dtype, fp32
    log-sum-exp per row)."""
    keep = _keep(scores.shape[-2], scores.shape[-1], queries, q_start, k_start, window)
    x = torch.where(keep, _wide(scores) * scale, float("-inf"))
    top = x.amax(-1, keepdim=True)
    e = torch.exp(x - top)
    total = e.sum(-1, keepdim=True)
    return (e / total).to(scores.dtype), (top + torch.log(total)).squeeze(-1)


def _grads(scores, lse, dout, out, dprobs, scale: float, queries, q_start, k_start, window):
    """The probabilities again (from the saved log-sum-exp) and the scores' gradient
    `P * (dP - rowsum(dO * O)) * scale`, both in the scores' dtype, the arithmetic in fp32."""
    keep = _keep(scores.shape[-2], scores.shape[-1], queries, q_start, k_start, window)
    p = torch.where(keep, torch.exp(_wide(scores) * scale - lse.unsqueeze(-1)), 0.0)
    delta = (_wide(dout) * _wide(out)).sum(-1, keepdim=True)
    return p.to(scores.dtype), (p * (_wide(dprobs) - delta) * scale).to(scores.dtype)


class _Kernels:
    """`_probs` and `_grads` by name, each `CompiledOrEager`; once one fails to compile, every
    call runs eagerly and `failed` sends later attention calls back to SDPA."""

    def __init__(self) -> None:
        self.compiled: dict[str, Callable] = {}

    @property
    def failed(self) -> bool:
        return any(getattr(k, "failed", False) for k in self.compiled.values())

    def __call__(self, name: str, fn: Callable, *args):
        if self.failed:
            return fn(*args)
        if name not in self.compiled:
            self.compiled[name] = CompiledOrEager(
                fn, "instill's CPU attention", ENV, logger, SDPA_AFTER_FAILURE
            )
        return self.compiled[name](*args)


kernels = _Kernels()


def compute_dtype(query: torch.Tensor) -> torch.dtype:
    """The dtype SDPA would compute `query` in: autocast's where it is on, else its own."""
    device = query.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return query.dtype


def enabled(query: torch.Tensor, dropout: float = 0.0) -> bool:
    """Whether `causal_attention` should compute this call (CPU, a low-precision compute dtype,
    no dropout, not switched off, compiling has not failed)."""
    return (
        query.device.type == "cpu"
        and compute_dtype(query) in DTYPES
        and not dropout
        and not kernels.failed
        and os.environ.get(ENV, "1") != "0"
    )


def _blocks(n: int, heads: int, length: int) -> list[tuple[int, int]]:
    """Query blocks `[(start, end)]` whose score tensors stay within `SCORE_ELEMENTS`."""
    size = max(1, SCORE_ELEMENTS // max(1, n * heads * length))
    if size < length:
        size = max(32, size // 32 * 32)
    return [(a, min(a + size, length)) for a in range(0, length, size)]


def _key_start(q_start: int, window: int) -> int:
    return max(0, q_start - window + 1) if window > 0 else 0


class CausalAttention(torch.autograd.Function):
    """`[n, heads, L, dim]` queries over `[n, kv_heads, L, dim]` keys and values, causal (and
    windowed when `window` > 0): `[n, heads, L, dim]`. See the module doc."""

    @staticmethod
    def forward(ctx, query, key, value, scale: float, window: int, compiled: bool):
        n, heads, length, dim = query.shape
        kv_heads = key.shape[1]
        group = heads // kv_heads
        run = kernels if compiled else (lambda _name, fn, *args: fn(*args))
        out = query.new_empty(n, heads, length, dim)
        lse = query.new_empty(
            n, heads, length, dtype=torch.promote_types(query.dtype, torch.float32)
        )
        for a, b in _blocks(n, heads, length):
            ks = _key_start(a, window)
            q = query[:, :, a:b].reshape(n, kv_heads, group * (b - a), dim)
            scores = torch.matmul(q, key[:, :, ks:b].transpose(-1, -2))
            p, block_lse = run("probs", _probs, scores, scale, b - a, a, ks, window)
            o = torch.matmul(p, value[:, :, ks:b])
            out[:, :, a:b] = o.view(n, heads, b - a, dim)
            lse[:, :, a:b] = block_lse.view(n, heads, b - a)
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.scale, ctx.window, ctx.compiled = scale, window, compiled
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out, lse = ctx.saved_tensors
        scale, window = ctx.scale, ctx.window
        n, heads, length, dim = query.shape
        kv_heads = key.shape[1]
        group = heads // kv_heads
        run = kernels if ctx.compiled else (lambda _name, fn, *args: fn(*args))
        blocks = _blocks(n, heads, length)
        dq = torch.empty_like(query)
        if len(blocks) == 1:
            dk = dv = None
        else:
            wide = torch.promote_types(key.dtype, torch.float32)
            dk = torch.zeros(key.shape, dtype=wide, device=key.device)
            dv = torch.zeros(value.shape, dtype=wide, device=value.device)
        for a, b in blocks:
            ks = _key_start(a, window)
            rows = group * (b - a)
            q = query[:, :, a:b].reshape(n, kv_heads, rows, dim)
            do = grad_out[:, :, a:b].reshape(n, kv_heads, rows, dim)
            o = out[:, :, a:b].reshape(n, kv_heads, rows, dim)
            k, v = key[:, :, ks:b], value[:, :, ks:b]
            scores = torch.matmul(q, k.transpose(-1, -2))
            dprobs = torch.matmul(do, v.transpose(-1, -2))
            block_lse = lse[:, :, a:b].reshape(n, kv_heads, rows)
            p, ds = run(
                "grads", _grads, scores, block_lse, do, o, dprobs, scale, b - a, a, ks, window
            )
            dq[:, :, a:b] = torch.matmul(ds, k).view(n, heads, b - a, dim)
            block_dk = torch.matmul(ds.transpose(-1, -2), q)
            block_dv = torch.matmul(p.transpose(-1, -2), do)
            if dk is None:
                dk, dv = block_dk, block_dv
            else:
                dk[:, :, ks:b] += block_dk
                dv[:, :, ks:b] += block_dv
        return dq, dk.to(key.dtype), dv.to(value.dtype), None, None, None


def causal_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float | None = None,
    window: int | None = None,
    compiled: bool = True,
) -> torch.Tensor:
    """Causal attention of `[n, heads, L, dim]` queries over `[n, kv_heads, L, dim]` keys and
    values (`heads` a multiple of `kv_heads`): `[n, heads, L, dim]`, as
    `scaled_dot_product_attention(..., is_causal=True, enable_gqa=True)` computes it, with a
    sliding `window` (a query sees the `window` keys ending at itself) when given.
    `compiled=False` runs the element-wise kernels eagerly (same arithmetic). Under autocast
    the inputs are cast to its dtype first, as autocast does for SDPA."""
    if query.shape[1] % key.shape[1]:
        raise ValueError(f"{query.shape[1]} query heads over {key.shape[1]} key/value heads")
    scale = query.shape[-1] ** -0.5 if scale is None else float(scale)
    dtype = compute_dtype(query)
    query, key, value = (x.to(dtype) for x in (query, key, value))
    with torch.autocast(query.device.type, enabled=False):
        return CausalAttention.apply(query, key, value, scale, int(window or 0), compiled)
