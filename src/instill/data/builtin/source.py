"""The built-in suite as a data source: `path: "builtin:<split>[?seed=N&per_family=N&...]"`.

Registered with `register_source("builtin", read_builtin)` when `instill.data.builtin` is
imported, so a config can train on the suite without any file.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs

from instill.data.builtin.suite import AUGMENT_SHARE, SPLITS, build_suite
from instill.data.sources import RawRow, register_source
from instill.errors import InstillError, RowError

PARAMETERS = (
    "seed",
    "per_family",
    "eval_per_family",
    "augment",
    "longform_per_family",
    "longform_augment",
)


def read_builtin(spec: str) -> Iterator[RawRow | RowError]:
    """Rows of the built-in instruction suite: `builtin:<split>[?seed=N&per_family=N]`.

    The split is `train`, `heldout_families`, `heldout_phrasings`, `format` or `heldout_if`;
    rows are in the OpenAI messages format, generated deterministically (no file needed).
    `eval_per_family` sets the size of the evaluation splits, `augment` the share of training
    rows given extra verifiable constraints (default 0.4; 0 for none); `longform_per_family` and
    `longform_augment` set both for the long-form writing families alone (default: the same as
    the others).
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
    kwargs = suite_kwargs(spec, params)
    suite = build_suite(**kwargs)
    for i, row in enumerate(suite.rows[split]):
        yield RawRow({"messages": row["messages"]}, f"{spec}[row {i}]")


register_source("builtin", read_builtin)


def suite_kwargs(spec: str, params: dict[str, str]) -> dict:
    """`build_suite` keyword arguments from a `builtin:` spec's parameters."""
    longform = params.get("longform_per_family")
    longform_share = params.get("longform_augment")
    try:
        kwargs = {
            "seed": int(params.get("seed", 0)),
            "train_per_family": int(params.get("per_family", 80)),
            "eval_per_family": int(params.get("eval_per_family", 6)),
            "augment_share": float(params.get("augment", AUGMENT_SHARE)),
            "longform_per_family": None if longform is None else int(longform),
            "longform_augment_share": None if longform_share is None else float(longform_share),
        }
    except ValueError as e:
        raise InstillError(
            f"{spec}: seed, per_family, eval_per_family and longform_per_family must be "
            f"integers, augment and longform_augment shares between 0 and 1 ({e})"
        ) from e
    for key, name in (("augment_share", "augment"), ("longform_augment_share", "longform_augment")):
        share = kwargs[key]
        if share is not None and not 0 <= share <= 1:
            raise InstillError(f"{spec}: {name} must be a share between 0 and 1, got {share}")
    for key, name in (
        ("train_per_family", "per_family"),
        ("longform_per_family", "longform_per_family"),
    ):
        if kwargs[key] is not None and kwargs[key] < 0:
            raise InstillError(f"{spec}: {name} must be 0 or more, got {kwargs[key]}")
    return kwargs
