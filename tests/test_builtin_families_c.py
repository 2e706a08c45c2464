"""The part-C (long-form) built-in families: phrasings, determinism, honest checks, lengths that
follow the request, and answers that are diverse rather than one template repeated.

Families are looked up by name in `core._FAMILIES`, so these tests do not depend on the other
family modules.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

import instill.data.builtin.families_c as families_c
from instill.data.builtin import content, core
from instill.eval.constraints import check_all, count_words, split_paragraphs

# name -> (min words, max words) of the reference answers
WORD_RANGE = {
    "explain_topic": (60, 260),
    "write_n_words": (50, 170),
    "summarize_passage": (15, 80),
    "rewrite_formal": (50, 160),
    "fact_list": (25, 130),
    "blog_post": (140, 320),
    "formal_letter": (60, 160),
    "friendly_email": (35, 110),
    "short_story": (90, 260),
    "idea_list": (30, 180),
    "pros_cons": (45, 150),
    "how_to_guide": (90, 180),
    "persuasive_essay": (150, 300),
    "itinerary": (60, 200),
    "toast_speech": (75, 160),
    "product_description": (50, 110),
}
NAMES = sorted(WORD_RANGE)
WITH_CONTEXT = {"summarize_passage", "rewrite_formal"}
ALWAYS_SYSTEM = {"product_description"}
SOMETIMES_SYSTEM = {"explain_topic", "blog_post", "friendly_email"}
RAMBLE = (
    "Well, that is an interesting question. Let me think about it step by step and explain my "
    "reasoning in detail. There are several things to consider here, and I will go through each "
    "of them carefully before giving a final answer."
)
# A long, well-formed answer about something else, in several shapes, none naming any subject.
_OFF_TOPIC_SENTENCES = [
    "The market opens early on Saturdays and closes soon after lunch.",
    "Stalls sell cheese, olives, fresh fish and flowers from nearby farms.",
    "Most traders have worked there for many years and know their customers by name.",
    "Prices are usually lower just before closing time.",
    "Visitors often stop for a warm pastry at the corner stall.",
    "Parking is limited, so many people arrive on foot or by bus.",
]
OFF_TOPIC = {
    "paragraphs": "\n\n".join(" ".join(_OFF_TOPIC_SENTENCES[i : i + 2]) for i in (0, 2, 4)) * 2,
    "bullets": "Some notes:\n\n" + "\n".join(f"- {s}" for s in _OFF_TOPIC_SENTENCES),
    "numbered": "\n".join(f"{i}. {s}" for i, s in enumerate(_OFF_TOPIC_SENTENCES, 1)),
}


def _family(name: str) -> core.Family:
    return core._FAMILIES[name]


def _instances(name: str, n: int, seed: int = 0) -> list[core.Instance]:
    rng = random.Random(seed)
    return [_family(name).generate(rng) for _ in range(n)]


def _passes(inst: core.Instance, answer: str) -> bool:
    assert inst.check.metric == "constraints"
    return check_all(answer, list(inst.check.constraints))[0]


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?:])\s+|\n+", text)
    return [p.strip() for p in parts if count_words(p) >= 4]


def test_every_family_is_registered_as_longform():
    registered = {n for n, f in core._FAMILIES.items() if f.category == "longform"}
    assert registered == set(NAMES)
    assert len(registered) >= 14
    assert all(_family(n).description for n in NAMES)


def test_held_out_families_are_registered_and_leave_the_core_tasks_trained():
    held = families_c.HELD_OUT_LONGFORM
    assert len(held) == 3 and set(held) <= set(NAMES)
    trained = set(NAMES) - set(held)
    for needed in ("formal_letter", "friendly_email", "explain_topic", "short_story"):
        assert needed in trained
    assert {"idea_list", "fact_list"} & trained and "summarize_passage" in trained


@pytest.mark.parametrize("name", NAMES)
def test_six_distinct_phrasings_that_all_format(name):
    family = _family(name)
    assert len(set(family.phrasings)) >= 6
    for inst in _instances(name, 20):
        for k in range(len(family.phrasings)):
            assert core.phrase(family, k, inst).strip()


@pytest.mark.parametrize("name", NAMES)
def test_held_out_phrasings_are_different_wordings(name):
    """The last two phrasings share no opening words with the trained ones."""
    phrasings = _family(name).phrasings
    trained_openings = {" ".join(p.split()[:2]) for p in phrasings[:-2]}
    for p in phrasings[-2:]:
        assert " ".join(p.split()[:2]) not in trained_openings, p


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_same_instances(name):
    assert _instances(name, 20, seed=7) == _instances(name, 20, seed=7)
    assert _instances(name, 20, seed=7) != _instances(name, 20, seed=8)


@pytest.mark.parametrize("name", NAMES)
def test_output_passes_its_own_check(name):
    for inst in _instances(name, 150, seed=1):
        assert _passes(inst, inst.output), (inst.output, inst.check)


@pytest.mark.parametrize("name", NAMES)
def test_empty_rambling_one_sentence_and_off_topic_answers_fail(name):
    for inst in _instances(name, 60, seed=2):
        first = _sentences(max(inst.output.split("\n\n"), key=count_words))[0]
        for bad in ("", RAMBLE, first, *OFF_TOPIC.values()):
            assert not _passes(inst, bad), (name, bad)


@pytest.mark.parametrize("name", NAMES)
def test_word_counts_stay_in_the_stated_range(name):
    lo, hi = WORD_RANGE[name]
    counts = [count_words(i.output) for i in _instances(name, 80, seed=3)]
    assert lo <= min(counts) and max(counts) <= hi <= 400, (min(counts), max(counts))


@pytest.mark.parametrize("name", NAMES)
def test_answers_are_diverse(name):
    insts = _instances(name, 80, seed=4)
    outputs = [i.output for i in insts]
    assert len(set(outputs)) >= (55 if name == "how_to_guide" else 75)
    # No sentence is boilerplate repeated across a large share of the answers.
    per_answer = Counter(s for out in outputs for s in set(_sentences(out)))
    sentence, n = per_answer.most_common(1)[0]
    assert n <= 0.3 * len(outputs), (sentence, n)


@pytest.mark.parametrize("name", NAMES)
def test_context_and_system_where_expected(name):
    insts = _instances(name, 40, seed=5)
    assert all(bool(i.context) == (name in WITH_CONTEXT) for i in insts)
    assert not any(i.history for i in insts)
    systems = [bool(i.system) for i in insts]
    if name in ALWAYS_SYSTEM:
        assert all(systems)
    elif name in SOMETIMES_SYSTEM:
        assert any(systems) and not all(systems)
    else:
        assert not any(systems)


def test_requested_paragraph_counts_are_honoured():
    for name in ("explain_topic", "short_story"):
        for inst in _instances(name, 60, seed=6):
            assert len(split_paragraphs(inst.output)) == inst.slots["k"]
            fewer = "\n\n".join(split_paragraphs(inst.output)[:-1])
            assert not _passes(inst, fewer)


def test_requested_word_counts_are_honoured():
    for inst in _instances("write_n_words", 100, seed=7):
        n = inst.slots["n"]
        assert 0.9 * n <= count_words(inst.output) <= 1.1 * n
        assert not _passes(inst, inst.output + " " + inst.output)  # twice as long


def test_requested_list_lengths_are_honoured():
    for name, per_item in (("fact_list", 1), ("idea_list", 1), ("pros_cons", 2)):
        for inst in _instances(name, 60, seed=8):
            bullets = [ln for ln in inst.output.splitlines() if ln.startswith("- ")]
            assert len(bullets) == per_item * inst.slots["k"]
            shorter = "\n".join(ln for ln in inst.output.splitlines() if ln != bullets[-1])
            assert not _passes(inst, shorter)


def test_summary_is_extractive_shorter_and_has_the_requested_sentences():
    for inst in _instances("summarize_passage", 100, seed=9):
        passage_sentences = set(re.split(r"(?<=\.) ", inst.context))
        summary = re.split(r"(?<=\.) (?=[A-Z])", inst.output)
        assert len(summary) == inst.slots["k"]
        assert all(s in passage_sentences for s in summary[1:])
        assert count_words(inst.output) <= 0.6 * count_words(inst.context)
        assert not _passes(inst, inst.context)  # copying the passage is no summary


def test_formal_rewrite_keeps_the_facts_and_drops_the_casual_words():
    facts = {s for pool in content.TOPIC_FACTS.values() for s in pool}
    for inst in _instances("rewrite_formal", 100, seed=10):
        assert not _passes(inst, inst.context)  # the casual text itself fails
        for sentence in re.split(r"(?<=\.) (?=[A-Z])", inst.output):
            plain = re.sub(r"^(Furthermore|In addition|Moreover), ", "", sentence)
            assert any(plain.lower() == f.lower() for f in facts), sentence


def test_itinerary_has_each_day_and_slot():
    for inst in _instances("itinerary", 60, seed=11):
        days = inst.slots["days"]
        for d in range(1, days + 1):
            assert f"\nDay {d}\n" in inst.output
        assert inst.output.count("Morning:") == inst.output.count("Evening:") == days
        assert not _passes(inst, inst.output.replace(f"Day {days}", f"Day {days + 1}"))


def test_letters_address_the_recipient_and_sign_with_the_sender():
    for inst in _instances("formal_letter", 60, seed=12):
        assert inst.output.startswith(f"Dear {inst.slots['recipient']},")
        assert inst.output.endswith(inst.slots["sender"])
    for inst in _instances("friendly_email", 60, seed=12):
        assert inst.slots["friend"] in inst.output.splitlines()[0]
        assert inst.output.splitlines()[-1] == inst.slots["sender"]


def test_topic_pools_and_passage_helper():
    assert len(content.TOPIC_FACTS) >= 30
    for topic, facts in content.TOPIC_FACTS.items():
        assert 10 <= len(facts) <= 15 and len(set(facts)) == len(facts)
        keyword = content.TOPIC_KEYWORD[topic]
        assert re.search(rf"(?<!\w){keyword}(?!\w)", facts[0], re.IGNORECASE), topic
        for s in facts:
            assert s[0].isupper() and s.endswith(".") and "  " not in s, s
            assert not re.search(r"\b(it|they|this)\b", s.split()[0], re.IGNORECASE), s
            for casual in families_c.CASUAL_WORDS:
                assert not re.search(rf"(?<!\w){casual}(?!\w)", s, re.IGNORECASE), s
    rng = random.Random(0)
    for _ in range(50):
        topic, text = content.passage(rng)
        assert text.startswith(content.TOPIC_FACTS[topic][0])
        assert 4 <= len(re.split(r"(?<=\.) (?=[A-Z])", text)) <= 7
    assert content.passage(random.Random(1), "tea", (3, 3))[0] == "tea"
    with pytest.raises(ValueError, match="unknown topic"):
        content.passage(rng, "nosuch")
