"""GGUF export: a full model (a `final/` of a full fine-tune, a merged dir, a base model) as one
`.gguf` file that llama.cpp and Ollama run, prompted and stopped exactly as it was trained.

The file is written with the `gguf` package, following what llama.cpp's `convert_hf_to_gguf.py`
does for each architecture, so no llama.cpp checkout is needed:

* **Llama**: Q and K rows are permuted from the Hugging Face rotary layout (two halves) to
  llama.cpp's (interleaved pairs); transformers' GGUF reader undoes it.
* **Qwen2**: no permutation (llama.cpp uses the NeoX rotary layout); Q/K/V biases kept.
* **Gemma 3**: every RMSNorm weight is stored as `1 + w` (Gemma computes `x * (1 + w)`, llama.cpp
  `x * w`); the sliding-window layers, both rotary bases and the final soft-cap are written as
  keys. llama.cpp scales queries by `1/sqrt(head_dim)`; a model whose `query_pre_attn_scalar`
  differs (the tiny test model) gets the ratio folded into its stored `q_norm` weights, exact
  because the scale is applied after that norm and before the (linear) rotation.
* Tied embeddings write no `output.weight` (llama.cpp and transformers then tie them).

The tokenizer travels as metadata: byte-level BPE (Llama 3, SmolLM2, Qwen and instill's tiny
models) as llama.cpp's `gpt2` vocabulary with its merges and the pre-tokenizer name llama.cpp
knows for the tokenizer's split rule; a SentencePiece-style vocabulary (Gemma) as llama.cpp's
`llama` vocabulary with scores and token types. The chat template the model was trained with goes
in `tokenizer.chat_template`, and the EOS id is the end-of-turn token, so llama.cpp and Ollama stop
where the model learned to stop.

**Checked, not assumed.** The file is written under a temporary name; transformers loads it back
(`gguf_file=`), and its logits on a probe set are compared with the source model's before the file
is renamed into place, so a failed check leaves no file behind. Two comparisons:

1. *Exactness*: the reloaded model against the source with exactly the rounding the type implies
   applied in memory (float16 / bfloat16 rounding, or Q8_0 quantise-dequantise of each 2-D
   weight). Both compute in float32 from the same numbers, so they agree to float32 noise:
   `|delta| <= 1e-4 * (1 + max|logit|)`. Any mistake in names, layouts, norms or hyper-parameters
   shows up here orders of magnitude above that.
2. *Fidelity*: the reloaded model against the unrounded source. The tolerance is derived from the
   rounding itself: twice the deviation that rounding the weights in memory causes, plus the
   float32 noise above. Argmax must agree at every position where the source's top-1 margin
   exceeds twice that tolerance (elsewhere the rounding may legitimately swap a near tie), and
   greedy answers must be identical up to the first such near tie.

The token ids the reloaded tokenizer gives the probe texts must equal the source tokenizer's.
transformers' GGUF reader leaves Gemma 3's query scale, sliding-window layout and local RoPE base
at its config defaults, so the round trip reads those keys from the file the way llama.cpp does
(`llama_cpp_reading`) instead of trusting either side's defaults.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instill.atomic import atomic_file, write_atomic
from instill.data.conversation import Message
from instill.data.templates import added_bos_text, chat_template_source
from instill.errors import InstillError

#: The `--type` values: what every 2-D weight is stored as (1-D norms and biases stay float32).
QUANT_TYPES: tuple[str, ...] = ("f16", "bf16", "q8_0")
#: Hugging Face architecture -> llama.cpp architecture name.
SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Gemma3ForCausalLM": "gemma3",
}
#: Fidelity: greedy answers are compared over this many new tokens per probe prompt.
GREEDY_TOKENS = 12
#: Exactness tolerance, relative to `1 + max|logit|` (float32 reassociation noise is ~1e-6).
EXACT_RTOL = 1e-4

# The probe conversations of the round trip and of the Modelfile check.
PROBES: tuple[tuple[Message, ...], ...] = (
    (Message("user", "What is 12 plus 30?"), Message("assistant", "The answer is 42.")),
    (
        Message("system", "Be brief."),
        Message("user", "Translate the sentence into French: Thank you, goodbye."),
        Message("assistant", "Merci, au revoir."),
    ),
    (
        Message("user", "List three colors."),
        Message("assistant", "- red\n- green\n- blue"),
        Message("user", "Sort these numbers: 5, 3, 9, 1."),
        Message("assistant", "1, 3, 5, 9"),
    ),
)

_FILE_TYPES = {"f16": 1, "bf16": 32, "q8_0": 7}  # gguf.LlamaFileType.MOSTLY_*


class GGUFExportError(InstillError):
    """A model cannot be exported to GGUF as it is (adapter, architecture, config, tokenizer)."""


class RoundTripError(GGUFExportError):
    """The exported GGUF, loaded back by transformers, does not compute what the source does."""


class ModelfileError(GGUFExportError):
    """The chat template cannot be written as an Ollama Go template that renders identically."""


@dataclass
class RoundTripReport:
    """What the round trip measured (see the module docstring).

    Attributes:
        max_abs_delta: max |logit(gguf) - logit(source)| over the probe rows.
        tolerance: the fidelity tolerance derived from the rounding.
        rounding_delta: max |logit(source rounded in memory) - logit(source)|.
        exact_delta: max |logit(gguf) - logit(source rounded in memory)|.
        exact_tolerance: the float32-noise bound `exact_delta` must stay under.
        argmax_agreement: fraction of probe positions where both predict the same token.
        decided_positions: positions whose source margin exceeds twice the tolerance.
        greedy_identical: whether every probe's greedy answer is the same token for token.
        greedy_tokens: new tokens compared per probe prompt.
        token_ids_identical: whether the reloaded tokenizer gives the source's ids on the probes.
        positions: probe positions compared.
    """

    max_abs_delta: float
    tolerance: float
    rounding_delta: float
    exact_delta: float
    exact_tolerance: float
    argmax_agreement: float
    decided_positions: int
    greedy_identical: bool
    greedy_tokens: int
    token_ids_identical: bool
    positions: int


@dataclass
class ExportReport:
    """What `export_gguf` wrote."""

    path: Path
    quant_type: str
    architecture: str
    size_bytes: int
    tensors: int
    parameters: int
    eos_token: str
    seconds: float
    round_trip: RoundTripReport | None = None
    modelfile: Path | None = None
    stop_strings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- entry point


def export_gguf(
    model_path: str | os.PathLike,
    out_file: str | os.PathLike,
    quant_type: str = "f16",
    ollama: bool = False,
    check: bool = True,
) -> ExportReport:
    """Export a full model to one GGUF file, check it round-trips, then publish it.

    Args:
        model_path: an instill `final/` of a full fine-tune, a dir `instill merge` wrote, or any
            base model instill loads (HF dir, registered name, tiny model name). A LoRA/PEFT
            adapter dir is refused: merge it first.
        out_file: the `.gguf` file to write (replaced atomically).
        quant_type: `f16`, `bf16` or `q8_0` (see `QUANT_TYPES`).
        ollama: also write an Ollama `Modelfile` beside the file.
        check: run the transformers round trip before publishing (on by default).

    Raises:
        GGUFExportError: the input cannot be exported (adapter, architecture, tokenizer...).
        RoundTripError: the written file does not compute what the source does.
        ModelfileError: (with `ollama`) the chat template has no faithful Go-template form.
    """
    import gguf

    from instill.models.bundle import load_bundle

    started = time.perf_counter()
    if quant_type not in QUANT_TYPES:
        raise GGUFExportError(
            f"--type {quant_type!r} is not supported; choose one of {', '.join(QUANT_TYPES)}"
        )
    out = Path(out_file)
    if out.suffix != ".gguf":
        raise GGUFExportError(f"--out {out}: the file name must end in .gguf")
    _refuse_early(Path(model_path))
    bundle = load_bundle(str(model_path), dtype=torch.float32, merge_adapter=False, device="cpu")
    model, renderer = bundle.model, bundle.renderer
    hf_arch = type(model).__name__
    if hf_arch not in SUPPORTED_ARCHITECTURES:
        raise _unsupported(hf_arch, str(model_path))
    arch = SUPPORTED_ARCHITECTURES[hf_arch]
    config = model.config
    _check_config(arch, config)
    layout_fix = _query_scale_fold(arch, config)
    vocab = build_vocab(renderer.tokenizer, model.get_input_embeddings().num_embeddings, arch)
    eos_id = bundle.stop_ids[0]
    eos_text = renderer.tokenizer.convert_ids_to_tokens(eos_id)
    template_source = chat_template_source(renderer.template)
    modelfile_text = None
    if ollama:
        modelfile_text = modelfile_content(out.name, renderer, bundle.stop_ids)

    with atomic_file(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        _write_metadata(writer, arch, config, quant_type, Path(str(model_path)).name)
        _write_vocab(writer, vocab, renderer.tokenizer, eos_id, bundle.stop_ids, template_source)
        n_tensors, n_params = _write_tensors(writer, arch, model, quant_type, layout_fix)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        del writer  # it holds every encoded tensor until it goes
        round_trip = check_round_trip(model, renderer, tmp, quant_type) if check else None
        size = tmp.stat().st_size
    report = ExportReport(
        path=out,
        quant_type=quant_type,
        architecture=arch,
        size_bytes=size,
        tensors=n_tensors,
        parameters=n_params,
        eos_token=eos_text,
        seconds=time.perf_counter() - started,
        round_trip=round_trip,
        stop_strings=stop_strings(renderer.tokenizer, bundle.stop_ids),
    )
    if modelfile_text is not None:
        report.modelfile = write_atomic(out.with_name("Modelfile"), modelfile_text)
    return report


def _refuse_early(path: Path) -> None:
    """Refuse adapters and unsupported architectures before loading any weights."""
    if (path / "adapter_config.json").is_file():
        raise GGUFExportError(
            f"{path} is a LoRA/PEFT adapter, which GGUF cannot hold as it is; merge it into its "
            f"base first: `instill merge {path} --out DIR`, then `instill export DIR --format gguf`"
        )
    config_file = path / "config.json"
    if config_file.is_file():
        archs = json.loads(config_file.read_text()).get("architectures") or []
        if archs and archs[0] not in SUPPORTED_ARCHITECTURES:
            raise _unsupported(archs[0], str(path))


def _unsupported(hf_arch: str, where: str) -> GGUFExportError:
    return GGUFExportError(
        f"{where}: architecture {hf_arch} cannot be exported to GGUF by instill; supported: "
        f"{', '.join(SUPPORTED_ARCHITECTURES)}"
    )


# --------------------------------------------------------------------------- hyper-parameters


def _rope(config, layer_type: str = "full_attention") -> dict:
    params = getattr(config, "rope_parameters", None) or {}
    if layer_type in params:
        params = params[layer_type]
    return dict(params)


def _check_config(arch: str, config) -> None:
    """Refuse what llama.cpp's graph for `arch` cannot compute (never export half-right)."""
    problems = []
    act = getattr(config, "hidden_act", None) or getattr(config, "hidden_activation", None)
    want_act = "gelu_pytorch_tanh" if arch == "gemma3" else "silu"
    if act != want_act:
        problems.append(f"activation {act!r} (llama.cpp's {arch} uses {want_act})")
    rope_types = {_rope(config, t).get("rope_type", "default") for t in _layer_kinds(config)}
    if rope_types - {"default"}:
        problems.append(f"RoPE scaling {sorted(rope_types)} (only unscaled RoPE is exported)")
    if arch == "llama":
        for flag in ("attention_bias", "mlp_bias"):
            if getattr(config, flag, False):
                problems.append(f"{flag}=True (llama.cpp's llama has no such biases)")
    if arch == "qwen2":
        if getattr(config, "use_sliding_window", False):
            problems.append("use_sliding_window=True")
        head_dim = getattr(config, "head_dim", None)
        if head_dim and head_dim != config.hidden_size // config.num_attention_heads:
            problems.append(f"head_dim={head_dim} != hidden_size / num_attention_heads")
    if arch == "gemma3":
        if getattr(config, "attn_logit_softcapping", None):
            problems.append("attn_logit_softcapping (llama.cpp's gemma3 has none)")
        if getattr(config, "use_bidirectional_attention", False):
            problems.append("use_bidirectional_attention=True")
    if problems:
        raise GGUFExportError(
            f"this {arch} model cannot be exported to GGUF faithfully: " + "; ".join(problems)
        )


