"""`instill merge` and `instill adapters`: merged == unmerged, combined == the weighted updates."""

import json
from pathlib import Path

import pytest
import torch

from instill import cli
from instill.config import validate_config
from instill.data.conversation import Message
from instill.errors import InstillError
from instill.models.adapter_ops import combine_adapters, inspect_adapter, list_adapters
from instill.models.bundle import load_bundle
from instill.models.export import PROBE_PROMPTS, MergeCheckError, merge_adapter
from instill.train.loop import train
from tests.test_train import make_config

# fp32: W + s*BA rounds once per weight (relative 2^-24); over two layers and a 512-wide vocab
# the logits of these random models stay within 1e-4 of the unmerged computation.
FP32_LOGITS = 1e-4


def _train(tmp_path, model, method, seed=0, lr=1e-2, **train_kw):
    raw = make_config(tmp_path, model=model, method=method, max_steps=3, lr=lr, **train_kw)
    raw["seed"] = seed
    return train(validate_config(raw)).final_dir


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """LoRA on Qwen; DoRA + rsLoRA with trained token rows on Llama; QLoRA on Gemma."""
    made = {}
    for key, model, method, extra in [
        ("lora", "tiny-random-qwen", "lora", {}),
        ("dora", "tiny-random-llama", "lora", {"lora": {"dora": True, "rslora": True}}),
        ("qlora", "tiny-random-gemma", "qlora", {}),
    ]:
        made[key] = _train(tmp_path_factory.mktemp(key), model, method, **extra)
    return made


def _logits(model, ids):
    x = ids if isinstance(ids, torch.Tensor) else torch.tensor([ids])
    with torch.no_grad():
        return model(input_ids=x).logits.float()  # [batch, seq, vocab]


def _probe_ids(bundle, text=PROBE_PROMPTS[0]):
    return bundle.renderer.encode_prompt([Message("user", text)])


@pytest.mark.parametrize("key", ["lora", "dora", "qlora"])
def test_merged_model_equals_the_unmerged_adapter_and_loads_with_plain_transformers(
    adapters, key, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = adapters[key]
    probes = list(PROBE_PROMPTS[:4])
    report = merge_adapter(
        final, tmp_path / "merged", dtype="float32", prompts=probes, max_new_tokens=8
    )
    assert report.check.max_abs_logit_delta < FP32_LOGITS
    assert report.check.greedy_agreement >= 0.99
    assert report.check.answer_tokens == 8 * len(probes)  # every probe answered
    unmerged = load_bundle(str(final), dtype=torch.float32, merge_adapter=False)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    assert not hasattr(plain, "peft_config")
    ids = _probe_ids(unmerged)
    torch.testing.assert_close(
        _logits(plain, ids), _logits(unmerged.model, ids), rtol=0, atol=FP32_LOGITS
    )
    # The tokenizer, its chat template and the stop ids travel with the merged model.
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tok.chat_template
    gen = json.loads((tmp_path / "merged" / "generation_config.json").read_text())
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    eot = tok.convert_tokens_to_ids(unmerged.renderer.template.end_of_turn)
    assert eot in eos and eos == unmerged.stop_ids
    info = json.loads((tmp_path / "merged" / "instill.json").read_text())
    assert info["merged_from"]["method"] == ("qlora" if key == "qlora" else "lora")
    assert info["merge_check"]["greedy_agreement"] == report.check.greedy_agreement


def test_trained_token_rows_are_merged(adapters, tmp_path):
    """The DoRA run trains the rows of the turn tokens it added: merged rows equal PEFT's."""
    final = adapters["dora"]
    assert inspect_adapter(final).trained_tokens["embed_tokens"] == [512, 513, 514]
    merge_adapter(final, tmp_path / "merged", dtype="float32", prompts=["Hi"], max_new_tokens=2)
    merged = load_bundle(str(tmp_path / "merged"), dtype=torch.float32)
    base = load_bundle("tiny-random-llama", dtype=torch.float32)
    rows = merged.model.get_input_embeddings().weight[512:515]
    unmerged = load_bundle(str(final), dtype=torch.float32, merge_adapter=False)
    wrapper = unmerged.model.get_input_embeddings()
    trained = wrapper.token_adapter.trainable_tokens_delta["default"]
    torch.testing.assert_close(rows, trained, rtol=0, atol=0)
    untrained = base.model.get_input_embeddings().weight[512:515]  # added, mean-filled rows
    assert (rows - untrained).abs().max() > 1e-3


def test_qlora_merges_into_the_dequantized_base_it_was_trained_on(adapters, tmp_path):
    """Merged QLoRA weights are dequant(NF4(W)) + the update; the full-precision W is wrong."""
    import bitsandbytes as bnb
    from peft import PeftModel

    from instill.models.load import load_model, quantize_linear_4bit

    final = adapters["qlora"]
    merge_adapter(final, tmp_path / "merged", dtype="float32", max_new_tokens=8)
    merged = load_bundle(str(tmp_path / "merged"), dtype=torch.float32)
    four_bit = load_model("tiny-random-gemma", dtype=torch.float32)
    quantize_linear_4bit(four_bit, torch.float32)
    trained = PeftModel.from_pretrained(four_bit, str(final))  # the model training computed
    layer = trained.base_model.model.model.layers[0].self_attn.q_proj
    nf4 = layer.base_layer.weight
    expected = bnb.functional.dequantize_4bit(nf4.data, nf4.quant_state) + layer.get_delta_weight(
        "default"
    )
    got = merged.model.model.layers[0].self_attn.q_proj.weight
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)  # one fp32 addition apart

    naive = PeftModel.from_pretrained(load_model("tiny-random-gemma", dtype=torch.float32), final)
    x = torch.randint(0, 300, (4, 30))
    # bitsandbytes' CPU 4-bit kernel rounds its products (bf16-like, ~1%), so the 4-bit model
    # is matched to that precision; skipping the NF4 rounding of W costs far more.
    near = (_logits(merged.model, x) - _logits(trained, x)).abs().max()
    far = (_logits(naive, x) - _logits(trained, x)).abs().max()
    assert near < far / 5


