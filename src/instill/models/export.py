"""Merge a LoRA / QLoRA adapter into its base, and prove the merge changed nothing.

`merge_adapter` loads the adapter twice over one base: unmerged in float32 (the reference: the
model exactly as training computed it) and merged, then rounded to the dtype the user asks for.
It measures the two on probe prompts before writing anything:

* **max |delta logit|** over every position of every probe, and
* **greedy-token agreement**: the reference answers each probe greedily; the share of those
  answer tokens that are also the merged model's argmax at the same position (teacher-forced, so
  one early disagreement does not count again at every later token).

A merge whose agreement is below `min_agreement` (default 99%) raises `MergeCheckError` and
writes nothing. What the anchors' users hit most is handled by construction:

* QLoRA adapters are merged into the *dequantized* 4-bit base weights they were trained against
  (`round_trip_4bit`), never into the full-precision weights they never saw, nor into 4-bit
  weights (which would round the update away);
* PEFT trainable tokens (the turn-token rows instill trains on base models) and resized
  embeddings are merged with the rest (`merge_and_unload` folds them in);
* the output is a plain transformers directory (`AutoModelForCausalLM.from_pretrained` loads
  it) with the tokenizer, the training chat template as Jinja and a `generation_config.json`
  whose EOS ids include the end-of-turn token (`save_bundle`), so it stops where it was trained
  to stop in every runtime.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from instill.data.conversation import Message
from instill.errors import InstillError
from instill.models.bundle import (
    Bundle,
    contiguous_lm_head_input,
    load_bundle,
    read_info,
    save_bundle,
)
from instill.models.load import ModelLoadError
from instill.models.registry import ModelPackageMissingError, UnknownModelError

#: Short instructions of several kinds: what a merge is checked on when no prompts are given.
PROBE_PROMPTS = (
    "Write a short poem about the sea.",
    "What is 17 plus 25? Answer with the number only.",
    "List three colors, one per line.",
    "Translate 'good morning' into French.",
    "Explain in two sentences why the sky is blue.",
    'Return a JSON object with keys "name" and "age" for Ada, who is 36.',
    "Summarize: The meeting moved from Monday to Friday because the room was booked.",
    "Reverse the word 'instruction'.",
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Parameter-name parts of what an adapter trains (everything else is the frozen base).
ADAPTER_PARAMETERS = ("lora_", "trainable_tokens_", "modules_to_save")


class MergeCheckError(InstillError):
    """The merged model does not answer like the unmerged adapter."""


@dataclass
class MergeCheck:
    """How the merged model compares with the unmerged adapter on the probes."""

    probes: int
    positions: int  # every position of every probe (prompt and answer)
    answer_tokens: int  # the reference's greedy answer tokens
    max_abs_logit_delta: float
    greedy_agreement: float  # share of answer tokens that are the merged model's argmax too


@dataclass
class MergeReport:
    """What `merge_adapter` wrote and measured."""

    out: str
    adapter: str
    base: str
    method: str
    dtype: str
    check: MergeCheck
    seconds: float
    size_bytes: int
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_dtype(name: str, adapter_dir: Path) -> torch.dtype:
    """`auto`: the dtype the base was trained in (`instill.json`), else bfloat16."""
    if name == "auto":
        trained = read_info(adapter_dir).get("base_dtype")
        # float64 (numerical test runs) is saved as float32; unknown or missing: bfloat16.
        name = "float32" if trained == "float64" else trained if trained in DTYPES else "bfloat16"
    if name not in DTYPES:
        raise InstillError(f"--dtype must be one of auto, {', '.join(DTYPES)}; got {name!r}")
    return DTYPES[name]


def merge_adapter(
    adapter: str | Path,
    out: str | Path,
    dtype: str = "auto",
    base: str | None = None,
    prompts: list[str] | None = None,
    min_agreement: float = 0.99,
    max_new_tokens: int = 24,
    device: str | None = None,
) -> MergeReport:
    """Merge the adapter in `adapter` into its base and write a plain model dir to `out`.

    Args:
        adapter: a LoRA / QLoRA adapter dir (an instill run's `final/`, or any PEFT adapter).
        out: the directory to write (replaced atomically, only after the check passed).
        dtype: weights dtype of the output: `auto` (the base's training dtype), `bfloat16`,
            `float16` or `float32`.
        base: the base model, when the adapter dir does not name one (or names a path that
            moved). A base whose architecture or vocabulary does not fit the adapter is refused.
        prompts: user messages to check on (default `PROBE_PROMPTS`).
        min_agreement: the smallest greedy-token agreement accepted (0..1).
        max_new_tokens: length of each reference answer.

    Raises:
        MergeCheckError: agreement below `min_agreement` (nothing is written).
        InstillError: `adapter` is not an adapter dir, or the base does not fit it.
    """
    started = time.perf_counter()
    adapter_dir = Path(adapter)
    if not (adapter_dir / "adapter_config.json").is_file():
        hint = (
            "it is already a full model: use it as it is"
            if (adapter_dir / "config.json").is_file()
            else "pass a LoRA adapter dir (a run's final/ trained with method: lora or qlora)"
        )
        raise InstillError(f"{adapter_dir}: nothing to merge (no adapter_config.json); {hint}")
    if not 0.0 <= min_agreement <= 1.0:
        raise InstillError(f"--min-agreement must be between 0 and 1, got {min_agreement}")
    out_dtype = resolve_dtype(dtype, adapter_dir)
    info = read_info(adapter_dir)
    method = info.get("method", "lora")
    trained_dtype = DTYPES.get(info.get("base_dtype", ""))
    ref = _load(adapter_dir, base, device, trained_dtype)
    merged = _load(adapter_dir, base, device, trained_dtype)
    merged.model = merged.model.merge_and_unload()
    convs = [[Message("user", p)] for p in (prompts or PROBE_PROMPTS)]
    sequences = [_greedy(ref, conv, max_new_tokens) for conv in convs]
    # Checked in float32 with the weights rounded as the output stores them: what the merge and
    # the output dtype change, without the compute dtype's own noise on top.
    _round_(merged.model, out_dtype)
    check = compare_models(ref.model, merged.model, sequences)
    merged.model.to(out_dtype)
    del ref
    if check.greedy_agreement < min_agreement:
        raise MergeCheckError(
            f"merged model agrees with the unmerged adapter on "
            f"{100 * check.greedy_agreement:.2f}% of {check.answer_tokens} greedy tokens "
            f"(max |delta logit| {check.max_abs_logit_delta:.4g}), below --min-agreement "
            f"{100 * min_agreement:.2f}%; nothing was written. Try --dtype float32 (rounding to "
            f"{str(out_dtype).removeprefix('torch.')} may be what moved it)"
        )
    base_name = base or merged.info.get("base_model") or _config_base(adapter_dir)
    out_info = {
        **{k: v for k, v in info.items() if k not in ("template", "end_of_turn")},
        "base_model": base_name,
        "method": "full",
        "merged_from": {"adapter": str(adapter_dir), "method": method},
        "merge_check": asdict(check),
    }
    target = save_bundle(out, merged, out_info)
    size = sum(f.stat().st_size for f in Path(target).rglob("*") if f.is_file())
    return MergeReport(
        out=str(target),
        adapter=str(adapter_dir),
        base=str(base_name),
        method=method,
        dtype=str(out_dtype).removeprefix("torch."),
        check=check,
        seconds=time.perf_counter() - started,
        size_bytes=size,
    )


def _load(
    adapter_dir: Path, base: str | None, device: str | None, trained_dtype: torch.dtype | None
) -> Bundle:
    """The unmerged adapter as training computed it, in float32.

    The frozen base is rounded to the dtype training stored it in (bf16 for the quickstart), so
    that the check measures what merging and the output dtype cost, not the difference between
    a float32 base and the bf16 one the adapter was trained on. The merge then adds W + BA once
    in float32 before the output is rounded to its dtype.
    """
    path, extra = (str(adapter_dir), None) if base is None else (base, str(adapter_dir))
    try:
        bundle = load_bundle(
            path, adapter=extra, dtype=torch.float32, merge_adapter=False, device=device
        )
    except (ModelLoadError, UnknownModelError, ModelPackageMissingError) as e:
        if base is not None:
            raise
        raise type(e)(
            f"{adapter_dir}: cannot load the base model it names ({e}); pass --base with the "
            "base it was trained on"
        ) from e
    if trained_dtype is not None:
        _round_(bundle.model, trained_dtype, skip=ADAPTER_PARAMETERS)
    _fold_trained_tokens(bundle.model)
    return bundle


def _fold_trained_tokens(model: nn.Module) -> None:
    """Write PEFT's trained token rows into the embedding (and untied head) weights.

    Unmerged, PEFT rebuilds the whole [vocab, hidden] matrix with those rows replaced at every
    forward (0.3 s a call for Gemma's 262k-row tied head on this CPU); replacing rows is exact,
    so folding them changes no logit (bit-identical) while the LoRA updates stay unmerged.
    """
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    for module in model.modules():
        if isinstance(module, TrainableTokensLayer) and not module.merged:
            module.merge()


@torch.no_grad()
def _round_(model: nn.Module, dtype: torch.dtype, skip: tuple[str, ...] = ()) -> None:
    """Round every parameter (but those whose name contains a `skip` part) to `dtype`, keeping
    float32 storage."""
    if dtype == torch.float32:
        return
    for name, p in model.named_parameters():
        if not any(tag in name for tag in skip):
            p.copy_(p.to(dtype))


def _config_base(adapter_dir: Path) -> str | None:
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    return cfg.get("base_model_name_or_path")


@torch.no_grad()
def _greedy(bundle: Bundle, conv: list[Message], max_new_tokens: int) -> tuple[list, list]:
    """The prompt ids and `max_new_tokens` greedy tokens of the model.

    It does not stop at a stop id: what follows is still the model's output, so comparing it
    checks more positions. Each step reruns the sequence (no KV cache: probes are short, and the
    check should not depend on a cache API) and computes only the last position's logits.
    """
    ids = bundle.renderer.encode_prompt(conv)
    answer: list[int] = []
    with contiguous_lm_head_input(bundle.model):  # a frozen head on a sliced view is slow on CPU
        for _ in range(max_new_tokens):
            x = torch.tensor([ids + answer], device=bundle.device)
            logits = bundle.model(input_ids=x, logits_to_keep=1).logits  # [1, 1, vocab]
            answer.append(int(logits[0, -1].argmax()))
    return ids, answer


@torch.no_grad()
def compare_models(
    reference: nn.Module, candidate: nn.Module, sequences: list[tuple[list, list]]
) -> MergeCheck:
    """Teacher-forced comparison of two models on `(prompt ids, answer ids)` pairs."""
    device = next(candidate.parameters()).device
    max_delta, agree, answered, positions = 0.0, 0, 0, 0
    for prompt, answer in sequences:
        ids = prompt + answer
        x = torch.tensor([ids], device=device)
        a = reference(input_ids=x).logits[0].float()  # [seq, vocab]
        b = candidate(input_ids=x).logits[0].float()
        max_delta = max(max_delta, float((a - b).abs().max()))
        positions += len(ids)
        # The logits at position i predict token i + 1: answer token j is predicted at
        # position len(prompt) - 1 + j.
        predicted = b[len(prompt) - 1 : len(ids) - 1].argmax(-1)  # [answer]
        agree += int((predicted == torch.tensor(answer, device=device)).sum())
        answered += len(answer)
    return MergeCheck(
        probes=len(sequences),
        positions=positions,
        answer_tokens=answered,
        max_abs_logit_delta=max_delta,
        greedy_agreement=agree / answered if answered else 1.0,
    )
