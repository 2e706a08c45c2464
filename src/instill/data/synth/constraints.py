"""Verifiable constraints drawn for an instruction whose answer is not known yet (synth stage 3).

`draw_constraints` adds 1-3 IFEval-style constraints ("Answer with at least 100 words.",
"Wrap your entire response with double quotation marks.") to any instruction; a teacher model
then answers the constrained request and only answers that pass the real checkers
(`instill.eval.constraints`) are kept: rejection sampling.

How this differs from `instill.data.builtin.augment`, whose vocabulary it shares:

- **A priori parameters.** `augment` knows the correct answer, transforms it and *measures* the
  parameters from the result ("at least 120 words" because it has 127). Here nothing is known,
  so every parameter is drawn from a small distribution that resembles IFEval's and that a
  small teacher (135M-360M parameters) can sometimes meet: round word counts, 2-4 paragraphs,
  2-5 bullets, keywords taken from the instruction itself. Parameters are drawn one type at a
  time in a fixed order, so a later draw can avoid an earlier one (a forbidden word is never a
  required keyword or a word of the start phrase), and the whole set is checked for plain
  contradictions: the text the answer is forced to contain (the repeated request, the start and
  end phrases, the postscript marker, the section markers) must leave room under every upper
  bound, and the paragraphs asked for must fit under the sentence limit. A draw that fails this
  is drawn again; `None` after a few tries.
- **The same split separation.** The types come from `augment.draw_types` (mutually
  compatible under `augment.INCOMPATIBLE`, every pair in `split`'s half of `augment.pair_split`)
  and the sentences from `augment.phrasings(type, split)`, so eval prompts use phrasings and
  pairs of types that training prompts never do. Placement (before or after the request, or as
  a system prompt) and joiners follow `augment` too.
- **Repairs are explicit.** `repair` offers deterministic fixes for the types where a mechanical
  edit is exactly what the constraint asks (lower-casing, removing commas, wrapping in quotes or
  JSON). It returns the names of the repairs it applied, so a repaired row is marked as such;
  the caller re-checks the repaired text with the real checkers.

`repeat_prompt`'s `prompt` is the request exactly as the user sees it, the other constraint
sentences included and its own sentence left out (its phrasings say so): the repeat sentence is
placed at the outer edge of the constraint sentences, so the prompt is a contiguous part of the
final instruction (all of it but that sentence).

This module is in the data layer: it must not import `instill.eval`; it counts with
`instill.data.text_counts`, the checkers' own rules.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from instill.data.builtin import augment
from instill.data.builtin.augment import (
    AUGMENT_TYPES,
    SPLITS,
    draw_types,
    phrasings,
    render_phrasing,
)
from instill.data.text_counts import (
    count_bullets,
    count_capital_words,
    count_keyword,
    count_sentences,
    count_words,
)


@dataclass(frozen=True)
class ConstrainedPrompt:
    """An instruction with verifiable constraints added, waiting for the teacher's answer.

    Attributes:
        instruction: the request with the constraint sentences added (unchanged when they went
            into `system`).
        system: the system prompt: the caller's, with the constraint sentences appended when
            they were placed there; None when there is neither.
        constraints: the constraint dicts, in `instill.eval.constraints`' schema, in the order
            their sentences appear.
        base_instruction: the request before any constraint was added.
    """

    instruction: str
    system: str | None
    constraints: tuple[dict, ...]
    base_instruction: str


# --------------------------------------------------------------------------- parameter pools

_FIRST_WORDS = (
    "first",
    "however",
    "finally",
    "overall",
    "today",
    "another",
    "next",
    "instead",
    "moreover",
    "also",
)
# Keywords for an instruction without content words of its own ("Why?"); disjoint from
# augment's forbidden-word pool so the two never collide.
_FALLBACK_KEYWORDS = ("reason", "detail", "idea", "step", "result", "choice")
# Words that state the request rather than its topic: no use as keywords ("explain").
_REQUEST_WORDS = frozenset(
    [
        "write",
        "explain",
        "describe",
        "give",
        "list",
        "tell",
        "make",
        "create",
        "provide",
        "compose",
        "summarise",
        "summarize",
        "please",
        "short",
        "brief",
        "answer",
        "question",
    ]
)
_COMMON_LETTERS = "etaoinsrhl"
_RARE_LETTERS = "qzxjkvwy"
_SECTION_SPLITTERS = ("SECTION", "SECTION", "PART", "Section", "Part")


@dataclass
class _Draft:
    """What one draw knows while it chooses parameters, type by type."""

    instruction: str
    types: frozenset[str]
    rng: random.Random
    taken: set[str] = field(default_factory=set)  # words other constraints require

    def case(self, text: str) -> str:
        if "lowercase" in self.types:
            return text.lower()
        if "uppercase" in self.types:
            return text.upper()
        return text

    def keywords(self) -> list[str]:
        """Topic words of the instruction (augment's content words), or the fallback pool."""
        words = [w for w in augment._content_words(self.instruction) if w not in _REQUEST_WORDS]
        return words or list(_FALLBACK_KEYWORDS)

    def take(self, *texts: str) -> None:
        for text in texts:
            self.taken.update(w.lower() for w in re.findall(r"[A-Za-z]+", text))


def _relation(rng: random.Random, choices: dict[str, tuple[int, ...]]) -> tuple[str, int]:
    rel = rng.choice(list(choices))
    return rel, rng.choice(choices[rel])


def _counted(ctype: str, rng: random.Random, choices: dict[str, tuple[int, ...]]) -> dict:
    rel, n = _relation(rng, choices)
    return {"type": ctype, "relation": rel, "n": n}


def _s_word_count(d: _Draft) -> dict:
    return _counted(
        "word_count",
        d.rng,
        {
            "at_least": (50, 80, 100, 150, 200, 300),
            "at_most": (40, 60, 100, 150),
            "less_than": (40, 60, 100, 150),
        },
    )


def _s_sentence_count(d: _Draft) -> dict:
    return _counted(
        "sentence_count",
        d.rng,
        {"at_least": (3, 5, 8), "at_most": (3, 5, 8), "less_than": (4, 6, 10)},
    )


def _s_paragraph_count(d: _Draft) -> dict:
    rel = d.rng.choice(["exactly", "exactly", "at_least", "at_most"])
    c = {"type": "paragraph_count", "relation": rel, "n": d.rng.randint(2, 4)}
    sep = d.rng.choice(["***", "***", "blank_line", "any"])
    return c if sep == "any" and d.rng.random() < 0.5 else {**c, "separator": sep}


def _s_bullet_count(d: _Draft) -> dict:
    if d.rng.random() < 0.75:
        return {"type": "bullet_count", "relation": "exactly", "n": d.rng.randint(2, 5)}
    return {"type": "bullet_count", "relation": "at_least", "n": d.rng.randint(2, 4)}


def _s_section_count(d: _Draft) -> dict:
    splitter = d.case(d.rng.choice(_SECTION_SPLITTERS))
    return {"type": "section_count", "splitter": splitter, "n": d.rng.randint(2, 4)}


def _s_nth_paragraph(d: _Draft) -> dict:
    n = d.rng.randint(2, 4)
    # The first paragraph's first word is fixed by a start phrase, a title or the repeated
    # request, so then the chosen word goes to a later paragraph.
    fixed_start = d.types & {"starts_with", "title", "repeat_prompt"}
    nth = d.rng.randint(2 if fixed_start else 1, n)
    word = d.rng.choice(_FIRST_WORDS)
    d.take(word)
    return {"type": "nth_paragraph_first_word", "n_paragraphs": n, "nth": nth, "first_word": word}


def _s_include_keywords(d: _Draft) -> dict:
    pool = d.keywords()
    words = d.rng.sample(pool, d.rng.randint(1, min(2, len(pool))))
    d.take(*words)
    return {"type": "include_keywords", "keywords": words}


def _s_keyword_frequency(d: _Draft) -> dict:
    pool = d.keywords()
    fresh = [w for w in pool if w not in d.taken]
    word = d.rng.choice(fresh or pool)
    d.take(word)
    rel, n = _relation(d.rng, {"at_least": (2, 3), "less_than": (2, 3, 4)})
    return {"type": "keyword_frequency", "keyword": word, "relation": rel, "n": n}


def _s_forbidden_words(d: _Draft) -> dict | None:
    # Words the request itself uses are left out: the teacher will likely need them.
    avoid = d.taken | set(augment._content_words(d.instruction))
    avoid |= {w.lower() for w in re.findall(r"[A-Za-z]+", d.instruction)}
    pool = [w for w in augment._FORBIDDEN_POOL if w not in avoid]
    if not pool:
        return None
    return {"type": "forbidden_words", "words": d.rng.sample(pool, d.rng.randint(1, 3))}


def _s_letter_frequency(d: _Draft) -> dict:
    if d.rng.random() < 0.7:
        letter, rel, n = d.rng.choice(_COMMON_LETTERS), "at_least", d.rng.choice((3, 5, 8, 10))
    else:
        letter, rel, n = d.rng.choice(_RARE_LETTERS), "less_than", d.rng.choice((2, 3, 5))
    return {"type": "letter_frequency", "letter": letter, "relation": rel, "n": n}


def _s_capital_words(d: _Draft) -> dict:
    return _counted(
        "capital_word_frequency", d.rng, {"at_least": (1, 2, 3, 5), "less_than": (2, 4, 6)}
    )


def _s_starts_with(d: _Draft) -> dict:
    phrase = d.case(d.rng.choice(augment._START_PHRASES))
    d.take(phrase)
    return {"type": "starts_with", "phrase": phrase}


def _s_ends_with(d: _Draft) -> dict:
    phrase = d.case(d.rng.choice(augment._END_PHRASES))
    d.take(phrase)
    return {"type": "ends_with", "phrase": phrase}


def _s_postscript(d: _Draft) -> dict:
    return {"type": "postscript", "marker": "P.P.S." if d.rng.random() < 0.2 else "P.S."}


def _s_json(d: _Draft) -> dict:
    if d.rng.random() < 0.2:
        return {"type": "json_format", "top_level": "object"}
    return {"type": "json_format"}


def _s_highlights(d: _Draft) -> dict:
    return {"type": "highlighted_sections", "n": d.rng.randint(1, 3)}


def _s_placeholders(d: _Draft) -> dict:
    return {"type": "placeholder_count", "n": d.rng.randint(1, 3)}


def _fixed(c: dict) -> Callable[[_Draft], dict]:
    return lambda d: dict(c)


# The order parameters are drawn in: every type that requires words (keywords, phrases, the
# first word) comes before forbidden_words, which avoids them.
_SAMPLERS: dict[str, Callable[[_Draft], dict | None]] = {
    "lowercase": _fixed({"type": "lowercase"}),
    "uppercase": _fixed({"type": "uppercase"}),
    "capital_word_frequency": _s_capital_words,
    "title": _fixed({"type": "title"}),
    "postscript": _s_postscript,
    "quotation": _fixed({"type": "quotation"}),
    "json_format": _s_json,
    "no_commas": _fixed({"type": "no_commas"}),
    "starts_with": _s_starts_with,
    "ends_with": _s_ends_with,
    "highlighted_sections": _s_highlights,
    "section_count": _s_section_count,
    "paragraph_count": _s_paragraph_count,
    "bullet_count": _s_bullet_count,
    "placeholder_count": _s_placeholders,
    "repeat_prompt": _fixed({"type": "repeat_prompt"}),  # the prompt is filled in at assembly
    "two_responses": _fixed({"type": "two_responses"}),
    "nth_paragraph_first_word": _s_nth_paragraph,
    "word_count": _s_word_count,
    "sentence_count": _s_sentence_count,
    "include_keywords": _s_include_keywords,
    "keyword_frequency": _s_keyword_frequency,
    "letter_frequency": _s_letter_frequency,
    "forbidden_words": _s_forbidden_words,
}

#: The augmentation types drawn a priori: every type of `augment.AUGMENT_TYPES` (each has a
#: parameter distribution that needs no answer), in augment's order.
SYNTH_TYPES: tuple[str, ...] = tuple(t for t in AUGMENT_TYPES if t in _SAMPLERS)
_missing = set(_SAMPLERS) - set(AUGMENT_TYPES)
if _missing:  # a sampler for a type augment has no phrasings for
    raise RuntimeError(f"synth constraint samplers for unknown types {sorted(_missing)}")


# --------------------------------------------------------------------------- feasibility


def _upper_bound(c: Mapping[str, Any]) -> int | None:
    """The largest count `c` allows (None: no upper bound)."""
    rel, n = c.get("relation"), c.get("n")
    if rel in ("exactly", "at_most"):
        return n
    if rel == "less_than":
        return n - 1
    return None


def _lower_bound(c: dict) -> int:
    return c["n"] if c.get("relation") in ("exactly", "at_least") else 0


def _forced_text(by_type: dict[str, dict]) -> str:
    """Text every passing answer must contain: the repeated request, the phrases, the markers
    and the required words (each as often as it is required)."""
    parts = []
    if "repeat_prompt" in by_type:
        parts.append(by_type["repeat_prompt"]["prompt"])
    for t in ("starts_with", "ends_with"):
        if t in by_type:
            parts.append(by_type[t]["phrase"])
    if "postscript" in by_type:
        parts.append(by_type["postscript"]["marker"])
    words = []  # one run of words, so that they do not count as sentences of their own
    if "section_count" in by_type:
        c = by_type["section_count"]
        words += [f"{c['splitter']} {i}" for i in range(1, c["n"] + 1)]
    if "include_keywords" in by_type:
        words += by_type["include_keywords"]["keywords"]
    if "keyword_frequency" in by_type:
        c = by_type["keyword_frequency"]
        words += [c["keyword"]] * _lower_bound(c)
    if "nth_paragraph_first_word" in by_type:
        words.append(by_type["nth_paragraph_first_word"]["first_word"])
    if words:
        parts.append(" ".join(words))
    return "\n\n".join(parts)


def _feasible(constraints: Sequence[dict]) -> bool:
    """False when the constraints contradict each other or the text they force."""
    by_type = {c["type"]: c for c in constraints}
    forced = _forced_text(by_type)

    def within(ctype: str, got: int) -> bool:
        cap = _upper_bound(by_type[ctype]) if ctype in by_type else None
        return cap is None or got <= cap

    paragraphs = _lower_bound(by_type["paragraph_count"]) if "paragraph_count" in by_type else 0
    if "nth_paragraph_first_word" in by_type:
        nth = by_type["nth_paragraph_first_word"]
        paragraphs = max(paragraphs, nth["n_paragraphs"])
        if "repeat_prompt" in by_type:  # the repeated request's own paragraphs come first
            before = len([p for p in by_type["repeat_prompt"]["prompt"].split("\n\n") if p])
            if nth["nth"] <= before or nth["n_paragraphs"] <= before:
                return False
    sentences = _lower_bound(by_type["sentence_count"]) if "sentence_count" in by_type else 0
    words = _lower_bound(by_type["word_count"]) if "word_count" in by_type else 0
    sentence_cap = _upper_bound(by_type.get("sentence_count", {}))
    checks = [
        within("sentence_count", max(paragraphs, count_sentences(forced) + 1)),
        sentence_cap is None or words <= 50 * sentence_cap,  # no 150-word sentences
        within("word_count", max(5 * sentences, count_words(forced) + 20)),
        within("capital_word_frequency", count_capital_words(forced)),
        within("bullet_count", count_bullets(forced)),
        "no_commas" not in by_type or "," not in forced,
    ]
    if "keyword_frequency" in by_type:
        c = by_type["keyword_frequency"]
        checks.append(within("keyword_frequency", count_keyword(forced, c["keyword"])))
    if "letter_frequency" in by_type:
        c = by_type["letter_frequency"]
        checks.append(within("letter_frequency", forced.lower().count(c["letter"])))
    if "forbidden_words" in by_type:
        checks += [count_keyword(forced, w) == 0 for w in by_type["forbidden_words"]["words"]]
    return all(checks)


# --------------------------------------------------------------------------- drawing

_ATTEMPTS = 8


def _check_arguments(
    instruction: str, n: int | None, split: str, types: Collection[str] | None
) -> tuple[str, ...]:
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 3):
        raise ValueError(f"n must be 1, 2 or 3 (or None to draw it), got {n!r}")
    if isinstance(types, str):
        raise ValueError(f"types must be a collection of type names, got the string {types!r}")
    allowed = SYNTH_TYPES if types is None else tuple(dict.fromkeys(types))
    unknown = sorted(set(allowed) - set(SYNTH_TYPES))
    if unknown:
        raise ValueError(f"unknown synth constraint types {unknown}; known types: {SYNTH_TYPES}")
    return allowed


