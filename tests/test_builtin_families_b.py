"""The part-B built-in families: phrasings, determinism, honest checks and diversity.

Families are looked up by name in `core._FAMILIES`, so these tests do not depend on the other
family module.
"""

from __future__ import annotations

import contextlib
import io
import json
import random

import pytest

import instill.data.builtin.families_b as families_b
from instill.data.builtin import core
from instill.eval.constraints import check_all
from instill.eval.metrics import score

CATEGORY_OF = {
    "add_word_problem": "arithmetic",
    "subtract_word_problem": "arithmetic",
    "multiply": "arithmetic",
    "compare_numbers": "arithmetic",
    "max_of_list": "arithmetic",
    "next_in_sequence": "arithmetic",
    "longer_word": "arithmetic",
    "qa_who": "qa",
    "qa_where": "qa",
    "qa_when": "qa",
    "key_sentence": "summary",
    "list_n_items": "constrained",
    "word_limit": "constrained",
    "first_word": "constrained",
    "json_answer": "constrained",
    "lowercase_reply": "constrained",
    "numbered_steps": "constrained",
    "code_arith_output": "code",
    "code_string_output": "code",
    "repeat_word": "transformation",
    "followup_double": "multi_turn",
    "followup_count": "multi_turn",
    "followup_reformat": "multi_turn",
}
NAMES = sorted(CATEGORY_OF)
WITH_CONTEXT = {
    "add_word_problem",
    "max_of_list",
    "next_in_sequence",
    "qa_who",
    "qa_where",
    "qa_when",
    "key_sentence",
    "json_answer",
    "code_arith_output",
    "code_string_output",
}
WITH_SYSTEM = {"json_answer", "lowercase_reply", "code_arith_output", "followup_double"}
RAMBLE = (
    "Well, that is an interesting question. Let me think about it step by step and explain my "
    "reasoning in detail. There are several things to consider here, and I will go through each "
    "of them carefully before giving a final answer."
)


def _family(name: str) -> core.Family:
    return core._FAMILIES[name]


def _instances(name: str, n: int, seed: int = 0) -> list[core.Instance]:
    rng = random.Random(seed)
    return [_family(name).generate(rng) for _ in range(n)]


def _score(check: core.Check, answer: str) -> float:
    if check.metric == "constraints":
        return float(check_all(answer, list(check.constraints))[0])
    return score(check.metric, answer, check.reference, **check.options)


def test_every_family_is_registered_with_its_category():
    for name, category in CATEGORY_OF.items():
        assert _family(name).category == category
        assert _family(name).description


@pytest.mark.parametrize("name", NAMES)
def test_six_distinct_phrasings_that_all_format(name):
    family = _family(name)
    assert len(set(family.phrasings)) >= 6
    for inst in _instances(name, 20):
        for k in range(len(family.phrasings)):
            assert core.phrase(family, k, inst).strip()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_same_instances(name):
    assert _instances(name, 30, seed=7) == _instances(name, 30, seed=7)
    assert _instances(name, 30, seed=7) != _instances(name, 30, seed=8)


@pytest.mark.parametrize("name", NAMES)
def test_output_passes_its_own_check(name):
    for inst in _instances(name, 200, seed=1):
        assert _score(inst.check, inst.output) == 1.0, (inst.output, inst.check)


@pytest.mark.parametrize("name", NAMES)
def test_rambling_answer_fails(name):
    zeros = sum(_score(inst.check, RAMBLE) == 0.0 for inst in _instances(name, 100, seed=2))
    assert zeros >= 95


@pytest.mark.parametrize(
    "name",
    [n for n in NAMES if _family(n).generate(random.Random(0)).check.metric != "constraints"],
)
def test_right_answer_wrapped_in_chatter_fails(name):
    """ "Just the number / name / JSON" means exactly that: the answer inside a sentence fails."""
    for inst in _instances(name, 100, seed=3):
        padded = f"Sure! The answer is {inst.output}. I hope this helps, let me know if not."
        assert _score(inst.check, padded) == 0.0, padded


