"""Model loading: compute dtype, attention choice, safetensors-only loads, the GGUF cache, resizing.

The fast tests use the 2-layer tiny models; the GGUF cache is exercised with a stand-in converter.
One slow test dequantises both real GGUF models into a temporary cache and checks that the
weights are right (finite logits, SmolLM2 answers "Paris").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from instill.errors import InstillError
from instill.models import load
from instill.models.load import (
    ModelLoadError,
    choose_attn_implementation,
    cpu_has_native_bf16,
    describe_compute,
    detect_compute_dtype,
    load_model,
    resize_embeddings_for_tokenizer,
)
from instill.models.tiny import TINY_NAMES, build_tiny_model, build_tiny_tokenizer
from instill.models.tokenizer_loading import PROVENANCE_FILE, gguf_cache_dir

X86_AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile\n"
X86_AVX512_BF16 = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
X86_PLAIN = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n\nflags\t\t: fpu avx2\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
ARM_PLAIN = "processor\t: 0\nFeatures\t: fp asimd crc32\n"


def _ids(n: int = 8) -> torch.Tensor:
    return torch.arange(3, 3 + n).unsqueeze(0)  # [1, n]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- compute dtype -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        (X86_AMX, True),
        (X86_AVX512_BF16, True),
        (X86_PLAIN, False),
        (ARM_BF16, True),
        (ARM_PLAIN, False),
        ("", False),  # no /proc/cpuinfo (macOS, Windows)
    ],
)
def test_cpu_bf16_detection_reads_cpu_flags(monkeypatch, cpuinfo, native):
    monkeypatch.setattr(load, "_read_cpuinfo", lambda: cpuinfo)
    assert cpu_has_native_bf16() is native
    expected = torch.bfloat16 if native else torch.float32
    assert detect_compute_dtype("cpu") == expected
    assert detect_compute_dtype(torch.device("cpu")) == expected


def test_compute_line_says_when_a_cpu_lacks_native_bf16(monkeypatch):
    monkeypatch.setattr(load, "_read_cpuinfo", lambda: X86_PLAIN)
    line = describe_compute(detect_compute_dtype("cpu"), "cpu")
    assert line.startswith("float32 on cpu (this CPU has no native bf16")
    assert "AVX-512 bf16 nor AMX" in line and "GPU" in line
    # bf16 asked for explicitly on such a CPU: emulated, said so
    assert describe_compute(torch.bfloat16, "cpu") == (
        "bfloat16 on cpu (emulated on this CPU: far slower than float32)"
    )
    monkeypatch.setattr(load, "_read_cpuinfo", lambda: X86_AVX512_BF16)
    assert describe_compute(detect_compute_dtype("cpu"), "cpu") == (
        "bfloat16 on cpu (native on this CPU)"
    )
    assert describe_compute(torch.float32, "cpu") == "float32 on cpu"  # chosen, not forced
    assert describe_compute(torch.bfloat16, torch.device("cuda:0")) == "bfloat16 on cuda"


def test_cuda_dtype_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(load, "_read_cpuinfo", lambda: X86_AMX)  # the CPU must not matter
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert detect_compute_dtype("cuda") == torch.bfloat16
    assert detect_compute_dtype("cuda:1") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a T4
    assert detect_compute_dtype("cuda") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert detect_compute_dtype("cuda") == torch.float32
    assert detect_compute_dtype("mps") == torch.float32


# --- attention -----------------------------------------------------------------------------------


def test_auto_attention_picks_flash_only_on_cuda_with_the_package(monkeypatch):
    monkeypatch.setattr(load, "_flash_attn_installed", lambda: True)
    assert choose_attn_implementation("auto", "cuda") == "flash_attention_2"
    assert choose_attn_implementation("auto", "cpu") == "sdpa"
    monkeypatch.setattr(load, "_flash_attn_installed", lambda: False)
    assert choose_attn_implementation("auto", torch.device("cuda:0")) == "sdpa"


@pytest.mark.parametrize("name", ["sdpa", "eager", "flex_attention"])
def test_explicit_attention_is_kept(name):
    assert choose_attn_implementation(name, "cpu") == name


def test_attention_errors_say_what_to_use(monkeypatch):
    with pytest.raises(InstillError, match=r"unknown attention implementation 'flash'.*sdpa"):
        choose_attn_implementation("flash", "cpu")
    monkeypatch.setattr(load, "_flash_attn_installed", lambda: True)
    with pytest.raises(InstillError, match=r"needs a CUDA GPU.*device is cpu; use sdpa"):
        choose_attn_implementation("flash_attention_2", "cpu")
    monkeypatch.setattr(load, "_flash_attn_installed", lambda: False)
    with pytest.raises(InstillError, match=r"pip install flash-attn.*or use sdpa"):
        choose_attn_implementation("flash_attention_2", "cuda")


# --- tiny models and Hugging Face directories -----------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", TINY_NAMES)
def test_tiny_model_loads_in_dtype_with_attention(name, dtype):
    model = load_model(name, dtype=dtype, attn_implementation="eager")
    assert all(p.dtype == dtype for p in model.parameters())
    assert model.config._attn_implementation == "eager"
    assert model.get_input_embeddings().num_embeddings == len(build_tiny_tokenizer(name))
    assert not model.training
    with torch.no_grad():
        logits = model(_ids()).logits  # [1, 8, vocab]
    assert logits.dtype == dtype and torch.isfinite(logits).all()


def test_tiny_vocab_size_and_default_attention():
    model = load_model("tiny-random-qwen", dtype=torch.float32, vocab_size=640)
    assert model.get_input_embeddings().num_embeddings == 640
    assert model.config._attn_implementation == "sdpa"


def test_bad_dtype_and_attention_are_refused():
    with pytest.raises(InstillError, match=r"cannot load a model in torch\.int8"):
        load_model("tiny-random-llama", dtype=torch.int8)
    with pytest.raises(InstillError, match="unknown attention implementation"):
        load_model("tiny-random-llama", dtype=torch.float32, attn_implementation="fast")


@pytest.mark.parametrize("name", ["tiny-random-llama", "tiny-random-gemma"])
def test_hf_directory_round_trip(tmp_path, name):
    original = build_tiny_model(name)
    original.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), dtype=torch.float32)
    assert type(loaded) is type(original)
    assert _same_weights(original, loaded)
    with torch.no_grad():
        assert torch.equal(original(_ids()).logits, loaded(_ids()).logits)
    as_bf16 = load_model(str(tmp_path), dtype=torch.bfloat16, attn_implementation="eager")
    assert as_bf16.dtype == torch.bfloat16
    assert as_bf16.config._attn_implementation == "eager"


def test_pickle_only_directory_is_refused_without_unpickling(tmp_path, monkeypatch):
    model = build_tiny_model("tiny-random-llama")
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load must not be called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(ModelLoadError, match=r"(?s)only pickle weights.*Convert them once") as info:
        load_model(str(tmp_path), dtype=torch.float32)
    assert str(tmp_path) in str(info.value)
    assert "safetensors" in str(info.value)


def test_directory_without_config_json(tmp_path):
    build_tiny_model("tiny-random-llama").save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelLoadError, match=r"has no config\.json") as info:
        load_model(str(tmp_path), dtype=torch.float32)
    assert str(tmp_path) in str(info.value)


def test_directory_with_config_but_no_weights(tmp_path):
    build_tiny_model("tiny-random-llama").config.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors weights"):
        load_model(str(tmp_path), dtype=torch.float32)


def test_nonexistent_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(InstillError, match="no-such-model"):
        load_model(str(missing), dtype=torch.float32)


def _fake_checkpoint(path: Path, config: dict) -> None:
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"")  # never read: the config check comes first


def test_unknown_architecture_errors(tmp_path):
    unknown = tmp_path / "unknown"
    _fake_checkpoint(unknown, {"model_type": "zorblax"})
    with pytest.raises(ModelLoadError, match=r"'zorblax'.*does not know.*upgrade transformers"):
        load_model(str(unknown), dtype=torch.float32)

    remote = tmp_path / "remote"
    _fake_checkpoint(
        remote,
        {
            "model_type": "zorblax",
            "auto_map": {"AutoModelForCausalLM": "modeling_zorblax.ZorblaxForCausalLM"},
        },
    )
    with pytest.raises(ModelLoadError, match="`trust_remote_code: true`") as info:
        load_model(str(remote), dtype=torch.float32)
    assert str(remote) in str(info.value)

    encoder = tmp_path / "encoder"
    _fake_checkpoint(encoder, {"model_type": "t5"})
    with pytest.raises(ModelLoadError, match="no causal-LM head"):
        load_model(str(encoder), dtype=torch.float32)


def test_incomplete_checkpoint_is_an_error(tmp_path):
    from safetensors.torch import save_file

    model = build_tiny_model("tiny-random-llama")
    model.save_pretrained(tmp_path)
    state = {k: v for k, v in model.state_dict().items() if "layers.1." not in k}
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"missing_keys.*layers\.1\."):
        load_model(str(tmp_path), dtype=torch.float32)


# --- embeddings ----------------------------------------------------------------------------------


def test_resize_fills_new_rows_with_the_mean_and_pads_to_64():
    model = build_tiny_model("tiny-random-llama")  # untied input / output embeddings
    tokenizer = build_tiny_tokenizer("tiny-random-llama")
    old_in = model.get_input_embeddings().weight.detach().clone()  # [512, 64]
    old_out = model.get_output_embeddings().weight.detach().clone()
    old_rows = old_in.shape[0]
    tokenizer.add_tokens(["<tool>", "</tool>", "<think>"])
    assert len(tokenizer) == old_rows + 3

    added = resize_embeddings_for_tokenizer(model, tokenizer)

    new_in = model.get_input_embeddings().weight
    new_out = model.get_output_embeddings().weight
    assert added == 64 and new_in.shape[0] == old_rows + 64 == 576
    assert new_out.shape[0] == 576 and model.config.vocab_size == 576
    assert torch.equal(new_in[:old_rows], old_in) and torch.equal(new_out[:old_rows], old_out)
    assert torch.allclose(new_in[old_rows:], old_in.mean(0).expand(64, -1))
    assert torch.allclose(new_out[old_rows:], old_out.mean(0).expand(64, -1))
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[old_rows, old_rows + 2]])).logits).all()


def test_resize_never_shrinks():
    model = build_tiny_model("tiny-random-gemma", vocab_size=700)  # more rows than tokens
    tokenizer = build_tiny_tokenizer("tiny-random-gemma")
    before = model.get_input_embeddings().weight.detach().clone()
    assert resize_embeddings_for_tokenizer(model, tokenizer) == 0
    assert torch.equal(model.get_input_embeddings().weight, before)
    assert model.config.vocab_size == 700


def test_resize_keeps_tied_embeddings_tied_and_gemma_scaling():
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    embedding_type = type(model.get_input_embeddings())
    old = model.get_input_embeddings().weight.detach().clone()
    tokenizer = build_tiny_tokenizer("tiny-random-gemma")
    tokenizer.add_tokens(["<extra>"])

    assert resize_embeddings_for_tokenizer(model, tokenizer) == 64

    emb = model.get_input_embeddings()
    assert type(emb) is embedding_type  # Gemma's scaled embedding, not a plain nn.Embedding
    assert model.get_output_embeddings().weight is emb.weight
    assert emb.weight.dtype == torch.bfloat16 and model.config.vocab_size == 576
    assert torch.equal(emb.weight[512:], old.float().mean(0).to(torch.bfloat16).expand(64, -1))


# --- GGUF cache ----------------------------------------------------------------------------------


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A `.gguf` file whose "dequantisation" is a tiny model, counting conversions."""
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    calls = []

    def dequantize(gguf_path: Path):
        calls.append(gguf_path)
        return build_tiny_model("tiny-random-llama", seed=7)

    monkeypatch.setattr(load, "_dequantize_gguf", dequantize)
    return path, calls