def draw_constraints(
    instruction: str,
    rng: random.Random,
    *,
    n: int | None = None,
    split: str = "train",
    types: Collection[str] | None = None,
    context: str | None = None,
    system: str | None = None,
) -> ConstrainedPrompt | None:
    """Add 1-3 verifiable constraints, with parameters chosen a priori, to `instruction`.

    Args:
        instruction: the user request (its answer is not known yet).
        rng: the only source of randomness; the result is deterministic given its state.
        n: how many constraints (None: 1-3, weighted like `augment`).
        split: "train" or "eval": which phrasings and which pairs of types may be used.
        types: restrict the draw to these types (default: every type in SYNTH_TYPES).
        context: the row's input text, if it has one (then the request is not repeated).
        system: the row's system prompt, if any; sentences placed in the system prompt are
            appended to it.

    Returns:
        The constrained prompt, or None when no compatible set of `n` types exists in `types`
        for `split`, or no consistent parameters were found in a few tries.

    Raises:
        ValueError: for an empty instruction, an unknown split or type, or `n` outside 1-3.
    """
    allowed = _check_arguments(instruction, n, split, types)
    weights = augment._N_WEIGHTS
    count = n or rng.choices([k for k, _ in weights], [w for _, w in weights])[0]
    eligible = [t for t in allowed if not (t == "repeat_prompt" and context is not None)]
    for _attempt in range(_ATTEMPTS):
        chosen = draw_types(rng, eligible, count, split)
        if chosen is None:
            return None
        drawn = _assemble(instruction, chosen, rng, split, system)
        if drawn is not None and _feasible(drawn.constraints):
            return drawn
    return None


