"""Built-in families, part A: registration, determinism, strict checks, diversity, answers."""

from __future__ import annotations

import codecs
import csv
import io
import json
import random
import re
import string

import pytest

from instill.data.builtin import core
from instill.data.builtin import families_a as fa
from instill.eval.constraints import check_all
from instill.eval.metrics import extract_numbers, score

CATEGORIES = {
    "sentiment": "classification",
    "topic": "classification",
    "parity": "classification",
    "word_language": "classification",
    "extract_numbers": "extraction",
    "extract_dates": "extraction",
    "extract_names": "extraction",
    "fields_to_json": "extraction",
    "uppercase": "transformation",
    "lowercase": "transformation",
    "reverse_word": "transformation",
    "reverse_list": "transformation",
    "sort_numbers": "transformation",
    "sort_words": "transformation",
    "dedup_list": "transformation",
    "unit_conversion": "transformation",
    "csv_to_json": "transformation",
    "count_words": "counting",
    "count_letter": "counting",
    "caesar_shift": "cipher",
    "rot13": "cipher",
    "acronym": "transformation",
    "spell_out": "transformation",
}
NAMES = sorted(CATEGORIES)
RAMBLING = (
    "Well, that is an interesting question, and I think the answer depends on many things "
    "that we would need to discuss at length before deciding."
)


def family(name: str) -> core.Family:
    # Straight from the registry: these tests are about this module's families only.
    return core._FAMILIES[name]


def instances(name: str, n: int, seed: int = 0) -> list[core.Instance]:
    rng = random.Random(seed)
    return [family(name).generate(rng) for _ in range(n)]


def check_score(check: core.Check, answer: str) -> float:
    if check.metric == "constraints":
        return float(check_all(answer, list(check.constraints))[0])
    return score(check.metric, answer, check.reference, **check.options)


def test_module_registers_exactly_these_families():
    registered = {n for n, f in core._FAMILIES.items() if f.generate.__module__ == fa.__name__}
    assert registered == set(CATEGORIES)


@pytest.mark.parametrize("name", NAMES)
def test_category_and_phrasings(name):
    fam = family(name)
    assert fam.category == CATEGORIES[name]
    assert len(set(fam.phrasings)) >= 6
    assert fam.description


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_instances(name):
    assert instances(name, 30, seed=7) == instances(name, 30, seed=7)
    assert instances(name, 30, seed=7) != instances(name, 30, seed=8)


@pytest.mark.parametrize("name", NAMES)
def test_output_scores_one(name):
    for inst in instances(name, 200):
        assert inst.output.strip(), inst
        assert check_score(inst.check, inst.output) == 1.0, inst


@pytest.mark.parametrize("name", NAMES)
def test_rambling_answer_fails(name):
    scores = [check_score(inst.check, RAMBLING) for inst in instances(name, 100)]
    assert sum(s == 0.0 for s in scores) >= 95


@pytest.mark.parametrize("name", NAMES)
def test_answer_buried_in_prose_fails(name):
    # Each phrasing asks for the bare answer, so wrapping it in a sentence does not follow it.
    for inst in instances(name, 50):
        assert check_score(inst.check, f"Sure! The answer is {inst.output} as requested.") == 0


@pytest.mark.parametrize("name", NAMES)
def test_every_phrasing_formats(name):
    fam = family(name)
    for inst in instances(name, 20):
        for k in range(len(fam.phrasings)):
            text = core.phrase(fam, k, inst)
            assert text.strip() and "{" not in text, text


@pytest.mark.parametrize("name", NAMES)
def test_instances_are_diverse(name):
    # One fixed phrasing, so the variety comes from the inputs, not the wording.
    fam = family(name)
    distinct = {(core.phrase(fam, 0, inst), inst.context) for inst in instances(name, 200)}
    assert len(distinct) >= 50


@pytest.mark.parametrize("name", NAMES)
def test_context_and_system_are_used_consistently(name):
    insts = instances(name, 50)
    assert len({inst.context is None for inst in insts}) == 1
    assert len({inst.system is None for inst in insts}) == 1
    assert all(inst.history == () for inst in insts)


def test_about_half_use_context_and_a_few_use_a_system_prompt():
    with_context = {n for n in NAMES if instances(n, 1)[0].context is not None}
    with_system = {n for n in NAMES if instances(n, 1)[0].system is not None}
    assert 9 <= len(with_context) <= 14
    assert with_system == {"sentiment", "fields_to_json", "unit_conversion", "caesar_shift"}


# --------------------------------------------------------------------------- echoing the input

ECHOES = {
    "uppercase": lambda inst: inst.context,
    "lowercase": lambda inst: inst.slots["text"],
    "reverse_word": lambda inst: inst.slots["word"],
    "reverse_list": lambda inst: inst.slots["items"],
    "sort_numbers": lambda inst: inst.context,
    "sort_words": lambda inst: inst.slots["words"],
    "dedup_list": lambda inst: inst.context,
    "caesar_shift": lambda inst: inst.slots["word"],
    "rot13": lambda inst: inst.slots["text"],
    "acronym": lambda inst: inst.slots["name"],
    "spell_out": lambda inst: inst.slots["word"],
}


