"""Formats a prompt states in plain words, as verifiable constraints.

Prompts written by others (the Self-Instruct seed tasks, a user's own eval set) carry no
constraint dicts, but some say what shape the answer must have: "in just one sentence", "in 4
sentences", "no more than 50 words", "in JSON", "all in lowercase". `stated_constraints` finds
those statements with a small set of explicit patterns and returns the constraint dicts
(`instill.eval.constraints`) that check them; a prompt that states nothing gets none. It is
deliberately conservative: a count must be tied to its unit ("three sentences"), a length
without a relation ("in 50 words", which people use loosely) is not taken as exact, and
nothing is guessed from the task's topic. An eval task built with `stated_formats: only`
keeps the prompts with a stated format and scores them by it.
"""

from __future__ import annotations

import re

_NUMBERS = {
    "one": 1, "a single": 1, "single": 1, "a": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "fifty": 50, "hundred": 100, "a hundred": 100,
}  # fmt: skip
_NUM = r"(\d+|" + "|".join(sorted(map(re.escape, _NUMBERS), key=len, reverse=True)) + r")"
_AT_MOST = r"(?:at most|no more than|not more than|a maximum of|maximum of|up to|under)"
_LESS = r"(?:fewer than|less than)"
_AT_LEAST = r"(?:at least|no fewer than|no less than|a minimum of|minimum of)"
_MORE = r"(?:more than|over)"
_UNITS = {"word": "word_count", "sentence": "sentence_count", "paragraph": "paragraph_count"}
_UNIT = r"(word|sentence|paragraph)s?"

# (pattern, relation); the first group is the number, the second the unit.
_COUNT_PATTERNS = (
    (re.compile(rf"\b{_AT_MOST}\s+{_NUM}[\s-]+{_UNIT}\b", re.I), "at_most"),
    (re.compile(rf"\b{_LESS}\s+{_NUM}[\s-]+{_UNIT}\b", re.I), "less_than"),
    (re.compile(rf"\b{_AT_LEAST}\s+{_NUM}[\s-]+{_UNIT}\b", re.I), "at_least"),
    (re.compile(rf"\b{_MORE}\s+{_NUM}[\s-]+{_UNIT}\b", re.I), "more_than"),
    (re.compile(rf"\b{_NUM}[\s-]+{_UNIT}\s+or\s+(?:less|fewer)\b", re.I), "at_most"),
    (re.compile(rf"\bexactly\s+{_NUM}[\s-]+{_UNIT}\b", re.I), "exactly"),
    # "in 4 sentences", "in just one sentence", "has three sentences", "a one-sentence summary"
    (
        re.compile(
            rf"\b(?:in|with|has|have|of|using|use|into|write|make)\s+(?:just\s+|only\s+|"
            rf"exactly\s+)?{_NUM}[\s-]+(sentence|paragraph)s?\b",
            re.I,
        ),
        "exactly",
    ),
)
_JSON = re.compile(r"\b(?:in|as|into|using)\s+(?:valid\s+)?json\b|\bjson\s+format\b", re.I)
_LOWER = re.compile(r"\b(?:all|only|entirely|entire response)\s+(?:in\s+)?lower[\s-]?case\b", re.I)
_UPPER = re.compile(
    r"\b(?:all|only|entirely|entire response)\s+(?:in\s+)?(?:upper[\s-]?case|capital letters)\b",
    re.I,
)
_STRICT = {"less_than": "at_most", "more_than": "at_least"}
_EACH = re.compile(r"\b(?:each|every|per)\b", re.I)


def _number(text: str) -> int:
    text = text.lower()
    return int(text) if text.isdigit() else _NUMBERS[text]


def stated_constraints(text: str) -> list[dict]:
    """The constraint dicts for every format `text` states (empty when it states none).

    A count that applies to each item ("a one-sentence description for each person", "each
    containing at least a pun") is not a count of the whole answer, so a sentence that says
    "each"/"every"/"per" contributes no count.
    """
    found: dict[str, dict] = {}
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if _EACH.search(sentence):
            continue
        for pattern, relation in _COUNT_PATTERNS:
            for m in pattern.finditer(sentence):
                n, unit = _number(m.group(1)), m.group(2).lower()
                kind = _UNITS[unit]
                if kind == "paragraph_count" and relation in _STRICT:
                    # paragraph counts take exactly / at_least / at_most
                    relation, n = _STRICT[relation], n + (1 if relation == "more_than" else -1)
                if n >= 1 and kind not in found:
                    found[kind] = {"type": kind, "relation": relation, "n": n}
    if _JSON.search(text):
        found["json_format"] = {"type": "json_format"}
    if _LOWER.search(text):
        found["lowercase"] = {"type": "lowercase"}
    elif _UPPER.search(text):
        found["uppercase"] = {"type": "uppercase"}
    return list(found.values())