def _assemble(
    instruction: str,
    chosen: list[str],
    rng: random.Random,
    split: str,
    system: str | None,
) -> ConstrainedPrompt | None:
    draft = _Draft(instruction, frozenset(chosen), rng)
    params: dict[str, dict] = {}
    for t in _SAMPLERS:  # the fixed drawing order, not the order the types were picked in
        if t in draft.types:
            c = _SAMPLERS[t](draft)
            if c is None:
                return None
            params[t] = c
    order = list(chosen)
    rng.shuffle(order)
    templates = {t: rng.choice(phrasings(t, split)) for t in order}
    roll = rng.random()
    placement = "system" if roll < 0.1 else "before" if roll < 0.25 else "after"
    joiner = rng.choice(["\n\n", " ", "\n"])
    # The repeat sentence goes at the outer edge, so the request it asks to repeat (everything
    # but that sentence) is one contiguous piece of what the user sees.
    others = [t for t in order if t != "repeat_prompt"]
    if "repeat_prompt" in params:
        order = ["repeat_prompt", *others] if placement == "before" else [*others, "repeat_prompt"]
        shown = (
            instruction
            if placement == "system"
            else augment._layout(
                instruction,
                [render_phrasing(templates[t], params[t]) for t in others],
                placement,
                joiner,
            )
        )
        params["repeat_prompt"]["prompt"] = shown
    sentences = [render_phrasing(templates[t], params[t]) for t in order]
    constraints = tuple(params[t] for t in order)
    if placement == "system":
        extra = " ".join(sentences)
        full_system = f"{system.rstrip()}\n\n{extra}" if system and system.strip() else extra
        return ConstrainedPrompt(instruction, full_system, constraints, instruction)
    final = augment._layout(instruction, sentences, placement, joiner)
    return ConstrainedPrompt(final, system, constraints, instruction)