def _layer_kinds(config) -> list[str]:
    return sorted(set(getattr(config, "layer_types", None) or ["full_attention"]))


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _query_scale_fold(arch: str, config) -> float:
    """The factor to fold into Gemma 3's stored q_norm so llama.cpp's 1/sqrt(head_dim) is right."""
    if arch != "gemma3":
        return 1.0
    return math.sqrt(_head_dim(config) / config.query_pre_attn_scalar)


def _write_metadata(writer, arch: str, config, quant_type: str, name: str) -> None:
    import gguf

    writer.add_name(name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(_rope(config).get("rope_theta", 10000.0))
    writer.add_vocab_size(config.vocab_size)
    head_dim = _head_dim(config)
    if arch == "llama":
        writer.add_rope_dimension_count(head_dim)
    if arch in ("llama", "gemma3"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if arch == "gemma3":
        layer_types = list(config.layer_types)
        if "sliding_attention" in layer_types:
            writer.add_sliding_window(config.sliding_window)
            writer.add_sliding_window_pattern([t == "sliding_attention" for t in layer_types])
            writer.add_rope_freq_base_swa(_rope(config, "sliding_attention")["rope_theta"])
        if getattr(config, "final_logit_softcapping", None):
            writer.add_final_logit_softcapping(config.final_logit_softcapping)
    writer.add_file_type(_FILE_TYPES[quant_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


# --------------------------------------------------------------------------- tensors


def _write_tensors(writer, arch: str, model, quant_type: str, q_scale: float) -> tuple[int, int]:
    """Map, transform and encode every weight; refuse any weight llama.cpp would not read."""
    import gguf

    config = model.config
    name_map = gguf.get_tensor_name_map(_gguf_arch(arch), config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    n_tensors = n_params = 0
    unmapped = []
    for hf_name, param in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp ties the output to token_embd when output.weight is absent
        base, _, suffix = hf_name.rpartition(".")
        gguf_base = name_map.get_name(base)
        if gguf_base is None:
            unmapped.append(hf_name)
            continue
        data = param.detach().to(torch.float32)
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            n_kv = config.num_key_value_heads if "k_proj" in hf_name else None
            data = permute_rotary(data, config.num_attention_heads, n_kv)
        if arch == "gemma3" and hf_name.endswith("norm.weight"):
            data = data + 1.0  # Gemma3RMSNorm computes x * (1 + w)
            if hf_name.endswith("q_norm.weight"):
                data = data * q_scale
        array, qtype = encode_tensor(data.numpy(), quant_type)
        writer.add_tensor(f"{gguf_base}.{suffix}", array, raw_dtype=qtype)
        n_tensors += 1
        n_params += data.numel()
    if unmapped:
        raise GGUFExportError(
            f"weights with no GGUF name for {arch}: {', '.join(unmapped[:5])}"
            + (f" and {len(unmapped) - 5} more" if len(unmapped) > 5 else "")
        )
    return n_tensors, n_params


def _gguf_arch(arch: str):
    import gguf

    return next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)


def permute_rotary(weights: torch.Tensor, n_head: int, n_head_kv: int | None) -> torch.Tensor:
    """Q/K rows from HF's rotary layout (two halves per head) to llama.cpp's (pairs).

    The same reshape as `convert_hf_to_gguf.py`'s `LlamaModel.permute`; transformers'
    `LlamaTensorProcessor` applies its inverse when it reads the file.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def encode_tensor(data: np.ndarray, quant_type: str):
    """The array to store and its GGML type: 1-D stays F32, 2-D as `quant_type`.

    Q8_0 needs rows that are a multiple of its 32-value blocks; other rows fall back to F16, as
    `convert_hf_to_gguf.py` does.
    """
    import gguf
    from gguf.quants import quantize

    types = gguf.GGMLQuantizationType
    if data.ndim < 2:
        return data.astype(np.float32), types.F32
    if quant_type == "f16":
        return _to_f16(data), types.F16
    if quant_type == "bf16":
        return quantize(data, types.BF16), types.BF16
    if data.shape[-1] % 32:
        return _to_f16(data), types.F16
    return quantize(data, types.Q8_0), types.Q8_0


def _to_f16(data: np.ndarray) -> np.ndarray:
    big = float(np.abs(data).max()) if data.size else 0.0
    if big > 65504.0:
        raise GGUFExportError(
            f"a weight of magnitude {big:.4g} overflows float16 (max 65504); export with "
            "--type bf16 instead"
        )
    return data.astype(np.float16)


def round_like_export(data: torch.Tensor, quant_type: str) -> torch.Tensor:
    """`data` (float32) with exactly the rounding `encode_tensor` applies, decoded back."""
    from gguf.quants import dequantize

    if data.ndim < 2:
        return data
    array, qtype = encode_tensor(data.numpy(), quant_type)
    decoded = dequantize(array, qtype).reshape(data.shape)
    return torch.from_numpy(np.ascontiguousarray(decoded, dtype=np.float32))


# --------------------------------------------------------------------------- tokenizer


@dataclass
class Vocab:
    """The tokenizer as llama.cpp's metadata spells it."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
    pre: str
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    add_space_prefix: bool | None = None


# Split regexes of the byte-level tokenizers llama.cpp knows, by its pre-tokenizer name.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLITS = {_QWEN2_SPLIT: "qwen2", _LLAMA3_SPLIT: "llama-bpe"}
_BYTE_TOKEN = re.compile(r"^<0x[0-9A-F]{2}>$")
# Token types (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _looks_special(token: str) -> bool:
    """llama.cpp's `does_token_look_special`: added tokens it types as control regardless."""
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def build_vocab(tokenizer, n_rows: int, arch: str) -> Vocab:
    """The tokenizer's vocabulary, token types, merges or scores as llama.cpp expects them.

    Args:
        tokenizer: a fast (tokenizers-backed) tokenizer.
        n_rows: embedding rows; ids past the tokenizer are padded with `[PADi]` (unused) tokens.
        arch: the llama.cpp architecture (for error messages).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GGUFExportError("the tokenizer is not a fast (tokenizers) one; GGUF export needs it")
    spec = json.loads(backend.to_str())
    model = spec["model"]
    if model["type"] != "BPE":
        raise GGUFExportError(f"a {model['type']} tokenizer cannot be exported (BPE only)")
    if len(tokenizer) > n_rows:
        raise GGUFExportError(
            f"the tokenizer has {len(tokenizer)} tokens but the model embeds only {n_rows}"
        )
    byte_fallback = bool(model.get("byte_fallback"))
    added = {a["id"]: a for a in spec["added_tokens"]}
    by_id = {i: t for t, i in model["vocab"].items()}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_rows):
        if i in added:
            text = added[i]["content"]
            if added[i]["special"] or _looks_special(text):
                types.append(CONTROL)
            else:
                types.append(USER_DEFINED)
                if byte_fallback:  # llama.cpp matches user-defined pieces pre-normalised
                    text = text.replace("\u2581", " ")
            tokens.append(text)
        elif i in by_id:
            text = by_id[i]
            is_byte = byte_fallback and _BYTE_TOKEN.match(text)
            types.append(BYTE if is_byte else UNKNOWN if i == tokenizer.unk_token_id else NORMAL)
            tokens.append(text)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
    if byte_fallback:
        return Vocab(
            "llama",
            "default",
            tokens,
            types,
            scores=_sentencepiece_scores(tokens, types, merges),
            add_space_prefix=_adds_prefix_space(spec),
        )
    return Vocab("gpt2", _byte_level_pre(spec, arch), tokens, types, merges=merges)


def _sentencepiece_scores(tokens: list[str], types: list[int], merges: list[str]) -> list[float]:
    """Scores for llama.cpp's SentencePiece merger from the BPE merge ranks.

    llama.cpp merges the adjacent pair whose result has the highest score; the BPE model merges
    the pair of lowest rank. A normal token's score is minus the rank of the first merge that
    makes it, so both merge in the same order. Control and user-defined tokens get -1000 and
    bytes 0, as `convert_hf_to_gguf.py` writes them.
    """
    first_rank: dict[str, int] = {}
    for rank, merge in enumerate(merges):
        a, _, b = merge.partition(" ")
        first_rank.setdefault(a + b, rank)
    scores = []
    for token, kind in zip(tokens, types, strict=True):
        if kind in (CONTROL, USER_DEFINED, UNUSED):
            scores.append(-1000.0)
        elif kind == NORMAL:
            scores.append(-float(first_rank.get(token, 0)))
        else:
            scores.append(0.0)
    return scores


def _adds_prefix_space(spec: dict) -> bool:
    text = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer")])
    return '"Prepend"' in text or '"prepend_scheme": "always"' in text


def _byte_level_pre(spec: dict, arch: str) -> str:
    """The llama.cpp pre-tokenizer name whose split rule equals this tokenizer's."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    byte_level = steps[-1]
    plain = byte_level.get("use_regex", True) and not byte_level.get("add_prefix_space")
    if kinds == ["ByteLevel"] and plain:
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and plain:
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex in _SPLITS:
            return _SPLITS[regex]
    raise GGUFExportError(
        f"the tokenizer's pre-tokenizer ({json.dumps(pre)[:200]}) has no llama.cpp equivalent "
        f"that instill knows for {arch}; supported: GPT-2 byte-level, SmolLM, Qwen2, Llama 3"
    )


def _write_vocab(
    writer, vocab: Vocab, tokenizer, eos_id: int, stop_ids: list[int], template_source: str
) -> None:
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    # EOS is the end-of-turn token: llama.cpp and Ollama stop there, where the model learned to.
    writer.add_eos_token_id(eos_id)
    if len(stop_ids) > 1 or eos_id != tokenizer.eos_token_id:
        writer.add_eot_token_id(eos_id)
    if tokenizer.unk_token_id is not None:
        writer.add_unk_token_id(tokenizer.unk_token_id)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(bool(added_bos_text(tokenizer)))
    writer.add_add_eos_token(_adds_eos(tokenizer))
    writer.add_chat_template(template_source)


def _adds_eos(tokenizer) -> bool:
    if tokenizer.eos_token_id is None:
        return False
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[-1] == tokenizer.eos_token_id


def stop_strings(tokenizer, stop_ids: Sequence[int]) -> list[str]:
    """The texts of the stop tokens (end-of-turn first), for Ollama's `PARAMETER stop`."""
    return list(dict.fromkeys(tokenizer.convert_ids_to_tokens(list(stop_ids))))


# --------------------------------------------------------------------------- round trip


def check_round_trip(model, renderer, gguf_path: str | Path, quant_type: str) -> RoundTripReport:
    """Load `gguf_path` with transformers and compare it with `model` (see module docstring).

    Raises:
        RoundTripError: a tolerance is exceeded, an answer differs or the token ids differ.
    """
    import gc

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    rows, prompts = _probe_ids(renderer)
    source_logits = _logits(model, rows)  # each [seq, vocab]
    answers = [_greedy(model, p, GREEDY_TOKENS) for p in prompts]
    rounded = _rounded_copy(model, quant_type)
    rounded_logits = _logits(rounded, rows)
    del rounded
    gc.collect()
    with tempfile.TemporaryDirectory(prefix="instill-gguf-check-") as alone:
        # A directory holding only the file: transformers must not pick up anything else.
        name = "model.gguf"
        os.symlink(gguf_path.resolve(), Path(alone) / name)
        config = AutoConfig.from_pretrained(alone, gguf_file=name, **llama_cpp_reading(gguf_path))
        reloaded = AutoModelForCausalLM.from_pretrained(
            alone, gguf_file=name, config=config, dtype=torch.float32
        ).eval()
        reloaded_tok = AutoTokenizer.from_pretrained(alone, gguf_file=name)
    problems = []
    texts = [renderer.tokenizer.decode(r) for r in rows]
    ids_same = all(
        reloaded_tok(t, add_special_tokens=False)["input_ids"] == r
        for t, r in zip(texts, rows, strict=True)
    )
    if not ids_same:
        problems.append("the reloaded tokenizer gives other token ids for the probe texts")
    gguf_logits = _logits(reloaded, rows)
    scale = 1.0 + max(float(x.abs().max()) for x in source_logits)
    exact_tol = EXACT_RTOL * scale
    exact = _max_delta(gguf_logits, rounded_logits)
    rounding = _max_delta(rounded_logits, source_logits)
    delta = _max_delta(gguf_logits, source_logits)
    tol = 2.0 * rounding + exact_tol
    if exact > exact_tol:
        problems.append(
            f"max |delta logit| against the source rounded to {quant_type} in memory is "
            f"{exact:.3g} > {exact_tol:.3g} (float32 noise): the file does not hold this model"
        )
    if delta > tol:
        problems.append(f"max |delta logit| {delta:.3g} > tolerance {tol:.3g}")
    agree = total = decided = 0
    for src, got in zip(source_logits, gguf_logits, strict=True):
        sure = _margin(src) > 2 * tol
        same = src.argmax(-1) == got.argmax(-1)
        agree += int(same.sum())
        total += len(same)
        decided += int(sure.sum())
        if bool((sure & ~same).any()):
            problems.append("the argmax differs at a position the rounding cannot explain")
    answered = [p + a for p, a in zip(prompts, answers, strict=True)]
    greedy_same = all(
        _answer_agrees(src, got, len(p), a, 2 * tol)
        for src, got, p, a in zip(
            _logits(model, answered), _logits(reloaded, answered), prompts, answers, strict=True
        )
    )
    if not greedy_same:
        problems.append("a greedy answer differs before any near tie")
    report = RoundTripReport(
        max_abs_delta=delta,
        tolerance=tol,
        rounding_delta=rounding,
        exact_delta=exact,
        exact_tolerance=exact_tol,
        argmax_agreement=agree / total,
        decided_positions=decided,
        greedy_identical=greedy_same,
        greedy_tokens=GREEDY_TOKENS,
        token_ids_identical=ids_same,
        positions=total,
    )
    if problems:
        raise RoundTripError(
            f"GGUF round trip failed ({quant_type}); nothing was written: "
            + "; ".join(dict.fromkeys(problems))
        )
    return report


def llama_cpp_reading(gguf_path: str | Path) -> dict[str, Any]:
    """Config values as llama.cpp reads them from the file, where transformers' reader does not.

    transformers' GGUF reader leaves Gemma 3's query scale, sliding-window layout, local RoPE
    base and soft-cap at the config class defaults; llama.cpp takes them from these keys (and
    the query scale from `key_length`). Reading them from the file keeps the round trip a
    check of the file's content.
    """
    meta = read_metadata(gguf_path)
    value = meta.get

    if value("general.architecture") != "gemma3":
        return {}
    head_dim = value("gemma3.attention.key_length")
    pattern = value("gemma3.attention.sliding_window_pattern")
    layers = value("gemma3.block_count")
    kinds = (
        ["sliding_attention" if s else "full_attention" for s in pattern]
        if pattern is not None
        else ["full_attention"] * layers
    )
    rope = {
        "full_attention": {"rope_type": "default", "rope_theta": value("gemma3.rope.freq_base")}
    }
    local = value("gemma3.rope.freq_base_swa")
    rope["sliding_attention"] = {"rope_type": "default", "rope_theta": local or 10000.0}
    return {
        "query_pre_attn_scalar": head_dim,
        "layer_types": kinds,
        "rope_parameters": rope,
        "final_logit_softcapping": value("gemma3.final_logit_softcapping"),
    }


def read_metadata(gguf_path: str | Path) -> dict[str, Any]:
    """The file's metadata keys (token arrays included), read without the tensor data."""
    try:  # transformers' reader is ~100x faster than gguf.GGUFReader on a 262k vocabulary
        from transformers.integrations.gguf import read_gguf_metadata
    except ImportError:
        import gguf

        reader = gguf.GGUFReader(str(gguf_path))
        return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    keys = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")
    return read_gguf_metadata(str(gguf_path), keys)[0]


def _probe_ids(renderer) -> tuple[list[list[int]], list[list[int]]]:
    from instill.data.conversation import Conversation

    rows, prompts = [], []
    for msgs in PROBES:
        try:
            rows.append(renderer.encode(Conversation(msgs)).input_ids)
            prompts.append(renderer.encode_prompt(msgs[:-1]))
        except InstillError:  # e.g. a template without a system role
            continue
    if not rows:
        raise GGUFExportError("the chat template renders none of the probe conversations")
    return rows, prompts


def _rounded_copy(model, quant_type: str):
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(round_like_export(p.detach(), quant_type))
    return rounded.eval()


@torch.no_grad()
def _logits(model, rows: list[list[int]]) -> list[torch.Tensor]:
    """Each row's logits (`[seq, vocab]`), from one forward pass over the right-padded batch.

    No attention mask is needed: with causal attention a position never sees the padding after
    it, so each row's logits are its own.
    """
    width = max(len(r) for r in rows)
    batch = torch.tensor([r + [0] * (width - len(r)) for r in rows])  # [rows, width]
    logits = model(batch).logits.float()  # [rows, width, vocab]
    return [logits[i, : len(r)] for i, r in enumerate(rows)]


def _max_delta(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def _margin(logits: torch.Tensor) -> torch.Tensor:
    top2 = logits.topk(2, dim=-1).values  # [..., 2]
    return top2[..., 0] - top2[..., 1]


@torch.no_grad()
def _greedy(model, prompt: list[int], n: int) -> list[int]:
    """`n` greedy tokens after `prompt` (no stop: the comparison wants every step)."""
    ids, cache, out = torch.tensor([prompt]), None, []
    for _ in range(n):
        step = model(ids, cache=cache, use_cache=True, logits_to_keep=1)
        cache = step.cache
        out.append(int(step.logits[0, -1].argmax()))
        ids = torch.tensor([[out[-1]]])
    return out


def _answer_agrees(
    src: torch.Tensor, got: torch.Tensor, n_prompt: int, answer: list[int], near_tie: float
) -> bool:
    """Whether the other model decodes `answer` greedily too, up to the source's first near tie.

    `src` / `got` are both models' logits over prompt + answer (teacher forcing: as long as they
    agree, that is exactly what greedy decoding feeds them).
    """
    for pos, token in enumerate(answer):
        s, g = src[n_prompt - 1 + pos], got[n_prompt - 1 + pos]  # [vocab]
        if _margin(s) <= near_tie:
            return True  # beyond a near tie the answers may part; nothing more to compare
        if int(s.argmax()) != token or int(g.argmax()) != token:
            return False
    return True


# --------------------------------------------------------------------------- Ollama


@dataclass(frozen=True)
class TurnLayout:
    """A chat template cut into the literal texts around each message, found by rendering.

    Every user turn is followed by the assistant's header (its answer or the generation
    prompt), so `user_tail` holds the user suffix and the assistant prefix together.
    """

    head: str  # before the first user message when there is no system prompt
    system_head: str | None  # before the system prompt (None: no system role)
    system_tail: str  # between the system prompt and the first user message
    user_prefix: str  # before every later user message
    user_tail: str  # after every user message
    assistant_tail: str  # after every assistant message (end-of-turn + separator)


_S, _U1, _A1, _U2 = "\x02sys\x03", "\x02u1\x03", "\x02a1\x03", "\x02u2\x03"


def turn_layout(template) -> TurnLayout:
    """Find the literal texts of `template` (a ChatTemplate) by rendering sentinel messages."""

    def render(*msgs: Message, gen: bool = True) -> str:
        return template.render(list(msgs), add_generation_prompt=gen)

    u1, a1, u2 = Message("user", _U1), Message("assistant", _A1), Message("user", _U2)
    one = render(u1)
    head, _, user_tail = one.partition(_U1)
    two = render(u1, a1, u2)
    between = two.split(_A1, 1)[1].split(_U2, 1)[0]
    full = render(u1, a1, gen=False)
    assistant_tail = full.split(_A1, 1)[1]
    if not between.startswith(assistant_tail):
        raise ModelfileError(f"template {template.name!r}: the turn after an answer is irregular")
    user_prefix = between[len(assistant_tail) :]
    system_head, system_tail = None, ""
    try:
        with_system = render(Message("system", _S), u1)
        system_head, _, rest = with_system.partition(_S)
        system_tail = rest.split(_U1, 1)[0]
    except InstillError:
        pass
    return TurnLayout(head, system_head, system_tail, user_prefix, user_tail, assistant_tail)


def ollama_template(layout: TurnLayout, bos_text: str = "") -> str:
    """The layout as an Ollama Go template over `.Messages`.

    `bos_text`, which the tokenizer adds itself, is dropped from the front (Ollama adds it too).
    """

    def lit(text: str) -> str:
        if text.startswith(bos_text):
            text = text[len(bos_text) :]
        if "{{" in text or '"""' in text:
            raise ModelfileError(f"template text {text!r} cannot go into a Modelfile TEMPLATE")
        return text

    if layout.system_head is not None:
        first = (
            f"{{{{ if $system }}}}{lit(layout.system_head)}{{{{ $system }}}}"
            f"{layout.system_tail}{{{{ else }}}}{lit(layout.head)}{{{{ end }}}}"
        )
    else:
        first = lit(layout.head)
    return (
        '{{ $system := "" }}{{ range .Messages }}{{ if eq .Role "system" }}'
        "{{ $system = .Content }}{{ end }}{{ end }}"
        "{{ $first := true }}{{ range $i, $m := .Messages }}"
        "{{ $last := eq (len (slice $.Messages $i)) 1 }}"
        '{{ if eq $m.Role "user" }}'
        f"{{{{ if $first }}}}{first}{{{{ $first = false }}}}"
        f"{{{{ else }}}}{layout.user_prefix}{{{{ end }}}}"
        f"{{{{ $m.Content }}}}{layout.user_tail}"
        '{{ else if eq $m.Role "assistant" }}'
        f"{{{{ $m.Content }}}}{{{{ if not $last }}}}{layout.assistant_tail}{{{{ end }}}}"
        "{{ end }}{{ end }}"
    )


def modelfile_content(gguf_name: str, renderer, stop_ids: Sequence[int]) -> str:
    """An Ollama Modelfile for the exported file, checked against instill's own rendering.

    The Go template is rendered (with `render_go_template`) for every probe conversation and
    must equal the text instill's renderer prompts the model with, minus the BOS the tokenizer
    adds; otherwise `ModelfileError`.
    """
    tokenizer, template = renderer.tokenizer, renderer.template
    bos = added_bos_text(tokenizer)
    source = ollama_template(turn_layout(template), bos)
    for msgs in PROBES:
        for k in range(1, len(msgs) + 1):
            if msgs[k - 1].role != "user":
                continue
            try:
                want = template.render(list(msgs[:k]), add_generation_prompt=True)
            except InstillError:
                continue
            got = bos + render_go_template(source, msgs[:k])
            if got != want:
                raise ModelfileError(
                    f"template {template.name!r} has no faithful Ollama form: for "
                    f"{[m.role for m in msgs[:k]]} it renders {got!r}, instill {want!r}"
                )
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{source}"""']
    # The end-of-turn marker first, even where it is text rather than one token.
    for stop in dict.fromkeys([template.end_of_turn, *stop_strings(tokenizer, stop_ids)]):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    return "\n".join(lines) + "\n"


# A small evaluator of the Go-template subset `ollama_template` writes, so the Modelfile is tested
# against instill's renderer without Ollama: text, `{{ EXPR }}`, `$v := EXPR`, `$v = EXPR`,
# `range .Messages`, `range $i, $m := .Messages`, `if / else if / else / end`; expressions of
# literals, variables, fields and the functions eq, not, and, or, len, slice.

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_EXPR_TOKEN = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+')


def render_go_template(source: str, messages: Sequence[Message], system: str = "") -> str:
    """Render an Ollama template for `messages` (only the subset described above)."""
    items: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(source):
        if m.start() > pos:
            items.append(("text", source[pos : m.start()]))
        items.append(("action", m.group(1)))
        pos = m.end()
    if pos < len(source):
        items.append(("text", source[pos:]))
    root = {
        "Messages": [{"Role": m.role, "Content": m.text_for_chat()} for m in messages],
        "System": system,
    }
    tree, rest = _parse_block(items, 0)
    if rest != len(items):
        raise ModelfileError("unbalanced {{ end }} in template")
    out: list[str] = []
    _run(tree, [{"$": root}], root, out)
    return "".join(out)


def _parse_block(items, i):
    """Nodes until an `end` / `else` at this level; returns (nodes, index of that item)."""
    nodes = []
    while i < len(items):
        kind, body = items[i]
        if kind == "text":
            nodes.append(("text", body))
            i += 1
            continue
        word = body.split(" ", 1)[0]
        if word in ("end", "else"):
            return nodes, i
        if word in ("if", "range"):
            branches = []
            cond = body[len(word) :].strip()
            while True:
                inner, i = _parse_block(items, i + 1)
                branches.append((cond, inner))
                if i >= len(items):
                    raise ModelfileError(f"{{{{ {word} }}}} without {{{{ end }}}}")
                end_body = items[i][1]
                if end_body == "end":
                    break
                if word == "range":
                    raise ModelfileError("{{ else }} in range is not supported")
                cond = end_body[len("else") :].strip()
                cond = cond[len("if") :].strip() if cond.startswith("if") else "true"
            nodes.append((word, branches))
            i += 1
            continue
        nodes.append(("action", body))
        i += 1
    return nodes, i


def _run(nodes, scopes, dot, out) -> None:
    for kind, body in nodes:
        if kind == "text":
            out.append(body)
        elif kind == "if":
            for cond, inner in body:
                if _truthy(_eval(cond, scopes, dot)):
                    _run(inner, [*scopes, {}], dot, out)
                    break
        elif kind == "range":
            cond, inner = body[0]
            names, _, expr = cond.rpartition(":=")
            var_names = [v.strip() for v in names.split(",")] if names else []
            for i, item in enumerate(_eval(expr.strip() if names else cond, scopes, dot)):
                scope = {}
                if len(var_names) == 2:
                    scope = {var_names[0]: i, var_names[1]: item}
                elif len(var_names) == 1:
                    scope = {var_names[0]: item}
                _run(inner, [*scopes, scope], item, out)
        else:
            m = re.fullmatch(r"(\$\w+)\s*(:?=)\s*(.*)", body, re.S)
            if m:
                value = _eval(m.group(3), scopes, dot)
                if m.group(2) == ":=":
                    scopes[-1][m.group(1)] = value
                else:
                    next(s for s in reversed(scopes) if m.group(1) in s)[m.group(1)] = value
            else:
                out.append(str(_eval(body, scopes, dot)))


def _truthy(v) -> bool:
    return bool(v)


def _eval(expr: str, scopes, dot):
    tokens = _EXPR_TOKEN.findall(expr)
    value, rest = _eval_tokens(tokens, 0, scopes, dot)
    if rest != len(tokens):
        raise ModelfileError(f"cannot evaluate {expr!r}")
    return value


_FUNCS = {
    "eq": lambda a, b: a == b,
    "not": lambda a: not _truthy(a),
    "and": lambda a, b: a if not _truthy(a) else b,
    "or": lambda a, b: a if _truthy(a) else b,
    "len": len,
    "slice": lambda a, i: a[i:],
}


def _eval_tokens(tokens, i, scopes, dot):
    """A pipeline `f arg...` or a single operand, up to a `)` or the end."""
    if tokens[i] in _FUNCS:
        func = _FUNCS[tokens[i]]
        args = []
        i += 1
        while i < len(tokens) and tokens[i] != ")":
            arg, i = _operand(tokens, i, scopes, dot)
            args.append(arg)
        return func(*args), i
    return _operand(tokens, i, scopes, dot)


def _operand(tokens, i, scopes, dot):
    tok = tokens[i]
    if tok == "(":
        value, i = _eval_tokens(tokens, i + 1, scopes, dot)
        return value, i + 1  # past ")"
    if tok.startswith('"'):
        return json.loads(tok), i + 1
    if tok in ("true", "false"):
        return tok == "true", i + 1
    if re.fullmatch(r"-?\d+", tok):
        return int(tok), i + 1
    if tok.startswith("$"):
        name, *fields = tok.split(".")
        value = next(s[name] for s in reversed(scopes) if name in s)
    elif tok.startswith("."):
        value, fields = dot, tok[1:].split(".")
    else:
        raise ModelfileError(f"unknown template function {tok!r}")
    for f in fields:
        value = value[f]
    return value, i + 1
