"""Preference rows for DPO: prompt + chosen + rejected, rendered by the same renderer as SFT rows.

Row shapes follow TRL's vocabulary, read from the same files (JSON, JSONL, Parquet, CSV, hub
datasets) with the same per-row errors naming file, line and field:

* **standard**: `prompt`, `chosen` and `rejected` are strings;
* **conversational**: `prompt` is a list of messages (an optional system message, then user /
  assistant turns ending with a user turn: multi-turn prompts are fine) and `chosen` / `rejected`
  are lists holding one assistant message (or plain strings);
* **implicit prompt**: no `prompt`; `chosen` and `rejected` are whole conversations that share
  everything but their last (assistant) message.

An optional `system` string applies to both answers. A pair whose answers are equal, whose prompt
is empty, or that gives a system prompt twice is a bad row, counted and written to
`rejected.jsonl` like SFT's (`data.on_bad_row: skip`), or an error naming the row.

Why each answer is rendered as the *whole conversation* (prompt + answer) by `masking.Renderer`
instead of tokenizing prompt and answer apart: the renderer already cuts the rendering at span
boundaries and tokenizes each piece on its own, so the ids of `prompt + chosen` are exactly the ids
of the conversation rendered whole, with the template's BOS, system prompt and end-of-turn token
written once, where the template writes them (the anchors' users meet double EOS, stray BOS and
duplicated system prompts when the prompt and the answer are templated separately). Only the
final answer is trained: the prompt's own assistant turns are marked `train=False`, and the
end-of-turn token is inside both answers' supervised spans. The prompt's ids (the common prefix
of both sequences) are checked to be the same for both answers.

`data.masking` and `data.packing` do not apply: each sequence is one row, padded in its batch.
`data.curate` is not applied either (it works on single conversations); enabling one of its
optional steps with `train.objective: dpo` is an error rather than silently skipped.

On disk (`<output_dir>/prepared/`), the pairs are two `TokenRows` in the same order,
`chosen/arrays/*.npy` and `rejected/arrays/*.npy` (flat int32 ids and labels plus offsets,
memory-mapped by the loop), beside `prompt_lengths.npy` and `row_ids.json`.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from instill.atomic import atomic_directory
from instill.config import Config, DataConfig, SourceConfig
from instill.data.conversation import Conversation, Message
from instill.data.curate.mix import mix_source
from instill.data.formats import (
    _parse_message_list,
    _short,
    _string,
    apply_columns,
    check_object,
    check_turns,
)
from instill.data.masking import IGNORE_INDEX, Renderer, TokenizedExample
from instill.data.prepare import (
    SKIP_HINT,
    Prepared,
    ReadResult,
    Rejected,
    build_renderer,
    read_rows,
    row_and_token_stats,
    write_reports,
)
from instill.data.prepared import TokenRows
from instill.data.sources import RawRow
from instill.errors import InstillError, RowError, TemplateError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: The `kind` written to stats.json and `prepared/kind.json` for preference data.
KIND = "preference"


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class PreferencePair:
    """One validated preference row.

    Attributes:
        prompt: system message (optional), then user/assistant turns ending with a user turn.
        chosen: the preferred answer.
        rejected: the other answer.
        source: `file:line N` (or `file[row N]`), for errors and row ids.
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    source: str = ""

    def conversation(self, answer: str) -> Conversation:
        """The prompt followed by `answer`; only `answer` is trained."""
        turns = tuple(
            Message(m.role, m.content, m.context, train=False) if m.role == "assistant" else m
            for m in self.prompt
        )
        return Conversation((*turns, Message("assistant", answer, train=True)), source=self.source)

    def to_dict(self) -> dict:
        return {
            "prompt": [m.to_dict() for m in self.prompt],
            "chosen": self.chosen,
            "rejected": self.rejected,
            "source": self.source,
        }


