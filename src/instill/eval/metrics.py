"""Text metrics: each scores one model answer against a reference and returns a float in [0, 1].

A metric is a plain function `fn(prediction, reference, **options) -> float` registered under a
name with the options it accepts and their types, so a task file's `metric_options` are checked
when the task is loaded (`validate_metric_options`), not halfway through an eval run. Metrics are
registered explicitly with `register_metric`, which refuses duplicate and malformed names.

Every metric is a pure function of its inputs, and every rule that could be read two ways is
decided here and in the metric's docstring rather than left to a library default:

- Normalisation (`exact_match`, `contains`) applies the chosen steps in one fixed order, whatever
  order the list gives them in, so that `[lowercase, strip_articles]` means what
  `[strip_articles, lowercase]` means.
- `numeric` reads signed integers, decimals, thousands separators (`1,234.5`), exponents (`2.5e3`)
  and simple fractions (`1/2`); a date like `1/2/2020` is three numbers, not a fraction.
- `choice` takes the label the answer opens with, else the only label it mentions; an answer that
  mentions several different labels scores 0 rather than being credited for hedging.
- The JSON metrics are strict by default: the whole answer or its single ```json fenced block must
  be JSON. `allow_embedded: true` also accepts the first JSON object or array inside prose.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from instill.data.synth.rouge import lcs_length
from instill.errors import InstillError


class MetricError(InstillError):
    """A metric is unknown, misconfigured, or given a reference it cannot use."""


OptionTypes = type | tuple[type, ...]
# Checks option values beyond their types; returns (option name, what is wrong) or None.
OptionCheck = Callable[[dict[str, Any]], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: lowercase identifier used in task files (`metric: exact_match`).
        fn: `fn(prediction, reference, **options) -> float` in [0, 1]; options it is not given
            take the function's own defaults.
        options: allowed option names and their types (a type or a tuple of types).
        needs_reference: whether `score` refuses a missing (None) reference.
        description: one line shown in listings and error messages.
        check_options: optional check of option values (ranges, allowed words) beyond types.
    """

    name: str
    fn: Callable[..., float]
    options: dict[str, OptionTypes] = field(default_factory=dict)
    needs_reference: bool = True
    description: str = ""
    check_options: OptionCheck | None = None


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Metric] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register_metric(metric: Metric) -> None:
    """Register a metric under `metric.name`.

    Raises:
        MetricError: if the name is taken or is not lowercase letters, digits and underscores
            starting with a letter, or if the option types are not types.
    """
    if not isinstance(metric.name, str) or not _NAME_RE.match(metric.name):
        raise MetricError(
            f"metric name {metric.name!r} must match {_NAME_RE.pattern} (lowercase letters, "
            "digits and underscores, starting with a letter)"
        )
    if metric.name in _REGISTRY:
        raise MetricError(f"metric {metric.name!r} is already registered; pick another name")
    if not callable(metric.fn):
        raise MetricError(f"metric {metric.name!r}: fn must be callable, got {metric.fn!r}")
    for opt, types in metric.options.items():
        type_tuple = types if isinstance(types, tuple) else (types,)
        if not type_tuple or not all(isinstance(t, type) for t in type_tuple):
            raise MetricError(
                f"metric {metric.name!r} option {opt!r}: expected a type or a tuple of types, "
                f"got {types!r}"
            )
    _REGISTRY[metric.name] = metric


def metric_names() -> list[str]:
    """The registered metric names, sorted."""
    return sorted(_REGISTRY)


def get_metric(name: str) -> Metric:
    """The metric registered as `name`.

    Raises:
        MetricError: for an unknown name, listing the known ones and suggesting the nearest.
    """
    return _lookup(name, where="")