# --------------------------------------------------------------------------- repairs


# A repair takes the answer and the repairable constraints by type, and returns the new answer.


def _repair_lowercase(text: str, wanted: Mapping[str, dict]) -> str:
    return text.lower()


def _repair_uppercase(text: str, wanted: Mapping[str, dict]) -> str:
    return text.upper()


def _repair_no_commas(text: str, wanted: Mapping[str, dict]) -> str:
    return augment._remove_commas(text)


def _repair_json(text: str, wanted: Mapping[str, dict]) -> str:
    want = wanted["json_format"].get("top_level", "any")
    if augment._is_json(text):
        fenced = augment._FENCE.match(text.strip())
        value = json.loads(fenced.group(1) if fenced else text)
        kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else ""
        if want in ("any", kind):
            return text
    body = text.strip()
    if want == "array":
        return json.dumps([body], ensure_ascii=False)
    # One key, so the JSON adds no comma of its own; in capitals next to an uppercase answer.
    key = "ANSWER" if "uppercase" in wanted else "answer"
    return json.dumps({key: body}, ensure_ascii=False)


def _repair_quotation(text: str, wanted: Mapping[str, dict]) -> str:
    body = text.strip()
    if len(body) >= 2 and body[0] in '"“' and body[-1] in '"”' and body[1:-1].strip():
        return text
    return f'"{body}"'


