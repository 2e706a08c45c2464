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
from instill.models.loss import (
    decoder_hidden_states,
    indexed_logprobs,
    labelled_logprobs,
    logit_softcap,
)
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


def shared_prompt_mask(
    model: nn.Module, segment: torch.Tensor, position_ids: torch.Tensor
) -> torch.Tensor | dict[str, torch.Tensor]:
    """The attention mask of `[prompt | chosen | rejected]` rows (`segment` 0 / 1 / 2, -1 for
    padding): causal, and an answer sees the prompt and itself, never the other answer. Models
    with sliding-window layers (Gemma 3) get one mask per layer type, the sliding one limited
    by position distance as transformers' own. Boolean `[B, 1, T, T]`, True = attend."""
    t = segment.shape[1]
    i = torch.arange(t, device=segment.device)
    seg_q, seg_k = segment[:, :, None], segment[:, None, :]
    allowed = (i[None, :, None] >= i[None, None, :]) & (seg_k >= 0)
    allowed &= (seg_k == 0) | (seg_k == seg_q)
    allowed |= (seg_q < 0) & (i[:, None] == i[None, :])  # a padding row sees itself (no NaN)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base.config, "text_config", base.config)
    layer_types = getattr(config, "layer_types", None) or []
    if "sliding_attention" not in layer_types:
        return allowed[:, None]
    window = config.sliding_window
    near = (position_ids[:, :, None] - position_ids[:, None, :]) < window
    return {
        kind: (allowed & near if kind == "sliding_attention" else allowed)[:, None]
        for kind in set(layer_types)
    }


