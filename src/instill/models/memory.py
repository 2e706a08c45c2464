"""How much memory a training step needs, estimated before the first step from the model's shape.

`train.gradient_checkpointing: auto` uses this to decide: checkpointing recomputes each decoder
layer's activations in backward instead of keeping them (one more forward, ~30% slower), so it
is worth paying only when the kept activations would not fit. On a CPU a step that does not fit
is not an exception but the kernel's OOM killer, so the decision is made from an estimate, ahead.

The estimate is deliberately on the high side (a wrong "off" kills the run, a wrong "on" costs
speed): per token and decoder layer, a decoder keeps for backward about

* the inputs of its two norms and their fp32 copies (RMSNorm computes in fp32),
* the normalised inputs of the q/k/v and gate/up projections,
* q, k, v before and after the rotary embedding and the attention output,
* gate, up, the activation and the input of the down projection (four `intermediate` vectors),

in the compute dtype; where the attention kernel may materialise probabilities (the CPU's SDPA
with a mask), `heads x seq` fp32 values per token too. With checkpointing, only each layer's
input stays, plus one layer's activations while it is recomputed. Weights, trainable fp32
weights with their gradients and AdamW's two moments, autocast's bf16 copies of fp32 weights,
and the chunked LM head's fp32 logits (kept, softmaxed and differentiated) are added to both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

GB = 1024**3
#: Headroom over the counted tensors: masks, rotary tables, views that own copies, allocator
#: slack. Checked against the bytes autograd actually saves (tests/test_memory.py).
SAFETY = 1.25


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step's peak, by part (see the module docstring)."""

    weights: int
    trainable_state: int  # fp32 trainable weights' gradients + AdamW moments
    autocast_copies: int
    activations: int  # kept for backward without checkpointing
    checkpointed_activations: int  # with checkpointing
    lm_head: int

    def total(self, checkpointing: bool) -> int:
        acts = self.checkpointed_activations if checkpointing else self.activations
        return self.weights + self.trainable_state + self.autocast_copies + acts + self.lm_head


def _text_config(model: nn.Module):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def estimate_training_memory(
    model: nn.Module,
    *,
    tokens: int,
    seq_len: int,
    compute_dtype: torch.dtype,
    trainable_params: int,
    chunk_tokens: int,
    attention_materialized: bool,
    weight_shards: int = 1,
) -> MemoryEstimate:
    """Peak bytes of one micro-batch's forward + backward + optimizer step, by part.

    Args:
        model: the causal LM as loaded (before PEFT wrapping or after).
        tokens: tokens of one micro-batch (rows x padded length).
        seq_len: the padded row length.
        compute_dtype: what activations are computed in.
        trainable_params: parameters that get gradients and optimizer state.
        chunk_tokens: LM-head rows computed at once (`train.loss_chunk_tokens`).
        attention_materialized: whether attention probabilities may be kept (CPU SDPA with a
            mask, the eager implementation).
        weight_shards: ranks the weights are sharded over (FSDP / ZeRO-3), else 1.
    """
    cfg = _text_config(model)
    h = cfg.hidden_size
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or h // heads
    kv = (getattr(cfg, "num_key_value_heads", None) or heads) * head_dim
    q = heads * head_dim
    inter = getattr(cfg, "intermediate_size", None) or 4 * h
    layers = cfg.num_hidden_layers
    vocab = model.get_output_embeddings().weight.shape[0]
    b = torch.finfo(compute_dtype).bits // 8
    fp32_body = any(p.dtype == torch.float32 for p in model.get_input_embeddings().parameters())
    # Under autocast with fp32 weights (full fine-tuning) the residual stream, rotary and
    # element-wise results stay fp32: count everything at 4 bytes then.
    act = 4 if fp32_body else b
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    norms = 4 if "pre_feedforward_layernorm" in names else 2  # Gemma 2/3: four per layer
    qk_norms = "q_norm" in names

    per_token_layer = 4 * 2 * h * norms  # norm inputs and normalised outputs, fp32
    # q, k (before and after rotary, and rotate_half's copies), v, attention output and the
    # output projection's input; gate, up, activation and the down projection's input.
    per_token_layer += act * (3 * (q + kv) + kv + 2 * q + 4 * inter)
    if qk_norms:
        per_token_layer += 4 * 2 * (q + kv)
    per_token_layer = int(per_token_layer * SAFETY)
    if attention_materialized:
        per_token_layer += 4 * heads * seq_len
    activations = tokens * layers * per_token_layer
    checkpointed = tokens * layers * act * h + tokens * per_token_layer

    weights = sum(p.numel() * p.element_size() for p in model.parameters()) // weight_shards
    state = 3 * 4 * trainable_params // weight_shards  # gradient, exp_avg, exp_avg_sq (fp32)
    fp32_params = sum(p.numel() for p in model.parameters() if p.dtype == torch.float32)
    copies = 2 * fp32_params // weight_shards if compute_dtype == torch.bfloat16 else 0
    lm_head = 3 * 4 * min(chunk_tokens, tokens) * vocab + tokens * b * h
    return MemoryEstimate(weights, state, copies, activations, checkpointed, lm_head)


def available_memory(device: torch.device) -> int:
    """Bytes a run can use on `device`: a GPU's free memory, or the host's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
