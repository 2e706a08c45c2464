"""Synth stage 3: a priori constraints round-trip through the real checkers; splits stay apart."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from instill.data.builtin.augment import (
    AUGMENT_TYPES,
    INCOMPATIBLE,
    PHRASINGS,
    pair_split,
    phrasings,
    render_phrasing,
)
from instill.data.synth.constraints import (
    REPAIRABLE,
    SYNTH_TYPES,
    ConstrainedPrompt,
    draw_constraints,
    repair,
)
from instill.eval.constraints import check_all, check_constraint, validate_constraint

INSTRUCTIONS = (
    "Write a short essay about the history of tea in China and Japan.",
    "Explain how vaccines train the immune system.",
    "Why?",
    "Give me three tips for a job interview at a bank.",
)
SEEDS = range(40)


def draws(types, n, split="train", seeds=SEEDS, **kwargs):
    """(instruction, drawn prompt) for every instruction and seed where a draw exists."""
    out = []
    for text, seed in itertools.product(INSTRUCTIONS, seeds):
        drawn = draw_constraints(text, random.Random(seed), n=n, split=split, types=types, **kwargs)
        if drawn is not None:
            out.append((text, drawn))
    return out


def shown_text(p: ConstrainedPrompt) -> str:
    return p.instruction + "\n" + (p.system or "")


def rendered(c: dict, split: str) -> list[str]:
    return [render_phrasing(t, c) for t in phrasings(c["type"], split)]


# --------------------------------------------------------------------------- hand-built answers


def _count_words(k: int) -> str:
    return " ".join(["word"] * k)


def _counted(rel: str, n: int, make) -> tuple[str, str]:
    """(an answer with a passing count, one with a failing count) for `relation` and `n`."""
    good = {"at_least": n, "at_most": n, "exactly": n, "less_than": n - 1}[rel]
    bad = {"at_least": n - 1, "at_most": n + 1, "exactly": n + 1, "less_than": n}[rel]
    return make(good), make(bad)


def answers_for(c: dict) -> tuple[str, str]:
    """An answer that follows `c` and one that does not, built from its parameters."""
    t = c["type"]
    if t == "lowercase":
        return "all of this is lowercase.", "This Has Capitals."
    if t == "uppercase":
        return "ALL OF THIS IS UPPERCASE.", "Mixed case here."
    if t == "capital_word_frequency":
        return _counted(c["relation"], c["n"], lambda k: " ".join(["LOUD"] * k + ["quiet."]))
    if t == "title":
        return "<<A Title>>\n\nThe body.", "The body without a title."
    if t == "postscript":
        return f"The body.\n\n{c['marker']} One more thing.", "The body only."
    if t == "quotation":
        return '"The whole answer."', "The whole answer."
    if t == "json_format":
        return '{"answer": "yes"}', "yes, but not as JSON"
    if t == "no_commas":
        return "No commas here.", "One, two."
    if t == "starts_with":
        return f"{c['phrase']} the rest.", f"the rest. {c['phrase']}"
    if t == "ends_with":
        return f"the body. {c['phrase']}", f"{c['phrase']} the body."
    if t == "highlighted_sections":
        return _counted("at_least", c["n"], lambda k: " ".join(f"*part {i}*" for i in range(k)))
    if t == "section_count":

        def sections(k: int) -> str:
            return "\n\n".join(f"{c['splitter']} {i}\nSome text." for i in range(1, k + 1))

        return _counted("at_least", c["n"], sections)
    if t == "paragraph_count":
        joiner = "\n***\n" if c.get("separator") == "***" else "\n\n"
        return _counted(
            c["relation"],
            c["n"],
            lambda k: joiner.join(f"Paragraph {i} text." for i in range(k)),
        )
    if t == "bullet_count":
        return _counted(
            c["relation"], c["n"], lambda k: "\n".join(f"- point {i}" for i in range(k))
        )
    if t == "placeholder_count":
        return _counted(
            "at_least", c["n"], lambda k: "Fill " + " ".join(f"[x{i}]" for i in range(k))
        )
    if t == "repeat_prompt":
        return c["prompt"] + "\n\nMy answer.", "My answer.\n\n" + c["prompt"]
    if t == "two_responses":
        return "First answer.\n******\nSecond answer.", "Only one answer."
    if t == "nth_paragraph_first_word":

        def paragraphs(word: str) -> str:
            return "\n\n".join(
                f"{word} this." if i == c["nth"] else "Filler paragraph."
                for i in range(1, c["n_paragraphs"] + 1)
            )

        return paragraphs(c["first_word"].capitalize()), paragraphs("Zebra")
    if t == "word_count":
        return _counted(c["relation"], c["n"], _count_words)
    if t == "sentence_count":
        return _counted(c["relation"], c["n"], lambda k: " ".join(["Short one."] * k))
    if t == "include_keywords":
        return "Here: " + " and ".join(c["keywords"]) + ".", "Nothing relevant here."
    if t == "keyword_frequency":
        return _counted(c["relation"], c["n"], lambda k: " ".join([c["keyword"]] * k + ["end."]))
    if t == "letter_frequency":
        return _counted(c["relation"], c["n"], lambda k: " ".join([c["letter"]] * k + ["."]))
    if t == "forbidden_words":
        return "Plain clean text.", f"Plain text with {c['words'][0]}."
    raise AssertionError(f"no hand-built answer for {t}")


# --------------------------------------------------------------------------- the types


def test_every_augmentation_type_can_be_drawn_a_priori():
    assert set(SYNTH_TYPES) == set(AUGMENT_TYPES)
    assert len(SYNTH_TYPES) == len(set(SYNTH_TYPES))


@pytest.mark.parametrize("ctype", SYNTH_TYPES)
@pytest.mark.parametrize("split", ["train", "eval"])
def test_every_type_round_trips_through_the_checkers(ctype, split):
    found = draws([ctype], 1, split=split)
    assert len(found) >= len(INSTRUCTIONS) * len(SEEDS) // 2, f"{ctype} is rarely drawn"
    for text, p in found:
        assert p.base_instruction == text
        assert len(p.constraints) == 1
        (c,) = p.constraints
        assert c["type"] == ctype
        validate_constraint(c)
        assert any(s in shown_text(p) for s in rendered(c, split)), (ctype, p)
        good, bad = answers_for(c)
        assert check_all(good, [c])[0], (c, good, check_constraint(good, c))
        assert not check_all(bad, [c])[0], (c, bad)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("split", ["train", "eval"])
def test_multi_constraint_draws_respect_incompatibility_and_the_pair_split(n, split):
    found = draws(None, n, split=split, seeds=range(60))
    assert len(found) > 100
    seen_types = set()
    for _text, p in found:
        types = [c["type"] for c in p.constraints]
        assert len(types) == n == len(set(types))
        seen_types.update(types)
        for a, b in itertools.combinations(types, 2):
            assert frozenset((a, b)) not in INCOMPATIBLE
            assert pair_split(a, b) == split
        for c in p.constraints:
            validate_constraint(c)
    # eval triples are rare (all three pairs must be eval pairs), so they cover fewer types
    assert len(seen_types) >= (10 if (split, n) == ("eval", 3) else len(SYNTH_TYPES) - 2)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_a_split_uses_only_its_own_phrasings(split):
    other = "eval" if split == "train" else "train"
    for _text, p in draws(None, 2, split=split, seeds=range(30)):
        for c in p.constraints:
            assert any(s in shown_text(p) for s in rendered(c, split))
            assert not any(s in shown_text(p) for s in rendered(c, other)), c


def test_sentences_go_before_after_or_into_the_system_prompt():
    found = draws(["no_commas"], 1, seeds=range(200))
    places = {"system": 0, "before": 0, "after": 0}
    for text, p in found:
        if p.system is not None:
            assert p.instruction == text
            places["system"] += 1
        elif p.instruction.startswith(text):
            places["after"] += 1
        else:
            assert p.instruction.endswith(text)
            places["before"] += 1
    assert all(places.values()), places
    assert places["after"] > places["before"]


def test_an_existing_system_prompt_is_kept_and_extended():
    found = draws(["no_commas"], 1, seeds=range(100), system="You are terse.")
    assert all(p.system and p.system.startswith("You are terse.") for _, p in found)
    extended = [p for _, p in found if p.system != "You are terse."]
    assert extended and all("comma" in p.system for p in extended)


# --------------------------------------------------------------------------- repeat_prompt


def test_repeat_prompt_holds_the_final_request_as_the_user_sees_it():
    found = draws(None, 3, seeds=range(300), context=None)
    found = [(t, p) for t, p in found if any(c["type"] == "repeat_prompt" for c in p.constraints)]
    assert len(found) >= 10
    with_others = 0
    for _text, p in found:
        c = next(c for c in p.constraints if c["type"] == "repeat_prompt")
        sentence = next(s for s in rendered(c, "train") if s in shown_text(p))
        if p.system is not None:
            assert c["prompt"] == p.instruction and sentence in p.system
            continue
        # the instruction is the prompt with the repeat sentence at one edge
        if p.instruction.startswith(c["prompt"]):
            assert p.instruction[len(c["prompt"]) :].strip() == sentence
        else:
            assert p.instruction.endswith(c["prompt"])
            assert p.instruction[: -len(c["prompt"])].strip() == sentence
        others = [x for x in p.constraints if x["type"] != "repeat_prompt"]
        for other in others:
            assert any(s in c["prompt"] for s in rendered(other, "train"))
        with_others += bool(others)
        good = c["prompt"] + "\n\nThe answer."
        assert check_constraint(good, c).passed
    assert with_others >= 5


def test_repeat_prompt_is_not_drawn_when_the_row_has_a_context():
    assert draw_constraints("Summarise this.", random.Random(0), n=1, types=["repeat_prompt"])
    assert (
        draw_constraints(
            "Summarise this.", random.Random(0), n=1, types=["repeat_prompt"], context="A text."
        )
        is None
    )
    for _text, p in draws(None, 3, seeds=range(60), context="Some input."):
        assert all(c["type"] != "repeat_prompt" for c in p.constraints)


# --------------------------------------------------------------------------- parameters


def test_keywords_come_from_the_instruction_and_forbidden_words_avoid_it():
    text = "Explain how vaccines train the immune system."
    for seed in range(60):
        p = draw_constraints(
            text,
            random.Random(seed),
            n=2,
            types=["include_keywords", "forbidden_words", "keyword_frequency"],
        )
        if p is None:
            continue
        by_type = {c["type"]: c for c in p.constraints}
        required = set(by_type.get("include_keywords", {}).get("keywords", []))
        if "keyword_frequency" in by_type:
            required.add(by_type["keyword_frequency"]["keyword"])
        assert required <= {"vaccines", "train", "immune", "system"}  # not the verb "explain"
        banned = set(by_type.get("forbidden_words", {}).get("words", []))
        assert not banned & required
        assert not banned & {w.strip(".").lower() for w in text.split()}


def test_an_instruction_without_content_words_gets_keywords_from_the_pool():
    for seed in range(10):
        p = draw_constraints("Why?", random.Random(seed), n=1, types=["include_keywords"])
        (c,) = p.constraints
        assert c["keywords"] and all(k.isalpha() for k in c["keywords"])


@pytest.mark.parametrize("phrase_type", ["starts_with", "ends_with"])
def test_forbidden_words_never_hit_a_required_phrase(phrase_type):
    # augment's pools overlap ("Great question!" and the forbidden word "great")
    split = pair_split("forbidden_words", phrase_type)
    found = draws(["forbidden_words", phrase_type], 2, split=split, seeds=range(150))
    assert len(found) > 100
    for _text, p in found:
        by_type = {c["type"]: c for c in p.constraints}
        phrase_words = by_type[phrase_type]["phrase"].lower().strip("!.?:").split()
        assert not set(by_type["forbidden_words"]["words"]) & set(phrase_words), p.constraints


def test_counts_do_not_contradict_each_other():
    types = ["sentence_count", "paragraph_count", "word_count"]
    found = draws(types, 2, seeds=range(200))
    assert found
    for _text, p in found:
        by_type = {c["type"]: c for c in p.constraints}
        s, para = by_type.get("sentence_count"), by_type.get("paragraph_count")
        if s and para and s["relation"] != "at_least" and para["relation"] != "at_most":
            cap = s["n"] - (s["relation"] == "less_than")
            assert para["n"] <= cap, p.constraints


def test_case_changes_apply_to_the_phrases_and_markers_they_must_cover():
    for seed in range(40):
        p = draw_constraints(
            INSTRUCTIONS[0],
            random.Random(seed),
            n=2,
            types=["uppercase", "starts_with", "section_count"],
        )
        if p is None:
            continue
        for c in p.constraints:
            for key in ("phrase", "splitter"):
                if key in c and any(x["type"] == "uppercase" for x in p.constraints):
                    assert c[key] == c[key].upper()


def test_the_nth_paragraph_word_is_not_the_first_when_the_start_is_fixed():
    types = ["nth_paragraph_first_word", "starts_with", "title"]
    for _text, p in draws(types, 2, seeds=range(80)):
        nth = next((c for c in p.constraints if c["type"] == "nth_paragraph_first_word"), None)
        if nth is not None:
            assert nth["nth"] >= 2


def test_the_draw_is_deterministic_given_the_seed():
    for seed in range(20):
        a = draw_constraints(INSTRUCTIONS[0], random.Random(seed))
        b = draw_constraints(INSTRUCTIONS[0], random.Random(seed))
        assert a == b
    outputs = {repr(draw_constraints(INSTRUCTIONS[0], random.Random(s))) for s in range(20)}
    assert len(outputs) > 15


def test_no_compatible_set_returns_none():
    # lowercase and uppercase are incompatible; two types cannot make three
    assert draw_constraints("Hi.", random.Random(0), n=2, types=["lowercase", "uppercase"]) is None
    assert draw_constraints("Hi.", random.Random(0), n=3, types=["title", "quotation"]) is None


def test_n_is_drawn_between_one_and_three_when_not_given():
    sizes = {len(p.constraints) for _, p in draws(None, None, seeds=range(30))}
    assert sizes == {1, 2, 3}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"types": ["lowercase", "shouting"]}, "shouting"),
        ({"types": "lowercase"}, "string"),
        ({"split": "test"}, "'test'"),
        ({"n": 0}, "got 0"),
        ({"n": 4}, "got 4"),
        ({"n": True}, "got True"),
    ],
)
def test_bad_arguments_are_refused_with_the_value_and_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        draw_constraints("Write a poem.", random.Random(0), **kwargs)
    text = str(info.value)
    if "types" in kwargs and kwargs["types"] != "lowercase":
        assert "word_count" in text  # the known types are listed
    if "split" in kwargs:
        assert "train" in text and "eval" in text


def test_an_empty_instruction_is_refused():
    with pytest.raises(ValueError, match="instruction"):
        draw_constraints("   ", random.Random(0))


# --------------------------------------------------------------------------- repairs


def test_repairable_covers_the_mechanical_types():
    assert {"lowercase", "uppercase", "no_commas", "quotation", "json_format"} <= REPAIRABLE
    assert set(PHRASINGS) >= REPAIRABLE


@pytest.mark.parametrize(
    ("constraint", "answer"),
    [
        ({"type": "lowercase"}, "Paris is the Capital of France."),
        ({"type": "uppercase"}, "Paris is the capital of France."),
        ({"type": "no_commas"}, "Bring apples, pears, and 1,000 yen, please."),
        ({"type": "quotation"}, "Paris is the capital."),
        ({"type": "json_format"}, 'He said "hi", then left.\nNext line.'),
        ({"type": "json_format", "top_level": "object"}, "[1, 2]"),
        ({"type": "json_format", "top_level": "array"}, "plain text"),
    ],
)
def test_a_repair_makes_the_answer_pass_its_checker(constraint, answer):
    assert not check_constraint(answer, constraint).passed
    fixed, applied = repair(answer, [constraint])
    assert applied == (constraint["type"],)
    assert check_constraint(fixed, constraint).passed, fixed


def test_repairs_run_in_an_order_that_keeps_each_other():
    answer = "Paris, the capital, is Lovely."
    wanted = [{"type": "quotation"}, {"type": "lowercase"}, {"type": "no_commas"}]
    fixed, applied = repair(answer, wanted)
    assert applied == ("no_commas", "lowercase", "quotation")
    assert check_all(fixed, wanted)[0], fixed

    wanted = [{"type": "json_format"}, {"type": "uppercase"}, {"type": "no_commas"}]
    fixed, applied = repair(answer, wanted)
    assert applied == ("no_commas", "uppercase", "json_format")
    assert check_all(fixed, wanted)[0], fixed
    value = json.loads(fixed)["ANSWER"]
    assert value.startswith("PARIS") and value.isupper() and "," not in value


def test_repair_leaves_other_constraints_alone():
    answer = "Short, Sweet."
    wanted = [{"type": "word_count", "relation": "at_least", "n": 50}, {"type": "title"}]
    assert repair(answer, wanted) == (answer, ())
    fixed, applied = repair(answer, [*wanted, {"type": "lowercase"}])
    assert (fixed, applied) == ("short, sweet.", ("lowercase",))


def test_an_answer_needing_no_repair_is_returned_unchanged():
    wanted = [{"type": "lowercase"}, {"type": "no_commas"}, {"type": "quotation"}]
    assert repair('"all fine here."', wanted) == ('"all fine here."', ())
    assert repair('{"a": 1}', [{"type": "json_format"}]) == ('{"a": 1}', ())
    fenced = '```json\n{"a": 1}\n```'
    assert repair(fenced, [{"type": "json_format", "top_level": "object"}]) == (fenced, ())
