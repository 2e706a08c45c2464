"""Chat templates: the tokenizer's own Jinja template, a user's Jinja file, or a built-in one.

A template only turns messages into text; it never decides what is trained. Each template knows its
end-of-turn marker (the text of the token that ends an assistant turn), which is trained with the
assistant's content so that the tuned model learns to stop. Span finding lives in `masking.py` and
works from renderings alone, so every template here is masked by the same code.

Built-in templates exist for base models that ship without a chat template. They use the
tokenizer's BOS token when the tokenizer adds one to plain text (Gemma, Llama), and name the special
tokens they need so that `prepare_tokenizer` can add missing ones to the vocabulary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from instill.data.conversation import Message
from instill.errors import TemplateError

DEFAULT_ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)


@runtime_checkable
class ChatTemplate(Protocol):
    """What the renderer needs from a template."""

    name: str
    end_of_turn: str
    special_tokens: tuple[str, ...]

    def render(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        """Render messages to text; with `add_generation_prompt` end with the assistant header."""
        ...


# --------------------------------------------------------------------------- built-in templates


@dataclass(frozen=True)
class _TurnTemplate:
    """A template described by per-role prefixes and suffixes (chatml, llama3, gemma, alpaca)."""

    name: str
    end_of_turn: str
    bos: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    system_prefix: str | None = None  # None: the system prompt is merged into the first user turn
    system_suffix: str = ""
    system_join: str = "\n\n"
    default_system: str | None = None
    context_label: str | None = None  # render Message.context under this label (alpaca)
    turn_separator: str = ""
    special_tokens: tuple[str, ...] = field(default_factory=tuple)

    def render(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        parts = [self.bos]
        msgs = list(messages)
        system = None
        if msgs and msgs[0].role == "system":
            system = msgs.pop(0).content
        elif self.default_system is not None:
            system = self.default_system
        if system is not None and self.system_prefix is not None:
            parts.append(self.system_prefix + system + self.system_suffix)
            system = None
        first_user = True
        for m in msgs:
            if m.role == "user":
                content = self._user_text(m)
                if first_user and system is not None:
                    content = system + self.system_join + content
                first_user = False
                parts.append(self.user_prefix + content + self.user_suffix)
            elif m.role == "assistant":
                parts.append(self.assistant_prefix + m.content + self.end_of_turn)
                parts.append(self.turn_separator)
            else:
                raise TemplateError(
                    f"template {self.name!r}: a {m.role!r} message may only come first"
                )
        if add_generation_prompt:
            parts.append(self.assistant_prefix)
        return "".join(parts)

    def to_jinja(self) -> str:
        """The same template as a Jinja chat template, saved with the tokenizer.

        Rendering it with transformers' `apply_chat_template` gives exactly `render`'s text (a
        test checks every built-in), so vLLM, llama.cpp converters and the Hub prompt a tuned
        model the way it was trained. A message's optional `context` key is honoured too.
        """

        def lit(text: str | None) -> str:
            return "none" if text is None else json.dumps(text)

        ctx_label = self.context_label if self.context_label is not None else "\n\n"
        parts = [
            "{{- bos_token -}}" if self.bos else "",
            "{%- if messages and messages[0]['role'] == 'system' -%}",
            "{%- set system = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}",
            f"{{%- else -%}}{{%- set system = {lit(self.default_system)} -%}}",
            "{%- set loop_messages = messages -%}{%- endif -%}",
        ]
        if self.system_prefix is not None:
            parts.append(
                f"{{%- if system is not none -%}}{{{{- {lit(self.system_prefix)} + system + "
                f"{lit(self.system_suffix)} -}}}}{{%- set system = none -%}}{{%- endif -%}}"
            )
        parts += [
            "{%- for m in loop_messages -%}",
            "{%- if m['role'] == 'user' -%}",
            "{%- set content = m['content'] -%}",
            f"{{%- if m.get('context') -%}}{{%- set content = content + {lit(ctx_label)} + "
            "m['context'] -%}{%- endif -%}",
            f"{{%- if loop.first and system is not none -%}}{{%- set content = system + "
            f"{lit(self.system_join)} + content -%}}{{%- endif -%}}",
            f"{{{{- {lit(self.user_prefix)} + content + {lit(self.user_suffix)} -}}}}",
            "{%- elif m['role'] == 'assistant' -%}",
            f"{{{{- {lit(self.assistant_prefix)} + m['content'] + {lit(self.end_of_turn)} + "
            f"{lit(self.turn_separator)} -}}}}",
            "{%- else -%}{{- raise_exception('only the first message may be a system message') "
            "-}}{%- endif -%}",
            "{%- endfor -%}",
            f"{{%- if add_generation_prompt -%}}{{{{- {lit(self.assistant_prefix)} -}}}}"
            "{%- endif -%}",
        ]
        return "".join(parts)

    def _user_text(self, m: Message) -> str:
        if self.context_label is not None:
            if m.context:
                return f"{m.content}{self.context_label}{m.context}"
            return m.content
        return m.text_for_chat()


def chatml_template(tokenizer) -> ChatTemplate:
    return _TurnTemplate(
        name="chatml",
        end_of_turn="<|im_end|>",
        bos=added_bos_text(tokenizer),
        system_prefix="<|im_start|>system\n",
        system_suffix="<|im_end|>\n",
        user_prefix="<|im_start|>user\n",
        user_suffix="<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        turn_separator="\n",
        special_tokens=("<|im_start|>", "<|im_end|>"),
    )


def llama3_template(tokenizer) -> ChatTemplate:
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    return _TurnTemplate(
        name="llama3",
        end_of_turn="<|eot_id|>",
        bos=added_bos_text(tokenizer),
        system_prefix=header.format("system"),
        system_suffix="<|eot_id|>",
        user_prefix=header.format("user"),
        user_suffix="<|eot_id|>",
        assistant_prefix=header.format("assistant"),
        special_tokens=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    )


def gemma_template(tokenizer) -> ChatTemplate:
    # Gemma has no system role: its own template prepends the system prompt to the first user turn.
    return _TurnTemplate(
        name="gemma",
        end_of_turn="<end_of_turn>",
        bos=added_bos_text(tokenizer),
        user_prefix="<start_of_turn>user\n",
        user_suffix="<end_of_turn>\n",
        assistant_prefix="<start_of_turn>model\n",
        turn_separator="\n",
        special_tokens=("<start_of_turn>", "<end_of_turn>"),
    )


def alpaca_template(tokenizer) -> ChatTemplate:
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise TemplateError(
            "template 'alpaca' ends each response with the tokenizer's EOS token, but this "
            "tokenizer has none; use template: chatml, or set an eos_token on the tokenizer"
        )
    return _TurnTemplate(
        name="alpaca",
        end_of_turn=eos,
        bos=added_bos_text(tokenizer),
        system_prefix="",
        system_suffix="\n\n",
        default_system=DEFAULT_ALPACA_SYSTEM,
        user_prefix="### Instruction:\n",
        user_suffix="\n\n",
        context_label="\n\n### Input:\n",
        assistant_prefix="### Response:\n",
        turn_separator="\n\n",
        special_tokens=(),
    )


def added_bos_text(tokenizer) -> str:
    """The BOS text to start a rendering with, if the tokenizer adds BOS to plain text.

    Checked by tokenizing, not read off `add_bos_token`, which transformers does not keep
    reliably across save/load for GGUF-converted tokenizers.
    """
    if getattr(tokenizer, "bos_token", None) is None:
        return ""
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return tokenizer.bos_token if ids and ids[0] == tokenizer.bos_token_id else ""


# --------------------------------------------------------------------------- Jinja templates


class JinjaTemplate:
    """A Jinja chat template rendered exactly as transformers renders it."""

    special_tokens: tuple[str, ...] = ()

    def __init__(self, name: str, source: str, tokenizer, end_of_turn: str | None = None) -> None:
        self.name = name
        self.source = source
        self._tokenizer = tokenizer
        self.end_of_turn = end_of_turn or self._infer_end_of_turn()

    def render(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        dicts = [{"role": m.role, "content": m.text_for_chat()} for m in messages]
        try:
            return self._tokenizer.apply_chat_template(
                dicts,
                chat_template=self.source,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
        except Exception as e:  # Jinja raises its own types (TemplateError, UndefinedError...)
            roles = ",".join(m.role for m in messages)
            raise TemplateError(
                f"chat template {self.name!r} failed to render messages with roles [{roles}]: "
                f"{type(e).__name__}: {e}"
            ) from e

    def _infer_end_of_turn(self) -> str:
        sentinel = "SENTINEL_7f3a_RESPONSE"
        msgs = [Message("user", "Hi"), Message("assistant", sentinel)]
        full = self.render(msgs, add_generation_prompt=False)
        at = full.rfind(sentinel)
        tail = full[at + len(sentinel) :] if at >= 0 else ""
        tail_stripped = tail.strip()
        if not tail_stripped:
            raise TemplateError(
                f"chat template {self.name!r} writes nothing after an assistant message, so the "
                "model could never learn to stop; set data.end_of_turn to the token that ends a "
                "turn, or use a built-in template (data.template: chatml)"
            )
        # The end-of-turn marker is the first special token the template writes after the content.
        specials = sorted(
            set(getattr(self._tokenizer, "all_special_tokens", []))
            | set(getattr(self._tokenizer, "added_tokens_encoder", {}) or {}),
            key=len,
            reverse=True,
        )
        for tok in specials:
            if tok and tail_stripped.startswith(tok):
                return tok
        first = re.split(r"\s", tail_stripped, maxsplit=1)[0]
        return first


def jinja_file_template(path: str | Path, tokenizer, end_of_turn: str | None) -> ChatTemplate:
    p = Path(path)
    if not p.is_file():
        raise TemplateError(f"chat template file not found: {p}")
    return JinjaTemplate(p.name, p.read_text(), tokenizer, end_of_turn)


def tokenizer_template(tokenizer, end_of_turn: str | None) -> ChatTemplate:
    source = getattr(tokenizer, "chat_template", None)
    if not source:
        raise TemplateError(
            "data.template is 'tokenizer' but this tokenizer has no chat template; use a "
            "built-in one (alpaca, chatml, llama3, gemma) or a Jinja file"
        )
    if isinstance(source, dict):  # several named templates: take the default one
        source = source.get("default") or next(iter(source.values()))
    return JinjaTemplate("tokenizer", source, tokenizer, end_of_turn)


# --------------------------------------------------------------------------- registry

TemplateFactory = Callable[..., ChatTemplate]
_REGISTRY: dict[str, TemplateFactory] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register_template(name: str, factory: TemplateFactory) -> None:
    """Register a built-in template factory `factory(tokenizer) -> ChatTemplate`.

    Raises:
        ValueError: if the name is taken or is not lowercase letters, digits and underscores.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"template name {name!r} must match {_NAME_RE.pattern}")
    if name in _REGISTRY or name in ("auto", "tokenizer"):
        raise ValueError(f"template name {name!r} is already registered")
    _REGISTRY[name] = factory


