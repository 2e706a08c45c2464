"""Constraint augmentation: add verifiable constraints to an instruction and its correct answer.

`augment` takes an instruction and a *correct* answer, draws 1-3 constraint types (IFEval-style:
"Answer with at least 100 words.", "Wrap your entire response with double quotation marks."),
rewrites the answer so that it follows all of them and returns the augmented pair with the
constraint dicts (in `instill.eval.constraints`' schema). The answer is correct by construction:

- *Transforming* types change the answer (lowercase it, add a <<title>>, split it into
  "SECTION k" blocks...). They run first, in the fixed order of `_PIPELINE`, so that a later step
  never undoes an earlier one (the case change comes after the title it must cover; the quotes
  go around everything).
- *Measuring* types (word count, keywords, letter frequency...) choose their parameter from the
  final answer, after every transformation. Counts a transformation produced (paragraphs,
  bullets, sections) are also read back from the final answer rather than predicted.

`repeat_prompt` makes the answer start with the request, and the request carries the other
constraint sentences, whose numbers depend on the answer: the final answer is assembled again
until the sentences stop changing (two rounds in practice).

Train/eval separation works at two levels: the last two phrasings of every type are used only
for `split="eval"`, and the unordered *pairs* of types are partitioned by a stable hash into
train pairs (~80%) and eval pairs (~20%), so the eval split measures combinations never trained.

This module is in the data layer and must not import `instill.eval`; it counts with the
checkers' own rules, `instill.data.text_counts` (which `instill.eval.constraints` uses too), and
tests/test_augment.py checks every augmented answer with the real checkers.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from instill.data.text_counts import (
    BULLET,
    CLOSERS,
    NUMBERED,
    RULE,
    count_bullets,
    count_capital_words,
    count_highlights,
    count_keyword,
    count_sections,
    count_sentences,
    count_words,
    split_paragraphs,
    split_sentences,
)

SPLITS = ("train", "eval")
EVAL_PHRASINGS = 2  # the last this-many phrasings of every type are eval-only
EVAL_PAIR_PERCENT = 20


@dataclass(frozen=True)
class Augmented:
    """An instruction with added constraints and the answer transformed to follow them.

    Attributes:
        instruction: the instruction with the constraint sentences added (unchanged when they
            went into `system`).
        answer: the transformed answer; it satisfies every constraint.
        constraints: the constraint dicts, in `instill.eval.constraints`' schema.
        system: the constraint sentences, when they are given as a system prompt instead.
    """

    instruction: str
    answer: str
    constraints: tuple[dict, ...]
    system: str | None = None


# --------------------------------------------------------------------------- counting
# The checkers' own counting rules (instill.data.text_counts), so an augmented answer is
# measured exactly as instill.eval.constraints will check it.

_PLACEHOLDER = re.compile(r"\[([^\[\]\n]*)\](?!\()")
_TITLE = re.compile(r"<<([^<>\n]*)>>")
_DIVIDER = re.compile(r"\s?\*\*\*\s?")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_FENCE = re.compile(r"^```(?:json)?[ \t]*\n(.*?)\n?```$", re.DOTALL | re.IGNORECASE)
_WORD_EDGES = "".join(sorted(set(string.punctuation + "“”‘’«»…")))


def _count_placeholders(text: str) -> int:
    return sum(1 for m in _PLACEHOLDER.finditer(text) if m.group(1).strip())


def _split_parts(text: str, pattern: re.Pattern[str] | str) -> list[str] | None:
    """IFEval-style split: empty first/last parts dropped, None when an inner part is empty."""
    parts = re.split(pattern, text)
    kept = []
    for i, part in enumerate(parts):
        if part.strip():
            kept.append(part.strip())
        elif 0 < i < len(parts) - 1:
            return None
    return kept


def _first_word(paragraph: str) -> str:
    for token in paragraph.split():
        word = token.strip(_WORD_EDGES)
        if word:
            return word.lower()
    return ""


def _is_json(text: str) -> bool:
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return bool(text)


# --------------------------------------------------------------------------- answer analysis

_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how if in into is
    it its itself just let like may me might more most must my myself no nor not now of off on
    once only or other our ours out over own same she should so some such than that the their
    theirs them then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself one two
    three many much well even still into onto upon every first second third dear"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Plausible words a response might use: forbidden-word candidates when absent from the answer.
_FORBIDDEN_POOL = (
    "very",
    "really",
    "basically",
    "actually",
    "simply",
    "obviously",
    "literally",
    "amazing",
    "awesome",
    "important",
    "thing",
    "things",
    "stuff",
    "nice",
    "great",
    "good",
    "bad",
    "example",
    "however",
    "therefore",
    "people",
    "world",
    "history",
    "future",
)


@dataclass
class _Ctx:
    """What one augmentation knows and decides while it builds the answer."""

    instruction: str
    answer: str
    shape: str  # "short", "prose", "list" or "structured"
    types: frozenset[str]
    rng: random.Random
    choices: dict[str, Any] = field(default_factory=dict)  # per-type decisions of the transforms
    core: str = ""  # the answer after the body transforms, case applied, before any prefix

    def case(self, text: str) -> str:
        if "lowercase" in self.types:
            return text.lower()
        if "uppercase" in self.types:
            return text.upper()
        return text


def _shape(answer: str) -> str:
    text = answer.strip()
    if "```" in text or (text[:1] in "[{" and _is_json(text)):
        return "structured"
    if count_words(text) <= 3:
        return "short"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    items = sum(
        1 for ln in lines if (BULLET.match(ln) and not RULE.match(ln)) or NUMBERED.match(ln)
    )
    if items >= 2 and items * 2 >= len(lines):
        return "list"
    return "prose"


def _content_words(text: str) -> list[str]:
    """Distinct alphabetic words of 4+ letters that are not stopwords, lowercased, in order."""
    seen: dict[str, None] = {}
    for token in text.split():
        core = token.strip(_WORD_EDGES)
        if len(core) >= 4 and core.isalpha() and core.isascii() and core.lower() not in _STOPWORDS:
            seen.setdefault(core.lower(), None)
    return list(seen)


# --------------------------------------------------------------------------- text helpers

_PUNCT_END = ".!?…:;"


def _body_paragraphs(text: str) -> list[str]:
    return [p.strip() for p in split_paragraphs(text) if p.strip()]


def _regroup(paragraphs: list[str], n: int) -> list[list[str]] | None:
    """`paragraphs` as `n` contiguous non-empty groups, splitting paragraphs at sentence ends when
    there are fewer than `n`; None when there are fewer than `n` sentences in all."""
    units = list(paragraphs)
    while len(units) < n:
        sizes = [len(split_sentences(u)) for u in units]
        best = max(range(len(units)), key=lambda i: sizes[i])
        if sizes[best] < 2:
            return None
        sents = split_sentences(units[best])
        half = len(sents) // 2
        units[best : best + 1] = [" ".join(sents[:half]), " ".join(sents[half:])]
    groups: list[list[str]] = []
    base, extra = divmod(len(units), n)
    at = 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        groups.append(units[at : at + size])
        at += size
    return groups


def _all_sentences(text: str) -> list[str]:
    return [s for p in _body_paragraphs(text) for s in split_sentences(p)]


def _join_inline(first: str, second: str) -> str:
    """Join two pieces of text; on one line when `first` ends in running prose."""
    last = first.rstrip().splitlines()[-1] if first.strip() else ""
    if last and not BULLET.match(last) and not NUMBERED.match(last) and "<<" not in last:
        return first.rstrip() + " " + second
    return first.rstrip() + "\n" + second


_OPENING_TEXT = (
    "in on at since after before when while if for over during today yesterday tomorrow now "
    "then however yes no well sure dear hello hi thanks sincerely regards also still so "
    "first second third finally instead meanwhile unfortunately fortunately of"
)
_OPENING_WORDS = frozenset(_OPENING_TEXT.split())


def _remove_commas(text: str) -> str:
    """Rewrite the commas of `text` away: "1,000" -> "1000", ", and" -> " and", a comma at the
    end of a line or after an opening phrase is dropped, a list comma becomes " and", any other
    " - "."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r",(?=\s+(?:and|or|but|so|yet|nor|which|who|because|then)\b)", "", text)
    text = re.sub(r",[ \t]*(?=\n|$)", "", text)
    text = re.sub(
        r"(?<![\w-])((?:[Hh]owever|[Tt]herefore|[Ff]irst|[Ss]econd|[Tt]hird|[Ff]inally|[Aa]lso|"
        r"[Yy]es|[Nn]o|[Ww]ell|[Ss]ure|[Mm]eanwhile|[Ii]nstead|[Oo]verall|[Tt]oday|[Mm]oreover|"
        r"[Ff]urthermore|[Aa]dditionally|[Ff]or example|[Ii]n fact|[Oo]f course|[Ii]n short|"
        r"[Ss]ometimes|[Tt]hen|[Nn]ext|[Hh]ere)),",
        r"\1",
        text,
    )

    def replace(m: re.Match[str]) -> str:
        before = re.split(r"[.!?:;\n]", text[: m.start()])[-1].split()
        rest = text[m.end() :]
        after = re.split(r"[,.!?:;\n]", rest)[0]
        following = rest[len(after) : len(after) + 1]
        if len(before) <= 3 and before and before[0].lower() in _OPENING_WORDS:
            return " "  # an opening phrase: "In 1990, the..." -> "In 1990 the..."
        in_series = following == "," or re.search(r"\b(?:and|or)\b", after)
        if len(after.split()) <= 4 and in_series:
            return " and "  # a series: "hot, iced or plain" -> "hot and iced or plain"
        return " - "  # a clause: "in my flat, unit 4B, stopped" -> "in my flat - unit 4B - ..."

    text = re.sub(r",\s+", replace, text)
    return text.replace(",", " ")


