"""The memory estimate behind `train.gradient_checkpointing: auto`, and the choice it makes."""

from pathlib import Path

import pytest
import torch

from instill.config import validate_config
from instill.models.loss import decoder_hidden_states
from instill.models.memory import GB, SAFETY, estimate_training_memory
from instill.models.tiny import TINY_NAMES, build_tiny_model
from instill.train.loop import train
from instill.train.setup import build_run
from tests.test_train import make_config


def _saved_activation_bytes(model: torch.nn.Module, ids: torch.Tensor, autocast: bool) -> int:
    """Bytes of the (non-parameter) tensors autograd keeps for backward in one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            storages[st.data_ptr()] = st.nbytes()
        return t

    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
    ):
        decoder_hidden_states(model, ids)
    return sum(storages.values())


def _estimate(model, rows: int, seq: int, dtype: torch.dtype, **kw):
    args = dict(
        tokens=rows * seq,
        seq_len=seq,
        compute_dtype=dtype,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        chunk_tokens=1024,
        attention_materialized=False,
    )
    return estimate_training_memory(model, **{**args, **kw})


# fp32 weights in fp32; fp32 weights under bf16 autocast (full fine-tuning); bf16 weights
# (LoRA's frozen base)
SETTINGS = {"fp32": (None, False), "autocast": (None, True), "bf16": (torch.bfloat16, False)}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("name", TINY_NAMES)
def test_activation_estimate_covers_what_autograd_keeps(name, setting):
    cast, autocast = SETTINGS[setting]
    model = build_tiny_model(name)
    if cast is not None:
        model = model.to(cast)
    model.config.use_cache = False
    rows, seq = 4, 64
    ids = torch.randint(0, 100, (rows, seq), generator=torch.Generator().manual_seed(0))
    saved = _saved_activation_bytes(model, ids, autocast)
    dtype = torch.bfloat16 if (cast or autocast) else torch.float32
    est = _estimate(model, rows, seq, dtype)
    # an upper bound (a low estimate lets the OOM killer end the run) that is not a wild one
    assert saved <= est.activations <= 2 * SAFETY * saved, (saved, est.activations)


def test_estimate_parts_follow_the_arithmetic():
    model = build_tiny_model("tiny-random-llama")
    cfg = model.config
    one = _estimate(model, 2, 64, torch.float32)
    two = _estimate(model, 4, 64, torch.float32)
    assert two.activations == 2 * one.activations  # linear in tokens
    assert one.checkpointed_activations < one.activations
    assert one.total(True) < one.total(False)
    trainable = sum(p.numel() for p in model.parameters())
    assert one.trainable_state == 12 * trainable  # fp32 gradient + two AdamW moments
    assert one.weights == 4 * trainable
    assert one.autocast_copies == 0  # no autocast in fp32
    assert _estimate(model, 2, 64, torch.bfloat16).autocast_copies == 2 * trainable
    # attention probabilities, where the kernel may keep them: heads x seq fp32 per token-layer
    mat = _estimate(model, 2, 64, torch.float32, attention_materialized=True)
    extra = 2 * 64 * cfg.num_hidden_layers * 4 * cfg.num_attention_heads * 64
    assert mat.activations - one.activations == extra
    # sharded weights (FSDP / ZeRO-3) divide the per-rank weights and optimizer state
    half = _estimate(model, 2, 64, torch.float32, weight_shards=2)
    assert half.weights == one.weights // 2 and half.trainable_state == one.trainable_state // 2


def _config(tmp_path: Path, **train) -> dict:
    return make_config(tmp_path, "tiny-random-llama", **train)


@pytest.mark.parametrize(
    ("train", "expected", "reason"),
    [
        ({}, False, "auto: estimated peak"),  # a tiny model fits the host's RAM
        ({"memory_budget_gb": 1e-4}, True, "auto: estimated peak"),
        ({"memory_budget_gb": 1e-4, "gradient_checkpointing": False}, False, "=False"),
        ({"gradient_checkpointing": True}, True, "=True"),
    ],
)
def test_auto_checkpoints_only_over_the_budget(tmp_path, capsys, train, expected, reason):
    run = build_run(validate_config(_config(tmp_path, **train)))
    assert run.gradient_checkpointing is expected
    base = run.model.get_base_model() if hasattr(run.model, "get_base_model") else run.model
    assert base.is_activation_checkpointing is expected
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("gradient checkpointing:"))
    compute = next(x for x in out.splitlines() if x.startswith("compute: "))
    assert compute.startswith(("compute: float32 on cpu", "compute: bfloat16 on cpu"))
    assert line.startswith(f"gradient checkpointing: {'on' if expected else 'off'}")
    assert reason in line
    if "memory_budget_gb" in train and train.get("gradient_checkpointing", "auto") == "auto":
        assert "budget 0.0 GiB (train.memory_budget_gb)" in line
        # with checkpointing the estimate is still over so tiny a budget: the user is told
        assert "even with gradient checkpointing a step may not fit" in out


@pytest.mark.parametrize("method", ["full", "lora"])
def test_checkpointing_changes_memory_not_the_losses(tmp_path, method):
    plain = train(validate_config(_config(tmp_path / "a", method=method, max_steps=3)))
    ckpt = train(
        validate_config(
            _config(tmp_path / "b", method=method, max_steps=3, gradient_checkpointing=True)
        )
    )
    # the same ops recomputed in fp32: equal up to the order of float32 reductions
    assert ckpt.losses == pytest.approx(plain.losses, rel=1e-5)
    assert ckpt.grad_norms == pytest.approx(plain.grad_norms, rel=1e-4)


def test_budget_must_be_positive(tmp_path):
    with pytest.raises(Exception, match="memory_budget_gb"):
        validate_config(_config(tmp_path, memory_budget_gb=0))
    assert GB == 1024**3