@pytest.mark.parametrize("name", NAMES)
def test_instances_are_diverse(name):
    keys = {
        (tuple(sorted(i.slots.items())), i.context, i.history, i.system)
        for i in _instances(name, 200, seed=4)
    }
    assert len(keys) >= 50, len(keys)


@pytest.mark.parametrize("name", NAMES)
def test_context_system_and_history_where_expected(name):
    insts = _instances(name, 30, seed=5)
    assert all(bool(i.context) == (name in WITH_CONTEXT) for i in insts)
    assert all(bool(i.system) == (name in WITH_SYSTEM) for i in insts)
    multi_turn = CATEGORY_OF[name] == "multi_turn"
    assert all(bool(i.history) == multi_turn for i in insts)
    if multi_turn:
        for inst in insts:
            assert all(user.strip() and reply.strip() for user, reply in inst.history)
            assert not _family(name).phrasings[0].count("{")  # the last turn has no slots


@pytest.mark.parametrize("name", ["code_arith_output", "code_string_output"])
def test_code_answers_match_real_python(name):
    """Our interpreter agrees with Python on the programs we generate (our own code, so exec is
    safe here; the generator itself never execs)."""
    for inst in _instances(name, 200, seed=6):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(inst.context, {})
        assert out.getvalue().strip() == inst.output, inst.context


@pytest.mark.parametrize("name", ["qa_who", "qa_where", "qa_when"])
def test_qa_answer_is_a_span_of_the_story(name):
    for inst in _instances(name, 100, seed=7):
        assert inst.output in inst.context
        sentences = inst.context.count(".")
        assert 2 <= sentences <= 4


def test_key_sentence_is_the_only_sentence_naming_the_topic():
    for inst in _instances("key_sentence", 100, seed=8):
        topic = next(
            t for t, (key, _) in families_b.KEY_SENTENCE_TOPICS.items() if key == inst.output
        )
        assert inst.output in inst.context
        named = [s for s in inst.context.split(". ") if topic.lower() in s.lower()]
        assert len(named) == 1
        assert 3 <= inst.context.count(". ") + 1 <= 5


def test_list_items_come_from_the_category():
    for inst in _instances("list_n_items", 100, seed=9):
        items = [line[2:] for line in inst.output.splitlines()]
        assert len(items) == inst.slots["n"] == len(set(items))
        assert set(items) <= set(families_b.CATEGORIES[inst.slots["category"]])


def test_json_answer_values_appear_in_the_context():
    for inst in _instances("json_answer", 100, seed=10):
        value = json.loads(inst.output)
        assert value == inst.check.reference and "name" in value
        assert all(str(v) in inst.context for v in value.values())


def test_followups_refer_to_the_history():
    for inst in _instances("followup_count", 50, seed=11):
        assert inst.history[0][1].count("\n- ") + 1 == int(inst.output)
    for inst in _instances("followup_reformat", 50, seed=11):
        assert ", ".join(json.loads(inst.output)) == inst.history[0][1]
    for inst in _instances("followup_double", 50, seed=11):
        assert int(inst.output) == 2 * int(inst.history[0][1])


def test_constrained_checks_reject_obvious_violations():
    wrong = {
        "list_n_items": lambda i: "\n".join(["- item"] * (i.slots["n"] + 1)),
        "word_limit": lambda i: " ".join([i.check.constraints[1]["keywords"][0]] * 16),
        "first_word": lambda i: f"Indeed, {i.slots['topic']} matter.",
        "lowercase_reply": lambda i: i.output.capitalize(),
        "numbered_steps": lambda i: i.output.replace("1. ", "- "),
        "json_answer": lambda i: i.output.replace('"name"', '"Name"'),
    }
    for name, make in wrong.items():
        for inst in _instances(name, 50, seed=12):
            assert _score(inst.check, make(inst)) == 0.0, (name, make(inst))
