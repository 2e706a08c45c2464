"""The inference bundle: one loader and one saver for every model instill uses."""

import json

import pytest
import torch

from instill.config import validate_config
from instill.data.conversation import Message
from instill.generate.engine import Generator, SamplingConfig
from instill.models.bundle import load_bundle, save_bundle, stop_token_ids
from instill.train.loop import train
from tests.test_train import make_config


def _logits(bundle, text="Repeat the number 3 twice."):
    ids = bundle.renderer.encode_prompt([Message("user", text)])
    with torch.no_grad():
        return bundle.model(input_ids=torch.tensor([ids])).logits[0].float()


@pytest.fixture(scope="module")
def full_final(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    return train(validate_config(make_config(tmp, max_steps=2))).final_dir


def test_a_full_fine_tune_loads_with_its_training_template_and_stop_ids(full_final):
    bundle = load_bundle(str(full_final), dtype=torch.float32)
    info = json.loads((full_final / "instill.json").read_text())
    tok = bundle.tokenizer
    assert bundle.renderer.template.end_of_turn == info["end_of_turn"] == "<|im_end|>"
    assert bundle.stop_ids == [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    gen = json.loads((full_final / "generation_config.json").read_text())
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    assert eos == bundle.stop_ids
    assert bundle.info["steps"] == 2 and bundle.info["method"] == "full"


def test_save_bundle_round_trips_weights_template_and_stops(full_final, tmp_path):
    bundle = load_bundle(str(full_final), dtype=torch.float32)
    saved = save_bundle(tmp_path / "copy", bundle, {"base_model": "tiny-random-qwen"})
    again = load_bundle(str(saved), dtype=torch.float32)
    assert again.stop_ids == bundle.stop_ids
    assert again.renderer.template.end_of_turn == bundle.renderer.template.end_of_turn
    torch.testing.assert_close(_logits(again), _logits(bundle), rtol=0, atol=0)
    convs = [[Message("user", "Count to three")], [Message("user", "Hi")]]
    sampling = SamplingConfig(max_new_tokens=8)
    a = Generator.for_bundle(bundle).generate(convs, sampling)
    b = Generator.for_bundle(again).generate(convs, sampling)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]


def test_a_failed_save_leaves_the_previous_bundle(full_final, tmp_path, monkeypatch):
    bundle = load_bundle(str(full_final), dtype=torch.float32)
    target = save_bundle(tmp_path / "out", bundle, {"round": 1})

    def broken(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(type(bundle.tokenizer), "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(target, bundle, {"round": 2})
    assert json.loads((target / "instill.json").read_text())["round"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left


def test_a_lora_final_merges_to_the_same_logits_as_unmerged(tmp_path):
    final = train(validate_config(make_config(tmp_path, method="lora", max_steps=2))).final_dir
    merged = load_bundle(str(final), dtype=torch.float32)
    unmerged = load_bundle(str(final), dtype=torch.float32, merge_adapter=False)
    assert hasattr(unmerged.model, "peft_config") and not hasattr(merged.model, "peft_config")
    # fp32 merge: W + BA rounds once per weight (~1e-7 relative); logits of a 2-layer model.
    torch.testing.assert_close(_logits(merged), _logits(unmerged), rtol=1e-4, atol=1e-4)
    assert merged.stop_ids == unmerged.stop_ids


def test_stop_ids_never_include_an_end_of_turn_marker_missing_from_the_vocabulary():
    vocab = {"<unk>": 0, "</s>": 2, "<eot>": 7}

    class Tok:
        unk_token_id = 0
        eos_token_id = 2

        def convert_tokens_to_ids(self, token):
            return vocab.get(token, 0)

        def convert_ids_to_tokens(self, i):
            return {v: k for k, v in vocab.items()}[i]

    class Template:
        end_of_turn = "<eot>"

    assert stop_token_ids(Tok(), Template()) == [7, 2]
    Template.end_of_turn = "<missing>"
    assert stop_token_ids(Tok(), Template()) == [2]
