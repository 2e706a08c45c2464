"""Show what is trained: a rendered example with its supervised tokens marked."""

from __future__ import annotations

from itertools import groupby

from rich.text import Text

from instill.data.masking import IGNORE_INDEX, TokenizedExample


def marked_spans(example: TokenizedExample, tokenizer) -> list[tuple[str, bool]]:
    """Decode an example into `(text, trained)` runs of consecutive tokens."""
    runs = []
    pairs = zip(example.input_ids, example.labels, strict=True)
    for trained, group in groupby(pairs, key=lambda p: p[1] != IGNORE_INDEX):
        ids = [tok for tok, _ in group]
        runs.append((tokenizer.decode(ids, skip_special_tokens=False), trained))
    return runs


def render_marked(example: TokenizedExample, tokenizer, color: bool) -> Text | str:
    """Supervised text in green (terminal) or between `[[` and `]]` (plain output)."""
    runs = marked_spans(example, tokenizer)
    if not color:
        return "".join(f"[[{t}]]" if trained else t for t, trained in runs)
    text = Text()
    for t, trained in runs:
        text.append(t, style="bold green" if trained else "dim")
    return text