def builtin_template_names() -> list[str]:
    return sorted(_REGISTRY)


register_template("alpaca", alpaca_template)
register_template("chatml", chatml_template)
register_template("llama3", llama3_template)
register_template("gemma", gemma_template)


def get_template(spec: str, tokenizer, end_of_turn: str | None = None) -> ChatTemplate:
    """Build the template named by `data.template`.

    Args:
        spec: `auto`, `tokenizer`, a built-in name or a path to a `.jinja` file.
        tokenizer: the tokenizer the rendering will be tokenized with.
        end_of_turn: overrides the inferred end-of-turn marker of a Jinja template.
    """
    if spec == "auto":
        if getattr(tokenizer, "chat_template", None):
            return tokenizer_template(tokenizer, end_of_turn)
        # A base model without a template: prefer the built-in whose turn tokens the vocabulary
        # already has (Gemma base ships <start_of_turn>), so no rows are added; a base model never
        # trained those rows, so the trainer trains them (train.train_template_tokens).
        vocab = tokenizer.get_vocab()
        for name in ("gemma", "llama3", "chatml"):
            template = _REGISTRY[name](tokenizer)
            if all(t in vocab for t in template.special_tokens):
                return template
        return _REGISTRY["chatml"](tokenizer)
    if spec == "tokenizer":
        return tokenizer_template(tokenizer, end_of_turn)
    if spec in _REGISTRY:
        return _REGISTRY[spec](tokenizer)
    if spec.endswith((".jinja", ".j2", ".jinja2")) or "/" in spec:
        return jinja_file_template(spec, tokenizer, end_of_turn)
    raise TemplateError(
        f"unknown template {spec!r}: use auto, tokenizer, one of "
        f"{', '.join(builtin_template_names())}, or a path to a .jinja file"
    )


