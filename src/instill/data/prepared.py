"""The prepared dataset as contiguous int32 arrays: what `instill prepare` wrote, ready to batch.

`prepare` saves rows as an Arrow dataset (`datasets.Dataset.save_to_disk`, for users and their
tools) and, beside it in `arrays/`, each token column as one flat `.npy` buffer plus the row
offsets. The loop memory-maps those (`np.load(mmap_mode="r")`): no Python list per row, no copy
per rank (every process of a multi-GPU run maps the same read-only pages of the page cache), and
a batch is one vectorised gather (`train/data.py`). Arrow itself stores a list column as values
plus offsets too, but `save_to_disk` writes it in record batches of 1,000 rows, so one flat view
needs a copy; a dataset without `arrays/` (written by an older instill) is loaded that way.
Rows built from Python lists (tests, in-memory data) use the same layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instill.data.masking import IGNORE_INDEX

#: The folder inside a prepared dataset that holds the flat `.npy` columns.
ARRAYS_DIR = "arrays"


@dataclass(frozen=True)
class TokenRows:
    """Token rows in one flat buffer per column.

    Row `i` is `input_ids[offsets[i]:offsets[i + 1]]` (the same slice of `labels` and, for packed
    rows, `position_ids`).
    """

    input_ids: np.ndarray  # [total_tokens] int32
    labels: np.ndarray  # [total_tokens] int32, -100 where not trained
    position_ids: np.ndarray | None  # [total_tokens] int32, set for packed rows
    offsets: np.ndarray  # [rows + 1] int64, offsets[0] == 0
    supervised: np.ndarray  # [rows] int64: trained labels per row, its first label excluded

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per row, `[rows]` int64."""
        return np.diff(self.offsets)

    @property
    def packed(self) -> bool:
        return self.position_ids is not None

    def row(self, i: int) -> dict[str, np.ndarray]:
        """One row's columns (views, not copies)."""
        s, e = int(self.offsets[i]), int(self.offsets[i + 1])
        out = {"input_ids": self.input_ids[s:e], "labels": self.labels[s:e]}
        if self.position_ids is not None:
            out["position_ids"] = self.position_ids[s:e]
        return out

    def supervised_count(self, rows: Sequence[int]) -> int:
        """Trained tokens of `rows` together (a step's loss normaliser)."""
        return int(self.supervised[np.asarray(rows, dtype=np.int64)].sum()) if len(rows) else 0

    def token_count(self, rows: Sequence[int]) -> int:
        return int(self.lengths[np.asarray(rows, dtype=np.int64)].sum()) if len(rows) else 0

    @classmethod
    def from_arrays(
        cls,
        input_ids: np.ndarray,
        labels: np.ndarray,
        offsets: np.ndarray,
        position_ids: np.ndarray | None = None,
    ) -> TokenRows:
        offsets = np.asarray(offsets, dtype=np.int64)
        if input_ids.shape != labels.shape or len(input_ids) != offsets[-1]:
            raise ValueError(
                f"token rows do not line up: {len(input_ids)} input ids, {len(labels)} labels, "
                f"offsets ending at {offsets[-1]}"
            )
        if position_ids is not None and position_ids.shape != input_ids.shape:
            raise ValueError("position_ids must have one entry per token")
        return cls(input_ids, labels, position_ids, offsets, supervised_per_row(labels, offsets))

    @classmethod
    def from_lists(
        cls,
        input_ids: Sequence[Sequence[int]],
        labels: Sequence[Sequence[int]],
        position_ids: Sequence[Sequence[int]] | None = None,
    ) -> TokenRows:
        """Rows from Python lists (tests and in-memory data)."""
        offsets = np.zeros(len(input_ids) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in input_ids], out=offsets[1:])

        def flat(rows: Sequence[Sequence[int]]) -> np.ndarray:
            return np.fromiter((t for r in rows for t in r), dtype=np.int32, count=offsets[-1])

        pos = flat(position_ids) if position_ids is not None else None
        return cls.from_arrays(flat(input_ids), flat(labels), offsets, pos)

    @classmethod
    def load(cls, directory: str | Path) -> TokenRows:
        """Memory-map a dataset saved by `prepare` (`prepared/` or `prepared_val/`)."""
        arrays = Path(directory) / ARRAYS_DIR
        if (arrays / "offsets.npy").is_file():
            columns = {
                name: np.load(arrays / f"{name}.npy", mmap_mode="r")
                for name in ("input_ids", "labels", "position_ids", "offsets")
                if (arrays / f"{name}.npy").is_file()
            }
            return cls.from_arrays(
                columns["input_ids"],
                columns["labels"],
                np.asarray(columns["offsets"], dtype=np.int64),
                columns.get("position_ids"),
            )
        import datasets

        ds = datasets.load_from_disk(str(directory))
        if ds._indices is not None:  # pragma: no cover - prepare never saves a selection
            ds = ds.flatten_indices()
        return cls.from_table(ds.data.table)

    def save_arrays(self, directory: str | Path) -> None:
        """Write the flat columns as `.npy` files into `directory/arrays/` (see the docstring)."""
        arrays = Path(directory) / ARRAYS_DIR
        arrays.mkdir(parents=True, exist_ok=True)
        np.save(arrays / "offsets.npy", self.offsets)
        np.save(arrays / "input_ids.npy", np.ascontiguousarray(self.input_ids, dtype=np.int32))
        np.save(arrays / "labels.npy", np.ascontiguousarray(self.labels, dtype=np.int32))
        if self.position_ids is not None:
            pos = np.ascontiguousarray(self.position_ids, dtype=np.int32)
            np.save(arrays / "position_ids.npy", pos)

    @classmethod
    def from_table(cls, table) -> TokenRows:
        """Rows of a pyarrow table with list<int32> columns (one copy when it has many chunks)."""
        ids, offsets = _flat_column(table, "input_ids")
        labels, label_offsets = _flat_column(table, "labels")
        if not np.array_equal(offsets, label_offsets):
            raise ValueError("input_ids and labels rows have different lengths")
        pos = None
        if "position_ids" in table.column_names:
            pos, _ = _flat_column(table, "position_ids")
        return cls.from_arrays(ids, labels, offsets, pos)


def supervised_per_row(labels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Trained labels of each row, not counting a row's first label (it is never predicted)."""
    trained = labels != IGNORE_INDEX
    starts = offsets[:-1]
    nonempty = offsets[1:] > starts
    trained[starts[nonempty]] = False
    counts = np.zeros(len(starts), dtype=np.int64)
    if trained.size:
        cum = np.concatenate(([0], np.cumsum(trained, dtype=np.int64)))
        counts = cum[offsets[1:]] - cum[starts]
    return counts


def _flat_column(table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list<int32> column as (flat values, offsets), zero-copy where Arrow allows it."""
    import pyarrow as pa

    column = table.column(name)
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if not pa.types.is_list(array.type) and not pa.types.is_large_list(array.type):
        raise ValueError(f"column {name!r} is {array.type}, expected a list of integers")
    offsets = array.offsets.to_numpy().astype(np.int64)
    values = array.values.to_numpy(zero_copy_only=False)
    values = values[offsets[0] : offsets[-1]]
    if values.dtype != np.int32:
        values = values.astype(np.int32)
    return values, offsets - offsets[0]
