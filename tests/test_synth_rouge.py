"""ROUGE-L for synth's similarity filter: agreement with the rouge-score package, and an index
whose answers equal a brute-force scan while computing far fewer LCSs."""

from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer

from instill.data.synth.rouge import RougeIndex, lcs_length, rouge_l, rouge_tokens

WORDS = [
    *("the", "a", "cat", "dog", "sat", "on", "mat", "Sea", "blue", "42", "x-ray", "don't"),
    *("quick", "brown", "fox", "jumps", "over", "lazy"),
]


def _text(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(0, 14))]
    return " ".join(w + rng.choice(["", "", ",", ".", "!"]) for w in words)


def test_agrees_with_rouge_score_package():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    pairs = [(_text(rng), _text(rng)) for _ in range(300)]
    pairs += [("Write a poem about the sea.", "Write a short poem about the blue sea!")]
    for a, b in pairs:
        ta, tb = rouge_tokens(a), rouge_tokens(b)
        if not ta or not tb:
            continue  # rouge-score scores 0 here too; the index never matches empty texts
        expected = scorer.score(b, a)["rougeL"].fmeasure
        assert rouge_l(ta, tb) == pytest.approx(expected, abs=1e-9), (a, b)


def test_lcs_is_still_importable_from_eval_metrics():
    from instill.eval.metrics import lcs_length as from_metrics

    assert from_metrics is lcs_length
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4


def _brute(pool: list[str], text: str, threshold: float):
    best, where = 0.0, None
    t = rouge_tokens(text)
    for i, p in enumerate(pool):
        pt = rouge_tokens(p)
        if not t or not pt:
            continue
        s = rouge_l(t, pt)
        if s > best:
            best, where = s, i
    return (where, best) if where is not None and best >= threshold else None


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.9])
def test_index_equals_brute_force_and_prunes(threshold):
    rng = random.Random(threshold)
    pool: list[str] = []
    index = RougeIndex(threshold)
    for _ in range(400):
        if pool and rng.random() < 0.3:  # a near duplicate of an earlier text
            words = rng.choice(pool).split()
            if words:
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            text = " ".join(words)
        else:
            text = _text(rng)
        expected = _brute(pool, text, threshold)
        got = index.best_match(text)
        if expected is None:
            assert got is None, text
        else:
            assert got is not None and got.score == pytest.approx(expected[1], abs=1e-12)
            assert got.id == expected[0]
        pool.append(text)
        assert index.add(text) == len(pool) - 1
    stats = index.stats
    assert stats.queries == 400
    assert stats.lcs_computed < 0.25 * 400 * 400 / 2  # far fewer than a scan's ~80,000


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        RougeIndex(0)
