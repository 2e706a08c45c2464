"""Self-Instruct's bootstrap, in the data layer: seed tasks, teacher prompts, parsing, filters.

The pipeline (`instill.pipelines.synth`) drives a teacher; everything here is a pure function of
text, so each step is tested without a model:

1. `read_seed_tasks` reads the seed pool: Self-Instruct's seed format (`instruction`,
   `instances: [{input, output}]`, `is_classification`), or any training row format instill
   reads (Alpaca, messages, ShareGPT, prompt/completion), through instill's own row parser, so
   a bad row fails the same way as in `instill prepare`: a `RowError` naming file, line, field
   and fix.
2. `bootstrap_messages` asks a CHAT teacher for new tasks. Self-Instruct prompted a completion
   model with a numbered list ending in `"9."`; the default teacher here is a 135M chat model,
   so the same numbered list goes into one short, plain user turn that says which number to
   continue from and to write one task per line.
3. `parse_instructions` pulls the numbered items out of the reply (see its docstring for every
   rule), and `InstructionFilter` applies Self-Instruct's heuristic filters (length, blocklisted
   words a text model cannot act on, "Write a program", leading punctuation or non-ASCII). The
   ROUGE-L novelty filter lives in `instill.data.synth.rouge`.
4. `input_messages` / `parse_input` ask the teacher for an example input for a new task (or
   "No input needed."), and `response_messages` builds the user turn a response is generated
   for: the instruction, then a blank line and the input, as `Message.text_for_chat` renders an
   Alpaca row, so synthesized rows train the way they were generated.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instill.data.formats import check_object, parse_row
from instill.data.sources import RawRow, list_files, read_file
from instill.errors import InstillError, RowError

__all__ = [
    "DEFAULT_BLOCKLIST",
    "FILTER_REASONS",
    "NO_INPUT",
    "InstructionFilter",
    "SeedTask",
    "bootstrap_messages",
    "first_new_number",
    "input_messages",
    "parse_input",
    "parse_instructions",
    "read_seed_tasks",
    "response_messages",
]

# --------------------------------------------------------------------------- seed tasks


@dataclass(frozen=True)
class SeedTask:
    """One seed task.

    Attributes:
        id: the row's `id`, else `<file stem>:<line>` (`<file stem>:<row>` in a JSON array).
        instruction: the task, stripped of surrounding whitespace.
        instances: `(input, output)` example pairs; input is "" when the task takes none.
        is_classification: Self-Instruct's flag (outputs are labels); False when absent.
        source: where the row is, `file:line N` (or `file[row N]`).
    """

    id: str
    instruction: str
    instances: tuple[tuple[str, str], ...]
    is_classification: bool = False
    source: str = ""


_LOCATION_NUMBER = re.compile(r"(?::line |\[row )(\d+)\]?$")


def read_seed_tasks(path: str | Path) -> list[SeedTask]:
    """Read seed tasks from a file (or every data file of a directory, in sorted order).

    A row with an `instances` field is in Self-Instruct's seed format (`id`, `instruction`,
    `instances: [{"input", "output"}]`, optional `is_classification`; other fields such as
    `name` or `motivation_app` are ignored). Any other row is parsed as a training row
    (format detected as `instill prepare` does): the first user turn is the instruction (an
    Alpaca `input` is the instance's input), the assistant turn after it the output.

    Args:
        path: a .jsonl / .json / .csv / .parquet file, or a directory of them.

    Returns:
        The tasks in file order.

    Raises:
        RowError: a malformed row (names file and line, the field and the fix), an empty
            instruction, or an id used twice.
        InstillError: a missing or unreadable file, or no seed tasks at all.
    """
    tasks: list[SeedTask] = []
    seen: dict[str, str] = {}
    for file in list_files(path):
        for item in read_file(file):
            if isinstance(item, RowError):
                raise item
            task = _seed_task(item, file)
            if task.id in seen:
                raise RowError(
                    task.source,
                    "id",
                    "duplicate_id",
                    f"id {task.id!r} is already used by the row at {seen[task.id]}; "
                    "give every seed task its own id (or drop the field to use file:line)",
                )
            seen[task.id] = task.source
            tasks.append(task)
    if not tasks:
        raise InstillError(
            f"{path}: no seed tasks found; add rows such as "
            '{"instruction": "...", "instances": [{"input": "", "output": "..."}]}'
        )
    return tasks


def _seed_task(raw: RawRow, file: Path) -> SeedTask:
    where = raw.location
    row = check_object(raw.data, where)
    task_id = _task_id(row, where, file)
    if "instances" in row:
        instruction = _required_text(row, "instruction", where)
        instances = _instances(row["instances"], where)
        is_classification = row.get("is_classification", False)
        if is_classification is None:
            is_classification = False
        if not isinstance(is_classification, bool):
            raise RowError(
                where,
                "is_classification",
                "wrong_type",
                f"must be true or false, got {is_classification!r}",
            )
        return SeedTask(task_id, instruction, instances, is_classification, where)
    conversation, _ = parse_row(row, where, None, {}, {})
    if conversation.is_text:
        raise RowError(
            where,
            "text",
            "no_instruction",
            "a plain-text row has no instruction; seed tasks need an instruction and an "
            "example output (Alpaca instruction/input/output, messages, or Self-Instruct's "
            "instruction/instances)",
        )
    messages = conversation.messages
    first_user = next(i for i, m in enumerate(messages) if m.role == "user")
    user = messages[first_user]
    if not user.content.strip():
        raise RowError(
            where,
            "instruction",
            "empty_instruction",
            "the first user turn is empty; it is the seed task's instruction, so fill it in "
            "or drop the row",
        )
    output = next((m.content for m in messages[first_user + 1 :] if m.role == "assistant"), "")
    return SeedTask(task_id, user.content.strip(), ((user.context or "", output),), False, where)


def _task_id(row: Mapping[str, Any], where: str, file: Path) -> str:
    if row.get("id") is not None:
        value = row["id"]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise RowError(
                where, "id", "wrong_type", f"id must be a string or an integer, got {value!r}"
            )
        if str(value).strip():
            return str(value)
    match = _LOCATION_NUMBER.search(where)
    return f"{file.stem}:{match.group(1) if match else where}"


def _required_text(row: Mapping[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        got = "it is missing" if key not in row else f"got {type(value).__name__}"
        raise RowError(
            where, key, "missing_field", f"{key} must be a string ({got}); add the task's {key}"
        )
    if not value.strip():
        raise RowError(
            where,
            key,
            f"empty_{key}",
            f"{key} is empty; every seed task needs one, so fill it in or drop the row",
        )
    return value.strip()


def _instances(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise RowError(
            where,
            "instances",
            "wrong_type",
            f'instances must be a list of {{"input": ..., "output": ...}} objects, got '
            f"{type(value).__name__}",
        )
    out = []
    for i, instance in enumerate(value):
        path = f"instances[{i}]"
        if not isinstance(instance, Mapping):
            raise RowError(
                where,
                path,
                "wrong_type",
                f'each instance must be an object {{"input": ..., "output": ...}}, got '
                f"{type(instance).__name__}",
            )
        text_in = instance.get("input", "")
        text_out = instance.get("output")
        if text_in is None:
            text_in = ""
        if not isinstance(text_in, str):
            raise RowError(
                where,
                f"{path}.input",
                "wrong_type",
                f'input must be a string ("" when the task takes none), got '
                f"{type(text_in).__name__}",
            )
        if not isinstance(text_out, str) or not text_out.strip():
            problem = "is missing" if text_out is None else "must be a non-empty string"
            raise RowError(
                where,
                f"{path}.output",
                "empty_assistant_content",
                f"output {problem}; give the expected answer or drop the instance",
            )
        out.append((text_in, text_out))
    return tuple(out)


# --------------------------------------------------------------------------- stage 1 prompt


def _one_line(instruction: str) -> str:
    """An instruction as Self-Instruct's encode_prompt lists it: whitespace collapsed, no ':'."""
    return re.sub(r"\s+", " ", instruction).strip().rstrip(":")


def first_new_number(examples: Sequence[str]) -> int:
    """The number the teacher should give its first new task (examples are 1..len)."""
    return len(examples) + 1


def bootstrap_messages(examples: Sequence[str], n_new: int) -> list[dict[str, str]]:
    """Chat messages asking a teacher for `n_new` new tasks after a numbered list of examples.

    Args:
        examples: example instructions (seed and already generated), shown as "1. ...".
        n_new: how many new tasks to ask for.

    Returns:
        One user message, `[{"role": "user", "content": ...}]`.

    Raises:
        ValueError: no examples, an example that is empty, or `n_new` < 1.
    """
    if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 1:
        raise ValueError(f"n_new must be an integer >= 1, got {n_new!r}")
    if not examples:
        raise ValueError("bootstrap_messages needs at least one example instruction")
    lines = []
    for i, example in enumerate(examples, start=1):
        text = _one_line(example)
        if not text:
            raise ValueError(f"example {i} is empty; pass only non-empty instructions")
        lines.append(f"{i}. {text}")
    start = first_new_number(examples)
    end = start + n_new - 1
    numbers = f"number {start}" if n_new == 1 else f"numbers {start} to {end}"
    task_word = "task" if n_new == 1 else "tasks"
    content = (
        "Here is a list of tasks:\n\n"
        + "\n".join(lines)
        + f"\n\nWrite {n_new} new {task_word} that are different from these and from each "
        f"other. Continue the list with {numbers}, one task per line. Write only the tasks."
    )
    return [{"role": "user", "content": content}]


# --------------------------------------------------------------------------- parsing

# "9. text", "9) text", "9: text", "Task 9: text", "**9.** text", "- 9. text", "#9. text".
_NUMBERED = re.compile(
    r"^[\s>*#-]*(?:\*\*)?(?:(?:task|instruction)\s*#?\s*)?(\d{1,4})\s*[.):]\s*(?:\*\*)?\s*(.*)$",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^\s*[-*\u2022]\s+(.*)$")
# A label a model puts before an item's text ("9. Instruction: ...").
_ITEM_LABEL = re.compile(r"^(?:\*\*)?(?:task|instruction|new task)\s*:\s*(?:\*\*)?\s*", re.I)
# A line that belongs to an example, not to the task ("Output: ...") ends the item.
_EXAMPLE_LABEL = re.compile(r"^\s*(?:\*\*)?(?:input|output|answer|response|example)\b.*:", re.I)
# Chat-template or role markers: the model ran past its turn; nothing after is trusted.
_GARBAGE = re.compile(
    r"^\s*(?:<\||</?s>|<\/?(?:im_start|im_end)|#{3,}|(?:user|assistant|human|system)\s*:)",
    re.IGNORECASE,
)


def parse_instructions(
    text: str, first_number: int | None = None, truncated: bool = False
) -> list[str]:
    """The new instructions in a teacher's reply to `bootstrap_messages`.

    Rules, in order:

    - Items are numbered lines: `9. ...`, `9) ...`, `9: ...`, `Task 9: ...`, `**9.** ...`. A
      following non-blank, un-numbered line continues the item (a wrapped line); a blank line
      ends it, so a closing remark after the list is not taken in. A line that labels an example
      (`Input:`, `Output:`, `Answer:`, `Example...:`) ends the item too; the model has started
      answering the task.
    - A leading `Instruction:` / `Task:` label and surrounding `**` are removed; whitespace is
      collapsed.
    - With `first_number` (what the prompt asked to continue from): if some item has a number
      >= `first_number`, items numbered below it are the examples echoed back and are dropped;
      a model that restarted at 1 keeps all its items. An un-numbered first line directly
      followed by item `first_number + 1` is item `first_number` (the model continued the
      "9." it was given).
    - Garbage stops parsing: chat-template markers (`<|...`, `</s>`), role labels
      (`User:`, `Assistant:`), `###` headers, or a number that does not increase (the model
      is looping or starting a second list).
    - Without any numbered line, `-`/`*` bullet lines are the items. Plain lines are never
      taken: they cannot be told apart from a preamble or a remark.
    - `truncated` (the reply hit the token limit, e.g. `finish_reason == "length"`) drops the
      last item, which may be cut off, as Self-Instruct does.
    - Empty items and repeats within the reply (ignoring case) are dropped.

    Args:
        text: the teacher's reply.
        first_number: the number the first new task should have (`first_new_number`).
        truncated: whether the reply was cut at the token limit.

    Returns:
        The instructions, in order, each on one line.
    """
    items = _numbered_items(text, first_number)
    if not items:
        items = _bullet_items(text)
    if truncated and items:
        items = items[:-1]
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        cleaned = _clean_item(item)
        key = cleaned.casefold()
        if cleaned and key not in seen:
            seen.add(key)
            out.append(cleaned)
    return out


def _clean_item(item: str) -> str:
    item = re.sub(r"\s+", " ", item).strip()
    item = _ITEM_LABEL.sub("", item)
    item = item.strip().removeprefix("**").removesuffix("**").strip()
    return item


def _numbered_items(text: str, first_number: int | None) -> list[str]:
    items: list[tuple[int, list[str]]] = []  # (number, lines)
    leading: list[str] = []  # an un-numbered first line, maybe item `first_number`
    open_item = False  # the last item may still take continuation lines
    for line in text.splitlines():
        if _GARBAGE.match(line):
            break
        numbered = _NUMBERED.match(line)
        if numbered:
            number = int(numbered.group(1))
            if items and number <= items[-1][0]:
                break  # looping, or a second list
            items.append((number, [numbered.group(2)]))
            open_item = True
        elif not line.strip() or _EXAMPLE_LABEL.match(line):
            open_item = False  # a blank line or an example's label ends the item
        elif open_item:
            items[-1][1].append(line)
        elif not items and not leading:
            leading = [line]
    if not items:
        return []
    if first_number is not None:
        if leading and items[0][0] == first_number + 1:
            items.insert(0, (first_number, leading))
        if any(number >= first_number for number, _ in items):
            items = [item for item in items if item[0] >= first_number]
    return [" ".join(lines) for _, lines in items]


def _bullet_items(text: str) -> list[str]:
    items = []
    for line in text.splitlines():
        if _GARBAGE.match(line):
            break
        bullet = _BULLET.match(line)
        if bullet:
            items.append(bullet.group(1))
    return items


# --------------------------------------------------------------------------- filters

#: Self-Instruct's blocklist: tasks a text-only model cannot do (whole words, any case).
DEFAULT_BLOCKLIST: tuple[str, ...] = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
)

#: Every reason `InstructionFilter.reason` can return, in the order they are checked.
FILTER_REASONS: tuple[str, ...] = (
    "too_short",
    "too_long",
    "blocklist",
    "program",
    "leading_punctuation",
    "non_ascii",
)


@dataclass(frozen=True)
class InstructionFilter:
    """Self-Instruct's heuristic filters for a generated instruction.

    Attributes:
        min_words: fewer whitespace-separated words is `too_short` (>= 1).
        max_words: more words is `too_long` (>= min_words).
        blocklist: words or phrases matched whole and case-insensitively (a phrase's spaces
            match any whitespace); a hit is `blocklist`. Empty to turn the check off.
    """

    min_words: int = 3
    max_words: int = 150
    blocklist: tuple[str, ...] = DEFAULT_BLOCKLIST
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        for name in ("min_words", "max_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"InstructionFilter.{name} must be an integer, got {value!r}")
        if self.min_words < 1:
            raise ValueError(
                f"InstructionFilter.min_words must be >= 1, got {self.min_words} "
                "(an instruction needs at least one word)"
            )
        if self.max_words < self.min_words:
            raise ValueError(
                f"InstructionFilter.max_words ({self.max_words}) must be >= min_words "
                f"({self.min_words})"
            )
        if isinstance(self.blocklist, str) or not isinstance(self.blocklist, (tuple, list)):
            raise ValueError(
                "InstructionFilter.blocklist must be a list of words or phrases, got "
                f"{self.blocklist!r}"
            )
        words = tuple(self.blocklist)
        for i, word in enumerate(words):
            if not isinstance(word, str) or not word.strip():
                raise ValueError(
                    f"InstructionFilter.blocklist[{i}] must be a non-empty string, got {word!r}"
                )
        object.__setattr__(self, "blocklist", words)
        if words:
            alternatives = "|".join(
                r"\s+".join(re.escape(part) for part in word.split()) for word in words
            )
            pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
            object.__setattr__(self, "_pattern", pattern)

    def reason(self, text: str) -> str | None:
        """Why an instruction is rejected, or None when it passes.

        Args:
            text: the instruction (surrounding whitespace is ignored).

        Returns:
            The first failing reason of `FILTER_REASONS`, in that order, or None.
        """
        text = text.strip()
        n_words = len(text.split())
        if n_words < self.min_words:
            return "too_short"
        if n_words > self.max_words:
            return "too_long"
        if self._pattern is not None and self._pattern.search(text):
            return "blocklist"
        if text.lower().startswith("write a program"):
            return "program"
        if text[0] in string.punctuation:
            return "leading_punctuation"
        if not text[0].isascii():
            return "non_ascii"
        return None


# --------------------------------------------------------------------------- stage 2 prompts

#: What the teacher is asked to reply when a task takes no input.
NO_INPUT = "No input needed."

_INPUT_LABEL = re.compile(r"^\s*(?:\*\*)?(?:example\s+)?input\s*:?\s*(?:\*\*)?\s*:?\s*", re.I)
_NO_INPUT_REPLIES = ("no input needed", "no input", "none", "n/a", "<noinput>", "noinput")
_OUTPUT_LINE = re.compile(r"^\s*(?:\*\*)?(?:output|answer|response)\s*:", re.IGNORECASE)


def input_messages(instruction: str) -> list[dict[str, str]]:
    """Chat messages asking a teacher for one example input for a task.

    Args:
        instruction: the task.

    Returns:
        One user message; the teacher should reply with the input only, or exactly
        `NO_INPUT` when the task needs none.

    Raises:
        ValueError: an empty instruction.
    """
    task = _one_line(instruction)
    if not task:
        raise ValueError("input_messages needs a non-empty instruction")
    content = (
        f"Task: {task}\n\n"
        "Write one example input for this task: the text, question or data it should be "
        "applied to. Reply with the input only. If the task needs no input, reply exactly: "
        f"{NO_INPUT}"
    )
    return [{"role": "user", "content": content}]


def parse_input(text: str) -> str | None:
    """The example input in a teacher's reply to `input_messages`.

    A leading `Input:` / `Example input:` label is removed, as are surrounding code fences and
    quotes; an `Output:` / `Answer:` line and everything after it (the model solving the task)
    is cut.

    Args:
        text: the teacher's reply.

    Returns:
        The input (inner line breaks kept), or None when the reply says no input is needed
        ("No input needed.", "None", "N/A", `<noinput>`) or is empty.
    """
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        if _OUTPUT_LINE.match(line):
            lines = lines[:i]
            break
    body = "\n".join(lines).strip()
    if body.startswith("```") and body.endswith("```") and len(body) >= 6:
        body = body[3:-3]
        body = body.split("\n", 1)[1] if "\n" in body else body  # drop a ```lang tag line
    body = _INPUT_LABEL.sub("", body, count=1).strip()
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "\"'":
        body = body[1:-1].strip()
    marker = body.lower().rstrip(".!").strip()
    if not body or marker in _NO_INPUT_REPLIES:
        return None
    return body


def response_messages(
    instruction: str, input: str | None, system: str | None = None
) -> list[dict[str, str]]:
    """The chat messages a response to a task is generated for.

    Args:
        instruction: the task.
        input: its example input, or None / "" for none.
        system: an optional system prompt, sent first.

    Returns:
        `[system?, user]`: the user turn is the instruction, then a blank line and the input
        when there is one (how an Alpaca row with an `input` renders in a chat template).

    Raises:
        ValueError: an empty instruction.
    """
    task = instruction.strip()
    if not task:
        raise ValueError("response_messages needs a non-empty instruction")
    content = f"{task}\n\n{input.strip()}" if input and input.strip() else task
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    return messages