def validate_metric_options(name: str, options: dict[str, Any], where: str = "") -> None:
    """Check that `options` are valid for metric `name`, before any answer is scored.

    Args:
        name: a registered metric name.
        options: option name -> value, e.g. a task's `metric_options`.
        where: what to name in errors (a task file, a config key).

    Raises:
        MetricError: naming `where`, the metric and the option, for an unknown metric, an unknown
            option (with the nearest known one suggested), a value of the wrong type or a value
            out of range.
    """
    metric = _lookup(name, where)
    at = f"{where}: " if where else ""
    if not isinstance(options, dict):
        raise MetricError(
            f"{at}metric {name!r} options must be a mapping of option name to value, got "
            f"{type(options).__name__} {options!r}"
        )
    for opt, value in options.items():
        if opt not in metric.options:
            known = sorted(metric.options)
            if not known:
                raise MetricError(f"{at}metric {name!r} takes no options, got {opt!r}")
            close = difflib.get_close_matches(str(opt), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise MetricError(
                f"{at}metric {name!r} has no option {opt!r}{hint} its options are: "
                f"{', '.join(known)}"
            )
        types = metric.options[opt]
        type_tuple = types if isinstance(types, tuple) else (types,)
        # bool is an int in Python, but `abs_tol: true` is a mistake, not a tolerance of 1.
        wrong_bool = isinstance(value, bool) and bool not in type_tuple
        if wrong_bool or not isinstance(value, type_tuple):
            expected = " or ".join(t.__name__ for t in type_tuple)
            raise MetricError(
                f"{at}metric {name!r} option {opt!r} must be {expected}, got "
                f"{type(value).__name__} {value!r}"
            )
    if metric.check_options is not None:
        problem = metric.check_options(options)
        if problem is not None:
            opt, what = problem
            raise MetricError(f"{at}metric {name!r} option {opt!r} {what}")


def score(name: str, prediction: str, reference: Any, /, **options: Any) -> float:
    """Score one answer with metric `name`; options are validated first.

    Returns:
        A float in [0, 1].

    Raises:
        MetricError: for an unknown metric, bad options, a missing or unusable reference, or a
            metric function that returns something outside [0, 1].
    """
    metric = get_metric(name)
    validate_metric_options(name, options)
    if not isinstance(prediction, str):
        raise MetricError(
            f"metric {name!r}: the prediction must be a string, got "
            f"{type(prediction).__name__} {prediction!r}"
        )
    if metric.needs_reference and reference is None:
        raise MetricError(f"metric {name!r} needs a reference answer, got None")
    value = float(metric.fn(prediction, reference, **options))
    if not 0.0 <= value <= 1.0:  # also catches NaN
        raise MetricError(f"metric {name!r} returned {value!r}, outside [0, 1]")
    return value


def _lookup(name: str, where: str) -> Metric:
    if name in _REGISTRY:
        return _REGISTRY[name]
    at = f"{where}: " if where else ""
    known = metric_names()
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    raise MetricError(
        f"{at}unknown metric {name!r}{hint} known metrics: {', '.join(known) or 'none'}"
    )


# --------------------------------------------------------------------------- shared helpers


def _string_references(name: str, reference: Any) -> list[str]:
    """A str or a non-empty list of str, as a list."""
    if isinstance(reference, str):
        return [reference]
    if (
        isinstance(reference, list | tuple)
        and reference
        and all(isinstance(r, str) for r in reference)
    ):
        return list(reference)
    raise MetricError(
        f"metric {name!r}: the reference must be a string or a non-empty list of strings, got "
        f"{type(reference).__name__} {reference!r}"
    )


def _check_one_of(option: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, str] | None:
    if value not in allowed:
        return option, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}"
    return None


def _check_non_negative(options: dict[str, Any], *names: str) -> tuple[str, str] | None:
    for opt in names:
        if opt in options and not options[opt] >= 0:  # `not >=` also rejects NaN
            return opt, f"must be >= 0, got {options[opt]!r}"
    return None


# --------------------------------------------------------------------------- normalisation

# The order steps are applied in, whatever order the user lists them in.
NORMALIZE_STEPS = (
    "lowercase",
    "strip_punctuation",
    "strip_articles",
    "collapse_whitespace",
    "strip",
)
DEFAULT_NORMALIZE = ("strip", "collapse_whitespace", "lowercase")
_ARTICLE_RE = re.compile(r"\b(?:a|an|the)\b\s*", re.IGNORECASE)
_WHITESPACE_RE = re.compile(r"\s+")


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_text(text: str, steps: Sequence[str] = DEFAULT_NORMALIZE) -> str:
    """Apply normalisation steps in the fixed order of `NORMALIZE_STEPS`.

    - `lowercase`: `str.lower`.
    - `strip_punctuation`: delete ASCII punctuation and every Unicode punctuation character
      (`well-known` -> `wellknown`, as SQuAD does; currency and math symbols stay).
    - `strip_articles`: delete the words a/an/the (any case) and the whitespace after them.
    - `collapse_whitespace`: every run of whitespace becomes one space.
    - `strip`: remove leading and trailing whitespace.
    """
    chosen = set(steps)
    if "lowercase" in chosen:
        text = text.lower()
    if "strip_punctuation" in chosen:
        text = "".join(ch for ch in text if not _is_punctuation(ch))
    if "strip_articles" in chosen:
        text = _ARTICLE_RE.sub("", text)
    if "collapse_whitespace" in chosen:
        text = _WHITESPACE_RE.sub(" ", text)
    if "strip" in chosen:
        text = text.strip()
    return text


