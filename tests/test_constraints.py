"""Verifiable instruction constraints: each type passes and fails, validation messages, registry."""

from __future__ import annotations

import json

import pytest

from instill.errors import InstillError
from instill.eval import constraints as cons
from instill.eval.constraints import (
    ConstraintError,
    ConstraintResult,
    NonEmptyStr,
    PositiveInt,
    check_all,
    check_constraint,
    constraint_types,
    count_capital_words,
    count_highlights,
    count_sections,
    count_sentences,
    count_words,
    describe_constraint,
    register_constraint,
    split_paragraphs,
    validate_constraint,
)


def passes(response: str, c: dict) -> ConstraintResult:
    result = check_constraint(response, c)
    assert result.passed, result.detail
    return result


def fails(response: str, c: dict) -> str:
    result = check_constraint(response, c)
    assert not result.passed, f"expected a failure, got: {result.detail}"
    return result.detail


def validation_error(c: object, where: str = "") -> ConstraintError:
    with pytest.raises(ConstraintError) as info:
        validate_constraint(c, where)  # type: ignore[arg-type]
    return info.value


# --------------------------------------------------------------------------- json_format


@pytest.mark.parametrize(
    "response",
    ['{"a": 1}', "  [1, 2]\n", '```json\n{"a": [1, 2]}\n```', '```\n{"a": 1}\n```', "42"],
)
def test_json_format_passes(response):
    passes(response, {"type": "json_format"})


def test_json_format_fails_on_invalid_json():
    assert fails('{"a": 1,}', {"type": "json_format"}).startswith("not valid JSON: ")


def test_json_format_fails_on_text_around_the_fence():
    detail = fails('Here you go:\n```json\n{"a": 1}\n```', {"type": "json_format"})
    assert detail == "not valid JSON: Expecting value at line 1 column 1"


def test_json_format_fails_on_two_fenced_blocks():
    two = '```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```'
    assert not check_constraint(two, {"type": "json_format"}).passed


def test_json_format_fails_on_empty_response():
    assert fails("   ", {"type": "json_format"}) == "empty response, expected JSON"
    assert fails("```json\n\n```", {"type": "json_format"}) == "empty response, expected JSON"


def test_json_format_top_level():
    obj = {"type": "json_format", "top_level": "object"}
    arr = {"type": "json_format", "top_level": "array"}
    passes('{"a": 1}', obj)
    passes("```json\n[1]\n```", arr)
    assert fails("[1, 2]", obj) == "top-level JSON value is an array, expected an object"
    assert fails('"text"', arr) == "top-level JSON value is a string, expected an array"
    assert fails("null", obj) == "top-level JSON value is null, expected an object"


# --------------------------------------------------------------------------- list counts


BULLETS = "Intro line\n- one\n  * two\n• three\n-not a bullet\n- - -\n***\n**bold** text\n"


def test_bullet_count_counts_markers_and_skips_rules():
    passes(BULLETS, {"type": "bullet_count", "relation": "exactly", "n": 3})


def test_bullet_count_fails_with_detail():
    c = {"type": "bullet_count", "relation": "at_least", "n": 4}
    assert fails(BULLETS, c) == "3 bullet points, expected at least 4"
    c = {"type": "bullet_count", "relation": "at_most", "n": 1}
    assert fails("- a\n- b", c) == "2 bullet points, expected at most 1"


def test_bullet_count_ignores_empty_bullets():
    c = {"type": "bullet_count", "relation": "exactly", "n": 1}
    passes("- \n-\n- real", c)
    assert fails("- \n-\n", c) == "0 bullet points, expected exactly 1"


NUMBERED = "Steps:\n1. mix\n2) bake\n  10. serve\n1.5 is a number\n3.not an item\n"


def test_numbered_list_count_passes():
    passes(NUMBERED, {"type": "numbered_list_count", "relation": "exactly", "n": 3})


def test_numbered_list_count_fails_with_detail():
    c = {"type": "numbered_list_count", "relation": "at_least", "n": 4}
    assert fails(NUMBERED, c) == "3 numbered items, expected at least 4"
    assert fails("- a\n- b", c) == "0 numbered items, expected at least 4"


def test_split_paragraphs_on_blank_and_star_lines():
    text = "\n\nFirst para\nstill first\n\n  \nSecond\n***\nThird\n\n\n"
    assert split_paragraphs(text) == ["First para\nstill first", "Second", "Third"]