def chat_template_source(template: ChatTemplate) -> str:
    """The Jinja source that renders exactly like `template` (saved with the tokenizer)."""
    if isinstance(template, JinjaTemplate):
        return template.source
    to_jinja = getattr(template, "to_jinja", None)
    if to_jinja is None:
        raise TemplateError(f"template {template.name!r} cannot be exported as Jinja")
    return to_jinja()


def control_tokens(tokenizer, template: ChatTemplate) -> list[str]:
    """The token texts that message content may only ever contain as text, longest first.

    Every special token, the markers a template declares, and the non-special added tokens the
    template writes: those the tokenizer lists in `chat_control_tokens` (as `transformers`'
    `sanitize_control_tokens` decides), else those in the template's source or its rendering of a
    probe conversation (which catches markers built from pieces, `'<|' + role + '|>'`), except
    whitespace. Other non-special added tokens (Gemma's HTML tags and runs of newlines) are
    ordinary text the model was pretrained on and stay tokens.
    """
    added = list(getattr(tokenizer, "added_tokens_decoder", {}).values())
    tokens = {t.content for t in added if t.special}
    tokens |= set(getattr(tokenizer, "all_special_tokens", []))
    tokens |= set(template.special_tokens)
    listed = getattr(tokenizer, "chat_control_tokens", None)
    if listed is not None:
        tokens |= set(listed) & {t.content for t in added}
    else:
        written = _written_text(template)
        tokens |= {t.content for t in added if t.content in written and not t.content.isspace()}
    if any(t.content == template.end_of_turn for t in added):
        tokens.add(template.end_of_turn)
    return sorted(filter(None, tokens), key=lambda t: (-len(t), t))