def _derive_title(instruction: str, answer: str) -> str:
    m = re.search(
        r"\b(?:about|on|of|describing|explaining|regarding|for)\s+([^.?!,;:\n]+)", instruction, re.I
    )
    source = m.group(1) if m else instruction
    small = {"a", "an", "the", "and", "or", "of", "in", "on", "for", "to", "with", "at", "by"}
    drop = {
        "write",
        "please",
        "me",
        "give",
        "explain",
        "describe",
        "tell",
        "what",
        "is",
        "are",
        "how",
        "why",
        "short",
        "brief",
        "list",
        "can",
        "you",
        "do",
        "does",
    }
    words = [w.strip(_WORD_EDGES) for w in source.split()]
    words = [w for w in words if w and w.lower() not in drop and "<" not in w and ">" not in w]
    if not words:
        words = [w.strip(_WORD_EDGES) for w in answer.split()[:4]]
        words = [w for w in words if w]
    words = words[:5]
    while words and words[-1].lower() in small:
        words.pop()
    if not words:
        return "My Answer"
    out = [
        w
        if w.isupper() or not w.isalpha()
        else (w.lower() if i and w.lower() in small else w.capitalize())
        for i, w in enumerate(words)
    ]
    return " ".join(out)


# --------------------------------------------------------------------------- transforms
# A transform takes the current answer and returns the new one (None: it cannot apply here).


def _t_no_commas(text: str, ctx: _Ctx) -> str | None:
    return _remove_commas(text)


def _t_paragraphs(text: str, ctx: _Ctx) -> str | None:
    n = ctx.rng.randint(2, 5)
    groups = _regroup(_body_paragraphs(text), n)
    if groups is None:
        groups = _regroup(_body_paragraphs(text), 2)
        if groups is None:
            return None
    sep = ctx.rng.choice(["***", "***", "blank_line", "any"])
    ctx.choices["paragraph_separator"] = sep
    joiner = ctx.rng.choice(["\n***\n", "\n\n***\n\n"]) if sep == "***" else "\n\n"
    return joiner.join("\n".join(g) for g in groups)


def _t_nth_paragraph(text: str, ctx: _Ctx) -> str | None:
    groups = _regroup(_body_paragraphs(text), ctx.rng.randint(2, 4))
    if groups is None:
        groups = _regroup(_body_paragraphs(text), 2)
        if groups is None:
            return None
    return "\n\n".join("\n".join(g) for g in groups)


def _t_sections(text: str, ctx: _Ctx) -> str | None:
    n = ctx.rng.randint(2, 4)
    groups = _regroup(_body_paragraphs(text), n) or _regroup(_body_paragraphs(text), 2)
    if groups is None:
        return None
    splitter = ctx.rng.choice(["SECTION", "SECTION", "PART", "Section", "Part"])
    if "uppercase" in ctx.types:
        splitter = splitter.upper()
    ctx.choices["section"] = (splitter, len(groups))
    return "\n\n".join(f"{splitter} {i}\n" + "\n\n".join(g) for i, g in enumerate(groups, 1))


def _t_bullets(text: str, ctx: _Ctx) -> str | None:
    marker = "- " if "highlighted_sections" in ctx.types else ctx.rng.choice(["- ", "* "])
    lines = text.splitlines()
    if ctx.shape == "list":
        out = []
        for ln in lines:
            m = re.match(r"^[ \t]*(?:[-*•]|\d+[.)])[ \t]+(\S.*)$", ln)
            out.append(marker + m.group(1) if m and not RULE.match(ln) else ln)
        return "\n".join(out)
    paragraphs = _body_paragraphs(text)
    sizes = [len(split_sentences(p)) for p in paragraphs]
    if not sizes or max(sizes) < 2:
        return None
    best = max(range(len(paragraphs)), key=lambda i: sizes[i])
    sents = split_sentences(paragraphs[best])
    keep = ctx.rng.randint(2, min(6, len(sents)))
    block = "\n".join(marker + s for s in sents[:keep])
    if sents[keep:]:
        block += "\n\n" + " ".join(sents[keep:])
    paragraphs[best] = block
    return "\n\n".join(paragraphs)


