"""The inference bundle: everything needed to *use* a model, loaded and saved in one place.

A bundle is the model, its tokenizer, the renderer that prompts it exactly as training rendered
its rows, and the token ids that end an answer. Eval, quickstart, the training loop's samples and
its final export, chat, serve and merge all go through `load_bundle` / `save_bundle`, so a model
is prompted and stopped the same way everywhere.

What `load_bundle` accepts:

* a **base model** (registered name, HF dir, `.gguf`, tiny name): its own chat template if the
  tokenizer has one, else the built-in template `template` names (`auto` picks the built-in whose
  turn tokens the vocabulary has, so Gemma base gets Gemma's turn format);
* an instill **`final/` of a full fine-tune**: its saved tokenizer carries the exact training
  template (built-ins exported as Jinja), `instill.json` names the end-of-turn marker;
* an instill **`final/` holding a LoRA adapter** (or any PEFT adapter dir): the base comes from
  `instill.json` or the adapter config. A QLoRA adapter gets the base it was trained on: the
  dequantized NF4 weights (`round_trip_4bit`), not the full-precision ones it never saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from instill.atomic import atomic_directory
from instill.data.masking import Renderer
from instill.data.templates import ChatTemplate, get_template, prepare_tokenizer
from instill.errors import InstillError

INFO_FILE = "instill.json"


@dataclass
class Bundle:
    """A model ready for inference."""

    name: str  # the label used in reports
    model: nn.Module
    renderer: Renderer
    stop_ids: list[int]
    info: dict[str, Any] = field(default_factory=dict)  # instill.json of a tuned model

    @property
    def tokenizer(self):
        return self.renderer.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


@contextmanager
def contiguous_lm_head_input(model) -> Iterator[None]:
    """Hand the LM head a contiguous input while generating.

    `generate` computes logits for the last position only, and the model slices that position
    out of the hidden states: a non-contiguous [batch, 1, hidden] view. On CPU (torch 2.13, bf16)
    `F.linear` on such a view is ~100x slower when the weight does not require grad, which is
    the case for every tuned model (PEFT freezes the base): 13 s instead of 0.04 s per call for
    Gemma 3's 262k-row LM head, which made evaluating a tuned model 2.6x slower than its base.
    """
    head = model.get_output_embeddings()
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(
        lambda module, args: (args[0].contiguous(), *args[1:]) if args else None
    )
    try:
        yield
    finally:
        handle.remove()


def stop_token_ids(tokenizer, template: ChatTemplate) -> list[int]:
    """The ids that end an answer: the template's end-of-turn token, then the EOS token.

    An end-of-turn marker that is not one token of the vocabulary (it would map to the unknown
    token) is not a stop id; the EOS token always is.
    """
    ids = []
    eot = tokenizer.convert_tokens_to_ids(template.end_of_turn) if template.end_of_turn else None
    if eot is not None and tokenizer.convert_ids_to_tokens(eot) == template.end_of_turn:
        ids.append(eot)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def base_signature(model: nn.Module) -> dict[str, Any]:
    """What identifies a base architecture: an adapter only fits a base with the same one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base.config, "text_config", None) or base.config
    return {
        "model_type": cfg.model_type,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
    }


def read_info(directory: str | Path) -> dict:
    f = Path(directory) / INFO_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def load_bundle(
    path: str,
    name: str | None = None,
    adapter: str | None = None,
    template: str = "auto",
    dtype: torch.dtype | None = None,
    merge_adapter: bool = True,
    device: str | torch.device | None = None,
) -> Bundle:
    """Load a model for inference.

    Args:
        path: a base model, an instill `final/` dir of a full fine-tune, or a dir holding a
            LoRA adapter (see the module docstring).
        name: the label used in reports (defaults to the path).
        adapter: a LoRA adapter dir to put on top of `path`.
        template: for base models without an instill tokenizer: `auto`, a built-in or a file.
        dtype: weights dtype; default bf16 where the hardware has it, else fp32.
        merge_adapter: merge the adapter into the (in-memory) base weights for speed; the
            merge rounds to `dtype`, so pass False (or fp32) for exact unmerged inference.
        device: where to put the model (default: CUDA if available, else CPU).
    """
    from instill.models.load import (
        detect_compute_dtype,
        load_model,
        resize_embeddings_for_tokenizer,
    )

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or detect_compute_dtype(device)
    p: Path | None = Path(path)
    adapter_dir = Path(adapter) if adapter else None
    if adapter_dir is None and (p / "adapter_config.json").is_file():
        adapter_dir, p = p, None  # an adapter given as the model: find its base
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise InstillError(f"{adapter_dir}: not a LoRA adapter dir (no adapter_config.json)")
    tok_dir = adapter_dir if adapter_dir is not None else p
    base_path = str(p) if p is not None else _adapter_base(adapter_dir)
    renderer, info = _renderer(tok_dir, base_path, template)
    tokenizer, tpl = renderer.tokenizer, renderer.template
    model = load_model(base_path, dtype=dtype, vocab_size=len(tokenizer))
    resize_embeddings_for_tokenizer(model, tokenizer)
    if adapter_dir is not None:
        from peft import PeftModel

        adapter_info = read_info(adapter_dir)
        _check_base(adapter_dir, adapter_info, base_path, model)
        if adapter_info.get("method") == "qlora":
            _qlora_base(model, adapter_info, dtype)
        try:
            model = PeftModel.from_pretrained(model, str(adapter_dir))
        except (RuntimeError, ValueError, KeyError) as e:
            trained_on = _adapter_base(adapter_dir)
            hint = (
                f"it was trained on {trained_on!r}: pass that base"
                if trained_on != base_path
                else "pass the base it was trained on"
            )
            raise InstillError(
                f"{adapter_dir}: the adapter does not fit base {base_path!r} "
                f"({str(e).splitlines()[0][:300]}); {hint} (or one with the same "
                "architecture and vocabulary)"
            ) from e
        if merge_adapter:
            # Merged weights generate like a plain model (PEFT's generate path computes logits
            # for every prompt position, which costs minutes with a 262k vocabulary on CPU).
            model = model.merge_and_unload()
    model.to(device).eval()
    return Bundle(
        name=name or (str(adapter_dir) if adapter_dir is not None else str(path)),
        model=model,
        renderer=renderer,
        stop_ids=stop_token_ids(tokenizer, tpl),
        info=info,
    )


