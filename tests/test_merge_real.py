"""The embedded default end to end (slow): LoRA-tune Gemma 3 270M base as the quickstart does,
merge the adapter (bf16, checked), export the merged model to GGUF and load that file back:
the same greedy answers at every step."""

import pytest
import torch

from instill.config import validate_config
from instill.data.conversation import Message
from instill.generate.engine import Generator, SamplingConfig
from instill.models.bundle import load_bundle
from instill.models.export import merge_adapter
from instill.train.loop import train
from tests.test_train import make_config

pytestmark = pytest.mark.slow

PROMPTS = ["Reverse the word: garden", "List three colors.", "What is 2 plus 3?"]


def _answers(bundle) -> list[list[int]]:
    gens = Generator.for_bundle(bundle).generate(
        [[Message("user", p)] for p in PROMPTS], SamplingConfig(max_new_tokens=16, batch_size=3)
    )
    return [g.token_ids for g in gens]


def test_gemma_lora_merges_exports_to_gguf_and_answers_the_same(tmp_path):
    from instill.models.gguf_export import export_gguf

    raw = make_config(
        tmp_path,
        model="gemma-3-270m",
        method="lora",
        max_steps=2,
        batch_size=2,
        lora={"r": 16, "alpha": 32, "targets": "all-linear"},
    )
    raw["model"]["dtype"] = "bfloat16"
    final = train(validate_config(raw)).final_dir

    # auto: bf16, as the base trained; a few probes keep this slow test short.
    report = merge_adapter(final, tmp_path / "merged", prompts=PROMPTS, max_new_tokens=12)
    assert report.dtype == "bfloat16" and report.check.greedy_agreement >= 0.99
    merged = load_bundle(str(tmp_path / "merged"), dtype=torch.bfloat16)
    eot = merged.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert merged.stop_ids[0] == eot

    # The built-in round trip is tested on the real Gemma in test_gguf_export; here the file is
    # loaded back the way users load it and must answer exactly as the merged model.
    export_gguf(tmp_path / "merged", tmp_path / "tuned.gguf", quant_type="bf16", check=False)
    again = load_bundle(str(tmp_path / "tuned.gguf"), dtype=torch.bfloat16)
    assert again.stop_ids[0] == eot  # the GGUF's EOS is the end-of-turn token
    assert again.renderer.encode_prompt([Message("user", PROMPTS[0])]) == (
        merged.renderer.encode_prompt([Message("user", PROMPTS[0])])
    )
    assert _answers(again) == _answers(merged)