def _refuse_to_convert(gguf_path):
    raise AssertionError("the converter must not run when the cache is valid")


def test_gguf_first_load_converts_then_loads_from_cache(tmp_path, fake_gguf, monkeypatch):
    path, calls = fake_gguf
    cache = tmp_path / "cache"
    first = load_model(str(path), dtype=torch.float32, cache_dir=cache)
    assert len(calls) == 1
    model_dir = gguf_cache_dir(path, cache) / "model"
    provenance = json.loads((model_dir / PROVENANCE_FILE).read_text())
    assert provenance["stored_dtype"] == "float32" and provenance["source"] == str(path)
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".model.tmp-")]
    assert _same_weights(first, build_tiny_model("tiny-random-llama", seed=7))

    monkeypatch.setattr(load, "_dequantize_gguf", _refuse_to_convert)
    second = load_model(str(path), dtype=torch.float32, cache_dir=cache)
    assert _same_weights(first, second)

    as_bf16 = load_model(
        str(path), dtype=torch.bfloat16, cache_dir=cache, attn_implementation="eager"
    )
    assert as_bf16.dtype == torch.bfloat16 and as_bf16.config._attn_implementation == "eager"
    expected = {k: v.to(torch.bfloat16) for k, v in first.state_dict().items()}
    assert all(torch.equal(expected[k], v) for k, v in as_bf16.state_dict().items())