def _check_base(adapter_dir: Path, info: dict, base_path: str, model: nn.Module) -> None:
    """Refuse a base of another architecture than the adapter's (shapes may still fit)."""
    trained = info.get("base_signature")
    if trained and trained != base_signature(model):
        raise InstillError(
            f"{adapter_dir} was trained on base {info.get('base_model')!r} ({trained}), not on "
            f"{base_path!r} ({base_signature(model)}): pass the base it was trained on"
        )


def _qlora_base(model: nn.Module, info: dict, dtype: torch.dtype) -> None:
    """Make `model` the base a QLoRA adapter was trained on: its linear weights rounded to the
    training dtype, quantized to NF4 as training did, and dequantized to `dtype`."""
    from instill.models.load import round_trip_4bit

    trained = getattr(torch, str(info.get("base_dtype", "")), None)
    if isinstance(trained, torch.dtype) and trained != dtype:
        model.to(trained)  # training quantized weights loaded in this dtype
    round_trip_4bit(model, dtype)
    model.to(dtype)


def load_renderer(path: str, template: str = "auto") -> tuple[Renderer, list[int]]:
    """The renderer and stop ids of a base model or a full `final/` dir, without its weights."""
    p = Path(path)
    renderer, _ = _renderer(p if p.is_dir() else None, path, template)
    return renderer, stop_token_ids(renderer.tokenizer, renderer.template)


def load_adapter_renderer(adapter_dir: str | Path) -> tuple[Renderer, list[int], str]:
    """The renderer, stop ids and base model of a LoRA adapter dir, without loading weights.

    For serving several adapters on one base: the base is loaded once and each adapter brings
    the tokenizer and template it was trained with.
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InstillError(f"{adapter_dir}: not a LoRA adapter dir (no adapter_config.json)")
    base_path = _adapter_base(adapter_dir)
    renderer, _ = _renderer(adapter_dir, base_path, "auto")
    return renderer, stop_token_ids(renderer.tokenizer, renderer.template), base_path


def _renderer(tok_dir: Path | None, base_path: str, template: str) -> tuple[Renderer, dict]:
    """The renderer of a model: the instill tokenizer saved in `tok_dir` (with its exact training
    template), else the base's tokenizer with the built-in template `template` names."""
    from transformers import AutoTokenizer

    from instill.models.tokenizer_loading import load_tokenizer

    info = read_info(tok_dir) if tok_dir is not None else {}
    if tok_dir is not None and (tok_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        tpl = get_template("tokenizer", tokenizer, info.get("end_of_turn"))
    else:
        tokenizer = load_tokenizer(base_path)
        tpl = get_template(template, tokenizer)
    prepare_tokenizer(tokenizer, tpl)
    return Renderer(tokenizer, tpl), info


def save_bundle(
    directory: str | Path,
    bundle: Bundle,
    info: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save a bundle as transformers / PEFT / vLLM load it, atomically.

    Writes the weights (the adapter only, for a PEFT model), the tokenizer with the chat
    template the model was trained with, a `generation_config.json` whose EOS ids are the stop
    ids (so plain `generate` stops at the end of the turn), and `instill.json` (`info` plus the
    template name and its end-of-turn marker). `state_dict`, if given, is saved instead of the
    model's own (the full weights gathered from the ranks of a sharded FSDP / DeepSpeed run).
    """
    from transformers import GenerationConfig

    target = Path(directory)
    model, tokenizer = bundle.model, bundle.tokenizer
    with atomic_directory(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(str(tmp))
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        gen = GenerationConfig.from_model_config(base.config)
        stops = bundle.stop_ids
        gen.eos_token_id = stops if len(stops) > 1 else stops[0]
        gen.pad_token_id = tokenizer.pad_token_id
        gen.bos_token_id = tokenizer.bos_token_id
        gen.save_pretrained(str(tmp))
        template = bundle.renderer.template
        full_info = {**info, "template": template.name, "end_of_turn": template.end_of_turn}
        (tmp / INFO_FILE).write_text(json.dumps(full_info, indent=2))
    return target


def _adapter_base(adapter_dir: Path) -> str:
    info = read_info(adapter_dir)
    if info.get("base_model"):
        return info["base_model"]
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise InstillError(
            f"{adapter_dir}: cannot tell the adapter's base model; pass the base as the model "
            "path and this dir as the adapter"
        )
    return base
