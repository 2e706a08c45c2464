"""Cross-entropy on supervised tokens only, with logits computed only where they are needed.

A causal LM's usual forward computes logits for every position: `[batch, seq, vocab]`, which for
Gemma's 262k vocabulary dominates memory and time although most positions (prompts, padding) are
not trained. Here the decoder returns hidden states, the positions whose *next* token is trained
are gathered, and the LM head runs on those only, in chunks of `chunk_tokens` rows. Each chunk is
checkpointed, so its `[chunk, vocab]` logits are recomputed in backward instead of kept: memory no
longer grows with sequence length x vocabulary.

The loss is returned as a *sum* with its token count; the loop divides by the number of
supervised tokens in the whole optimizer step (all micro-batches, all ranks), so that batch 8 x
accumulation 1 and batch 1 x accumulation 8 and 2 ranks x batch 4 give the same gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from instill.data.masking import IGNORE_INDEX


def _chunk_loss(
    lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    logits = lm_head(hidden).float()  # [chunk, vocab]
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits, targets, reduction="sum")


def supervised_ce_sum(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    lm_head: nn.Module,
    chunk_tokens: int = 1024,
    softcap: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over supervised positions, and how many there were.

    Args:
        hidden: final hidden states `[batch, seq, dim]` (after the final norm).
        labels: `[batch, seq]`, aligned with the inputs (-100 = not trained); position t's
            hidden state predicts `labels[t + 1]`.
        lm_head: the output projection.
        chunk_tokens: rows of the LM head computed at once.
        softcap: final logit soft-capping (Gemma 2 style), if the model uses it.
    """
    targets = labels[:, 1:]  # [batch, seq-1]
    keep = targets != IGNORE_INDEX
    selected = hidden[:, :-1][keep]  # [n, dim]
    flat_targets = targets[keep]  # [n]
    n = int(flat_targets.numel())
    if n == 0:
        # No trained token here (an empty micro-batch of a rank at the end of an epoch), but
        # every parameter must still take part in backward, or DDP ranks fall out of step.
        return lm_head(hidden[:, :1]).float().sum() * 0.0, 0
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, n, chunk_tokens):
        h = selected[start : start + chunk_tokens]
        t = flat_targets[start : start + chunk_tokens]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss, lm_head, h, t, softcap, use_reentrant=False)
        else:
            total = total + _chunk_loss(lm_head, h, t, softcap)
    return total, n


class SupervisedLoss(nn.Module):
    """Wraps a causal LM (plain or PEFT) so that `forward` returns `(loss_sum, n_tokens)`.

    It is this wrapper that accelerate prepares (DDP / FSDP wrap it), so gradient
    synchronisation sees the one forward call that uses every parameter.
    """

    def __init__(self, model: nn.Module, chunk_tokens: int = 1024) -> None:
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._base = [base]  # not a submodule: it is already inside `model`
        self.softcap = getattr(base.config, "final_logit_softcapping", None)
        # FSDP's transformer-based auto-wrap looks for the block classes on the prepared module.
        self._no_split_modules = getattr(base, "_no_split_modules", None)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        base = self._base[0]
        # Packed rows pass position_ids and no mask: transformers then isolates the sequences.
        out = base.get_decoder()(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            use_cache=False,
        )
        return supervised_ce_sum(
            out.last_hidden_state,
            labels,
            base.get_output_embeddings(),
            self.chunk_tokens,
            self.softcap,
        )