def test_a_merge_that_changes_answers_is_refused_and_writes_nothing(
    adapters, tmp_path, monkeypatch
):
    from peft.tuners.lora import LoraModel

    original = LoraModel.merge_and_unload

    def broken(self, *a, **kw):
        model = original(self, *a, **kw)
        with torch.no_grad():  # a merge that lost the sign of the output layer
            model.get_output_embeddings().weight.neg_()
        return model

    monkeypatch.setattr(LoraModel, "merge_and_unload", broken)
    with pytest.raises(MergeCheckError, match=r"greedy tokens.*nothing was written"):
        merge_adapter(adapters["lora"], tmp_path / "merged", dtype="float32")
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_what_is_not_an_adapter_and_a_base_that_does_not_fit(adapters, tmp_path):
    merged = merge_adapter(adapters["lora"], tmp_path / "merged", dtype="float32").out
    with pytest.raises(InstillError, match=r"nothing to merge.*already a full model"):
        merge_adapter(merged, tmp_path / "again")
    with pytest.raises(
        InstillError, match=r"trained on base 'tiny-random-qwen'.*not on 'tiny-random-gemma'"
    ):
        merge_adapter(adapters["lora"], tmp_path / "x", base="tiny-random-gemma")
    with pytest.raises(InstillError, match="--dtype must be one of"):
        merge_adapter(adapters["lora"], tmp_path / "x", dtype="int8")


def test_an_adapter_whose_base_is_gone_says_to_pass_base(adapters, tmp_path):
    import shutil

    moved = tmp_path / "adapter"
    shutil.copytree(adapters["lora"], moved)
    info = json.loads((moved / "instill.json").read_text())
    (moved / "instill.json").write_text(json.dumps({**info, "base_model": str(tmp_path / "gone")}))
    with pytest.raises(InstillError, match=r"cannot load the base model it names.*pass --base"):
        merge_adapter(moved, tmp_path / "merged")
    report = merge_adapter(moved, tmp_path / "merged", base="tiny-random-qwen", dtype="float32")
    assert report.base == "tiny-random-qwen" and report.check.greedy_agreement >= 0.99


def test_bf16_merge_reports_the_rounding_it_costs(adapters, tmp_path):
    report = merge_adapter(adapters["lora"], tmp_path / "merged", dtype="bfloat16")
    assert report.dtype == "bfloat16"
    # bf16 keeps 8 mantissa bits: logits move by ~1e-2, far above fp32's merge error.
    assert FP32_LOGITS < report.check.max_abs_logit_delta < 1.0
    # The weights are stored in bf16; loading them picks the host's default compute dtype
    # (bf16 where the CPU has native bf16, else fp32), as for any model.
    from instill.models.load import cpu_has_native_bf16

    saved = json.loads((Path(report.out) / "config.json").read_text())
    assert (saved.get("dtype") or saved.get("torch_dtype")) == "bfloat16"
    plain = load_bundle(report.out)
    assert plain.model.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert load_bundle(report.out, dtype=torch.bfloat16).model.dtype == torch.bfloat16


# --------------------------------------------------------------------------- adapters


@pytest.fixture(scope="module")
def two_llama(tmp_path_factory):
    """Two LoRA adapters of one base with different data orders and learning rates."""
    return [
        _train(tmp_path_factory.mktemp(f"llama{i}"), "tiny-random-llama", "lora", i, lr)
        for i, lr in enumerate([1e-2, 3e-3])
    ]