def test_paragraph_count_passes_and_fails():
    text = "One.\n\nTwo.\n  ***  \nThree."
    passes(text, {"type": "paragraph_count", "relation": "exactly", "n": 3})
    c = {"type": "paragraph_count", "relation": "at_least", "n": 2}
    assert fails("One line\nanother line of the same paragraph", c) == (
        "1 paragraph, expected at least 2"
    )


# --------------------------------------------------------------------------- words, sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world", 2),
        ("  Hello,   world !  ", 2),  # a lone "!" is not a word
        ("state-of-the-art don't 3.14 e.g.", 4),
        ("- item -- # heading", 2),
        ("", 0),
        ("... --- ***", 0),
    ],
)
def test_count_words(text, expected):
    assert count_words(text) == expected


def test_word_count_relations():
    text = "one two three four five"
    for relation, n in [
        ("exactly", 5),
        ("at_most", 5),
        ("at_least", 5),
        ("less_than", 6),
        ("more_than", 4),
    ]:
        passes(text, {"type": "word_count", "relation": relation, "n": n})
    for relation, n, want in [
        ("exactly", 4, "exactly 4"),
        ("at_most", 4, "at most 4"),
        ("at_least", 6, "at least 6"),
        ("less_than", 5, "fewer than 5"),
        ("more_than", 5, "more than 5"),
    ]:
        c = {"type": "word_count", "relation": relation, "n": n}
        assert fails(text, c) == f"5 words, expected {want}"


def test_word_count_detail_matches_brief_example():
    c = {"type": "word_count", "relation": "at_most", "n": 50}
    assert fails("word " * 62, c) == "62 words, expected at most 50"
    assert fails("", {"type": "word_count", "relation": "at_least", "n": 1}) == (
        "0 words, expected at least 1"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three?", 3),
        ("No terminator at all", 1),
        ("Wait... what?! Really.", 3),
        ('He said "stop." Then left.', 2),
        ("Pi is 3.14 exactly. Yes.", 2),
        ("Use a tool, e.g. a hammer. Or i.e. this. Ask Dr. Smith.", 3),
        ("Bring pens, paper, etc. Then sit.", 2),  # "etc." is not excused: it ends one
        ("The U.S. is big.", 2),  # approximate: an unknown abbreviation ends a sentence
        ("Heading\n\nBody text. More", 3),  # a paragraph break ends a sentence
        ("... ! ?", 0),
        ("", 0),
    ],
)
def test_count_sentences(text, expected):
    assert count_sentences(text) == expected


def test_sentence_count_passes_and_fails():
    c = {"type": "sentence_count", "relation": "at_most", "n": 2}
    passes("First. Second.", c)
    assert fails("First. Second. Third.", c) == "3 sentences, expected at most 2"
    c = {"type": "sentence_count", "relation": "more_than", "n": 1}
    assert fails("Only one, e.g. this.", c) == "1 sentence, expected more than 1"


# --------------------------------------------------------------------------- case


def test_lowercase():
    passes("all lower, 123 — ok ß é", {"type": "lowercase"})
    assert fails("hello World and Moon", {"type": "lowercase"}) == (
        "2 uppercase letters, first 'W' at position 6"
    )


def test_uppercase():
    passes("ALL CAPS, 42 É!", {"type": "uppercase"})
    assert fails("SHOUTy", {"type": "uppercase"}) == "1 lowercase letter, first 'y' at position 5"


@pytest.mark.parametrize("kind", ["lowercase", "uppercase"])
def test_case_fails_without_cased_letters(kind):
    for text in ["", "123 !?", "你好"]:
        assert fails(text, {"type": kind}) == f"no cased letters, so the response is not {kind}"


# --------------------------------------------------------------------------- keywords


def test_include_keywords_case_insensitive_whole_words():
    c = {"type": "include_keywords", "keywords": ["data", "machine learning"]}
    passes("DATA-driven\nMachine\n  Learning rocks", c)
    detail = fails("Big database of machine-learning facts", c)
    assert detail == (
        'too few of "data" (0 times), "machine learning" (0 times), expected each at least 1 time'
    )


def test_include_keywords_min_count():
    c = {"type": "include_keywords", "keywords": ["cat", "dog"], "min_count": 2}
    passes("Cat and dog. cat, DOG!", c)
    assert fails("cat dog cat concatenate", c) == (
        'too few of "dog" (1 time), expected each at least 2 times'
    )


