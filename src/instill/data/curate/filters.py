"""Quality filters for instruction data: checks on the *responses*, not web-document heuristics.

Web-document filters (minimum word counts, stop-word ratios, symbol ratios) drop short, good
prompts and answers ("Classify: ... -> positive"). These checks target what goes wrong in
instruction data instead, each with a reason code and a message saying what was seen:

- `empty_response`: an assistant turn is empty once whitespace and invisible characters are gone.
- `response_too_short` / `response_too_long`: the responses have fewer / more tokens than the
  bounds (words and punctuation marks, or the model's tokenizer).
- `repetitive_response`: a response of 20+ words repeats itself: 1 - distinct/total word 3-grams
  above `max_repetition` (a degenerate loop; normal answers are below 0.1).
- `echoes_instruction`: a response of 5+ words only repeats the user turn: word 3-gram Jaccard
  >= `max_echo`, case-sensitive (so answers to "convert to upper case" are not echoes).
- `refusal`: a response contains a configured phrase ("as an ai language model", "i'm sorry, but
  i cannot", ...).
- `mojibake`: a turn has U+FFFD, a control character, or UTF-8 decoded as Windows-1252/Latin-1
  (`cafÃ©`, `â€™`).
- `wrong_language`: the language identifier (py3langid) is confident the row is in none of
  `languages`.

The checks run on every row when the keep rule is `quality`, whether or not the filter step is
on: the rule of the dedup steps prefers, inside a group of duplicates, the row that
fails the fewest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from instill.data.conversation import Conversation
from instill.data.curate.text import (
    INVISIBLE,
    count_words_and_marks,
    responses,
    user_turns,
)
from instill.errors import InstillError

REPETITION_MIN_WORDS = 20
ECHO_MIN_WORDS = 5
LANGUAGE_MIN_CHARS = 20  # shorter texts are too short to identify reliably: never dropped

_WORD = re.compile(r"\w+")
_INVISIBLE_OR_SPACE = re.compile(rf"[\s{INVISIBLE}]+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'"})
# C0/C1 control characters other than tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A UTF-8 lead byte read as a Windows-1252/Latin-1 character, followed by 1-3 continuation
# bytes read the same way: the shape of mojibake. Each candidate is confirmed by re-encoding it.
_CONTINUATION = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
_CONTINUATION += "\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a"
_CONTINUATION += "\u20ac\u2122"
_MOJIBAKE = re.compile(f"[\u00c2-\u00f4][{_CONTINUATION}]{{1,3}}")


@dataclass(frozen=True, slots=True)
class FilterHit:
    """Why a row fails a quality check."""

    reason: str
    message: str


def _trigrams(tokens: list[str]) -> list[tuple[str, str, str]]:
    return list(zip(tokens, tokens[1:], tokens[2:], strict=False))


def repetition(text: str, tokens: list[str] | None = None) -> float:
    """1 - distinct / total word 3-grams (case-folded): 0 for no repeat, near 1 for a loop."""
    grams = _trigrams([t.casefold() for t in (tokens or _WORD.findall(text))])
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def echo_similarity(response: str, instruction: str) -> float:
    """Jaccard similarity of the word 3-gram sets of a response and the user turn (case kept)."""
    return _jaccard(set(_trigrams(_WORD.findall(response))), _WORD.findall(instruction))


def _jaccard(a: set, instruction_tokens: list[str]) -> float:
    b = set(_trigrams(instruction_tokens))
    return len(a & b) / len(a | b) if a and b else 0.0


def mojibake_sample(text: str) -> str | None:
    """The first sign of broken encoding in `text`, or None."""
    if "\ufffd" in text:
        return "U+FFFD (replacement character)"
    for m in _MOJIBAKE.finditer(text):
        piece = m.group()
        for codec in ("cp1252", "latin-1"):
            try:
                fixed = piece.encode(codec).decode("utf-8")
            except UnicodeError:
                continue
            if fixed != piece:
                return f"{piece!r} (UTF-8 {fixed!r} decoded as {codec})"
    m = _CONTROL.search(text)
    if m:
        return f"control character U+{ord(m.group()):04X}"
    return None


class QualityFilter:
    """The quality checks of a `QualityFilterConfig`.

    Args:
        cfg: the filter settings.
        count_tokens: counts the tokens of a response for the length bounds; default words and
            punctuation marks (`length_unit: words`). `prepare` passes the model's tokenizer
            when `length_unit` is `tokenizer`.
    """

    def __init__(self, cfg, count_tokens: Callable[[str], int] | None = None) -> None:
        self.cfg = cfg
        self.count_tokens = count_tokens or count_words_and_marks
        self.phrases = [p.translate(_APOSTROPHES).casefold() for p in cfg.refusal_phrases]
        self._langid = _language_identifier() if cfg.languages else None

    def check(self, conv: Conversation) -> list[FilterHit]:
        """Every check the row fails, in the order of the table above."""
        cfg = self.cfg
        hits: list[FilterHit] = []
        answers = responses(conv)
        if cfg.empty_response and any(not _INVISIBLE_OR_SPACE.sub("", a) for a in answers):
            hits.append(FilterHit("empty_response", "an assistant turn is empty or whitespace"))
        count = sum(self.count_tokens(a) for a in answers)
        if count < cfg.min_response_tokens:
            hits.append(
                FilterHit(
                    "response_too_short",
                    f"responses have {count} tokens (< min_response_tokens="
                    f"{cfg.min_response_tokens}, counted as {cfg.length_unit})",
                )
            )
        if cfg.max_response_tokens is not None and count > cfg.max_response_tokens:
            hits.append(
                FilterHit(
                    "response_too_long",
                    f"responses have {count} tokens (> max_response_tokens="
                    f"{cfg.max_response_tokens}, counted as {cfg.length_unit})",
                )
            )
        tokens = [_WORD.findall(a) for a in answers]  # words of each response
        if cfg.max_repetition is not None:
            for a, toks in zip(answers, tokens, strict=True):
                if len(toks) >= REPETITION_MIN_WORDS:
                    share = repetition(a, toks)
                    if share > cfg.max_repetition:
                        hits.append(
                            FilterHit(
                                "repetitive_response",
                                f"{share:.0%} of the response's word 3-grams are repeats "
                                f"(> max_repetition={cfg.max_repetition})",
                            )
                        )
                        break
        if cfg.max_echo is not None and not conv.is_text:
            instruction: list[str] | None = None
            for toks in tokens:
                if len(toks) >= ECHO_MIN_WORDS:
                    if instruction is None:
                        instruction = _WORD.findall("\n".join(user_turns(conv)))
                    sim = _jaccard(set(_trigrams(toks)), instruction)
                    if sim >= cfg.max_echo:
                        hits.append(
                            FilterHit(
                                "echoes_instruction",
                                f"the response repeats the user turn (word 3-gram Jaccard "
                                f"{sim:.2f} >= max_echo={cfg.max_echo})",
                            )
                        )
                        break
        if self.phrases:
            for a in answers:
                folded = a.translate(_APOSTROPHES).casefold()
                phrase = next((p for p in self.phrases if p in folded), None)
                if phrase:
                    hits.append(FilterHit("refusal", f"the response contains {phrase!r}"))
                    break
        if cfg.mojibake:
            texts = [conv.text or ""] if conv.is_text else [m.content for m in conv.messages]
            texts += [] if conv.is_text else [m.context for m in conv.messages if m.context]
            for t in texts:
                sample = mojibake_sample(t)
                if sample:
                    hits.append(FilterHit("mojibake", f"broken encoding: {sample}"))
                    break
        if self._langid is not None:
            text = "\n".join(user_turns(conv) + ([] if conv.is_text else answers))
            if len(text.strip()) >= LANGUAGE_MIN_CHARS:
                lang, prob = self._langid(text)
                if lang not in cfg.languages and prob >= cfg.min_language_confidence:
                    hits.append(
                        FilterHit(
                            "wrong_language",
                            f"language {lang} (probability {prob:.2f}); kept languages: "
                            f"{', '.join(cfg.languages)}",
                        )
                    )
        return hits


def _language_identifier() -> Callable[[str], tuple[str, float]]:
    """py3langid's classifier with normalised probabilities: text -> (ISO 639-1 code, p)."""
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as e:
        raise InstillError(
            "data.curate.filters.languages needs py3langid (a pure-Python language "
            "identifier, ~5 MB): pip install 'instill[curate]'"
        ) from e
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def classify(text: str) -> tuple[str, float]:
        lang, prob = identifier.classify(text)
        return str(lang), float(prob)

    return classify
