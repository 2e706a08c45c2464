"""Linear layers through oneDNN with reordered weights, for decoding on CPU.

A decode step multiplies a handful of rows (one per running answer) by every weight matrix. On
CPU, `F.linear` hands that to MKL's sgemm, which at 1-16 rows reaches a small share of what the
same weights allow: measured on a 2-core AVX2 host at 16 rows, 23 GFLOP/s for SmolLM2's
49k x 576 LM head and 45-60 for its body's matrices, against 46-51 and 60-90 for oneDNN's
`_linear_pointwise` on a weight reordered once into its blocked layout (the call torch's own
inductor makes for CPU inference). For Gemma 3's 262k-row LM head that is ~290 ms against
~95 ms a step. At hundreds of rows (a prefill) both run at the matmul peak.

`PackedLinears` reorders each `nn.Linear` weight the first time a decode step uses it and keeps
the reordered copy, keyed by the weight's storage and version counter, so a weight that is
replaced or updated in place through autograd-visible ops (an optimizer step, `copy_` under
`no_grad`) is reordered again. It applies only where it is the same computation: on CPU, without
grad, outside autocast, for a plain fp32 weight (bf16 too where oneDNN has native bf16); anything
else runs the stock `forward`. The results equal `F.linear`'s up to the summation order (a test
bounds the difference by fp32 rounding of the dot products).

The reordered copies cost as much memory as the weights they mirror, so by default (`auto`)
they are used only when all of them fit in a quarter of the host's available memory.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

MEMORY_SHARE = 0.25  # `auto`: the reordered copies may take this share of available memory


def supported(dtype: torch.dtype) -> bool:
    """oneDNN runs this weight dtype natively on this host."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.float32:
        return True
    return dtype == torch.bfloat16 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _eligible(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (
        type(module) is nn.Linear  # not a quantized or otherwise overridden subclass
        and "forward" not in vars(module)  # not already wrapped (accelerate's offload hooks)
        and isinstance(weight, torch.Tensor)
        and type(weight.data) is torch.Tensor  # not a sharded / quantized tensor subclass
        and weight.device.type == "cpu"
        and supported(weight.dtype)
    )


class PackedLinears:
    """The oneDNN path for a model's `nn.Linear` layers (see the module doc).

    Args:
        model: the model whose linear layers to run through oneDNN.
        mode: "auto" (when the reordered weights fit in `MEMORY_SHARE` of available memory),
            True (always, where supported) or False (never).
    """

    def __init__(self, model: nn.Module, mode: bool | str = "auto") -> None:
        if mode not in ("auto", True, False):
            raise ValueError(f"packed linears: mode must be 'auto', True or False, got {mode!r}")
        self.model = model
        self.mode = mode
        self._packs: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, torch.Tensor]] = (
            weakref.WeakKeyDictionary()
        )

    def enabled(self) -> bool:
        """Whether `active` routes the linear layers through oneDNN now."""
        if self.mode is False:
            return False
        layers = [m for m in self.model.modules() if _eligible(m)]
        if not layers:
            return False
        if self.mode is True:
            return True
        from instill.models.memory import available_memory

        unpacked = sum(
            m.weight.numel() * m.weight.element_size() for m in layers if m not in self._packs
        )
        return unpacked <= MEMORY_SHARE * available_memory(torch.device("cpu"))

    @contextmanager
    def active(self) -> Iterator[bool]:
        """Within this block, eligible linear layers run through oneDNN; yields whether they do.

        The stock `forward` is restored on exit.
        """
        if not self.enabled():
            yield False
            return
        patched = [m for m in self.model.modules() if _eligible(m)]
        for module in patched:
            module.forward = self._forward_of(module)
        try:
            yield True
        finally:
            for module in patched:
                vars(module).pop("forward", None)

    def _forward_of(self, module: nn.Linear):
        stock = nn.Linear.forward.__get__(module)

        def forward(x: torch.Tensor) -> torch.Tensor:
            if (
                torch.is_grad_enabled()
                or x.device.type != "cpu"
                or x.dtype != module.weight.dtype
                or torch.is_autocast_enabled("cpu")
            ):
                return stock(x)
            shape = x.shape
            flat = x.reshape(-1, shape[-1]).contiguous()
            packed = self._packed(module)
            y = torch.ops.mkldnn._linear_pointwise(flat, packed, module.bias, "none", [], "")
            return y.reshape(*shape[:-1], module.out_features)

        return forward

    def _packed(self, module: nn.Linear) -> torch.Tensor:
        w = module.weight
        key = (w.data_ptr(), w._version, w.dtype, tuple(w.shape))
        cached = self._packs.get(module)
        if cached is None or cached[0] != key:
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), None))
            self._packs[module] = cached
        return cached[1]

    def release(self) -> None:
        """Drop the reordered copies (they are made again on the next use)."""
        self._packs.clear()
