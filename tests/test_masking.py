"""Exact labels for every built-in template, the end-of-turn token trained, and parity.

Expected renderings are written out by hand with the trained text between `[[` and `]]`; the
expected ids/labels are built from that markup independently of the renderer.
"""

import re

import pytest

from instill.data.conversation import Conversation, Message
from instill.data.masking import IGNORE_INDEX, Renderer
from instill.data.templates import (
    JinjaTemplate,
    builtin_template_names,
    chat_template_source,
    get_template,
    prepare_tokenizer,
    register_template,
)
from instill.errors import TemplateError

SINGLE = (Message("user", "Hi"), Message("assistant", "Hello!"))
SINGLE_SYS = (Message("system", "Be brief."), *SINGLE)
MULTI = (*SINGLE, Message("user", "Bye"), Message("assistant", "Ciao"))
MULTI_SYS = (Message("system", "Be brief."), *MULTI)
CASES = {"single": SINGLE, "single_sys": SINGLE_SYS, "multi": MULTI, "multi_sys": MULTI_SYS}

# Hand-written renderings per template (tokenizer: tiny-random-gemma, which adds <bos>; eos <eos>).
EXPECTED = {
    "chatml": {
        "single": "<bos><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        "[[Hello!<|im_end|>]]\n",
        "single_sys": "<bos><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"
        "<|im_end|>\n<|im_start|>assistant\n[[Hello!<|im_end|>]]\n",
        "multi": "<bos><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n[[Hello!<|im_end|>]]"
        "\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n[[Ciao<|im_end|>]]\n",
        "multi_sys": "<bos><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>"
        "\n<|im_start|>assistant\n[[Hello!<|im_end|>]]\n<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n[[Ciao<|im_end|>]]\n",
    },
    "llama3": {
        "single": "<bos><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n[[Hello!<|eot_id|>]]",
        "single_sys": "<bos><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n[[Hello!<|eot_id|>]]",
        "multi": "<bos><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n[[Hello!<|eot_id|>]]"
        "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n[[Ciao<|eot_id|>]]",
        "multi_sys": "<bos><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n[[Hello!<|eot_id|>]]"
        "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n[[Ciao<|eot_id|>]]",
    },
    "gemma": {
        "single": "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
        "[[Hello!<end_of_turn>]]\n",
        "single_sys": "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\n[[Hello!<end_of_turn>]]\n",
        "multi": "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
        "[[Hello!<end_of_turn>]]\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        "[[Ciao<end_of_turn>]]\n",
        "multi_sys": "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\n[[Hello!<end_of_turn>]]\n<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n[[Ciao<end_of_turn>]]\n",
    },
    "alpaca": {
        "single": "<bos>Below is an instruction that describes a task. Write a response that "
        "appropriately completes the request.\n\n### Instruction:\nHi\n\n### Response:\n"
        "[[Hello!<eos>]]\n\n",
        "single_sys": "<bos>Be brief.\n\n### Instruction:\nHi\n\n### Response:\n"
        "[[Hello!<eos>]]\n\n",
        "multi": "<bos>Below is an instruction that describes a task. Write a response that "
        "appropriately completes the request.\n\n### Instruction:\nHi\n\n### Response:\n"
        "[[Hello!<eos>]]\n\n### Instruction:\nBye\n\n### Response:\n[[Ciao<eos>]]\n\n",
        "multi_sys": "<bos>Be brief.\n\n### Instruction:\nHi\n\n### Response:\n[[Hello!<eos>]]"
        "\n\n### Instruction:\nBye\n\n### Response:\n[[Ciao<eos>]]\n\n",
    },
}


def expected_ids_labels(tokenizer, markup: str) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    labels: list[int] = []
    for k, part in enumerate(re.split(r"\[\[|\]\]", markup)):
        toks = tokenizer(part, add_special_tokens=False)["input_ids"] if part else []
        ids += toks
        labels += toks if k % 2 == 1 else [IGNORE_INDEX] * len(toks)
    return ids, labels


def renderer_for(tokenizer, name: str, strategy: str = "all_assistant") -> Renderer:
    template = get_template(name, tokenizer)
    prepare_tokenizer(tokenizer, template)
    return Renderer(tokenizer, template, strategy)


def test_every_builtin_template_is_covered():
    assert set(builtin_template_names()) == set(EXPECTED)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(EXPECTED))
def test_exact_labels(tiny_tokenizer, name, case):
    tok = tiny_tokenizer("tiny-random-gemma")
    r = renderer_for(tok, name)
    example = r.encode(Conversation(CASES[case]))
    markup = EXPECTED[name][case]
    ids, labels = expected_ids_labels(tok, markup)
    assert example.input_ids == ids
    assert example.labels == labels
    # The rendering tokenized as one string gives the same ids (external engines agree).
    whole = tok(markup.replace("[[", "").replace("]]", ""), add_special_tokens=False)["input_ids"]
    assert example.input_ids == whole