def parse_preference_row(
    row: Any,
    where: str,
    columns: Mapping[str, str] | None = None,
    roles: Mapping[str, str] | None = None,
) -> PreferencePair:
    """Validate one raw row into a `PreferencePair`.

    Args:
        row: the decoded row (a mapping).
        where: its location, for errors.
        columns: the source's column mapping (`{prompt: question, chosen: good, ...}`).
        roles: the source's extra role names.

    Raises:
        RowError: naming the location, the field, a reason code and the fix.
    """
    roles = roles or {}
    obj = apply_columns(check_object(row, where), columns or {}, where)
    for key in ("chosen", "rejected"):
        if obj.get(key) is None:
            keys = ", ".join(sorted(map(str, obj))) or "no keys"
            raise RowError(
                where,
                key,
                "missing_field",
                f"preference rows need 'prompt', 'chosen' and 'rejected' (TRL's preference "
                f"shape); this row has {keys}. Map other column names with `columns:` "
                "(e.g. columns: {chosen: better, rejected: worse})",
            )
    if obj.get("prompt") is None:
        prompt, chosen, rejected = _implicit_prompt(obj, where, roles)
    else:
        prompt = _prompt(obj["prompt"], where, roles)
        chosen = _answer(obj["chosen"], where, "chosen", roles)
        rejected = _answer(obj["rejected"], where, "rejected", roles)
    system = _string(obj, "system", where, required=False)
    if system and system.strip():
        if prompt[0].role == "system":
            raise RowError(
                where,
                "system",
                "duplicate_system",
                "the row has a 'system' field and its prompt starts with a system message; "
                "keep one of them",
            )
        prompt = (Message("system", system), *prompt)
    if not any(m.role == "user" and m.content.strip() for m in prompt):
        raise RowError(
            where, "prompt", "empty_prompt", "the prompt is empty; every pair needs a question"
        )
    if chosen.strip() == rejected.strip():
        raise RowError(
            where,
            "rejected",
            "identical_responses",
            "chosen and rejected are the same answer, so the pair prefers nothing; drop the "
            "row or give a different rejected answer",
        )
    return PreferencePair(prompt, chosen, rejected, where)


def _prompt(value: Any, where: str, roles: Mapping[str, str]) -> tuple[Message, ...]:
    if isinstance(value, str):
        if not value.strip():
            raise RowError(
                where, "prompt", "empty_prompt", "the prompt is empty; every pair needs a question"
            )
        return (Message("user", value),)
    if not isinstance(value, list):
        raise RowError(
            where,
            "prompt",
            "wrong_type",
            f"prompt must be a string or a list of messages, got {type(value).__name__} "
            f"{_short(value)}",
        )
    if not value:
        raise RowError(
            where, "prompt", "empty_prompt", "the prompt has no messages; every pair needs one"
        )
    msgs, idx = _parse_message_list(
        value,
        where,
        "prompt",
        roles,
        role_key="role",
        content_key="content",
        alt_keys=("from", "value"),
    )
    check_turns(msgs, where, "prompt", require_response=False, index_of=idx)
    if msgs[-1].role != "user":
        raise RowError(
            where,
            f"prompt[{idx[-1]}]",
            "prompt_ends_with_assistant",
            f"the prompt must end with a user turn (the answers reply to it), but it ends with "
            f"a {msgs[-1].role} message; move that message into chosen/rejected or drop it",
        )
    return tuple(msgs)


def _answer(value: Any, where: str, key: str, roles: Mapping[str, str]) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        msgs, _ = _parse_message_list(
            value, where, key, roles, role_key="role", content_key="content"
        )
        if len(msgs) != 1 or msgs[0].role != "assistant":
            got = ", ".join(m.role for m in msgs) or "no messages"
            raise RowError(
                where,
                key,
                "wrong_type",
                f"{key} must be one assistant message (TRL's conversational shape), got {got}",
            )
        text = msgs[0].content
    else:
        raise RowError(
            where,
            key,
            "wrong_type",
            f"{key} must be a string or a list with one assistant message, got "
            f"{type(value).__name__} {_short(value)}",
        )
    if not text.strip():
        raise RowError(
            where,
            key,
            "empty_assistant_content",
            f"{key} is empty; a pair needs two real answers",
        )
    return text


