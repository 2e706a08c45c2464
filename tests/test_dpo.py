"""Preference tuning: pair rows, their rendering, the DPO / IPO / robust losses, and the loop's
invariants (batch 8 x 1 == 1 x 8 == 2 ranks x 4, exact resume) for the DPO objective."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from instill.config import DPOConfig, validate_config
from instill.data.conversation import Message
from instill.data.masking import IGNORE_INDEX, Renderer
from instill.data.preference import (
    PreferencePair,
    PreferenceRows,
    encode_pairs,
    parse_preference_row,
    read_pairs,
)
from instill.data.templates import (
    added_bos_text,
    builtin_template_names,
    get_template,
    prepare_tokenizer,
)
from instill.errors import ConfigError, InstillError, RowError
from instill.models.tiny import build_tiny_model, build_tiny_tokenizer
from instill.train.dpo import DPOObjective, PreferenceLoss
from instill.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "preference" / "pairs.jsonl"
LN2 = math.log(2)


# ------------------------------------------------------------------------------------ rows


def test_standard_conversational_and_implicit_rows_parse_to_the_same_pair():
    expected = PreferencePair(
        (Message("system", "Be brief."), Message("user", "Hi")), "Hello!", "Go away.", "f:line 1"
    )
    standard = {"system": "Be brief.", "prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}
    conversational = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
    implicit = {
        "chosen": conversational["prompt"] + conversational["chosen"],
        "rejected": conversational["prompt"] + conversational["rejected"],
    }
    for row in (standard, conversational, implicit):
        assert parse_preference_row(row, "f:line 1") == expected
    renamed = {"q": "Hi", "good": "Hello!", "bad": "Go away.", "system": "Be brief."}
    columns = {"prompt": "q", "chosen": "good", "rejected": "bad"}
    assert parse_preference_row(renamed, "f:line 1", columns) == expected


def test_a_multi_turn_prompt_keeps_its_turns():
    row = {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"role": "user", "content": "2+2?"},
        ],
        "chosen": "4",
        "rejected": "5",
    }
    pair = parse_preference_row(row, "f:line 1")
    assert [m.role for m in pair.prompt] == ["user", "assistant", "user"]
    conv = pair.conversation(pair.chosen)
    # Only the final answer is trained; the prompt's assistant turn is context.
    assert [(m.role, m.train) for m in conv.messages] == [
        ("user", None),
        ("assistant", False),
        ("user", None),
        ("assistant", True),
    ]


BAD_ROWS = [
    ({"prompt": "Hi", "chosen": "Same", "rejected": " Same "}, "identical_responses", "rejected"),
    ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "empty_prompt", "prompt"),
    ({"prompt": [], "chosen": "a", "rejected": "b"}, "empty_prompt", "prompt"),
    ({"prompt": 3, "chosen": "a", "rejected": "b"}, "wrong_type", "prompt"),
    ({"prompt": "Hi", "chosen": 1, "rejected": "b"}, "wrong_type", "chosen"),
    ({"prompt": "Hi", "chosen": "a", "rejected": ""}, "empty_assistant_content", "rejected"),
    (
        {"prompt": "Hi", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
        "wrong_type",
        "chosen",
    ),
    ({"prompt": "Hi", "chosen": "a"}, "missing_field", "rejected"),
    (
        {
            "system": "S",
            "prompt": [{"role": "system", "content": "T"}, {"role": "user", "content": "Hi"}],
            "chosen": "a",
            "rejected": "b",
        },
        "duplicate_system",
        "system",
    ),
    (
        {
            "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x"}],
            "chosen": "a",
            "rejected": "b",
        },
        "prompt_ends_with_assistant",
        "prompt[1]",
    ),
    (
        {
            "chosen": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "a"}],
            "rejected": [{"role": "user", "content": "B"}, {"role": "assistant", "content": "b"}],
        },
        "prompt_mismatch",
        "rejected",
    ),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "missing_field", "chosen"),
]


@pytest.mark.parametrize(("row", "reason", "field"), BAD_ROWS, ids=[b[1] for b in BAD_ROWS])
def test_bad_pairs_are_named_rows(row, reason, field):
    with pytest.raises(RowError) as info:
        parse_preference_row(row, "pairs.jsonl:line 7")
    assert (info.value.reason, info.value.field) == (reason, field)
    assert str(info.value).startswith("pairs.jsonl:line 7:")


def _config(tmp_path: Path, sources: list[dict], **data) -> dict:
    return {
        "model": {"path": "tiny-random-qwen"},
        "data": {"sources": sources, "max_length": 128, **data},
        "train": {"objective": "dpo"},
        "output_dir": str(tmp_path / "run"),
    }


def test_every_file_type_is_read_and_bad_rows_are_errors_or_rejected(tmp_path):
    import pandas as pd

    good = {"prompt": "Hi", "chosen": "Hello", "rejected": "Bye"}
    bad = {"prompt": "Hi", "chosen": "Same", "rejected": "Same"}
    (tmp_path / "a.jsonl").write_text(f"{json.dumps(good)}\n{json.dumps(bad)}\n")
    (tmp_path / "b.json").write_text(json.dumps([good, good]))
    pd.DataFrame([good, good, good]).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame([good]).to_parquet(tmp_path / "d.parquet")
    cfg = validate_config(_config(tmp_path, [{"path": str(tmp_path)}]))
    with pytest.raises(RowError, match=r"a\.jsonl:line 2: field 'rejected': chosen and rejected"):
        read_pairs(cfg.data)
    cfg.data.on_bad_row = "skip"
    read = read_pairs(cfg.data)
    assert [len(p) for p in read.per_source] == [7]
    assert [(r.location.endswith("a.jsonl:line 2"), r.reason) for r in read.rejected] == [
        (True, "identical_responses")
    ]


def test_prepare_writes_pairs_stats_and_rejected_rows(tmp_path):
    from instill.data.prepare import prepare

    rows = EXAMPLE.read_text() + json.dumps({"prompt": "", "chosen": "a", "rejected": "b"}) + "\n"
    (tmp_path / "pairs.jsonl").write_text(rows)
    raw = _config(tmp_path, [{"path": str(tmp_path / "pairs.jsonl")}], on_bad_row="skip")
    result = prepare(validate_config(raw), build_tiny_tokenizer("tiny-random-qwen"), progress=False)
    n = len(EXAMPLE.read_text().splitlines())
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert (stats["kind"], stats["pairs"], stats["rows_rejected"]) == ("preference", n, 1)
    assert stats["rejected_by_reason"] == {"empty_prompt": 1}
    rejected = [
        json.loads(x) for x in (tmp_path / "run" / "rejected.jsonl").read_text().split("\n")[:-1]
    ]
    assert rejected[0]["location"].endswith(f"pairs.jsonl:line {n + 1}")
    pairs = PreferenceRows.load(tmp_path / "run" / "prepared")
    assert len(pairs) == n and len(result.examples) == 2 * n
    for i in range(n):
        c, r = pairs.chosen.row(i), pairs.rejected.row(i)
        p = int(pairs.prompt_lengths[i])
        assert np.array_equal(c["input_ids"][:p], r["input_ids"][:p])
        assert (c["labels"][:p] == IGNORE_INDEX).all() and (r["labels"][:p] == IGNORE_INDEX).all()
        assert c["labels"][p] == c["input_ids"][p]
    with pytest.raises(InstillError, match="holds no preference pairs"):
        PreferenceRows.load(tmp_path / "run")


def test_the_schema_ties_formats_and_references_to_the_objective(tmp_path):
    raw = _config(tmp_path, [{"path": "x.jsonl", "format": "alpaca"}])
    with pytest.raises(ConfigError, match=r"data.sources.0.format is 'alpaca' but train.objective"):
        validate_config(raw)
    raw = _config(tmp_path, [{"path": "x.jsonl", "format": "preference"}])
    raw["train"] = {}
    with pytest.raises(ConfigError, match=r"format=preference needs train\.objective=dpo"):
        validate_config(raw)
    raw["train"] = {"objective": "dpo", "method": "full", "dpo": {"reference": "adapters_off"}}
    with pytest.raises(ConfigError, match=r"adapters_off needs train\.method lora or qlora"):
        validate_config(raw)
    raw["train"] = {"objective": "dpo", "dpo": {"label_smoothing": 0.5}}
    with pytest.raises(ConfigError, match=r"train\.dpo\.label_smoothing"):
        validate_config(raw)
    assert validate_config(_config(tmp_path, [{"path": "x.jsonl"}])).train.dpo_reference == (
        "adapters_off"  # lora is the default method
    )


# ------------------------------------------------------------------------ rendering parity

PROMPTS = {
    "single": (Message("user", "Hi"),),
    "system": (Message("system", "Be brief."), Message("user", "Hi")),
    "multi": (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "Bye"),
    ),
}
PARITY = [
    (f, n)
    for f in ("tiny-random-llama", "tiny-random-qwen", "tiny-random-gemma")
    for n in builtin_template_names()
] + [("tiny-random-qwen", "tokenizer"), ("tiny-random-gemma", "tokenizer")]


@pytest.mark.parametrize(("flavour", "name"), PARITY)
@pytest.mark.parametrize("case", list(PROMPTS))
def test_prompt_ids_plus_answer_ids_are_the_whole_conversation(flavour, name, case):
    tok = build_tiny_tokenizer(flavour)
    template = get_template(name, tok)
    prepare_tokenizer(tok, template)
    renderer = Renderer(tok, template)
    prompt = PROMPTS[case]
    pair = PreferencePair(prompt, "Ciao", "No thanks, goodbye.", "f:line 1")
    [example] = encode_pairs(renderer, [pair], 256, "truncate_response")
    prompt_ids = renderer.encode_prompt(prompt)
    eot = tok.convert_tokens_to_ids(template.end_of_turn)
    assert example.prompt_length == len(prompt_ids)
    for seq, answer in ((example.chosen, pair.chosen), (example.rejected, pair.rejected)):
        whole = (*prompt, Message("assistant", answer))
        text = template.render(whole, add_generation_prompt=False)
        # prompt ids + answer ids == the whole conversation rendered and tokenized as one string
        assert seq.input_ids[: len(prompt_ids)] == prompt_ids
        assert seq.input_ids == tok(text, add_special_tokens=False)["input_ids"]
        if name == "tokenizer":
            messages = [{"role": m.role, "content": m.content} for m in whole]
            assert text == tok.apply_chat_template(messages, tokenize=False)
        # no stray BOS, no doubled end of turn, the system prompt written once
        if tok.bos_token_id is not None:
            bos = 1 if added_bos_text(tok) else 0
            assert seq.input_ids.count(tok.bos_token_id) == bos
            assert seq.input_ids[:bos] == [tok.bos_token_id] * bos
        answer_ids = seq.input_ids[len(prompt_ids) :]
        assert answer_ids.count(eot) == 1
        if tok.eos_token_id != eot:
            assert tok.eos_token_id not in answer_ids
        assert all(
            a != eot or b != eot for a, b in zip(seq.input_ids, seq.input_ids[1:], strict=False)
        )
        assert text.count("Be brief.") == (case != "single")
        # the trained span is exactly the answer and its end-of-turn token
        trained = [t for t, lab in zip(seq.input_ids, seq.labels, strict=True) if lab != -100]
        assert trained[-1] == eot and trained.count(eot) == 1
        assert trained == seq.input_ids[len(prompt_ids) : len(prompt_ids) + len(trained)]
        assert tok.decode(trained[:-1]).strip() == answer


def test_truncation_cuts_answers_or_drops_the_pair(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-qwen")
    template = get_template("tokenizer", tok)
    renderer = Renderer(tok, template)
    pair = PreferencePair((Message("user", "Hi"),), "yes " * 40, "no", "f:line 1")
    [cut] = encode_pairs(renderer, [pair], 24, "truncate_response")
    assert len(cut.chosen.input_ids) == 24 and cut.chosen.truncated and not cut.rejected.truncated
    [dropped] = encode_pairs(renderer, [pair], 24, "drop_row")
    assert dropped.reason == "too_long"
    long_prompt = PreferencePair((Message("user", "Hi " * 40),), "a", "b", "f:line 2")
    [dropped] = encode_pairs(renderer, [long_prompt], 24, "truncate_response")
    assert "prompt alone" in dropped.message


# --------------------------------------------------------------------------------- losses


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def _hand_logprob(model, ids: list[int], labels: list[int]) -> tuple[float, int]:
    """Sum of log p(token) over labelled tokens, from a plain forward (no padding, no chunks)."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()  # [seq, vocab]
    logp = torch.log_softmax(logits, dim=-1)
    total, n = 0.0, 0
    for t in range(1, len(ids)):
        if labels[t] != IGNORE_INDEX:
            total += float(logp[t - 1, ids[t]])
            n += 1
    return total, n


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "robust"])
def test_losses_match_a_hand_computation(loss):
    tok = build_tiny_tokenizer("tiny-random-qwen")
    renderer = Renderer(tok, get_template("tokenizer", tok))
    pairs = [
        parse_preference_row(
            {"prompt": "What is 12 plus 30?", "chosen": "42", "rejected": "44"}, "a"
        ),
        parse_preference_row(
            {
                "system": "Be brief.",
                "prompt": "List three colors.",
                "chosen": "red, green, blue",
                "rejected": "Colors are nice. Red is one.",
            },
            "b",
        ),
    ]
    rows = PreferenceRows.from_examples(encode_pairs(renderer, pairs, 128, "truncate_response"))
    policy = build_tiny_model("tiny-random-qwen", len(tok), seed=0).double()
    reference = build_tiny_model("tiny-random-qwen", len(tok), seed=1).double()
    dpo = DPOConfig(
        loss=loss, beta=0.5, label_smoothing=0.0 if loss == "ipo" else 0.2, sft_weight=0.3
    )
    module = PreferenceLoss(policy, dpo, "frozen_copy", chunk_tokens=16)
    module.reference_model = reference.eval()
    batch = DPOObjective(tok.pad_token_id, dpo, "frozen_copy").batch(rows, [0, 1])
    # one [prompt | chosen | rejected] row per pair (share_prompt, the default)
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] % 8 == 0
    total, metrics = module(**batch)

    expected, margins, accuracy = 0.0, 0.0, 0.0
    beta, eps = dpo.beta, dpo.label_smoothing
    for i in range(2):
        seqs = [rows.chosen.row(i), rows.rejected.row(i)]
        (pc, nc), (pr, nr) = (
            _hand_logprob(policy, s["input_ids"].tolist(), s["labels"].tolist()) for s in seqs
        )
        (rc, _), (rr, _) = (
            _hand_logprob(reference, s["input_ids"].tolist(), s["labels"].tolist()) for s in seqs
        )
        h = (pc - rc) - (pr - rr)
        if loss == "sigmoid":
            value = -(1 - eps) * _logsigmoid(beta * h) - eps * _logsigmoid(-beta * h)
        elif loss == "robust":
            value = (-(1 - eps) * _logsigmoid(beta * h) + eps * _logsigmoid(-beta * h)) / (
                1 - 2 * eps
            )
        else:
            value = ((pc - rc) / nc - (pr - rr) / nr - 1 / (2 * beta)) ** 2
        expected += value + dpo.sft_weight * (-pc / nc)
        margins += beta * h
        accuracy += float(beta * (pc - rc) > beta * (pr - rr))
    # float64 throughout: the only differences are summation orders (~1e-15 relative).
    assert float(total.detach()) == pytest.approx(expected, rel=1e-10)
    assert float(metrics["rewards/margin"]) == pytest.approx(margins, rel=1e-10)
    assert float(metrics["rewards/accuracy"]) == accuracy
    # The loss has a gradient for the policy and none for the reference.
    total.backward()
    assert all(p.grad is not None for p in policy.parameters() if p.requires_grad)
    assert all(p.grad is None for p in reference.parameters())