def _written_text(template: ChatTemplate) -> str:
    """A template's Jinja source (if any) and its renderings of a short probe conversation."""
    texts = [getattr(template, "source", "")]
    user, answer = Message("user", "U"), Message("assistant", "A")
    for msgs in ((Message("system", "S"), user, answer), (user, answer)):
        try:
            texts.append(template.render(msgs, add_generation_prompt=False))
            texts.append(template.render(msgs[:-1], add_generation_prompt=True))
        except TemplateError:  # e.g. a template without a system role
            continue
    return "\0".join(texts)


def prepare_tokenizer(tokenizer, template: ChatTemplate) -> list[str]:
    """Add the template's special tokens and a pad token if the tokenizer lacks them.

    The tokens are added as special tokens (never split, never merged with text), so the model's
    embedding must be resized to `len(tokenizer)` before training; the trainer does that and saves
    the tokenizer with the model.

    Returns:
        The tokens that were added.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in template.special_tokens if t not in vocab]
    added: list[str] = []
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        added += missing
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
        added.append("<|pad|>")
    for tok in template.special_tokens:
        ids = tokenizer(tok, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise TemplateError(
                f"template {template.name!r} needs {tok!r} to be one token, but the tokenizer "
                f"splits it into {len(ids)}"
            )
    return added