def _implicit_prompt(
    obj: Mapping[str, Any], where: str, roles: Mapping[str, str]
) -> tuple[tuple[Message, ...], str, str]:
    """TRL's implicit prompt: chosen and rejected are whole conversations sharing the prompt."""
    convs = []
    for key in ("chosen", "rejected"):
        if not isinstance(obj[key], list):
            raise RowError(
                where,
                "prompt",
                "missing_field",
                "the row has no 'prompt'; without one, chosen and rejected must be whole "
                f"conversations (message lists) sharing the prompt, but {key} is "
                f"{type(obj[key]).__name__}. Add the prompt field",
            )
        msgs, idx = _parse_message_list(
            obj[key], where, key, roles, role_key="role", content_key="content"
        )
        check_turns(msgs, where, key, index_of=idx)
        convs.append(msgs)
    chosen, rejected = convs
    if chosen[:-1] != rejected[:-1]:
        raise RowError(
            where,
            "rejected",
            "prompt_mismatch",
            "chosen and rejected must share every message but the last (the prompt); they "
            "differ earlier. Give the prompt as its own field",
        )
    prompt = tuple(chosen[:-1])
    if not prompt:
        raise RowError(where, "prompt", "empty_prompt", "the conversations have no prompt")
    return prompt, chosen[-1].content, rejected[-1].content


# --------------------------------------------------------------------------- reading


def read_pairs(data: DataConfig, exclude: Path | None = None) -> ReadResult:
    """Read and validate every source's preference rows, keeping file order.

    Raises:
        RowError: on the first bad row when `data.on_bad_row` is `error`.
        InstillError: for file-level problems and for a source without a single row.
    """
    return read_rows(data, _parse_rows, PreferencePair, exclude)


def _parse_rows(
    rows: Iterator[RawRow | RowError], src: SourceConfig
) -> Iterator[PreferencePair | RowError]:
    for raw in rows:
        if isinstance(raw, RowError):
            yield raw
            continue
        try:
            yield parse_preference_row(raw.data, raw.location, src.columns, src.roles)
        except RowError as e:
            e.row = raw.data
            yield e


# --------------------------------------------------------------------------- encoding


@dataclass
class PairExample:
    """One encoded pair: both answers as whole sequences sharing `prompt_length` prompt ids."""

    chosen: TokenizedExample
    rejected: TokenizedExample
    prompt_length: int
    source: str = ""

    @property
    def truncated(self) -> bool:
        return self.chosen.truncated or self.rejected.truncated


def answer_renderer(renderer: Renderer) -> Renderer:
    """`renderer` with the masking that trains only the final answer (any `data.masking`)."""
    if renderer.strategy == "last_assistant":
        return renderer
    return Renderer(renderer.tokenizer, renderer.template, "last_assistant")


def encode_pairs(
    renderer: Renderer, pairs: Sequence[PreferencePair], max_length: int, policy: str
) -> list[PairExample | Rejected]:
    """Render, mask and truncate each pair; results are in input order.

    Args:
        renderer: the renderer SFT uses (its masking strategy is replaced: only the answer is
            trained).
        pairs: the validated pairs.
        max_length: tokens per sequence.
        policy: `drop_row` drops a pair with a sequence longer than `max_length`; the others
            cut the answer's end (a prompt that leaves no room for an answer token drops it).
    """
    renderer = answer_renderer(renderer)
    convs = [c for p in pairs for c in (p.conversation(p.chosen), p.conversation(p.rejected))]
    failed: dict[int, TemplateError] = {}
    encoded = renderer.encode_many(convs, on_error=failed.__setitem__)
    out: list[PairExample | Rejected] = []
    for k, pair in enumerate(pairs):
        problem = failed.get(2 * k) or failed.get(2 * k + 1)
        if problem is not None:
            out.append(Rejected(pair.source, "template_error", str(problem), row=pair.to_dict()))
            continue
        chosen, rejected = encoded[2 * k], encoded[2 * k + 1]
        assert chosen is not None and rejected is not None  # failures are in `failed`
        start = _answer_start(chosen)
        if (
            start != _answer_start(rejected)
            or chosen.input_ids[:start] != (rejected.input_ids[:start])
        ):
            out.append(
                Rejected(
                    pair.source,
                    "template_error",
                    f"template {renderer.template.name!r} renders the prompt differently "
                    "depending on the answer, so the pair has no common prompt",
                    row=pair.to_dict(),
                )
            )
            continue
        longest = max(len(chosen.input_ids), len(rejected.input_ids))
        if longest > max_length and (policy == "drop_row" or start >= max_length):
            why = (
                f"its prompt alone is {start} tokens"
                if start >= max_length
                else f"an answer makes it {longest} tokens and data.truncation is drop_row"
            )
            out.append(
                Rejected(
                    pair.source,
                    "too_long",
                    f"longer than data.max_length={max_length} tokens: {why}",
                    row=pair.to_dict(),
                )
            )
            continue
        chosen, rejected = (_cut(e, max_length) for e in (chosen, rejected))
        for e, name in ((chosen, "chosen"), (rejected, "rejected")):
            e.pieces = []
            e.source = f"{pair.source} ({name})"
        out.append(PairExample(chosen, rejected, start, pair.source))
    return out


