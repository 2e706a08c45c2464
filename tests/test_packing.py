"""Packing: best-fit-decreasing layout, and no attention across packed examples."""

import random

import pytest
import torch
import torch.nn.functional as F

from instill.data.conversation import Conversation, Message
from instill.data.masking import IGNORE_INDEX, Renderer
from instill.data.packing import best_fit_decreasing, collate_packed, pack_examples
from instill.data.templates import get_template, prepare_tokenizer
from instill.models.tiny import build_tiny_model


def test_best_fit_decreasing_layout():
    # Longest first: 10 opens bin A; 6 opens B (room 4); 5 opens C (room 5); 4 best-fits B
    # (room 4, not C's 5); 3 and 2 fill C; 1 fits nowhere and opens D. Bins are listed by their
    # first item, items ascending.
    bins = best_fit_decreasing([5, 3, 6, 2, 4, 10, 1], capacity=10)
    assert bins == [[0, 1, 3], [2, 4], [5], [6]]


def test_best_fit_decreasing_is_tight_and_deterministic():
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(2000)]
    bins = best_fit_decreasing(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    lower_bound = -(-sum(lengths) // 512)
    assert len(bins) <= lower_bound * 1.02 + 1
    assert all(b == sorted(b) for b in bins)
    assert [b[0] for b in bins] == sorted(b[0] for b in bins)
    assert best_fit_decreasing(lengths, 512) == bins


def test_item_longer_than_capacity_is_refused():
    with pytest.raises(ValueError, match="length 11 > capacity 10"):
        best_fit_decreasing([3, 11], 10)


def _examples(tokenizer):
    template = get_template("chatml", tokenizer)
    prepare_tokenizer(tokenizer, template)
    r = Renderer(tokenizer, template)
    convs = [
        Conversation(
            (
                Message("user", "Sort these numbers " * k),
                Message("assistant", "The answer is 42. " * (k + 1)),
            ),
            source=f"row {k}",
        )
        for k in range(1, 8)
    ]
    return [r.encode(c) for c in convs]


def _per_token_loss(logits, labels):
    # [seq, vocab] logits predict the next token: shift labels left by one.
    return F.cross_entropy(
        logits[:-1].float(), labels[1:], reduction="none", ignore_index=IGNORE_INDEX
    )


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("flavour", ["tiny-random-llama", "tiny-random-qwen", "tiny-random-gemma"])
def test_packed_losses_equal_unpacked(tiny_tokenizer, flavour, attn):
    tok = tiny_tokenizer(flavour)
    examples = _examples(tok)
    model = build_tiny_model(flavour, vocab_size=len(tok))
    model.set_attn_implementation(attn)
    rows = pack_examples(examples, max_length=160)
    assert len(rows) < len(examples)  # something was actually packed together
    batch = collate_packed(
        [
            {"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids}
            for r in rows
        ],
        tok.pad_token_id,
        length=160,
    )
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits  # [rows, 160, vocab]
        by_source = {e.source: e for e in examples}
        checked = 0
        for b, row in enumerate(rows):
            start = 0
            for source in row.sources:
                ex = by_source[source]
                n = len(ex.input_ids)
                alone = model(input_ids=torch.tensor([ex.input_ids]), use_cache=False).logits[0]
                labels = torch.tensor(ex.labels)
                got = _per_token_loss(packed[b, start : start + n], labels)
                want = _per_token_loss(alone, labels)
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
                assert batch["labels"][b, start : start + n].tolist() == ex.labels
                start += n
                checked += 1
        assert checked == len(examples)
    # The padding tail is never trained.
    for b, row in enumerate(rows):
        assert (batch["labels"][b, len(row.input_ids) :] == IGNORE_INDEX).all()


def test_position_ids_restart_per_example(tiny_tokenizer):
    examples = _examples(tiny_tokenizer("tiny-random-qwen"))
    for row in pack_examples(examples, 160):
        starts = [i for i, p in enumerate(row.position_ids) if p == 0]
        lengths = [len(e.input_ids) for e in examples if e.source in row.sources]
        expected, at = [], 0
        for n in lengths:
            expected.append(at)
            at += n
        assert starts == expected


def test_loss_over_whole_packed_rows_equals_sum_over_examples(tiny_tokenizer):
    """No label in a packed row makes one example predict the next example's first token."""
    tok = tiny_tokenizer("tiny-random-llama")
    template = get_template("chatml", tok)
    prepare_tokenizer(tok, template)
    r = Renderer(tok, template, strategy="all")  # every token trained: the hardest case
    examples = [r.encode(Conversation(text=f"ex {k} " * (k + 1), source=str(k))) for k in range(6)]
    model = build_tiny_model("tiny-random-llama", vocab_size=len(tok))
    rows = pack_examples(examples, max_length=64)
    batch = collate_packed(
        [
            {"input_ids": x.input_ids, "labels": x.labels, "position_ids": x.position_ids}
            for x in rows
        ],
        tok.pad_token_id,
        length=64,
    )
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits
        packed_sum = sum(
            _per_token_loss(logits[b], batch["labels"][b]).sum() for b in range(len(rows))
        )
        alone_sum = sum(
            _per_token_loss(
                model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0],
                torch.tensor(e.labels),
            ).sum()
            for e in examples
        )
    torch.testing.assert_close(packed_sum, alone_sum, rtol=1e-4, atol=1e-4)
    assert sum(e.supervised_tokens for e in examples) == int((batch["labels"] != -100).sum())