@pytest.mark.parametrize("damage", ["truncate", "drop_a_weight", "bad_config"])
def test_gguf_broken_cache_is_rebuilt(tmp_path, fake_gguf, damage):
    from safetensors.torch import load_file, save_file

    path, calls = fake_gguf
    cache = tmp_path / "cache"
    first = load_model(str(path), dtype=torch.float32, cache_dir=cache)
    expected = {k: v.clone() for k, v in first.state_dict().items()}
    del first  # its weights map the cached file; damage a file no live model maps
    model_dir = gguf_cache_dir(path, cache) / "model"
    weights = model_dir / "model.safetensors"
    if damage == "truncate":
        data = weights.read_bytes()[:1000]
        weights.unlink()
        weights.write_bytes(data)
    elif damage == "drop_a_weight":
        state = {k: v.clone() for k, v in load_file(str(weights)).items()}
        state.pop("model.norm.weight")
        weights.unlink()
        save_file(state, str(weights), metadata={"format": "pt"})
    else:
        (model_dir / "config.json").write_text("{not json")

    again = load_model(str(path), dtype=torch.float32, cache_dir=cache)
    assert len(calls) == 2
    assert all(torch.equal(expected[k], v) for k, v in again.state_dict().items())
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".model.tmp-")]


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load.load_gguf_model(tmp_path / "gone.gguf", dtype=torch.float32, cache_dir=tmp_path)


