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

Control-token text inside content (a row asking "What does <|im_end|> mean?", a user forging a
system turn) is encoded as text, never as the control token. Before rendering, every control
token's text in message content is swapped for a private-use placeholder character
(`ContentEscaper`), which no template changes and no tokenizer sees; when a piece is tokenized,
its text is cut at the placeholders, the template's own text is tokenized normally (so its
markers become their tokens) and each placeholder's literal is encoded as text. This works for
every template, Jinja ones included, and is shared by training rows and `encode_prompt`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from instill.data.conversation import Conversation, Message
from instill.data.templates import ChatTemplate, added_bos_text, control_tokens
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


# Placeholders are single characters of Supplementary Private Use Area-B: no template trims or
# changes them, and they are never tokenized (pieces are cut at them first). transformers'
# `sanitize_control_tokens` uses Area-A, so the two never meet.
_PLACEHOLDER_BASE = 0x100000
_PLACEHOLDER_LAST = 0x10FFFD
_PLACEHOLDER_CLASS = "[\U00100000-\U0010fffd]"
_PLACEHOLDER_RUN = re.compile(f"({_PLACEHOLDER_CLASS}+)")


def alternation(strings: Iterable[str]) -> str:
    """A regex matching any of `strings`, the longest where several match at one position.

    Built as a trie, so a scan costs one walk down the trie per position instead of one
    comparison per string: Gemma 3 has over 6000 special tokens.
    """
    trie: dict = {}
    for s in strings:
        node = trie
        for ch in s:
            node = node.setdefault(ch, {})
        node[""] = {}  # a string ends here

    def pattern(node: dict) -> str:
        alts = [re.escape(ch) + pattern(child) for ch, child in node.items() if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        # Greedy: a longer string through this node is tried before the one ending here.
        return f"(?:{body})?" if "" in node else body

    return pattern(trie)


class ContentEscaper:
    """Swaps control-token text in message content for placeholders, and back.

    Each protected string gets its own placeholder character. Characters of the placeholder range
    that the data itself contains are protected too (each gets a placeholder of its own when first
    seen), so every placeholder in a rendering comes from this escaper.

    Args:
        protected: the strings content may only contain as text (`templates.control_tokens`).
    """

    def __init__(self, protected: Iterable[str]) -> None:
        self._literals: list[str] = []
        self._index: dict[str, int] = {}
        strings = sorted(set(filter(None, protected)), key=len, reverse=True)
        for s in strings:
            self._placeholder(s)
        trie = alternation(strings)
        self._pattern = re.compile(f"{trie}|{_PLACEHOLDER_CLASS}" if trie else _PLACEHOLDER_CLASS)

    def _placeholder(self, literal: str) -> str:
        k = self._index.get(literal)
        if k is None:
            k = self._index[literal] = len(self._literals)
            if _PLACEHOLDER_BASE + k > _PLACEHOLDER_LAST:
                raise ValueError(f"more than {k} distinct control tokens to escape")
            self._literals.append(literal)
        return chr(_PLACEHOLDER_BASE + k)

    def escape(self, text: str) -> str:
        """`text` with protected strings as placeholders; `text` itself when it has none."""
        if self._pattern.search(text) is None:
            return text
        return self._pattern.sub(lambda m: self._placeholder(m.group()), text)

    def escape_messages(self, messages: Sequence[Message]) -> tuple[Message, ...]:
        """`messages` with content and context escaped; `tuple(messages)` when nothing changed."""
        out = []
        changed = False
        for m in messages:
            content = self.escape(m.content)
            context = self.escape(m.context) if m.context else m.context
            if content is not m.content or context is not m.context:
                m = replace(m, content=content, context=context)
                changed = True
            out.append(m)
        return tuple(out) if changed else tuple(messages)

    def restore(self, text: str) -> str:
        """`text` with every placeholder turned back into its literal."""
        return _PLACEHOLDER_RUN.sub(
            lambda m: "".join(self._literals[ord(c) - _PLACEHOLDER_BASE] for c in m.group()), text
        )


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
        protected = set(control_tokens(tokenizer, template))
        self._escaper = ContentEscaper(protected)
        # The ids a literal's text encoding must never contain (see `_encode_as_text`).
        added = getattr(tokenizer, "added_tokens_decoder", {})
        self._control_ids = {i for i, t in added.items() if t.content in protected}

    def pieces(self, conv: Conversation) -> tuple[list[Piece], list[bool]]:
        """The rendering cut into prompt and response pieces, and which turns are trained."""
        pieces, trained, escaped = self._escaped_pieces(conv)
        return self._shown(pieces) if escaped else pieces, trained

    def _escaped_pieces(self, conv: Conversation) -> tuple[list[Piece], list[bool], bool]:
        """`pieces` with content literals as placeholders (the texts to tokenize), and whether
        the content had any."""
        if conv.is_text:
            text = self._escaper.escape(conv.text or "")
            return text_pieces(text, self._bos, self._eos), [True], text is not conv.text
        messages = self._escaper.escape_messages(conv.messages)
        pieces = split_rendering(self.template, messages)
        return pieces, trained_turns(messages, self.strategy), messages is not conv.messages

    def _shown(self, pieces: list[Piece]) -> list[Piece]:
        """Pieces as users see them: placeholders back to their literal text."""
        return [Piece(self._escaper.restore(p.text), p.turn) for p in pieces]

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
        split: list[tuple[list[Piece], list[bool], bool] | None] = []
        for i, c in enumerate(convs):
            try:
                split.append(self._escaped_pieces(c))
            except TemplateError as e:
                if on_error is None:
                    raise
                on_error(i, e)
                split.append(None)
        ids_flat = self._tokenize([p.text for item in split if item for p in item[0]])
        out: list[TokenizedExample | None] = []
        k = 0
        for conv, item in zip(convs, split, strict=True):
            if item is None:
                out.append(None)
                continue
            pieces, trained, escaped = item
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
            shown = self._shown(pieces) if escaped else pieces
            out.append(TokenizedExample(input_ids, labels, conv.source, pieces=shown))
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
        msgs = self._escaper.escape_messages(messages)
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
        return [t for piece in self._tokenize(prompt_pieces) for t in piece]

    # ----------------------------------------------------------------- tokenization

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each piece text, with content literals (placeholders) encoded as text.

        Texts without placeholders, all of them in the common case, go to the tokenizer in one
        batched call as they are. The others are cut at placeholder runs: their template text
        joins that call and the runs' literals are encoded as text in a second one.
        """
        plain: list[str] = []
        literals: list[str] = []
        # Per text: the index of its ids in `plain`, or its (is_literal, index) segments.
        layouts: list[int | list[tuple[bool, int]]] = []
        for text in texts:
            # isascii() is a flag lookup, and placeholders are never ASCII.
            if text.isascii() or _PLACEHOLDER_RUN.search(text) is None:
                layouts.append(len(plain))
                plain.append(text)
                continue
            segments = []
            # split() alternates template text (even positions) and placeholder runs (odd).
            for j, part in enumerate(_PLACEHOLDER_RUN.split(text)):
                if j % 2:
                    segments.append((True, len(literals)))
                    literals.append(self._escaper.restore(part))
                elif part:
                    segments.append((False, len(plain)))
                    plain.append(part)
            layouts.append(segments)
        # Literals first: transformers leaves split_special_tokens switched on in the backend
        # tokenizer until its next call without it, which the plain call then is.
        literal_ids = self._encode_as_text(literals) if literals else []
        plain_ids = self.tokenizer(plain, add_special_tokens=False)["input_ids"] if plain else []
        out = []
        for layout in layouts:
            if isinstance(layout, int):
                out.append(plain_ids[layout])
                continue
            ids: list[int] = []
            for is_literal, j in layout:
                ids += literal_ids[j] if is_literal else plain_ids[j]
            out.append(ids)
        return out

    def _encode_as_text(self, texts: list[str]) -> list[list[int]]:
        """Encode each text as text: its control tokens' characters, never the tokens.

        `split_special_tokens` makes the tokenizer ignore special tokens. A protected token that
        is not special (a marker a Jinja template writes) would still match, so a text whose ids
        hold one is encoded in halves, recursively, until no tokenizer call sees it whole.
        """
        ids = self.tokenizer(texts, add_special_tokens=False, split_special_tokens=True)
        out = []
        for text, piece_ids in zip(texts, ids["input_ids"], strict=True):
            if len(text) > 1 and self._control_ids.intersection(piece_ids):
                mid = len(text) // 2
                piece_ids = [
                    t for half in self._encode_as_text([text[:mid], text[mid:]]) for t in half
                ]
            out.append(piece_ids)
        return out

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
