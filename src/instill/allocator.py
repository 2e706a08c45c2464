"""The memory allocator the `instill` command runs under.

PyTorch's CPU tensors come from the C library's `malloc`. A training step allocates and frees
many large, short-lived blocks (activations, the LM head's logit chunks and their gradients), and
glibc's heap keeps ~2.4 GB of freed, fragmented memory above what Gemma 3 270M LoRA has live at
its peak; returning it (a low `mmap_threshold`) costs 1.7x the step time in page faults. mimalloc
with purging off (`MIMALLOC_PURGE_DELAY=-1`: freed pages are kept and reused, never handed back)
peaks ~2 GB lower at the same speed (bench/RESULTS.md, "Which allocator").

An allocator replaces `malloc` only when it is loaded before the program starts (`LD_PRELOAD`), so
the command line re-executes itself once, with the library preloaded, before doing anything else.
`INSTILL_ALLOCATOR` picks: `auto` (default: mimalloc from the `cmeel-mimalloc` wheel, a dependency
on Linux, else the system's jemalloc, else glibc), `mimalloc`, `jemalloc` or `system` (no
re-exec). From Python, start the interpreter the same way: `env $(python -m instill.allocator)
python train.py`.
"""

from __future__ import annotations

import ctypes.util
import os
import shlex
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from instill.errors import InstillError

ENV_VAR = "INSTILL_ALLOCATOR"
CHOICES = ("auto", "mimalloc", "jemalloc", "system")
# Set in the re-executed process: it never re-executes again, whatever it finds.
_GUARD = "INSTILL_ALLOCATOR_REEXEC"
# Where Debian/Ubuntu and Fedora put jemalloc when ctypes cannot name it.
_JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)


@dataclass(frozen=True)
class Allocator:
    """A preloadable allocator: its library and the settings it runs with (kept if the user set
    them)."""

    name: str
    library: Path
    settings: dict[str, str] = field(default_factory=dict)

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with the library preloaded first."""
        env = dict(os.environ if base is None else base)
        preload = [p for p in env.get("LD_PRELOAD", "").split() if p]
        if str(self.library) not in preload:
            env["LD_PRELOAD"] = " ".join([str(self.library), *preload])
        for key, value in self.settings.items():
            env.setdefault(key, value)
        return env


def _mimalloc() -> Allocator | None:
    try:
        files = metadata.distribution("cmeel-mimalloc").files or []
    except metadata.PackageNotFoundError:
        return None
    libs = sorted(
        (f for f in files if f.name.startswith("libmimalloc.so") and f.parent.name == "lib"),
        key=lambda f: len(f.name),
    )
    for f in libs:
        path = Path(str(f.locate())).resolve()
        if path.is_file():
            # Freed pages stay with the process for reuse: returning them is what costs glibc its
            # speed when it returns them, and what a training step re-allocates a moment later.
            return Allocator("mimalloc", path, {"MIMALLOC_PURGE_DELAY": "-1"})
    return None


def _jemalloc() -> Allocator | None:
    soname = ctypes.util.find_library("jemalloc")  # a soname such as libjemalloc.so.2, or None
    dirs = sorted({os.path.dirname(p) for p in _JEMALLOC_PATHS})
    named = [os.path.join(d, soname) for d in dirs] if soname else []
    for candidate in [*_JEMALLOC_PATHS, *named]:
        if os.path.isfile(candidate):
            return Allocator(
                "jemalloc",
                Path(candidate).resolve(),
                {"MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"},
            )
    return None


def choose(setting: str | None = None) -> Allocator | None:
    """The allocator `setting` (default: `$INSTILL_ALLOCATOR`, else `auto`) names; None for the
    system's. An explicit choice that is not installed is an error, `auto` falls back."""
    raw = os.environ.get(ENV_VAR, "") if setting is None else setting
    name = raw.strip().lower() or "auto"
    if name not in CHOICES:
        raise InstillError(
            f"{ENV_VAR}={raw!r} is not an allocator: use one of {', '.join(CHOICES)} "
            "(auto: mimalloc if installed, else jemalloc, else the system's)"
        )
    if name == "system" or not sys.platform.startswith("linux"):
        return None
    if name == "mimalloc":
        found = _mimalloc()
        if found is None:
            raise InstillError(
                f"{ENV_VAR}=mimalloc but mimalloc is not installed: `pip install cmeel-mimalloc`, "
                f"or set {ENV_VAR}=auto"
            )
        return found
    if name == "jemalloc":
        found = _jemalloc()
        if found is None:
            raise InstillError(
                f"{ENV_VAR}=jemalloc but no libjemalloc.so.2 was found: install it (Debian/Ubuntu: "
                f"`apt-get install libjemalloc2`), or set {ENV_VAR}=auto"
            )
        return found
    return _mimalloc() or _jemalloc()


def loaded() -> str | None:
    """The name of the preloadable allocator mapped into this process, if any (Linux only)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for name in ("mimalloc", "jemalloc"):
        if f"/lib{name}" in maps:
            return name
    return None


def describe() -> str:
    """What serves this process's `malloc`, for logs and `instill --version`."""
    name = loaded()
    if name is None:
        return "system (the C library's malloc; see INSTILL_ALLOCATOR)"
    return f"{name} (preloaded)"


def reexec(argv: list[str]) -> None:
    """Replace this process by `python -m instill.cli ARGV` with the chosen allocator preloaded,
    unless it is loaded already, none is chosen or available, or this is the re-executed process.
    Returns only when it does not re-execute."""
    if os.environ.get(_GUARD) or not sys.executable or loaded() is not None:
        return
    allocator = choose()
    if allocator is None:
        return
    env = allocator.environ()
    env[_GUARD] = allocator.name
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", "instill.cli", *argv], env)
    except OSError as e:  # cannot re-execute (a sandbox, an odd interpreter): run as it is
        print(f"warning: not re-executed under {allocator.name} ({e})", file=sys.stderr)


def main() -> int:
    """Print the environment (`KEY=value ...`) that preloads the chosen allocator, for `env`."""
    allocator = choose()
    if allocator is None:
        return 0
    env = allocator.environ({})
    print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
