"""Planted sets for curation: corpora with known duplicates and known contamination.

Deterministic (seeded) and small enough for unit tests; `bench/curate.py` measures the same sets
at the same defaults. Each generator returns rows plus the ground truth:

- `near_dup_set`: base prompts of 20-60 words (free text, and instruction templates with a
  content slot), each with variants at a known number of word edits (substitution, insertion or
  deletion), exact copies (case and spacing changed), and *hard negatives*: prompts that share a
  template (12-17 words) with other prompts but have their own content (12-40 words).
- `contamination_set`: eval prompts (free questions and a reading-comprehension template) and
  training rows that contain them pasted inside other text, as substrings (a contiguous 60% of
  the prompt), lightly paraphrased (a new opening, one word changed, different case and
  punctuation), edited (a word changed every 9 words: 8-word gaps, which 8-grams catch and
  13-grams cannot) and reworded (a synonym or a new word every 4 words: out of reach of n-gram
  overlap), plus hard negatives that share only the template or a common phrase with eval
  prompts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

_WORD_TEXT = (
    "time person year way day thing man world life hand part child eye woman place work week "
    "case point government company number group problem fact river garden window morning city "
    "country music story money school family student teacher doctor market water energy table "
    "letter language history reason island mountain forest engine summer winter kitchen train "
    "bridge planet ocean village winter bottle camera pencil ticket basket castle desert valley "
    "quickly slowly carefully happy bright quiet simple strong early small large heavy ancient "
    "modern gentle sudden famous broken golden silver hidden narrow wide green purple yellow "
    "build carry write read explain describe compare measure travel discover protect remember "
    "choose follow answer create improve collect borrow repair paint invite visit listen watch "
    "about after before under between through during without around against beyond toward "
    "because although while until unless whether since therefore however instead perhaps"
)
WORDS = tuple(_WORD_TEXT.split())

TEMPLATES = (
    "Classify the sentiment of the following customer review as positive, negative or neutral: ",
    "Summarize the following paragraph in one clear sentence for a busy reader: ",
    "Translate the following text from English into German and keep the original tone: ",
    "Rewrite the following note so that it sounds polite and professional to a manager: ",
    "Extract every place name mentioned in the following travel diary entry as a list: ",
    "Read the short passage below and answer the question that follows it in one word. Passage: ",
)

SYNONYMS = {
    "quickly": "rapidly",
    "happy": "glad",
    "bright": "shiny",
    "quiet": "silent",
    "simple": "easy",
    "strong": "powerful",
    "small": "little",
    "large": "big",
    "ancient": "old",
    "explain": "clarify",
    "describe": "portray",
    "build": "construct",
    "choose": "pick",
    "repair": "fix",
    "city": "town",
    "river": "stream",
    "story": "tale",
    "money": "cash",
    "doctor": "physician",
    "student": "pupil",
}


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def edit(words: list[str], edits: int, rng: random.Random) -> list[str]:
    """`edits` word edits at distinct places: substitutions (2/3) and insertions or deletions."""
    out = list(words)
    for pos in sorted(rng.sample(range(len(out)), edits), reverse=True):
        kind = rng.random()
        if kind < 2 / 3:
            out[pos] = rng.choice([w for w in WORDS if w != out[pos]])
        elif kind < 5 / 6:
            out.insert(pos, rng.choice(WORDS))
        else:
            del out[pos]
    return out


@dataclass
class NearDupSet:
    """Texts, the cluster of each (None: unique), and each variant's number of edits."""

    texts: list[str] = field(default_factory=list)
    cluster: list[int | None] = field(default_factory=list)
    edits: list[int] = field(default_factory=list)  # 0 for bases, -1 for exact copies
    kind: list[str] = field(default_factory=list)  # base, variant, copy, negative


def near_dup_set(
    bases: int = 120,
    negatives_per_template: int = 25,
    edit_counts: tuple[int, ...] = (1, 2),
    copies: int = 20,
    seed: int = 0,
) -> NearDupSet:
    """Base prompts with variants at `edit_counts` edits, exact copies and hard negatives."""
    rng = random.Random(seed)
    s = NearDupSet()

    def add(text: str, cluster: int | None, edits: int, kind: str) -> None:
        s.texts.append(text)
        s.cluster.append(cluster)
        s.edits.append(edits)
        s.kind.append(kind)

    for b in range(bases):
        if b % 2:  # an instruction template with 14-45 words of content: 20-60 words in all
            template = TEMPLATES[b % len(TEMPLATES)].split()
            content = _words(rng, rng.randint(20 - len(template), 60 - len(template)))
            # Edits land in the content, as they do when a row is copied and touched up.
            variants = [template + edit(content, e, rng) for e in edit_counts]
            base = template + content
        else:
            base = _words(rng, rng.randint(20, 60))
            variants = [edit(base, e, rng) for e in edit_counts]
        add(" ".join(base), b, 0, "base")
        for e, v in zip(edit_counts, variants, strict=True):
            add(" ".join(v), b, e, "variant")
    for k in range(copies):
        b = 2 * k  # a free-text base
        text = s.texts[s.cluster.index(b)]
        add("  " + text.upper().replace(" ", "   ") + " ", b, -1, "copy")
    for template in TEMPLATES:
        for _ in range(negatives_per_template):
            add(template + " ".join(_words(rng, rng.randint(12, 40))), None, 0, "negative")
    return s


