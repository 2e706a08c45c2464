"""Preference tuning (DPO, IPO, robust DPO): a second objective on the one loop.

A pair's loss compares how much more the policy prefers the chosen answer than the rejected one,
relative to a frozen reference model. With `h = (log pi(c) - log ref(c)) - (log pi(r) - log ref(r))`
(log-probs summed over each answer's tokens, from `models.loss.labelled_logprobs`):

* `sigmoid` (DPO, Rafailov et al. 2023): `-(1 - eps) log s(beta h) - eps log s(-beta h)`; with
  `label_smoothing` eps > 0 this is conservative DPO (cDPO), eps = 0 the original;
* `robust` (Chowdhury et al. 2024): `(-(1 - eps) log s(beta h) + eps log s(-beta h)) / (1 - 2 eps)`,
  an unbiased loss under an eps share of flipped labels;
* `ipo` (Azar et al. 2023): `(h' - 1 / (2 beta))^2` on `h'`, the same difference of *per-token
  mean* log-ratios (TRL normalises IPO by answer length too, as its authors confirmed).

`sft_weight` adds the chosen answer's mean token NLL per pair. Every term is a per-pair value, so
the step's loss is their sum over the step's pairs divided by the pair count (the objective's
weight): batch 8 x accumulation 1, 1 x 8 and 2 ranks x 4 give the same gradient. Metrics
(`rewards/chosen`, `rewards/rejected`, `rewards/margin`, `rewards/accuracy`, `logps/chosen`,
`logps/rejected`) are per-pair sums that the loop divides by the same count.

A micro-batch is one forward over `[chosen rows; rejected rows]` (`[2B, T]`), as TRL's
concatenated forward. The reference costs no second copy where it need not (`train.dpo.reference`):

* `adapters_off`: LoRA / QLoRA's base is the reference: the same model under
  `model.disable_adapter()` and `no_grad`;
* `precomputed`: reference log-probs of every pair computed once, before the first step, and
  cached on disk under a key of the model's weights and the prepared data (a second run, or a
  resumed one, reads them back); batches then carry them, and training holds one model;
* `frozen_copy`: a frozen copy of the initial weights (full / freeze fine-tuning without cache).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from instill.atomic import atomic_file
from instill.config import DPOConfig
from instill.data.masking import IGNORE_INDEX
from instill.data.preference import PreferenceRows
from instill.models.loss import decoder_hidden_states, labelled_logprobs, logit_softcap
from instill.train.data import gather_rows

METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margin",
    "rewards/accuracy",
    "logps/chosen",
    "logps/rejected",
)


def preference_losses(
    policy: torch.Tensor,
    reference: torch.Tensor,
    counts: torch.Tensor,
    dpo: DPOConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair losses and metrics from summed answer log-probs.

    Args:
        policy: `[2B]` the policy's summed log-probs, chosen rows then rejected rows.
        reference: `[2B]` the reference's, in the same order.
        counts: `[2B]` labelled tokens of each answer.
        dpo: the loss settings.

    Returns:
        `(loss [B], {metric: [B]})`; the metrics carry no gradient.
    """
    pc, pr = policy.chunk(2)  # [B] each
    rc, rr = reference.to(policy.dtype).chunk(2)
    nc, nr = counts.to(policy.dtype).clamp(min=1).chunk(2)
    chosen_ratio, rejected_ratio = pc - rc, pr - rr  # [B]
    beta, eps = dpo.beta, dpo.label_smoothing
    h = chosen_ratio - rejected_ratio
    if dpo.loss == "sigmoid":
        loss = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    elif dpo.loss == "robust":
        loss = (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
    elif dpo.loss == "ipo":
        loss = (chosen_ratio / nc - rejected_ratio / nr - 1 / (2 * beta)) ** 2
    else:  # pragma: no cover - the schema allows only the three
        raise ValueError(f"unknown train.dpo.loss {dpo.loss!r}")
    if dpo.sft_weight:
        loss = loss + dpo.sft_weight * (-pc / nc)
    with torch.no_grad():
        rewards_c, rewards_r = beta * chosen_ratio, beta * rejected_ratio
        metrics = {
            "rewards/chosen": rewards_c,
            "rewards/rejected": rewards_r,
            "rewards/margin": rewards_c - rewards_r,
            "rewards/accuracy": (rewards_c > rewards_r).to(policy.dtype),
            "logps/chosen": pc.detach(),
            "logps/rejected": pr.detach(),
        }
    return loss, metrics


def answer_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor | None,
    chunk_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(summed log-probs [rows], labelled tokens [rows])` of a (PEFT or plain) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = decoder_hidden_states(model, input_ids, None, attention_mask)  # [rows, seq, dim]
    return labelled_logprobs(
        hidden, labels, base.get_output_embeddings(), chunk_tokens, logit_softcap(model)
    )


class PreferenceLoss(nn.Module):
    """Wraps the policy (and a frozen reference copy, if any) so that `forward` returns
    `(loss_sum, {metric: sum})` over a micro-batch's pairs; accelerate prepares this module.

    Args:
        model: the policy (plain or PEFT).
        dpo: the loss settings.
        reference: `adapters_off`, `precomputed` (batches carry `reference_logps`) or
            `frozen_copy`.
        chunk_tokens: LM-head rows computed at once.
    """

    def __init__(
        self, model: nn.Module, dpo: DPOConfig, reference: str, chunk_tokens: int = 1024
    ) -> None:
        super().__init__()
        self.model = model
        self.dpo = dpo
        self.reference = reference
        self.chunk_tokens = chunk_tokens
        self.reference_model: nn.Module | None = None
        if reference == "frozen_copy":
            self.reference_model = copy.deepcopy(model).requires_grad_(False).eval()
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._no_split_modules = getattr(base, "_no_split_modules", None)

    def train(self, mode: bool = True) -> PreferenceLoss:
        super().train(mode)
        if self.reference_model is not None:
            self.reference_model.eval()  # never dropout in the reference
        return self

    @torch.no_grad()
    def reference_logprobs(
        self, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """`[rows]` summed reference log-probs, computed now (not `precomputed`)."""
        if self.reference == "adapters_off":
            with self.model.disable_adapter():
                logps, _ = answer_logprobs(
                    self.model, input_ids, labels, attention_mask, self.chunk_tokens
                )
            return logps
        if self.reference_model is None:
            raise ValueError(
                "train.dpo.reference=precomputed but the batch carries no reference log-probs"
            )
        logps, _ = answer_logprobs(
            self.reference_model, input_ids, labels, attention_mask, self.chunk_tokens
        )
        return logps

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pair_weight: torch.Tensor,
        reference_logps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # input_ids, labels, attention_mask: [2B, seq], chosen rows first; pair_weight: [B]
        logps, counts = answer_logprobs(
            self.model, input_ids, labels, attention_mask, self.chunk_tokens
        )
        if reference_logps is None:
            reference_logps = self.reference_logprobs(input_ids, labels, attention_mask)
        losses, metrics = preference_losses(logps, reference_logps, counts, self.dpo)
        weight = pair_weight.to(losses.dtype)  # 0 for the placeholder row of an empty batch
        return (losses * weight).sum(), {k: (v * weight).sum() for k, v in metrics.items()}


class DPOObjective:
    """Preference pairs; a step weighs its pairs.

    Args:
        pad_id: the padding token id.
        dpo: the loss settings.
        reference: the resolved reference (`config.train.dpo_reference`).
        chunk_tokens: LM-head rows computed at once.
        batch_size: pairs per forward when precomputing reference log-probs.
        cache_dir: where precomputed reference log-probs are cached.
        accelerator: the run's accelerator (device, precision, main-process-first); None in
            tests, where the model's own device is used.
    """

    weight_name = "pairs"

    def __init__(
        self,
        pad_id: int,
        dpo: DPOConfig,
        reference: str,
        chunk_tokens: int = 1024,
        batch_size: int = 8,
        cache_dir: Path | None = None,
        accelerator: Any = None,
    ) -> None:
        self.pad_id = pad_id
        self.dpo = dpo
        self.reference = reference
        self.chunk_tokens = chunk_tokens
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.accelerator = accelerator
        self._loaded: list[PreferenceRows] = []
        self._reference: dict[int, np.ndarray] = {}  # id(rows) -> [pairs, 2] float64
        self.cache_hits: list[bool] = []  # per loaded rows: was the cache read (tests, logs)

    def load_rows(self, directory: Path) -> PreferenceRows:
        rows = PreferenceRows.load(directory)
        self._loaded.append(rows)
        return rows

    def weight(self, rows: PreferenceRows, idx: Sequence[int]) -> int:
        return len(idx)

    def token_count(self, rows: PreferenceRows, idx: Sequence[int]) -> int:
        return rows.token_count(idx)

    def batch(self, rows: PreferenceRows, idx: Sequence[int]) -> dict[str, torch.Tensor | None]:
        """`[chosen; rejected]` rows padded to one width (a multiple of 8), with pair weights
        and, with `precomputed`, the reference log-probs `[2B]`.

        An empty `idx` gives one all-padding pair of weight 0, so every rank still runs
        forward and backward.
        """
        batch = self.sequences(rows, idx)
        if self.reference == "precomputed":
            cached = self._reference.get(id(rows))
            if cached is None:
                raise ValueError(
                    "reference log-probs were not precomputed for these rows; call "
                    "loss_module(model) after load_rows"
                )
            pairs = np.asarray(idx, dtype=np.int64)
            ref = cached[pairs] if len(idx) else np.zeros((1, 2))  # [B, 2]
            batch["reference_logps"] = torch.from_numpy(np.concatenate([ref[:, 0], ref[:, 1]]))
        return batch

    def sequences(self, rows: PreferenceRows, idx: Sequence[int]) -> dict[str, torch.Tensor | None]:
        """The batch's tensors without reference log-probs."""
        real = len(idx) > 0
        pairs = np.asarray(idx if real else [0], dtype=np.int64)
        n = len(pairs)
        sides = (rows.chosen, rows.rejected)
        longest = max(int(s.lengths[pairs].max()) for s in sides) if real else 8
        width = -(-longest // 8) * 8
        ids, labels, valid = [], [], []
        for s in sides:
            i, v = gather_rows(s.input_ids, s.offsets, pairs, width, self.pad_id)
            lab, _ = gather_rows(s.labels, s.offsets, pairs, width, IGNORE_INDEX)
            if not real:
                i, lab, v = np.full_like(i, self.pad_id), np.full_like(lab, IGNORE_INDEX), v | True
            ids.append(i)
            labels.append(lab)
            valid.append(v)
        batch: dict[str, torch.Tensor | None] = {
            "input_ids": torch.from_numpy(np.concatenate(ids).astype(np.int64)),  # [2B, width]
            "labels": torch.from_numpy(np.concatenate(labels).astype(np.int64)),
            "attention_mask": torch.from_numpy(np.concatenate(valid).astype(np.int64)),
            "pair_weight": torch.full((n,), 1.0 if real else 0.0, dtype=torch.float64),
            "reference_logps": None,
        }
        return batch

    def loss_module(self, model: nn.Module) -> PreferenceLoss:
        """The loss module; with `precomputed`, first the reference log-probs of every row set
        loaded so far (the model is still the reference: nothing has trained yet)."""
        if self.reference == "precomputed":
            for rows in self._loaded:
                if id(rows) not in self._reference:
                    self._reference[id(rows)] = self._precompute(model, rows)
        return PreferenceLoss(model, self.dpo, self.reference, self.chunk_tokens)

    # ----------------------------------------------------------------- precomputed reference

    def _precompute(self, model: nn.Module, rows: PreferenceRows) -> np.ndarray:
        """Reference log-probs `[pairs, 2]` (chosen, rejected), from the cache or computed."""
        from instill.models.tokenizer_loading import default_cache_dir

        acc = self.accelerator
        if acc is not None:
            model.to(acc.device)  # what accelerate.prepare does next anyway
        autocast = acc is not None and acc.mixed_precision == "bf16"
        root = self.cache_dir or default_cache_dir() / "dpo-reference"
        path = root / f"{reference_key(model, rows, autocast, self.chunk_tokens)}.npy"
        first = acc.main_process_first() if acc is not None else contextlib.nullcontext()
        with first:  # the main process computes and writes; the others then read
            if path.is_file():
                self.cache_hits.append(True)
                return np.load(path)
            self.cache_hits.append(False)
            if acc is not None:
                acc.print(f"computing reference log-probs of {len(rows)} pairs (cached in {root})")
            values = self._compute_reference(model, rows, autocast)
            if acc is None or acc.is_main_process:
                with atomic_file(path) as tmp, tmp.open("wb") as f:
                    np.save(f, values)
            return values

    @torch.no_grad()
    def _compute_reference(self, model: nn.Module, rows: PreferenceRows, autocast: bool):
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        off = (
            model.disable_adapter()
            if hasattr(model, "disable_adapter")
            else contextlib.nullcontext()
        )
        out = np.zeros((len(rows), 2), dtype=np.float64)
        try:
            with off, torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                for start in range(0, len(rows), self.batch_size):
                    idx = list(range(start, min(start + self.batch_size, len(rows))))
                    b = self.sequences(rows, idx)
                    logps, _ = answer_logprobs(
                        model,
                        b["input_ids"].to(device),
                        b["labels"].to(device),
                        b["attention_mask"].to(device),
                        self.chunk_tokens,
                    )
                    logps = logps.double().cpu().numpy()  # [2B]
                    out[idx, 0], out[idx, 1] = logps[: len(idx)], logps[len(idx) :]
        finally:
            model.train(was_training)
        return out


def reference_key(model: nn.Module, rows: PreferenceRows, autocast: bool, chunk: int) -> str:
    """The cache key of reference log-probs: the reference weights, the model's config, the
    precision, and every id and label of the rows.

    Adapter weights (LoRA, trainable-token deltas) are left out: the reference is the base, and
    a new adapter's initial values do not change its outputs.
    """
    h = hashlib.sha256()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.to_dict() if hasattr(base, "config") else {}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(f"bf16-autocast={autocast};chunk={chunk}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name or "trainable_tokens" in name:
            continue
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    h.update(rows.fingerprint().encode())
    return h.hexdigest()[:32]