def shared_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    segment: torch.Tensor,
    pred_pos: torch.Tensor,
    pred_target: torch.Tensor,
    pred_row: torch.Tensor,
    chunk_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(summed log-probs [2B], tokens [2B])` from shared-prompt rows (`DPOObjective`): chosen
    answers in rows 0..B-1, rejected in B..2B-1, as `answer_logprobs` of two rows per pair."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mask = shared_prompt_mask(model, segment, position_ids)
    hidden = decoder_hidden_states(model, input_ids, position_ids, mask)  # [B, T, dim]
    rows = 2 * input_ids.shape[0]
    selected = hidden.reshape(-1, hidden.shape[-1])[pred_pos]
    sums = indexed_logprobs(
        selected,
        pred_target,
        pred_row,
        hidden,
        base.get_output_embeddings(),
        chunk_tokens,
        logit_softcap(model),
        n_rows=rows,
    )
    counts = torch.bincount(pred_row, minlength=rows)
    return sums, counts


def pair_logprobs(model: nn.Module, batch: dict, chunk_tokens: int):
    """Log-probs of a batch in either layout (two rows per pair, or shared-prompt rows)."""
    if batch.get("segment") is not None:
        return shared_logprobs(
            model,
            batch["input_ids"],
            batch["position_ids"],
            batch["segment"],
            batch["pred_pos"],
            batch["pred_target"],
            batch["pred_row"],
            chunk_tokens,
        )
    return answer_logprobs(
        model, batch["input_ids"], batch["labels"], batch["attention_mask"], chunk_tokens
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
    def reference_logprobs(self, batch: dict) -> torch.Tensor:
        """`[2B]` summed reference log-probs, computed now (not `precomputed`)."""
        if self.reference == "adapters_off":
            with self.model.disable_adapter():
                logps, _ = pair_logprobs(self.model, batch, self.chunk_tokens)
            return logps
        if self.reference_model is None:
            raise ValueError(
                "train.dpo.reference=precomputed but the batch carries no reference log-probs"
            )
        logps, _ = pair_logprobs(self.reference_model, batch, self.chunk_tokens)
        return logps

    def forward(
        self,
        input_ids: torch.Tensor,
        pair_weight: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        reference_logps: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        segment: torch.Tensor | None = None,
        pred_pos: torch.Tensor | None = None,
        pred_target: torch.Tensor | None = None,
        pred_row: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # Two rows per pair: input_ids, labels, attention_mask [2B, seq], chosen rows first.
        # Shared prompt: input_ids, position_ids, segment [B, seq] and the pred_* indices.
        batch = {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "segment": segment,
            "pred_pos": pred_pos,
            "pred_target": pred_target,
            "pred_row": pred_row,
        }
        logps, counts = pair_logprobs(self.model, batch, self.chunk_tokens)
        if reference_logps is None:
            reference_logps = self.reference_logprobs(batch)
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
        """The batch's tensors without reference log-probs: one shared-prompt row per pair
        (`dpo.share_prompt`, when both answers' rows start with the same prompt ids), else
        two padded rows per pair."""
        if self.dpo.share_prompt and len(idx) > 0:
            shared = self._shared_rows(rows, idx)
            if shared is not None:
                return shared
        return self._two_rows(rows, idx)

    def _shared_rows(self, rows: PreferenceRows, idx: Sequence[int]) -> dict | None:
        """`[prompt | chosen answer | rejected answer]` per pair, padded to one width (a
        multiple of 8); positions of the rejected answer continue from the prompt. Each target
        token is predicted by the hidden state before it *in its own sequence*: the rejected
        answer's first token by the prompt's last position. None when a pair's two rows do
        not share their prompt ids (then the batch uses two rows per pair)."""
        c, r = rows.chosen, rows.rejected
        parts = []
        for i in idx:
            ci, cl = (
                c.input_ids[c.offsets[i] : c.offsets[i + 1]],
                c.labels[c.offsets[i] : c.offsets[i + 1]],
            )
            ri, rl = (
                r.input_ids[r.offsets[i] : r.offsets[i + 1]],
                r.labels[r.offsets[i] : r.offsets[i + 1]],
            )
            p = int(rows.prompt_lengths[i])
            if p < 1 or p > min(len(ci), len(ri)) or not np.array_equal(ci[:p], ri[:p]):
                return None
            if (cl[:p] != IGNORE_INDEX).any() or (rl[:p] != IGNORE_INDEX).any():
                return None  # labels inside the prompt: not this layout
            parts.append((ci, cl, ri, rl, p))
        longest = max(len(ci) + len(ri) - p for ci, _, ri, _, p in parts)
        width = -(-longest // 8) * 8
        n = len(parts)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        pos = np.zeros((n, width), dtype=np.int64)
        seg = np.full((n, width), -1, dtype=np.int64)
        pred_pos, pred_target, pred_row = [], [], []
        for b, (ci, cl, ri, rl, p) in enumerate(parts):
            lc, lr = len(ci), len(ri)
            ids[b, :lc] = ci
            ids[b, lc : lc + lr - p] = ri[p:]
            pos[b, :lc] = np.arange(lc)
            pos[b, lc : lc + lr - p] = np.arange(p, lr)
            seg[b, :p], seg[b, p:lc], seg[b, lc : lc + lr - p] = 0, 1, 2
            if lc + lr - p < width:  # padding rows: positions keep counting (never attended)
                pos[b, lc + lr - p :] = np.arange(lr, lr + width - (lc + lr - p))
            t = np.nonzero(cl[1:] != IGNORE_INDEX)[0] + 1  # chosen targets at t, from t-1
            pred_pos.append(b * width + (t - 1))
            pred_target.append(cl[t])
            pred_row.append(np.full(len(t), b))
            t = np.nonzero(rl[1:] != IGNORE_INDEX)[0] + 1  # rejected targets (t >= p)
            before = t - 1
            at = np.where(before < p, before, lc + before - p)
            pred_pos.append(b * width + at)
            pred_target.append(rl[t])
            pred_row.append(np.full(len(t), n + b))
        return {
            "input_ids": torch.from_numpy(ids),
            "position_ids": torch.from_numpy(pos),
            "segment": torch.from_numpy(seg),
            "pred_pos": torch.from_numpy(np.concatenate(pred_pos).astype(np.int64)),
            "pred_target": torch.from_numpy(np.concatenate(pred_target).astype(np.int64)),
            "pred_row": torch.from_numpy(np.concatenate(pred_row).astype(np.int64)),
            "pair_weight": torch.full((n,), 1.0, dtype=torch.float64),
            "reference_logps": None,
        }

    def _two_rows(self, rows: PreferenceRows, idx: Sequence[int]) -> dict[str, torch.Tensor | None]:
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
        key = reference_key(model, rows, autocast, self.chunk_tokens, self.dpo.share_prompt)
        path = root / f"{key}.npy"
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
                    b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
                    logps, _ = pair_logprobs(model, b, self.chunk_tokens)
                    logps = logps.double().cpu().numpy()  # [2B]
                    out[idx, 0], out[idx, 1] = logps[: len(idx)], logps[len(idx) :]
        finally:
            model.train(was_training)
        return out


def reference_key(
    model: nn.Module, rows: PreferenceRows, autocast: bool, chunk: int, shared: bool = False
) -> str:
    """The cache key of reference log-probs: the reference weights, the model's config, the
    precision, and every id and label of the rows.

    Adapter weights (LoRA, trainable-token deltas) are left out: the reference is the base, and
    a new adapter's initial values do not change its outputs.
    """
    h = hashlib.sha256()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.to_dict() if hasattr(base, "config") else {}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    layout = ";shared-prompt" if shared else ""  # the same values, summed in another order
    h.update(f"bf16-autocast={autocast};chunk={chunk}{layout}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name or "trainable_tokens" in name:
            continue
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    h.update(rows.fingerprint().encode())
    return h.hexdigest()[:32]
