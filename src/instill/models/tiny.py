"""Tiny random models and tokenizers, built in-process, for tests and benchmark smoke runs.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in milliseconds on a small
built-in corpus with the `tokenizers` library, and the model is a 2-layer config of the real
architecture with random weights. The three flavours mirror the special-token conventions of the
real families (Llama: BOS added, no pad, no chat tokens; Qwen: no BOS, ChatML tokens and template;
Gemma: BOS added, pad, turn tokens and template), so template and masking code meets the same
situations it meets with real checkpoints.
"""

from __future__ import annotations

import functools

_CORPUS = (
    """
Instruction tuning turns a pretrained language model into an assistant that follows instructions.
The model reads an instruction, an optional input and learns to write the response. Classify the
sentiment of this review. Translate the sentence into French. Summarize the passage in one line.
List three colors. What is 12 plus 30? The answer is 42. Write a haiku about the sea. Sort these
numbers: 5, 3, 9, 1. Extract the dates from the text and return them as JSON with keys "date" and
"event". Reverse the word hello. Count the vowels in banana. Hello! How can I help you today?
The quick brown fox jumps over the lazy dog. A system prompt sets the behaviour of the assistant.
Question: Who wrote the letter? Context: Maria wrote a letter to her brother in 1999.
{"name": "Ada", "age": 36, "skills": ["math", "code"]} - item one - item two - item three
Yes. No. Maybe. True or false? Positive, negative, neutral. Thank you, goodbye.
"""
    * 3
)

TINY_NAMES = ("tiny-random-llama", "tiny-random-qwen", "tiny-random-gemma")

_CHATML_JINJA = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_GEMMA_JINJA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}"
    "{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') + "
    "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

_FLAVOURS = {
    "tiny-random-llama": {
        "specials": {"bos_token": "<s>", "eos_token": "</s>"},
        "extra": [],
        "add_bos": True,
        "chat_template": None,
    },
    "tiny-random-qwen": {
        "specials": {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
        "extra": ["<|im_start|>", "<|im_end|>"],
        "add_bos": False,
        "chat_template": _CHATML_JINJA,
    },
    "tiny-random-gemma": {
        "specials": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
        "extra": ["<start_of_turn>", "<end_of_turn>"],
        "add_bos": True,
        "chat_template": _GEMMA_JINJA,
    },
}


def _check_name(name: str) -> dict:
    if name not in _FLAVOURS:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {', '.join(TINY_NAMES)}")
    return _FLAVOURS[name]


@functools.lru_cache(maxsize=8)
def _tokenizer_json(name: str, vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    flavour = _check_name(name)
    specials = list(dict.fromkeys([*flavour["specials"].values(), *flavour["extra"]]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    if flavour["add_bos"]:
        bos = flavour["specials"]["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok.to_str()


def build_tiny_tokenizer(name: str = "tiny-random-llama", vocab_size: int = 512):
    """A fresh `PreTrainedTokenizerFast` of the given tiny flavour (a new object on every call).

    Args:
        name: one of `TINY_NAMES`.
        vocab_size: BPE vocabulary size (the byte alphabet alone is 256).
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    flavour = _check_name(name)
    backend = Tokenizer.from_str(_tokenizer_json(name, vocab_size))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **flavour["specials"],
        extra_special_tokens=list(flavour["extra"]) or None,
        model_max_length=4096,
    )
    if flavour["chat_template"]:
        tokenizer.chat_template = flavour["chat_template"]
    tokenizer.name_or_path = name
    return tokenizer


def build_tiny_model(name: str = "tiny-random-llama", vocab_size: int | None = None, seed: int = 0):
    """A 2-layer model of the flavour's architecture with seeded random weights.

    Args:
        name: one of `TINY_NAMES`.
        vocab_size: embedding rows; defaults to the tiny tokenizer's length.
        seed: torch seed for the initial weights.
    """
    import torch
    from transformers import AutoModelForCausalLM

    _check_name(name)
    if vocab_size is None:
        vocab_size = len(build_tiny_tokenizer(name))
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    if name == "tiny-random-llama":
        from transformers import LlamaConfig

        config = LlamaConfig(**common, bos_token_id=0, eos_token_id=1)
    elif name == "tiny-random-qwen":
        from transformers import Qwen2Config

        config = Qwen2Config(**common)
    else:
        from transformers import Gemma3TextConfig

        config = Gemma3TextConfig(**common, head_dim=16, sliding_window=64)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    return model
