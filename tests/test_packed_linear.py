"""oneDNN linears for CPU decoding: F.linear's results up to rounding, applied only where safe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from instill.generate.packed_linear import PackedLinears, supported


def test_fp32_is_supported_by_the_torch_we_ship():
    assert supported(torch.float32)  # torch's CPU and CUDA wheels both carry oneDNN


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(96, 200), nn.GELU(), nn.Linear(200, 64, bias=False))


def _rounding_bound(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Twice the standard fp32 dot-product error bound gamma_K * sum|x_i w_i|, propagated
    through the layers with |.|: any two summation orders differ by at most this."""
    eps = torch.finfo(torch.float32).eps / 2
    bound = torch.zeros_like(x)
    h = x
    for layer in model:
        if isinstance(layer, nn.Linear):
            k = layer.in_features
            gamma = k * eps / (1 - k * eps)
            bound = 2 * gamma * (h.abs() @ layer.weight.abs().T) + bound @ layer.weight.abs().T
        else:
            bound = bound * 1.2  # GELU's slope is below 1.13
        h = layer(h)
    return bound


@pytest.mark.parametrize("rows", [1, 5, 16, 300])
def test_packed_linears_equal_f_linear_up_to_rounding(rows):
    model = _model()
    x = torch.randn(rows, 96)
    with torch.no_grad():
        want = model(x)
        linears = PackedLinears(model, True)
        with linears.active() as on:
            got = model(x)
    assert on
    assert (got - want).abs().le(_rounding_bound(model, x) + 1e-30).all()
    assert "forward" not in vars(model[0])  # the stock forward is back


def test_a_weight_updated_in_place_is_reordered_again():
    model = _model()
    linears = PackedLinears(model, True)
    x = torch.randn(4, 96)
    with torch.no_grad():
        with linears.active():
            before = model(x)
        model[2].weight.mul_(2.0)  # an in-place update bumps the version counter
        with linears.active():
            after = model(x)
        want = model(x)
    assert not torch.allclose(before, after)
    assert (after - want).abs().le(_rounding_bound(model, x) + 1e-30).all()


def test_grad_autocast_and_unsupported_layers_run_the_stock_forward():
    model = _model()
    x = torch.randn(3, 96)
    with torch.no_grad():
        want = model(x)
    linears = PackedLinears(model, True)
    with linears.active():
        y = model(x)  # grad enabled: the stock path, so training through it still works
        assert y.requires_grad and torch.equal(y.detach(), want)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert model(x).dtype == torch.bfloat16  # autocast still decides the dtype
    assert not linears._packs  # nothing was reordered

    class Quantized(nn.Linear):  # a subclass overrides forward: never rerouted
        pass

    odd = nn.Sequential(Quantized(8, 8))
    with PackedLinears(odd, True).active() as on:
        assert not on and "forward" not in vars(odd[0])
    with PackedLinears(_model(), False).active() as on:
        assert not on


def test_auto_refuses_when_the_copies_do_not_fit(monkeypatch):
    import instill.models.memory as memory

    model = _model()
    weights = sum(p.numel() * 4 for n, p in model.named_parameters() if n.endswith("weight"))
    monkeypatch.setattr(memory, "available_memory", lambda device: int(weights * 3))
    assert not PackedLinears(model, "auto").enabled()  # 4x the weights would be needed
    monkeypatch.setattr(memory, "available_memory", lambda device: int(weights * 5))
    assert PackedLinears(model, "auto").enabled()
    with pytest.raises(ValueError, match="mode"):
        PackedLinears(model, "yes")