@pytest.mark.parametrize("name", sorted(ECHOES))
def test_echoing_the_input_fails(name):
    for inst in instances(name, 100):
        assert check_score(inst.check, ECHOES[name](inst)) == 0.0, inst


# --------------------------------------------------------------------------- answers recomputed


def recompute(name: str, inst: core.Instance) -> str:
    """The right answer worked out independently of the generator, from what the model sees."""
    s, ctx = inst.slots, inst.context
    if name == "parity":
        return "even" if s["number"] % 2 == 0 else "odd"
    if name == "word_language":
        return next(lang for lang, words in fa.LEXICONS.items() if s["word"] in words)
    if name == "extract_numbers":
        numbers = [int(x) if x.is_integer() else x for x in extract_numbers(ctx)]
        return json.dumps(numbers)
    if name == "uppercase":
        return ctx.upper()
    if name == "lowercase":
        return s["text"].lower()
    if name == "reverse_word":
        return s["word"][::-1]
    if name == "reverse_list":
        return ", ".join(reversed(s["items"].split(", ")))
    if name == "sort_numbers":
        return ", ".join(str(n) for n in sorted(int(x) for x in ctx.split(", ")))
    if name == "sort_words":
        return ", ".join(sorted(s["words"].split(", ")))
    if name == "dedup_list":
        return ", ".join(dict.fromkeys(ctx.split(", ")))
    if name == "csv_to_json":
        rows = list(csv.DictReader(io.StringIO(ctx)))

        def cell(v: str) -> int | float | str:
            for kind in (int, float):
                try:
                    return kind(v)
                except ValueError:
                    pass
            return v

        return json.dumps([{k: cell(v) for k, v in row.items()} for row in rows])
    if name == "count_words":
        return str(len(ctx.split()))
    if name == "count_letter":
        return str(s["text"].count(s["letter"]))
    if name == "caesar_shift":
        k = s["shift"]
        abc = string.ascii_lowercase
        return s["word"].translate(str.maketrans(abc, abc[k:] + abc[:k]))
    if name == "rot13":
        return codecs.encode(s["text"], "rot13")
    if name == "acronym":
        return "".join(w[0] for w in s["name"].split()).upper()
    if name == "spell_out":
        return "-".join(s["word"])
    raise KeyError(name)


RECOMPUTED = [
    "parity", "word_language", "extract_numbers", "uppercase", "lowercase", "reverse_word",
    "reverse_list", "sort_numbers", "sort_words", "dedup_list", "csv_to_json", "count_words",
    "count_letter", "caesar_shift", "rot13", "acronym", "spell_out",
]  # fmt: skip


@pytest.mark.parametrize("name", RECOMPUTED)
def test_output_matches_an_independent_computation(name):
    for inst in instances(name, 100):
        assert inst.output == recompute(name, inst), inst


def test_word_language_lexicons_do_not_overlap():
    seen: dict[str, str] = {}
    for language, words in fa.LEXICONS.items():
        for word in words:
            assert word.lower() not in seen, (word, language, seen.get(word.lower()))
            seen[word.lower()] = language


def test_unit_conversion_answers_follow_the_factor():
    factors = {(src, dst): f for src, dst, f in fa._CONVERSIONS}
    for inst in instances("unit_conversion", 100):
        s = inst.slots
        factor = factors[s["source"], s["target"]]
        expected = s["value"] * factor if factor > 0 else s["value"] // -factor
        assert inst.output == str(expected)
        assert factor > 0 or s["value"] % -factor == 0


def test_extract_dates_covers_every_written_form():
    # Every ISO date in the answer appears in the text in one of the three forms.
    forms = set()
    for inst in instances("extract_dates", 200):
        for iso in json.loads(inst.output):
            y, m, d = (int(x) for x in iso.split("-"))
            month = fa.MONTHS[m - 1]
            written = {"iso": iso, "us": f"{month} {d}, {y}", "eu": f"{d} {month} {y}"}
            found = [k for k, text in written.items() if text in inst.context]
            assert found, (iso, inst.context)
            forms.update(found)
    assert forms == {"iso", "us", "eu"}


def test_extract_names_excludes_places():
    for inst in instances("extract_names", 100):
        names = json.loads(inst.output)
        assert names and all(n.split()[0] in fa.NAMES for n in names)
        assert all(n in inst.context for n in names)


def test_fields_to_json_keys_and_values_come_from_the_input():
    for inst in instances("fields_to_json", 100):
        record = json.loads(inst.output)
        assert list(record) == re.findall(r'"(\w+)"', inst.slots["keys"])
        assert all(str(v) in inst.context for v in record.values())
        assert isinstance(record.get("age", 0), int)


def test_strict_formats_reject_near_misses():
    inst = core.Instance(slots={}, output="", check=fa._number_check(12))
    assert check_score(inst.check, "12.") == 1.0
    assert check_score(inst.check, "12 words") == 0.0
    _, list_check = fa._list_check(["b", "a"])
    assert check_score(list_check, "b,a") == 1.0
    assert check_score(list_check, "b a") == 0.0
    assert check_score(fa._string_check("ABC", keep_case=True), "abc") == 0.0
    assert check_score(fa._label_check("positive"), "Positive.") == 1.0
    assert check_score(fa._label_check("positive"), "positive or negative") == 0.0
    assert fa.caesar("xyz", 2) == "zab"
