"""The step-wise decoding engine: equal to `generate`, streaming, stop strings, UTF-8, seeds."""

from __future__ import annotations

import pytest
import torch

from instill.data.conversation import Message
from instill.generate.engine import Generator, SamplingConfig
from instill.generate.stream import DecodeEngine, DecodeRequest, TextStream, length_groups
from instill.models.bundle import load_bundle

PROMPTS = [
    "Hello! How can I help you today?",
    "List three colors.",
    "What is 12 plus 30? The answer is",
    "Sort these numbers: 5, 3, 9, 1. Extract the dates from the text and return them as JSON.",
    "Yes.",
]


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("tiny-random-qwen", name="tiny", dtype=torch.float32)


def _conversations():
    return [[Message("user", p)] for p in PROMPTS]


def test_greedy_answers_equal_transformers_generate(bundle):
    """The engine's loop (left padding, positions, cache) against `model.generate` itself."""
    convs = _conversations()
    prompts = [bundle.renderer.encode_prompt(c) for c in convs]
    engine = DecodeEngine.for_bundle(bundle)
    got = engine.run([DecodeRequest(p, max_new_tokens=12) for p in prompts])
    longest = max(len(p) for p in prompts)
    pad = engine.pad_id
    ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = bundle.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=list(engine.stop_ids),
            pad_token_id=pad,
        )
    for b, g in enumerate(got):
        new = out[b, longest:].tolist()
        stop = next((k for k, t in enumerate(new) if t in engine.stop_ids), None)
        assert g.token_ids == (new if stop is None else new[: stop + 1])
        assert g.stopped == (stop is not None) and g.prompt_tokens == len(prompts[b])
    # Alone or in a batch, the same answer (rows leave the batch as they finish).
    alone = [engine.run([DecodeRequest(p, max_new_tokens=12)])[0] for p in prompts]
    assert [a.token_ids for a in alone] == [g.token_ids for g in got]
    # Two rows at a time: later prompts join as earlier ones finish; same answers, same order.
    done = []
    two = engine.run(
        [DecodeRequest(p, max_new_tokens=12) for p in prompts],
        max_batch=2,
        on_done=lambda i, c: done.append(i),
    )
    assert [t.token_ids for t in two] == [g.token_ids for g in got]
    assert sorted(done) == list(range(len(prompts)))
    texts = Generator.for_bundle(bundle).generate(convs, SamplingConfig(max_new_tokens=12))
    assert [t.token_ids for t in texts] == [g.token_ids for g in got]
    assert [t.text for t in texts] == [g.text for g in got]


def test_streamed_text_concatenates_to_the_answer_and_each_request_finishes_once(bundle):
    engine = DecodeEngine.for_bundle(bundle)
    prompts = [bundle.renderer.encode_prompt(c) for c in _conversations()[:3]]
    requests = [
        DecodeRequest(p, max_new_tokens=n) for p, n in zip(prompts, (3, 7, 10), strict=True)
    ]
    texts, finishes, steps = ["", "", ""], [0, 0, 0], 0
    for deltas in engine.stream(requests):
        steps += 1
        for d in deltas:
            texts[d.index] += d.text
            finishes[d.index] += d.finish_reason is not None
    assert finishes == [1, 1, 1]
    assert steps <= 10
    final = engine.run(requests)
    assert texts == [c.text for c in final]
    assert [c.completion_tokens <= n for c, n in zip(final, (3, 7, 10), strict=True)] == [True] * 3


def test_a_request_stop_id_ends_the_answer_at_that_token(bundle):
    engine = DecodeEngine.for_bundle(bundle)
    prompt = bundle.renderer.encode_prompt(_conversations()[0])
    free = engine.run([DecodeRequest(prompt, max_new_tokens=8)])[0]
    assert free.finish_reason == "length"  # random weights never emit the end-of-turn token
    third = free.token_ids[2]
    cut = engine.run([DecodeRequest(prompt, max_new_tokens=8, stop_ids=(third,))])[0]
    assert cut.finish_reason == "stop"
    assert cut.token_ids == free.token_ids[: free.token_ids.index(third) + 1]


def test_sampling_is_seeded_and_independent_of_the_rest_of_the_batch(bundle):
    engine = DecodeEngine.for_bundle(bundle)
    prompts = [bundle.renderer.encode_prompt(c) for c in _conversations()]
    req = DecodeRequest(prompts[0], max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    alone = engine.run([req])[0]
    again = engine.run([req])[0]
    crowd = engine.run([req] + [DecodeRequest(p, max_new_tokens=10) for p in prompts[1:]])[0]
    other = engine.run([DecodeRequest(prompts[0], max_new_tokens=10, temperature=1.0, seed=8)])[0]
    assert alone.token_ids == again.token_ids == crowd.token_ids
    assert other.token_ids != alone.token_ids


class CharTokenizer:
    """Each id is one byte of UTF-8; decode replaces incomplete bytes with U+FFFD, like HF."""

    pad_token_id = 0

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def _stream_all(stream: TextStream, text: str) -> list[str]:
    out = [stream.push(b) for b in text.encode()]
    out.append(stream.finish())
    return out


def test_text_stream_never_breaks_a_multibyte_character():
    text = "naïve café — 日本語 🙂!"
    pieces = _stream_all(TextStream(CharTokenizer()), text)
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("The answer is 42.\nUser: more", ("\nUser:",), "The answer is 42."),
        ("abcSTOPdef", ("STOP", "cS"), "ab"),  # the earliest match wins
        ("no stop here", ("STOPS",), "no stop here"),
        ("ends with ST", ("STOP",), "ends with ST"),  # a held prefix is released at the end
        ("日本語です", ("本語",), "日"),  # a stop string across multi-byte tokens
    ],
)
def test_stop_strings_match_across_tokens_and_are_cut(text, stops, expected):
    stream = TextStream(CharTokenizer(), stops)
    pieces = _stream_all(stream, text)
    assert "".join(pieces) == expected
    assert stream.matched_stop == (expected != text)
    for p in pieces:  # no released piece ever contained the start of a stop string's match
        assert not any(s in p for s in stops)