@pytest.mark.parametrize("name", list(EXPECTED))
def test_end_of_turn_token_is_trained_and_last(tiny_tokenizer, name):
    tok = tiny_tokenizer("tiny-random-gemma")
    r = renderer_for(tok, name)
    ex = r.encode(Conversation(MULTI_SYS))
    eot_id = tok.convert_tokens_to_ids(r.template.end_of_turn)
    trained_eots = [
        i
        for i, (t, lab) in enumerate(zip(ex.input_ids, ex.labels, strict=True))
        if t == eot_id and lab == eot_id
    ]
    assert len(trained_eots) == 2  # one per assistant turn
    # Nothing after an end-of-turn token is trained until the next response starts.
    last = trained_eots[-1]
    assert all(lab == IGNORE_INDEX for lab in ex.labels[last + 1 :])


# Every built-in template on every tiny flavour, plus the flavours' own Jinja templates (the tiny
# Llama is a base tokenizer without one).
PARITY = [
    (f, n) for f in ("tiny-random-llama", "tiny-random-qwen", "tiny-random-gemma") for n in EXPECTED
] + [("tiny-random-qwen", "tokenizer"), ("tiny-random-gemma", "tokenizer")]


@pytest.mark.parametrize(("flavour", "name"), PARITY)
@pytest.mark.parametrize("case", list(CASES))
def test_generation_prompt_is_the_training_prefix(tiny_tokenizer, flavour, name, case):
    tok = tiny_tokenizer(flavour)
    r = renderer_for(tok, name)
    msgs = CASES[case]
    ex = r.encode(Conversation(msgs))
    for i, m in enumerate(msgs):
        if m.role != "assistant":
            continue
        prompt = r.encode_prompt(msgs[:i])
        assert ex.input_ids[: len(prompt)] == prompt
        # The first label of the response starts right after the prompt.
        assert ex.labels[len(prompt) - 1] == IGNORE_INDEX
        assert ex.labels[len(prompt)] == ex.input_ids[len(prompt)]
        # And it is what the tokenizer gives for the rendered prompt as one string.
        text = r.template.render(msgs[:i], add_generation_prompt=True)
        assert tok(text, add_special_tokens=False)["input_ids"] == prompt


