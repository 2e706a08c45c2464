"""Atomic writes: a file or a directory appears complete or not at all.

Everything instill writes that a later step or another process reads (prepared data, checkpoints,
the final model, reports, caches of converted models) is written under a unique temporary name
beside its target and renamed into place only when complete. A kill at any moment leaves the
previous version or the new one, never half of one; the temporary name is unique per process and
call, so two writers never share it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(target: Path, tag: str = "tmp", prefix: str | None = None) -> Path:
    """A unique hidden name beside `target` (same filesystem, so `os.replace` is atomic).

    `prefix` replaces the default `.<name>.<tag>-` (caches sweep their own stale prefixes).
    """
    start = prefix if prefix is not None else f".{target.name}.{tag}-"
    return target.with_name(f"{start}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` through a temporary file and a rename."""
    with atomic_file(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """A temporary path for a writer that takes a file name; on success it becomes `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(
    target: str | Path, keep_existing: bool = False, prefix: str | None = None
) -> Iterator[Path]:
    """Fill a temporary directory; on success it becomes `target`.

    Args:
        target: the directory to publish.
        keep_existing: for caches shared between processes: if `target` appeared meanwhile
            (another process finished first), keep that one and discard ours. Otherwise an
            existing `target` is replaced (moved aside first, so readers never see a mix).
        prefix: the temporary directory's name prefix (see `temporary_sibling`).

    On an exception the temporary directory is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target, prefix=prefix)
    tmp.mkdir()
    try:
        yield tmp
        if keep_existing:
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
            return
        old = temporary_sibling(target, "old")
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def discard_directory(directory: Path, prefix: str) -> None:
    """Move a broken directory aside (atomic for readers), then delete it."""
    aside = directory.with_name(f"{prefix}broken-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        os.rename(directory, aside)
        shutil.rmtree(aside, ignore_errors=True)


def remove_stale(parent: Path, prefix: str, older_than_s: float = 3600.0) -> None:
    """Delete temporary directories `prefix*` in `parent` left by crashed writers."""
    now = time.time()
    for child in parent.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            if now - child.stat().st_mtime > older_than_s:
                shutil.rmtree(child, ignore_errors=True)
