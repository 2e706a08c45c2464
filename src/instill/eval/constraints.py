"""Verifiable instruction constraints: rules a response either follows or not, checked by code.

Our own implementation in the spirit of IFEval. A constraint is a plain dict, so task files can
carry it in JSONL next to the prompt:

    {"type": "word_count", "relation": "at_most", "n": 50}

Each type is registered once with `register_constraint`: a checker that returns a
`ConstraintResult`, a typed schema of its arguments (validated before anything is checked, so a
typo in a task file fails loudly instead of silently scoring every response), and a function that
renders the constraint as the one sentence a prompt would carry ("Answer in at most 50 words.").
`all_of`, `any_of` and `not` combine constraints and are validated recursively.

How text is counted (approximate by design; the tests pin the behaviour down):

- A **word** is a whitespace-separated token that contains at least one letter or digit. So
  "state-of-the-art", "don't", "3.14" and "e.g." are one word each, and a lone "-", "--" or "#"
  is none.
- A **sentence** ends at a token ending in `.`, `!`, `?` or `…` (closing quotes or brackets may
  follow), at a paragraph break, or at the end of the text, and must contain a word. A short list
  of abbreviations (`e.g.`, `i.e.`, `vs.`, `cf.`, `Mr.`, `Mrs.`, `Ms.`, `Dr.`, `Prof.`) does not
  end a sentence; any other abbreviation ("etc.", "U.S.") followed by a space does. Decimals
  ("3.14") never end one because no whitespace follows the dot.
- A **paragraph** is a run of non-blank lines; blank lines and `***` lines separate paragraphs,
  and empty paragraphs (leading, trailing or repeated separators) are not counted.
- A **bullet** is a line starting, after optional spaces, with `- `, `* ` or `• ` and some text;
  horizontal rules such as `- - -` are not bullets. A **numbered item** is a line starting with
  digits followed by `.` or `)` and a space ("1. ", "2) ").
- A **highlighted section** (`highlighted_sections`) is a non-empty `*text*` or `**text**` span
  on one line; **sections** (`section_count`) are marked "<splitter> <number>" ("SECTION 1").
  These, `postscript`, `two_responses`, `repeat_prompt`, `answer_options`,
  `nth_paragraph_first_word`, `letter_frequency`, `capital_word_frequency` and
  `paragraph_count`'s `separator` follow IFEval's checkers; each checker's docstring or comment
  says where ours differ.
- **Keywords** match case-insensitively as whole words: not inside a longer word ("cat" is not in
  "concatenate") but next to punctuation ("data-driven" contains "data"). The spaces of a
  multi-word keyword match any run of whitespace.
"""

from __future__ import annotations

import difflib
import json
import operator
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from instill.data.text_counts import (
    count_bullets,
    count_capital_words,
    count_highlights,
    count_keyword,
    count_numbered_items,
    count_sections,
    count_sentences,
    count_words,
    split_paragraphs,
)
from instill.errors import InstillError


