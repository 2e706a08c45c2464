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
- **Keywords** match case-insensitively as whole words: not inside a longer word ("cat" is not in
  "concatenate") but next to punctuation ("data-driven" contains "data"). The spaces of a
  multi-word keyword match any run of whitespace.
"""

from __future__ import annotations

import difflib
import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


_REGISTRY: dict[str, _ConstraintType] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register_constraint(
    name: str,
    checker: Checker,
    params: dict[str, ParamKind],
    describe: Describer,
    *,
    defaults: Mapping[str, Any] | None = None,
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
    _REGISTRY[name] = _ConstraintType(name, checker, dict(params), describe, defaults)


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

_SENTENCE_END = (".", "!", "?", "…")
_CLOSERS = "\"')]}’”»"
_OPENERS = "\"'([{‘“«"
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "vs.", "cf.", "mr.", "mrs.", "ms.", "dr.", "prof."})
_PARAGRAPH_BREAK = re.compile(r"^[ \t]*\*{3,}[ \t]*$")
_BULLET = re.compile(r"^[ \t]*[-*•][ \t]+\S")
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_NUMBERED = re.compile(r"^[ \t]*\d+[.)][ \t]+\S")


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def count_words(text: str) -> int:
    """Whitespace-separated tokens containing at least one letter or digit."""
    return sum(1 for token in text.split() if _is_word(token))


def split_paragraphs(text: str) -> list[str]:
    """Runs of non-blank lines, separated by blank lines or `***` lines; empty runs dropped."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or _PARAGRAPH_BREAK.match(line):
            if current:
                paragraphs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def count_sentences(text: str) -> int:
    """Sentences as described in the module docstring (approximate around abbreviations)."""
    count = 0
    for paragraph in split_paragraphs(text):
        has_word = False
        for token in paragraph.split():
            has_word = has_word or _is_word(token)
            core = token.rstrip(_CLOSERS)
            ends = core.endswith(_SENTENCE_END)
            if ends and core.lstrip(_OPENERS).lower() not in _ABBREVIATIONS:
                count += 1 if has_word else 0
                has_word = False
        count += 1 if has_word else 0
    return count


def count_bullets(text: str) -> int:
    """Lines that are Markdown bullets (`- `, `* `, `• `), horizontal rules excluded."""
    return sum(1 for ln in text.splitlines() if _BULLET.match(ln) and not _RULE.match(ln))


def count_numbered_items(text: str) -> int:
    """Lines starting with a number and `.` or `)`, e.g. "1. " or "2) "."""
    return sum(1 for ln in text.splitlines() if _NUMBERED.match(ln))


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(part) for part in keyword.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def count_keyword(text: str, keyword: str) -> int:
    """Case-insensitive whole-word occurrences of `keyword` in `text`."""
    return len(_keyword_pattern(keyword).findall(text))


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
_count_type(
    "paragraph_count",
    lambda text: len(split_paragraphs(text)),
    "paragraph",
    "paragraphs",
    LIST_RELATIONS,
    "Write {rel} {noun}, separated by blank lines.",
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