def _state(path):
    return load_bundle(str(path), dtype=torch.float32).model.state_dict()


def test_cat_combination_is_exactly_the_weighted_sum_of_the_updates(two_llama, tmp_path):
    from instill.models.load import load_model, resize_embeddings_for_tokenizer

    report = combine_adapters(two_llama, tmp_path / "comb", weights=[0.7, 0.3], method="cat")
    assert report.r == 32  # r 16 + 16
    a, b, c = (_state(p) for p in (*two_llama, tmp_path / "comb"))
    tokenizer = load_bundle(str(two_llama[0]), dtype=torch.float32).tokenizer
    base = load_model("tiny-random-llama", dtype=torch.float32, vocab_size=len(tokenizer))
    resize_embeddings_for_tokenizer(base, tokenizer)
    s0 = base.state_dict()
    moved_rows = (a["model.embed_tokens.weight"] - s0["model.embed_tokens.weight"]).abs().max()
    assert moved_rows > 1e-3  # the turn-token rows trained, so combining them is tested
    for k in c:
        expected = s0[k] + 0.7 * (a[k] - s0[k]) + 0.3 * (b[k] - s0[k])
        torch.testing.assert_close(c[k], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["linear", "ties", "dare"])
def test_other_methods_write_a_loadable_adapter_with_the_trained_tokens(
    two_llama, tmp_path, method
):
    report = combine_adapters(two_llama, tmp_path / method, method=method, density=0.5)
    info = inspect_adapter(report.out)
    assert info.base == "tiny-random-llama" and info.r == 16
    assert info.trained_tokens == inspect_adapter(two_llama[0]).trained_tokens
    bundle = load_bundle(report.out, dtype=torch.float32)
    assert torch.isfinite(_logits(bundle.model, _probe_ids(bundle))).all()
    meta = json.loads((tmp_path / method / "instill.json").read_text())
    assert meta["combined_from"]["method"] == method


def test_combine_refuses_mixed_bases_dora_and_bad_arguments(two_llama, adapters, tmp_path):
    with pytest.raises(InstillError, match="trained on base 'tiny-random-qwen', not "):
        combine_adapters([two_llama[0], adapters["lora"]], tmp_path / "x")
    with pytest.raises(InstillError, match="DoRA adapter"):
        combine_adapters([two_llama[0], adapters["dora"]], tmp_path / "x")
    with pytest.raises(InstillError, match="--method must be one of"):
        combine_adapters(two_llama, tmp_path / "x", method="average")
    with pytest.raises(InstillError, match="--weights has 3 values for 2 adapters"):
        combine_adapters(two_llama, tmp_path / "x", weights=[1, 1, 1])
    with pytest.raises(InstillError, match="at least two adapters"):
        combine_adapters(two_llama[:1], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_adapters_ls_lists_every_adapter_and_refuses_another_base(
    two_llama, adapters, tmp_path, capsys
):
    root = two_llama[0].parents[2]  # <tmp>/llama0 holds one run; list across both fixtures
    found = list_adapters(root.parent)
    paths = {f.path for f in found}
    assert {str(p) for p in two_llama} <= paths and str(adapters["dora"]) in paths
    assert cli.main(["adapters", "ls", str(two_llama[0].parent), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [x["base"] for x in listed] == ["tiny-random-llama"] and listed[0]["r"] == 16
    assert cli.main(["adapters", "ls", str(root.parent), "--base", "tiny-random-llama"]) == 2
    assert "not 'tiny-random-llama'" in capsys.readouterr().err


def test_cli_merge_and_combine_with_an_eval_report(two_llama, tmp_path, capsys):
    assert (
        cli.main(["merge", str(two_llama[0]), "--out", str(tmp_path / "m"), "--dtype", "float32"])
        == 0
    )
    out = capsys.readouterr().out
    assert "greedy-token agreement" in out and (tmp_path / "m" / "config.json").is_file()

    tasks = tmp_path / "tasks.jsonl"
    rows = [
        {"prompt": "Repeat: hi", "completion": "hi"},
        {"prompt": "Say yes", "completion": "yes"},
    ]
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["adapters", "combine", *map(str, two_llama), "--out", str(tmp_path / "c")]
    assert cli.main([*argv, "--task", str(tasks), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "c" / "report" / "report.json").read_text())
    models = report["comparison"]["models"]
    assert models[-1] == "combined" and len(models) == 3
    assert sum(1 for r in report["comparison"]["rows"] if r["level"] == "task") == 1
    assert "combined" in out
    # No tasks recorded and none given: a clear error, no adapter written.
    assert cli.main([*argv[:-1], str(tmp_path / "d")]) == 2
    assert "pass --task" in capsys.readouterr().err and not (tmp_path / "d").exists()
