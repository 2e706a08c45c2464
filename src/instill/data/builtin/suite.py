"""The built-in suite's splits: training rows and three evaluation splits, disjoint by construction.

- **train**: every family except the held-out ones, with every phrasing except the last two.
- **heldout_families**: families never seen in training (`HELD_OUT_FAMILIES`: genuinely
  different tasks, not variants of trained ones), any phrasing.
- **heldout_phrasings**: trained families asked with their last two phrasings, which training
  never uses ("Condense the following text" when training said "Summarize this passage").
- **format**: the constrained-generation families (bullet counts, word limits, first word, JSON,
  casing, numbered steps) with held-out phrasings, scored by the constraint checkers.

Evaluation instances come from their own random streams, and any evaluation prompt whose text
also occurs in training is regenerated, so no evaluation prompt is ever trained on
(`tests/test_builtin_suite.py` checks all of this). The evaluation splits become eval tasks in
`instill.eval.builtin_tasks`: this module makes rows and checkers only.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from instill.data.builtin.core import Family, Instance, families, phrase

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
SPLITS = ("train", "heldout_families", "heldout_phrasings", "format")
EVAL_SPLITS = SPLITS[1:]


@dataclass
class Suite:
    """Rows per split; each row is a dict (see `make_row`)."""

    seed: int
    rows: dict[str, list[dict]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.rows.items()}


def make_row(family: Family, inst: Instance, phrasing: int, split: str, index: int) -> dict:
    """A suite row: OpenAI-style messages (last = the answer), plus its family and checker."""
    messages = []
    if inst.system:
        messages.append({"role": "system", "content": inst.system})
    for user, assistant in inst.history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    instruction = phrase(family, phrasing, inst)
    user = f"{instruction}\n\n{inst.context}" if inst.context else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": inst.output}]
    check = inst.check
    return {
        "id": f"{split}/{family.name}/{index}",
        "family": family.name,
        "category": family.category,
        "split": split,
        "phrasing": phrasing,
        "instruction": instruction,
        "context": inst.context,
        "messages": messages,
        "check": {
            "metric": check.metric,
            "reference": check.reference,
            "options": dict(check.options),
            "constraints": list(check.constraints),
        },
    }


def _prompt_key(row: dict) -> str:
    return json.dumps(row["messages"][:-1], sort_keys=True)


def build_suite(seed: int = 0, train_per_family: int = 80, eval_per_family: int = 6) -> Suite:
    """Generate the whole suite deterministically from `seed`.

    Args:
        seed: the seed of every random stream.
        train_per_family: training rows per trained family.
        eval_per_family: prompts per family in each evaluation split it belongs to.
    """
    fams = families()
    missing = [f for f in HELD_OUT_FAMILIES if f not in fams]
    if missing:
        raise ValueError(f"held-out families not registered: {missing}")
    suite = Suite(seed, {s: [] for s in SPLITS})
    trained = [f for name, f in sorted(fams.items()) if name not in HELD_OUT_FAMILIES]
    seen: set[str] = set()
    for k, fam in enumerate(trained):
        rng = random.Random(f"{seed}/train/{fam.name}")
        usable = len(fam.phrasings) - HELD_OUT_PHRASINGS
        for i in range(train_per_family):
            row = make_row(fam, fam.generate(rng), i % usable, "train", i)
            suite.rows["train"].append(row)
            seen.add(_prompt_key(row))
        del k
    for fam in sorted(fams.values(), key=lambda f: f.name):
        if fam.name in HELD_OUT_FAMILIES:
            split, phrasings = "heldout_families", list(range(len(fam.phrasings)))
        else:
            split = "format" if fam.category == "constrained" else "heldout_phrasings"
            phrasings = list(range(len(fam.phrasings) - HELD_OUT_PHRASINGS, len(fam.phrasings)))
        rng = random.Random(f"{seed}/eval/{fam.name}")
        made, attempts = 0, 0
        while made < eval_per_family:
            attempts += 1
            if attempts > 50 * eval_per_family:
                raise ValueError(
                    f"family {fam.name}: cannot make {eval_per_family} evaluation "
                    "prompts that are not in the training split"
                )
            row = make_row(fam, fam.generate(rng), phrasings[made % len(phrasings)], split, made)
            key = _prompt_key(row)
            if key in seen:
                continue
            seen.add(key)
            suite.rows[split].append(row)
            made += 1
    return suite


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
    return out
