"""Render conversations into `input_ids` + `labels`, with assistant spans taken from the rendering.

How spans are found (and why not by searching for marker tokens): for each assistant turn *i* the
template renders (a) the conversation up to turn *i* with the generation prompt, and (b) up to and
including turn *i*. Both must be prefixes of the full rendering — (a) is exactly the prompt the
generator will use, so this *is* the training/inference parity check, and (b) fails for templates
whose rendering of earlier turns changes when later turns are added; either failure is refused
with a `TemplateError` instead of being mis-masked. The assistant span runs from the end of (a) to
the end of the template's end-of-turn marker inside (b), so the end-of-turn token is trained and
whatever the template writes after it (a newline) is not.

The text is then cut at span boundaries and each piece is tokenized on its own, so a token can
never straddle a prompt/response boundary; labels are the piece's ids where trained and -100
elsewhere. `encode_prompt` builds generation prompts from the very same pieces, so the prompt is
token-for-token a prefix of the training row by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from instill.data.conversation import Conversation, Message
from instill.data.templates import ChatTemplate, added_bos_text
from instill.errors import TemplateError

IGNORE_INDEX = -100
STRATEGIES = ("all_assistant", "last_assistant", "all")


@dataclass(frozen=True, slots=True)
class Piece:
    """A slice of the rendered text; `turn` is the assistant turn index for response pieces."""

    text: str
    turn: int | None = None


@dataclass(slots=True)
class TokenizedExample:
    """One rendered, tokenized and masked example."""

    input_ids: list[int]
    labels: list[int]
    source: str = ""
    truncated: bool = False
    dropped_turns: int = 0
    pieces: list[Piece] = field(default_factory=list, repr=False)

    @property
    def supervised_tokens(self) -> int:
        return len(self.labels) - self.labels.count(IGNORE_INDEX)


def split_rendering(template: ChatTemplate, messages: Sequence[Message]) -> list[Piece]:
    """Render `messages` and cut the text into prompt pieces and assistant-response pieces."""
    full = template.render(messages, add_generation_prompt=False)
    pieces: list[Piece] = []
    cursor = 0
    turn = 0
    for i, m in enumerate(messages):
        if m.role != "assistant":
            continue
        prompt = template.render(messages[:i], add_generation_prompt=True)
        if not full.startswith(prompt):
            raise TemplateError(
                f"template {template.name!r}: the prompt for assistant turn {turn} (rendered with "
                "the generation prompt) is not a prefix of the full conversation's rendering, so "
                "training and generation would see different tokens. "
                f"Prompt ends with {prompt[-40:]!r}; full text continues "
                f"{full[max(0, len(prompt) - 40) : len(prompt) + 10]!r}. Use a built-in template."
            )
        last = i == len(messages) - 1
        upto = full if last else template.render(messages[: i + 1], add_generation_prompt=False)
        if not full.startswith(upto):
            raise TemplateError(
                f"template {template.name!r} renders earlier turns differently once later turns "
                f"are added (turn {turn} changes), so assistant spans cannot be masked exactly. "
                "This happens with templates that drop or rewrite past assistant messages (e.g. "
                "removing reasoning); use a built-in template or a Jinja file without that logic."
            )
        start = len(prompt)
        if start < cursor:
            raise TemplateError(
                f"template {template.name!r}: assistant turn {turn} starts inside the previous "
                "turn's response; the template is not incremental"
            )
        segment = upto[start:]
        eot = segment.rfind(template.end_of_turn)
        if eot < 0:
            raise TemplateError(
                f"template {template.name!r} does not write its end-of-turn marker "
                f"{template.end_of_turn!r} after assistant turn {turn}; set data.end_of_turn to "
                "the marker the template writes"
            )
        end = start + eot + len(template.end_of_turn)
        if start > cursor:
            pieces.append(Piece(full[cursor:start]))
        pieces.append(Piece(full[start:end], turn))
        cursor = end
        turn += 1
    if cursor < len(full):
        pieces.append(Piece(full[cursor:]))
    return pieces


def trained_turns(messages: Sequence[Message], strategy: str) -> list[bool]:
    """Which assistant turns (in order) are trained under `strategy` and per-message flags."""
    assistants = [m for m in messages if m.role == "assistant"]
    out = []
    for k, m in enumerate(assistants):
        if m.train is not None:
            out.append(m.train)
        elif strategy == "last_assistant":
            out.append(k == len(assistants) - 1)
        else:
            out.append(True)
    return out


def text_pieces(text: str, bos: str, eos: str) -> list[Piece]:
    """Plain language-modelling text: BOS (if the tokenizer adds one) + text + EOS, all trained."""
    return [Piece(bos + text + eos, turn=0)]


class Renderer:
    """Turns conversations into masked token rows with one template and tokenizer.

    Args:
        tokenizer: a (fast) Hugging Face tokenizer, already given the template's special tokens.
        template: the chat template.
        strategy: `all_assistant`, `last_assistant` or `all` (train on inputs too).
    """

    def __init__(self, tokenizer, template: ChatTemplate, strategy: str = "all_assistant") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"masking strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.tokenizer = tokenizer
        self.template = template
        self.strategy = strategy
        self._bos = added_bos_text(tokenizer)
        self._eos = tokenizer.eos_token or ""

    def pieces(self, conv: Conversation) -> tuple[list[Piece], list[bool]]:
        if conv.is_text:
            return text_pieces(conv.text or "", self._bos, self._eos), [True]
        return split_rendering(self.template, conv.messages), trained_turns(
            conv.messages, self.strategy
        )

    def encode_many(
        self,
        convs: Sequence[Conversation],
        on_error: Callable[[int, TemplateError], None] | None = None,
    ) -> list[TokenizedExample | None]:
        """Encode a batch; the tokenizer runs once over all pieces of all conversations.

        Args:
            convs: the conversations.
            on_error: if given, a conversation the template cannot render is reported through
                `on_error(index, error)` and its slot in the result is None; otherwise the
                `TemplateError` propagates.
        """
        split: list[tuple[list[Piece], list[bool]] | None] = []
        for i, c in enumerate(convs):
            try:
                split.append(self.pieces(c))
            except TemplateError as e:
                if on_error is None:
                    raise
                on_error(i, e)
                split.append(None)
        flat = [p.text for item in split if item for p in item[0]]
        ids_flat = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        out: list[TokenizedExample | None] = []
        k = 0
        for conv, item in zip(convs, split, strict=True):
            if item is None:
                out.append(None)
                continue
            pieces, trained = item
            input_ids: list[int] = []
            labels: list[int] = []
            for p in pieces:
                ids = ids_flat[k]
                k += 1
                input_ids += ids
                # Prompt pieces are trained only when training on inputs; response pieces follow
                # the strategy and the per-message `train` flags.
                train = trained[p.turn] if p.turn is not None else self.strategy == "all"
                labels += ids if train else [IGNORE_INDEX] * len(ids)
            if labels:
                # The first token is never predicted within its example, and in a packed row
                # it must not be the target of the previous example's last token either.
                labels[0] = IGNORE_INDEX
            out.append(TokenizedExample(input_ids, labels, conv.source, pieces=pieces))
        return out

    def encode(self, conv: Conversation) -> TokenizedExample:
        """Encode one conversation (see `encode_many`)."""
        example = self.encode_many([conv])[0]
        assert example is not None  # errors propagate when no on_error is given
        return example

    def encode_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of the generation prompt for the next assistant turn.

        Built from the same pieces as training rows, so it equals the training row's prefix up to
        the response of that turn, token for token.
        """
        msgs = list(messages)
        if msgs and msgs[-1].role == "assistant":
            raise ValueError("the last message is from the assistant; nothing to prompt for")
        # Render the conversation with a placeholder answer, keep everything before its span.
        placeholder = Message("assistant", "x")
        pieces = split_rendering(self.template, [*msgs, placeholder])
        n_turns = sum(1 for m in msgs if m.role == "assistant")
        prompt_pieces = []
        for p in pieces:
            if p.turn == n_turns:
                break
            prompt_pieces.append(p.text)
        full_prompt = self.template.render(msgs, add_generation_prompt=True)
        if "".join(prompt_pieces) != full_prompt:  # pragma: no cover - split_rendering checks it
            raise TemplateError(f"template {self.template.name!r}: prompt pieces do not match")
        ids = self.tokenizer(prompt_pieces, add_special_tokens=False)["input_ids"]
        return [t for piece in ids for t in piece]

    # ----------------------------------------------------------------- truncation

    def fit(
        self, conv: Conversation, example: TokenizedExample, max_length: int, policy: str
    ) -> TokenizedExample | None:
        """Apply the truncation policy; returns None when the row must be dropped."""
        if len(example.input_ids) <= max_length:
            return example
        if policy == "drop_row":
            return None
        if policy == "drop_oldest_turns" and not conv.is_text:
            msgs = list(conv.messages)
            system = [msgs.pop(0)] if msgs and msgs[0].role == "system" else []
            dropped = 0
            while len(msgs) > 2:
                msgs = msgs[2:]  # one user + assistant exchange
                dropped += 1
                shorter = Conversation((*system, *msgs), source=conv.source)
                candidate = self.encode(shorter)
                if len(candidate.input_ids) <= max_length:
                    candidate.dropped_turns = dropped
                    return candidate
                example = candidate
                example.dropped_turns = dropped
        # truncate_response (and the fallback of drop_oldest_turns): keep the first max_length.
        return TokenizedExample(
            example.input_ids[:max_length],
            example.labels[:max_length],
            example.source,
            truncated=True,
            dropped_turns=example.dropped_turns,
            pieces=example.pieces,
        )
