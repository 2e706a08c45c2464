"""Sharded training: FSDP2 on 2 CPU processes trains, saves and resumes like one process.

The shipped `configs/accelerate/fsdp.yaml` (FSDP2, transformer-block wrapping, sharded state
dicts) is launched with 2 CPU processes over gloo. accelerate 1.15 enables FSDP only on
accelerator devices, so the run goes through `tests/launch_fsdp_on_cpu.py`, which switches it on
(see there); the test checks that the checkpoint is an FSDP one. DeepSpeed needs GPUs: it is
checked by `bench/distributed_check.py` on a GPU machine.
"""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from instill.config import validate_config
from instill.train.loop import train
from tests.test_train import ROOT, _metric, make_config

LAUNCHER = Path(__file__).with_name("launch_fsdp_on_cpu.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_fsdp(accelerate_config: Path, cfg: Path, output_dir: Path, *extra: str) -> str:
    accelerate = Path(sys.executable).with_name("accelerate")
    proc = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--config_file",
            str(accelerate_config),
            "--main_process_port",
            str(_free_port()),
            str(LAUNCHER),
            "train",
            str(cfg),
            f"output_dir={output_dir}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_fsdp_on_two_processes_matches_one_process_and_resumes_exactly(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from instill.train import setup

    fsdp = yaml.safe_load((ROOT / "configs" / "accelerate" / "fsdp.yaml").read_text())
    fsdp.update(num_processes=2, mixed_precision="no", use_cpu=True)
    accelerate_config = tmp_path / "fsdp.yaml"
    accelerate_config.write_text(yaml.safe_dump(fsdp))
    # 2 ranks x batch 2 x accumulation 2 (the non-last micro-batch skips the reduce-scatter)
    # against 1 process x batch 8, with clipping on (the norms are ~3, so it clips), and a
    # checkpoint at step 2 of 4 to resume from. float64: as in test_train's invariants, the
    # summation order of 2 shards vs 1 cannot hide in rounding (the runs differ by ~1e-15), so
    # rel 1e-9 is far below what a wrong normalisation changes: a wrong scale of the whole step
    # (e.g. no world factor) halves the grad norms (AdamW alone would hide it), a wrong weighting
    # of micro-batches or ranks moves the losses from step 2 on.
    raw = make_config(
        tmp_path, max_steps=4, batch_size=2, grad_accum=2, max_grad_norm=1.0, save_every=2
    )
    raw["model"]["dtype"] = "float64"
    # 5 validation rows: rank 0 gets 3, rank 1 gets 2 (with batch 2: 2 batches vs 1). Every rank
    # must still run as many sharded forwards as the others, or validation hangs.
    raw["data"]["val_fraction"] = 0.2
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))

    captured = {}
    original = setup.apply_method

    def spy(model, cfg, new_ids=None):
        wrapped = original(model, cfg, new_ids)
        captured["initial"] = {n: p.detach().clone() for n, p in wrapped.state_dict().items()}
        return wrapped

    monkeypatch.setattr(setup, "apply_method", spy)
    ref = dict(raw, output_dir=str(tmp_path / "one"))
    ref["train"] = dict(raw["train"], batch_size=8, grad_accum=1)
    one = train(validate_config(ref))

    out = _launch_fsdp(accelerate_config, cfg, tmp_path / "fsdp")
    assert "4 steps of 8 rows" in out
    step2 = tmp_path / "fsdp" / "checkpoints" / "step-000002"
    assert (step2 / "accelerate_state" / "pytorch_model_fsdp_0").is_dir()  # really sharded
    assert _metric(tmp_path / "fsdp", "train/loss") == pytest.approx(one.losses, rel=1e-9)
    assert _metric(tmp_path / "fsdp", "train/grad_norm") == pytest.approx(one.grad_norms, rel=1e-9)
    assert _metric(tmp_path / "fsdp", "val/loss") == pytest.approx(one.val_losses, rel=1e-9)

    # final/ is a plain transformers model with all of the trained weights.
    model, info = AutoModelForCausalLM.from_pretrained(
        str(tmp_path / "fsdp" / "final"), dtype=torch.float64, output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    trained = model.state_dict()
    reference = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    assert set(trained) == set(reference)
    for name, value in reference.items():
        assert trained[name].shape == value.shape, name  # whole tensors, not one rank's shard
        assert not torch.equal(trained[name], captured["initial"][name]), name
        torch.testing.assert_close(trained[name], value, rtol=1e-9, atol=1e-11)

    # Resume from the step-2 checkpoint in a copy of the run (later checkpoint and final/
    # removed): steps 3-4 and the final weights are bit-identical to the uninterrupted run.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "fsdp", resumed)
    shutil.rmtree(resumed / "final")
    shutil.rmtree(resumed / "checkpoints" / "step-000004")
    out = _launch_fsdp(accelerate_config, cfg, resumed, "--resume")
    assert "resumed from" in out and "step-000002" in out
    assert _metric(resumed, "train/loss")[-2:] == _metric(tmp_path / "fsdp", "train/loss")[2:]
    a = load_file(str(tmp_path / "fsdp" / "final" / "model.safetensors"))
    b = load_file(str(resumed / "final" / "model.safetensors"))
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)


def test_generation_during_training_is_refused_when_the_weights_are_sharded(tmp_path, monkeypatch):
    from instill.errors import InstillError
    from instill.train import setup

    monkeypatch.setattr(setup, "weights_sharded", lambda accelerator: True)
    raw = make_config(tmp_path, sample_prompts=["Say hi"])
    with pytest.raises(InstillError, match=r"weights are sharded.*instill eval --model"):
        train(validate_config(raw))