def _t_highlights(text: str, ctx: _Ctx) -> str | None:
    if ctx.shape == "list":
        lines = text.splitlines()
        items = [
            i
            for i, ln in enumerate(lines)
            if re.match(r"^[ \t]*(?:[-*•]|\d+[.)])[ \t]+[^*\s][^*]*$", ln)
        ]
        if not items:
            return None
        picked = sorted(ctx.rng.sample(items, ctx.rng.randint(1, min(3, len(items)))))
        for i in picked:
            m = re.match(r"^([ \t]*)(?:[-*•]|(\d+[.)]))([ \t]+)(.*?)([.!?:;]?)$", lines[i])
            if m is None:
                return None
            marker = m.group(2) or "-"
            lines[i] = f"{m.group(1)}{marker}{m.group(3)}*{m.group(4)}*{m.group(5)}"
        ctx.choices["highlights"] = len(picked)
        return "\n".join(lines)
    candidates = [
        s
        for s in _all_sentences(text)
        if "*" not in s
        and s in text
        and count_words(s) >= 2
        and not re.match(r"[-•]\s|\d+[.)]\s", s)
    ]
    candidates = list(dict.fromkeys(candidates))
    if not candidates:
        return None
    picked = ctx.rng.sample(candidates, ctx.rng.randint(1, min(3, len(candidates))))
    for s in picked:
        core = s.rstrip(_PUNCT_END + CLOSERS)
        tail = s[len(core) :]
        text = text.replace(s, f"*{core}*{tail}", 1)
    ctx.choices["highlights"] = len(picked)
    return text


_PLACEHOLDER_LINES = {
    1: ["Feel free to reach out at [email].", "Signed: [your name].", "Last updated: [date]."],
    2: [
        "Prepared by [name] on [date].",
        "Send any questions to [name] at [email].",
        "Signed: [your name] ([title]).",
    ],
    3: [
        "Prepared by [name] on [date] for [organization].",
        "Contact [name] at [phone number] or visit us at [address].",
    ],
}


def _t_placeholders(text: str, ctx: _Ctx) -> str | None:
    k = ctx.rng.randint(1, 3)
    line = ctx.rng.choice(_PLACEHOLDER_LINES[k])
    ctx.choices["placeholders"] = k
    return text.rstrip() + "\n\n" + line


def _t_capital_words(text: str, ctx: _Ctx) -> str | None:
    if ctx.rng.random() < 0.25:
        ctx.choices["capital"] = "less_than"
        return text
    tokens = re.split(r"(\s+)", text)
    options = [
        i
        for i, tok in enumerate(tokens)
        if (core := tok.strip(_WORD_EDGES))
        and len(core) >= 4
        and core.isalpha()
        and core.isascii()
        and core == tok.strip(".,!?;:")
        and core.lower() not in _STOPWORDS
        and not core.isupper()
    ]
    if len(options) < 2:
        return None
    for i in ctx.rng.sample(options, ctx.rng.randint(2, min(6, len(options)))):
        tokens[i] = tokens[i].upper()
    ctx.choices["capital"] = "at_least"
    return "".join(tokens)