def near_dup_scores(s: NearDupSet, removed: dict[int, int]) -> dict:
    """Precision and recall of removals against the planted clusters.

    Args:
        s: the planted set.
        removed: removed row -> the row kept in its place.

    A removal is correct when both rows are in the same planted cluster. Recall is over the rows
    that should go: every member of a planted cluster but one; also given per number of edits.
    """
    correct = sum(
        1 for r, k in removed.items() if s.cluster[r] is not None and s.cluster[r] == s.cluster[k]
    )
    sizes: dict[int, int] = {}
    for c in s.cluster:
        if c is not None:
            sizes[c] = sizes.get(c, 0) + 1
    should = sum(n - 1 for n in sizes.values())
    found_clusters: dict[int, int] = {}
    for r, k in removed.items():
        if s.cluster[r] is not None and s.cluster[r] == s.cluster[k]:
            found_clusters[s.cluster[r]] = found_clusters.get(s.cluster[r], 0) + 1
    by_edits = {}
    for e in sorted(set(s.edits) - {0}):
        rows = [i for i, x in enumerate(s.edits) if x == e]
        # A variant is found when it, or its base, was removed as a duplicate of the other.
        hit = 0
        for i in rows:
            base = s.cluster.index(s.cluster[i])
            pair = (i, base) if i in removed else (base, base)
            if pair[0] in removed and s.cluster[removed[pair[0]]] == s.cluster[i]:
                hit += 1
        by_edits["copy" if e == -1 else f"{e} edits"] = round(hit / len(rows), 4)
    negatives = [i for i, k in enumerate(s.kind) if k == "negative"]
    return {
        "removed": len(removed),
        "correct": correct,
        "precision": round(correct / len(removed), 4) if removed else 1.0,
        "recall": round(sum(found_clusters.values()) / should, 4) if should else 1.0,
        "recall_by_edits": by_edits,
        "hard_negatives_removed": sum(1 for i in negatives if i in removed),
        "hard_negatives": len(negatives),
    }


# --------------------------------------------------------------------------- contamination


@dataclass
class ContaminationSet:
    """Eval prompts, training texts, and for each text the kind of contamination (or none)."""

    prompts: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    # pasted, substring, paraphrased, edited, reworded; boilerplate (hard negative), clean
    kind: list[str] = field(default_factory=list)
    source_prompt: list[int | None] = field(default_factory=list)


READING = (
    "Read the short passage below and answer the question that follows it in one word. "
    "Passage: {passage} Question: {question}"
)
COMMON_PHRASE = "Let us think about this step by step and explain the reasoning behind the answer."


def contamination_set(prompts: int = 60, seed: int = 0) -> ContaminationSet:
    """Eval prompts (half reading comprehension, half free questions of 20-40 words) and
    training texts with each kind of contamination once per prompt, plus negatives."""
    rng = random.Random(seed)
    s = ContaminationSet()
    for k in range(prompts):
        if k % 2:
            passage = " ".join(_words(rng, rng.randint(25, 40)))
            question = " ".join(_words(rng, 7)) + "?"
            s.prompts.append(READING.format(passage=passage.capitalize() + ".", question=question))
        else:
            body = " ".join(_words(rng, rng.randint(20, 40)))
            s.prompts.append(body.capitalize() + "? " + COMMON_PHRASE)

    def add(text: str, kind: str, prompt: int | None) -> None:
        s.texts.append(text)
        s.kind.append(kind)
        s.source_prompt.append(prompt)

    for k, prompt in enumerate(s.prompts):
        words = prompt.split()
        add(f"Here is a task from my homework. {prompt} Please help!", "pasted", k)
        span = max(13, round(0.6 * len(words)))
        start = rng.randrange(0, len(words) - span + 1)
        add(
            " ".join(_words(rng, 8)) + " " + " ".join(words[start : start + span]),
            "substring",
            k,
        )
        light = list(words)
        light[len(light) // 2] = rng.choice(WORDS)  # one word changed, in the middle
        add("Question for you: " + " ".join(light).lower().replace(".", ","), "paraphrased", k)
        edited = list(words)
        for i in range(4, len(edited), 9):  # a word changed every 9 words: 8-word gaps
            edited[i] = rng.choice(WORDS)
        add(" ".join(edited), "edited", k)
        reworded = [SYNONYMS.get(w.lower().strip(".,?"), w) for w in words]
        for i in range(0, len(reworded), 4):  # and a substituted word every 4 words
            reworded[i] = rng.choice(WORDS)
        add(" ".join(reworded), "reworded", k)
    for _ in range(prompts):
        # Hard negatives: the template or the common phrase, with content of their own.
        passage = " ".join(_words(rng, rng.randint(25, 40)))
        add(
            READING.format(passage=passage, question=" ".join(_words(rng, 7)) + "?"),
            "boilerplate",
            None,
        )
        add(" ".join(_words(rng, 25)).capitalize() + "? " + COMMON_PHRASE, "boilerplate", None)
        add(" ".join(_words(rng, rng.randint(20, 60))), "clean", None)
    return s


def contamination_scores(s: ContaminationSet, removed: set[int]) -> dict:
    """Recall per contamination kind and the false-positive rate on the negatives."""
    out: dict = {}
    for kind in ("pasted", "substring", "paraphrased", "edited", "reworded"):
        rows = [i for i, k in enumerate(s.kind) if k == kind]
        out[f"recall_{kind}"] = round(sum(i in removed for i in rows) / len(rows), 4)
    negatives = [i for i, k in enumerate(s.kind) if k in ("boilerplate", "clean")]
    out["false_positive_rate"] = round(sum(i in removed for i in negatives) / len(negatives), 4)
    out["negatives"] = len(negatives)
    return out
