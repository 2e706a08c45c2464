"""Worker processes for the per-row work of curation (MinHash signatures, n-gram hashes).

Rows are cut into chunks in order and mapped with a forked pool, so results come back in input
order whatever the worker count: one worker and eight give the same output.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

PARALLEL_MIN_ROWS = 5000  # below this, starting workers costs more than it saves
CHUNK_ROWS = 2000


def usable_cores() -> int:
    """Cores this process may run on (containers can report the host's count otherwise)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def workers_for(num_proc: int, rows: int) -> int:
    """`num_proc`, or for 0 every usable core when there are enough rows to gain from them."""
    if num_proc > 0:
        return num_proc
    return usable_cores() if rows >= PARALLEL_MIN_ROWS else 1


def map_chunks(
    fn: Callable[[Sequence[Any]], T],
    items: Sequence[Any],
    num_proc: int,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> list[T]:
    """`[fn(chunk) for chunk in chunks(items)]`, in order, on `num_proc` forked workers.

    `fn` must be a module-level function (it is sent to the workers by name).
    """
    chunks = [items[i : i + chunk_rows] for i in range(0, len(items), chunk_rows)]
    workers = workers_for(num_proc, len(items))
    out: list[T] = []
    if workers > 1 and len(chunks) > 1 and "fork" in mp.get_all_start_methods():
        with mp.get_context("fork").Pool(min(workers, len(chunks))) as pool:
            for chunk, result in zip(chunks, pool.imap(fn, chunks), strict=True):
                out.append(result)
                if progress:
                    progress(len(chunk))
        return out
    for chunk in chunks:
        out.append(fn(chunk))
        if progress:
            progress(len(chunk))
    return out
