"""GGUF export: tiny Llama/Qwen/Gemma -> GGUF -> transformers (and llama.cpp) compute the same.

The fast tests export the tiny random models in every type and check what the file holds with
independent readers (transformers' GGUF loader, `gguf.GGUFReader`, llama.cpp when installed).
The slow ones export the real Gemma 3 270M (and SmolLM2 135M) saved as plain HF dirs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from instill.data.conversation import Conversation, Message
from instill.data.masking import Renderer
from instill.data.templates import chat_template_source, get_template, prepare_tokenizer
from instill.models import gguf_export
from instill.models.bundle import load_bundle, load_renderer, save_bundle
from instill.models.gguf_export import (
    PROBES,
    GGUFExportError,
    ModelfileError,
    RoundTripError,
    export_gguf,
    modelfile_content,
    ollama_template,
    render_go_template,
    turn_layout,
)
from instill.models.tiny import TINY_NAMES, build_tiny_tokenizer

TYPES = ("f16", "bf16", "q8_0")
GGML_TYPE = {"f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}


def _fields(path: Path) -> tuple[dict, dict]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = {t.name: t.tensor_type.name for t in reader.tensors}
    return fields, tensors


def _reload(path: Path, tmp_path: Path):
    """The exported file as transformers reads it, alone in a directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    alone = tmp_path / "alone"
    alone.mkdir(exist_ok=True)
    shutil.copy(path, alone / "m.gguf")
    overrides = gguf_export.llama_cpp_reading(alone / "m.gguf")
    model = AutoModelForCausalLM.from_pretrained(
        str(alone), gguf_file="m.gguf", dtype=torch.float32, **overrides
    ).eval()
    return model, AutoTokenizer.from_pretrained(str(alone), gguf_file="m.gguf")


def _save_plain(directory: Path, bundle) -> None:
    """Save as training saves a full fine-tune: the tokenizer carries the template as Jinja."""
    bundle.tokenizer.chat_template = chat_template_source(bundle.renderer.template)
    save_bundle(directory, bundle, {"base_model": bundle.name})


def _probe_rows(renderer) -> list[list[int]]:
    return [renderer.encode(Conversation(m)).input_ids for m in PROBES]


@pytest.fixture(scope="module")
def bundles():
    return {n: load_bundle(n, dtype=torch.float32, device="cpu") for n in TINY_NAMES}


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("quant_type", TYPES)
@pytest.mark.parametrize("name", TINY_NAMES)
def test_tiny_export_round_trips(name, quant_type, tmp_path, bundles):
    out = tmp_path / f"{name}.gguf"
    report = export_gguf(name, out, quant_type)
    rt = report.round_trip
    assert out.is_file() and report.size_bytes == out.stat().st_size
    # The file holds the model with exactly the type's rounding, to float32 noise.
    assert rt.exact_delta <= rt.exact_tolerance
    assert rt.max_abs_delta <= rt.tolerance
    assert rt.greedy_identical and rt.token_ids_identical
    # Every 2-D weight in the asked type (Q8_0 rows are multiples of 32 here), 1-D in F32.
    _, tensors = _fields(out)
    bundle = bundles[name]
    n_2d = sum(p.dim() == 2 for n, p in bundle.model.named_parameters())
    assert sorted(set(tensors.values())) == sorted({"F32", GGML_TYPE[quant_type]})
    assert sum(t == GGML_TYPE[quant_type] for t in tensors.values()) == n_2d
    assert report.tensors == len(tensors)