def _check_normalize(options: dict[str, Any]) -> tuple[str, str] | None:
    for step in options.get("normalize", ()):
        if step not in NORMALIZE_STEPS:
            close = difflib.get_close_matches(str(step), NORMALIZE_STEPS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return "normalize", (
                f"has unknown step {step!r}{hint}; steps are: {', '.join(NORMALIZE_STEPS)}"
            )
    return None


# --------------------------------------------------------------------------- exact_match, contains


def exact_match(
    prediction: str, reference: str | list[str], normalize: Sequence[str] = DEFAULT_NORMALIZE
) -> float:
    """1.0 if the normalised prediction equals a normalised reference (any of a list), else 0.0.

    The default normalisation is strip + collapse_whitespace + lowercase; `normalize: []`
    compares the raw strings.
    """
    pred = normalize_text(prediction, normalize)
    refs = _string_references("exact_match", reference)
    return float(any(pred == normalize_text(r, normalize) for r in refs))


def contains(
    prediction: str, reference: str | list[str], normalize: Sequence[str] = DEFAULT_NORMALIZE
) -> float:
    """1.0 if a normalised reference (any of a list) is a substring of the normalised prediction.

    A plain substring test: reference `4` is found in `42`. Use `regex` with `\\b` for whole
    words, or `numeric` for numbers. A reference that normalises to the empty string would be
    found in every answer, so it is an error.
    """
    pred = normalize_text(prediction, normalize)
    for ref in _string_references("contains", reference):
        needle = normalize_text(ref, normalize)
        if not needle:
            raise MetricError(
                f"metric 'contains': reference {ref!r} is empty after normalisation "
                f"{list(normalize)}, so it would match every answer"
            )
        if needle in pred:
            return 1.0
    return 0.0


# --------------------------------------------------------------------------- regex

_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


@lru_cache(maxsize=256)
def _compile(pattern: str, flags: str) -> re.Pattern[str]:
    bits = 0
    for letter in flags:
        bits |= _REGEX_FLAGS[letter]
    try:
        return re.compile(pattern, bits)
    except re.error as e:
        raise MetricError(f"metric 'regex': reference {pattern!r} is not a valid regex: {e}") from e


def regex(prediction: str, reference: str, flags: str = "") -> float:
    """1.0 if `re.search(reference, prediction)` finds a match, else 0.0.

    `flags` combines `i` (ignore case), `m` (^ and $ match at every line) and `s` (. matches a
    newline), e.g. `"is"`. Anchor the pattern (`^...$`) to require the whole answer to match.
    """
    if not isinstance(reference, str):
        raise MetricError(
            f"metric 'regex': the reference must be a pattern string, got "
            f"{type(reference).__name__} {reference!r}"
        )
    return float(_compile(reference, flags).search(prediction) is not None)


def _check_regex(options: dict[str, Any]) -> tuple[str, str] | None:
    flags = options.get("flags", "")
    bad = sorted(set(flags) - set(_REGEX_FLAGS))
    if bad:
        return "flags", (
            f"must be letters from 'ims' (i: ignore case, m: multiline, s: dot matches newline), "
            f"got {flags!r}"
        )
    return None


# --------------------------------------------------------------------------- numeric

# A number not glued to a word or a decimal point (`H2O`, `gpt4` and the `3` of `1.2.3` are not
# numbers), with an optional sign (`-`, `+` or the Unicode minus), then either a fraction of two
# integers with a non-zero denominator outside a chain of slashes (`1/2` is 0.5, but `1/2/2020`
# is 1, 2 and 2020, and `1/0` is 1 and 0), or a decimal with optional thousands separators (a
# comma followed by exactly three digits: `1,234` is 1234, `1,2345` is 1 and 2345), fraction
# part and exponent.
_NUMBER_RE = re.compile(
    r"""
    (?<![\w.])
    (?P<sign>[-+\u2212])?
    (?:
        (?<!/)(?P<num>[0-9]+)/(?P<den>[0-9]*[1-9][0-9]*)(?![0-9/])
      | (?P<dec>(?:(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)
                (?:[eE][-+]?[0-9]+)?)
    )
    """,
    re.VERBOSE,
)


def _number_value(m: re.Match[str]) -> float:
    sign = -1.0 if m.group("sign") in ("-", "\u2212") else 1.0
    if m.group("num") is not None:
        try:
            return sign * (int(m.group("num")) / int(m.group("den")))
        except OverflowError:  # a fraction too large for a float: it can only be compared as inf
            return sign * math.inf
    return sign * float(m.group("dec").replace(",", ""))


def extract_numbers(text: str) -> list[float]:
    """Every number in `text`, in order, read by the rules of the `numeric` metric."""
    return [_number_value(m) for m in _NUMBER_RE.finditer(text)]


def _numeric_reference(reference: Any) -> float:
    if isinstance(reference, int | float) and not isinstance(reference, bool):
        value = float(reference)
    elif isinstance(reference, str) and (m := _NUMBER_RE.fullmatch(reference.strip())):
        value = _number_value(m)
    else:
        raise MetricError(
            "metric 'numeric': the reference must be a number or a string holding exactly one "
            f"number (e.g. '1,234.5', '-3', '1/2'), got {type(reference).__name__} {reference!r}"
        )
    if not math.isfinite(value):
        raise MetricError(f"metric 'numeric': the reference must be finite, got {reference!r}")
    return value


def numeric(
    prediction: str,
    reference: float | int | str,
    pick: str = "first",
    abs_tol: float = 1e-6,
    rel_tol: float = 0.0,
) -> float:
    """1.0 if the number picked from the prediction is within tolerance of the reference.

    Numbers are read as documented on `_NUMBER_RE`: `-3`, `+3`, `1,234.5`, `2.5e3`, `.5`, `1/2`
    (0.5). Percent signs and units are ignored (`50%` is 50), words are not numbers (`three`),
    and spaces as thousands separators are not supported (`1 000` is 1 then 0). `pick: last` suits
    chain-of-thought answers that end with the result. The comparison is
    `math.isclose(picked, reference, rel_tol=rel_tol, abs_tol=abs_tol)`: passing either tolerance
    is enough. An answer with no number scores 0.
    """
    target = _numeric_reference(reference)
    numbers = extract_numbers(prediction)
    if not numbers:
        return 0.0
    picked = numbers[0] if pick == "first" else numbers[-1]
    return float(math.isclose(picked, target, rel_tol=rel_tol, abs_tol=abs_tol))


def _check_numeric(options: dict[str, Any]) -> tuple[str, str] | None:
    if "pick" in options and (problem := _check_one_of("pick", options["pick"], ("first", "last"))):
        return problem
    return _check_non_negative(options, "abs_tol", "rel_tol")


# --------------------------------------------------------------------------- choice


@lru_cache(maxsize=128)
def _label_pattern(labels: tuple[str, ...], case_sensitive: bool) -> re.Pattern[str]:
    # Longest first, so that with labels `New York` and `York` the text `New York` is one mention.
    order = sorted(range(len(labels)), key=lambda k: -len(labels[k]))
    alternatives = "|".join(f"(?P<l{k}>{re.escape(labels[k])})" for k in order)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", 0 if case_sensitive else re.IGNORECASE)


def predicted_label(
    prediction: str, labels: Sequence[str], case_sensitive: bool = False
) -> str | None:
    """The label an answer gives, by the rule of the `choice` metric, or None.

    A label is mentioned where it appears as a whole word (not inside a longer word). The answer's
    label is the one it opens with (only spaces or punctuation before it: `B`, `(B) ...`,
    `**B**`), else the only label mentioned, possibly several times. No label, or several
    different labels with none at the start, gives None.
    """
    pattern = _label_pattern(tuple(labels), case_sensitive)
    found: list[int] = []
    for m in pattern.finditer(prediction):
        k = int(m.lastgroup[1:])  # group names are l0, l1, ...
        if not found and not re.search(r"\w", prediction[: m.start()]):
            return labels[k]
        found.append(k)
    distinct = set(found)
    return labels[distinct.pop()] if len(distinct) == 1 else None


def choice(
    prediction: str, reference: str, labels: Sequence[str] = (), case_sensitive: bool = False
) -> float:
    """1.0 if the label the answer gives (see `predicted_label`) is the reference label.

    Labels match case-insensitively by default. With single-letter labels such as A/B/C/D set
    `case_sensitive: true`, or the article "a" counts as a mention of label A.
    """
    if not labels:
        raise MetricError("metric 'choice' needs the option `labels`: the list of valid answers")
    fold = (lambda s: s) if case_sensitive else str.lower
    if not isinstance(reference, str) or fold(reference.strip()) not in map(fold, labels):
        raise MetricError(
            f"metric 'choice': the reference must be one of the labels {list(labels)}, got "
            f"{reference!r}"
        )
    got = predicted_label(prediction, list(labels), case_sensitive)
    return float(got is not None and fold(got) == fold(reference.strip()))


def _check_choice_labels(options: dict[str, Any]) -> tuple[str, str] | None:
    if "labels" not in options:
        return "labels", "is required: the list of valid answers, e.g. [A, B, C, D]"
    labels = options["labels"]
    if not labels or not all(isinstance(s, str) and s.strip() for s in labels):
        return "labels", f"must be a non-empty list of non-empty strings, got {labels!r}"
    fold = (lambda s: s) if options.get("case_sensitive", False) else str.lower
    folded = [fold(s) for s in labels]
    if len(set(folded)) != len(folded):
        return "labels", f"has duplicates, got {labels!r}"
    return None


# --------------------------------------------------------------------------- JSON

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# Where a JSON object or array can begin: `{` before a key or `}`, `[` before a value or `]`.
# Skipping other brackets (`{x}`, `[see 1]`) keeps the embedded search cheap on prose and code.
_CONTAINER_START_RE = re.compile(r'\{\s*["}]|\[\s*[-0-9"\[{\]tfn]')


def _parse_strict(text: str) -> tuple[bool, Any]:
    try:
        return True, _DECODER.decode(text.strip())
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return False, None


def extract_json(text: str, allow_embedded: bool = False) -> tuple[bool, Any]:
    """Find the JSON value an answer gives.

    Tried in order:
    1. the whole text (surrounding whitespace ignored);
    2. the content of the text's single fenced code block labelled `json` or unlabelled (with two
       or more such blocks the answer is ambiguous and this step finds nothing);
    3. only with `allow_embedded`: the first `{...}` or `[...]` in the text that parses as JSON
       (the search gives up at brackets nested deeper than Python's recursion limit).

    Any JSON value counts (`42` and `"yes"` are JSON), but `NaN` and `Infinity` do not.

    Returns:
        `(True, value)` or `(False, None)`.
    """
    ok, value = _parse_strict(text)
    if ok:
        return ok, value
    blocks = [m.group(2) for m in _FENCE_RE.finditer(text) if m.group(1).lower() in ("", "json")]
    if len(blocks) == 1:
        ok, value = _parse_strict(blocks[0])
        if ok:
            return ok, value
    if allow_embedded:
        for candidate in _CONTAINER_START_RE.finditer(text):
            try:
                return True, _DECODER.raw_decode(text, candidate.start())[0]
            except ValueError:
                continue
            except RecursionError:
                # Nested deeper than Python's recursion limit: not a plausible answer, and
                # retrying at every inner bracket would take quadratic time.
                break
    return False, None


def json_valid(prediction: str, reference: Any = None, allow_embedded: bool = False) -> float:
    """1.0 if `extract_json` finds JSON in the answer, else 0.0; the reference is unused."""
    return float(extract_json(prediction, allow_embedded)[0])


@lru_cache(maxsize=64)
def _schema_validator(schema_text: str):
    try:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MetricError(
            "metric 'json_schema' needs the jsonschema package: pip install jsonschema"
        ) from e
    schema = json.loads(schema_text)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        at = "/".join(str(p) for p in e.path) or "<root>"
        raise MetricError(
            f"metric 'json_schema': the reference is not a valid JSON Schema (Draft 2020-12) at "
            f"{at}: {e.message}"
        ) from e
    return Draft202012Validator(schema)


def json_schema(prediction: str, reference: Any, allow_embedded: bool = False) -> float:
    """1.0 if the answer's JSON conforms to the JSON Schema given as the reference.

    The reference is a schema (an object or a boolean) or a string holding one. It is checked
    against the Draft 2020-12 meta-schema; `format` is an annotation only (not asserted), as the
    draft specifies by default. `$ref` may only point inside the schema.
    """
    if isinstance(reference, str):
        ok, reference = _parse_strict(reference)
        if not ok:
            raise MetricError("metric 'json_schema': the reference string is not valid JSON")
    if not isinstance(reference, dict | bool):
        raise MetricError(
            "metric 'json_schema': the reference must be a JSON Schema (an object or a boolean), "
            f"got {type(reference).__name__} {reference!r}"
        )
    validator = _schema_validator(json.dumps(reference, sort_keys=True))
    ok, value = extract_json(prediction, allow_embedded)
    if not ok:
        return 0.0
    from referencing.exceptions import Unresolvable  # installed with jsonschema

    try:
        return float(validator.is_valid(value))
    except Unresolvable as e:  # a `$ref` to another document or to a missing part of this one
        raise MetricError(f"metric 'json_schema': the schema cannot be applied: {e}") from e


def _check_json_value(value: Any, path: str = "reference") -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MetricError(f"metric 'json_match': {path} is {value!r}, which is not JSON")
        return
    if isinstance(value, list | tuple):
        for k, item in enumerate(value):
            _check_json_value(item, f"{path}[{k}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MetricError(f"metric 'json_match': {path} has a non-string key {key!r}")
            _check_json_value(item, f"{path}.{key}")
        return
    raise MetricError(
        f"metric 'json_match': {path} is a {type(value).__name__}, which is not a JSON value"
    )


def _json_equal(pred: Any, ref: Any, subset: bool) -> bool:
    # Python's == says True == 1 and [1] == (1,) is False; JSON equality needs neither quirk.
    if isinstance(ref, bool) or isinstance(pred, bool):
        return isinstance(ref, bool) and isinstance(pred, bool) and ref == pred
    if isinstance(ref, int | float):
        return isinstance(pred, int | float) and pred == ref  # 1 and 1.0 are the same number
    if isinstance(ref, dict):
        if not isinstance(pred, dict):
            return False
        if not subset and pred.keys() != ref.keys():
            return False
        return all(k in pred and _json_equal(pred[k], v, subset) for k, v in ref.items())
    if isinstance(ref, list | tuple):
        return (
            isinstance(pred, list)
            and len(pred) == len(ref)
            and all(_json_equal(p, r, subset) for p, r in zip(pred, ref, strict=True))
        )
    return type(pred) is type(ref) and pred == ref  # str, None


def json_match(
    prediction: str, reference: Any, subset: bool = False, allow_embedded: bool = False
) -> float:
    """1.0 if the answer's JSON equals the reference value.

    The reference is the JSON value itself as stored in the task row (a string reference is a
    JSON string, not JSON text to be parsed). Object key order is irrelevant, `1` equals `1.0`,
    `true` does not equal `1`. With `subset`, every key of a reference object must be in the
    answer's object with a matching value (recursively) and extra keys are allowed; arrays still
    match element by element with the same length.
    """
    _check_json_value(reference)
    ok, value = extract_json(prediction, allow_embedded)
    return float(ok and _json_equal(value, reference, subset))


# --------------------------------------------------------------------------- ROUGE-L, token F1

_WORD_RE = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if n_pred == 0 or n_ref == 0:
        return float(n_pred == n_ref)  # both empty: a correct "no answer"
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str | list[str], max_tokens: int = 2000) -> float:
    """ROUGE-L F1 (beta = 1) on lowercase word tokens, the max over a list of references.

    Tokens are runs of letters, digits and underscores (`don't` is `don`, `t`). Precision is
    LCS / prediction tokens, recall LCS / reference tokens. Both texts are cut to their first
    `max_tokens` tokens, bounding the quadratic LCS. Both empty scores 1, one empty scores 0.
    """
    pred = _words(prediction)[:max_tokens]
    best = 0.0
    for ref_text in _string_references("rouge_l", reference):
        ref = _words(ref_text)[:max_tokens]
        best = max(best, _f1(lcs_length(pred, ref), len(pred), len(ref)))
    return best


def _check_rouge(options: dict[str, Any]) -> tuple[str, str] | None:
    if "max_tokens" in options and options["max_tokens"] < 1:
        return "max_tokens", f"must be >= 1, got {options['max_tokens']!r}"
    return None


def squad_tokens(text: str) -> list[str]:
    """SQuAD normalisation: lowercase, no punctuation, no articles, split on whitespace."""
    return normalize_text(text, ("lowercase", "strip_punctuation", "strip_articles")).split()


def token_f1(prediction: str, reference: str | list[str]) -> float:
    """SQuAD-style F1 of the bags of normalised tokens, the max over a list of references."""
    pred = squad_tokens(prediction)
    best = 0.0
    for ref_text in _string_references("token_f1", reference):
        ref = squad_tokens(ref_text)
        overlap = sum((Counter(pred) & Counter(ref)).values())
        best = max(best, _f1(overlap, len(pred), len(ref)))
    return best


# --------------------------------------------------------------------------- length_between


def length_between(
    prediction: str, reference: Any = None, min_words: int = 0, max_words: int | None = None
) -> float:
    """1.0 if the answer has between `min_words` and `max_words` words (inclusive).

    Words are whitespace-separated; the reference is unused.
    """
    n = len(prediction.split())
    return float(n >= min_words and (max_words is None or n <= max_words))


def _check_length(options: dict[str, Any]) -> tuple[str, str] | None:
    if "min_words" not in options and "max_words" not in options:
        return "min_words", "or max_words is required"
    if problem := _check_non_negative(options, "min_words", "max_words"):
        return problem
    low, high = options.get("min_words", 0), options.get("max_words")
    if high is not None and low > high:
        return "min_words", f"({low}) must be <= max_words ({high})"
    return None


# --------------------------------------------------------------------------- built-in metrics

_LIST = (list, tuple)
_NUMBER = (int, float)

for _metric in (
    Metric(
        "exact_match",
        exact_match,
        {"normalize": _LIST},
        description="normalised answer equals the reference (or one of a list)",
        check_options=_check_normalize,
    ),
    Metric(
        "contains",
        contains,
        {"normalize": _LIST},
        description="normalised reference (or one of a list) appears in the answer",
        check_options=_check_normalize,
    ),
    Metric(
        "regex",
        regex,
        {"flags": str},
        description="the reference pattern is found in the answer (re.search)",
        check_options=_check_regex,
    ),
    Metric(
        "numeric",
        numeric,
        {"pick": str, "abs_tol": _NUMBER, "rel_tol": _NUMBER},
        description="the first (or last) number in the answer equals the reference",
        check_options=_check_numeric,
    ),
    Metric(
        "choice",
        choice,
        {"labels": _LIST, "case_sensitive": bool},
        description="the one label the answer gives is the reference label",
        check_options=_check_choice_labels,
    ),
    Metric(
        "json_valid",
        json_valid,
        {"allow_embedded": bool},
        needs_reference=False,
        description="the answer (or its single ```json block) is JSON",
    ),
    Metric(
        "json_schema",
        json_schema,
        {"allow_embedded": bool},
        description="the answer's JSON conforms to the reference JSON Schema (Draft 2020-12)",
    ),
    Metric(
        "json_match",
        json_match,
        {"subset": bool, "allow_embedded": bool},
        description="the answer's JSON equals (or with subset, contains) the reference value",
    ),
    Metric(
        "rouge_l",
        rouge_l,
        {"max_tokens": int},
        description="ROUGE-L F1 on lowercase word tokens, max over references",
        check_options=_check_rouge,
    ),
    Metric(
        "token_f1",
        token_f1,
        description="SQuAD bag-of-tokens F1, max over references",
    ),
    Metric(
        "length_between",
        length_between,
        {"min_words": int, "max_words": int},
        needs_reference=False,
        description="the answer has between min_words and max_words words",
        check_options=_check_length,
    ),
):
    register_metric(_metric)
del _metric