def test_strategies_and_per_message_flag(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-qwen")
    conv = Conversation(MULTI_SYS)
    trained = {}
    for strategy in ("all_assistant", "last_assistant", "all"):
        r = renderer_for(tok, "chatml", strategy)
        ex = r.encode(conv)
        trained[strategy] = tok.decode([t for t in ex.labels if t != IGNORE_INDEX])
    assert trained["all_assistant"] == "Hello!<|im_end|>Ciao<|im_end|>"
    assert trained["last_assistant"] == "Ciao<|im_end|>"
    # Training on inputs trains every token but the first, which nothing predicts.
    full = r.template.render(conv.messages, add_generation_prompt=False)
    assert full.startswith("<|im_start|>")
    assert trained["all"] == full.removeprefix("<|im_start|>")
    flagged = Conversation(
        (*MULTI_SYS[:2], Message("assistant", "Hello!", train=False), *MULTI_SYS[3:])
    )
    ex = renderer_for(tok, "chatml").encode(flagged)
    assert tok.decode([t for t in ex.labels if t != IGNORE_INDEX]) == "Ciao<|im_end|>"
    forced = Conversation(
        (*MULTI_SYS[:2], Message("assistant", "Hello!", train=True), *MULTI_SYS[3:])
    )
    ex = renderer_for(tok, "chatml", "last_assistant").encode(forced)
    assert tok.decode([t for t in ex.labels if t != IGNORE_INDEX]) == (
        "Hello!<|im_end|>Ciao<|im_end|>"
    )


def test_plain_text_trains_every_token(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-llama")
    ex = renderer_for(tok, "chatml").encode(Conversation(text="hello world"))
    assert ex.labels == [IGNORE_INDEX, *ex.input_ids[1:]]
    assert ex.input_ids[0] == tok.bos_token_id and ex.input_ids[-1] == tok.eos_token_id


def test_alpaca_renders_input_in_its_own_section(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-qwen")
    r = renderer_for(tok, "alpaca")
    conv = Conversation(
        (Message("user", "Reverse the word.", context="cat"), Message("assistant", "tac"))
    )
    text = r.template.render(conv.messages, add_generation_prompt=False)
    assert "### Instruction:\nReverse the word.\n\n### Input:\ncat\n\n### Response:\ntac" in text


def test_missing_special_tokens_and_pad_are_added(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-llama")  # no pad, no chat tokens
    n = len(tok)
    added = prepare_tokenizer(tok, get_template("chatml", tok))
    assert added == ["<|im_start|>", "<|im_end|>", "<|pad|>"]
    assert len(tok) == n + 3
    assert tok.pad_token == "<|pad|>"
    assert len(tok("<|im_end|>", add_special_tokens=False)["input_ids"]) == 1


def test_jinja_template_infers_end_of_turn(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-gemma")
    assert get_template("auto", tok).end_of_turn == "<end_of_turn>"
    tok = tiny_tokenizer("tiny-random-qwen")
    assert get_template("tokenizer", tok).end_of_turn == "<|im_end|>"


def test_user_jinja_file(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer("tiny-random-qwen")
    path = tmp_path / "t.jinja"
    path.write_text(
        "{% for m in messages %}{{ '[' + m['role'] + '] ' + m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ '<|endoftext|>' }}{% endif %}{{ '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}"
    )
    r = renderer_for(tok, str(path))
    assert r.template.end_of_turn == "<|endoftext|>"
    ex = r.encode(Conversation(MULTI))
    assert tok.decode([t for t in ex.labels if t != IGNORE_INDEX]) == (
        "Hello!<|endoftext|>Ciao<|endoftext|>"
    )


def test_template_that_rewrites_earlier_turns_is_refused(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-qwen")
    # Like reasoning templates: past assistant turns are shortened once a later turn exists.
    source = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
        "{{ '<|im_start|>assistant\\n(omitted)<|im_end|>\\n' }}{% else %}"
        "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    r = Renderer(tok, JinjaTemplate("rewriting", source, tok))
    r.encode(Conversation(SINGLE))  # one turn is fine
    with pytest.raises(TemplateError, match="renders earlier turns differently"):
        r.encode(Conversation(MULTI))


def test_template_whose_prompt_is_not_a_prefix_is_refused(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-qwen")
    source = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
        "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
    )
    r = Renderer(tok, JinjaTemplate("thinking", source, tok))
    with pytest.raises(TemplateError, match="is not a prefix"):
        r.encode(Conversation(SINGLE))


def test_template_without_end_of_turn_is_refused(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-qwen")
    source = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}{% endfor %}"
    with pytest.raises(TemplateError, match="writes nothing after an assistant message"):
        JinjaTemplate("silent", source, tok)


def test_unknown_template_and_registry_rules(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-qwen")
    with pytest.raises(TemplateError, match="unknown template 'vicuna'"):
        get_template("vicuna", tok)
    with pytest.raises(ValueError, match="already registered"):
        register_template("chatml", lambda t: None)
    with pytest.raises(ValueError, match="must match"):
        register_template("Bad Name", lambda t: None)
    with pytest.raises(TemplateError, match="has no chat template"):
        get_template("tokenizer", tiny_tokenizer("tiny-random-llama"))


# --------------------------------------------------------------------------- truncation


def long_conv(n_turns: int) -> Conversation:
    msgs = [Message("system", "S")]
    for k in range(n_turns):
        msgs += [
            Message("user", f"question number {k} " * 3),
            Message("assistant", f"answer number {k} " * 3),
        ]
    return Conversation(tuple(msgs), source="x:line 1")


def test_truncation_policies(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-qwen")
    r = renderer_for(tok, "chatml")
    conv = long_conv(4)
    full = r.encode(conv)
    limit = len(full.input_ids) - 5
    assert r.fit(conv, full, limit, "drop_row") is None
    cut = r.fit(conv, full, limit, "truncate_response")
    assert cut.truncated and cut.input_ids == full.input_ids[:limit]
    assert cut.labels == full.labels[:limit]
    dropped = r.fit(conv, full, limit, "drop_oldest_turns")
    assert not dropped.truncated and dropped.dropped_turns == 1
    assert len(dropped.input_ids) <= limit
    text = tok.decode(dropped.input_ids)
    assert "question number 0" not in text and "question number 1" in text
    assert text.startswith("<|im_start|>system\nS")  # the system prompt is kept
    # When even the last exchange does not fit, the response is truncated.
    tiny = r.fit(conv, full, 20, "drop_oldest_turns")
    assert tiny.truncated and len(tiny.input_ids) == 20 and tiny.dropped_turns == 3


def test_auto_picks_a_builtin_whose_tokens_exist(tiny_tokenizer):
    tok = tiny_tokenizer("tiny-random-gemma")
    tok.chat_template = None
    assert get_template("auto", tok).name == "gemma"
    assert get_template("auto", tiny_tokenizer("tiny-random-llama")).name == "chatml"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builtin_templates_export_identical_jinja(tiny_tokenizer, name):
    tok = tiny_tokenizer("tiny-random-gemma")
    template = get_template(name, tok)
    prepare_tokenizer(tok, template)
    source = chat_template_source(template)
    with_context = (Message("user", "Reverse the word.", context="cat"), Message("assistant", "x"))
    for msgs in [*CASES.values(), with_context]:
        for n in range(1, len(msgs) + 1):
            dicts = [m.to_dict() for m in msgs[:n]]
            for gen in (False, True):
                ours = template.render(msgs[:n], add_generation_prompt=gen)
                jinja = tok.apply_chat_template(
                    dicts, chat_template=source, tokenize=False, add_generation_prompt=gen
                )
                assert jinja == ours