def _variant(text: str, rng: random.Random) -> str | None:
    """A genuinely different second response: the paragraphs reordered, or condensed."""
    paragraphs = _body_paragraphs(text)
    sents = _all_sentences(text)
    if len(sents) < 2:
        return None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    items = [ln for ln in lines if BULLET.match(ln) or NUMBERED.match(ln)]
    if len(items) >= 2 and len(items) * 2 >= len(lines):
        return "\n".join(reversed(items))
    if rng.random() < 0.5:
        if len(paragraphs) >= 2:
            return "\n\n".join(paragraphs[1:] + paragraphs[:1])
        return " ".join(sents[1:] + sents[:1])
    keep = max(1, len(sents) // 2)
    return " ".join(sents[:keep]) if keep < len(sents) else " ".join(sents[1:])


def _t_two_responses(text: str, ctx: _Ctx) -> str | None:
    other = _variant(text, ctx.rng)
    if other is None or other.strip() == text.strip():
        return None
    return text.rstrip() + "\n******\n" + other


def _t_title(text: str, ctx: _Ctx) -> str | None:
    title = _derive_title(ctx.instruction, ctx.answer)
    if "no_commas" in ctx.types:
        title = title.replace(",", "")
    ctx.choices["title"] = title
    return f"<<{title}>>\n\n{text.lstrip()}"


_START_PHRASES = (
    "Here is my answer.",
    "Sure thing!",
    "Here you go:",
    "Happy to help.",
    "Okay.",
    "Great question!",
)
_END_PHRASES = (
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "Hope this helps!",
    "Any other questions?",
    "That is all.",
    "Thanks for reading.",
)


def _t_starts_with(text: str, ctx: _Ctx) -> str | None:
    phrase = ctx.rng.choice(_START_PHRASES)
    ctx.choices["start"] = phrase
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    inline = first and not first.startswith(("<<", "-", "*", "SECTION", "PART", "Section", "Part"))
    return phrase + (" " if inline else "\n") + text.lstrip()


_PS_LINES = (
    "Feel free to ask if you would like more detail.",
    "Let me know if you want a shorter version.",
    "I can expand on any part of this.",
    "Thanks for the interesting question!",
    "Happy to go deeper on {topic} if that helps.",
    "There is a lot more to say about {topic}.",
)


def _t_postscript(text: str, ctx: _Ctx) -> str | None:
    marker = "P.P.S." if ctx.rng.random() < 0.2 else "P.S."
    topic = _derive_title(ctx.instruction, ctx.answer).lower()
    lines = [ctx.rng.choice(_PS_LINES).format(topic=topic)]
    if marker == "P.P.S.":
        lines = ["P.S. " + lines[0], "P.P.S. " + ctx.rng.choice(_PS_LINES[:4])]
    else:
        lines = ["P.S. " + lines[0]]
    ctx.choices["postscript"] = marker
    tail = "\n".join(lines)
    return text.rstrip() + "\n\n" + (tail.replace(",", "") if "no_commas" in ctx.types else tail)


def _t_ends_with(text: str, ctx: _Ctx) -> str | None:
    phrase = ctx.rng.choice(_END_PHRASES)
    ctx.choices["end"] = phrase
    return _join_inline(text, phrase)


def _t_json(text: str, ctx: _Ctx) -> str | None:
    if _is_json(text):
        ctx.choices["json"] = "as is"
        return text
    stripped = text.strip()
    value: Any
    if re.fullmatch(r"-?\d+(?:\.\d+)?", stripped):
        value = {"answer": json.loads(stripped)}
    elif ctx.shape == "list" and "no_commas" not in ctx.types:
        item = re.compile(r"^[ \t]*(?:[-*•]|\d+[.)])[ \t]+")
        lines = [ln.strip() for ln in stripped.splitlines() if ln.strip()]
        items = [item.sub("", ln) for ln in lines if item.match(ln)]
        others = " ".join(ln for ln in lines if not item.match(ln))
        value = {"intro": others, "items": items} if others else {"items": items}
    else:
        value = {ctx.rng.choice(["answer", "response", "text"]): stripped}
    body = json.dumps(value, ensure_ascii=False, indent=ctx.rng.choice([None, 2]))
    return f"```json\n{body}\n```" if ctx.rng.random() < 0.3 else body


def _t_quotation(text: str, ctx: _Ctx) -> str | None:
    return f'"{text.strip()}"'


# --------------------------------------------------------------------------- final parameters
# A finaliser reads the final answer (and the transform's choices) and returns the constraint
# dict, or None when the answer does not support it.

_ROUND = (5, 10, 20, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 350, 400, 500, 600, 800)


def _rel_for(rng: random.Random, got: int, relations: tuple[str, ...]) -> tuple[str, int] | None:
    """A relation and a threshold that `got` satisfies, a round number where it can be."""
    rel = rng.choice(relations)
    if rel == "at_least":
        below = [r for r in _ROUND if r <= got]
        n = rng.choice(below[-2:]) if below and got >= 5 else got
        return (rel, n) if n >= 1 else None
    if rel in ("less_than", "at_most"):
        above = [r for r in _ROUND if r > got]
        return rel, rng.choice(above[:2]) if above else got + 10
    return rel, got  # exactly


def _f_word_count(final: str, ctx: _Ctx) -> dict | None:
    got = count_words(final)
    rel = _rel_for(ctx.rng, got, ("at_least", "at_least", "less_than", "at_most"))
    return rel and {"type": "word_count", "relation": rel[0], "n": rel[1]}


def _f_sentence_count(final: str, ctx: _Ctx) -> dict | None:
    got = count_sentences(final)
    if got < 1:
        return None
    rel = ctx.rng.choice(["at_least", "less_than", "at_most"] + (["exactly"] if got <= 6 else []))
    if rel == "at_least":
        n = max(1, got - ctx.rng.randint(0, min(3, got - 1)))
    elif rel == "exactly":
        n = got
    else:
        n = got + ctx.rng.randint(1, 3)
    return {"type": "sentence_count", "relation": rel, "n": n}


def _f_paragraph_count(final: str, ctx: _Ctx) -> dict | None:
    sep = ctx.choices.get("paragraph_separator", "any")
    if sep == "***":
        parts = _split_parts(final, _DIVIDER)
        got = len(parts) if parts is not None else 0
    elif sep == "blank_line":
        got = sum(1 for part in _BLANK_LINES.split(final) if part.strip())
    else:
        got = len(split_paragraphs(final))
    if got < 2:
        return None
    rel = ctx.rng.choice(["exactly", "exactly", "at_least", "at_most"])
    n = max(2, got - ctx.rng.randint(0, 1)) if rel == "at_least" else got
    c = {"type": "paragraph_count", "relation": rel, "n": n}
    return c if sep == "any" and ctx.rng.random() < 0.5 else {**c, "separator": sep}


def _f_nth_paragraph(final: str, ctx: _Ctx) -> dict | None:
    parts = _split_parts(final, r"\n\n")
    if not parts or len(parts) < 2:
        return None
    good = [i for i, p in enumerate(parts) if _first_word(p).isalpha()]
    if not good:
        return None
    nth = ctx.rng.choice(good) + 1
    return {
        "type": "nth_paragraph_first_word",
        "n_paragraphs": len(parts),
        "nth": nth,
        "first_word": _first_word(parts[nth - 1]),
    }


def _f_sections(final: str, ctx: _Ctx) -> dict | None:
    splitter, n = ctx.choices["section"]
    splitter = ctx.case(splitter)
    if count_sections(final, splitter) < n:
        return None
    return {"type": "section_count", "splitter": splitter, "n": n}


def _f_bullets(final: str, ctx: _Ctx) -> dict | None:
    got = count_bullets(final)
    if got < 2:
        return None
    rel = ctx.rng.choice(["exactly", "exactly", "at_least", "at_most"])
    n = max(2, got - ctx.rng.randint(0, 1)) if rel == "at_least" else got
    return {"type": "bullet_count", "relation": rel, "n": n}


def _f_highlights(final: str, ctx: _Ctx) -> dict | None:
    got = count_highlights(final)  # what was added, plus any the answer already had
    return {"type": "highlighted_sections", "n": got} if got >= ctx.choices["highlights"] else None


def _f_placeholders(final: str, ctx: _Ctx) -> dict | None:
    got = _count_placeholders(final)  # what was added, plus any the answer already had
    return {"type": "placeholder_count", "n": got} if got >= ctx.choices["placeholders"] else None


def _f_capital_words(final: str, ctx: _Ctx) -> dict | None:
    got = count_capital_words(final)
    if ctx.choices["capital"] == "less_than":
        n = max(got + 1, ctx.rng.randint(2, 5))
        return {"type": "capital_word_frequency", "relation": "less_than", "n": n}
    if got < 2:
        return None
    return {"type": "capital_word_frequency", "relation": "at_least", "n": got}


def _f_keywords(final: str, ctx: _Ctx) -> dict | None:
    words = [w for w in _content_words(ctx.core) if count_keyword(final, w) >= 1]
    if not words:
        return None
    k = ctx.rng.randint(1, min(3, len(words)))
    return {"type": "include_keywords", "keywords": ctx.rng.sample(words, k)}


def _f_keyword_frequency(final: str, ctx: _Ctx) -> dict | None:
    words = _content_words(ctx.core)
    counted = [(w, count_keyword(final, w)) for w in words]
    counted = [(w, k) for w, k in counted if k >= 1]
    if not counted:
        return None
    repeated = [(w, k) for w, k in counted if k >= 2]
    word, got = ctx.rng.choice(repeated or counted)
    if got >= 2 and ctx.rng.random() < 0.75:
        return {"type": "keyword_frequency", "keyword": word, "relation": "at_least", "n": got}
    n = got + ctx.rng.randint(1, 3)
    return {"type": "keyword_frequency", "keyword": word, "relation": "less_than", "n": n}


def _f_forbidden(final: str, ctx: _Ctx) -> dict | None:
    pool = list(dict.fromkeys(_content_words(ctx.instruction) + list(_FORBIDDEN_POOL)))
    absent = [w for w in pool if count_keyword(final, w) == 0]
    if not absent:
        return None
    topical = [w for w in absent if w in _content_words(ctx.instruction)]
    k = ctx.rng.randint(1, min(3, len(absent)))
    first = [ctx.rng.choice(topical)] if topical else []
    rest = ctx.rng.sample([w for w in absent if w not in first], k - len(first)) if k > 1 else []
    return {"type": "forbidden_words", "words": (first + rest)[:k] or absent[:1]}


def _f_letter(final: str, ctx: _Ctx) -> dict | None:
    low = final.lower()
    letters = [ch for ch in string.ascii_lowercase if low.count(ch) >= 2]
    if not letters:
        return None
    letter = ctx.rng.choice(letters)
    got = low.count(letter)
    if ctx.rng.random() < 0.7:
        n = got if got < 10 else got - got % 5
        return {"type": "letter_frequency", "letter": letter, "relation": "at_least", "n": n}
    n = got + ctx.rng.randint(1, 5)
    return {"type": "letter_frequency", "letter": letter, "relation": "less_than", "n": n}


def _fixed(c: dict) -> Callable[[str, _Ctx], dict | None]:
    return lambda final, ctx: dict(c)


def _f_start(final: str, ctx: _Ctx) -> dict | None:
    return {"type": "starts_with", "phrase": ctx.case(ctx.choices["start"])}


def _f_end(final: str, ctx: _Ctx) -> dict | None:
    return {"type": "ends_with", "phrase": ctx.case(ctx.choices["end"])}


def _f_postscript(final: str, ctx: _Ctx) -> dict | None:
    return {"type": "postscript", "marker": ctx.choices["postscript"]}


def _f_json(final: str, ctx: _Ctx) -> dict | None:
    top = ctx.rng.choice(["any", "object"]) if final.strip()[:1] in "{`" else "any"
    if top == "object" and not re.match(r"^(```json\s*)?\{", final.strip()):
        top = "any"
    return {"type": "json_format"} if top == "any" else {"type": "json_format", "top_level": top}


# --------------------------------------------------------------------------- phrasings
# Every type: at least six ways to say it; the last EVAL_PHRASINGS are for split="eval" only.
# Fields: {n}, {rel} ("at least", "less than", "at most", "exactly"), {noun} (the counted thing
# in singular or plural for n) and the constraint's own arguments.

PHRASINGS: dict[str, tuple[str, ...]] = {
    "lowercase": (
        "Your ENTIRE response should be in English, and in all lowercase letters. No capital "
        "letters are allowed.",
        "Please reply in lowercase letters only.",
        "Write the whole answer in lowercase - no capital letters at all.",
        "Do not use any capital letters in your response.",
        "Your entire reply must be written in lower case.",
        "Make sure every letter of your answer is lowercase.",
        "Keep your whole response in small letters: not a single uppercase letter.",
        "Capital letters are not allowed anywhere in your answer.",
    ),
    "uppercase": (
        "Your entire response should be in English, and in all capital letters.",
        "Write your whole answer in CAPITAL LETTERS only.",
        "Please reply in all uppercase letters.",
        "Do not use any lowercase letters in your response.",
        "Make sure every letter of your answer is uppercase.",
        "Your reply must be written entirely in capitals.",
        "Respond using only upper case letters throughout.",
        "No lowercase letters may appear anywhere in your answer.",
    ),
    "capital_word_frequency": (
        "In your response, words with all capital letters should appear {rel} {n} times.",
        "Use words in ALL CAPS {rel} {n} times in your answer.",
        "The number of fully capitalized words in your reply should be {rel} {n}.",
        "Include {rel} {n} words written entirely in capital letters.",
        "Your answer should contain {rel} {n} all-uppercase words.",
        "Make sure that {rel} {n} words of your response are in all capital letters.",
        "Words in full capitals should show up {rel} {n} times in what you write.",
        "Emphasize with capitals: {rel} {n} words of the reply must be completely uppercase.",
    ),
    "title": (
        "Your answer must contain a title, wrapped in double angular brackets, such as "
        "<<poem of joy>>.",
        "Give your response a title in double angular brackets, like <<my title>>.",
        "Include a title wrapped in << and >>.",
        "Start with a title enclosed in double angle brackets, e.g. <<a short title>>.",
        "Add a title to your answer using the format <<title>>.",
        "Put a title in double angular brackets somewhere at the top, such as <<the answer>>.",
        "Please title your reply and surround the title with double angular brackets "
        "(<<like this>>).",
        "The reply needs a heading written as <<heading text>>.",
    ),
    "postscript": (
        "At the end of your response, please explicitly add a postscript starting with {marker}",
        "Add a postscript at the end that starts with {marker}",
        "Finish with a postscript beginning with {marker}",
        "Please include a postscript (starting with {marker}) after the main answer.",
        "End your reply with a note that begins with {marker}",
        "Append a postscript to your answer; it must start with {marker}",
        "Close with a short postscript introduced by {marker}",
        "After everything else add a line starting with {marker} as a postscript.",
    ),
    "quotation": (
        "Wrap your entire response with double quotation marks.",
        "Put your whole answer inside double quotes.",
        "Enclose the entire response in double quotation marks.",
        'Your reply should start and end with a double quote (").',
        "Surround everything you write with double quotation marks.",
        "Please place the full answer between double quotes.",
        "The entire output must be enclosed in a pair of double quotation marks.",
        'Begin and end your answer with the character ".',
    ),
    "json_format": (
        "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```.",
        "Format your whole answer as valid JSON.",
        "Respond only with JSON.",
        "Your entire response must be a JSON object; markdown ticks are allowed.",
        "Wrap the complete reply in JSON format.",
        "Return the answer as JSON and nothing else.",
        "Output nothing but valid JSON (a ```json block is fine).",
        "The response has to be parseable JSON from start to finish.",
    ),
    "no_commas": (
        "In your entire response, refrain from the use of any commas.",
        "Do not use any commas in your answer.",
        "Your reply must not contain a single comma.",
        "Avoid commas completely.",
        "Write your answer without using commas.",
        "No commas are allowed anywhere in your response.",
        "Please leave out every comma from what you write.",
        "The comma character must not appear in the reply.",
    ),
    "starts_with": (
        "Start your response with the exact phrase '{phrase}'.",
        "Begin your answer with '{phrase}'.",
        "The first words of your reply must be exactly '{phrase}'.",
        "Open your response with the phrase '{phrase}'.",
        "Your answer should begin with these exact words: '{phrase}'.",
        "Please start with '{phrase}' and then continue.",
        "Make '{phrase}' the very first thing you write.",
        "Lead off the reply with exactly this: '{phrase}'.",
    ),
    "ends_with": (
        "Finish your response with this exact phrase '{phrase}'. No other words should follow "
        "this phrase.",
        "End your answer with the exact phrase '{phrase}' and nothing after it.",
        "Your reply must end with '{phrase}'.",
        "Close your response with the words '{phrase}'.",
        "The last words of your answer should be exactly '{phrase}'.",
        "Conclude with '{phrase}' - nothing may come after it.",
        "Make '{phrase}' the final phrase of your reply.",
        "Wrap up by writing '{phrase}' as the very end of the answer.",
    ),
    "highlighted_sections": (
        "Highlight at least {n} {noun} in your answer with markdown, i.e. *highlighted section*.",
        "Use markdown to highlight at least {n} {noun}, like *this*.",
        "Mark at least {n} {noun} of your response in italics with single asterisks.",
        "Please emphasize at least {n} {noun} using *asterisks*.",
        "Your answer should have at least {n} highlighted {noun} (use *text*).",
        "Highlight {n} or more {noun} of the reply by wrapping them in asterisks.",
        "Put asterisks around at least {n} {noun} to highlight them, e.g. *key point*.",
        "At least {n} {noun} should stand out as *highlighted text* in your response.",
    ),
    "section_count": (
        "Your response must have {n} sections. Mark the beginning of each section with "
        "{splitter} X.",
        "Divide your answer into {n} sections, each starting with '{splitter} X' where X is "
        "its number.",
        "Organize the reply into {n} parts labelled {splitter} 1, {splitter} 2 and so on.",
        "Split your response into {n} sections and begin each one with {splitter} followed by "
        "its number.",
        "Please structure the answer as {n} sections headed {splitter} 1 to {splitter} {n}.",
        "Use {n} sections; start each with the marker {splitter} and the section number.",
        "Break the answer up into {n} numbered blocks introduced by '{splitter} <number>'.",
        "There should be {n} sections in your reply and each begins with {splitter} N.",
    ),
    "paragraph_count": (
        "Your response should contain {rel} {n} {noun}.{sep_text}",
        "Write {rel} {n} {noun}.{sep_text}",
        "Your answer must have {rel} {n} {noun}.{sep_text}",
        "Please answer in {rel} {n} {noun}.{sep_text}",
        "Structure your reply as {rel} {n} {noun}.{sep_text}",
        "Use {rel} {n} {noun} in your response.{sep_text}",
        "Compose the answer in {rel} {n} {noun}.{sep_text}",
        "The reply should be made of {rel} {n} {noun}.{sep_text}",
    ),
    "bullet_count": (
        "Your answer must contain {rel} {n} bullet points. Use the markdown bullet points "
        "such as:\n* This is point 1.\n* This is point 2",
        "Include {rel} {n} bullet points in your response.",
        "Use {rel} {n} markdown bullet points.",
        "Your reply should have {rel} {n} bullet points, each starting with '* ' or '- '.",
        "Present {rel} {n} points as a bulleted list.",
        "Make sure the answer has {rel} {n} bullet points.",
        "Put {rel} {n} items in a markdown bullet list.",
        "List {rel} {n} bullets in your response using * or -.",
    ),
    "placeholder_count": (
        "The response must contain at least {n} {noun} represented by square brackets, such "
        "as [address].",
        "Include at least {n} {noun} in square brackets, like [name].",
        "Use at least {n} {noun} in square brackets.",
        "Your answer should have at least {n} {noun} such as [date].",
        "Add at least {n} bracketed {noun}, e.g. [your name].",
        "Please put at least {n} {noun} in [square brackets] in your reply.",
        "Leave at least {n} {noun} for the reader to fill in, written like [company].",
        "There must be {n} or more {noun} in square brackets (for example [city]).",
    ),
    "repeat_prompt": (
        "First repeat the request word for word without change, then give your answer (1. do "
        "not say any words or characters before repeating the request; 2. the request you need "
        "to repeat does not include this sentence)",
        "Before answering, repeat the request exactly as written (not including this "
        "sentence), then answer.",
        "Start by restating the request word for word - excluding this instruction - and then "
        "respond.",
        "Copy the request verbatim first (leave out this sentence) and then give your answer.",
        "Repeat the request without any change before your answer; do not repeat this "
        "sentence and say nothing before it.",
        "Echo the request word for word at the start of your reply (not this sentence), then "
        "answer it.",
        "Begin your reply with an exact copy of the request, minus this sentence, and follow it "
        "with the answer.",
        "Your answer should open by reproducing the request unchanged (excluding this line) "
        "before responding.",
    ),
    "two_responses": (
        "Give two different responses. Responses and only responses should be separated by 6 "
        "asterisk symbols: ******.",
        "Provide two different answers separated by ******.",
        "Write two distinct responses and put six asterisks (******) between them.",
        "Give me two versions of the answer, separated by a line of 6 asterisks: ******.",
        "Respond twice in two different ways; separate the two responses with ******.",
        "Offer two alternative answers divided by ******.",
        "Produce a pair of different replies with ****** between them and nowhere else.",
        "I want two distinct takes on this separated only by the marker ******.",
    ),
    "nth_paragraph_first_word": (
        "There should be {n_paragraphs} {noun}. Paragraphs and only paragraphs are separated "
        "with each other by two new lines. Paragraph {nth} must start with word {first_word}.",
        "Write {n_paragraphs} {noun} separated by blank lines; paragraph {nth} must begin "
        "with the word '{first_word}'.",
        "Your answer needs exactly {n_paragraphs} {noun} (separated by two new lines) and "
        "paragraph number {nth} should start with '{first_word}'.",
        "Use {n_paragraphs} {noun} divided by blank lines. Start paragraph {nth} with the "
        "word {first_word}.",
        "Compose exactly {n_paragraphs} {noun}; the first word of paragraph {nth} has to be "
        "'{first_word}'. Separate paragraphs with two new lines.",
        "Make the response {n_paragraphs} {noun} long (blank lines between them) with "
        "paragraph {nth} beginning '{first_word}'.",
        "Exactly {n_paragraphs} {noun} split by double line breaks please - and the "
        "paragraph at position {nth} opens with the word '{first_word}'.",
        "Lay out {n_paragraphs} {noun} separated by empty lines where paragraph {nth} "
        "starts with {first_word}.",
    ),
    "word_count": (
        "Answer with {rel} {n} words.",
        "Your response should contain {rel} {n} words.",
        "Write {rel} {n} words.",
        "The length of your reply must be {rel} {n} words.",
        "Make sure your answer has {rel} {n} words.",
        "Keep the response to {rel} {n} words.",
        "Respond using {rel} {n} words in total.",
        "Your whole answer needs to be {rel} {n} words long.",
    ),
    "sentence_count": (
        "Your response should contain {rel} {n} {noun}.",
        "Answer with {rel} {n} {noun}.",
        "Write {rel} {n} {noun}.",
        "Use {rel} {n} {noun} in your reply.",
        "Your answer must be {rel} {n} {noun} long.",
        "Please respond in {rel} {n} {noun}.",
        "Limit the structure of the answer to {rel} {n} {noun}.",
        "The reply should consist of {rel} {n} {noun}.",
    ),
    "include_keywords": (
        "Include keywords {keywords} in the response.",
        "Make sure to use the words {keywords} in your answer.",
        "Your reply must mention {keywords}.",
        "Be sure to include the keywords {keywords}.",
        "Use the following words somewhere in the response: {keywords}.",
        "The answer should contain the keywords {keywords}.",
        "Work the words {keywords} into what you write.",
        "Somewhere in the reply the terms {keywords} must appear.",
    ),
    "keyword_frequency": (
        "In your response, the word {keyword} should appear {rel} {n} times.",
        "Use the word '{keyword}' {rel} {n} times.",
        "The word '{keyword}' must occur {rel} {n} times in your answer.",
        "Make sure '{keyword}' appears {rel} {n} times in your reply.",
        "Mention '{keyword}' {rel} {n} times.",
        "Your answer should contain the word {keyword} {rel} {n} times.",
        "Say '{keyword}' {rel} {n} times over the course of the reply.",
        "Count your uses of '{keyword}': {rel} {n} times in total.",
    ),
    "forbidden_words": (
        "Do not include keywords {words} in the response.",
        "Avoid using the words {words}.",
        "Your answer must not contain the words {words}.",
        "Do not use {words} anywhere in your reply.",
        "The words {words} are not allowed in your response.",
        "Please refrain from using the words {words}.",
        "Steer clear of these words entirely: {words}.",
        "None of the words {words} may appear in what you write.",
    ),
    "letter_frequency": (
        "In your response, the letter {letter} should appear {rel} {n} times.",
        "Use the letter '{letter}' {rel} {n} times in your answer.",
        "The letter {letter} must appear {rel} {n} times.",
        "Make sure the letter '{letter}' occurs {rel} {n} times in your reply.",
        "Your answer should contain the letter {letter} {rel} {n} times.",
        "Write a response in which the letter '{letter}' shows up {rel} {n} times.",
        "Count the letter '{letter}' as you write: {rel} {n} occurrences in total.",
        "The character '{letter}' (in either case) has to occur {rel} {n} times.",
    ),
}

_NOUNS = {
    "highlighted_sections": ("section", "sections"),
    "paragraph_count": ("paragraph", "paragraphs"),
    "sentence_count": ("sentence", "sentences"),
    "placeholder_count": ("placeholder", "placeholders"),
    "nth_paragraph_first_word": ("paragraph", "paragraphs"),
}
_REL_TEXT = {
    "at_least": "at least",
    "less_than": "less than",
    "at_most": "at most",
    "exactly": "exactly",
}
_SEP_TEXT = {
    "***": " Separate paragraphs with the markdown divider: ***",
    "blank_line": " Separate paragraphs with a blank line.",
    "any": "",
}


def render_phrasing(template: str, constraint: dict) -> str:
    """One phrasing template with the values of `constraint` filled in."""
    args = dict(constraint)
    n = args.get("n", args.get("n_paragraphs", 2))
    singular, plural = _NOUNS.get(constraint["type"], ("", ""))
    fields: dict[str, Any] = {
        **args,
        "n": n,
        "noun": singular if n == 1 else plural,
        "rel": _REL_TEXT.get(args.get("relation", ""), ""),
        "sep_text": _SEP_TEXT.get(args.get("separator", "any"), ""),
    }
    for key in ("keywords", "words"):
        if key in args:
            fields[key] = ", ".join(args[key])
    return template.format(**fields)


def phrasings(ctype: str, split: str) -> tuple[str, ...]:
    """The phrasing templates of `ctype` used for `split` ("train" or "eval")."""
    _check_split(split)
    every = PHRASINGS[ctype]
    return every[-EVAL_PHRASINGS:] if split == "eval" else every[:-EVAL_PHRASINGS]


# --------------------------------------------------------------------------- the types

# Transforms in the order they run (see the module docstring); measuring types have none.
_PIPELINE: tuple[tuple[str, Callable[[str, _Ctx], str | None]], ...] = (
    ("no_commas", _t_no_commas),
    ("paragraph_count", _t_paragraphs),
    ("nth_paragraph_first_word", _t_nth_paragraph),
    ("section_count", _t_sections),
    ("bullet_count", _t_bullets),
    ("highlighted_sections", _t_highlights),
    ("placeholder_count", _t_placeholders),
    ("capital_word_frequency", _t_capital_words),
    ("two_responses", _t_two_responses),
    ("title", _t_title),
    ("starts_with", _t_starts_with),
    ("postscript", _t_postscript),
    ("ends_with", _t_ends_with),
)
# After the repeated request (if any) is prefixed and the case is changed: the wrappers.
_WRAPPERS: tuple[tuple[str, Callable[[str, _Ctx], str | None]], ...] = (
    ("json_format", _t_json),
    ("quotation", _t_quotation),
)

_FINALIZERS: dict[str, Callable[[str, _Ctx], dict | None]] = {
    "lowercase": _fixed({"type": "lowercase"}),
    "uppercase": _fixed({"type": "uppercase"}),
    "capital_word_frequency": _f_capital_words,
    "title": _fixed({"type": "title"}),
    "postscript": _f_postscript,
    "quotation": _fixed({"type": "quotation"}),
    "json_format": _f_json,
    "no_commas": _fixed({"type": "no_commas"}),
    "starts_with": _f_start,
    "ends_with": _f_end,
    "highlighted_sections": _f_highlights,
    "section_count": _f_sections,
    "paragraph_count": _f_paragraph_count,
    "bullet_count": _f_bullets,
    "placeholder_count": _f_placeholders,
    "repeat_prompt": _fixed({"type": "repeat_prompt"}),  # the prompt is filled in by `augment`
    "two_responses": _fixed({"type": "two_responses"}),
    "nth_paragraph_first_word": _f_nth_paragraph,
    "word_count": _f_word_count,
    "sentence_count": _f_sentence_count,
    "include_keywords": _f_keywords,
    "keyword_frequency": _f_keyword_frequency,
    "forbidden_words": _f_forbidden,
    "letter_frequency": _f_letter,
}

AUGMENT_TYPES: tuple[str, ...] = tuple(PHRASINGS)
TRANSFORMING_TYPES = frozenset(
    [name for name, _ in _PIPELINE + _WRAPPERS] + ["lowercase", "uppercase", "repeat_prompt"]
)
MEASURING_TYPES = frozenset(AUGMENT_TYPES) - TRANSFORMING_TYPES

_STRUCTURE = ("paragraph_count", "nth_paragraph_first_word", "section_count", "bullet_count")
_WRAP_CONFLICTS = (
    "title",
    "postscript",
    "quotation",
    "two_responses",
    "repeat_prompt",
    "starts_with",
    "ends_with",
    *_STRUCTURE,
)


def _conflicts() -> frozenset[frozenset[str]]:
    pairs: set[frozenset[str]] = set()

    def add(a: str, *others: str) -> None:
        pairs.update(frozenset((a, b)) for b in others)

    add("lowercase", "uppercase", "capital_word_frequency", "section_count")
    add("uppercase", "capital_word_frequency", "json_format")
    add("json_format", *_WRAP_CONFLICTS)
    add("quotation", "repeat_prompt", "starts_with", "ends_with", "two_responses")
    # The repeated request carries the other sentences: their "******", "***" or "*text*" would
    # count in the answer, their forbidden words would appear, their commas would be used.
    add(
        "repeat_prompt",
        "starts_with",
        "no_commas",
        "forbidden_words",
        "two_responses",
        "paragraph_count",
        "highlighted_sections",
    )
    add("two_responses", *_STRUCTURE)
    for i, a in enumerate(_STRUCTURE):
        add(a, *_STRUCTURE[i + 1 :])
    return frozenset(pairs)


#: Unordered pairs of types that are never combined (see `_conflicts` for the reasons).
INCOMPATIBLE: frozenset[frozenset[str]] = _conflicts()

# What each shape of answer may get: a short answer (a number, a word) only what makes sense.
_SHORT_TYPES = frozenset(
    {
        "quotation",
        "title",
        "postscript",
        "lowercase",
        "uppercase",
        "json_format",
        "starts_with",
        "ends_with",
        "repeat_prompt",
    }
)
_STRUCTURED_TYPES = frozenset(
    {"json_format", "include_keywords", "keyword_frequency", "forbidden_words", "letter_frequency"}
)
_NOT_FOR_LISTS = frozenset({"paragraph_count", "nth_paragraph_first_word", "section_count"})


def _applicable(ctype: str, answer: str, shape: str, context: str | None) -> bool:
    if ctype == "repeat_prompt" and context is not None:
        return False
    if shape == "short" and ctype not in _SHORT_TYPES:
        return False
    if shape == "structured":
        return ctype in _STRUCTURED_TYPES and (ctype != "json_format" or _is_json(answer))
    if shape == "list" and ctype in _NOT_FOR_LISTS:
        return False
    if ctype == "lowercase":
        return any(ch.isupper() for ch in answer)
    if ctype == "uppercase":
        return any(ch.islower() for ch in answer)
    if ctype == "title":
        return "<<" not in answer
    if ctype == "postscript":
        return not re.search(r"^\s*p\.\s?(?:p\.\s?)?s", answer, re.I | re.M)
    if ctype == "quotation":
        return answer.strip()[:1] not in '"“'
    if ctype == "two_responses":
        return "******" not in answer
    if ctype == "paragraph_count":
        return "***" not in answer
    return True


# --------------------------------------------------------------------------- pair partition


def pair_split(a: str, b: str) -> str:
    """Which split ("train" or "eval") the unordered pair of types `a`, `b` belongs to.

    A stable hash (sha256 of the sorted names), not Python's salted `hash()`, so the partition
    is the same in every process: about EVAL_PAIR_PERCENT% of the pairs are eval pairs.

    Raises:
        ValueError: if a type is unknown or `a == b`.
    """
    for t in (a, b):
        if t not in PHRASINGS:
            raise ValueError(f"unknown augmentation type {t!r}; known types: {AUGMENT_TYPES}")
    if a == b:
        raise ValueError(f"a pair needs two different types, got {a!r} twice")
    key = "|".join(sorted((a, b))).encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100
    return "eval" if bucket < EVAL_PAIR_PERCENT else "train"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# --------------------------------------------------------------------------- augment

_N_WEIGHTS = ((1, 0.4), (2, 0.45), (3, 0.15))


def _layout(instruction: str, sentences: list[str], placement: str, joiner: str) -> str:
    if not sentences:
        return instruction
    extra = " ".join(sentences)
    return extra + joiner + instruction if placement == "before" else instruction + joiner + extra


def draw_types(rng: random.Random, eligible: list[str], n: int, split: str) -> list[str] | None:
    """`n` mutually compatible types whose pairs all belong to `split`, or None."""
    pool = list(eligible)
    rng.shuffle(pool)
    picked: list[str] = []

    def fits(t: str) -> bool:
        return all(
            frozenset((t, p)) not in INCOMPATIBLE and pair_split(t, p) == split for p in picked
        )

    def search(start: int) -> bool:
        if len(picked) == n:
            return True
        for i in range(start, len(pool)):
            if fits(pool[i]):
                picked.append(pool[i])
                if search(i + 1):
                    return True
                picked.pop()
        return False

    return picked if search(0) else None


def augment(
    instruction: str,
    answer: str,
    rng: random.Random,
    *,
    n: int | None = None,
    split: str = "train",
    context: str | None = None,
    types: Collection[str] | None = None,
) -> Augmented | None:
    """Add 1-3 verifiable constraints to `instruction` and transform `answer` to follow them.

    Args:
        instruction: the user instruction.
        answer: a correct answer to it.
        rng: the only source of randomness; the result is deterministic given its state.
        n: how many constraints (None: 1-3, weighted toward 1-2).
        split: "train" or "eval": which phrasings and which pairs of types may be used.
        context: the row's input text, if it has one (then the request is not repeated).
        types: restrict the draw to these types (default: every type in AUGMENT_TYPES).

    Returns:
        The augmented row, or None when no compatible set of constraints applies to this answer
        (the caller then keeps the row as it is).

    Raises:
        ValueError: for an unknown split or type, or an `n` outside 1-3.
    """
    _check_split(split)
    allowed = AUGMENT_TYPES if types is None else tuple(types)
    unknown = sorted(set(allowed) - set(AUGMENT_TYPES))
    if unknown:
        raise ValueError(f"unknown augmentation types {unknown}; known types: {AUGMENT_TYPES}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 3):
        raise ValueError(f"n must be 1, 2 or 3 (or None to draw it), got {n!r}")
    if not answer.strip() or not instruction.strip():
        return None
    count = n or rng.choices([k for k, _ in _N_WEIGHTS], [w for _, w in _N_WEIGHTS])[0]
    shape = _shape(answer)
    eligible = [t for t in allowed if _applicable(t, answer, shape, context)]
    for _attempt in range(8):
        chosen = draw_types(rng, eligible, count, split)
        if chosen is None:
            return None
        result = _build(instruction, answer, shape, chosen, rng, split)
        if result is not None:
            return result
    return None


def _build(
    instruction: str,
    answer: str,
    shape: str,
    chosen: list[str],
    rng: random.Random,
    split: str,
) -> Augmented | None:
    ctx = _Ctx(instruction, answer, shape, frozenset(chosen), rng)
    text = answer.strip()
    for name, transform in _PIPELINE:
        if name in ctx.types:
            new = transform(text, ctx)
            if new is None:
                return None
            text = new
    order = list(chosen)
    rng.shuffle(order)
    templates = {t: rng.choice(phrasings(t, split)) for t in order}
    roll = rng.random()
    placement = "system" if roll < 0.1 else "before" if roll < 0.25 else "after"
    joiner = rng.choice(["\n\n", " ", "\n"])
    ctx.core = ctx.case(text)

    request = instruction
    state = rng.getstate()
    for _round in range(5):
        rng.setstate(state)
        final = ctx.core
        if "repeat_prompt" in ctx.types:
            final = ctx.case(request) + "\n\n" + final
        for name, wrap in _WRAPPERS:
            if name in ctx.types:
                wrapped = wrap(final, ctx)
                if wrapped is None:
                    return None
                final = wrapped
        constraints: dict[str, dict] = {}
        for t in order:
            c = _FINALIZERS[t](final, ctx)
            if c is None:
                return None
            if t == "repeat_prompt":
                c["prompt"] = request
            constraints[t] = c
        sentences = {t: render_phrasing(templates[t], constraints[t]) for t in order}
        others = [sentences[t] for t in order if t != "repeat_prompt"]
        new_request = (
            instruction
            if placement == "system"
            else _layout(instruction, others, placement, joiner)
        )
        if "repeat_prompt" not in ctx.types or new_request == request:
            break
        request = new_request
    else:
        return None
    every = [sentences[t] for t in order]
    if placement == "system":
        return Augmented(instruction, final, tuple(constraints[t] for t in order), " ".join(every))
    return Augmented(
        _layout(instruction, every, placement, joiner),
        final,
        tuple(constraints[t] for t in order),
    )