def test_include_keywords_with_punctuation_in_keyword():
    c = {"type": "include_keywords", "keywords": ["C++"]}
    passes("I like C++.", c)
    assert (
        fails("I like C and C#", c) == 'too few of "C++" (0 times), expected each at least 1 time'
    )


def test_forbidden_words():
    c = {"type": "forbidden_words", "words": ["very", "really"]}
    passes("Everyone is every bit as real.", c)
    assert fails("Very good, really very good", c) == (
        'used forbidden "very" (2 times), "really" (1 time)'
    )


def test_keyword_frequency():
    c = {"type": "keyword_frequency", "keyword": "AI", "relation": "at_least", "n": 2}
    passes("ai is AI; (Ai).", c)
    assert fails("AI and said, rain", c) == '"AI" appears 1 time, expected at least 2'
    c = {"type": "keyword_frequency", "keyword": "the", "relation": "less_than", "n": 2}
    passes("The end, there.", c)
    assert fails("the THE", c) == '"the" appears 2 times, expected fewer than 2'


# --------------------------------------------------------------------------- starts/ends


def test_starts_with():
    c = {"type": "starts_with", "phrase": "Dear Sir"}
    passes("\n  dear sir, hello", c)
    assert fails("Hello Dear Sir", c) == "starts with 'Hello De', expected 'Dear Sir'"


def test_starts_with_case_sensitive():
    c = {"type": "starts_with", "phrase": "Dear", "ignore_case": False}
    passes("Dear John", c)
    assert fails("dear John", c) == "starts with 'dear', expected 'Dear'"


def test_ends_with():
    c = {"type": "ends_with", "phrase": "Any other questions? "}
    passes("Text.\nany OTHER questions?\n\n", c)
    assert fails("Any other questions? Bye.", c) == (
        "ends with 'ther questions? Bye.', expected 'Any other questions?'"
    )
    c = {"type": "ends_with", "phrase": "END", "ignore_case": False}
    assert fails("the end", c) == "ends with 'end', expected 'END'"


# --------------------------------------------------------------------------- punctuation


def test_quotation():
    passes('  "Hello, world."\n', {"type": "quotation"})
    passes("“Curly quotes”", {"type": "quotation"})
    assert fails("Hello", {"type": "quotation"}) == ("does not start with a double quote: 'Hello'")
    assert fails('"Hello', {"type": "quotation"}) == ("does not end with a double quote: '\"Hello'")
    assert fails('"', {"type": "quotation"}) == "does not end with a double quote: '\"'"
    assert fails('"  "', {"type": "quotation"}) == "nothing inside the double quotes"
    assert fails("", {"type": "quotation"}) == (
        "empty response, expected one wrapped in double quotes"
    )


def test_title():
    assert passes("<<My Title>>\nBody", {"type": "title"}).detail == "title <<My Title>>"
    assert fails("<< >> body", {"type": "title"}) == (
        "the title in double angular brackets is empty"
    )
    assert fails("<My Title> or <<broken\ntitle>>", {"type": "title"}) == (
        "no title in double angular brackets, such as <<My Title>>"
    )


def test_no_commas():
    passes("No commas here. None at all!", {"type": "no_commas"})
    assert fails("Well, yes, sure", {"type": "no_commas"}) == "2 commas, first in 'Well, yes, sure'"


def test_placeholder_count():
    c = {"type": "placeholder_count", "n": 2}
    passes("Send it to [address] on [date].", c)
    detail = fails("See [link](http://x) or [ ] for [name].", c)
    assert detail == "1 placeholder ([name]), expected at least 2"
    assert fails("nothing", c) == "0 placeholders, expected at least 2"


def test_response_language_ascii():
    passes("Plain English, with 123 and symbols #$%.\n", {"type": "response_language_ascii"})
    assert fails("Caf\u00e9 \U0001f600", {"type": "response_language_ascii"}) == (
        "2 non-ASCII characters, first 'é' (U+00E9) at position 3"
    )


# --------------------------------------------------------------------------- combinations

SHORT = {"type": "word_count", "relation": "at_most", "n": 3}
LOWER = {"type": "lowercase"}


def test_all_of():
    c = {"type": "all_of", "constraints": [SHORT, LOWER]}
    assert passes("all good here", c).detail == "all 2 passed"
    assert fails("All good here", c) == (
        "1 of 2 failed: lowercase: 1 uppercase letter, first 'A' at position 0"
    )


