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

import logging

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from instill.data.masking import IGNORE_INDEX
from instill.models.compiled import CompiledOrEager
from instill.models.packed_attention import ATTENTION, packed_sequence_ids

CHUNK_BYTES = 256 * 2**20  # a chunk's `[chunk, vocab]` fp32 log-probabilities at most
FUSED_SOFTMAX_ENV = "INSTILL_FUSED_SOFTMAX"  # "0": the eager per-chunk softmax, never compiled

logger = logging.getLogger(__name__)


def capped_chunk(chunk_tokens: int, vocab: int | None, itemsize: int = 4) -> int:
    """Rows per LM-head chunk so that its fp32 `[chunk, vocab]` buffer stays within CHUNK_BYTES
    (Gemma's 262k-row head: 256 rows, not 1,024, a GEMM still wide enough to run at full speed;
    SmolLM2's 49k: the 1,024 asked for)."""
    if not vocab:
        return chunk_tokens
    return max(1, min(chunk_tokens, CHUNK_BYTES // (vocab * itemsize)))


def head_vocab(lm_head: nn.Module) -> int | None:
    """Output rows of the LM head (None where it cannot be told without running it)."""
    parts = head_parts(lm_head)
    if parts is not None:
        return int(parts[0].shape[0])
    out = getattr(lm_head, "out_features", None)
    return int(out) if isinstance(out, int) and out > 0 else None


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
    selected, flat_targets, keep = labelled_positions(hidden, labels)
    sums = indexed_logprobs(
        selected, flat_targets, keep.nonzero()[:, 0], hidden, lm_head, chunk_tokens, softcap
    )
    return sums, keep.sum(dim=1)


def labelled_positions(
    hidden: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(selected [n, dim], targets [n], keep [batch, seq-1])`: the hidden states whose next
    token is labelled, those tokens, and where they are (position t predicts `labels[t + 1]`)."""
    targets = labels[:, 1:]  # [batch, seq-1]
    keep = targets != IGNORE_INDEX
    return hidden[:, :-1][keep], targets[keep], keep


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
    # Each checkpointed chunk holds its logits and their fp32 log-softmax at once: cap them.
    chunk_tokens = capped_chunk(chunk_tokens, head_vocab(lm_head))
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
    fused: bool = False,
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over supervised positions, and how many there were.

    With `fused` (training, when the head's whole weight is in this process: not under FSDP or
    ZeRO-3, which gather it inside the module's own call), a plain linear head computes the loss
    and its gradients in one pass (`LinearCrossEntropy`); anything else takes the checkpointed
    per-chunk path of `labelled_logprobs`.
    """
    parts = head_parts(lm_head) if fused and torch.is_grad_enabled() else None
    if parts is not None:
        selected, flat_targets, _ = labelled_positions(hidden, labels)
        if flat_targets.numel():
            weight, rows, index = parts
            loss = LinearCrossEntropy.apply(
                selected, weight, rows, index, flat_targets, chunk_tokens, softcap
            )
            return loss, int(flat_targets.numel())
    logprobs, counts = labelled_logprobs(hidden, labels, lm_head, chunk_tokens, softcap)
    return -logprobs.sum(), int(counts.sum())


def head_parts(
    lm_head: nn.Module,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None:
    """`(weight [vocab, dim], rows [k, dim] or None, index [k] or None)` of a bias-free linear
    head: its weight, and PEFT's trained token rows that replace the weight's rows at `index`
    (the turn markers of a base model); None where the head is anything else."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    from peft.utils.other import TrainableTokensWrapper

    if isinstance(lm_head, TrainableTokensWrapper):  # forwards to its token adapter
        return head_parts(lm_head.token_adapter)
    if isinstance(lm_head, TrainableTokensLayer):
        base = lm_head.base_layer
        active = lm_head.active_adapters
        if lm_head.merged or lm_head.disable_adapters or not active:
            return head_parts(base)
        if type(base) is not nn.Linear or base.bias is not None:
            return None
        if len(active) > 1:  # rows of several adapters: PEFT's merged weight, differentiable
            return lm_head.get_merged_weights(active), None, None
        index = torch.tensor(lm_head.token_indices[active[0]], device=base.weight.device)
        return base.weight, lm_head.trainable_tokens_delta[active[0]], index
    if type(lm_head) is not nn.Linear or lm_head.bias is not None:
        return None
    weight = lm_head.weight
    if tuple(weight.shape) != (lm_head.out_features, lm_head.in_features):
        return None  # a partitioned parameter (DeepSpeed ZeRO-3 leaves an empty placeholder)
    return weight, None, None


def _softmax_xent_grad(logits: torch.Tensor, targets: torch.Tensor):
    """`(nll [n] fp32, softmax - onehot [n, vocab] in the logits' dtype)` of one chunk.

    The arithmetic of `log_softmax(logits.float())`, written so that one compiled kernel reads
    the low-precision logits, keeps the max, the sum of exponentials and the gradient in fp32
    registers and writes only the gradient in the logits' dtype: the eager path writes an fp32
    copy of the logits, log-softmaxes it (three passes), exponentiates it in place and casts it
    back, ~6x the memory traffic (on Gemma's 262k-row head, bf16: 0.228 -> 0.064 s a 256-row
    chunk, bench/RESULTS.md).
    """
    z = logits.float()
    top = z.amax(-1, keepdim=True)
    lse = (z - top).exp().sum(-1, keepdim=True).log() + top
    nll = lse.squeeze(-1) - z.gather(1, targets[:, None]).squeeze(-1)
    probs = (z - lse).exp()
    cols = torch.arange(z.shape[-1], device=z.device)
    grad = torch.where(cols[None, :] == targets[:, None], probs - 1.0, probs)
    return nll, grad.to(logits.dtype)


class _FusedSoftmax(CompiledOrEager):
    """`_softmax_xent_grad` through `torch.compile` (one kernel), built at first use; where
    compiling is off (`INSTILL_FUSED_SOFTMAX=0`) or fails, the same function runs eagerly."""

    def __init__(self) -> None:
        super().__init__(_softmax_xent_grad, "the fused LM-head softmax", FUSED_SOFTMAX_ENV, logger)


fused_softmax = _FusedSoftmax()


class LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T`, chunk by chunk, gradients made in forward.

    The loss is a sum, so its gradients are known as soon as each chunk's log-softmax is: for
    logits z, d(-log softmax(z)[t])/dz = softmax(z) - onehot(t). Each chunk's `[chunk, vocab]`
    log-probabilities are computed once, in fp32 from the compute dtype's logits (what the
    checkpointed path computes too), turned in place into that gradient and multiplied back
    through the head; backward only scales the stored `[n, dim]` (and the head's, where it
    trains) gradients by the incoming scalar. Against the checkpointed path this saves the
    head's recomputation, the fp32 logits' copy and the separate log-softmax backward pass
    (measured: 1.9x on SmolLM2's 49k head, bench/RESULTS.md), with the same arithmetic. With
    bf16/fp16 logits the log-softmax and its gradient are one compiled kernel (`fused_softmax`).
    Soft-capped logits (c * tanh(z / c)) chain the cap's derivative, 1 - (capped / c)^2.

    `rows` (`[k, dim]`, trained) replace the frozen `weight`'s rows at `index`: PEFT's trained
    token rows. Only their `[k, dim]` gradient is computed, not the `[vocab, dim]` one the
    merged weight would get (on Gemma's 262k-row head: ~0.9 TFLOP and ~1.7 GB less a step),
    and the weight is not copied to replace them: their logits' columns are overwritten, and
    their gradient columns go through `rows` instead of `weight`.
    """

    @staticmethod
    def forward(ctx, hidden, weight, rows, index, targets, chunk_tokens, softcap):
        device = hidden.device.type
        dtype = (
            torch.get_autocast_dtype(device)
            if torch.is_autocast_enabled(device)
            else torch.promote_types(hidden.dtype, weight.dtype)
        )
        acc = torch.promote_types(dtype, torch.float32)  # softmax and sums: fp32 at least
        with torch.autocast(device, enabled=False):
            w = weight.detach().to(dtype)  # [vocab, dim]; the trained rows replace its
            if rows is not None:  # rows at `index` in each chunk's logits and gradient
                r = rows.detach().to(dtype)
            grad_hidden = torch.empty(hidden.shape, dtype=dtype, device=hidden.device)
            grad_weight = (
                torch.zeros(weight.shape, dtype=acc, device=weight.device)
                if ctx.needs_input_grad[1]
                else None
            )
            grad_rows = (
                torch.zeros(rows.shape, dtype=acc, device=rows.device)
                if ctx.needs_input_grad[2]
                else None
            )
            total = torch.zeros((), dtype=acc, device=hidden.device)
            # bf16/fp16 logits without a cap: one compiled kernel (fp32 inside, no fp32 copy)
            fused = not softcap and dtype in (torch.bfloat16, torch.float16)
            chunk_tokens = capped_chunk(chunk_tokens, w.shape[0], acc.itemsize)
            for start in range(0, hidden.shape[0], chunk_tokens):
                x = hidden[start : start + chunk_tokens].detach().to(dtype)  # [chunk, dim]
                t = targets[start : start + chunk_tokens]
                logits = x @ w.t()  # [chunk, vocab]
                if rows is not None:
                    logits[:, index] = x @ r.t()
                if fused:
                    nll, grad = fused_softmax(logits, t)
                    total += nll.sum().to(acc)
                else:
                    if softcap:
                        logits = softcap * torch.tanh(logits.to(acc) / softcap)
                    logp = torch.log_softmax(logits, dim=-1, dtype=acc)
                    total -= logp.gather(1, t[:, None]).sum()
                    grad = logp.exp_()  # softmax, in place
                    grad[torch.arange(t.numel(), device=t.device), t] -= 1.0
                    if softcap:
                        grad *= 1.0 - (logits / softcap).square()
                    grad = grad.to(dtype)
                if rows is not None:  # the trained rows' columns go through `r`, not `w`
                    g_rows = grad[:, index]
                    grad[:, index] = 0
                    grad_hidden[start : start + chunk_tokens] = torch.addmm(g_rows @ r, grad, w)
                    if grad_rows is not None:
                        grad_rows += (g_rows.t() @ x).to(acc)
                else:
                    grad_hidden[start : start + chunk_tokens] = grad @ w
                if grad_weight is not None:
                    grad_weight += (grad.t() @ x).to(acc)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_rows)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if rows is None else rows.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight, grad_rows = ctx.saved_tensors
        hidden_dtype, weight_dtype, rows_dtype = ctx.dtypes
        g = grad_output.to(torch.promote_types(grad_hidden.dtype, torch.float32))
        dh = (grad_hidden.to(g.dtype) * g).to(hidden_dtype)
        dw = None if grad_weight is None else (grad_weight * g.to(grad_weight.dtype))
        dr = None if grad_rows is None else (grad_rows * g.to(grad_rows.dtype))
        return (
            dh,
            None if dw is None else dw.to(weight_dtype),
            None if dr is None else dr.to(rows_dtype),
            None,
            None,
            None,
            None,
        )


def decoder_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Final hidden states `[batch, seq, dim]` of a causal LM (plain or PEFT), without logits.

    Packed rows pass `position_ids` and no mask: transformers then isolates the sequences with
    a block-diagonal mask, or, when the model runs `packed_attention.ATTENTION`, each sequence
    attends on its own (its sequence ids are passed down as the mask).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if (
        attention_mask is None
        and position_ids is not None
        and getattr(base.config, "_attn_implementation", None) == ATTENTION
    ):
        attention_mask = packed_sequence_ids(position_ids)
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