def test_a_gguf_file_transformers_cannot_read_is_named_and_caches_nothing(tmp_path):
    # A real (not mocked) conversion attempt on a GGUF header without metadata.
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(64))
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match=r"(?s)broken\.gguf.*general\.architecture"):
        load_model(str(bad), dtype=torch.float32, cache_dir=cache)
    assert not (gguf_cache_dir(bad, cache) / "model").exists()


# --- real models (slow) ---------------------------------------------------------------------------


@pytest.mark.slow
def test_real_gguf_models_convert_cache_and_predict(tmp_path, monkeypatch):
    """Both shipped GGUF models: convert into a fresh cache, reload without converting, predict.

    Takes about 75 s on a 2-core CPU: the first loads dequantise (SmolLM2 ~22 s, Gemma ~48 s);
    cached loads take well under a second.
    """
    from instill.models.registry import resolve_model_source
    from instill.models.tokenizer_loading import load_tokenizer

    cache = tmp_path / "cache"
    real_dequantize = load._dequantize_gguf
    fresh: dict[str, dict[str, torch.Tensor]] = {}

    def spy(gguf_path):
        model = real_dequantize(gguf_path)
        fresh[gguf_path.name] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    prompts = {
        "smollm2-135m-instruct": [{"role": "user", "content": "What is the capital of France?"}],
        "gemma-3-270m": "Paris is the capital of",  # a base model: plain continuation
    }
    predictions = {}
    for name, prompt in prompts.items():
        gguf_name = resolve_model_source(name).path.name
        monkeypatch.setattr(load, "_dequantize_gguf", spy)
        started = time.perf_counter()
        first = load_model(name, dtype=torch.float32, cache_dir=cache)
        first_s = time.perf_counter() - started

        monkeypatch.setattr(load, "_dequantize_gguf", _refuse_to_convert)
        started = time.perf_counter()
        cached = load_model(name, dtype=torch.float32, cache_dir=cache)
        cached_s = time.perf_counter() - started
        print(f"{name}: first load {first_s:.1f} s, cached load {cached_s:.2f} s")

        reference = fresh.pop(gguf_name)  # what the float32 dequantisation itself gave
        assert all(torch.equal(reference[k], v) for k, v in cached.state_dict().items())
        assert _same_weights(first, cached)
        del first, reference
        # both real models tie the output projection to the input embedding
        assert cached.get_output_embeddings().weight is cached.get_input_embeddings().weight

        tokenizer = load_tokenizer(name)
        assert cached.get_input_embeddings().num_embeddings >= len(tokenizer)
        if isinstance(prompt, list):
            prompt = tokenizer.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        else:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = cached(ids).logits[0, -1]  # [vocab]
        assert torch.isfinite(logits).all()
        predictions[name] = tokenizer.decode([int(logits.argmax())])
        del cached

    print(f"greedy next tokens: {predictions}")
    assert "Paris" in predictions["smollm2-135m-instruct"] or (
        "The" in predictions["smollm2-135m-instruct"]
    )
    assert "France" in predictions["gemma-3-270m"]