def test_any_of():
    c = {"type": "any_of", "constraints": [SHORT, LOWER]}
    passes("<<T>> Too Many Words", {"type": "any_of", "constraints": [LOWER, {"type": "title"}]})
    passes("too many words for this", c)
    assert fails("Too Many Words For This", c) == (
        "none of 2 passed: word_count: 5 words, expected at most 3; "
        "lowercase: 5 uppercase letters, first 'T' at position 0"
    )


def test_not():
    c = {"type": "not", "constraint": {"type": "include_keywords", "keywords": ["sorry"]}}
    passes("Here is the answer.", c)
    assert fails("Sorry, I cannot.", c) == (
        'the negated constraint held: include_keywords: "sorry" 1 time'
    )


def test_nested_combinations():
    c = {
        "type": "all_of",
        "constraints": [
            {"type": "any_of", "constraints": [SHORT, {"type": "title"}]},
            {"type": "not", "constraint": {"type": "no_commas"}},
        ],
    }
    passes("<<T>> a long answer, with a comma", c)
    assert not check_constraint("a long answer with no comma", c).passed


def test_check_all():
    ok, results = check_all("tiny reply", [SHORT, LOWER, {"type": "title"}])
    assert ok is False
    assert [r.passed for r in results] == [True, True, False]
    assert check_all("anything", []) == (True, [])
    assert check_all("fine", [SHORT, LOWER])[0] is True


def test_check_all_raises_on_a_malformed_constraint():
    with pytest.raises(ConstraintError, match="word_count: missing required argument 'n'"):
        check_all("text", [LOWER, {"type": "word_count", "relation": "at_most"}])


def test_constraints_round_trip_through_jsonl():
    c = {"type": "all_of", "constraints": [SHORT, {"type": "starts_with", "phrase": "ok"}]}
    loaded = json.loads(json.dumps(c))
    assert check_constraint("ok then", loaded).passed
    assert not check_constraint("then ok", loaded).passed


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("c", "text"),
    [
        (SHORT | {"n": 50}, "Answer in at most 50 words."),
        (
            {"type": "sentence_count", "relation": "less_than", "n": 1},
            "Answer in fewer than 1 sentence.",
        ),
        (
            {"type": "bullet_count", "relation": "exactly", "n": 3},
            "Use exactly 3 bullet points in Markdown, each on its own line starting with '- '.",
        ),
        (
            {"type": "include_keywords", "keywords": ["alpha", "beta", "gamma"]},
            'Include the keywords "alpha", "beta" and "gamma" in your response.',
        ),
        (
            {"type": "include_keywords", "keywords": ["alpha"], "min_count": 3},
            'Include the keyword "alpha" in your response, each at least 3 times.',
        ),
        (
            {"type": "forbidden_words", "words": ["very", "really"]},
            'Do not use the words "very" or "really" in your response.',
        ),
        (
            {"type": "json_format", "top_level": "object"},
            "Format your entire response as one JSON object, with no other text "
            "(a single ```json code block is allowed).",
        ),
        (
            {"type": "ends_with", "phrase": "Is there anything else?"},
            'End your response with the exact phrase "Is there anything else?", '
            "with nothing after it.",
        ),
        (
            {"type": "placeholder_count", "n": 1},
            "Include at least 1 placeholder in square brackets, such as [address].",
        ),
        (
            {"type": "all_of", "constraints": [SHORT, {"type": "no_commas"}]},
            "Answer in at most 3 words. Do not use any commas in your response.",
        ),
        (
            {"type": "any_of", "constraints": [LOWER, {"type": "uppercase"}]},
            "Follow at least one of these instructions: (1) Write your entire response in "
            "lowercase letters only; no uppercase letters. (2) Write your entire response in "
            "uppercase letters only; no lowercase letters.",
        ),
        (
            {"type": "not", "constraint": {"type": "title"}},
            "Do not follow this instruction: Give your answer a title wrapped in double "
            "angular brackets, such as <<My Title>>.",
        ),
    ],
)
def test_describe(c, text):
    assert describe_constraint(c) == text


