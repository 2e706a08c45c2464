"""What is trained: all weights, the last N blocks, LoRA or QLoRA adapters (through PEFT).

`apply_method` takes a loaded causal LM and returns the model to train with `requires_grad` set
exactly on the trainable parameters; everything else is frozen. LoRA/QLoRA use PEFT so that the
saved adapter loads with plain `PeftModel.from_pretrained`.
"""

from __future__ import annotations

import torch
from torch import nn

from instill.config import TrainConfig
from instill.errors import InstillError

ATTENTION_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a causal LM (Llama/Qwen/Gemma-style `model.layers`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(base.get_decoder(), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise InstillError(
            f"{type(base).__name__}: cannot find the transformer blocks (decoder.layers); "
            "use method: full or lora for this architecture"
        )
    return layers


def apply_method(
    model: nn.Module, train: TrainConfig, token_ids: list[int] | None = None
) -> nn.Module:
    """Freeze/unfreeze or wrap `model` for `train.method`.

    Args:
        model: the loaded causal LM.
        train: the train config (method, lora, freeze).
        token_ids: tokens whose embedding rows are trained too, because they start untrained:
            tokens added for this run and the template's turn markers on a base model. Under
            LoRA/QLoRA they are PEFT trainable tokens (tied output embedding included); under
            freeze the embedding trains with a gradient mask that keeps every other row fixed.
    """
    method = train.method
    token_ids = sorted(set(token_ids or []))
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method == "freeze":
        for p in model.parameters():
            p.requires_grad_(False)
        layers = decoder_layers(model)
        n = train.freeze.last_n_layers
        if n > len(layers):
            raise InstillError(
                f"train.freeze.last_n_layers={n} but the model has {len(layers)} blocks; use at "
                f"most {len(layers)} (or method: full)"
            )
        for layer in layers[len(layers) - n :]:
            for p in layer.parameters():
                p.requires_grad_(True)
        embedding = model.get_input_embeddings().weight
        output = model.get_output_embeddings().weight
        if train.freeze.train_embeddings:
            embedding.requires_grad_(True)
        if train.freeze.train_lm_head:
            output.requires_grad_(True)
        for weight in dict.fromkeys([embedding, output]):  # one entry when tied
            if token_ids and not weight.requires_grad:
                weight.requires_grad_(True)
                weight.register_hook(_row_mask_hook(weight, token_ids))
                weight._instill_row_masked = True
        # The final norm sits after the trained blocks and is tiny: train it with them.
        norm = getattr(model.get_decoder(), "norm", None)
        if norm is not None:
            for p in norm.parameters():
                p.requires_grad_(True)
        return model
    if method in ("lora", "qlora"):
        return _wrap_lora(model, train, token_ids)
    raise InstillError(f"unknown train.method {method!r}")  # pragma: no cover - schema-checked


def _row_mask_hook(weight: torch.Tensor, token_ids: list[int]):
    """A gradient hook that zeroes every embedding row but `token_ids`."""
    keep = torch.zeros(weight.shape[0], 1, dtype=torch.bool, device=weight.device)
    keep[token_ids] = True

    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * keep.to(grad.device)

    return hook


def is_row_masked(param: torch.Tensor) -> bool:
    """Whether only some rows of `param` train (they must not get weight decay either)."""
    return getattr(param, "_instill_row_masked", False)


def _wrap_lora(model: nn.Module, train: TrainConfig, token_ids: list[int]):
    from peft import LoraConfig, get_peft_model

    lora = train.lora
    targets: str | list[str]
    if lora.targets == "all-linear":
        targets = "all-linear"
    elif lora.targets == "attention":
        targets = ATTENTION_TARGETS
    else:
        targets = list(lora.targets)
    kwargs = {}
    if token_ids:
        embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
        modules = [embedding]
        # PEFT follows a tied output projection by itself; an untied one is listed too, or its
        # end-of-turn row (the logit that must learn to win) would stay untrained.
        if output is not None and output.weight is not embedding.weight:
            modules.append(output)
        kwargs["trainable_token_indices"] = {
            _module_name(model, m).split(".")[-1]: token_ids for m in modules
        }
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        use_rslora=lora.rslora,
        use_dora=lora.dora,
        bias="none",
        task_type="CAUSAL_LM",
        **kwargs,
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as e:
        raise InstillError(f"train.lora.targets={lora.targets!r}: {e}") from e
    # Adapters train in fp32 even when the frozen base computes in bf16 (autocast handles mixing).
    for p in peft_model.parameters():
        if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16):
            p.data = p.data.float()
    return peft_model


def disable_adapter_input_casts(model: nn.Module) -> int:
    """Stop PEFT from casting each adapter's input to the adapter's (fp32) dtype.

    Only for training under bf16 autocast: there autocast runs the adapter matmuls in bf16
    whatever the input dtype, so PEFT's cast of every activation to fp32 (and autocast's cast
    back) changes no result (the losses are bit-identical) and costs ~15% of a Gemma 3 270M LoRA
    step on CPU. Returns the number of adapter layers changed.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    return len(layers)


def fuse_lora_outputs(model: nn.Module) -> int:
    """Add each plain LoRA update to its base output inside one GEMM: `addmm(base(x), A(x),
    B^T, alpha=scaling)` instead of PEFT's `base(x) + B(A(x)) * scaling`.

    PEFT's sum takes two more passes over the `[tokens, out_features]` output (the scaling, then
    the add) and one more in backward (the scaling's); a GEMM's epilogue does both for free and
    scales only the rank-r gradients. Same sum, fewer roundings (`tests/test_fused_lora.py`). Only
    plain `peft.tuners.lora.Linear` layers on an `nn.Linear` base are changed; dropout is drawn
    at the point PEFT draws it, so a seeded run takes the same masks. Each layer falls back to
    PEFT's own forward while anything else is in play: adapters disabled or merged, several
    active adapters, per-request adapter names, DoRA or other variants, a bias on B. Returns
    the number of layers changed.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    changed = 0
    for module in model.modules():
        if type(module) is LoraLinear and type(module.base_layer) is nn.Linear:
            module.forward = _fused_lora_forward.__get__(module)
            changed += 1
    return changed


def _fused_lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    from peft.tuners.lora.layer import Linear as LoraLinear

    names = self.active_adapters
    name = names[0] if len(names) == 1 else None
    if (
        args
        or kwargs
        or self.disable_adapters
        or self.merged
        or name not in self.lora_A
        or name in self.lora_variant
        or self.lora_B[name].bias is not None
    ):
        return LoraLinear.forward(self, x, *args, **kwargs)
    result = self.base_layer(x)  # [..., out]
    # PEFT's order: the base first, then dropout on the input (the same random draws)
    x = self._cast_input_dtype(x, self.lora_A[name].weight.dtype)
    a = self.lora_A[name](self.lora_dropout[name](x))  # [..., r]
    out = torch.addmm(
        result.reshape(-1, result.shape[-1]),
        a.reshape(-1, a.shape[-1]),
        self.lora_B[name].weight.t(),
        alpha=self.scaling[name],
    )
    return out.view(result.shape).to(result.dtype)


def _module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise InstillError("cannot locate the input embedding module by name")  # pragma: no cover


def trainable_parameter_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
