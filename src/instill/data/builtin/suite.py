"""The built-in suite's splits: training rows and four evaluation splits, disjoint by construction.

- **train**: every family except the held-out ones, with every phrasing except the last two; a
  share of the rows (`augment`) carry 1-3 extra verifiable constraints (`augment.py`: the answer
  is transformed to satisfy them, so it stays correct by construction).
- **heldout_families**: families never seen in training (`HELD_OUT_FAMILIES`: genuinely
  different tasks, not variants of trained ones), any phrasing. Mostly character-level skills.
- **heldout_phrasings**: trained short-answer families asked with their last two phrasings,
  which training never uses ("Condense the following text" when training said "Summarize this
  passage").
- **format**: the constrained-generation families (bullet counts, word limits, first word, JSON,
  casing, numbered steps) with held-out phrasings, scored by the constraint checkers.
- **heldout_if**: instruction following on long-form requests, the way others test it: the
  long-form families never trained (`HELD_OUT_LONGFORM`: `eval_per_family` prompts each) and
  the trained long-form families asked with held-out phrasings (a quarter as many), every
  prompt with 1-3 constraints in phrasings training never uses and, for two or more,
  combinations of constraint types training never uses (`augment.pair_split`).

Evaluation instances come from their own random streams, and any evaluation prompt whose text
also occurs in training is regenerated, so no evaluation prompt is ever trained on
(`tests/test_builtin_suite.py` checks all of this). The evaluation splits become eval tasks in
`instill.eval.builtin_tasks`: this module makes rows and checkers only. A long answer's eval
row carries a token budget from its reference's length (`answer_budget`).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from instill.data.builtin.augment import Augmented, augment
from instill.data.builtin.core import Family, Instance, families, phrase
from instill.data.builtin.families_c import HELD_OUT_LONGFORM

HELD_OUT_FAMILIES = (
    "caesar_shift",
    "acronym",
    "spell_out",
    "dedup_list",
    "word_language",
    "extract_dates",
    "longer_word",
    "next_in_sequence",
    "code_string_output",
    "repeat_word",
    "followup_reformat",
    "qa_when",
)
HELD_OUT_PHRASINGS = 2  # the last N phrasings of every family are never trained on
SPLITS = ("train", "heldout_families", "heldout_phrasings", "format", "heldout_if")
EVAL_SPLITS = SPLITS[1:]
AUGMENT_SHARE = 0.4  # training rows that carry extra constraints
# Family constraints that still hold whatever augmentation does to the answer (it changes case,
# layout, punctuation and wrapping, never which words are there), except JSON wrapping.
_CONTENT_CONSTRAINTS = ("include_keywords",)


@dataclass
class Suite:
    """Rows per split; each row is a dict (see `make_row`)."""

    seed: int
    rows: dict[str, list[dict]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.rows.items()}


def make_row(
    family: Family,
    inst: Instance,
    phrasing: int,
    split: str,
    index: int,
    rng: random.Random | None = None,
) -> dict:
    """A suite row: OpenAI-style messages (last = the answer), plus its family and checker.

    With `rng`, the row is augmented with 1-3 verifiable constraints (`augment.augment`, its
    `split` phrasings and type pairs); its answer is the transformed one and its checker the
    added constraints plus the family's content constraints (`_CONTENT_CONSTRAINTS`). An
    answer no constraint fits is kept as it is (`augmented` is then empty).
    """
    instruction = phrase(family, phrasing, inst)
    answer, system, check = inst.output, inst.system, inst.check
    added: Augmented | None = None
    if rng is not None:
        added = augment(
            instruction,
            answer,
            rng,
            split="eval" if split != "train" else "train",
            context=inst.context,
        )
    checker = {
        "metric": check.metric,
        "reference": check.reference,
        "options": dict(check.options),
        "constraints": list(check.constraints),
    }
    if added is not None:
        instruction, answer = added.instruction, added.answer
        if added.system:
            system = f"{system}\n\n{added.system}" if system else added.system
        kept = [c for c in check.constraints if c["type"] in _CONTENT_CONSTRAINTS]
        if any(c["type"] == "json_format" for c in added.constraints):
            kept = []  # JSON escapes line breaks: "\nDay 2" no longer holds the word "Day"
        checker = {
            "metric": "constraints",
            "reference": None,
            "options": {},
            "constraints": kept + list(added.constraints),
        }
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    for user, assistant in inst.history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    user = f"{instruction}\n\n{inst.context}" if inst.context else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {
        "id": f"{split}/{family.name}/{index}",
        "family": family.name,
        "category": family.category,
        "split": split,
        "phrasing": phrasing,
        "instruction": instruction,
        "context": inst.context,
        "messages": messages,
        "check": checker,
        "augmented": [c["type"] for c in added.constraints] if added else [],
    }


def prompt_key(row: dict) -> str:
    """The identity of a row's prompt (every message before the answer), for disjointness."""
    return json.dumps(row["messages"][:-1], sort_keys=True)