def test_every_type_describes_itself_as_one_sentence():
    examples = {
        "json_format": {},
        "bullet_count": {"relation": "at_least", "n": 2},
        "numbered_list_count": {"relation": "at_least", "n": 2},
        "paragraph_count": {"relation": "exactly", "n": 2},
        "word_count": {"relation": "at_most", "n": 2},
        "sentence_count": {"relation": "at_most", "n": 2},
        "lowercase": {},
        "uppercase": {},
        "include_keywords": {"keywords": ["x"]},
        "forbidden_words": {"words": ["x"]},
        "keyword_frequency": {"keyword": "x", "relation": "exactly", "n": 2},
        "starts_with": {"phrase": "Hi"},
        "ends_with": {"phrase": "Bye"},
        "quotation": {},
        "title": {},
        "no_commas": {},
        "placeholder_count": {"n": 2},
        "response_language_ascii": {},
        "postscript": {},
        "highlighted_sections": {"n": 2},
        "section_count": {"splitter": "SECTION", "n": 2},
        "two_responses": {},
        "repeat_prompt": {"prompt": "Say hi."},
        "answer_options": {"options": ["yes", "no"]},
        "nth_paragraph_first_word": {"n_paragraphs": 2, "nth": 1, "first_word": "so"},
        "letter_frequency": {"letter": "q", "relation": "at_least", "n": 2},
        "capital_word_frequency": {"relation": "less_than", "n": 2},
        "all_of": {"constraints": [LOWER]},
        "any_of": {"constraints": [LOWER]},
        "not": {"constraint": LOWER},
    }
    assert sorted(examples) == constraint_types()
    for name, args in examples.items():
        text = describe_constraint({"type": name, **args})
        assert text[0].isupper() and text.endswith("."), (name, text)


# --------------------------------------------------------------------------- validation


def test_error_is_an_instill_error():
    err = validation_error({"type": "word_count", "relation": "at_most", "n": -3})
    assert isinstance(err, InstillError)
    assert str(err) == "word_count: 'n' must be a positive integer, got -3"
    assert (err.constraint_type, err.argument) == ("word_count", "n")


def test_error_names_where():
    err = validation_error({"type": "word_count", "relation": "at_most", "n": 0}, "tasks.jsonl:7")
    assert str(err) == "tasks.jsonl:7: word_count: 'n' must be a positive integer, got 0"
    assert err.where == "tasks.jsonl:7"


@pytest.mark.parametrize(
    ("c", "message"),
    [
        (
            {"type": "word_count", "relation": "at_most", "n": True},
            "word_count: 'n' must be a positive integer, got true",
        ),
        (
            {"type": "word_count", "relation": "at_most", "n": 3.0},
            "word_count: 'n' must be a positive integer, got 3.0",
        ),
        (
            {"type": "word_count", "relation": "at_mots", "n": 3},
            "word_count: 'relation' must be one of 'exactly', 'at_least', 'at_most', "
            "'less_than', 'more_than', got \"at_mots\"; did you mean 'at_most'?",
        ),
        (
            {"type": "bullet_count", "relation": "less_than", "n": 3},
            "bullet_count: 'relation' must be one of 'exactly', 'at_least', 'at_most', "
            'got "less_than"',
        ),
        (
            {"type": "include_keywords", "keywords": []},
            "include_keywords: 'keywords' must be a non-empty list of non-empty strings, got []",
        ),
        (
            {"type": "forbidden_words", "words": ["ok", " "]},
            "forbidden_words: 'words' must be a non-empty list of non-empty strings, "
            'got ["ok", " "]',
        ),
        (
            {"type": "forbidden_words", "words": "bad"},
            "forbidden_words: 'words' must be a non-empty list of non-empty strings, got \"bad\"",
        ),
        (
            {"type": "starts_with", "phrase": "Hi", "ignore_case": "yes"},
            "starts_with: 'ignore_case' must be true or false, got \"yes\"",
        ),
        (
            {"type": "keyword_frequency", "keyword": "", "relation": "exactly", "n": 1},
            "keyword_frequency: 'keyword' must be a non-empty string, got \"\"",
        ),
        (
            {"type": "json_format", "top_level": "dict"},
            "json_format: 'top_level' must be one of 'any', 'object', 'array', got \"dict\"",
        ),
        (
            {"type": "all_of", "constraints": []},
            "all_of: 'constraints' must be a non-empty list of constraint objects, got []",
        ),
        (
            {"type": "not", "constraint": "lowercase"},
            'not: \'constraint\' must be a constraint object such as {"type": "no_commas"}, '
            'got "lowercase"',
        ),
    ],
)
def test_bad_argument_values(c, message):
    assert str(validation_error(c)) == message


def test_missing_argument():
    err = validation_error({"type": "word_count", "relation": "at_most"})
    assert str(err) == "word_count: missing required argument 'n' (a positive integer)"
    err = validation_error({"type": "word_count", "n": 5})
    assert str(err) == (
        "word_count: missing required argument 'relation' (one of 'exactly', 'at_least', "
        "'at_most', 'less_than', 'more_than')"
    )


