"""The trainer on tiny models: what is trained, invariants, outputs, failure handling."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from instill.config import validate_config
from instill.errors import InstillError
from instill.train.loop import TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "data"


def rows_file(tmp_path: Path, n: int = 24) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "rows.jsonl"
    lines = []
    for i in range(n):
        lines.append(
            json.dumps(
                {
                    "instruction": f"Repeat the number {i} twice." + " Please." * (i % 4),
                    "output": f"{i} {i}" + " done" * (i % 3),
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def make_config(tmp_path: Path, model: str = "tiny-random-qwen", **train) -> dict:
    return {
        "model": {"path": model, "dtype": "float32"},
        "data": {"sources": [{"path": str(rows_file(tmp_path))}], "max_length": 64},
        "train": {
            "method": "full",
            "max_steps": 2,
            "batch_size": 4,
            "lr": 1e-3,
            "warmup_ratio": 0.0,
            "logging": {"tensorboard": False},
            **train,
        },
        "output_dir": str(tmp_path / "run"),
    }


def run(raw: dict, **kw):
    return train(validate_config(raw), **kw)


def _deep(raw: dict, **sections) -> dict:
    out = json.loads(json.dumps(raw))
    for key, value in sections.items():
        out[key].update(value)
    return out


@pytest.mark.parametrize("method", ["full", "freeze", "lora", "qlora"])
def test_one_step_changes_exactly_the_trainable_parameters(tmp_path, method, monkeypatch):
    from instill.train import setup

    captured = {}
    original = setup.apply_method

    def spy(model, cfg, new_ids=None):
        wrapped = original(model, cfg, new_ids)
        captured["model"] = wrapped
        captured["before"] = {n: p.detach().clone() for n, p in wrapped.named_parameters()}
        return wrapped

    monkeypatch.setattr(setup, "apply_method", spy)
    # LoRA's B starts at zero, so A's first gradient is exactly zero (dL/dA = B^T ...): A can
    # only move from the second step on. Every other method is checked after one step.
    steps = 2 if method in ("lora", "qlora") else 1
    raw = make_config(
        tmp_path, method=method, max_steps=steps, batch_size=8, freeze={"last_n_layers": 1}
    )
    run(raw)
    model, before = captured["model"], captured["before"]
    changed, frozen_changed, trainable = [], [], 0
    for name, p in model.named_parameters():
        same = torch.equal(before[name], p.detach().to(before[name].dtype))
        if p.requires_grad:
            trainable += 1
            if same:
                changed.append(name)
        elif not same:
            frozen_changed.append(name)
    assert trainable > 0
    assert changed == [], f"trainable parameters that did not change: {changed[:5]}"
    assert frozen_changed == [], f"frozen parameters that changed: {frozen_changed[:5]}"
    if method == "freeze":
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        assert all(".layers.1." in n or n.endswith("norm.weight") for n in names)
    if method in ("lora", "qlora"):
        assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    if method == "qlora":
        import bitsandbytes as bnb

        four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert len(four_bit) == 14  # every linear layer of the 2 blocks, not the LM head
        assert all(m.weight.dtype == torch.uint8 for m in four_bit)


def _step_metrics(tmp_path, name, **train):
    raw = make_config(tmp_path / name, max_steps=3, max_grad_norm=None, **train)
    # float64: the host's summation order (AMX, AVX512, threads) cannot hide in rounding, so the
    # tolerances below are ~1e6 times tighter than what a wrong normalisation changes.
    raw["model"]["dtype"] = "float64"
    result = run(raw)
    weights = load_file(str(tmp_path / name / "run" / "final" / "model.safetensors"))
    return result, weights


def _assert_same_training(reference, others) -> None:
    a, wa = reference
    for other, wo in others:
        assert other.losses == pytest.approx(a.losses, rel=1e-9)
        assert other.grad_norms == pytest.approx(a.grad_norms, rel=1e-9)
        for name in wa:
            assert wo[name].dtype == torch.float64
            torch.testing.assert_close(wo[name], wa[name], rtol=1e-9, atol=1e-11)


def test_batch_8_equals_batch_1_times_accumulation_8(tmp_path):
    a = _step_metrics(tmp_path, "b8", batch_size=8, grad_accum=1)
    b = _step_metrics(tmp_path, "b1", batch_size=1, grad_accum=8)
    c = _step_metrics(tmp_path, "b2", batch_size=2, grad_accum=4)
    _assert_same_training(a, [b, c])


def test_a_per_micro_batch_normaliser_breaks_the_invariant(tmp_path, monkeypatch):
    """The invariant test has the power to catch the classic accumulation bug."""
    from instill.train import sft

    original = sft.SupervisedLoss.forward

    def mean_per_micro_batch(self, input_ids, labels, **kw):
        loss, extra = original(self, input_ids, labels, **kw)
        n = max(int((labels[:, 1:] != -100).sum()), 1)
        return loss / n * 100.0, extra  # each micro-batch's mean, not the step's

    monkeypatch.setattr(sft.SupervisedLoss, "forward", mean_per_micro_batch)
    a = _step_metrics(tmp_path, "b8", batch_size=8, grad_accum=1)
    b = _step_metrics(tmp_path, "b1", batch_size=1, grad_accum=8)
    with pytest.raises(AssertionError):
        _assert_same_training(a, [b])


def test_packed_and_padded_batches_give_the_same_loss(tmp_path):
    # One step over every row: the mean token loss and its gradient cannot depend on layout.
    packed = run(make_config(tmp_path / "p", max_steps=1, batch_size=64, max_grad_norm=None))
    raw = make_config(tmp_path / "u", max_steps=1, batch_size=64, max_grad_norm=None)
    raw["data"]["packing"] = False
    padded = run(raw)
    assert packed.losses[0] == pytest.approx(padded.losses[0], rel=1e-5)
    assert packed.grad_norms[0] == pytest.approx(padded.grad_norms[0], rel=1e-4)


def test_final_full_model_loads_with_transformers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    result = run(make_config(tmp_path))
    final = result.final_dir
    model = AutoModelForCausalLM.from_pretrained(str(final))
    tok = AutoTokenizer.from_pretrained(str(final))
    gen = GenerationConfig.from_pretrained(str(final))
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert eot in eos
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    ids = tok("hello", return_tensors="pt").input_ids
    assert torch.isfinite(model(ids).logits).all()
    info = json.loads((final / "instill.json").read_text())
    assert info["end_of_turn"] == "<|im_end|>" and info["steps"] == 2


def test_final_lora_adapter_loads_with_plain_peft(tmp_path):
    from peft import PeftModel

    from instill.models.tiny import build_tiny_model

    result = run(make_config(tmp_path, method="lora", lr=1e-2))
    final = result.final_dir
    assert (final / "adapter_model.safetensors").is_file()
    base = build_tiny_model("tiny-random-qwen")
    tuned = PeftModel.from_pretrained(base, str(final))
    ids = torch.tensor([[1, 2, 3, 4]])
    plain = build_tiny_model("tiny-random-qwen")
    with torch.no_grad():
        assert not torch.allclose(tuned(ids).logits, plain(ids).logits)


def test_metrics_and_validation_are_logged(tmp_path):
    raw = make_config(
        tmp_path,
        max_steps=4,
        eval_every=2,
        sample_prompts=["Repeat the number 3 twice."],
        sample_max_new_tokens=4,
    )
    raw["train"]["logging"] = {"tensorboard": True}
    raw["data"]["val_fraction"] = 0.25
    result = run(raw)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_steps = [x["step"] for x in lines if "train/loss" in x]
    assert train_steps == [1, 2, 3, 4]
    assert [x["step"] for x in lines if "val/loss" in x] == [2, 4, 4]
    assert any("samples/0" in x for x in lines)
    assert len(result.val_losses) == 3 and all(math.isfinite(v) for v in result.val_losses)
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_checkpoints_are_kept_and_resume_continues(tmp_path):
    raw = make_config(tmp_path, max_steps=6, save_every=2, keep_last=2)
    full = run(raw)
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-000004", "step-000006"]
    # Resume from step 4 into a fresh run dir copy: the last two steps are replayed exactly.
    import shutil

    again = tmp_path / "again"
    shutil.copytree(tmp_path / "run", again / "run")
    shutil.rmtree(again / "run" / "final")
    raw2 = _deep(raw, train={})
    raw2["output_dir"] = str(again / "run")
    resumed = run(raw2, resume=str(again / "run" / "checkpoints" / "step-000004"))
    assert resumed.losses == pytest.approx(full.losses[4:], rel=1e-6)
    a = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    b = load_file(str(again / "run" / "final" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from instill.train import sft

    original = sft.SupervisedLoss.forward
    calls = {"n": 0}

    def poisoned(self, *a, **kw):
        calls["n"] += 1
        total, n = original(self, *a, **kw)
        return (total * float("nan"), n) if calls["n"] > 2 else (total, n)

    monkeypatch.setattr(sft.SupervisedLoss, "forward", poisoned)
    raw = make_config(tmp_path, max_steps=5, save_every=1, batch_size=8)
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at step 3; stopping"):
        run(raw)
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-000001", "step-000002"]


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, monkeypatch):
    raw = make_config(tmp_path / "ref", max_steps=5)
    reference = run(raw)

    from instill.train import sft

    original = sft.SupervisedLoss.forward
    calls = {"n": 0}

    def interrupted(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # during step 3 (one micro-batch per step)
            raise KeyboardInterrupt
        return original(self, *a, **kw)

    raw = make_config(tmp_path / "cut", max_steps=5)
    monkeypatch.setattr(sft.SupervisedLoss, "forward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(raw)
    monkeypatch.setattr(sft.SupervisedLoss, "forward", original)
    saved = sorted(p.name for p in (tmp_path / "cut" / "run" / "checkpoints").iterdir())
    assert len(saved) == 1
    resumed = run(raw, resume=True)
    assert resumed.losses == pytest.approx(reference.losses[-len(resumed.losses) :], rel=1e-6)
    a = load_file(str(tmp_path / "ref" / "run" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "run" / "final" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(InstillError, match="no checkpoint in"):
        run(make_config(tmp_path), resume=True)


def _cli(args: list[str], **kw):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "instill.cli", *args], **kw)


def _metric(run_dir: Path, key: str) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x[key] for x in lines if key in x]


def test_two_processes_with_batch_4_equal_one_with_batch_8(tmp_path):
    import subprocess
    import sys

    import yaml

    raw = make_config(tmp_path, max_steps=3, batch_size=4, max_grad_norm=None)
    # float64, as the single-process invariants: in fp32, AdamW's first steps turn the ranks'
    # other summation order into relative weight differences of ~1e-4 on near-zero gradients.
    raw["model"]["dtype"] = "float64"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    accelerate = Path(sys.executable).with_name("accelerate")
    # On a machine without GPUs, `--multi_gpu` makes accelerate start torch.distributed.run;
    # the Accelerator then runs MULTI_CPU over gloo (`--cpu` alone starts one process).
    two = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "29561",
            "-m",
            "instill.cli",
            "train",
            str(cfg),
            f"output_dir={tmp_path / 'two'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "3 steps of 8 rows" in two.stdout  # 2 ranks x 4 rows
    one = _cli(
        ["train", str(cfg), "train.batch_size=8", f"output_dir={tmp_path / 'one'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = one.communicate(timeout=600)
    assert one.returncode == 0, err[-3000:]
    assert _metric(tmp_path / "two", "train/loss") == pytest.approx(
        _metric(tmp_path / "one", "train/loss"), rel=1e-9
    )
    assert _metric(tmp_path / "two", "train/grad_norm") == pytest.approx(
        _metric(tmp_path / "one", "train/grad_norm"), rel=1e-9
    )
    a = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "final" / "model.safetensors"))
    for name in a:
        assert b[name].dtype == torch.float64
        torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-11)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    import signal
    import subprocess
    import time

    import yaml

    raw = make_config(tmp_path, max_steps=150, save_every=2, keep_last=2, batch_size=4)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    killed_dir = tmp_path / "killed"
    proc = _cli(
        ["train", str(cfg), f"output_dir={killed_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = killed_dir / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline:
        if ckpts.is_dir() and any(p.name >= "step-000004" for p in ckpts.iterdir()):
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "final").exists()  # it really died mid-training
    resumed = _cli(
        ["train", str(cfg), f"output_dir={killed_dir}", "--resume"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed from" in out
    clean = _cli(
        ["train", str(cfg), f"output_dir={tmp_path / 'clean'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err[-3000:]
    a = load_file(str(tmp_path / "clean" / "final" / "model.safetensors"))
    b = load_file(str(killed_dir / "final" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)
    assert _metric(killed_dir, "train/loss")[-1] == _metric(tmp_path / "clean", "train/loss")[-1]


@pytest.mark.slow
def test_lora_on_smollm2_finishes_and_loads_with_plain_peft(tmp_path, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instill.config import load_config
    from instill.models.registry import resolve_model_source
    from instill.models.tokenizer_loading import gguf_cache_dir

    monkeypatch.chdir(ROOT)
    cfg = load_config(
        ROOT / "configs" / "lora.yaml",
        [
            "train.max_steps=6",
            "train.batch_size=4",
            f"output_dir={tmp_path / 'run'}",
            "train.logging.tensorboard=false",
        ],
    )
    result = train(cfg)
    assert result.state.step == 6 and all(math.isfinite(x) for x in result.losses)
    assert result.val_losses and math.isfinite(result.val_losses[-1])
    base_dir = gguf_cache_dir(resolve_model_source("smollm2-135m-instruct").ref) / "model"
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    tuned = PeftModel.from_pretrained(base, str(result.final_dir))
    tok = AutoTokenizer.from_pretrained(str(result.final_dir))
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Reverse the word: cat"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = tuned.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids.shape[1]


# ------------------------------------------------------------------ template turn tokens
# A base model has its chat template's turn markers in the vocabulary but never trained them
# (Gemma 3 270M base: <end_of_turn> is cosine 0.995 to unused tokens), so LoRA alone cannot learn
# to stop. With a template that is not the tokenizer's own, their embedding rows train too.


def _turn_token_run(tmp_path: Path, method: str, template: str, monkeypatch, **train):
    from instill.train import setup

    captured = {}
    original = setup.apply_method

    def spy(model, cfg, token_ids=None):
        captured["token_ids"] = token_ids
        captured["in"] = model.get_input_embeddings().weight.detach().float().clone()
        captured["out"] = model.get_output_embeddings().weight.detach().float().clone()
        return original(model, cfg, token_ids)

    monkeypatch.setattr(setup, "apply_method", spy)
    raw = make_config(
        tmp_path, model="tiny-random-gemma", method=method, max_steps=3, batch_size=8, **train
    )
    raw["data"]["template"] = template
    result = run(raw)
    return result, captured


@pytest.mark.parametrize("method", ["lora", "freeze"])
def test_a_new_template_trains_exactly_its_turn_token_rows(tmp_path, method, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, captured = _turn_token_run(
        tmp_path, method, "gemma", monkeypatch, freeze={"last_n_layers": 1}
    )
    tok = AutoTokenizer.from_pretrained(result.final_dir)
    markers = tok.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"])
    assert captured["token_ids"] == sorted(markers)
    assert "turn tokens too: <start_of_turn>, <end_of_turn>" in capsys.readouterr().out
    if method == "lora":
        from peft import PeftModel

        from instill.models.tiny import build_tiny_model

        base = build_tiny_model("tiny-random-gemma")
        before = {
            "in": base.get_input_embeddings().weight.detach().float().clone(),
            "out": base.get_output_embeddings().weight.detach().float().clone(),
        }
        model = PeftModel.from_pretrained(base, result.final_dir).merge_and_unload()
    else:
        before = captured
        model = AutoModelForCausalLM.from_pretrained(result.final_dir, dtype=torch.float32)
    # The tiny models are untied: the output projection's end-of-turn row (the logit that must
    # learn to win) trains as well as the input row, and no other row of either moves.
    after = {
        "in": model.get_input_embeddings().weight.detach().float(),
        "out": model.get_output_embeddings().weight.detach().float(),
    }
    for key in ("in", "out"):
        rows = before[key].shape[0]
        moved = [i for i in range(rows) if not torch.equal(before[key][i], after[key][i])]
        assert moved == sorted(markers), key


def test_turn_tokens_stay_frozen_with_the_tokenizers_own_template_or_when_disabled(
    tmp_path, monkeypatch
):
    _, own = _turn_token_run(tmp_path / "own", "lora", "tokenizer", monkeypatch)
    assert own["token_ids"] == []
    _, off = _turn_token_run(
        tmp_path / "off", "lora", "gemma", monkeypatch, train_template_tokens=False
    )
    assert off["token_ids"] == []
    _, forced = _turn_token_run(
        tmp_path / "on", "lora", "tokenizer", monkeypatch, train_template_tokens=True
    )
    assert len(forced["token_ids"]) == 2


@pytest.mark.parametrize(
    ("model", "template", "expected"),
    [
        ("tiny-random-gemma", "gemma", ["<start_of_turn>", "<end_of_turn>"]),
        ("tiny-random-qwen", "tokenizer", ["<|im_start|>", "<|im_end|>"]),
        ("tiny-random-llama", "alpaca", ["</s>"]),
    ],
)
def test_template_marker_tokens_are_found_by_rendering(model, template, expected):
    from instill.data.templates import chat_template_source, get_template, prepare_tokenizer
    from instill.models.tiny import build_tiny_tokenizer
    from instill.train.setup import template_marker_tokens

    tok = build_tiny_tokenizer(model)
    chosen = get_template(template, tok)
    prepare_tokenizer(tok, chosen)
    tok.chat_template = chat_template_source(chosen)
    assert template_marker_tokens(tok, chosen.end_of_turn) == expected


def test_bf16_lora_without_peft_input_casts_gives_identical_losses(tmp_path, monkeypatch):
    from instill.train import setup

    changed = []
    real = setup.disable_adapter_input_casts

    def counting(model):
        changed.append(real(model))
        return changed[-1]

    raw = make_config(tmp_path / "fast", method="lora", max_steps=3, lr=1e-2)
    raw["model"]["dtype"] = "bfloat16"
    monkeypatch.setattr(setup, "disable_adapter_input_casts", counting)
    fast = run(raw)
    assert changed == [14]  # every LoRA layer of the 2 blocks
    monkeypatch.setattr(setup, "disable_adapter_input_casts", lambda model: 0)
    raw["output_dir"] = str(tmp_path / "cast" / "run")
    cast = run(raw)
    assert fast.losses == cast.losses
    assert fast.grad_norms == cast.grad_norms