def _answer_start(example: TokenizedExample) -> int:
    """Index of the answer's first token: the first labelled position (the prompt has none)."""
    return next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)


def _cut(example: TokenizedExample, max_length: int) -> TokenizedExample:
    if len(example.input_ids) <= max_length:
        return example
    return TokenizedExample(
        example.input_ids[:max_length], example.labels[:max_length], example.source, True
    )


# --------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class PreferenceRows:
    """Prepared pairs: row `i` of `chosen` and of `rejected` are the two answers of pair `i`."""

    chosen: TokenRows
    rejected: TokenRows
    prompt_lengths: np.ndarray  # [pairs] int64
    row_ids: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.chosen)

    def token_count(self, idx: Sequence[int]) -> int:
        """Tokens of both answers' sequences of pairs `idx`."""
        return self.chosen.token_count(idx) + self.rejected.token_count(idx)

    def fingerprint(self) -> str:
        """A hash of every id and label, to key caches of values computed from the rows."""
        h = hashlib.sha256()
        for rows in (self.chosen, self.rejected):
            for array in (rows.input_ids, rows.labels, rows.offsets):
                h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    @classmethod
    def from_examples(cls, examples: Sequence[PairExample]) -> PreferenceRows:
        def rows(side: str) -> TokenRows:
            seqs = [getattr(e, side) for e in examples]
            return TokenRows.from_lists([s.input_ids for s in seqs], [s.labels for s in seqs])

        lengths = np.asarray([e.prompt_length for e in examples], dtype=np.int64)
        return cls(rows("chosen"), rows("rejected"), lengths, tuple(e.source for e in examples))

    def save(self, directory: str | Path) -> None:
        """Write the pairs into `directory` atomically (see the module docstring)."""
        with atomic_directory(directory) as tmp:
            self.chosen.save_arrays(tmp / "chosen")
            self.rejected.save_arrays(tmp / "rejected")
            np.save(tmp / "prompt_lengths.npy", self.prompt_lengths)
            (tmp / "row_ids.json").write_text(json.dumps(list(self.row_ids)), encoding="utf-8")
            (tmp / "kind.json").write_text(json.dumps({"kind": KIND}), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> PreferenceRows:
        """Memory-map pairs saved by `save`."""
        d = Path(directory)
        if not (d / "chosen").is_dir():
            raise InstillError(
                f"{d} holds no preference pairs (it was prepared for train.objective=sft?); "
                "prepare again with train.objective=dpo and prompt/chosen/rejected rows"
            )
        ids = json.loads((d / "row_ids.json").read_text(encoding="utf-8"))
        return cls(
            TokenRows.load(d / "chosen"),
            TokenRows.load(d / "rejected"),
            np.load(d / "prompt_lengths.npy"),
            tuple(ids),
        )


# --------------------------------------------------------------------------- the whole stage


def prepare_preferences(
    config: Config, tokenizer: PreTrainedTokenizerBase, progress: bool = True
) -> Prepared:
    """`instill prepare` for `train.objective: dpo`: write `<output_dir>/prepared/` as pairs.

    Writes the same reports as SFT's prepare (stats.json with `kind: preference`, rejected.jsonl,
    the resolved config, the tokenizer) and `prepared_val/` with `data.val_fraction`.

    Returns:
        `Prepared` whose `examples` are the pairs' sequences, chosen then rejected per pair.

    Raises:
        InstillError: for bad input, an optional `data.curate` step (not applied to pairs), or a
            source that contributes no pair.
    """
    data = config.require_data("prepare")
    cur = data.curate
    enabled = [
        name
        for name, on in (
            ("near_dedup", cur.near_dedup.enabled),
            ("filters", cur.filters.enabled),
            ("decontaminate", cur.decontaminate.enabled),
        )
        if on
    ]
    if enabled:
        raise InstillError(
            f"data.curate.{enabled[0]} is enabled but curation works on single conversations, "
            "not on preference pairs (train.objective=dpo); curate the rows before building "
            f"pairs, or set data.curate.{enabled[0]}.enabled=false"
        )
    out = Path(config.output_dir)
    renderer, added = build_renderer(config, tokenizer)
    t0 = time.perf_counter()
    read = read_pairs(data, exclude=out)
    rejected: list[Rejected] = list(read.rejected)
    examples: list[PairExample] = []
    validation: list[PairExample] = []
    problems: list[str] = []
    for k, (src, stats, pairs) in enumerate(
        zip(data.sources, read.sources, read.per_source, strict=True)
    ):
        part = encode_pairs(renderer, pairs, data.max_length, data.truncation)
        if data.on_bad_row == "error":
            for r in part:
                if isinstance(r, Rejected) and r.reason == "template_error":
                    raise TemplateError(f"{r.location}: {r.message}\n({SKIP_HINT})")
        kept = [r for r in part if isinstance(r, PairExample)]
        rejected += [r for r in part if not isinstance(r, PairExample)]
        stats.rows_kept = len(kept)
        rng = random.Random(config.seed * 1000 + k)
        if data.val_fraction and kept:
            held = set(rng.sample(range(len(kept)), round(data.val_fraction * len(kept))))
            validation += [e for i, e in enumerate(kept) if i in held]
            kept = [e for i, e in enumerate(kept) if i not in held]
            stats.rows_validation = len(held)
        mixed = mix_source(kept, src.weight, src.max_examples, rng)
        stats.examples_after_mixing = len(mixed)
        examples += mixed
        if not kept:
            problems.append(
                f"source {src.label}: none of its {stats.rows_read} rows is a usable pair "
                "(see rejected.jsonl for why)"
                if not stats.rows_validation
                else f"source {src.label}: data.val_fraction={data.val_fraction} leaves none "
                "of its pairs for training"
            )
        elif not mixed:
            problems.append(
                f"source {src.label}: weight {src.weight} keeps 0 of its {len(kept)} pairs; "
                "raise the weight or remove the source"
            )
    stats = pair_stats(read, examples, rejected, renderer, added, data)
    stats["validation_examples"] = len(validation)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    stats["rows_per_second"] = round(stats["rows_read"] / max(stats["seconds"], 1e-9), 1)
    write_reports(out, config, rejected, stats)
    if problems:
        raise InstillError("\n".join(problems))
    PreferenceRows.from_examples(examples).save(out / "prepared")
    renderer.tokenizer.save_pretrained(str(out / "tokenizer"))
    if validation:
        PreferenceRows.from_examples(validation).save(out / "prepared_val")
    else:
        shutil.rmtree(out / "prepared_val", ignore_errors=True)
    sequences = [s for e in examples for s in (e.chosen, e.rejected)]
    shown = Renderer(tokenizer, renderer.template, "last_assistant")
    return Prepared(out, stats, sequences, rejected, shown)


def pair_stats(
    read: ReadResult,
    examples: list[PairExample],
    rejected: list[Rejected],
    renderer: Renderer,
    added: list[str],
    data: DataConfig,
) -> dict:
    """stats.json for pairs: SFT's keys (so reports read both) over both answers' sequences."""
    seqs = [s for e in examples for s in (e.chosen, e.rejected)]
    return {
        "kind": KIND,
        "pairs": len(examples),
        **row_and_token_stats(read, rejected, examples, seqs),
        "truncated_rows": sum(e.truncated for e in examples),
        "rows_with_dropped_turns": 0,
        "zero_supervision_rows": 0,
        "template": renderer.template.name,
        "end_of_turn": renderer.template.end_of_turn,
        "masking": "answer only (preference pairs)",
        "added_tokens": added,
        "max_length": data.max_length,
        "packing": None,
        "curation": None,
    }