@pytest.mark.parametrize("name", TINY_NAMES)
def test_tiny_f16_logits_match_independently(name, tmp_path, bundles):
    """Not trusting the built-in check: reload and compare here, against fp16-rounded weights."""
    out = tmp_path / "m.gguf"
    export_gguf(name, out, "f16", check=False)
    bundle = bundles[name]
    reloaded, tok = _reload(out, tmp_path)
    rounded = load_bundle(name, dtype=torch.float32, device="cpu").model
    with torch.no_grad():
        for p in rounded.parameters():
            if p.dim() == 2:
                p.copy_(p.half().float())
    for row in _probe_rows(bundle.renderer):
        ids = torch.tensor([row])
        with torch.no_grad():
            want = rounded(ids).logits
            got = reloaded(ids).logits
            src = bundle.model(ids).logits
        # Same numbers in float32: only reassociation noise.
        assert (got - want).abs().max() <= 1e-4 * (1 + src.abs().max())
        # f16 keeps 11 significant bits; the logits of these 2-layer models move far less
        # than 1% of their range.
        assert (got - src).abs().max() <= 0.01 * src.abs().max()
        text = bundle.tokenizer.decode(row)
        assert tok(text, add_special_tokens=False)["input_ids"] == row


def test_merged_dir_export_uses_its_template_and_end_of_turn(tmp_path, bundles):
    """A dir as `instill merge` / a full fine-tune writes it (save_bundle), exported."""
    model_dir = tmp_path / "merged"
    _save_plain(model_dir, load_bundle("tiny-random-llama", dtype=torch.float32, device="cpu"))
    info = json.loads((model_dir / "instill.json").read_text())
    out = tmp_path / "out" / "model.gguf"
    report = export_gguf(str(model_dir), out, "q8_0", ollama=True)
    fields, _ = _fields(out)
    tok = bundles["tiny-random-llama"].tokenizer
    eot_id = tok.convert_tokens_to_ids(info["end_of_turn"])
    assert info["end_of_turn"] == "<|im_end|>" and report.eos_token == "<|im_end|>"
    assert fields["tokenizer.ggml.eos_token_id"] == eot_id
    assert fields["tokenizer.chat_template"] == chat_template_source(
        bundles["tiny-random-llama"].renderer.template
    )
    assert (out.parent / "Modelfile").read_text().startswith("FROM ./model.gguf\n")


@pytest.mark.parametrize("name", TINY_NAMES)
def test_metadata_has_template_eos_and_special_tokens(name, tmp_path, bundles):
    out = tmp_path / "m.gguf"
    export_gguf(name, out, "f16", check=False)
    fields, tensors = _fields(out)
    bundle = bundles[name]
    tok, template = bundle.tokenizer, bundle.renderer.template
    assert fields["tokenizer.chat_template"] == chat_template_source(template)
    eot = tok.convert_tokens_to_ids(template.end_of_turn)
    assert fields["tokenizer.ggml.eos_token_id"] == eot == bundle.stop_ids[0]
    assert fields["tokenizer.ggml.model"] == "gpt2"  # the tiny models are byte-level BPE
    assert fields["tokenizer.ggml.pre"] == "gpt-2"
    adds_bos = tok("x")["input_ids"][0] == tok.bos_token_id
    assert fields["tokenizer.ggml.add_bos_token"] is adds_bos
    assert fields.get("tokenizer.ggml.bos_token_id") == tok.bos_token_id
    assert fields.get("tokenizer.ggml.padding_token_id") == tok.pad_token_id
    rows = bundle.model.get_input_embeddings().num_embeddings
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens) == rows  # padded to the embedding rows with [PADi]
    types = fields["tokenizer.ggml.token_type"]
    for t in template.special_tokens or [template.end_of_turn]:
        assert types[tok.convert_tokens_to_ids(t)] == gguf_export.CONTROL
    untied = not bundle.model.config.tie_word_embeddings
    assert ("output.weight" in tensors) is untied