def test_unknown_argument_suggests_nearest():
    err = validation_error({"type": "include_keywords", "keyword": ["a"]}, "t.jsonl:2")
    assert str(err) == (
        "t.jsonl:2: include_keywords: unknown argument 'keyword'; did you mean 'keywords'? "
        "valid arguments: keywords, min_count"
    )
    assert err.argument == "keyword"
    err = validation_error({"type": "lowercase", "strict": True})
    assert str(err) == "lowercase: unknown argument 'strict'; valid arguments: none"


def test_unknown_type_lists_known_types():
    err = validation_error({"type": "word_cont", "n": 3}, "t.jsonl:1")
    known = ", ".join(constraint_types())
    assert str(err) == (
        f"t.jsonl:1: unknown constraint type \"word_cont\"; did you mean 'word_count'? "
        f"known types: {known}"
    )
    err = validation_error({"type": 7})
    assert str(err) == f"unknown constraint type 7; known types: {known}"


def test_not_a_dict_or_no_type():
    assert str(validation_error(["word_count"])) == (
        'a constraint must be an object such as {"type": "no_commas"}, got ["word_count"]'
    )
    assert str(validation_error({"n": 3})).startswith(
        "constraint {\"n\": 3} has no 'type'; known types: all_of, answer_options, any_of,"
    )


def test_nested_errors_name_their_path():
    c = {
        "type": "all_of",
        "constraints": [
            LOWER,
            {"type": "not", "constraint": {"type": "word_count", "relation": "at_most", "n": -1}},
        ],
    }
    err = validation_error(c, "tasks.jsonl:3")
    assert str(err) == (
        "tasks.jsonl:3: all_of.constraints[1]: not.constraint: word_count: "
        "'n' must be a positive integer, got -1"
    )
    assert str(validation_error({"type": "any_of", "constraints": [LOWER, 5]})) == (
        'any_of.constraints[1]: a constraint must be an object such as {"type": "no_commas"}, got 5'
    )


def test_check_and_describe_validate_first():
    bad = {"type": "word_count", "relation": "at_most", "n": -3}
    with pytest.raises(ConstraintError, match="got -3"):
        check_constraint("text", bad)
    with pytest.raises(ConstraintError, match="got -3"):
        describe_constraint(bad)


def test_validation_accepts_well_formed_constraints():
    validate_constraint({"type": "starts_with", "phrase": "Hi", "ignore_case": False}, "x:1")
    validate_constraint(
        {"type": "any_of", "constraints": [LOWER, {"type": "not", "constraint": SHORT}]}
    )


