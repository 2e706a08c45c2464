"""The texts of a conversation that curation compares, and how they are normalised.

Every step looks at one *view* of a row: the whole conversation (system prompt and every turn,
with its role and any `train` flag), the user turns only, or the first user turn; filters look
at the assistant turns.
A user turn's attached input (Alpaca's `input`) is part of the turn, as a chat template without a
context slot shows it. Plain-text rows (`text`, every token trained) are their text in every view.

`normalise` is the one normal form for equality: Unicode NFKC (so full-width letters, ligatures
and non-breaking spaces compare equal to their plain forms), invisible characters removed
(zero-width spaces and joiners, soft hyphens, a byte-order mark), case-folded, whitespace runs
collapsed to one space and the ends stripped.
"""

from __future__ import annotations

import re
import unicodedata

from instill.data.conversation import Conversation

_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
_DELETE_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE))


def normalise(text: str) -> str:
    """NFKC, invisible characters removed, case-folded, whitespace collapsed and stripped."""
    text = unicodedata.normalize("NFKC", text).translate(_DELETE_INVISIBLE).casefold()
    return _WHITESPACE.sub(" ", text).strip()


def words(text: str) -> list[str]:
    """The words of `text` after `normalise` (runs of letters, digits and `_`)."""
    return _WORD.findall(normalise(text))


def count_words_and_marks(text: str) -> int:
    """Words plus punctuation marks: a model-free stand-in for a token count."""
    return len(_WORD_OR_MARK.findall(text))


def user_turns(conv: Conversation) -> list[str]:
    if conv.is_text:
        return [conv.text or ""]
    return [m.text_for_chat() for m in conv.messages if m.role == "user"]


def responses(conv: Conversation) -> list[str]:
    """The assistant turns (for a plain-text row: its text, which is all trained)."""
    if conv.is_text:
        return [conv.text or ""]
    return [m.content for m in conv.messages if m.role == "assistant"]


def view(conv: Conversation, scope: str) -> str:
    """The text of `conv` that a step compares: `conversation`, `user` or `first_user`."""
    if conv.is_text:
        return conv.text or ""
    if scope == "conversation":
        # A turn kept out of the loss (`train: false`) makes a different training example.
        return "\n".join(
            f"{m.role}{'' if m.train is None else f' (train={m.train})'}: {m.text_for_chat()}"
            for m in conv.messages
        )
    turns = user_turns(conv)
    if scope == "first_user":
        return turns[0] if turns else ""
    if scope == "user":
        return "\n".join(turns)
    raise ValueError(f"unknown scope {scope!r}; use conversation, user or first_user")


def response_length(conv: Conversation) -> int:
    """Characters in the assistant turns (the `longest_response` keep rule)."""
    return sum(len(r) for r in responses(conv))


def preview(text: str, limit: int = 240) -> str:
    """`text` on one line, cut at `limit` characters, for reports."""
    flat = _WHITESPACE.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
