"""Terminal chat with a model, rendered and stopped exactly as it was trained.

The history is kept as `Message`s and the whole conversation is re-rendered by the training
renderer for every turn (so a multi-turn prompt is the training row's prefix, token for token);
tokens are printed as the engine releases them. `/save FILE` appends the conversation as one
`messages` JSONL row, a format `instill prepare` reads, so a good conversation can become
training data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from instill.data.conversation import Message
from instill.data.masking import Renderer
from instill.generate.stream import Completion, DecodeEngine, DecodeRequest

HELP = (
    "commands: /reset (forget the conversation), /system TEXT (set the system prompt; "
    "/system alone clears it), /save FILE (append the conversation as a messages JSONL row), "
    "/help, /exit"
)


@dataclass(frozen=True)
class ChatSampling:
    """How chat answers are decoded (greedy when temperature is 0)."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class ChatSession:
    """One conversation with a model.

    Args:
        engine: the decoding engine of the model.
        renderer: its training renderer.
        system: the system prompt, if any.
        sampling: decoding settings.
    """

    engine: DecodeEngine
    renderer: Renderer
    system: str | None = None
    sampling: ChatSampling = field(default_factory=ChatSampling)
    turns: list[Message] = field(default_factory=list)  # user/assistant, alternating

    def conversation(self) -> list[Message]:
        head = [Message("system", self.system)] if self.system else []
        return [*head, *self.turns]

    def reply(self, text: str, write: Callable[[str], None]) -> Completion:
        """Answer the user's `text`, writing the answer as it streams; keep both in history."""
        messages = [*self.conversation(), Message("user", text)]
        s = self.sampling
        request = DecodeRequest(
            self.renderer.encode_prompt(messages),
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
        )
        answer, ids, reason = "", [], "length"
        for deltas in self.engine.stream([request]):
            for d in deltas:
                if d.text:
                    write(d.text)
                answer += d.text
                ids += [d.token_id] if d.token_id is not None else []
                reason = d.finish_reason or reason
        self.turns += [Message("user", text), Message("assistant", answer)]
        return Completion(answer, ids, reason, len(request.prompt_ids))

    def reset(self) -> None:
        self.turns.clear()

    def save(self, path: str | Path) -> Path:
        """Append the conversation as one `{"messages": [...]}` JSONL row."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {"messages": [{"role": m.role, "content": m.content} for m in self.conversation()]}
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path


def run_chat(
    session: ChatSession,
    read_line: Callable[[str], str],
    write: Callable[[str], None],
) -> int:
    """The read-answer loop until `/exit` or end of input; returns the exit status.

    Args:
        session: the conversation.
        read_line: `input`-like: shows a prompt, returns a line, raises EOFError at the end.
        write: writes text as it comes (flushed).
    """
    write(HELP + "\n")
    while True:
        try:
            line = read_line("you> ")
        except EOFError:
            write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        command, _, arg = text.partition(" ")
        if command in ("/exit", "/quit"):
            return 0
        if command == "/help":
            write(HELP + "\n")
        elif command == "/reset":
            session.reset()
            write("(conversation cleared)\n")
        elif command == "/system":
            session.system = arg.strip() or None
            session.reset()
            write(
                f"(system prompt {'set' if session.system else 'cleared'}; conversation cleared)\n"
            )
        elif command == "/save":
            if not arg.strip():
                write("usage: /save FILE\n")
                continue
            if not session.turns:
                write("(nothing to save yet)\n")
                continue
            write(f"(saved to {session.save(arg.strip())})\n")
        elif command.startswith("/") and command[1:].isalpha():
            write(f"unknown command {command}; {HELP}\n")
        else:
            write("assistant> ")
            done = session.reply(text, write)
            write("\n" if done.stopped else " [budget reached]\n")