def test_requests_are_validated():
    with pytest.raises(ValueError, match="max_new_tokens"):
        DecodeRequest([1], max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        DecodeRequest([1], top_p=0)
    with pytest.raises(ValueError, match="prompt token"):
        DecodeRequest([])


@pytest.mark.parametrize("model", ["tiny-random-qwen", "tiny-random-gemma", "tiny-random-llama"])
def test_a_request_that_joins_a_running_batch_gets_its_offline_answer(model):
    """Continuous batching: requests admitted mid-way (prefilled alone, their KV cache merged
    into the batch's, shorter and longer than it) answer exactly as they do alone, greedy, and so
    do the rows already running. The long prompt passes tiny Gemma's 64-token sliding window."""
    b = load_bundle(model, name="tiny", dtype=torch.float32)
    engine = DecodeEngine.for_bundle(b)
    long_text = " ".join(PROMPTS * 3)
    prompts = [b.renderer.encode_prompt([Message("user", t)]) for t in (*PROMPTS, long_text)]
    assert len(prompts[-1]) > 70
    budgets = [20, 6, 14, 9, 16, 12]
    requests = [DecodeRequest(p, max_new_tokens=n) for p, n in zip(prompts, budgets, strict=True)]
    alone = [engine.run([r])[0].token_ids for r in requests]
    # Steps 0: rows 0, 1 | 2: the long prompt joins (more columns than the batch) | 4: two
    # short ones | after row 1 finished: the last one | later: none.
    plan = {2: [requests[5]], 4: [requests[2], requests[3]], 8: [requests[4]]}
    order = [0, 1, 5, 2, 3, 4]  # request behind each stream index
    step, admitted = 0, []

    def admit(running: int) -> list[DecodeRequest]:
        nonlocal step
        step += 1
        admitted.append(running)
        return plan.get(step, [])

    got: dict[int, list[int]] = {}
    finished = []
    for deltas in engine.stream(requests[:2], admit=admit):
        for d in deltas:
            got.setdefault(d.index, []).append(d.token_id)
            if d.finish_reason is not None:
                finished.append(d.index)
    assert sorted(finished) == list(range(6))
    for index, r in enumerate(order):
        assert got[index] == alone[r], (model, index)
    assert max(admitted) >= 4  # several rows were running together


def test_an_arrival_gets_its_first_token_before_the_running_rows_next_step(bundle):
    """Time to first token: an admitted request's first token is emitted right after its
    prefill, before the running batch decodes again; arrivals that finish at once (budget 1)
    while nothing runs do not end the stream."""
    engine = DecodeEngine.for_bundle(bundle)
    prompts = [bundle.renderer.encode_prompt(c) for c in _conversations()]
    running = DecodeRequest(prompts[0], max_new_tokens=6)
    one = DecodeRequest(prompts[1], max_new_tokens=1)
    later = [
        DecodeRequest(prompts[2], max_new_tokens=1),
        DecodeRequest(prompts[3], max_new_tokens=3),
    ]
    plan = {1: [one], 6: [later[0]], 7: [later[1]]}
    calls = 0

    def admit(n: int) -> list[DecodeRequest]:
        nonlocal calls
        calls += 1
        return plan.get(calls, [])

    batches, got = [], {}
    for deltas in engine.stream([running], admit=admit):
        batches.append([d.index for d in deltas])
        for d in deltas:
            got.setdefault(d.index, []).append(d.token_id)
    assert batches[:3] == [[0], [1], [0]]  # the arrival's token, then the batch's next step
    assert calls > 7  # admission went on after the stream had no running row
    alone = [engine.run([r])[0].token_ids for r in (running, one, *later)]
    assert [got[i] for i in range(4)] == alone


def test_length_groups_bound_each_prompts_padding():
    lengths = [41, 196, 150, 60, 44, 100, 190, 45]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        width = lengths[g[0]]
        assert all(width - lengths[i] <= max(16, 0.25 * width) for i in g)
        assert width == max(lengths[i] for i in g)
    assert [[lengths[i] for i in g] for g in groups] == [[196, 190, 150], [100], [60, 45, 44], [41]]
    assert length_groups([7]) == [[0]]


@pytest.mark.parametrize("model", ["tiny-random-gemma", "tiny-random-llama"])
def test_a_prefill_in_length_groups_gives_each_prompt_its_answer_alone(model):
    """Prompts of 3-90 tokens are prefilled in several groups whose caches are merged (Gemma:
    past its 64-column sliding window); each answer equals the prompt's answer alone."""
    b = load_bundle(model, name="tiny", dtype=torch.float32)
    engine = DecodeEngine.for_bundle(b)
    prompts = [list(range(5, 5 + n)) for n in (3, 90, 30, 70, 12)]
    assert len(length_groups([len(p) for p in prompts])) > 2
    together = engine.run([DecodeRequest(p, max_new_tokens=10) for p in prompts])
    alone = [engine.run([DecodeRequest(p, max_new_tokens=10)])[0] for p in prompts]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert engine._mergeable  # the grouped prefill was taken
