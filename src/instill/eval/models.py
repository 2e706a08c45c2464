"""Load what is evaluated: a base model, a fully fine-tuned output dir, or base + LoRA adapter.

Whatever the kind, the result carries the renderer the model must be prompted with: an instill
output dir (`final/`) has its tokenizer with the exact training template saved beside it; a base
model uses its own chat template, else the built-in template `template` names (`auto` picks the
built-in whose turn tokens the vocabulary has, so Gemma base gets Gemma's turn format).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from instill.data.masking import Renderer
from instill.data.templates import get_template, prepare_tokenizer
from instill.errors import InstillError


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    renderer: Renderer
    stop_ids: list[int]


def load_for_eval(
    path: str,
    name: str | None = None,
    adapter: str | None = None,
    template: str = "auto",
    dtype: torch.dtype | None = None,
    merge_adapter: bool = True,
) -> LoadedModel:
    """Load a model for evaluation.

    Args:
        path: a base model (registered name, HF dir, .gguf, tiny name), an instill `final/` dir
            of a full fine-tune, or an instill `final/` dir holding a LoRA adapter.
        name: the label used in reports (defaults to the path).
        adapter: a LoRA adapter dir to put on top of `path`.
        template: for base models without an instill tokenizer: `auto`, a built-in or a file.
        dtype: weights dtype; default bf16 where the hardware has it, else fp32.
        merge_adapter: merge the adapter into the (in-memory) base weights for speed; the
            merge rounds to `dtype`, so pass False (or fp32) for exact unmerged evaluation.
    """
    from transformers import AutoTokenizer

    from instill.models.load import (
        detect_compute_dtype,
        load_model,
        resize_embeddings_for_tokenizer,
    )
    from instill.models.tokenizer_loading import load_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = dtype or detect_compute_dtype(device)
    p = Path(path)
    adapter_dir = Path(adapter) if adapter else None
    if adapter_dir is None and (p / "adapter_config.json").is_file():
        adapter_dir, p = p, None  # an adapter given as the model: find its base
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise InstillError(f"{adapter_dir}: not a LoRA adapter dir (no adapter_config.json)")
    tok_dir = adapter_dir if adapter_dir is not None else p
    base_path = str(p) if p is not None else _adapter_base(adapter_dir)
    if tok_dir is not None and (tok_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        info = _instill_info(tok_dir)
        tpl = get_template("tokenizer", tokenizer, info.get("end_of_turn"))
    else:
        tokenizer = load_tokenizer(base_path)
        tpl = get_template(template, tokenizer)
    prepare_tokenizer(tokenizer, tpl)
    model = load_model(base_path, dtype=dtype, vocab_size=len(tokenizer))
    resize_embeddings_for_tokenizer(model, tokenizer)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if merge_adapter:
            # Merged weights generate like a plain model (PEFT's generate path computes logits
            # for every prompt position, which costs minutes with a 262k vocabulary on CPU).
            model = model.merge_and_unload()
    model.to(device).eval()
    stop = [tokenizer.convert_tokens_to_ids(tpl.end_of_turn), tokenizer.eos_token_id]
    return LoadedModel(
        name=name or (str(adapter_dir) if adapter_dir is not None else str(path)),
        model=model,
        renderer=Renderer(tokenizer, tpl),
        stop_ids=[i for i in dict.fromkeys(stop) if i is not None],
    )


def _instill_info(directory: Path) -> dict:
    f = directory / "instill.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _adapter_base(adapter_dir: Path) -> str:
    info = _instill_info(adapter_dir)
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
