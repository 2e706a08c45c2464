"""LoRA updates added inside one GEMM (`fuse_lora_outputs`) equal PEFT's own sum: outputs and
gradients in float64, and PEFT's path wherever something else is in play."""

import pytest
import torch

from instill.config import TrainConfig
from instill.models.adapters import apply_method, fuse_lora_outputs
from instill.models.tiny import build_tiny_model


def _lora_model(dropout=0.0, dtype=torch.float64, seed=0):
    model = build_tiny_model("tiny-random-llama", seed=seed).to(dtype)
    cfg = TrainConfig(
        method="lora", lora={"r": 4, "alpha": 8, "targets": "all-linear", "dropout": dropout}
    )
    model = apply_method(model, cfg)
    with torch.no_grad():  # B starts at zero: give the update a value to compare
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    return model


def _outputs_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    logits = model(ids).logits
    (logits * torch.linspace(-1, 1, logits.shape[-1], dtype=logits.dtype)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach(), grads


def test_fused_lora_equals_peft_in_float64():
    ids = torch.randint(3, 512, (2, 11), generator=torch.Generator().manual_seed(0))
    model = _lora_model()
    ref = _outputs_and_grads(model, ids)
    assert fuse_lora_outputs(model) == 14  # every linear of the 2 blocks
    got = _outputs_and_grads(model, ids)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-12, atol=1e-13)
    assert got[1].keys() == ref[1].keys() and any("lora_A" in n for n in ref[1])
    for n in ref[1]:
        torch.testing.assert_close(got[1][n], ref[1][n], rtol=1e-10, atol=1e-13)


def test_fused_lora_falls_back_when_disabled_and_draws_dropout_as_peft():
    ids = torch.randint(3, 512, (1, 9), generator=torch.Generator().manual_seed(1))
    model = _lora_model()
    with torch.no_grad():
        with model.disable_adapter():
            base = model(ids).logits
        adapted = model(ids).logits
        fuse_lora_outputs(model)
        with model.disable_adapter():
            assert torch.equal(model(ids).logits, base)
        torch.testing.assert_close(model(ids).logits, adapted, rtol=1e-12, atol=1e-13)
    # dropout draws its mask where PEFT draws it: seeded runs take the same masks
    dropped = _lora_model(dropout=0.5)
    torch.manual_seed(2)
    want = dropped(ids).logits
    fuse_lora_outputs(dropped)
    torch.manual_seed(2)
    torch.testing.assert_close(dropped(ids).logits, want, rtol=1e-12, atol=1e-13)
    torch.manual_seed(3)
    assert not torch.allclose(dropped(ids).logits, want)  # the masks did change the output


@pytest.mark.parametrize("dtype", [torch.float32])
def test_fused_lora_under_bf16_autocast_stays_within_bf16_rounding(dtype):
    ids = torch.randint(3, 512, (2, 11), generator=torch.Generator().manual_seed(3))
    model = _lora_model(dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model(ids).logits.float()
        fuse_lora_outputs(model)
        got = model(ids).logits.float()
    # a few bf16 roundings (2^-8 relative each) of values of the logits' scale
    assert (got - ref).abs().max() <= 8 * 2**-8 * ref.abs().max()
