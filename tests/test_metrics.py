"""Text metrics: exact values for every metric, option validation messages, registry rules."""

from __future__ import annotations

import dataclasses
import re

import pytest

from instill.errors import InstillError
from instill.eval import metrics
from instill.eval.metrics import (
    Metric,
    MetricError,
    extract_json,
    extract_numbers,
    get_metric,
    lcs_length,
    normalize_text,
    predicted_label,
    register_metric,
    score,
    validate_metric_options,
)


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so that tests may register metrics without leaking them."""
    monkeypatch.setattr(metrics, "_REGISTRY", dict(metrics._REGISTRY))


def _constant(value: float):
    def fn(prediction, reference, **options):
        return value

    return fn


# --------------------------------------------------------------------------- registry


def test_builtin_metrics_are_registered():
    assert metrics.metric_names() == [
        "choice",
        "contains",
        "exact_match",
        "json_match",
        "json_schema",
        "json_valid",
        "length_between",
        "numeric",
        "regex",
        "rouge_l",
        "token_f1",
    ]
    assert not get_metric("json_valid").needs_reference
    assert not get_metric("length_between").needs_reference
    assert get_metric("exact_match").needs_reference


def test_metric_error_is_an_instill_error():
    assert issubclass(MetricError, InstillError)
    assert issubclass(MetricError, ValueError)


def test_metric_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_metric("exact_match").name = "other"  # type: ignore[misc]


def test_register_refuses_duplicate(scratch_registry):
    with pytest.raises(MetricError, match="metric 'exact_match' is already registered"):
        register_metric(Metric("exact_match", _constant(1.0)))


@pytest.mark.parametrize("name", ["Exact", "1abc", "a-b", "", "_x", "with space", "é"])
def test_register_refuses_bad_names(scratch_registry, name):
    with pytest.raises(MetricError, match=r"must match \^\[a-z\]\[a-z0-9_\]\*\$"):
        register_metric(Metric(name, _constant(1.0)))
    assert name not in metrics._REGISTRY


def test_register_refuses_option_types_that_are_not_types(scratch_registry):
    with pytest.raises(MetricError, match="option 'k': expected a type or a tuple of types"):
        register_metric(Metric("my_metric", _constant(1.0), {"k": "int"}))


def test_register_refuses_non_callable(scratch_registry):
    with pytest.raises(MetricError, match="fn must be callable"):
        register_metric(Metric("my_metric", "not a function"))  # type: ignore[arg-type]


def test_registered_metric_is_scored(scratch_registry):
    def starts_with(prediction, reference, ignore_case=False):
        if ignore_case:
            prediction, reference = prediction.lower(), reference.lower()
        return float(prediction.startswith(reference))

    register_metric(Metric("starts_with", starts_with, {"ignore_case": bool}))
    assert score("starts_with", "Paris, France", "paris") == 0.0
    assert score("starts_with", "Paris, France", "paris", ignore_case=True) == 1.0
    assert "starts_with" in metrics.metric_names()


def test_score_refuses_values_outside_unit_interval(scratch_registry):
    register_metric(Metric("too_big", _constant(1.5)))
    register_metric(Metric("not_a_number", _constant(float("nan"))))
    with pytest.raises(MetricError, match=r"metric 'too_big' returned 1.5, outside \[0, 1\]"):
        score("too_big", "x", "y")
    with pytest.raises(MetricError, match="metric 'not_a_number' returned nan"):
        score("not_a_number", "x", "y")


def test_get_metric_unknown_suggests_nearest_and_lists_known():
    with pytest.raises(MetricError) as e:
        get_metric("exact_mach")
    msg = str(e.value)
    assert msg.startswith("unknown metric 'exact_mach'; did you mean 'exact_match'?")
    assert "known metrics: choice, contains, exact_match, json_match" in msg


def test_get_metric_unknown_without_a_near_name():
    with pytest.raises(MetricError) as e:
        get_metric("bleu_score_xyz")
    assert "did you mean" not in str(e.value)
    assert "known metrics: choice," in str(e.value)


def test_score_needs_reference_unless_metric_says_not():
    with pytest.raises(
        MetricError, match="metric 'exact_match' needs a reference answer, got None"
    ):
        score("exact_match", "Paris", None)
    assert score("json_valid", "{}", None) == 1.0
    assert score("length_between", "a b", None, max_words=2) == 1.0


def test_score_refuses_non_string_prediction():
    with pytest.raises(MetricError, match="the prediction must be a string, got int 42"):
        score("numeric", 42, 42)


def test_score_validates_options():
    with pytest.raises(MetricError, match="metric 'numeric' option 'pick' must be one of"):
        score("numeric", "1", 1, pick="middle")


# --------------------------------------------------------------------------- option validation


def test_valid_options_pass():
    validate_metric_options("exact_match", {"normalize": ["lowercase", "strip_articles"]})
    validate_metric_options("numeric", {"pick": "last", "abs_tol": 0, "rel_tol": 0.01})
    validate_metric_options("choice", {"labels": ["A", "B"], "case_sensitive": True})
    validate_metric_options("length_between", {"max_words": 10})
    validate_metric_options("regex", {"flags": "ims"})
    validate_metric_options("token_f1", {})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "exact_match",
            {"normalise": ["strip"]},
            "tasks/qa.jsonl: metric 'exact_match' has no option 'normalise'; "
            "did you mean 'normalize'? its options are: normalize",
        ),
        (
            "numeric",
            {"abs_tol": "0.1"},
            "tasks/qa.jsonl: metric 'numeric' option 'abs_tol' must be int or float, got str '0.1'",
        ),
        (
            "numeric",
            {"abs_tol": True},
            "tasks/qa.jsonl: metric 'numeric' option 'abs_tol' must be int or float, got bool True",
        ),
        (
            "rouge_l",
            {"max_tokens": 2.0},
            "tasks/qa.jsonl: metric 'rouge_l' option 'max_tokens' must be int, got float 2.0",
        ),
        (
            "exact_match",
            {"normalize": "lowercase"},
            "tasks/qa.jsonl: metric 'exact_match' option 'normalize' must be list or tuple, "
            "got str 'lowercase'",
        ),
        (
            "token_f1",
            {"normalize": []},
            "tasks/qa.jsonl: metric 'token_f1' takes no options, got 'normalize'",
        ),
        (
            "exact_match",
            {"normalize": ["lowercse"]},
            "tasks/qa.jsonl: metric 'exact_match' option 'normalize' has unknown step "
            "'lowercse' (did you mean 'lowercase'?); steps are: lowercase, strip_punctuation, "
            "strip_articles, collapse_whitespace, strip",
        ),
        (
            "numeric",
            {"pick": "middle"},
            "tasks/qa.jsonl: metric 'numeric' option 'pick' must be one of 'first', 'last', "
            "got 'middle'",
        ),
        (
            "numeric",
            {"rel_tol": -0.1},
            "tasks/qa.jsonl: metric 'numeric' option 'rel_tol' must be >= 0, got -0.1",
        ),
        (
            "regex",
            {"flags": "ix"},
            "tasks/qa.jsonl: metric 'regex' option 'flags' must be letters from 'ims'",
        ),
        (
            "choice",
            {},
            "tasks/qa.jsonl: metric 'choice' option 'labels' is required",
        ),
        (
            "choice",
            {"labels": ["A", "a"]},
            "tasks/qa.jsonl: metric 'choice' option 'labels' has duplicates, got ['A', 'a']",
        ),
        (
            "choice",
            {"labels": ["A", ""]},
            "tasks/qa.jsonl: metric 'choice' option 'labels' must be a non-empty list of "
            "non-empty strings",
        ),
        (
            "length_between",
            {},
            "tasks/qa.jsonl: metric 'length_between' option 'min_words' or max_words is required",
        ),
        (
            "length_between",
            {"min_words": 5, "max_words": 2},
            "tasks/qa.jsonl: metric 'length_between' option 'min_words' (5) must be <= "
            "max_words (2)",
        ),
        (
            "rouge_l",
            {"max_tokens": 0},
            "tasks/qa.jsonl: metric 'rouge_l' option 'max_tokens' must be >= 1, got 0",
        ),
        (
            "exact_mach",
            {},
            "tasks/qa.jsonl: unknown metric 'exact_mach'; did you mean 'exact_match'?",
        ),
    ],
)
def test_option_errors_name_where_metric_and_option(name, options, message):
    with pytest.raises(MetricError) as e:
        validate_metric_options(name, options, where="tasks/qa.jsonl")
    assert str(e.value).startswith(message)


def test_case_sensitive_labels_may_differ_in_case():
    validate_metric_options("choice", {"labels": ["A", "a"], "case_sensitive": True})


def test_option_error_without_where_starts_with_the_metric():
    with pytest.raises(MetricError) as e:
        validate_metric_options("numeric", {"pik": "last"})
    assert str(e.value) == (
        "metric 'numeric' has no option 'pik'; did you mean 'pick'? its options are: "
        "abs_tol, pick, rel_tol"
    )


def test_options_must_be_a_mapping():
    with pytest.raises(MetricError, match="metric 'numeric' options must be a mapping"):
        validate_metric_options("numeric", ["pick"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- normalisation


def test_normalize_all_steps():
    steps = list(metrics.NORMALIZE_STEPS)
    assert normalize_text("  The  Well-known, CAT!  ", steps) == "wellknown cat"


def test_normalize_order_of_steps_is_fixed():
    assert normalize_text("The Cat", ["strip_articles", "lowercase"]) == "cat"
    assert normalize_text("The Cat", ["lowercase", "strip_articles"]) == "cat"


def test_normalize_keeps_words_that_contain_articles():
    assert (
        normalize_text("Another theatre, an apple", ["strip_articles"]) == "Another theatre, apple"
    )


def test_normalize_strips_unicode_punctuation():
    assert normalize_text("«Paris»—yes…", ["strip_punctuation"]) == "Parisyes"


def test_normalize_no_steps_is_identity():
    assert normalize_text("  A  b ", []) == "  A  b "


# --------------------------------------------------------------------------- exact_match


@pytest.mark.parametrize(
    ("prediction", "reference", "options", "expected"),
    [
        ("  Paris ", "paris", {}, 1.0),
        ("New   York", "new york", {}, 1.0),
        ("Paris.", "paris", {}, 0.0),
        ("Paris.", "paris", {"normalize": ["lowercase", "strip_punctuation"]}, 1.0),
        ("The Eiffel Tower", "eiffel tower", {"normalize": ["lowercase", "strip_articles"]}, 1.0),
        ("The Eiffel Tower", "eiffel tower", {}, 0.0),
        ("Paris", "paris", {"normalize": []}, 0.0),
        ("Paris", "Paris", {"normalize": []}, 1.0),
        ("NYC", ["New York", "nyc"], {}, 1.0),
        ("LA", ["New York", "nyc"], {}, 0.0),
        ("Paris is the capital", "paris", {}, 0.0),
    ],
)
def test_exact_match(prediction, reference, options, expected):
    assert score("exact_match", prediction, reference, **options) == expected


@pytest.mark.parametrize("reference", [3, [], ["a", 1], {"a": 1}])
def test_exact_match_bad_reference(reference):
    with pytest.raises(MetricError, match="the reference must be a string or a non-empty list"):
        score("exact_match", "a", reference)


# --------------------------------------------------------------------------- contains


@pytest.mark.parametrize(
    ("prediction", "reference", "options", "expected"),
    [
        ("The capital is Paris.", "paris", {}, 1.0),
        ("The capital is Lyon.", "paris", {}, 0.0),
        ("It is Lyon", ["Paris", "Lyon"], {}, 1.0),
        ("It is Nice", ["Paris", "Lyon"], {}, 0.0),
        ("The answer is 42", "4", {}, 1.0),  # a plain substring test, as documented
        ("The capital is PARIS", "paris", {"normalize": []}, 0.0),
        ("it is new\n  york", "New York", {}, 1.0),
    ],
)
def test_contains(prediction, reference, options, expected):
    assert score("contains", prediction, reference, **options) == expected


@pytest.mark.parametrize(
    ("reference", "options"),
    [("   ", {}), ("The", {"normalize": ["strip_articles", "strip"]})],
)
def test_contains_refuses_reference_empty_after_normalisation(reference, options):
    with pytest.raises(MetricError, match="is empty after normalisation"):
        score("contains", "anything", reference, **options)


# --------------------------------------------------------------------------- regex


@pytest.mark.parametrize(
    ("prediction", "pattern", "flags", "expected"),
    [
        ("Answer: 42", r"\b42\b", "", 1.0),
        ("Answer: 420", r"\b42\b", "", 0.0),
        ("YES", r"^yes$", "", 0.0),
        ("YES", r"^yes$", "i", 1.0),
        ("maybe\nyes", r"^yes$", "", 0.0),
        ("maybe\nyes", r"^yes$", "m", 1.0),
        ("a\nb", r"a.b", "", 0.0),
        ("a\nb", r"a.b", "s", 1.0),
        ("A\nB", r"^a.b$", "is", 1.0),
    ],
)
def test_regex(prediction, pattern, flags, expected):
    options = {"flags": flags} if flags else {}
    assert score("regex", prediction, pattern, **options) == expected


def test_regex_invalid_pattern_names_it():
    with pytest.raises(MetricError) as e:
        score("regex", "x", "a(b")
    assert str(e.value).startswith("metric 'regex': reference 'a(b' is not a valid regex: ")


def test_regex_reference_must_be_a_string():
    with pytest.raises(MetricError, match="the reference must be a pattern string, got int 3"):
        score("regex", "3", 3)


# --------------------------------------------------------------------------- numeric


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("x = -3", [-3.0]),
        ("+3 and \u22127", [3.0, -7.0]),
        ("1,234.5", [1234.5]),
        ("It costs $1,000,000.", [1000000.0]),
        ("1,2345", [1.0, 2345.0]),
        ("2.5e3 and 1E-2", [2500.0, 0.01]),
        ("1/2 and -3/4", [0.5, -0.75]),
        ("1/2/2020", [1.0, 2.0, 2020.0]),
        ("1/0", [1.0, 0.0]),
        ("H2O and gpt4", []),
        ("version 1.2.3", [1.2]),
        ("3-4", [3.0, 4.0]),
        (".5", [0.5]),
        ("50%", [50.0]),
        ("It is 5.", [5.0]),
        ("three", []),
    ],
)
def test_extract_numbers(text, numbers):
    assert extract_numbers(text) == numbers


@pytest.mark.parametrize(
    ("prediction", "reference", "options", "expected"),
    [
        ("The answer is 42.", 42, {}, 1.0),
        ("The answer is 41.", 42, {}, 0.0),
        ("The answer is 42.0", 42, {}, 1.0),
        ("Step 1: 6 * 7 = 42", 42, {}, 0.0),
        ("Step 1: 6 * 7 = 42", 42, {"pick": "last"}, 1.0),
        ("I don't know", 42, {}, 0.0),
        ("pi is 3.14", 3.14159, {}, 0.0),
        ("pi is 3.14", 3.14159, {"abs_tol": 0.01}, 1.0),
        ("1000", 1005, {"rel_tol": 0.01}, 1.0),
        ("1000", 1005, {"rel_tol": 0.001}, 0.0),
        ("1234", "1,234", {}, 1.0),
        ("0.5", "1/2", {}, 1.0),
        ("about -0.5", " -1/2 ", {}, 1.0),
        ("It is 1/3", 0.3333333, {}, 1.0),
        ("It is 1/3", 0.33, {}, 0.0),
    ],
)
def test_numeric(prediction, reference, options, expected):
    assert score("numeric", prediction, reference, **options) == expected


@pytest.mark.parametrize("reference", ["about 3", "1 2", True, [1], float("inf")])
def test_numeric_bad_reference(reference):
    with pytest.raises(MetricError, match="metric 'numeric': the reference must be"):
        score("numeric", "3", reference)


# --------------------------------------------------------------------------- choice

ABCD = ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    ("prediction", "reference", "options", "expected"),
    [
        ("B", "B", {"labels": ABCD}, 1.0),
        ("B", "C", {"labels": ABCD}, 0.0),
        ("(B) Paris", "B", {"labels": ABCD}, 1.0),
        ("**C** is correct", "C", {"labels": ABCD}, 1.0),
        ("B, not C", "B", {"labels": ABCD}, 1.0),  # opens with B
        ("The answer is B.", "B", {"labels": ABCD}, 1.0),  # the only label mentioned
        ("It is B. Definitely B.", "B", {"labels": ABCD}, 1.0),  # same label twice
        ("Either B or C", "B", {"labels": ABCD}, 0.0),  # two labels, none at the start
        ("None of them", "B", {"labels": ABCD}, 0.0),  # no label
        ("AB", "A", {"labels": ABCD}, 0.0),  # not a whole word
        ("b", "B", {"labels": ABCD}, 1.0),  # case-insensitive by default
        ("I think it is a B", "B", {"labels": ABCD}, 0.0),  # the article 'a' is label A
        ("I think it is a B", "B", {"labels": ABCD, "case_sensitive": True}, 1.0),
        ("b", "B", {"labels": ABCD, "case_sensitive": True}, 0.0),
        ("Yes, definitely.", "yes", {"labels": ["yes", "no"]}, 1.0),
        ("I'd say yes", "yes", {"labels": ["yes", "no"]}, 1.0),
        ("yes and no", "no", {"labels": ["yes", "no"]}, 0.0),
        ("I pick New York", "New York", {"labels": ["New York", "York"]}, 1.0),
        ("York, of course", "York", {"labels": ["New York", "York"]}, 1.0),
    ],
)
def test_choice(prediction, reference, options, expected):
    assert score("choice", prediction, reference, **options) == expected


def test_predicted_label():
    assert predicted_label("Option (C) is right, not (A)", ABCD) is None
    assert predicted_label("(C) is right, not (A)", ABCD) == "C"
    assert predicted_label("answer: d", ABCD) == "D"


def test_choice_reference_must_be_a_label():
    with pytest.raises(MetricError) as e:
        score("choice", "E", "E", labels=ABCD)
    assert str(e.value) == (
        "metric 'choice': the reference must be one of the labels ['A', 'B', 'C', 'D'], got 'E'"
    )


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("text", "allow_embedded", "expected"),
    [
        ('{"a": 1}', False, (True, {"a": 1})),
        ("  [1, 2]\n", False, (True, [1, 2])),
        ("42", False, (True, 42)),
        ('"yes"', False, (True, "yes")),
        ("null", False, (True, None)),
        ('Sure:\n```json\n{"a": 1}\n```\nDone.', False, (True, {"a": 1})),
        ('```JSON\n{"a": 1}\n```', False, (True, {"a": 1})),
        ("Here:\n```\n[1]\n```", False, (True, [1])),
        ('```python\n{"a": 1}\n```', False, (False, None)),
        ('```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```', False, (False, None)),
        ('Sure: {"a": 1}', False, (False, None)),
        ('Sure: {"a": 1}', True, (True, {"a": 1})),
        ("x {not json} then [1, 2] and {}", True, (True, [1, 2])),
        ('Result: {"s": "}"} done', True, (True, {"s": "}"})),
        ("no json here", True, (False, None)),
        ("", False, (False, None)),
        ("NaN", False, (False, None)),
        ('{"a": Infinity}', True, (False, None)),
        ('{"a": 1,}', False, (False, None)),
        ("{a: 1}", False, (False, None)),
        ("{x} and [see 1] then {}", True, (True, {})),
        ('list [ "a" ] and [ ]', True, (True, ["a"])),
        ("[" * 100_000, True, (False, None)),
        # Nesting deeper than the recursion limit ends the search (documented).
        ("[" * 100_000 + " [1]", True, (False, None)),
    ],
)
def test_extract_json(text, allow_embedded, expected):
    assert extract_json(text, allow_embedded=allow_embedded) == expected


@pytest.mark.parametrize(
    ("prediction", "options", "expected"),
    [
        ('{"a": [1, 2]}', {}, 1.0),
        ("{'a': 1}", {}, 0.0),
        ('The JSON is {"a": 1}', {}, 0.0),
        ('The JSON is {"a": 1}', {"allow_embedded": True}, 1.0),
    ],
)
def test_json_valid(prediction, options, expected):
    assert score("json_valid", prediction, None, **options) == expected


PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
    },
    "required": ["name"],
    "additionalProperties": False,
}
# prefixItems and `items: false` after it exist only from Draft 2020-12: with Draft 7 semantics
# `items: false` would refuse every non-empty array.
PAIR_SCHEMA = {
    "type": "array",
    "prefixItems": [{"type": "integer"}, {"type": "string"}],
    "items": False,
}


@pytest.mark.parametrize(
    ("prediction", "schema", "expected"),
    [
        ('{"name": "Ada", "age": 36}', PERSON_SCHEMA, 1.0),
        ('```json\n{"name": "Ada"}\n```', PERSON_SCHEMA, 1.0),
        ('{"age": 36}', PERSON_SCHEMA, 0.0),
        ('{"name": "Ada", "age": -1}', PERSON_SCHEMA, 0.0),
        ('{"name": "Ada", "email": "a@b"}', PERSON_SCHEMA, 0.0),
        ("name: Ada", PERSON_SCHEMA, 0.0),
        ('[1, "a"]', PAIR_SCHEMA, 1.0),
        ('[1, "a", 3]', PAIR_SCHEMA, 0.0),
        ('["a", 1]', PAIR_SCHEMA, 0.0),
        ('{"name": "Ada"}', '{"type": "object", "required": ["name"]}', 1.0),
        ("[]", '{"type": "object"}', 0.0),
        ("anything", True, 0.0),  # not JSON
        ("3", True, 1.0),
        ("3", False, 0.0),
    ],
)
def test_json_schema(prediction, schema, expected):
    assert score("json_schema", prediction, schema) == expected


def test_json_schema_invalid_schema():
    with pytest.raises(MetricError) as e:
        score("json_schema", "{}", {"type": "nope"})
    assert str(e.value).startswith(
        "metric 'json_schema': the reference is not a valid JSON Schema (Draft 2020-12) at type: "
    )


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (3, "the reference must be a JSON Schema (an object or a boolean), got int 3"),
        ("{not json", "the reference string is not valid JSON"),
        ({"$ref": "https://example.com/s.json"}, "the schema cannot be applied: Unresolvable"),
    ],
)
def test_json_schema_bad_reference(schema, message):
    with pytest.raises(MetricError, match=re.escape(message)):
        score("json_schema", "{}", schema)


@pytest.mark.parametrize(
    ("prediction", "reference", "options", "expected"),
    [
        ('{"b": 2, "a": 1}', {"a": 1, "b": 2}, {}, 1.0),
        ('{"a": 1}', {"a": 1, "b": 2}, {}, 0.0),
        ('{"a": 1, "b": 2, "c": 3}', {"a": 1, "b": 2}, {}, 0.0),
        ('{"a": 1, "b": 2, "c": 3}', {"a": 1, "b": 2}, {"subset": True}, 1.0),
        ('{"a": 1}', {"a": 1, "b": 2}, {"subset": True}, 0.0),
        ('{"a": {"x": 1, "y": 2}}', {"a": {"x": 1}}, {"subset": True}, 1.0),
        ('{"a": {"x": 1, "y": 2}}', {"a": {"x": 1}}, {}, 0.0),
        ('[{"a": 1, "b": 2}]', [{"a": 1}], {"subset": True}, 1.0),
        ("[1, 2, 3]", [1, 2], {"subset": True}, 0.0),
        ("[1, 2]", [2, 1], {}, 0.0),
        ("[1, 2]", (1, 2), {}, 1.0),
        ("true", 1, {}, 0.0),
        ("1", True, {}, 0.0),
        ("1.0", 1, {}, 1.0),
        ('"yes"', "yes", {}, 1.0),
        ("yes", "yes", {}, 0.0),  # not JSON
        ('{"a": null}', {"a": None}, {}, 1.0),
        ('{"a": null}', {"a": 0}, {}, 0.0),
        ('Here: {"a": 1}', {"a": 1}, {}, 0.0),
        ('Here: {"a": 1}', {"a": 1}, {"allow_embedded": True}, 1.0),
    ],
)
def test_json_match(prediction, reference, options, expected):
    assert score("json_match", prediction, reference, **options) == expected


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"a": {1, 2}}, r"reference\.a is a set, which is not a JSON value"),
        ([1.0, float("nan")], r"reference\[1\] is nan, which is not JSON"),
        ({1: "x"}, "reference has a non-string key 1"),
    ],
)
def test_json_match_bad_reference(reference, message):
    with pytest.raises(MetricError, match=message):
        score("json_match", "{}", reference)


# --------------------------------------------------------------------------- ROUGE-L


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a b c d e", "a c e", 3),
        ("a c e", "a b c d e", 3),
        ("a b c", "x y z", 0),
        ("", "a b", 0),
        ("a b a b", "b a b a", 3),
        ("the gunman kill police", "police killed the gunman", 2),
    ],
)
def test_lcs_length(a, b, expected):
    assert lcs_length(a.split(), b.split()) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "options", "expected"),
    [
        # LCS "the cat on the mat" = 5 of 6 tokens each: P = R = 5/6.
        ("the cat sat on the mat", "the cat lay on the mat", {}, 5 / 6),
        # LCS 3: P = 3/5, R = 3/3, F = 2 * 0.6 * 1 / 1.6 = 0.75.
        ("a b c d e", "a c e", {}, 0.75),
        # Lin (2004): LCS "police the gunman" = 3 of 4: F = 0.75.
        ("police kill the gunman", "police killed the gunman", {}, 0.75),
        # Lin (2004): LCS "the gunman" = 2 of 4: F = 0.5.
        ("the gunman kill police", "police killed the gunman", {}, 0.5),
        ("The Cat!", "the cat", {}, 1.0),
        ("dogs bark", "the cat", {}, 0.0),
        # max over references: "the cat sat" has LCS 2, P = 1, R = 2/3, F = 0.8.
        ("the cat", ["a dog", "the cat sat"], {}, 0.8),
        ("", "", {}, 1.0),
        ("", "the cat", {}, 0.0),
        ("the cat", "", {}, 0.0),
        # Without the cap: LCS "a b" = 2, P = 2/3, R = 1, F = 0.8.
        ("x a b", "a b", {}, 0.8),
        # Capped to 2 tokens: [x, a] vs [a, b], LCS 1, P = R = 1/2.
        ("x a b", "a b", {"max_tokens": 2}, 0.5),
    ],
)
def test_rouge_l(prediction, reference, options, expected):
    assert score("rouge_l", prediction, reference, **options) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- token F1


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # [quick, brown, fox] vs [quick, fox, jumped]: 2 common, P = R = 2/3.
        ("The quick brown fox", "a quick fox jumped", 2 / 3),
        ("The Cat!", "cat", 1.0),
        # Bags, not sets: cat min(2, 1) + dog min(1, 2) = 2 common of 3 each.
        ("cat cat dog", "cat dog dog", 2 / 3),
        ("dogs bark", "the cat", 0.0),
        # max over references: [paris] vs [paris, france]: P = 1, R = 1/2.
        ("Paris", ["London", "Paris, France"], 2 / 3),
        ("The.", "a", 1.0),  # both empty after normalisation
        ("the", "cat", 0.0),
    ],
)
def test_token_f1(prediction, reference, expected):
    assert score("token_f1", prediction, reference) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- length_between


@pytest.mark.parametrize(
    ("prediction", "options", "expected"),
    [
        ("one two three", {"min_words": 1, "max_words": 3}, 1.0),
        ("one two three", {"min_words": 3, "max_words": 3}, 1.0),
        ("one two three", {"max_words": 2}, 0.0),
        ("one two three", {"min_words": 4}, 0.0),
        ("one\ntwo   three", {"min_words": 3}, 1.0),
        ("", {"max_words": 0}, 1.0),
        ("", {"min_words": 1}, 0.0),
    ],
)
def test_length_between(prediction, options, expected):
    assert score("length_between", prediction, "ignored", **options) == expected
