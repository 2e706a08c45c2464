"""The built-in suite as a data source: `path: "builtin:<split>[?seed=N&per_family=N]"`.

Registered with `register_source("builtin", read_builtin)` when `instill.data.builtin` is
imported, so a config can train on the suite without any file.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs

from instill.data.builtin.suite import SPLITS, build_suite
from instill.data.sources import RawRow, register_source
from instill.errors import InstillError, RowError

PARAMETERS = ("seed", "per_family", "eval_per_family")


def read_builtin(spec: str) -> Iterator[RawRow | RowError]:
    """Rows of the built-in instruction suite: `builtin:<split>[?seed=N&per_family=N]`.

    The split is `train`, `heldout_families`, `heldout_phrasings` or `format`; rows are in the
    OpenAI messages format, generated deterministically (no file needed). `eval_per_family` sets
    the size of the evaluation splits.
    """
    body = spec.removeprefix("builtin:")
    split, _, query = body.partition("?")
    if split not in SPLITS:
        raise InstillError(
            f"{spec}: unknown built-in split {split!r}; use one of {', '.join(SPLITS)}"
        )
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise InstillError(
            f"{spec}: unknown parameter(s) {', '.join(unknown)}; use {', '.join(PARAMETERS)}"
        )
    try:
        kwargs = {
            "seed": int(params.get("seed", 0)),
            "train_per_family": int(params.get("per_family", 80)),
            "eval_per_family": int(params.get("eval_per_family", 6)),
        }
    except ValueError as e:
        raise InstillError(f"{spec}: parameters must be integers ({e})") from e
    suite = build_suite(**kwargs)
    for i, row in enumerate(suite.rows[split]):
        yield RawRow({"messages": row["messages"]}, f"{spec}[row {i}]")


register_source("builtin", read_builtin)