def test_llama_rotary_permutation_is_llama_cpp_layout():
    # Head of 4 rows: HF's halves (0, 1 | 2, 3) become llama.cpp's pairs (0, 2, 1, 3).
    w = torch.arange(8.0).reshape(8, 1)
    assert gguf_export.permute_rotary(w, 2, None).flatten().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    # K with 1 kv head of 8 rows.
    assert gguf_export.permute_rotary(w, 4, 1).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_gemma_norms_stored_plus_one_and_query_scale_folded(tmp_path, bundles):
    import gguf

    out = tmp_path / "g.gguf"
    export_gguf("tiny-random-gemma", out, "f16", check=False)
    reader = gguf.GGUFReader(str(out))
    stored = {t.name: np.array(t.data) for t in reader.tensors}
    model = bundles["tiny-random-gemma"].model
    cfg = model.config
    layer = model.model.layers[0]
    np.testing.assert_allclose(
        stored["blk.0.attn_norm.weight"], layer.input_layernorm.weight.detach().numpy() + 1
    )
    # llama.cpp scales queries by 1/sqrt(head_dim); this config asks 1/sqrt(256).
    c = (cfg.head_dim / cfg.query_pre_attn_scalar) ** 0.5
    np.testing.assert_allclose(
        stored["blk.0.attn_q_norm.weight"], (layer.self_attn.q_norm.weight.detach().numpy() + 1) * c
    )
    fields, _ = _fields(out)
    assert fields["gemma3.attention.sliding_window"] == cfg.sliding_window
    assert fields["gemma3.attention.sliding_window_pattern"] == [
        t == "sliding_attention" for t in cfg.layer_types
    ]
    assert fields["gemma3.rope.freq_base_swa"] == 10000.0
    assert fields["gemma3.rope.freq_base"] == 1e6


# --------------------------------------------------------------------------- the check catches bugs


def test_round_trip_catches_a_wrong_layout_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_export, "permute_rotary", lambda w, h, kv: w)
    out = tmp_path / "m.gguf"
    with pytest.raises(RoundTripError, match="does not hold this model"):
        export_gguf("tiny-random-llama", out, "f16")
    assert list(tmp_path.iterdir()) == []


def test_round_trip_catches_a_missing_query_scale_fold(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_export, "_query_scale_fold", lambda arch, cfg: 1.0)
    with pytest.raises(RoundTripError):
        export_gguf("tiny-random-gemma", tmp_path / "m.gguf", "f16")


# --------------------------------------------------------------------------- refusals


