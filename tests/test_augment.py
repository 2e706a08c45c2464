"""Constraint augmentation: every augmented answer passes the real checkers, splits stay apart."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import pytest

from instill.data.builtin import augment as aug
from instill.data.builtin.augment import (
    AUGMENT_TYPES,
    INCOMPATIBLE,
    PHRASINGS,
    TRANSFORMING_TYPES,
    Augmented,
    augment,
    pair_split,
    phrasings,
    render_phrasing,
)
from instill.eval.constraints import check_all, constraint_types, validate_constraint

ESSAY = "\n\n".join(
    [
        (
            "Tea has a long history. It began in China, where legend says an emperor tasted "
            "leaves that fell into boiling water. Over centuries, tea spread along trade "
            "routes to Japan, India and beyond. Monks carried seeds and customs, and tea "
            "became part of daily life."
        ),
        (
            "In Europe, tea arrived in the seventeenth century. Dutch and Portuguese "
            "merchants carried it home, and soon it became fashionable in London. The "
            "British later grew tea in India and Sri Lanka, changing the landscape and the "
            "lives of millions of workers. Tea houses, tea gardens and afternoon tea "
            "followed."
        ),
        (
            "Today, tea is the second most popular drink in the world after water. People "
            "enjoy it hot, iced, sweet or plain, with milk, lemon or spices. Its history "
            "shows how a simple leaf can connect cultures, shape empires and still fit in a "
            "single cup on a quiet morning."
        ),
    ]
)

LETTER = "\n\n".join(
    [
        "Dear Ms. Alvarez,",
        (
            "I am writing to let you know that the heater in my apartment, unit 4B, stopped "
            "working on Monday evening. Since then, the temperature inside has dropped to "
            "about 14 degrees at night, which is uncomfortable and, for my young daughter, "
            "worrying. I tried resetting the thermostat and checking the breaker, but "
            "neither helped."
        ),
        (
            "I would be grateful if you could arrange for a technician to visit as soon as "
            "possible. I am home most mornings before nine and every afternoon after three, "
            "and I can also leave a key with the building manager if that is easier. If "
            "parts need to be ordered, please let me know how long the repair might take so "
            "that I can plan accordingly."
        ),
        (
            "I have lived here for three years and have always appreciated how quickly "
            "problems are handled. The lease says that heating must be maintained from "
            "October to April, and I trust that this will be resolved promptly. In the "
            "meantime, I would appreciate it if you could lend me a portable heater, since "
            "the nights are getting colder and the forecast predicts frost later this week."
        ),
        (
            "Please feel free to call me at any time, or send a message, and I will make "
            "sure someone is available to let the technician in. Thank you for your "
            "attention to this matter, and for your help in the past. I look forward to "
            "hearing from you soon, and I hope the repair will be simple."
        ),
        "Sincerely,\nDaniel Okafor",
    ]
)

BULLETS = """Here are three ways to save energy at home:
- Turn off lights when you leave a room.
- Wash clothes in cold water, not hot.
- Seal gaps around windows and doors."""

NUMBERED = """1. Preheat the oven to 180 C.
2. Mix flour, sugar and eggs.
3. Bake for 25 minutes."""

JSON_ANSWER = '{"name": "Ada Lovelace", "born": 1815, "field": "mathematics"}'

COMMAS = (
    "Bring apples, pears, and plums [optional], plus a map, a torch, and 1,000 yen for the bus."
)

CASES = [
    ("What is the capital of France?", "Paris"),
    ("What is 6 times 7?", "42"),
    (
        "Describe the sky in one sentence.",
        "The sky is a wide blue dome that changes colour with the weather.",
    ),
    ("Write a short essay about the history of tea.", ESSAY),
    ("Write a letter to my landlord about a broken heater.", LETTER),
    ("List three ways to save energy at home.", BULLETS),
    ("Give the steps for baking a simple cake.", NUMBERED),
    ("Return Ada Lovelace's name, birth year and field as JSON.", JSON_ANSWER),
    ("What should I pack for a day hike?", COMMAS),
]

SHORT = {0, 1}  # the one-word and the number answers
SEEDS = range(6)
# Transforming types whose constraint the original answer cannot already follow once the answer
# had to change (paragraph and bullet counts are read back from the result, so the original may
# happen to fit them too).
CHANGES_BREAK_IT = TRANSFORMING_TYPES - {
    "paragraph_count",
    "bullet_count",
    "nth_paragraph_first_word",
    "capital_word_frequency",
}


def run(instruction: str, answer: str, seed: int, **kwargs) -> Augmented | None:
    return augment(instruction, answer, random.Random(seed), **kwargs)


def assert_correct(a: Augmented, split: str) -> None:
    """The answer passes every constraint, and each constraint is stated in a `split` phrasing."""
    assert a.constraints
    for c in a.constraints:
        validate_constraint(c)
    ok, results = check_all(a.answer, list(a.constraints))
    assert ok, [(c, r.detail) for c, r in zip(a.constraints, results, strict=True)] + [a.answer]
    where = a.system if a.system is not None else a.instruction
    for c in a.constraints:
        stated = [render_phrasing(t, c) for t in phrasings(c["type"], split)]
        assert any(s in where for s in stated), (c, where)
    types = [c["type"] for c in a.constraints]
    assert len(set(types)) == len(types)
    for x, y in itertools.combinations(types, 2):
        assert frozenset((x, y)) not in INCOMPATIBLE
        assert pair_split(x, y) == split, (x, y)


@pytest.mark.parametrize("ctype", AUGMENT_TYPES)
def test_every_type_holds_over_the_corpus(ctype):
    made = 0
    for (ci, (instruction, answer)), seed, split in itertools.product(
        enumerate(CASES), SEEDS, ("train", "eval")
    ):
        a = run(instruction, answer, seed * 31 + ci, n=1, types=[ctype], split=split)
        if a is None:
            continue
        made += 1
        assert_correct(a, split)
        assert a.constraints[0]["type"] == ctype
        if ci in SHORT:
            assert ctype in aug._SHORT_TYPES
        if ctype in CHANGES_BREAK_IT and a.answer.strip() != answer.strip():
            ok, _ = check_all(answer, list(a.constraints))
            assert not ok, f"the original answer already follows {a.constraints}"
    assert made >= 12, f"{ctype} applied only {made} times"


@pytest.mark.parametrize("split", ["train", "eval"])
@pytest.mark.parametrize("n", [None, 2, 3])
def test_combinations_hold_and_respect_the_pair_partition(split, n):
    made = 0
    sizes = set()
    for (ci, (instruction, answer)), seed in itertools.product(enumerate(CASES), range(25)):
        a = run(instruction, answer, seed * 17 + ci, n=n, split=split)
        if a is None:
            continue
        made += 1
        sizes.add(len(a.constraints))
        assert_correct(a, split)
        if n is not None:
            assert len(a.constraints) == n
    assert made >= len(CASES) * 10
    if n is None:
        assert sizes >= {1, 2}


def test_an_answer_that_ignores_the_constraints_fails():
    instruction, answer = CASES[3]
    for seed in range(60):
        a = run(instruction, answer, seed, n=2)
        assert a is not None
        ignoring = ["Okay.", answer, answer + " " + answer + " very really stuff"]
        if "two_responses" not in {c["type"] for c in a.constraints}:
            ignoring.append(a.answer + "\n******\n" + a.answer)
        assert any(not check_all(x, list(a.constraints))[0] for x in ignoring), a.constraints


def test_short_answers_only_get_constraints_that_suit_them():
    for ci in SHORT:
        instruction, answer = CASES[ci]
        for seed in range(40):
            a = run(instruction, answer, seed)
            if a is not None:
                assert {c["type"] for c in a.constraints} <= aug._SHORT_TYPES
                assert_correct(a, "train")
    # the number has no letters to change the case of
    assert run(*CASES[1], 0, n=1, types=["lowercase", "uppercase"]) is None
    # too little text for paragraphs or sections
    assert run(*CASES[2], 0, n=1, types=["section_count", "paragraph_count"]) is None


def test_deterministic_given_the_rng_state():
    for seed in range(10):
        assert run(*CASES[4], seed) == run(*CASES[4], seed)


def test_repeat_prompt_repeats_the_request_without_its_own_sentence():
    instruction, answer = CASES[3]
    partner = next(
        t
        for t in ("word_count", "title", "sentence_count", "postscript", "include_keywords")
        if pair_split("repeat_prompt", t) == "train"
    )
    seen = 0
    for seed in range(40):
        a = run(instruction, answer, seed, n=2, types=["repeat_prompt", partner])
        if a is None or a.system is not None:
            continue
        seen += 1
        prompt = next(c["prompt"] for c in a.constraints if c["type"] == "repeat_prompt")
        assert instruction in prompt
        assert a.answer.startswith(prompt)
        repeat = [s for s in phrasings("repeat_prompt", "train") if s in a.instruction]
        assert repeat and repeat[0] not in prompt
    assert seen >= 5
    for seed in range(20):
        a = run(instruction, answer, seed, context="a passage", types=["repeat_prompt"], n=1)
        assert a is None


def test_system_placement_sometimes():
    placed = [run(*CASES[3], seed) for seed in range(200)]
    in_system = [a for a in placed if a is not None and a.system is not None]
    assert 5 <= len(in_system) <= 40
    for a in in_system:
        assert a.instruction == CASES[3][0]


def test_phrasings_are_many_distinct_and_split():
    assert set(AUGMENT_TYPES) <= set(constraint_types())
    assert set(PHRASINGS) == set(AUGMENT_TYPES)
    for ctype, every in PHRASINGS.items():
        assert len(set(every)) == len(every) >= 6, ctype
        train, eval_ = phrasings(ctype, "train"), phrasings(ctype, "eval")
        assert len(eval_) == 2 and len(train) >= 4
        assert not set(train) & set(eval_)
        assert train + eval_ == every


def test_ifeval_like_wording_is_among_the_phrasings():
    wanted = [
        "Separate paragraphs with the markdown divider: ***",
        "Your ENTIRE response should be in English, and in all lowercase letters.",
        "Finish your response with this exact phrase",
        "Wrap your entire response with double quotation marks.",
        "Highlight at least {n} {noun} in your answer with markdown, i.e. *highlighted section*.",
        "Mark the beginning of each section with {splitter} X.",
        "First repeat the request word for word without change",
        "Responses and only responses should be separated by 6 asterisk symbols: ******.",
        "wrapped in double angular brackets, such as <<poem of joy>>.",
        "please explicitly add a postscript starting with",
        "Entire output should be wrapped in JSON format.",
        "In your entire response, refrain from the use of any commas.",
        "represented by square brackets, such as [address].",
        "In your response, the letter {letter} should appear",
        "words with all capital letters should appear",
        "Do not include keywords {words} in the response.",
    ]
    every = "\n".join([t for ts in PHRASINGS.values() for t in ts] + list(aug._SEP_TEXT.values()))
    for text in wanted:
        assert text in every, text


def test_pair_partition_is_stable_symmetric_and_about_a_fifth():
    pairs = list(itertools.combinations(AUGMENT_TYPES, 2))
    splits = [pair_split(a, b) for a, b in pairs]
    assert splits == [pair_split(b, a) for a, b in pairs]
    share = splits.count("eval") / len(splits)
    assert 0.12 <= share <= 0.28, share
    code = (
        "from instill.data.builtin.augment import AUGMENT_TYPES, pair_split; import itertools;"
        "print(''.join(pair_split(a, b)[0] for a, b in itertools.combinations(AUGMENT_TYPES, 2)))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == "".join(s[0] for s in splits)  # not Python's per-process salted hash()
    with pytest.raises(ValueError, match="two different types"):
        pair_split("title", "title")
    with pytest.raises(ValueError, match="unknown augmentation type 'titel'"):
        pair_split("titel", "title")


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        run(*CASES[3], 0, split="test")
    with pytest.raises(ValueError, match="unknown augmentation types"):
        run(*CASES[3], 0, types=["word_cont"])
    with pytest.raises(ValueError, match="n must be 1, 2 or 3"):
        run(*CASES[3], 0, n=4)
    assert run("Say something.", "   ", 0) is None


def test_incompatible_types_are_never_combined():
    assert frozenset(("lowercase", "uppercase")) in INCOMPATIBLE
    assert frozenset(("json_format", "title")) in INCOMPATIBLE
    assert run(*CASES[3], 0, n=2, types=["lowercase", "uppercase"]) is None
    assert run(*CASES[3], 0, n=2, types=["json_format", "quotation"]) is None


def test_importing_augment_does_not_import_eval():
    code = (
        "import sys, instill.data.builtin.augment;"
        "print([m for m in sys.modules if m.startswith(('instill.eval', 'instill.models'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