# In the order they run: the commas go first, then the case changes, and the wrappers come
# last, since they must surround the final text (json_format and quotation never meet).
_REPAIRS: dict[str, Callable[[str, Mapping[str, dict]], str]] = {
    "no_commas": _repair_no_commas,
    "lowercase": _repair_lowercase,
    "uppercase": _repair_uppercase,
    "json_format": _repair_json,
    "quotation": _repair_quotation,
}

#: Constraint types `repair` can fix by a deterministic edit that is exactly what they ask.
REPAIRABLE: frozenset[str] = frozenset(_REPAIRS)


def repair(answer: str, constraints: Sequence[dict]) -> tuple[str, tuple[str, ...]]:
    """Apply the deterministic repairs of the REPAIRABLE constraints in `constraints`.

    Other constraints are left alone, and the repaired text is not re-checked here: the caller
    checks it with the real checkers, and marks the row with the repairs applied.

    Args:
        answer: the teacher's answer.
        constraints: the constraint dicts of its prompt.

    Returns:
        The repaired answer and the types whose repair changed it, in the order applied (empty
        when nothing changed; the answer is then returned as it was).
    """
    by_type = {c["type"]: c for c in constraints if c.get("type") in REPAIRABLE}
    text, applied = answer, []
    for name, fix in _REPAIRS.items():
        if name not in by_type or not text.strip():
            continue
        new = fix(text, by_type)
        if new != text:
            text = new
            applied.append(name)
    return text, tuple(applied)
