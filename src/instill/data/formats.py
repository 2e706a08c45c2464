"""Row formats: Alpaca, ShareGPT, OpenAI messages, prompt/completion and plain text.

Each format is a parser `(row dict, location) -> Conversation` registered under its name with a
`detect` predicate on the row's keys. Parsers validate everything and raise `RowError` naming the
file, the line and the field, with a reason code (used to count skipped rows) and a fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from instill.data.conversation import Conversation, Message
from instill.errors import InstillError, RowError

ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
}

Parser = Callable[[Mapping[str, Any], str, Mapping[str, str]], Conversation]


@dataclass(frozen=True)
class RowFormat:
    """A registered row format."""

    name: str
    parse: Parser
    detect: Callable[[Mapping[str, Any]], bool]
    fields: tuple[str, ...]


_FORMATS: dict[str, RowFormat] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register_format(fmt: RowFormat) -> None:
    """Register a row format; refuses duplicates and names that are not lowercase identifiers."""
    if not _NAME_RE.match(fmt.name) or fmt.name == "auto":
        raise ValueError(
            f"format name {fmt.name!r} must match {_NAME_RE.pattern} and not be 'auto'"
        )
    if fmt.name in _FORMATS:
        raise ValueError(f"format {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt


def format_names() -> list[str]:
    return list(_FORMATS)


def get_format(name: str) -> RowFormat:
    if name not in _FORMATS:
        raise InstillError(f"unknown format {name!r}; choose auto or one of {', '.join(_FORMATS)}")
    return _FORMATS[name]


def detect_format(row: Mapping[str, Any], where: str) -> RowFormat:
    """Pick the format whose fields the row has (first match in registration order).

    Raises:
        RowError: `undetectable_format`, saying which fields each format expects and how to set
            `format:` / `columns:`; with `on_bad_row: skip` the next row is tried.
    """
    for fmt in _FORMATS.values():
        if fmt.detect(row):
            return fmt
    keys = ", ".join(sorted(map(str, row))) or "no keys"
    expected = "; ".join(f"{f.name}: {'/'.join(f.fields)}" for f in _FORMATS.values())
    raise RowError(
        where,
        None,
        "undetectable_format",
        f"cannot detect the data format from this row ({keys}). Expected fields — {expected}. "
        "Set `format:` on the source, and `columns:` to map your column names "
        "(e.g. columns: {instruction: question, output: answer})",
    )


def apply_columns(row: Mapping[str, Any], columns: Mapping[str, str], where: str) -> dict:
    """Rename the source's columns to the format's field names (`columns: {field: column}`).

    All renames read from the original row, so swaps and one column feeding two fields work.
    """
    if not columns:
        return dict(row)
    for field_name, column in columns.items():
        if column not in row:
            raise RowError(
                where,
                column,
                "missing_field",
                f"column {column!r} (mapped to {field_name!r} by `columns`) is missing; "
                f"the row has {', '.join(sorted(map(str, row)))}",
            )
    mapped = set(columns.values())
    out = {k: v for k, v in row.items() if k not in mapped}
    for field_name, column in columns.items():
        out[field_name] = row[column]
    return out


def check_object(row: Any, where: str) -> Mapping[str, Any]:
    """A row must be a JSON object (a mapping of field names)."""
    if not isinstance(row, Mapping):
        raise RowError(
            where,
            None,
            "wrong_type",
            f"expected a JSON object per row, got {type(row).__name__} {_short(row)}",
        )
    return row


# --------------------------------------------------------------------------- shared checks


def _string(
    row: Mapping[str, Any], key: str, where: str, *, required: bool, field_path: str | None = None
) -> str | None:
    path = field_path or key
    if key not in row or row[key] is None:
        if required:
            raise RowError(
                where,
                path,
                "missing_field",
                f"required field is missing; add '{key}' to the row or map your column "
                f"to it with `columns: {{{key}: <your column>}}`",
            )
        return None
    value = row[key]
    if isinstance(value, list) and all(isinstance(p, Mapping) for p in value):
        value = _join_text_parts(value, where, path)
    if not isinstance(value, str):
        raise RowError(
            where,
            path,
            "non_string_content",
            f"expected a string, got {type(value).__name__} {_short(value)}; "
            "convert the value to text",
        )
    return value


def _join_text_parts(parts: list, where: str, path: str) -> str:
    """OpenAI-style content parts: only text parts are supported."""
    texts = []
    for i, p in enumerate(parts):
        if p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise RowError(
                where,
                f"{path}[{i}]",
                "non_string_content",
                f"content part of type {p.get('type')!r} is not supported; only text "
                "parts ({'type': 'text', 'text': ...}) can be trained on",
            )
        texts.append(p["text"])
    return "".join(texts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_turns(
    messages: list[Message],
    where: str,
    field_path: str,
    *,
    require_response: bool = True,
    index_of: list[int] | None = None,
) -> None:
    """Validate order: optional system first, then user/assistant alternating from the user.

    Args:
        messages: the parsed messages.
        where: the row's location.
        field_path: the list field name, e.g. `messages` or `conversations`.
        require_response: training rows must end with a non-empty assistant turn.
        index_of: original list index of each message (for error paths).
    """
    idx = index_of or list(range(len(messages)))
    if not messages:
        raise RowError(where, field_path, "no_turns", "the conversation has no messages")
    expected = "user"
    for k, m in enumerate(messages):
        path = f"{field_path}[{idx[k]}]"
        if m.role == "system":
            if k != 0:
                raise RowError(
                    where,
                    path,
                    "misplaced_system",
                    "a system message may only come first; merge it into the first "
                    "system message or drop it",
                )
            continue
        if m.role != expected:
            raise RowError(
                where,
                path,
                "not_alternating",
                f"expected a {expected} turn here but got {m.role}; turns must "
                "alternate user/assistant starting with the user (merge consecutive "
                "turns of the same role)",
            )
        if m.role == "assistant" and not m.content.strip():
            raise RowError(
                where,
                f"{path}.content",
                "empty_assistant_content",
                "assistant content is empty; there is nothing to train on — fill it "
                "in or remove the turn",
            )
        expected = "assistant" if expected == "user" else "user"
    if require_response:
        if not any(m.role == "assistant" for m in messages):
            raise RowError(
                where,
                field_path,
                "no_assistant_turn",
                "the conversation has no assistant turn, so nothing would be trained",
            )
        if messages[-1].role != "assistant":
            raise RowError(
                where,
                f"{field_path}[{idx[-1]}]",
                "ends_with_user",
                "the conversation ends with a user turn that has no answer; remove "
                "the trailing turn or add the assistant's reply",
            )


def _parse_message_list(
    value: Any,
    where: str,
    path: str,
    roles: Mapping[str, str],
    *,
    role_key: str,
    content_key: str,
    alt_keys: tuple[str, str] | None = None,
) -> tuple[list[Message], list[int]]:
    if not isinstance(value, list):
        raise RowError(
            where,
            path,
            "wrong_type",
            f"expected a list of messages, got {type(value).__name__} {_short(value)}",
        )
    out: list[Message] = []
    index_of: list[int] = []
    for i, m in enumerate(value):
        mpath = f"{path}[{i}]"
        if not isinstance(m, Mapping):
            raise RowError(
                where,
                mpath,
                "wrong_type",
                f"expected a message object, got {type(m).__name__} {_short(m)}",
            )
        rk, ck = role_key, content_key
        if rk not in m and alt_keys and alt_keys[0] in m:
            rk, ck = alt_keys
        raw_role = m.get(rk)
        if raw_role is None:
            raise RowError(where, f"{mpath}.{rk}", "missing_field", f"message has no '{rk}' field")
        if not isinstance(raw_role, str):
            raise RowError(
                where,
                f"{mpath}.{rk}",
                "wrong_type",
                f"role must be a string, got {type(raw_role).__name__} {_short(raw_role)}",
            )
        role = roles.get(raw_role) or ROLE_ALIASES.get(raw_role.lower())
        if role is None:
            known = sorted(set(ROLE_ALIASES) | set(roles))
            raise RowError(
                where,
                f"{mpath}.{rk}",
                "unknown_role",
                f"unknown role {raw_role!r}; expected one of {', '.join(known)} (map "
                f"other names with `roles: {{{raw_role}: assistant}}` on the source)",
            )
        content = _string(m, ck, where, required=True, field_path=f"{mpath}.{ck}")
        train = m.get("train", m.get("weight"))
        if train is not None:
            if isinstance(train, bool) or train in (0, 1):
                train = bool(train)
            else:
                raise RowError(
                    where,
                    f"{mpath}.train",
                    "wrong_type",
                    f"train flag must be true/false (or weight 0/1), got {train!r}",
                )
        out.append(Message(role, content, train=train))  # type: ignore[arg-type]
        index_of.append(i)
    return out, index_of


# --------------------------------------------------------------------------- the formats


def parse_alpaca(row: Mapping[str, Any], where: str, roles: Mapping[str, str]) -> Conversation:
    instruction = _string(row, "instruction", where, required=True)
    context = _string(row, "input", where, required=False)
    output = _string(row, "output", where, required=True)
    system = _string(row, "system", where, required=False)
    if not instruction.strip():
        raise RowError(
            where,
            "instruction",
            "empty_instruction",
            "instruction is empty; every Alpaca row needs an instruction",
        )
    if not output.strip():
        raise RowError(
            where,
            "output",
            "empty_assistant_content",
            "output is empty; there is nothing to train on — fill it in or drop the row",
        )
    msgs = []
    if system:
        msgs.append(Message("system", system))
    msgs.append(Message("user", instruction, context=context or None))
    msgs.append(Message("assistant", output))
    return Conversation(tuple(msgs), source=where)


def parse_sharegpt(row: Mapping[str, Any], where: str, roles: Mapping[str, str]) -> Conversation:
    if "conversations" not in row:
        raise RowError(where, "conversations", "missing_field", "required field is missing")
    msgs, idx = _parse_message_list(
        row["conversations"],
        where,
        "conversations",
        roles,
        role_key="from",
        content_key="value",
        alt_keys=("role", "content"),
    )
    system = _string(row, "system", where, required=False)
    if system and not (msgs and msgs[0].role == "system"):
        msgs.insert(0, Message("system", system))
        idx.insert(0, -1)
    check_turns(msgs, where, "conversations", index_of=idx)
    return Conversation(tuple(msgs), source=where)


def parse_messages(row: Mapping[str, Any], where: str, roles: Mapping[str, str]) -> Conversation:
    if "messages" not in row:
        raise RowError(where, "messages", "missing_field", "required field is missing")
    msgs, idx = _parse_message_list(
        row["messages"],
        where,
        "messages",
        roles,
        role_key="role",
        content_key="content",
        alt_keys=("from", "value"),
    )
    check_turns(msgs, where, "messages", index_of=idx)
    return Conversation(tuple(msgs), source=where)


def parse_prompt_completion(
    row: Mapping[str, Any], where: str, roles: Mapping[str, str]
) -> Conversation:
    for key in ("prompt", "completion"):
        if key not in row or row[key] is None:
            raise RowError(where, key, "missing_field", "required field is missing")
    prompt = row["prompt"]
    completion = row["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        if not completion.strip():
            raise RowError(
                where,
                "completion",
                "empty_assistant_content",
                "completion is empty; there is nothing to train on",
            )
        msgs = [Message("user", prompt), Message("assistant", completion)]
        check_turns(msgs, where, "prompt")
        return Conversation(tuple(msgs), source=where)
    if isinstance(prompt, list) and isinstance(completion, list):
        p, _ = _parse_message_list(
            prompt, where, "prompt", roles, role_key="role", content_key="content"
        )
        c, _ = _parse_message_list(
            completion, where, "completion", roles, role_key="role", content_key="content"
        )
        if not c or any(m.role != "assistant" for m in c):
            raise RowError(
                where,
                "completion",
                "not_alternating",
                "completion messages must all be assistant turns",
            )
        msgs = p + c
        check_turns(msgs, where, "prompt+completion")
        return Conversation(tuple(msgs), source=where)
    bad = "prompt" if not isinstance(prompt, (str, list)) else "completion"
    value = row[bad]
    raise RowError(
        where,
        bad,
        "non_string_content",
        f"prompt and completion must both be strings or both be message lists; got "
        f"prompt={type(prompt).__name__}, completion={type(completion).__name__} "
        f"({_short(value)})",
    )


def parse_text(row: Mapping[str, Any], where: str, roles: Mapping[str, str]) -> Conversation:
    text = _string(row, "text", where, required=True)
    if not text.strip():
        raise RowError(where, "text", "empty_text", "text is empty; drop the row")
    return Conversation(text=text, source=where)


register_format(RowFormat("messages", parse_messages, lambda r: "messages" in r, ("messages",)))
register_format(
    RowFormat("sharegpt", parse_sharegpt, lambda r: "conversations" in r, ("conversations",))
)
register_format(
    RowFormat(
        "alpaca",
        parse_alpaca,
        lambda r: "instruction" in r and "output" in r,
        ("instruction", "input?", "output", "system?"),
    )
)
register_format(
    RowFormat(
        "prompt_completion",
        parse_prompt_completion,
        lambda r: "prompt" in r and "completion" in r,
        ("prompt", "completion"),
    )
)
register_format(RowFormat("text", parse_text, lambda r: "text" in r, ("text",)))


def parse_row(
    row: Any,
    where: str,
    fmt: RowFormat | None,
    columns: Mapping[str, str],
    roles: Mapping[str, str],
) -> tuple[Conversation, RowFormat]:
    """Turn one raw row into a validated `Conversation`.

    Args:
        row: the decoded row.
        where: its location, for errors.
        fmt: the source's format, or None to detect it from this row.
        columns: the source's column mapping.
        roles: the source's extra role names.

    Returns:
        The conversation and the format used (the caller keeps it for the file's next rows).

    Raises:
        RowError: naming the location, the field, a reason code and the fix.
    """
    obj = apply_columns(check_object(row, where), columns, where)
    fmt = fmt or detect_format(obj, where)
    return fmt.parse(obj, where, roles), fmt
