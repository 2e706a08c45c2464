"""Near dedup beyond one machine: the MinHash LSH steps as Arrow batch functions.

`dedup.near_duplicates` holds every signature of the corpus in one process (512 bytes a row:
~2 million rows per GB). For more, the same computation is split into pure functions of one
batch of rows, so an existing distributed engine runs them and does the shuffle; nothing here
schedules work, moves data or talks to other machines. Each function takes a batch as a mapping
of column name to values (a dict of lists or NumPy arrays, a `pyarrow.Table`/`RecordBatch`, a
pandas DataFrame) and returns a dict of NumPy arrays, which is what these engines accept:

1. signatures: `signature_batch`; `datasets`: `ds.map(fn, batched=True, num_proc=N)`, Ray Data:
   `ds.map_batches(fn)`, Spark: `df.mapInArrow(...)`.
2. band keys: `band_batch` (one output row per row x band), mapped the same way.
3. buckets: group by `(band, key)` and collect the ids: `pyarrow.Table.group_by` here, Ray Data
   `ds.groupby([...]).map_groups`, Spark `groupBy().agg(collect_list(...))`.
4. pairs: `bucket_pairs_batch`, mapped over the buckets.
5. verify: `similarity_batch` over the pairs joined with both rows' signatures (a lookup here, a
   join on a cluster).
6. stars: `dedup.star_clusters` on the verified edges, in one process (the driver).

Only the verified edges (pairs at or above the threshold) reach one machine in step 6; they are
few (a duplicate pair each), so the clustering stays local. Rows carry an integer `id` that is
their rank in the keep order (lower is kept), so every step is deterministic and
`near_duplicates_arrow` gives exactly the result of `dedup.near_duplicates` on the same rows
(`tests/test_curate.py` checks it). Spark needs a thin wrapper for `mapInArrow`
(`lambda it: (pa.RecordBatch.from_pydict(fn(b)) for b in it)`).

Why this path: `datasets` is already a dependency, its batch functions are plain Arrow in and
out, and Ray Data and Spark take the same functions unchanged, so a corpus can move from one
machine to a cluster without a second implementation. datatrove's MinHash pipeline was the
alternative, but it is built around its own document and reader types, web-document defaults
and on-disk stage files; adapting it would mean a second implementation of the steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from instill.data.curate.dedup import (
    HEADS,
    DuplicateOf,
    MinHashParams,
    band_keys,
    signatures,
    star_clusters,
)


def _column(batch: Any, name: str) -> list:
    """One column of a batch (dict, pyarrow table/record batch, pandas frame) as a list."""
    col = batch[name]
    if hasattr(col, "to_pylist"):
        return col.to_pylist()
    if hasattr(col, "tolist"):
        return col.tolist()
    return list(col)


def _matrix(batch: Any, name: str, dtype) -> np.ndarray:
    values = _column(batch, name)
    return np.asarray(values, dtype=dtype).reshape(len(values), -1)


def signature_batch(batch: Mapping, params: MinHashParams, text_column: str = "text") -> dict:
    """Step 1: `id` and `signature` (`[num_perm]` uint32) for each row of the batch."""
    texts = [t or "" for t in _column(batch, text_column)]
    return {
        "id": np.asarray(_column(batch, "id"), dtype=np.int64),
        "signature": signatures(texts, params),
    }


def band_batch(batch: Mapping, params: MinHashParams) -> dict:
    """Step 2: one output row per (row, band) with its band key; rows without shingles drop."""
    ids = np.asarray(_column(batch, "id"), dtype=np.int64)
    sig = _matrix(batch, "signature", np.uint32)
    valid = ~(sig == np.uint32(0xFFFFFFFF)).all(axis=1)
    ids, sig = ids[valid], sig[valid]
    bands = [band_keys(sig, params, b) for b in range(params.bands)]
    return {
        "band": np.repeat(np.arange(params.bands, dtype=np.int32), len(ids)),
        "key": np.concatenate(bands) if bands else np.zeros(0, np.uint64),
        "id": np.tile(ids, params.bands),
    }


def bucket_pairs_batch(batch: Mapping) -> dict:
    """Step 4: from buckets (`ids`: the ids sharing one band key), pairs `(head, tail)`:
    each id with the `HEADS` lowest ids of its bucket before it."""
    heads, tails = [], []
    for ids in _column(batch, "ids"):
        if len(ids) < 2:
            continue
        ordered = sorted(ids)
        for h in range(min(HEADS, len(ordered) - 1)):
            heads += [ordered[h]] * (len(ordered) - h - 1)
            tails += ordered[h + 1 :]
    return {"head": np.asarray(heads, dtype=np.int64), "tail": np.asarray(tails, dtype=np.int64)}


def similarity_batch(batch: Mapping) -> dict:
    """Step 5: the estimated Jaccard of each pair from its two signatures."""
    a = _matrix(batch, "head_signature", np.uint32)
    b = _matrix(batch, "tail_signature", np.uint32)
    return {
        "head": np.asarray(_column(batch, "head"), dtype=np.int64),
        "tail": np.asarray(_column(batch, "tail"), dtype=np.int64),
        "similarity": (a == b).mean(axis=1) if len(a) else np.zeros(0),
    }


def near_duplicates_arrow(
    texts: list[str], params: MinHashParams, num_proc: int | None = None
) -> list[DuplicateOf]:
    """The whole path on `datasets` + pyarrow on this machine (keep rule: the first row).

    Returns the same records as `dedup.near_duplicates(texts, range(len(texts)), params)`.
    """
    import datasets
    import pyarrow as pa

    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict({"id": list(range(len(texts))), "text": texts})
    signed = ds.map(
        signature_batch,
        batched=True,
        batch_size=1000,
        num_proc=num_proc,
        fn_kwargs={"params": params},
        remove_columns=["text"],
        load_from_cache_file=False,
    )
    banded = signed.map(
        band_batch,
        batched=True,
        batch_size=1000,
        num_proc=num_proc,
        fn_kwargs={"params": params},
        remove_columns=signed.column_names,
        load_from_cache_file=False,
    )
    buckets = banded.data.table.group_by(["band", "key"]).aggregate([("id", "list")])
    pairs = datasets.Dataset(pa.table({"ids": buckets["id_list"]})).map(
        bucket_pairs_batch,
        batched=True,
        remove_columns=["ids"],
        load_from_cache_file=False,
    )
    table = pairs.data.table
    if table.num_rows == 0:
        return []
    codes = np.unique(
        table["head"].to_numpy() * len(texts) + table["tail"].to_numpy()
    )  # a pair found in several bands is verified once
    head, tail = codes // len(texts), codes % len(texts)
    sig = np.asarray(signed["signature"], dtype=np.uint32)
    sims = similarity_batch(
        {
            "head": head,
            "tail": tail,
            "head_signature": sig[head],
            "tail_signature": sig[tail],
        }
    )
    edges = np.stack((sims["head"], sims["tail"]), axis=1)
    rank = np.arange(len(texts), dtype=np.int64)
    return star_clusters(edges, sims["similarity"], rank, params.threshold)