def test_adapter_dir_is_refused_with_the_merge_command(tmp_path):
    adapter = tmp_path / "final"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(GGUFExportError, match=r"instill merge .*final --out DIR"):
        export_gguf(adapter, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_unknown_type_is_refused(tmp_path):
    with pytest.raises(GGUFExportError, match=r"--type 'q4_k'.*f16, bf16, q8_0"):
        export_gguf("tiny-random-llama", tmp_path / "m.gguf", "q4_k")


def test_unsupported_architecture_is_refused_by_name(tmp_path):
    model_dir = tmp_path / "gpt2"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(GGUFExportError, match=r"GPT2LMHeadModel.*LlamaForCausalLM, Qwen2"):
        export_gguf(model_dir, tmp_path / "m.gguf")


def test_unsupported_config_is_refused(tmp_path, bundles, monkeypatch):
    model = bundles["tiny-random-llama"].model
    monkeypatch.setattr(model.config, "attention_bias", True)
    with pytest.raises(GGUFExportError, match="attention_bias"):
        gguf_export._check_config("llama", model.config)


# --------------------------------------------------------------------------- Ollama


def test_go_template_evaluator_on_a_hand_written_template():
    """The evaluator itself, on Ollama's own idiom (so the Modelfile check has a sound oracle)."""
    src = (
        "{{ range $i, $m := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
        '{{ if eq $m.Role "user" }}U:{{ $m.Content }}|{{ else if eq $m.Role "assistant" }}'
        "A:{{ $m.Content }}{{ if not $last }}#{{ end }}{{ else }}S:{{ .Content }};{{ end }}"
        "{{ end }}"
    )
    msgs = [Message("system", "s"), Message("user", "hi"), Message("assistant", "yo")]
    assert render_go_template(src, msgs) == "S:s;U:hi|A:yo"
    assert render_go_template(src, msgs[:2]) == "S:s;U:hi|"


CONVERSATIONS = [
    [Message("user", "Hi")],
    [Message("system", "Be brief."), Message("user", "Hi")],
    [Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Bye")],
    [
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "Bye"),
    ],
]


@pytest.mark.parametrize(
    ("flavour", "spec"),
    [
        ("tiny-random-llama", "chatml"),
        ("tiny-random-llama", "llama3"),
        ("tiny-random-llama", "alpaca"),
        ("tiny-random-gemma", "gemma"),
        ("tiny-random-gemma", "tokenizer"),
        ("tiny-random-qwen", "tokenizer"),
    ],
)
def test_modelfile_renders_like_instills_renderer(flavour, spec):
    tok = build_tiny_tokenizer(flavour)
    template = get_template(spec, tok)
    prepare_tokenizer(tok, template)
    renderer = Renderer(tok, template)
    stops = [tok.convert_tokens_to_ids(template.end_of_turn), tok.eos_token_id]
    text = modelfile_content("model.gguf", renderer, list(dict.fromkeys(stops)))
    source = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    bos = tok.bos_token if tok("x")["input_ids"][0] == tok.bos_token_id else ""
    for msgs in CONVERSATIONS:
        want = template.render(msgs, add_generation_prompt=True)
        assert bos + render_go_template(source, msgs) == want
        # ...and tokenized as llama.cpp/Ollama do (BOS added by the tokenizer), the same ids.
        ids = tok(bos + render_go_template(source, msgs), add_special_tokens=False)["input_ids"]
        assert ids == renderer.encode_prompt(msgs)
    assert f"PARAMETER stop {json.dumps(template.end_of_turn)}" in text
    assert text.startswith("FROM ./model.gguf\n")


def test_modelfile_refuses_a_template_it_cannot_reproduce():
    tok = build_tiny_tokenizer("tiny-random-qwen")
    # Numbered turns: no fixed literal text around a message.
    jinja = (
        "{% for m in messages %}{{ loop.index }}:{{ m['role'] }}:{{ m['content'] }}<|im_end|>"
        "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    template = gguf_export_template(tok, jinja)
    with pytest.raises(ModelfileError):
        modelfile_content("m.gguf", Renderer(tok, template), [2])


def gguf_export_template(tok, jinja):
    from instill.data.templates import JinjaTemplate

    return JinjaTemplate("numbered", jinja, tok, "<|im_end|>")


def test_turn_layout_of_gemma_merges_system_into_first_user_turn():
    tok = build_tiny_tokenizer("tiny-random-gemma")
    layout = turn_layout(get_template("gemma", tok))
    assert layout.head == "<bos><start_of_turn>user\n"
    assert layout.system_head == "<bos><start_of_turn>user\n" and layout.system_tail == "\n\n"
    assert layout.user_tail == "<end_of_turn>\n<start_of_turn>model\n"
    assert layout.assistant_tail == "<end_of_turn>\n"
    assert "<bos>" not in ollama_template(layout, "<bos>")


# --------------------------------------------------------------------------- CLI


def test_cli_export_prints_summary_and_writes_files(tmp_path, capsys):
    from instill.cli import main

    out = tmp_path / "q.gguf"
    args = ["export", "tiny-random-qwen", "--format", "gguf", "--type", "q8_0"]
    code = main([*args, "--out", str(out), "--ollama"])
    printed = capsys.readouterr().out
    assert code == 0
    assert out.is_file() and (tmp_path / "Modelfile").is_file()
    assert "q8_0" in printed and "max |delta logit|" in printed
    assert "ollama create" in printed and "llama-cli" in printed


def test_cli_export_refuses_an_adapter(tmp_path, capsys):
    from instill.cli import main

    (tmp_path / "adapter_config.json").write_text("{}")
    code = main(["export", str(tmp_path), "--format", "gguf", "--out", str(tmp_path / "m.gguf")])
    assert code == 2
    assert "instill merge" in capsys.readouterr().err


# --------------------------------------------------------------------------- llama.cpp


def _llama_cpp_logits(path: Path, rows: list[list[int]], vocab: int) -> list[np.ndarray]:
    import llama_cpp  # in [dev]: the export is checked in llama.cpp itself, never skipped

    llm = llama_cpp.Llama(str(path), n_ctx=512, logits_all=True, verbose=False, n_threads=2)
    out = []
    for row in rows:
        llm.reset()
        llm.eval(row)
        out.append(np.array(llm.scores[: len(row)])[:, :vocab])  # [seq, vocab]
    llm.close()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("quant_type", ["f16", "q8_0"])
@pytest.mark.parametrize("name", TINY_NAMES)
def test_llama_cpp_runs_tiny_export(name, quant_type, tmp_path, bundles):
    import llama_cpp  # in [dev]: the export is checked in llama.cpp itself, never skipped

    out = tmp_path / "m.gguf"
    report = export_gguf(name, out, quant_type)
    bundle = bundles[name]
    rows = _probe_rows(bundle.renderer)
    llm = llama_cpp.Llama(str(out), n_ctx=512, verbose=False, n_threads=2)
    for row in rows:  # llama.cpp tokenizes the rendered text into the same ids
        text = bundle.tokenizer.decode(row)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == row
    assert llm.token_eos() == bundle.stop_ids[0]
    llm.close()
    vocab = bundle.model.config.vocab_size
    got = _llama_cpp_logits(out, rows, vocab)
    tol = _llama_cpp_tolerance(report.round_trip)
    for row, lc in zip(rows, got, strict=True):
        with torch.no_grad():
            src = bundle.model(torch.tensor([row])).logits[0].numpy()
        assert np.abs(lc - src).max() <= tol


def _llama_cpp_tolerance(rt) -> float:
    """llama.cpp also rounds activations (f16 KV cache, its own kernels): twice the round trip's
    tolerance plus 2e-3 of the logit scale (measured: Gemma 3 270M f16 0.24 of 98)."""
    scale = rt.exact_tolerance / gguf_export.EXACT_RTOL  # 1 + max|logit|
    return 2 * rt.tolerance + 2e-3 * scale


def _real_dir(name: str, tmp_path_factory) -> Path:
    model_dir = tmp_path_factory.mktemp("real") / name
    _save_plain(model_dir, load_bundle(name, dtype=torch.float32, device="cpu"))
    return model_dir


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    return _real_dir("gemma-3-270m", tmp_path_factory)


@pytest.mark.slow
def test_real_gemma_exports_round_trip_and_llama_cpp(gemma_dir, tmp_path):
    import gguf

    from instill.models.registry import resolve_model_source

    out = tmp_path / "gemma.gguf"
    report = export_gguf(str(gemma_dir), out, "f16", ollama=True)
    rt = report.round_trip
    assert rt.exact_delta <= rt.exact_tolerance and rt.greedy_identical
    assert rt.token_ids_identical and rt.argmax_agreement >= 0.99
    fields, _ = _fields(out)
    assert (
        fields["tokenizer.ggml.model"] == "llama" and fields["tokenizer.ggml.eos_token_id"] == 106
    )
    # The vocabulary as llama.cpp's converter wrote it in the package's original GGUF.
    original = gguf.GGUFReader(str(resolve_model_source("gemma-3-270m").path))
    orig = {
        k: original.fields[k].contents()
        for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")
    }
    ours_tokens, their_tokens = fields["tokenizer.ggml.tokens"], orig["tokenizer.ggml.tokens"]
    ours_types, their_types = fields["tokenizer.ggml.token_type"], orig["tokenizer.ggml.token_type"]
    differ = [i for i, (a, b) in enumerate(zip(ours_tokens, their_tokens, strict=True)) if a != b]
    # Only the runs of 2-31 spaces differ: llama.cpp's converter wrote them as user-defined raw
    # spaces, the HF tokenizer instill trains with (transformers' reading of that file) holds them
    # as ordinary "\u2581" pieces, and the export follows the tokenizer it was given.
    assert differ == list(range(138, 168))
    assert all(ours_tokens[i] == their_tokens[i].replace(" ", "\u2581") for i in differ)
    assert [i for i, (a, b) in enumerate(zip(ours_types, their_types, strict=True)) if a != b] == (
        differ
    )
    normal = [i for i, t in enumerate(their_types) if t == 1]
    ours = np.array(fields["tokenizer.ggml.scores"])[normal]
    theirs = np.array(orig["tokenizer.ggml.scores"])[normal]
    merged = ours != 0  # tokens some merge makes: their merge order is the original score order
    assert (
        np.argsort(-ours[merged], kind="stable") == np.argsort(-theirs[merged], kind="stable")
    ).all()
    import llama_cpp  # in [dev]: the export is checked in llama.cpp itself, never skipped

    vocab_only = llama_cpp.Llama(str(out), vocab_only=True, verbose=False)
    tok = load_renderer(str(gemma_dir))[0].tokenizer
    for text in ("a   b", "def f():\n    return  1", "  lead", "a\t\tb  \n\n   c", "Üñï 12 345"):
        want = tok(text, add_special_tokens=False)["input_ids"]
        assert vocab_only.tokenize(text.encode(), add_bos=False, special=True) == want
    vocab_only.close()
    _greedy_matches_llama_cpp(gemma_dir, out, _llama_cpp_tolerance(rt))


def _greedy_matches_llama_cpp(model_dir: Path, gguf_file: Path, tol: float, n: int = 16) -> None:
    """llama.cpp's greedy answers are the source model's, up to a near tie of the source.

    `tol` bounds |logit(llama.cpp) - logit(source)|, so where the source's top-2 margin exceeds
    2 * tol llama.cpp must pick the same token; past a closer call the answers may part.
    """
    import llama_cpp  # in [dev]: the export is checked in llama.cpp itself, never skipped

    bundle = load_bundle(str(model_dir), dtype=torch.float32, device="cpu")
    llm = llama_cpp.Llama(str(gguf_file), n_ctx=512, verbose=False, n_threads=2)
    for msgs in PROBES:
        prompt = bundle.renderer.encode_prompt(msgs[:-1])
        got = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            got.append(token)
            if len(got) == n:
                break
        with torch.no_grad():  # the source, fed llama.cpp's answer: [answer, vocab]
            src = bundle.model(torch.tensor([prompt + got])).logits[0, len(prompt) - 1 : -1]
        for pos, token in enumerate(got):
            top2 = src[pos].topk(2).values
            if float(top2[0] - top2[1]) <= 2 * tol:
                break
            assert token == int(src[pos].argmax()), f"answer {got} parts at {pos}"
    llm.close()


@pytest.mark.slow
def test_real_smollm2_exports_round_trip_and_llama_cpp(tmp_path_factory, tmp_path):
    model_dir = _real_dir("smollm2-135m-instruct", tmp_path_factory)
    out = tmp_path / "smol.gguf"
    report = export_gguf(str(model_dir), out, "q8_0", ollama=True)
    rt = report.round_trip
    assert rt.exact_delta <= rt.exact_tolerance and rt.greedy_identical
    assert rt.token_ids_identical
    fields, tensors = _fields(out)
    assert "output.weight" not in tensors  # tied embeddings
    assert fields["tokenizer.ggml.eos_token_id"] == 2  # <|im_end|>
    # Its own template writes a default system prompt when there is none: so does the Modelfile.
    assert "You are a helpful AI assistant named SmolLM" in (tmp_path / "Modelfile").read_text()
    _greedy_matches_llama_cpp(model_dir, out, _llama_cpp_tolerance(rt))