@pytest.mark.parametrize("name", ["tiny-random-qwen", "tiny-random-llama", "tiny-random-gemma"])
@pytest.mark.parametrize("share", [True, False])
def test_both_batch_layouts_give_each_answers_exact_log_probs(name, share):
    """Shared-prompt rows (the prompt once, the rejected answer masked from the chosen one,
    its positions continuing from the prompt) and two rows per pair give every answer's
    log-prob of a plain one-sequence forward; Gemma 3's sliding-window layers included (the
    tiny model's window is shorter than these rows)."""
    from instill.train.dpo import pair_logprobs

    tok = build_tiny_tokenizer(name)
    template = {"tiny-random-gemma": "gemma", "tiny-random-llama": "chatml"}.get(name, "tokenizer")
    renderer = Renderer(tok, get_template(template, tok))
    pairs = [
        parse_preference_row(
            {"prompt": "What is 12 plus 30? Answer with the number only.", "chosen": "42",
             "rejected": "It is forty four, I think, or maybe not."}, "a"
        ),
        parse_preference_row(
            {"system": "Be brief.", "prompt": [
                {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": "Red."},
                {"role": "user", "content": "Another one, please, and say why."}],
             "chosen": "Blue, because the sky is blue.", "rejected": "Red."}, "b"
        ),
    ]  # fmt: skip
    rows = PreferenceRows.from_examples(encode_pairs(renderer, pairs, 256, "truncate_response"))
    model = build_tiny_model(name, len(tok), seed=0).double().eval()
    config = model.config
    window = getattr(config, "sliding_window", None)
    if "gemma" in name:
        assert window is not None and window < max(rows.chosen.lengths)
    dpo = DPOConfig(share_prompt=share)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    batch = DPOObjective(pad, dpo, "frozen_copy").batch(rows, [0, 1])
    assert (batch.get("segment") is not None) == share
    with torch.no_grad():
        logps, counts = pair_logprobs(model, batch, chunk_tokens=7)
    for side, seqs in enumerate((rows.chosen, rows.rejected)):
        for i in range(2):
            s = seqs.row(i)
            want, n = _hand_logprob(model, s["input_ids"].tolist(), s["labels"].tolist())
            assert int(counts[side * 2 + i]) == n
            assert float(logps[side * 2 + i]) == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_shared_prompt_rows_give_the_same_loss_and_gradients_as_two_rows():
    tok = build_tiny_tokenizer("tiny-random-gemma")
    renderer = Renderer(tok, get_template("gemma", tok))
    pairs = [
        parse_preference_row({"prompt": "Say hi to Ana in one line.", "chosen": "Hi, Ana!",
                              "rejected": "Hello there, whoever you are, it is nice."}, "a"),
        parse_preference_row({"prompt": "Two plus two?", "chosen": "4",
                              "rejected": "Five."}, "b"),
    ]  # fmt: skip
    rows = PreferenceRows.from_examples(encode_pairs(renderer, pairs, 128, "truncate_response"))
    grads = []
    for share in (True, False):
        model = build_tiny_model("tiny-random-gemma", len(tok), seed=0).double()
        reference = build_tiny_model("tiny-random-gemma", len(tok), seed=1).double()
        dpo = DPOConfig(beta=0.5, sft_weight=0.3, share_prompt=share)
        module = PreferenceLoss(model, dpo, "frozen_copy", chunk_tokens=5)
        module.reference_model = reference.eval()
        total, _ = module(**DPOObjective(tok.pad_token_id, dpo, "frozen_copy").batch(rows, [0, 1]))
        total.backward()
        grads.append((float(total), [p.grad.clone() for p in model.parameters()]))
    (a, ga), (b, gb) = grads
    assert a == pytest.approx(b, rel=1e-10)
    # Gemma computes its rotary embeddings and norms in float32 even in a float64 model, so
    # gradients carry float32 rounding: two batchings of the *same* layout already differ by
    # ~1e-8. A wrong mask or position would move them by the gradient's own size.
    for x, y in zip(ga, gb, strict=True):
        assert float((x - y).abs().max()) <= 1e-4 * float(y.abs().max()) + 1e-9


def test_an_empty_micro_batch_weighs_nothing_but_reaches_every_parameter():
    tok = build_tiny_tokenizer("tiny-random-qwen")
    renderer = Renderer(tok, get_template("tokenizer", tok))
    pair = parse_preference_row({"prompt": "Hi", "chosen": "Hello", "rejected": "Bye"}, "a")
    rows = PreferenceRows.from_examples(encode_pairs(renderer, [pair], 64, "truncate_response"))
    model = build_tiny_model("tiny-random-qwen", len(tok)).double()
    dpo = DPOConfig(sft_weight=1.0)
    total, metrics = PreferenceLoss(model, dpo, "frozen_copy")(
        **DPOObjective(tok.pad_token_id, dpo, "frozen_copy").batch(rows, [])
    )
    total.backward()
    assert float(total) == 0.0 and all(float(v) == 0.0 for v in metrics.values())
    assert all(p.grad is not None for p in model.parameters())


# ----------------------------------------------------------------------- training, invariants


def dpo_config(tmp_path: Path, model: str = "tiny-random-qwen", **train) -> dict:
    dpo = train.pop("dpo", {})
    return {
        "model": {"path": model, "dtype": "float64"},
        "data": {"sources": [{"path": str(EXAMPLE)}], "max_length": 128},
        "train": {
            "objective": "dpo",
            "method": "full",
            "max_steps": 3,
            "batch_size": 8,
            "lr": 1e-3,
            "warmup_ratio": 0.0,
            "max_grad_norm": None,
            "logging": {"tensorboard": False},
            "dpo": {"reference_cache": str(tmp_path.parent / "reference-cache"), **dpo},
            **train,
        },
        "output_dir": str(tmp_path / "run"),
    }


def run(raw: dict, **kw):
    return train(validate_config(raw), **kw)


def test_first_loss_is_ln2_and_every_reference_gives_the_same_training(tmp_path):
    # The policy starts as the reference, so h = 0 and the loss is ln 2 whatever the pairs.
    lora = run(dpo_config(tmp_path / "lora", method="lora", lr=1e-2))  # adapters_off
    assert lora.losses[0] == pytest.approx(LN2, rel=1e-12)
    cached = run(
        dpo_config(tmp_path / "cached", method="lora", lr=1e-2, dpo={"reference": "precomputed"})
    )
    assert cached.losses == pytest.approx(lora.losses, rel=1e-9)
    assert lora.losses[-1] != pytest.approx(LN2, rel=1e-6)  # and it trains
    copy = run(dpo_config(tmp_path / "copy", dpo={"reference": "frozen_copy"}))
    precomputed = run(dpo_config(tmp_path / "pre"))  # full: auto is precomputed
    assert copy.losses[0] == pytest.approx(LN2, rel=1e-12)
    assert precomputed.losses == pytest.approx(copy.losses, rel=1e-9)
    assert precomputed.grad_norms == pytest.approx(copy.grad_norms, rel=1e-9)
    ipo = run(dpo_config(tmp_path / "ipo", dpo={"loss": "ipo", "beta": 0.1}))
    assert ipo.losses[0] == pytest.approx((1 / (2 * 0.1)) ** 2, rel=1e-12)


def _dpo_metrics(tmp_path, name, **train):
    result = run(dpo_config(tmp_path / name, dpo={"sft_weight": 0.5}, **train))
    weights = load_file(str(tmp_path / name / "run" / "final" / "model.safetensors"))
    return result, weights


def _assert_same_training(reference, others) -> None:
    a, wa = reference
    for other, wo in others:
        assert other.losses == pytest.approx(a.losses, rel=1e-9)
        assert other.grad_norms == pytest.approx(a.grad_norms, rel=1e-9)
        for name in wa:
            torch.testing.assert_close(wo[name], wa[name], rtol=1e-9, atol=1e-11)


def test_dpo_batch_8_equals_batch_1_times_accumulation_8(tmp_path):
    a = _dpo_metrics(tmp_path, "b8", batch_size=8, grad_accum=1)
    b = _dpo_metrics(tmp_path, "b1", batch_size=1, grad_accum=8)
    c = _dpo_metrics(tmp_path, "b2", batch_size=2, grad_accum=4)
    _assert_same_training(a, [b, c])


def test_reference_logprobs_are_cached_by_model_and_data(tmp_path, monkeypatch):
    from instill.train import dpo

    calls = []
    original = dpo.DPOObjective._compute_reference

    def counting(self, model, rows, autocast):
        calls.append(len(rows))
        return original(self, model, rows, autocast)

    monkeypatch.setattr(dpo.DPOObjective, "_compute_reference", counting)
    raw = dpo_config(tmp_path / "one", max_steps=1)
    raw["data"]["val_fraction"] = 0.25
    first = run(raw)
    assert calls == [12, 4]  # training and validation pairs, once each
    again = json.loads(json.dumps(raw))
    again["output_dir"] = str(tmp_path / "two" / "run")
    second = run(again)
    assert calls == [12, 4]  # a second run reads them back
    assert second.losses == first.losses and second.val_losses == first.val_losses
    again["model"]["path"] = "tiny-random-gemma"  # another model: another key
    run(again)
    assert calls == [12, 4, 12, 4]
    assert len(list((tmp_path / "reference-cache").glob("*.npy"))) == 4


def test_metrics_are_logged_per_pair(tmp_path):
    raw = dpo_config(tmp_path, max_steps=4, batch_size=4, eval_every=2)
    raw["data"]["val_fraction"] = 0.25
    result = run(raw)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "train/loss" in x]
    assert len(steps) == 4 and steps[0]["train/loss"] == pytest.approx(LN2, rel=1e-12)
    for x in steps:
        assert 0.0 <= x["train/rewards/accuracy"] <= 1.0
        margin = x["train/rewards/chosen"] - x["train/rewards/rejected"]
        assert x["train/rewards/margin"] == pytest.approx(margin, rel=1e-9, abs=1e-12)
        assert x["train/logps/chosen"] < 0 and x["train/logps/rejected"] < 0
        assert "train/pairs_per_s" in x
    assert steps[0]["train/rewards/margin"] == 0.0 and steps[-1]["train/rewards/margin"] > 0
    assert [x["step"] for x in lines if "val/loss" in x] == [2, 4, 4]
    # Validation pairs are scored against their own precomputed reference: finite, and the same
    # weights (step 4 and the end) give the same value.
    assert len(result.val_losses) == 3 and all(math.isfinite(v) for v in result.val_losses)
    assert result.val_losses[1] == result.val_losses[2] != result.val_losses[0]


