"""The building blocks of the built-in instruction suite: families, phrasings, checked examples.

A *family* is one kind of task (reverse a word, add two numbers, extract dates as JSON...). It
has at least six *phrasings* (instruction templates that ask for the same thing in different
words) and a generator that, from a seeded `random.Random`, makes one task instance: the input,
the correct answer and a *checker* (a metric and its reference, or verifiable constraints) that
scores any answer to it. Everything is our own code and deterministic given the seed: no data is
downloaded.

Families register explicitly with `register_family`, which refuses duplicate names, bad names and
fewer than six distinct phrasings.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MIN_PHRASINGS = 6


@dataclass(frozen=True)
class Check:
    """How an answer is scored: a registered metric (`instill.eval.metrics`) with its reference
    and options, or `metric="constraints"` with a list of constraint dicts
    (`instill.eval.constraints`)."""

    metric: str
    reference: Any = None
    options: dict = field(default_factory=dict)
    constraints: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Instance:
    """What a family's generator returns for one task instance (before phrasing).

    Attributes:
        slots: values for the phrasing's `{placeholders}`.
        output: the correct answer (trained on).
        check: how any answer is scored.
        context: text given as the row's input/context (None: everything is in the instruction).
        history: earlier turns for multi-turn families, as (user, assistant) pairs; the phrased
            instruction is the *last* user turn.
        system: an optional system prompt.
    """

    slots: dict[str, Any]
    output: str
    check: Check
    context: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    system: str | None = None


@dataclass(frozen=True)
class Family:
    """A task family: name, category, phrasings and the instance generator."""

    name: str
    category: str
    phrasings: tuple[str, ...]
    generate: Callable[[random.Random], Instance]
    description: str = ""


_FAMILIES: dict[str, Family] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
CATEGORIES = (
    "classification",
    "extraction",
    "transformation",
    "arithmetic",
    "counting",
    "qa",
    "constrained",
    "summary",
    "cipher",
    "code",
    "multi_turn",
    "longform",
)


def register_family(
    name: str,
    category: str,
    phrasings: list[str] | tuple[str, ...],
    generate: Callable[[random.Random], Instance],
    description: str = "",
) -> Family:
    """Register a family; returns it.

    Raises:
        ValueError: duplicate or malformed name, unknown category, fewer than six distinct
            phrasings, or a phrasing whose placeholders differ from the others'.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"family name {name!r} must match {_NAME_RE.pattern}")
    if name in _FAMILIES:
        raise ValueError(f"family {name!r} is already registered")
    if category not in CATEGORIES:
        raise ValueError(
            f"family {name!r}: unknown category {category!r}; use one of {', '.join(CATEGORIES)}"
        )
    distinct = list(dict.fromkeys(phrasings))
    if len(distinct) < MIN_PHRASINGS:
        raise ValueError(
            f"family {name!r} needs at least {MIN_PHRASINGS} distinct phrasings, "
            f"got {len(distinct)}"
        )
    slots = {frozenset(re.findall(r"{(\w+)}", p)) for p in distinct}
    if len(slots) != 1:
        raise ValueError(
            f"family {name!r}: every phrasing must use the same placeholders, "
            f"got {sorted(map(sorted, slots))}"
        )
    family = Family(name, category, tuple(distinct), generate, description)
    _FAMILIES[name] = family
    return family


def families() -> dict[str, Family]:
    """Every registered family by name.

    The built-in family modules are imported (and so registered) by `instill.data.builtin`,
    whose `__init__` runs before this module can be imported; this module never imports them.
    """
    return dict(_FAMILIES)


def phrase(family: Family, phrasing: int, inst: Instance) -> str:
    """The instruction text: phrasing `phrasing` of `family` filled with the instance's slots."""
    return family.phrasings[phrasing].format(**inst.slots)
