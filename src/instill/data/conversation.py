"""The one conversation schema every data format is harmonised into.

A `Conversation` is an optional system prompt followed by user/assistant turns that alternate,
starting with the user. Plain language-modelling text (every token trained) is a `Conversation`
with `text` set and no messages, so that one type flows through the whole pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Message:
    """One turn.

    Attributes:
        role: `system`, `user` or `assistant`.
        content: the text of the turn.
        context: optional input/context attached to a user turn (Alpaca's `input`); templates that
            have a slot for it (alpaca) render it there, others append it to the content.
        train: per-message override of the masking strategy for assistant turns (`None` follows
            the strategy, `False` never trains the turn, `True` always does).
    """

    role: Role
    content: str
    context: str | None = None
    train: bool | None = None

    def text_for_chat(self) -> str:
        """The content as a chat template without a context slot shows it."""
        if self.context:
            return f"{self.content}\n\n{self.context}"
        return self.content

    def to_dict(self) -> dict:
        d: dict = {"role": self.role, "content": self.content}
        if self.context is not None:
            d["context"] = self.context
        if self.train is not None:
            d["train"] = self.train
        return d


@dataclass(frozen=True, slots=True)
class Conversation:
    """A validated example: messages (system?, user, assistant, ...) or plain text.

    Attributes:
        messages: the turns, system first if any, then alternating user/assistant.
        text: set instead of messages for plain language-modelling rows.
        source: where the row came from, `file:line` or `file:row N`, kept for errors and row ids.
    """

    messages: tuple[Message, ...] = ()
    text: str | None = None
    source: str = ""

    @property
    def is_text(self) -> bool:
        return self.text is not None

    @property
    def system(self) -> str | None:
        if self.messages and self.messages[0].role == "system":
            return self.messages[0].content
        return None

    def to_dict(self) -> dict:
        if self.is_text:
            return {"text": self.text, "source": self.source}
        return {"messages": [m.to_dict() for m in self.messages], "source": self.source}