def _cli(args: list[str], **kw):
    return subprocess.Popen([sys.executable, "-m", "instill.cli", *args], **kw)


def _metric(run_dir: Path, key: str) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x[key] for x in lines if key in x]


def test_dpo_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    raw = dpo_config(tmp_path, max_steps=120, save_every=2, keep_last=2, batch_size=4)
    raw["model"]["dtype"] = "float32"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    killed_dir = tmp_path / "killed"
    proc = _cli(
        ["train", str(cfg), f"output_dir={killed_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = killed_dir / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline:
        if ckpts.is_dir() and any(p.name >= "step-000004" for p in ckpts.iterdir()):
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "final").exists()  # it really died mid-training
    resumed = _cli(
        ["train", str(cfg), f"output_dir={killed_dir}", "--resume"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed from" in out
    clean = _cli(
        ["train", str(cfg), f"output_dir={tmp_path / 'clean'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err[-3000:]
    a = load_file(str(tmp_path / "clean" / "final" / "model.safetensors"))
    b = load_file(str(killed_dir / "final" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)
    clean_losses = _metric(tmp_path / "clean", "train/loss")
    killed_losses = _metric(killed_dir, "train/loss")
    assert killed_losses[-10:] == clean_losses[-10:]


def test_two_processes_with_batch_4_equal_one_with_batch_8(tmp_path):
    raw = dpo_config(tmp_path, max_steps=3, batch_size=4)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    accelerate = Path(sys.executable).with_name("accelerate")
    two = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "29563",
            "-m",
            "instill.cli",
            "train",
            str(cfg),
            f"output_dir={tmp_path / 'two'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "3 steps of 8 rows" in two.stdout  # 2 ranks x 4 pairs
    one = run(dict(raw, output_dir=str(tmp_path / "one"), train=dict(raw["train"], batch_size=8)))
    # float64 on both sides: the ranks' split changes only summation order.
    assert _metric(tmp_path / "two", "train/loss") == pytest.approx(one.losses, rel=1e-9)
    assert _metric(tmp_path / "two", "train/grad_norm") == pytest.approx(one.grad_norms, rel=1e-9)
    a = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "final" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-11)


def test_prepare_command_shows_pairs(tmp_path, capsys):
    from instill.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dpo_config(tmp_path)))
    assert main(["prepare", str(cfg), "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "(chosen)" in out and "(rejected)" in out and "[[42<|im_end|>]]" in out


# ------------------------------------------------------------------- pairs from verifiers


def _checkable(answer: str | None = "42"):
    from instill.eval.tasks import EvalItem, EvalTask
    from instill.pipelines.pairs import Checkable

    item = EvalItem("q1", (Message("user", "What is 40 plus 2?"),), reference="42")
    task = EvalTask("sums", [item], metric="numeric")
    return Checkable(task, item, answer)


def _gen(text: str, stopped: bool = True):
    from instill.generate.engine import Generation

    return Generation(text=text, token_ids=[1, 2], stopped=stopped, prompt_tokens=5)


def test_a_pair_is_a_passing_answer_against_a_failing_or_endless_one():
    from instill.pipelines.pairs import make_pair

    row, why = make_pair(_checkable(), [_gen("42"), _gen("41"), _gen("42 and more", False)])
    assert why == "pair" and row["rejected_reason"] == "failed_check"
    assert (row["chosen"][0]["content"], row["rejected"][0]["content"]) == ("42", "41")
    assert row["chosen_from"] == "reference"
    # An answer that passes but never stops is rejected too: it is what DPO should discourage.
    row, why = make_pair(_checkable(), [_gen("42 is the answer", False)])
    assert (why, row["rejected_reason"]) == ("pair", "no_stop")
    # Without a usable reference, a sampled passing answer is chosen.
    row, _ = make_pair(_checkable("no idea"), [_gen("It is 42"), _gen("7")])
    assert (row["chosen"][0]["content"], row["chosen_from"]) == ("It is 42", "sample")
    assert make_pair(_checkable(), [_gen("42"), _gen("42.0")]) == (None, "all_passed")
    assert make_pair(_checkable(None), [_gen("7"), _gen("8")]) == (None, "no_passing_answer")
    # The row parses as a preference pair.
    row, _ = make_pair(_checkable(), [_gen("41")])
    pair = parse_preference_row(row, "pairs.jsonl:line 1")
    assert (pair.chosen, pair.rejected) == ("42", "41")


def test_data_pairs_command_builds_pairs_that_dpo_trains_on(tmp_path):
    from instill.cli import main

    out = tmp_path / "pairs.jsonl"
    args = ["data", "pairs", "tiny-random-qwen", "--limit", "6", "--samples", "2"]
    assert main([*args, "--max-new-tokens", "6", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["prompts"] == 6 and stats["pairs"] == len(rows) > 0
    from instill.data.builtin.suite import build_suite

    suite = {r["id"]: r for r in build_suite(0, 4, 6).rows["train"]}
    for row in rows:  # the reference answer of the suite row, against a sampled failure
        assert row["chosen"][0]["content"] == suite[row["id"]]["messages"][-1]["content"]
        assert row["prompt"] == suite[row["id"]]["messages"][:-1]
    raw = dpo_config(tmp_path, max_steps=1, batch_size=2)
    raw["data"]["sources"] = [{"path": str(out)}]
    assert run(raw).losses[0] == pytest.approx(LN2, rel=1e-12)


def test_adapters_off_switches_off_the_trained_template_token_rows_too(tmp_path, capsys):
    # Gemma's built-in template on the tiny Gemma: its turn tokens' embedding rows train (PEFT
    # trainable tokens) beside LoRA. If the reference kept them on, it would drift from the
    # precomputed (initial) reference after the first step.
    runs = {}
    for ref in ("adapters_off", "precomputed"):
        raw = dpo_config(
            tmp_path / ref,
            model="tiny-random-gemma",
            method="lora",
            lr=1e-2,
            dpo={"reference": ref},
        )
        raw["data"]["template"] = "gemma"
        runs[ref] = run(raw)
        assert "turn tokens too: <start_of_turn>, <end_of_turn>" in capsys.readouterr().out
    assert runs["adapters_off"].losses == pytest.approx(runs["precomputed"].losses, rel=1e-9)
    assert runs["adapters_off"].losses[-1] != pytest.approx(LN2, rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "name"), [("smollm2-135m-instruct", "tokenizer"), ("gemma-3-270m", "gemma")]
)
@pytest.mark.parametrize("case", list(PROMPTS))
def test_real_tokenizers_render_pairs_as_the_whole_conversation(model, name, case):
    from instill.models.tokenizer_loading import load_tokenizer

    tok = load_tokenizer(model)
    template = get_template(name, tok)
    prepare_tokenizer(tok, template)
    renderer = Renderer(tok, template)
    prompt = PROMPTS[case]
    pair = PreferencePair(prompt, "Ciao", "No thanks, goodbye.", "f:line 1")
    [example] = encode_pairs(renderer, [pair], 256, "truncate_response")
    prompt_ids = renderer.encode_prompt(prompt)
    for seq, answer in ((example.chosen, pair.chosen), (example.rejected, pair.rejected)):
        whole = (*prompt, Message("assistant", answer))
        text = template.render(whole, add_generation_prompt=False)
        assert seq.input_ids[: len(prompt_ids)] == prompt_ids
        assert seq.input_ids == tok(text, add_special_tokens=False)["input_ids"]
        if name == "tokenizer":  # SmolLM2's own template, default system prompt included once
            messages = [{"role": m.role, "content": m.content} for m in whole]
            assert text == tok.apply_chat_template(messages, tokenize=False)
            assert text.count("<|im_start|>system") == 1
        if tok.bos_token_id is not None and added_bos_text(tok):
            assert seq.input_ids.count(tok.bos_token_id) == 1
        eot = tok.convert_tokens_to_ids(template.end_of_turn)
        trained = [t for t, lab in zip(seq.input_ids, seq.labels, strict=True) if lab != -100]
        assert trained[-1] == eot and trained.count(eot) == 1
        assert tok.decode(trained[:-1]).strip() == answer


def test_data_pairs_reads_eval_task_files_too(tmp_path):
    from instill.cli import main

    out = tmp_path / "pairs.jsonl"
    task = str(ROOT / "examples" / "eval" / "arithmetic.jsonl")
    args = ["data", "pairs", "tiny-random-qwen", "--tasks", task, "--metric", "numeric"]
    assert (
        main([*args, "--limit", "3", "--samples", "2", "--max-new-tokens", "4", "--out", str(out)])
        == 0
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    references = [json.loads(x) for x in Path(task).read_text().splitlines()[:3]]
    # A random tiny model never answers right, so every prompt pairs its reference with a miss.
    assert len(rows) == 3
    for row, ref in zip(rows, references, strict=True):
        assert row["chosen"][0]["content"] == str(ref["reference"])
        assert row["chosen_from"] == "reference"