# --------------------------------------------------------------------------- registry


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register into a copy so that test registrations do not leak into other tests."""
    monkeypatch.setattr(cons, "_REGISTRY", dict(cons._REGISTRY))


def _check_shouting(response, args):
    got = response.count("!")
    return ConstraintResult(
        got >= args["n"], f"{got} exclamation marks, expected at least {args['n']}"
    )


def _describe_shouting(args):
    return f"Use at least {args['n']} exclamation marks{args['suffix']}"


def test_register_custom_constraint(scratch_registry):
    register_constraint(
        "exclamations",
        _check_shouting,
        {"n": PositiveInt, "suffix": NonEmptyStr},
        _describe_shouting,
        defaults={"suffix": "."},
    )
    assert "exclamations" in constraint_types()
    c = {"type": "exclamations", "n": 2}
    assert check_constraint("Hi!!", c) == ConstraintResult(
        True, "2 exclamation marks, expected at least 2"
    )
    assert not check_constraint("Hi!", c).passed
    assert describe_constraint(c) == "Use at least 2 exclamation marks."
    assert describe_constraint(c | {"suffix": " now."}) == "Use at least 2 exclamation marks now."
    with pytest.raises(ConstraintError, match="'n' must be a positive integer, got 0"):
        validate_constraint({"type": "exclamations", "n": 0})


def test_register_refuses_duplicates(scratch_registry):
    with pytest.raises(ConstraintError, match="constraint name 'word_count' is already registered"):
        register_constraint("word_count", _check_shouting, {}, _describe_shouting)
    register_constraint("shouting", _check_shouting, {"n": PositiveInt}, _describe_shouting)
    with pytest.raises(ConstraintError, match="'shouting' is already registered"):
        register_constraint("shouting", _check_shouting, {"n": PositiveInt}, _describe_shouting)


@pytest.mark.parametrize("name", ["Shouting", "2loud", "loud-text", "", "loud text", "_loud"])
def test_register_refuses_bad_names(scratch_registry, name):
    with pytest.raises(ConstraintError, match=r"must match \^\[a-z\]\[a-z0-9_\]\*\$"):
        register_constraint(name, _check_shouting, {}, _describe_shouting)
    assert name not in constraint_types()


def test_register_refuses_malformed_schemas(scratch_registry):
    with pytest.raises(ConstraintError, match="parameter 'n' has kind <class 'int'>"):
        register_constraint("loud", _check_shouting, {"n": int}, _describe_shouting)
    with pytest.raises(ConstraintError, match="parameter name 'type'"):
        register_constraint("loud", _check_shouting, {"type": NonEmptyStr}, _describe_shouting)
    with pytest.raises(ConstraintError, match=r"defaults for unknown parameters \['m'\]"):
        register_constraint(
            "loud", _check_shouting, {"n": PositiveInt}, _describe_shouting, defaults={"m": 1}
        )
    with pytest.raises(ConstraintError, match="must be callable"):
        register_constraint("loud", None, {}, _describe_shouting)  # type: ignore[arg-type]
    assert "loud" not in constraint_types()


# --------------------------------------------------------------------------- IFEval-style types


def test_paragraph_count_separator_default_is_any():
    text = "One.\n\nTwo.\n***\nThree."
    for c in (
        {"type": "paragraph_count", "relation": "exactly", "n": 3},
        {"type": "paragraph_count", "relation": "exactly", "n": 3, "separator": "any"},
    ):
        passes(text, c)


def test_paragraph_count_markdown_divider():
    c = {"type": "paragraph_count", "relation": "exactly", "n": 3, "separator": "***"}
    passes("One.\n***\nTwo.\n\n***\nThree.", c)
    passes("***\nOne.\n***\nTwo has\n\na blank line.\n***\nThree.\n***\n", c)  # ends not counted
    assert fails("One.\n\nTwo.\n\nThree.", c) == "1 paragraph separated by ***, expected exactly 3"
    assert fails("One.\n***\n***\nThree.", c) == "paragraph 2 between two *** dividers is empty"
    passes("a *** b", {**c, "relation": "at_least", "n": 2})


def test_paragraph_count_blank_line_only():
    c = {"type": "paragraph_count", "relation": "exactly", "n": 2, "separator": "blank_line"}
    passes("One.\n***\nstill one.\n\n\n  \nTwo.\n", c)
    assert fails("One.\n***\nTwo.", c) == "1 paragraph separated by blank lines, expected exactly 2"


def test_paragraph_count_separator_describe_and_validation():
    c = {"type": "paragraph_count", "relation": "at_least", "n": 3, "separator": "***"}
    assert describe_constraint(c) == (
        "Write at least 3 paragraphs, separated by the markdown divider ***."
    )
    assert describe_constraint({**c, "separator": "any"}) == (
        "Write at least 3 paragraphs, separated by blank lines."
    )
    assert str(validation_error({**c, "separator": "---"})) == (
        "paragraph_count: 'separator' must be one of 'any', 'blank_line', '***', got \"---\""
    )


def test_postscript():
    c = {"type": "postscript"}
    passes("Body.\n\nP.S. Bring snacks.", c)
    passes("Body.\n  p. s. lowercase and spaced", c)
    assert (
        fails("Body. See the P.S. below", c) == "no line starts with 'P.S.', expected a postscript"
    )
    fails("Body.\nPS no dots", c)
    pps = {"type": "postscript", "marker": "P.P.S."}
    passes("Body.\nP.S. one\nP.P.S two", pps)
    fails("Body.\nP.S. one", pps)
    assert describe_constraint(c) == (
        "At the end of your response, please explicitly add a postscript starting with P.S."
    )
    assert "marker" in str(validation_error({"type": "postscript", "marker": "PS"}))


def test_highlighted_sections():
    assert count_highlights("*one* and *two*, **three**, ** ** and *\n*") == 3
    assert count_highlights("* bullet\n* bullet") == 0
    c = {"type": "highlighted_sections", "n": 2}
    passes("A *first* point and a **second** one.", c)
    assert fails("Only *one* here; ** ** is empty.", c).startswith("1 highlighted section")
    assert fails("none", c) == "0 highlighted sections, expected at least 2"
    assert "'n' must be a positive integer" in str(
        validation_error({"type": "highlighted_sections", "n": 0})
    )


def test_section_count():
    text = "SECTION 1\nIntro.\n\nSECTION 2\nBody.\n\nSECTION 3 End."
    assert count_sections(text, "SECTION") == 3
    c = {"type": "section_count", "splitter": "SECTION", "n": 3}
    passes(text, c)
    passes("PART 1 a PART 2 b", {**c, "splitter": "PART", "n": 2})
    assert fails("Section 1 a\nSection 2 b", c) == (
        "0 sections marked 'SECTION <number>', expected at least 3"
    )
    assert fails("SECTION 1 a SECTION b", c).startswith("1 section marked")
    assert "'splitter' must be a non-empty string" in str(
        validation_error({"type": "section_count", "splitter": " ", "n": 2})
    )


def test_two_responses():
    c = {"type": "two_responses"}
    passes("First answer.\n******\nSecond answer.", c)
    passes("******\nFirst.\n******\nSecond.\n******", c)  # empty ends allowed, as in IFEval
    assert fails("Same.\n******\nSame.  ", c) == "the two responses are identical"
    assert fails("Only one.", c) == "1 response separated by ******, expected 2"
    assert fails("a\n******\nb\n******\nc", c) == "3 responses separated by ******, expected 2"
    assert fails("a\n******\n \n******\nb", c) == "response 2 between two ****** is empty"


def test_repeat_prompt():
    c = {"type": "repeat_prompt", "prompt": "  Write a haiku about rain. "}
    passes("write a haiku about RAIN.\n\nDrops on the roof...", c)
    detail = fails("Sure! Write a haiku about rain.", c)
    assert detail.startswith("does not start with the request: differs at character 0")
    assert "'prompt' must be a non-empty string" in str(
        validation_error({"type": "repeat_prompt", "prompt": ""})
    )


def test_answer_options():
    c = {"type": "answer_options", "options": ["My answer is yes.", "My answer is no."]}
    passes("Having thought about it: My answer is no.", c)
    assert fails("my answer is yes.", c) == (
        'contains none of the options "My answer is yes." or "My answer is no."'
    )
    assert describe_constraint(c) == (
        'Answer with one of the following options: "My answer is yes." or "My answer is no.".'
    )


def test_nth_paragraph_first_word():
    c = {"type": "nth_paragraph_first_word", "n_paragraphs": 3, "nth": 2, "first_word": "Rain"}
    passes('\n\nIntro.\n\n"Rain," she said.\n\nEnd.\n\n', c)
    passes("Intro.\n\n**rain** falls.\n\nEnd.", c)
    assert fails("Intro.\n\nSun.\n\nEnd.", c) == "paragraph 2 starts with 'sun', expected 'rain'"
    assert fails("Intro.\n\nRain.", c) == "2 paragraphs, expected exactly 3"
    assert fails("Intro.\n\n\n\nRain.\n\nEnd.", c).startswith("part 2 between two blank lines")
    err = validation_error({**c, "nth": 4})
    assert str(err) == "nth_paragraph_first_word: 'nth' must be at most 'n_paragraphs' (3), got 4"
    assert err.argument == "nth"


def test_letter_frequency():
    c = {"type": "letter_frequency", "letter": "Q", "relation": "at_least", "n": 3}
    passes("Quick quiet Quail", c)
    assert fails("quick", c) == "the letter 'q' appears 1 time, expected at least 3"
    passes("quick", {**c, "relation": "less_than"})
    fails("qqq", {**c, "relation": "less_than"})
    for bad in ("qq", "é", "1"):
        err = validation_error({**c, "letter": bad})
        assert err.argument == "letter" and "single ASCII letter" in str(err)
    assert describe_constraint(c) == 'Use the letter "q" at least 3 times in your response.'


def test_capital_word_frequency():
    assert count_capital_words("NASA and the EU, I think; 42 -- OK. Mixed CamelCase") == 4
    c = {"type": "capital_word_frequency", "relation": "at_least", "n": 2}
    passes("This is VERY VERY important.", c)
    assert fails("Only ONE here.", c) == "1 all-capital word, expected at least 2"
    passes("Only ONE here.", {**c, "relation": "less_than"})
    assert "'relation' must be one of 'at_least', 'less_than'" in str(
        validation_error({**c, "relation": "exactly"})
    )
