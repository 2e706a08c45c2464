"""Log-likelihood of labelled tokens, with logits computed only where they are needed.

A causal LM's usual forward computes logits for every position: `[batch, seq, vocab]`, which for
Gemma's 262k vocabulary dominates memory and time although most positions (prompts, padding) are
not trained or scored. Here the decoder returns hidden states, the positions whose *next* token
is labelled are gathered, and the LM head runs on those only, in chunks of `chunk_tokens` rows.
Under autograd each chunk is checkpointed, so its `[chunk, vocab]` logits are recomputed in
backward instead of kept: memory no longer grows with sequence length x vocabulary.

Every objective and score uses this one function: SFT's loss is the negated sum over a batch,
DPO's log-ratios are per-row sums, and evaluation's multiple-choice and reference scores are
per-row sums of the choices' tokens. Sums (not means) are returned: the training loop divides by
the weight of the whole optimizer step (supervised tokens across micro-batches and ranks), which
is what makes batch 8 x accumulation 1 equal batch 1 x accumulation 8 and 2 ranks x batch 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from instill.data.masking import IGNORE_INDEX


def _chunk_nll(
    lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    logits = lm_head(hidden)  # [chunk, vocab]
    # At least fp32 for the softmax (bf16 logits lose the small differences between tokens).
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits, targets, reduction="none")  # [chunk]


def labelled_logprobs(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    lm_head: nn.Module,
    chunk_tokens: int = 1024,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sums of next-token log-probabilities over labelled positions.

    Args:
        hidden: final hidden states `[batch, seq, dim]` (after the final norm).
        labels: `[batch, seq]`, aligned with the inputs (-100 = not labelled); position t's
            hidden state predicts `labels[t + 1]`.
        lm_head: the output projection.
        chunk_tokens: rows of the LM head computed at once.
        softcap: final logit soft-capping (Gemma 2 style), if the model uses it.

    Returns:
        `(logprob_sum [batch], token_count [batch])`.
    """
    targets = labels[:, 1:]  # [batch, seq-1]
    keep = targets != IGNORE_INDEX
    counts = keep.sum(dim=1)  # [batch]
    selected = hidden[:, :-1][keep]  # [n, dim]
    sums = indexed_logprobs(
        selected, targets[keep], keep.nonzero()[:, 0], hidden, lm_head, chunk_tokens, softcap
    )
    return sums, counts


def indexed_logprobs(
    selected: torch.Tensor,
    flat_targets: torch.Tensor,
    row_of: torch.Tensor,
    hidden: torch.Tensor,
    lm_head: nn.Module,
    chunk_tokens: int = 1024,
    softcap: float | None = None,
    n_rows: int | None = None,
) -> torch.Tensor:
    """Per-row sums of log p(target) from the hidden states that predict them.

    Args:
        selected: `[n, dim]` the hidden state before each target.
        flat_targets: `[n]` the target ids.
        row_of: `[n]` the output row each target adds to.
        hidden: the batch's hidden states (only used when `n == 0`, to keep the graph).
        n_rows: output rows (default `hidden.shape[0]`).
    """
    n_rows = hidden.shape[0] if n_rows is None else n_rows
    n = int(flat_targets.numel())
    if n == 0:
        # Nothing labelled (an empty micro-batch of a rank at the end of an epoch), but every
        # parameter must still take part in backward, or DDP ranks fall out of step.
        zero = lm_head(hidden.reshape(-1, hidden.shape[-1])[:1]).float().sum() * 0.0
        return zero.expand(n_rows).clone()
    sums = hidden.new_zeros(n_rows, dtype=torch.promote_types(hidden.dtype, torch.float32))
    for start in range(0, n, chunk_tokens):
        h = selected[start : start + chunk_tokens]
        t = flat_targets[start : start + chunk_tokens]
        if torch.is_grad_enabled():
            nll = checkpoint(_chunk_nll, lm_head, h, t, softcap, use_reentrant=False)
        else:
            nll = _chunk_nll(lm_head, h, t, softcap)
        sums = sums.index_add(0, row_of[start : start + chunk_tokens], -nll.to(sums.dtype))
    return sums


def supervised_ce_sum(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    lm_head: nn.Module,
    chunk_tokens: int = 1024,
    softcap: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over supervised positions, and how many there were."""
    logprobs, counts = labelled_logprobs(hidden, labels, lm_head, chunk_tokens, softcap)
    return -logprobs.sum(), int(counts.sum())


def decoder_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Final hidden states `[batch, seq, dim]` of a causal LM (plain or PEFT), without logits.

    Packed rows pass `position_ids` and no mask: transformers then isolates the sequences.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out = base.get_decoder()(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=attention_mask,
        use_cache=False,
    )
    return out.last_hidden_state


def logit_softcap(model: nn.Module) -> float | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.config, "final_logit_softcapping", None)
