"""Mixing after curation: per-source weights and caps, and the mixture's composition.

A source's `weight` says how many times each of its rows is used on average (2.0 doubles it,
0.5 keeps a seeded half); its `max_examples` caps what it contributes after the weight. A capped
source is mixed at the weight that gives exactly the cap, so its rows stay evenly used (no row
twice while another is left out). Items keep their order, repeats adjacent, so the output is
deterministic; training shuffles per epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def apply_weight(items: list[T], weight: float, rng: random.Random) -> list[T]:
    """Repeat each item `floor(weight)` times and add a seeded sample for the fraction."""
    whole = math.floor(weight)
    frac = weight - whole
    extra = set(rng.sample(range(len(items)), round(frac * len(items)))) if frac else set()
    out: list[T] = []
    for i, item in enumerate(items):
        out += [item] * (whole + (1 if i in extra else 0))
    return out


def effective_weight(rows: int, weight: float, max_examples: int | None) -> float:
    """The weight a source is mixed at: `weight`, lowered so that it yields at most the cap."""
    if max_examples is None or rows == 0:
        return weight
    return min(weight, max_examples / rows)


def mix_source(
    items: list[T], weight: float, max_examples: int | None, rng: random.Random
) -> list[T]:
    """One source's share of the mixture: `weight`, then the cap."""
    return apply_weight(items, effective_weight(len(items), weight, max_examples), rng)


def composition(
    names: Sequence[str],
    rows: Sequence[int],
    weights: Sequence[float],
    caps: Sequence[int | None],
    examples: Sequence[int],
) -> list[dict]:
    """Per source: rows after curation, weight, cap, examples in the mixture and their share."""
    total = sum(examples)
    return [
        {
            "source": name,
            "rows": n,
            "weight": w,
            "max_examples": cap,
            "capped": cap is not None and round(w * n) > cap,
            "examples": e,
            "share": round(e / total, 4) if total else 0.0,
        }
        for name, n, w, cap, e in zip(names, rows, weights, caps, examples, strict=True)
    ]
