"""How instruction constraints count text: words, sentences, paragraphs, bullets, keywords,
highlighted spans, sections.

One implementation for every layer that needs it: the constraint checkers
(`instill.eval.constraints`, which documents the rules) and the data layer's constraint
augmentation (`instill.data.builtin.augment`), which must produce answers the checkers accept.
"""

from __future__ import annotations

import re

SENTENCE_END = (".", "!", "?", "…")
CLOSERS = "\"')]}’”»"
OPENERS = "\"'([{‘“«"
ABBREVIATIONS = frozenset({"e.g.", "i.e.", "vs.", "cf.", "mr.", "mrs.", "ms.", "dr.", "prof."})
PARAGRAPH_BREAK = re.compile(r"^[ \t]*\*{3,}[ \t]*$")
BULLET = re.compile(r"^[ \t]*[-*•][ \t]+\S")
RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$")
NUMBERED = re.compile(r"^[ \t]*\d+[.)][ \t]+\S")
_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


def is_word(token: str) -> bool:
    """A whitespace-separated token with at least one letter or digit."""
    return any(ch.isalnum() for ch in token)


def count_words(text: str) -> int:
    """Whitespace-separated tokens containing at least one letter or digit."""
    return sum(1 for token in text.split() if is_word(token))


def split_paragraphs(text: str) -> list[str]:
    """Runs of non-blank lines, separated by blank lines or `***` lines; empty runs dropped."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip() or PARAGRAPH_BREAK.match(line):
            if current:
                paragraphs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def split_sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph (tokens re-joined with single spaces): a sentence ends
    at a token ending in `.`, `!`, `?` or `…` (closers may follow) that is not one of the
    known abbreviations, and must hold a word; trailing wordless tokens join the last one."""
    out: list[str] = []
    current: list[str] = []
    has_word = False
    for token in paragraph.split():
        current.append(token)
        has_word = has_word or is_word(token)
        core = token.rstrip(CLOSERS)
        ends = core.endswith(SENTENCE_END)
        if ends and has_word and core.lstrip(OPENERS).lower() not in ABBREVIATIONS:
            out.append(" ".join(current))
            current, has_word = [], False
    if current:
        if has_word:
            out.append(" ".join(current))
        elif out:
            out[-1] += " " + " ".join(current)
    return out


def count_sentences(text: str) -> int:
    """Sentences of every paragraph (`split_sentences`)."""
    return sum(len(split_sentences(p)) for p in split_paragraphs(text))


def count_bullets(text: str) -> int:
    """Lines that are Markdown bullets (`- `, `* `, `• `), horizontal rules excluded."""
    return sum(1 for ln in text.splitlines() if BULLET.match(ln) and not RULE.match(ln))


def count_numbered_items(text: str) -> int:
    """Lines starting with a number and `.` or `)`, e.g. "1. " or "2) "."""
    return sum(1 for ln in text.splitlines() if NUMBERED.match(ln))


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive; a multi-word keyword's spaces match any whitespace."""
    body = r"\s+".join(re.escape(part) for part in keyword.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def count_keyword(text: str, keyword: str) -> int:
    """Case-insensitive whole-word occurrences of `keyword` in `text`."""
    return len(keyword_pattern(keyword).findall(text))


def count_highlights(text: str) -> int:
    """IFEval's highlighted sections: non-empty `*text*` spans plus non-empty `**text**` spans.

    Spans do not cross lines. "**bold**" counts once (as a double span; its single-star
    matches are empty).
    """
    single = sum(1 for m in _HIGHLIGHT.findall(text) if m.strip("*").strip())
    double = sum(1 for m in _DOUBLE_HIGHLIGHT.findall(text) if m[2:-2].strip())
    return single + double


def count_sections(text: str, splitter: str) -> int:
    """Sections marked "<splitter> <number>" ("SECTION 1"), case-sensitive, as IFEval counts."""
    return len(re.split(r"\s?" + re.escape(splitter) + r"\s?\d+\s?", text)) - 1


def count_capital_words(text: str) -> int:
    """Words written entirely in capitals (at least one letter)."""
    return sum(1 for token in text.split() if is_word(token) and token.isupper())
