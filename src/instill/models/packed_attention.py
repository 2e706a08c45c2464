"""Attention over packed rows, sequence by sequence, without a block-diagonal mask.

A packed row holds several training sequences back to back; each must attend only to itself.
transformers isolates them with a dense `[batch, 1, seq, seq]` block-diagonal causal mask built
from the restarting `position_ids`, and SDPA then works on the whole `seq x seq` square of every
row: with a mask, the CPU kernel skips no block, GQA's key/value heads are copied to the query
heads' count, and a row costs `seq^2` however short its sequences are (with the ~130-token
median sequence in 512-token rows, ~3x the work that is needed).

Here the packed rows' sequences are passed down as a tiny integer tensor of *sequence ids*
(`[batch, 1, 1, seq]`: 4-D, so transformers hands it to every layer unchanged). The attention
function gathers the batch's sequences into buckets of equal padded length (a multiple of
`BUCKET`) and runs SDPA once per bucket with `is_causal=True`: no mask, GQA native, work ~ the
sum of the sequences' squared lengths, a handful of kernel calls per layer. Padding goes after a
sequence's last token, where the causal mask keeps every real query from seeing it. On CPU,
in bf16 or fp16, a bucket runs through `cpu_attention.causal_attention` (matmuls and compiled
softmax kernels, 1.7-4x faster than torch's CPU flash kernel) instead of SDPA.
Sliding-window layers (Gemma 3) get the window as a mask only in a bucket of sequences longer
than the window. Anything else (a padding mask, generation with a cache, a 4-D float mask) goes
to transformers' own SDPA function unchanged, so a model switched to this implementation answers
as before everywhere but on packed rows, where it computes the same result without the
masked-out work (tests compare both with the dense-mask path, in float64).

It is a registered transformers attention implementation (`ATTENTION`) that training switches
on when the rows are packed and the model would otherwise use SDPA; `packed_sequence_ids`
builds the ids from `position_ids` (a sequence starts wherever the position does not follow on
by one, transformers' own rule).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from instill.models import cpu_attention

ATTENTION = "instill_packed_sdpa"


def register() -> str:
    """Register the implementation with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION, packed_sdpa_attention_forward)
    if ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        # Unpacked batches, padding and generation build SDPA's masks, as with "sdpa".
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    return ATTENTION


def packed_sequence_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """`[batch, 1, 1, seq]` int32 ids of the sequence each token belongs to.

    A new sequence starts at position 0 of the row and wherever a position id does not follow
    the previous one by one (the rule transformers uses to detect packed rows).
    """
    if position_ids.dim() == 1:
        position_ids = position_ids.unsqueeze(0)
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] - position_ids[:, :-1] != 1
    return starts.cumsum(dim=1, dtype=torch.int32)[:, None, None, :]  # [batch, 1, 1, seq]


def is_sequence_ids(mask: torch.Tensor | None) -> bool:
    """Whether `mask` is what `packed_sequence_ids` builds (every other mask goes to SDPA)."""
    return (
        isinstance(mask, torch.Tensor)
        and mask.dim() == 4
        and mask.shape[1] == 1
        and mask.shape[2] == 1
        and mask.dtype == torch.int32
    )


BUCKET = 32  # sequences are padded up to a multiple of this and batched by padded length


def _buckets(ids: torch.Tensor, sliding_window: int | None) -> tuple[list, torch.Tensor]:
    """Group the batch's sequences by padded length.

    Returns `[(length, count, gather, keep, windowed?)]` and `inverse`: `gather` holds the flat
    token index of each `[count, length]` slot, `keep` the slots that hold a real token, and
    `inverse` puts the concatenated real slots of all buckets back in flat token order. A padded
    slot repeats the sequence's last token: padding sits after every real query of its sequence,
    so under the causal mask no real query sees it, and its own outputs are dropped. Plain index
    lists, so the gathers are `index_select`s, whose backward is a fast `index_add` (advanced
    indexing's is a serial `index_put` with accumulation: ~2x slower here).
    """
    seq = ids.shape[-1]
    rows = ids.reshape(-1, seq)
    edges = []
    for b, row in enumerate(rows):
        change = (torch.nonzero(row[1:] != row[:-1]).flatten() + 1).tolist()
        cuts = [0, *change, seq]
        edges += [(b * seq + s, e - s) for s, e in itertools.pairwise(cuts)]
    groups: dict[tuple[int, bool], list[tuple[int, int]]] = {}
    for start, n in edges:
        length = -(-n // BUCKET) * BUCKET
        windowed = sliding_window is not None and n > sliding_window
        groups.setdefault((length, windowed), []).append((start, n))
    buckets, order, device = [], [], ids.device
    for (length, windowed), members in groups.items():
        gather, keep = [], []
        for i, (start, n) in enumerate(members):
            gather += [*range(start, start + n), *[start + n - 1] * (length - n)]
            keep += range(i * length, i * length + n)
            order += range(start, start + n)
        buckets.append(
            (
                length,
                len(members),
                torch.tensor(gather, device=device),
                torch.tensor(keep, device=device),
                windowed,
            )
        )
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return buckets, inverse.to(device)


def packed_sdpa_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: `[batch, heads, seq, dim]` in, `[batch, seq, heads,
    dim]` out. Sequence ids run bucket by bucket; every other mask goes to SDPA's function."""
    if not is_sequence_ids(attention_mask) or query.shape[2] != key.shape[2]:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            sliding_window=sliding_window,
            **kwargs,
        )
    if kwargs.get("softcap") is not None:
        raise ValueError(f"{ATTENTION} does not support attention logit soft-capping; use eager")
    batch, heads, seq, dim = query.shape
    gqa = heads != key.shape[1]
    # [batch * seq, heads, dim]: one row per token, so a sequence is a run of rows
    q_flat = query.transpose(1, 2).reshape(batch * seq, heads, dim)
    k_flat = key.transpose(1, 2).reshape(batch * seq, key.shape[1], dim)
    v_flat = value.transpose(1, 2).reshape(batch * seq, value.shape[1], dim)
    # Every layer gets the same ids tensor: group its sequences once per forward.
    cache = attention_mask.__dict__.setdefault("_instill_buckets", {})
    if sliding_window not in cache:
        cache[sliding_window] = _buckets(attention_mask, sliding_window)
    buckets, inverse = cache[sliding_window]
    matmuls = cpu_attention.enabled(query, dropout)
    outs = []
    for length, count, gather, keep, windowed in buckets:
        # [count, heads, length, dim]
        q = q_flat.index_select(0, gather).view(count, length, heads, dim).transpose(1, 2)
        k = k_flat.index_select(0, gather).view(count, length, -1, dim).transpose(1, 2)
        v = v_flat.index_select(0, gather).view(count, length, -1, dim).transpose(1, 2)
        if matmuls:
            window = sliding_window if windowed else None
            out = cpu_attention.causal_attention(q, k, v, scaling, window)
        elif windowed:
            i = torch.arange(length, device=q.device)
            mask = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < sliding_window)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling, enable_gqa=gqa
            )
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=dropout, scale=scaling, enable_gqa=gqa
            )
        out = out.transpose(1, 2).reshape(count * length, heads, dim)
        outs.append(out.index_select(0, keep))  # [real tokens, heads, dim]
    out = torch.cat(outs).index_select(0, inverse)  # [batch * seq, heads, dim] in token order
    return out.reshape(batch, seq, heads, dim), None
