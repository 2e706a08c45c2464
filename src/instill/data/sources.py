"""Reading raw rows from files, directories and hub datasets, each with its location.

Every row carries where it came from (`file:line N` for line-based files, `file[row N]` for JSON
arrays, Parquet and hub datasets), so a bad row's error can point at it. A line that cannot be
decoded is not raised here: it is yielded as a `RowError`, so that `on_bad_row: skip` can count it
like any other bad row.

Sources that are not files (the built-in suite: `path: "builtin:train"`) are plug-ins: a reader
registered with `register_source(name, reader)` serves every path `<name>:...`. This module
imports no plug-in; `instill.data.builtin` registers `builtin` itself when `instill.data` loads.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instill.errors import InstillError, RowError

SUFFIX_TYPES = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
}


@dataclass(frozen=True, slots=True)
class RawRow:
    """One undecoded row and where it came from."""

    data: Any
    location: str


def list_files(path: str | Path, exclude: Path | None = None) -> list[Path]:
    """The data files of a file or directory path.

    Directories are read recursively in sorted order, skipping hidden files and folders (editor
    and notebook checkpoints) and anything under `exclude` (the run's own output directory).
    """
    p = Path(path)
    if p.is_dir():
        skip = exclude.resolve() if exclude is not None else None
        files = sorted(
            f
            for f in p.rglob("*")
            if f.is_file()
            and f.suffix.lower() in SUFFIX_TYPES
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
            and not (skip is not None and f.resolve().is_relative_to(skip))
        )
        if not files:
            raise InstillError(
                f"{p}: directory has no data files (expected {', '.join(sorted(SUFFIX_TYPES))})"
            )
        return files
    return [p]


def file_type_of(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    kind = SUFFIX_TYPES.get(path.suffix.lower())
    if kind is None:
        raise InstillError(
            f"{path}: cannot tell the file type from the extension {path.suffix!r}; rename it to "
            f"one of {', '.join(sorted(SUFFIX_TYPES))} or set file_type in the source config"
        )
    return kind


def read_file(path: Path, file_type: str = "auto") -> Iterator[RawRow | RowError]:
    """Yield the rows of one file in order."""
    kind = file_type_of(path, file_type)
    if not path.is_file():
        raise InstillError(f"{path}: file not found")
    if kind == "jsonl":
        yield from _read_jsonl(path)
    elif kind == "json":
        yield from _read_json(path)
    elif kind == "csv":
        yield from _read_csv(path)
    elif kind == "parquet":
        yield from _read_parquet(path)
    else:  # pragma: no cover - guarded by the config schema
        raise InstillError(f"{path}: unsupported file type {kind!r}")


def _read_jsonl(path: Path) -> Iterator[RawRow | RowError]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:line {lineno}"
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield _unparsed(
                    RowError(
                        where,
                        None,
                        "undecodable_line",
                        f"line is not valid UTF-8 ({e.reason} at byte {e.start}); "
                        "re-encode the file as UTF-8",
                    ),
                    raw.decode("utf-8", errors="backslashreplace"),  # the bad bytes as \xNN
                )
                continue
            if not line.strip():
                continue
            try:
                yield RawRow(json.loads(line), where)
            except json.JSONDecodeError as e:
                yield _unparsed(
                    RowError(
                        where,
                        None,
                        "invalid_json",
                        f"line is not valid JSON ({e.msg} at column {e.colno}); each line "
                        "of a .jsonl file must be one JSON object",
                    ),
                    line,
                )


def _unparsed(error: RowError, text: str) -> RowError:
    """`error` carrying the text of the row it is about, without the line break that ends it,
    so that rejected.jsonl keeps the user's data."""
    error.raw = text.removesuffix("\n").removesuffix("\r")
    return error


def _read_json(path: Path) -> Iterator[RawRow | RowError]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise InstillError(f"{path}: not valid UTF-8 ({e.reason}); re-encode it as UTF-8") from e
    except json.JSONDecodeError as e:
        raise InstillError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); a .json file "
            "must hold one array of row objects (use .jsonl for one object per line)"
        ) from e
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))
    if not isinstance(data, list):
        raise InstillError(
            f"{path}: a .json data file must hold an array of row objects, got "
            f"{type(data).__name__}"
        )
    for i, row in enumerate(data):
        yield RawRow(row, f"{path}[row {i}]")