class ConstraintError(InstillError):
    """A constraint dict (or a constraint registration) is malformed.

    Attributes:
        where: where the constraint came from (e.g. `tasks.jsonl:12`), or "".
        constraint_type: the constraint's `type`, when known.
        argument: the offending argument name, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        where: str = "",
        constraint_type: str | None = None,
        argument: str | None = None,
    ) -> None:
        self.where = where
        self.constraint_type = constraint_type
        self.argument = argument
        parts = [p for p in (where, constraint_type) if p]
        super().__init__(": ".join([*parts, message]))


@dataclass(frozen=True)
class ConstraintResult:
    """The outcome of checking one constraint.

    Attributes:
        passed: whether the response follows the constraint.
        detail: what was measured, e.g. "62 words, expected at most 50"; for a failure it says why.
    """

    passed: bool
    detail: str


Checker = Callable[[str, Mapping[str, Any]], ConstraintResult]
Describer = Callable[[Mapping[str, Any]], str]
# Checks between arguments that a schema cannot state ("nth <= n_paragraphs"): returns None, or
# (the offending argument, what is wrong with it).
ArgsCheck = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]


# --------------------------------------------------------------------------- argument kinds


class PositiveInt:
    """Argument kind: an integer >= 1 (booleans and floats such as 3.0 are refused)."""


class NonEmptyStr:
    """Argument kind: a string with at least one non-whitespace character."""


class NonEmptyStrList:
    """Argument kind: a non-empty list of non-empty strings."""


class NestedConstraint:
    """Argument kind: one constraint dict, validated recursively."""


class NestedConstraintList:
    """Argument kind: a non-empty list of constraint dicts, each validated recursively."""


def _is_text(v: object) -> bool:
    return isinstance(v, str) and bool(v.strip())


# kind -> (what is expected, in words; predicate on the value)
_KINDS: dict[type, tuple[str, Callable[[object], bool]]] = {
    PositiveInt: (
        "a positive integer",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    ),
    NonEmptyStr: ("a non-empty string", _is_text),
    NonEmptyStrList: (
        "a non-empty list of non-empty strings",
        lambda v: isinstance(v, list) and bool(v) and all(_is_text(x) for x in v),
    ),
    bool: ("true or false", lambda v: isinstance(v, bool)),
    NestedConstraint: (
        'a constraint object such as {"type": "no_commas"}',
        lambda v: isinstance(v, dict),
    ),
    NestedConstraintList: (
        "a non-empty list of constraint objects",
        lambda v: isinstance(v, list) and bool(v),
    ),
}

ParamKind = type | tuple[str, ...]  # a kind from _KINDS, or a tuple of allowed string values


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _ConstraintType:
    name: str
    checker: Checker
    params: dict[str, ParamKind]
    describe: Describer
    defaults: dict[str, Any] = field(default_factory=dict)
    check_args: ArgsCheck | None = None


_REGISTRY: dict[str, _ConstraintType] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register_constraint(
    name: str,
    checker: Checker,
    params: dict[str, ParamKind],
    describe: Describer,
    *,
    defaults: Mapping[str, Any] | None = None,
    check_args: ArgsCheck | None = None,
) -> None:
    """Register a constraint type.

    Args:
        name: the `type` value task files use; lowercase letters, digits and underscores.
        checker: `checker(response, args) -> ConstraintResult`; `args` holds every parameter,
            defaults filled in, and has already been validated.
        params: argument name -> kind: one of `PositiveInt`, `NonEmptyStr`, `NonEmptyStrList`,
            `bool`, `NestedConstraint`, `NestedConstraintList`, or a tuple of allowed strings.
        describe: `describe(args) -> str`, the one-sentence instruction a prompt carries.
        defaults: values of the optional parameters; every other parameter is required.
        check_args: optional `check_args(args) -> (argument, problem) | None`, run after the
            schema has validated, for rules that relate arguments or narrow a kind.

    Raises:
        ConstraintError: if the name is malformed or taken, or the schema is malformed.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConstraintError(f"constraint name {name!r} must match {_NAME_RE.pattern}")
    if name in _REGISTRY:
        raise ConstraintError(f"constraint name {name!r} is already registered")
    if not callable(checker) or not callable(describe):
        raise ConstraintError(f"constraint {name!r}: checker and describe must be callable")
    for key, kind in params.items():
        if key == "type" or not _NAME_RE.match(key):
            raise ConstraintError(
                f"constraint {name!r}: parameter name {key!r} must match {_NAME_RE.pattern} "
                "and must not be 'type'"
            )
        is_choice = isinstance(kind, tuple) and bool(kind) and all(isinstance(x, str) for x in kind)
        if not is_choice and kind not in _KINDS:
            raise ConstraintError(
                f"constraint {name!r}: parameter {key!r} has kind {kind!r}; use a tuple of "
                f"allowed strings or one of {', '.join(k.__name__ for k in _KINDS)}"
            )
    defaults = dict(defaults or {})
    extra = sorted(set(defaults) - set(params))
    if extra:
        raise ConstraintError(f"constraint {name!r}: defaults for unknown parameters {extra}")
    _REGISTRY[name] = _ConstraintType(name, checker, dict(params), describe, defaults, check_args)


def constraint_types() -> list[str]:
    """The registered constraint type names, sorted."""
    return sorted(_REGISTRY)


# --------------------------------------------------------------------------- validation