def build_suite(
    seed: int = 0,
    train_per_family: int = 80,
    eval_per_family: int = 6,
    augment_share: float = AUGMENT_SHARE,
    longform_per_family: int | None = None,
    longform_augment_share: float | None = None,
) -> Suite:
    """Generate the whole suite deterministically from `seed`.

    Args:
        seed: the seed of every random stream.
        train_per_family: training rows per trained family.
        eval_per_family: prompts per family in each evaluation split it belongs to (trained
            long-form families: a quarter of it, at least 2, in `heldout_if`).
        augment_share: the share of training rows given extra constraints (0: none).
        longform_per_family: training rows per trained long-form family (default:
            `train_per_family`).
        longform_augment_share: the share of long-form training rows given extra constraints
            (default: `augment_share`); layout constraints (paragraphs, sections, bullets,
            highlights) fit only such multi-paragraph answers.

    Every family draws its rows from its own seeded streams, so changing one family's count or
    share leaves the others' rows as they were, and more rows extend the same sequence.
    """
    for name, share in (
        ("augment_share", augment_share),
        ("longform_augment_share", longform_augment_share),
    ):
        if share is not None and not 0 <= share <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {share}")
    fams = families()
    held_out = (*HELD_OUT_FAMILIES, *HELD_OUT_LONGFORM)
    missing = [f for f in held_out if f not in fams]
    if missing:
        raise ValueError(f"held-out families not registered: {missing}")
    suite = Suite(seed, {s: [] for s in SPLITS})
    trained = [f for name, f in sorted(fams.items()) if name not in held_out]
    seen: set[str] = set()
    for fam in trained:
        rng = random.Random(f"{seed}/train/{fam.name}")
        aug_rng = random.Random(f"{seed}/augment/{fam.name}")
        usable = len(fam.phrasings) - HELD_OUT_PHRASINGS
        count, share = train_per_family, augment_share
        if fam.category == "longform":
            count = train_per_family if longform_per_family is None else longform_per_family
            share = augment_share if longform_augment_share is None else longform_augment_share
        for i in range(count):
            inst = fam.generate(rng)
            extra = aug_rng if aug_rng.random() < share else None
            row = make_row(fam, inst, i % usable, "train", i, extra)
            suite.rows["train"].append(row)
            seen.add(prompt_key(row))
    for fam in sorted(fams.values(), key=lambda f: f.name):
        last = list(range(len(fam.phrasings) - HELD_OUT_PHRASINGS, len(fam.phrasings)))
        augmented = False
        count = eval_per_family
        if fam.name in HELD_OUT_FAMILIES:
            split, phrasings = "heldout_families", list(range(len(fam.phrasings)))
        elif fam.name in HELD_OUT_LONGFORM:
            split, phrasings, augmented = "heldout_if", list(range(len(fam.phrasings))), True
        elif fam.category == "longform":
            split, phrasings, augmented = "heldout_if", last, True
            count = max(2, eval_per_family // 4)
        else:
            split = "format" if fam.category == "constrained" else "heldout_phrasings"
            phrasings = last
        rng = random.Random(f"{seed}/eval/{fam.name}")
        aug_rng = random.Random(f"{seed}/eval-augment/{fam.name}")
        made, attempts = 0, 0
        while made < count:
            attempts += 1
            if attempts > 50 * count:
                raise ValueError(
                    f"family {fam.name}: cannot make {count} evaluation "
                    "prompts that are not in the training split"
                )
            inst = fam.generate(rng)
            row = make_row(
                fam, inst, phrasings[made % len(phrasings)], split, made,
                aug_rng if augmented else None,
            )  # fmt: skip
            key = prompt_key(row)
            if key in seen:
                continue
            seen.add(key)
            suite.rows[split].append(row)
            made += 1
    return suite


def answer_budget(answer: str) -> int | None:
    """The token budget of an eval prompt whose reference answer is long (40+ words): room for
    2.2 tokens a word (upper case and JSON take more than prose) plus 48, in steps of 32; None
    for a short answer (the task's budget applies)."""
    words = len(answer.split())
    if words < 40:
        return None
    return 32 * math.ceil((2.2 * words + 48) / 32)


# --------------------------------------------------------------------------- export


def to_format(row: dict, fmt: str) -> dict | None:
    """The row in one of the training formats; None when the format cannot hold it."""
    msgs = row["messages"]
    if fmt == "messages":
        return {"messages": msgs}
    if fmt == "sharegpt":
        names = {"system": "system", "user": "human", "assistant": "gpt"}
        return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in msgs]}
    if fmt == "prompt_completion":
        return {"prompt": msgs[:-1], "completion": msgs[-1:]}
    if fmt == "alpaca":
        turns = [m for m in msgs if m["role"] != "system"]
        if len(turns) != 2:
            return None  # multi-turn rows have no Alpaca form
        out = {
            "instruction": row["instruction"],
            "input": row["context"] or "",
            "output": msgs[-1]["content"],
        }
        if msgs[0]["role"] == "system":
            out["system"] = msgs[0]["content"]
        return out
    raise ValueError(
        f"unknown export format {fmt!r}; use alpaca, sharegpt, messages or prompt_completion"
    )


def export_suite(suite: Suite, out_dir: Path, fmt: str = "messages") -> dict[str, dict]:
    """Write `<split>.jsonl` per split in `fmt` (training rows) plus `<split>.eval.jsonl` task
    files with each prompt's checker. Returns per-split counts of written and skipped rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    for split, rows in suite.rows.items():
        written, skipped = 0, Counter()
        with (out_dir / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                item = to_format(row, fmt)
                if item is None:
                    skipped["multi_turn_not_representable"] += 1
                    continue
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
                written += 1
        if split != "train":
            with (out_dir / f"{split}.eval.jsonl").open("w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(eval_row(row), ensure_ascii=False) + "\n")
        report[split] = {"written": written, "skipped": dict(skipped)}
    return report


def eval_row(row: dict) -> dict:
    """A task-file row: the prompt messages, the reference and the per-prompt checker."""
    check = row["check"]
    out = {
        "id": row["id"],
        "family": row["family"],
        "messages": row["messages"][:-1],
        "reference": check["reference"]
        if check["reference"] is not None
        else row["messages"][-1]["content"],
        "metric": check["metric"],
        "metric_options": check["options"],
    }
    if check["constraints"]:
        out["constraints"] = check["constraints"]
    budget = answer_budget(row["messages"][-1]["content"])
    if budget is not None:
        out["max_new_tokens"] = budget
    return out