def _read_csv(path: Path) -> Iterator[RawRow | RowError]:
    """CSV rows as dicts, located by the physical line each record starts on.

    Cells are text; a cell holding a JSON list of objects (a message list) is decoded, so that
    conversations can live in a CSV column.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            # The physical lines of the record being read (the reader asks for no more), so a
            # malformed record's text can go to rejected.jsonl as it was written.
            lines: list[str] = []

            def tracked() -> Iterator[str]:
                for line in f:
                    lines.append(line)
                    yield line

            reader = csv.reader(tracked())
            header = next(reader, None)
            if not header:
                raise InstillError(f"{path}: CSV file has no header row")
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise InstillError(f"{path}: CSV header repeats column(s) {', '.join(dupes)}")
            last = reader.line_num
            lines.clear()
            for cells in reader:
                where = f"{path}:line {last + 1}"
                last = reader.line_num
                text = "".join(lines)
                lines.clear()
                if not cells:  # a blank line
                    continue
                if len(cells) != len(header):
                    yield _unparsed(
                        RowError(
                            where,
                            None,
                            "malformed_csv",
                            f"row has {len(cells)} fields but the header has {len(header)}; "
                            "quote fields that hold commas or line breaks",
                        ),
                        text,
                    )
                    continue
                yield RawRow({h: _csv_cell(c) for h, c in zip(header, cells, strict=True)}, where)
    except UnicodeDecodeError as e:
        raise InstillError(f"{path}: not valid UTF-8 ({e.reason}); re-encode it as UTF-8") from e


def _csv_cell(cell: str) -> Any:
    if cell.lstrip().startswith("[{"):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError:
            return cell
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return value
    return cell


def _read_parquet(path: Path) -> Iterator[RawRow | RowError]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise InstillError(f"{path}: cannot read Parquet file ({e})") from e
    i = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield RawRow(row, f"{path}[row {i}]")
            i += 1


def read_hub_dataset(dataset_id: str, split: str) -> Iterator[RawRow | RowError]:
    """Rows of a Hugging Face hub dataset (needs network access to the hub)."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as e:
        raise InstillError(
            f"{dataset_id}: not a local file or directory, and loading it as a hub dataset "
            f"(split {split!r}) failed: {type(e).__name__}: {e}. Check the path, or download the "
            "dataset and point `path` at the local files"
        ) from e
    for i, row in enumerate(ds):
        yield RawRow(row, f"hub:{dataset_id}[{split}][row {i}]")


# --------------------------------------------------------------------------- named sources

#: Reads the rows of a named source. It gets the whole path string (`builtin:train?seed=1`), so
#: the rows' locations and its error messages can name it.
SourceReader = Callable[[str], Iterator[RawRow | RowError]]

_SOURCES: dict[str, SourceReader] = {}
# At least two characters, so that a Windows drive letter (`C:`) is never a source name.
_SOURCE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]+$")


def register_source(name: str, reader: SourceReader) -> None:
    """Serve the data-source paths `<name>:<spec>` with `reader(path)`.

    Args:
        name: the prefix before the colon: lowercase letters, digits and `_`, at least two
            characters.
        reader: called with the whole path string; yields the source's rows (`RawRow`, or a
            `RowError` for a row that cannot be decoded).

    Raises:
        InstillError: a malformed or already registered name, or a reader that is not callable.
    """
    if not isinstance(name, str) or not _SOURCE_NAME_RE.match(name):
        raise InstillError(
            f"data source name {name!r} must match {_SOURCE_NAME_RE.pattern} (lowercase "
            "letters, digits and _, at least 2 characters)"
        )
    if name in _SOURCES:
        raise InstillError(
            f"data source {name!r} is already registered (by "
            f"{getattr(_SOURCES[name], '__module__', '?')}); register it under another name"
        )
    if not callable(reader):
        raise InstillError(
            f"data source {name!r}: the reader must be callable (path -> rows), got "
            f"{type(reader).__name__}"
        )
    _SOURCES[name] = reader


def registered_source_names() -> list[str]:
    """The names of the registered sources (`builtin`, ...)."""
    return sorted(_SOURCES)


def read_source(
    path: str, file_type: str = "auto", split: str = "train", exclude: Path | None = None
) -> Iterator[tuple[Path | None, Iterator[RawRow | RowError]]]:
    """Yield `(file, rows)` for every file of a source (one pair, `file=None`, for a hub id or
    a registered source such as `builtin:train`)."""
    name, colon, _ = path.partition(":")
    if colon and name in _SOURCES:
        yield None, _SOURCES[name](path)
        return
    p = Path(path)
    if p.exists():
        for f in list_files(p, exclude):
            yield f, read_file(f, file_type)
        return
    if colon and _SOURCE_NAME_RE.match(name):
        raise InstillError(
            f"{path}: unknown data source {name!r}; registered sources: "
            f"{', '.join(registered_source_names()) or 'none'} (or give a file, a directory or "
            "a hub dataset id like org/name)"
        )
    looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/", "~"))
    if looks_like_hub_id and not Path(path).suffix:
        yield None, read_hub_dataset(path, split)
        return
    raise InstillError(f"{path}: no such file or directory (nor a hub dataset id like org/name)")