def _show(value: object) -> str:
    """A value as the user wrote it in JSON, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _nearest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}? " if close else ""


def _expected(kind: ParamKind) -> str:
    if isinstance(kind, tuple):
        return "one of " + ", ".join(repr(x) for x in kind)
    return _KINDS[kind][0]


def validate_constraint(c: dict, where: str = "") -> None:
    """Check that `c` is a well-formed constraint, recursing into combinations.

    Args:
        c: the constraint dict, e.g. `{"type": "word_count", "relation": "at_most", "n": 50}`.
        where: where it came from, e.g. `tasks.jsonl:12`; it starts every error message.

    Raises:
        ConstraintError: naming `where`, the type and the argument, what was expected and got.
    """
    known = ", ".join(constraint_types())
    if not isinstance(c, dict):
        raise ConstraintError(
            f'a constraint must be an object such as {{"type": "no_commas"}}, got {_show(c)}',
            where=where,
        )
    if "type" not in c:
        raise ConstraintError(
            f"constraint {_show(c)} has no 'type'; known types: {known}", where=where
        )
    ctype = c["type"]
    if not isinstance(ctype, str) or ctype not in _REGISTRY:
        hint = _nearest(ctype, constraint_types()) if isinstance(ctype, str) else ""
        raise ConstraintError(
            f"unknown constraint type {_show(ctype)}; {hint}known types: {known}", where=where
        )
    spec = _REGISTRY[ctype]
    valid = ", ".join(spec.params) or "none"
    for key in c:
        if key != "type" and key not in spec.params:
            hint = _nearest(str(key), list(spec.params))
            raise ConstraintError(
                f"unknown argument {key!r}; {hint}valid arguments: {valid}",
                where=where,
                constraint_type=ctype,
                argument=str(key),
            )
    for key, kind in spec.params.items():
        if key not in c:
            if key in spec.defaults:
                continue
            raise ConstraintError(
                f"missing required argument {key!r} ({_expected(kind)})",
                where=where,
                constraint_type=ctype,
                argument=key,
            )
        value = c[key]
        if isinstance(kind, tuple):
            if value not in kind:
                hint = _nearest(value, list(kind)) if isinstance(value, str) else ""
                raise ConstraintError(
                    f"{key!r} must be {_expected(kind)}, got {_show(value)}"
                    + (f"; {hint.strip()}" if hint else ""),
                    where=where,
                    constraint_type=ctype,
                    argument=key,
                )
            continue
        expected, ok = _KINDS[kind]
        if not ok(value):
            raise ConstraintError(
                f"{key!r} must be {expected}, got {_show(value)}",
                where=where,
                constraint_type=ctype,
                argument=key,
            )
        if kind is NestedConstraint:
            validate_constraint(value, _join_where(where, f"{ctype}.{key}"))
        elif kind is NestedConstraintList:
            for i, sub in enumerate(value):
                validate_constraint(sub, _join_where(where, f"{ctype}.{key}[{i}]"))
    problem = spec.check_args(_args(c)) if spec.check_args else None
    if problem:
        argument, message = problem
        raise ConstraintError(message, where=where, constraint_type=ctype, argument=argument)


def _join_where(where: str, path: str) -> str:
    return f"{where}: {path}" if where else path


def _args(c: Mapping[str, Any]) -> dict[str, Any]:
    spec = _REGISTRY[c["type"]]
    return {**spec.defaults, **{k: v for k, v in c.items() if k != "type"}}


# --------------------------------------------------------------------------- checking


def check_constraint(response: str, c: dict) -> ConstraintResult:
    """Check one response against one constraint (validated first).

    Raises:
        ConstraintError: if the constraint is malformed.
    """
    validate_constraint(c)
    return _check_valid(response, c)


def _check_valid(response: str, c: Mapping[str, Any]) -> ConstraintResult:
    return _REGISTRY[c["type"]].checker(response, _args(c))


def check_all(response: str, constraints: list[dict]) -> tuple[bool, list[ConstraintResult]]:
    """Check a response against every constraint.

    Returns:
        Whether all passed (True for an empty list), and one result per constraint, in order.
    """
    results = [check_constraint(response, c) for c in constraints]
    return all(r.passed for r in results), results


def describe_constraint(c: dict) -> str:
    """The instruction a prompt carries for `c`, e.g. "Answer in at most 50 words."

    Raises:
        ConstraintError: if the constraint is malformed.
    """
    validate_constraint(c)
    return _describe_valid(c)


def _describe_valid(c: Mapping[str, Any]) -> str:
    return _REGISTRY[c["type"]].describe(_args(c))


# --------------------------------------------------------------------------- counting text

# The counting rules live in instill.data.text_counts (the data layer's augmentation needs
# them too); they are re-exported here, where the module docstring documents them.


# --------------------------------------------------------------------------- helpers

LIST_RELATIONS = ("exactly", "at_least", "at_most")
RELATIONS = (*LIST_RELATIONS, "less_than", "more_than")
_RELATION_TEXT = {
    "exactly": "exactly",
    "at_least": "at least",
    "at_most": "at most",
    "less_than": "fewer than",
    "more_than": "more than",
}
_COMPARE = {
    "exactly": operator.eq,
    "at_least": operator.ge,
    "at_most": operator.le,
    "less_than": operator.lt,
    "more_than": operator.gt,
}


def _plural(n: int, noun: str, nouns: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def _snippet(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _quote_list(items: list[str], conjunction: str) -> str:
    quoted = [f'"{x}"' for x in items]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]


def _count_type(
    name: str,
    counter: Callable[[str], int],
    noun: str,
    nouns: str,
    relations: tuple[str, ...],
    sentence: str,
) -> None:
    """Register a "count of X compared with n" constraint; `sentence` has {rel}, {n}, {noun}."""

    def check(response: str, args: Mapping[str, Any]) -> ConstraintResult:
        got, rel, n = counter(response), args["relation"], args["n"]
        return ConstraintResult(
            _COMPARE[rel](got, n),
            f"{_plural(got, noun, nouns)}, expected {_RELATION_TEXT[rel]} {n}",
        )

    def describe(args: Mapping[str, Any]) -> str:
        n = args["n"]
        return sentence.format(
            rel=_RELATION_TEXT[args["relation"]], n=n, noun=_plural(n, noun, nouns)
        )

    register_constraint(name, check, {"relation": relations, "n": PositiveInt}, describe)


# --------------------------------------------------------------------------- built-in types

_FENCE = re.compile(r"^```(?:json)?[ \t]*\n(.*?)\n?```$", re.DOTALL | re.IGNORECASE)
_JSON_TYPE = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPE[type(value)]


def _check_json(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    text = response.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        return ConstraintResult(False, "empty response, expected JSON")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return ConstraintResult(
            False, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        )
    kind = _json_kind(value)
    want = args["top_level"]
    if want != "any" and kind != f"an {want}":
        return ConstraintResult(False, f"top-level JSON value is {kind}, expected an {want}")
    return ConstraintResult(True, f"valid JSON ({kind})" + (" in a fenced block" if fenced else ""))


def _describe_json(args: Mapping[str, Any]) -> str:
    what = {"any": "valid JSON", "object": "one JSON object", "array": "one JSON array"}
    return (
        f"Format your entire response as {what[args['top_level']]}, with no other text "
        "(a single ```json code block is allowed)."
    )


register_constraint(
    "json_format",
    _check_json,
    {"top_level": ("any", "object", "array")},
    _describe_json,
    defaults={"top_level": "any"},
)

_count_type(
    "bullet_count",
    count_bullets,
    "bullet point",
    "bullet points",
    LIST_RELATIONS,
    "Use {rel} {noun} in Markdown, each on its own line starting with '- '.",
)
_count_type(
    "numbered_list_count",
    count_numbered_items,
    "numbered item",
    "numbered items",
    LIST_RELATIONS,
    "Include {rel} {noun}, each on its own line starting with its number, like '1.' or '2.'.",
)
_DIVIDER = re.compile(r"\s?\*\*\*\s?")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")


def _divided_paragraphs(text: str) -> tuple[int, int | None]:
    """IFEval's `***` paragraphs: (count, index of the first empty inner part or None).

    The text is split on the markdown divider; an empty first or last part (a divider at the
    very start or end) is not counted, an empty part between two dividers is an error.
    """
    parts = _DIVIDER.split(text)
    count = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if 0 < i < len(parts) - 1:
                return count, i
            count -= 1
    return count, None


def _check_paragraphs(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    rel, n, sep = args["relation"], args["n"], args["separator"]
    if sep == "***":
        got, empty_at = _divided_paragraphs(response)
        if empty_at is not None:
            return ConstraintResult(
                False, f"paragraph {empty_at + 1} between two *** dividers is empty"
            )
        how = " separated by ***"
    elif sep == "blank_line":
        got = sum(1 for part in _BLANK_LINES.split(response) if part.strip())
        how = " separated by blank lines"
    else:
        got, how = len(split_paragraphs(response)), ""
    return ConstraintResult(
        _COMPARE[rel](got, n),
        f"{_plural(got, 'paragraph')}{how}, expected {_RELATION_TEXT[rel]} {n}",
    )


def _describe_paragraphs(args: Mapping[str, Any]) -> str:
    how = {
        "any": "separated by blank lines",
        "blank_line": "separated by blank lines (not by *** lines)",
        "***": "separated by the markdown divider ***",
    }
    noun = _plural(args["n"], "paragraph")
    return f"Write {_RELATION_TEXT[args['relation']]} {noun}, {how[args['separator']]}."


# `separator`: "any" (blank lines or `***` lines, see `split_paragraphs`), "blank_line" (only
# blank lines; a `***` line is text) or "***" (IFEval's markdown-divider split).
register_constraint(
    "paragraph_count",
    _check_paragraphs,
    {"relation": LIST_RELATIONS, "n": PositiveInt, "separator": ("any", "blank_line", "***")},
    _describe_paragraphs,
    defaults={"separator": "any"},
)
_count_type("word_count", count_words, "word", "words", RELATIONS, "Answer in {rel} {noun}.")
_count_type(
    "sentence_count", count_sentences, "sentence", "sentences", RELATIONS, "Answer in {rel} {noun}."
)


def _case_type(name: str, case: str, is_wrong: Callable[[str], bool], other: str) -> None:
    def check(response: str, args: Mapping[str, Any]) -> ConstraintResult:
        if not any(ch.islower() or ch.isupper() for ch in response):
            return ConstraintResult(False, f"no cased letters, so the response is not {case}")
        wrong = [(i, ch) for i, ch in enumerate(response) if is_wrong(ch)]
        if wrong:
            i, ch = wrong[0]
            return ConstraintResult(
                False, f"{_plural(len(wrong), other + ' letter')}, first {ch!r} at position {i}"
            )
        return ConstraintResult(True, f"all letters are {case}")

    def describe(args: Mapping[str, Any]) -> str:
        return f"Write your entire response in {case} letters only; no {other} letters."

    register_constraint(name, check, {}, describe)


_case_type("lowercase", "lowercase", str.isupper, "uppercase")
_case_type("uppercase", "uppercase", str.islower, "lowercase")


def _check_include(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    need = args["min_count"]
    counts = {kw: count_keyword(response, kw) for kw in args["keywords"]}
    missing = [f'"{kw}" ({_plural(k, "time")})' for kw, k in counts.items() if k < need]
    if missing:
        return ConstraintResult(
            False,
            f"too few of {', '.join(missing)}, expected each at least {_plural(need, 'time')}",
        )
    return ConstraintResult(
        True, "; ".join(f'"{kw}" {_plural(k, "time")}' for kw, k in counts.items())
    )


def _describe_include(args: Mapping[str, Any]) -> str:
    kws = args["keywords"]
    noun = "keyword" if len(kws) == 1 else "keywords"
    times = f", each at least {args['min_count']} times" if args["min_count"] > 1 else ""
    return f"Include the {noun} {_quote_list(kws, 'and')} in your response{times}."


register_constraint(
    "include_keywords",
    _check_include,
    {"keywords": NonEmptyStrList, "min_count": PositiveInt},
    _describe_include,
    defaults={"min_count": 1},
)


def _check_forbidden(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    found = [(w, count_keyword(response, w)) for w in args["words"]]
    found = [(w, k) for w, k in found if k]
    if found:
        listed = ", ".join(f'"{w}" ({_plural(k, "time")})' for w, k in found)
        return ConstraintResult(False, f"used forbidden {listed}")
    return ConstraintResult(True, "no forbidden words")


register_constraint(
    "forbidden_words",
    _check_forbidden,
    {"words": NonEmptyStrList},
    lambda a: f"Do not use the words {_quote_list(a['words'], 'or')} in your response.",
)


def _check_frequency(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    got, rel, n = count_keyword(response, args["keyword"]), args["relation"], args["n"]
    return ConstraintResult(
        _COMPARE[rel](got, n),
        f'"{args["keyword"]}" appears {_plural(got, "time")}, expected {_RELATION_TEXT[rel]} {n}',
    )


register_constraint(
    "keyword_frequency",
    _check_frequency,
    {"keyword": NonEmptyStr, "relation": RELATIONS, "n": PositiveInt},
    lambda a: (
        f'Use the word "{a["keyword"]}" {_RELATION_TEXT[a["relation"]]} '
        f"{_plural(a['n'], 'time')} in your response."
    ),
)


def _affix_type(name: str, at_start: bool) -> None:
    where = "start" if at_start else "end"

    def check(response: str, args: Mapping[str, Any]) -> ConstraintResult:
        text, phrase = response.strip(), args["phrase"].strip()
        a, b = (text.casefold(), phrase.casefold()) if args["ignore_case"] else (text, phrase)
        ok = a.startswith(b) if at_start else a.endswith(b)
        if ok:
            return ConstraintResult(True, f"{where}s with {phrase!r}")
        actual = text[: len(phrase)] if at_start else text[-len(phrase) :]
        return ConstraintResult(False, f"{where}s with {_snippet(actual)}, expected {phrase!r}")

    def describe(args: Mapping[str, Any]) -> str:
        tail = "" if at_start else ", with nothing after it"
        return f'{where.capitalize()} your response with the exact phrase "{args["phrase"]}"{tail}.'

    register_constraint(
        name,
        check,
        {"phrase": NonEmptyStr, "ignore_case": bool},
        describe,
        defaults={"ignore_case": True},
    )


_affix_type("starts_with", at_start=True)
_affix_type("ends_with", at_start=False)


def _check_quotation(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    text = response.strip()
    if not text:
        return ConstraintResult(False, "empty response, expected one wrapped in double quotes")
    if text[0] not in '"“':
        return ConstraintResult(False, f"does not start with a double quote: {_snippet(text[:10])}")
    if len(text) < 2 or text[-1] not in '"”':
        return ConstraintResult(False, f"does not end with a double quote: {_snippet(text[-10:])}")
    if not text[1:-1].strip():
        return ConstraintResult(False, "nothing inside the double quotes")
    return ConstraintResult(True, "wrapped in double quotes")


register_constraint(
    "quotation",
    _check_quotation,
    {},
    lambda a: "Wrap your entire response in double quotation marks.",
)

_TITLE = re.compile(r"<<([^<>\n]*)>>")


def _check_title(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    titles = _TITLE.findall(response)
    named = [t.strip() for t in titles if t.strip()]
    if named:
        return ConstraintResult(True, f"title <<{named[0]}>>")
    if titles:
        return ConstraintResult(False, "the title in double angular brackets is empty")
    return ConstraintResult(False, "no title in double angular brackets, such as <<My Title>>")


register_constraint(
    "title",
    _check_title,
    {},
    lambda a: "Give your answer a title wrapped in double angular brackets, such as <<My Title>>.",
)


def _check_no_commas(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    n = response.count(",")
    if n:
        at = response.index(",")
        context = response[max(0, at - 15) : at + 15]
        return ConstraintResult(False, f"{_plural(n, 'comma')}, first in {context!r}")
    return ConstraintResult(True, "no commas")


register_constraint(
    "no_commas",
    _check_no_commas,
    {},
    lambda a: "Do not use any commas in your response.",
)

# `[label]` with some text inside, not a Markdown link `[label](url)`.
_PLACEHOLDER = re.compile(r"\[([^\[\]\n]*)\](?!\()")


def _check_placeholders(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    found = [m.group(0) for m in _PLACEHOLDER.finditer(response) if m.group(1).strip()]
    shown = f" ({', '.join(found[:5])}{', ...' if len(found) > 5 else ''})" if found else ""
    n = args["n"]
    return ConstraintResult(
        len(found) >= n, f"{_plural(len(found), 'placeholder')}{shown}, expected at least {n}"
    )


register_constraint(
    "placeholder_count",
    _check_placeholders,
    {"n": PositiveInt},
    lambda a: (
        f"Include at least {_plural(a['n'], 'placeholder')} in square brackets, such as [address]."
    ),
)


def _check_ascii(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    bad = [(i, ch) for i, ch in enumerate(response) if ord(ch) > 127]
    if bad:
        i, ch = bad[0]
        return ConstraintResult(
            False,
            f"{_plural(len(bad), 'non-ASCII character')}, first {ch!r} (U+{ord(ch):04X}) "
            f"at position {i}",
        )
    return ConstraintResult(True, "only ASCII characters")


# A cheap stand-in for "answer in English": it cannot tell English from French without accents.
register_constraint(
    "response_language_ascii",
    _check_ascii,
    {},
    lambda a: (
        "Use only ASCII characters in your response: no accented letters, emoji or "
        "non-Latin scripts."
    ),
)


# --------------------------------------------------------------------------- IFEval-style types
#
# The following types follow IFEval's checkers (our own code, the same semantics); where the
# original counts in a way ours does not (e.g. words), the docstring of each says which is used.

# Unlike IFEval's unanchored search, the marker must start a line ("see the P.S. below" does not
# count); the optional spaces and the case are IFEval's.
_POSTSCRIPT = {
    "P.S.": re.compile(r"^\s*p\.\s?s\.", re.IGNORECASE | re.MULTILINE),
    "P.P.S.": re.compile(r"^\s*p\.\s?p\.\s?s", re.IGNORECASE | re.MULTILINE),
}


def _check_postscript(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    marker = args["marker"]
    found = _POSTSCRIPT[marker].search(response)
    if found:
        line = response[found.start() :].strip().splitlines()[0]
        return ConstraintResult(True, f"postscript {_snippet(line)}")
    return ConstraintResult(False, f"no line starts with {marker!r}, expected a postscript")


register_constraint(
    "postscript",
    _check_postscript,
    {"marker": ("P.S.", "P.P.S.")},
    lambda a: (
        f"At the end of your response, please explicitly add a postscript starting with "
        f"{a['marker']}"
    ),
    defaults={"marker": "P.S."},
)

register_constraint(
    "highlighted_sections",
    lambda r, a: ConstraintResult(
        count_highlights(r) >= a["n"],
        f"{_plural(count_highlights(r), 'highlighted section')}, expected at least {a['n']}",
    ),
    {"n": PositiveInt},
    lambda a: (
        f"Highlight at least {_plural(a['n'], 'section')} in your answer with markdown, "
        "i.e. *highlighted section*."
    ),
)


def _check_sections(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    got, n, splitter = count_sections(response, args["splitter"]), args["n"], args["splitter"]
    return ConstraintResult(
        got >= n,
        f"{_plural(got, 'section')} marked '{splitter} <number>', expected at least {n}",
    )


register_constraint(
    "section_count",
    _check_sections,
    {"splitter": NonEmptyStr, "n": PositiveInt},
    lambda a: (
        f"Your response must have {_plural(a['n'], 'section')}. Mark the beginning of each "
        f"section with {a['splitter']} X, such as {a['splitter']} 1."
    ),
)

RESPONSE_SEPARATOR = "******"


def _check_two_responses(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    parts = response.split(RESPONSE_SEPARATOR)
    kept = []
    for i, part in enumerate(parts):
        if part.strip():
            kept.append(part.strip())
        elif 0 < i < len(parts) - 1:  # an empty first or last part is allowed, as in IFEval
            return ConstraintResult(False, f"response {i + 1} between two ****** is empty")
    if len(kept) != 2:
        return ConstraintResult(
            False, f"{_plural(len(kept), 'response')} separated by ******, expected 2"
        )
    if kept[0] == kept[1]:
        return ConstraintResult(False, "the two responses are identical")
    return ConstraintResult(True, "two different responses separated by ******")


register_constraint(
    "two_responses",
    _check_two_responses,
    {},
    lambda a: (
        "Give two different responses, separated by 6 asterisk symbols (******) and nothing else."
    ),
)


def _check_repeat(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    prompt = args["prompt"].strip()
    text = response.strip()
    if text.lower().startswith(prompt.lower()):
        return ConstraintResult(True, "starts by repeating the request")
    at = next(
        (i for i, (a, b) in enumerate(zip(text.lower(), prompt.lower(), strict=False)) if a != b),
        min(len(text), len(prompt)),
    )
    return ConstraintResult(
        False,
        f"does not start with the request: differs at character {at} "
        f"({_snippet(text[at : at + 20])}, expected {_snippet(prompt[at : at + 20])})",
    )


register_constraint(
    "repeat_prompt",
    _check_repeat,
    {"prompt": NonEmptyStr},
    lambda a: (
        "First repeat the request word for word without change, then give your answer; say "
        "nothing before the repeated request, and do not repeat this sentence."
    ),
)


def _check_options(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    found = [o for o in args["options"] if o in response]
    if found:
        return ConstraintResult(True, f"contains the option {found[0]!r}")
    return ConstraintResult(
        False, f"contains none of the options {_quote_list(args['options'], 'or')}"
    )


register_constraint(
    "answer_options",
    _check_options,
    {"options": NonEmptyStrList},
    lambda a: f"Answer with one of the following options: {_quote_list(a['options'], 'or')}.",
)

_WORD_EDGES = "".join(sorted(set(string.punctuation + "“”‘’«»…")))


def _first_word(paragraph: str) -> str:
    for token in paragraph.split():
        word = token.strip(_WORD_EDGES)
        if word:
            return word.lower()
    return ""


# IFEval's split on "\n\n"; where it silently skips an empty inner part, an extra blank line here
# fails, and the first word loses leading and trailing punctuation ("**Rain**," -> "rain").
def _check_nth_paragraph(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    parts = re.split(r"\n\n", response)
    paragraphs = []
    for i, part in enumerate(parts):
        if part.strip():
            paragraphs.append(part.strip())
        elif 0 < i < len(parts) - 1:
            return ConstraintResult(
                False, f"part {i + 1} between two blank lines is empty (an extra blank line)"
            )
    want_n, nth, want = args["n_paragraphs"], args["nth"], args["first_word"].strip().lower()
    if len(paragraphs) != want_n:
        return ConstraintResult(
            False, f"{_plural(len(paragraphs), 'paragraph')}, expected exactly {want_n}"
        )
    got = _first_word(paragraphs[nth - 1])
    if got != want:
        return ConstraintResult(False, f"paragraph {nth} starts with {got!r}, expected {want!r}")
    return ConstraintResult(
        True, f"{_plural(want_n, 'paragraph')}, paragraph {nth} starts {want!r}"
    )


def _nth_in_range(args: Mapping[str, Any]) -> tuple[str, str] | None:
    if args["nth"] > args["n_paragraphs"]:
        return "nth", (
            f"'nth' must be at most 'n_paragraphs' ({args['n_paragraphs']}), got {args['nth']}"
        )
    return None


register_constraint(
    "nth_paragraph_first_word",
    _check_nth_paragraph,
    {"n_paragraphs": PositiveInt, "nth": PositiveInt, "first_word": NonEmptyStr},
    lambda a: (
        f"Write exactly {_plural(a['n_paragraphs'], 'paragraph')} separated by blank lines, "
        f'and start paragraph {a["nth"]} with the word "{a["first_word"]}".'
    ),
    check_args=_nth_in_range,
)

FREQUENCY_RELATIONS = ("at_least", "less_than")


def _check_letter(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    letter, rel, n = args["letter"].lower(), args["relation"], args["n"]
    got = response.lower().count(letter)
    return ConstraintResult(
        _COMPARE[rel](got, n),
        f"the letter {letter!r} appears {_plural(got, 'time')}, expected {_RELATION_TEXT[rel]} {n}",
    )


def _one_letter(args: Mapping[str, Any]) -> tuple[str, str] | None:
    letter = args["letter"]
    if len(letter) != 1 or not ("a" <= letter.lower() <= "z"):
        return "letter", f"'letter' must be a single ASCII letter a-z, got {_show(letter)}"
    return None


register_constraint(
    "letter_frequency",
    _check_letter,
    {"letter": NonEmptyStr, "relation": FREQUENCY_RELATIONS, "n": PositiveInt},
    lambda a: (
        f'Use the letter "{a["letter"].lower()}" {_RELATION_TEXT[a["relation"]]} '
        f"{_plural(a['n'], 'time')} in your response."
    ),
    check_args=_one_letter,
)


def _check_capital_words(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    got, rel, n = count_capital_words(response), args["relation"], args["n"]
    return ConstraintResult(
        _COMPARE[rel](got, n),
        f"{_plural(got, 'all-capital word')}, expected {_RELATION_TEXT[rel]} {n}",
    )


register_constraint(
    "capital_word_frequency",
    _check_capital_words,
    {"relation": FREQUENCY_RELATIONS, "n": PositiveInt},
    lambda a: (
        "Use words written in all capital letters "
        f"{_RELATION_TEXT[a['relation']]} {_plural(a['n'], 'time')} in your response."
    ),
)


# --------------------------------------------------------------------------- combinations


def _sub_detail(c: Mapping[str, Any], r: ConstraintResult) -> str:
    return f"{c['type']}: {r.detail}"


def _check_all_of(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    pairs = [(c, _check_valid(response, c)) for c in args["constraints"]]
    failed = [_sub_detail(c, r) for c, r in pairs if not r.passed]
    if failed:
        return ConstraintResult(
            False, f"{len(failed)} of {len(pairs)} failed: " + "; ".join(failed)
        )
    return ConstraintResult(True, f"all {len(pairs)} passed")


def _check_any_of(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    pairs = [(c, _check_valid(response, c)) for c in args["constraints"]]
    passed = [_sub_detail(c, r) for c, r in pairs if r.passed]
    if passed:
        return ConstraintResult(True, f"{len(passed)} of {len(pairs)} passed: " + "; ".join(passed))
    failed = "; ".join(_sub_detail(c, r) for c, r in pairs)
    return ConstraintResult(False, f"none of {len(pairs)} passed: {failed}")


def _check_not(response: str, args: Mapping[str, Any]) -> ConstraintResult:
    inner = args["constraint"]
    r = _check_valid(response, inner)
    if r.passed:
        return ConstraintResult(False, f"the negated constraint held: {_sub_detail(inner, r)}")
    return ConstraintResult(True, f"the negated constraint did not hold: {_sub_detail(inner, r)}")


register_constraint(
    "all_of",
    _check_all_of,
    {"constraints": NestedConstraintList},
    lambda a: " ".join(_describe_valid(c) for c in a["constraints"]),
)
register_constraint(
    "any_of",
    _check_any_of,
    {"constraints": NestedConstraintList},
    lambda a: (
        "Follow at least one of these instructions: "
        + " ".join(f"({i}) {_describe_valid(c)}" for i, c in enumerate(a["constraints"], 1))
    ),
)
register_constraint(
    "not",
    _check_not,
    {"constraint": NestedConstraint},
    lambda a: f"Do not follow this instruction: {_describe_valid(a['constraint'])}",
)
