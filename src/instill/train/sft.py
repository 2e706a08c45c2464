"""Supervised fine-tuning: summed cross-entropy on the response tokens, weighted by their count."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from instill.data.prepared import TokenRows
from instill.models.loss import decoder_hidden_states, logit_softcap, supervised_ce_sum
from instill.train.data import collate


class SupervisedLoss(nn.Module):
    """Wraps a causal LM (plain or PEFT) so that `forward` returns `(loss_sum, {})`.

    It is this wrapper that accelerate prepares (DDP / FSDP wrap it), so gradient
    synchronisation sees the one forward call that uses every parameter.
    """

    def __init__(self, model: nn.Module, chunk_tokens: int = 1024, fused_head: bool = True) -> None:
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens
        self.fused_head = fused_head
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.softcap = logit_softcap(model)
        # FSDP's transformer-based auto-wrap looks for the block classes on the prepared module.
        self._no_split_modules = getattr(base, "_no_split_modules", None)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hidden = decoder_hidden_states(self.model, input_ids, position_ids, attention_mask)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        loss, _ = supervised_ce_sum(
            hidden,
            labels,
            base.get_output_embeddings(),
            self.chunk_tokens,
            self.softcap,
            fused=self.fused_head,
        )
        return loss, {}


class SFTObjective:
    """Next-token loss on supervised tokens; a step weighs its supervised tokens.

    Args:
        pad_id: the padding token id.
        fixed_length: packed rows are padded to this length (one shape for every step).
        chunk_tokens: LM-head rows computed at once in the loss.
        fused_head: compute the loss and the head's gradients in one pass where the head allows
            (`instill.models.loss.LinearCrossEntropy`); off where the weights are sharded.
    """

    weight_name = "supervised_tokens"

    def __init__(
        self,
        pad_id: int,
        fixed_length: int | None,
        chunk_tokens: int = 1024,
        fused_head: bool = True,
    ) -> None:
        self.pad_id = pad_id
        self.fixed_length = fixed_length
        self.chunk_tokens = chunk_tokens
        self.fused_head = fused_head

    def load_rows(self, directory: Path) -> TokenRows:
        return TokenRows.load(directory)

    def weight(self, rows: TokenRows, idx: Sequence[int]) -> int:
        return rows.supervised_count(idx)

    def token_count(self, rows: TokenRows, idx: Sequence[int]) -> int:
        return rows.token_count(idx)

    def batch(self, rows: TokenRows, idx: Sequence[int]) -> dict[str, torch.Tensor | None]:
        fixed = self.fixed_length if rows.packed else None
        return collate(rows, idx, self.pad_id, fixed)

    def loss_module(self, model: nn.Module) -> SupervisedLoss:
        return SupervisedLoss(model, self.chunk_tokens, self.fused_head)
