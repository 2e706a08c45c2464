"""Error types that carry what the user must fix.

Every error raised for user input names where the problem is (a config key, a file and line, a
template) and how to fix it. They subclass `ValueError` so that callers who only care about "bad
input" can catch one type.
"""

from __future__ import annotations


class InstillError(ValueError):
    """Base class of every error raised for bad user input."""


class ConfigError(InstillError):
    """The config (YAML or `key=value` overrides) does not validate.

    Attributes:
        problems: one line per problem, each naming the key.
    """

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config{where}:\n{lines}")


class RowError(InstillError):
    """One data row is malformed.

    Attributes:
        location: `file:line` (or `file:row N` for formats without lines).
        field: the offending field path inside the row, e.g. `conversations[2].from`.
        reason: a short machine-readable reason used to count skipped rows.
        message: the human explanation, including how to fix it.
    """

    def __init__(self, location: str, field: str | None, reason: str, message: str) -> None:
        self.location = location
        self.field = field
        self.reason = reason
        self.message = message
        self.row = None  # the raw row, attached by the reader for rejected.jsonl
        self.raw: str | None = None  # the text of a row that could not be decoded at all
        at = f" field '{field}':" if field else ""
        super().__init__(f"{location}:{at} {message}")


class TemplateError(InstillError):
    """A chat template cannot be used to render or mask conversations exactly."""
