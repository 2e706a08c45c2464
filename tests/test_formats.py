"""Each format, auto-detection, each file type, and every bad-row kind with its error text."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instill.config import validate_config
from instill.data.conversation import Message
from instill.data.prepare import read_conversations
from instill.errors import InstillError, RowError

from .conftest import base_config

ALPACA = {
    "instruction": "Reverse the word.",
    "input": "cat",
    "output": "tac",
    "system": "Be exact.",
}
SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "S"},
        {"from": "human", "value": "Q1"},
        {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "Q2"},
        {"from": "gpt", "value": "A2"},
    ]
}
MESSAGES = {
    "messages": [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1", "train": False},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
    ]
}
PROMPT_COMPLETION = {"prompt": "2+2?", "completion": "4"}
TEXT = {"text": "Plain text to model."}


def read(tmp_path, sources, **data):
    return read_conversations(validate_config(base_config(sources, tmp_path, **data)).data)


def one(tmp_path, write_jsonl, row, **src):
    path = write_jsonl("d.jsonl", [row])
    (conv,) = read(tmp_path, [{"path": str(path), **src}]).conversations
    return conv


def roles(conv):
    return [(m.role, m.content) for m in conv.messages]


def test_alpaca(tmp_path, write_jsonl):
    conv = one(tmp_path, write_jsonl, ALPACA)
    assert conv.messages == (
        Message("system", "Be exact."),
        Message("user", "Reverse the word.", context="cat"),
        Message("assistant", "tac"),
    )
    assert conv.source.endswith("d.jsonl:line 1")


def test_alpaca_without_input_or_system(tmp_path, write_jsonl):
    conv = one(tmp_path, write_jsonl, {"instruction": "Hi", "output": "Hello", "input": ""})
    assert conv.messages == (Message("user", "Hi"), Message("assistant", "Hello"))


def test_sharegpt(tmp_path, write_jsonl):
    conv = one(tmp_path, write_jsonl, SHAREGPT)
    assert roles(conv) == [
        ("system", "S"),
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
        ("assistant", "A2"),
    ]


def test_openai_messages_with_train_flag_and_text_parts(tmp_path, write_jsonl):
    row = json.loads(json.dumps(MESSAGES))
    row["messages"][2]["content"] = [{"type": "text", "text": "Q"}, {"type": "text", "text": "2"}]
    conv = one(tmp_path, write_jsonl, row)
    assert roles(conv) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2")]
    assert [m.train for m in conv.messages] == [None, False, None, None]


def test_prompt_completion_strings_and_message_lists(tmp_path, write_jsonl):
    assert roles(one(tmp_path, write_jsonl, PROMPT_COMPLETION)) == [
        ("user", "2+2?"),
        ("assistant", "4"),
    ]
    row = {
        "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        "completion": [{"role": "assistant", "content": "A"}],
    }
    assert roles(one(tmp_path, write_jsonl, row)) == [
        ("system", "S"),
        ("user", "Q"),
        ("assistant", "A"),
    ]


def test_plain_text(tmp_path, write_jsonl):
    conv = one(tmp_path, write_jsonl, TEXT)
    assert conv.is_text and conv.text == "Plain text to model." and conv.messages == ()


def test_explicit_format_and_column_mapping(tmp_path, write_jsonl):
    row = {"question": "Q", "answer": "A"}
    conv = one(
        tmp_path,
        write_jsonl,
        row,
        format="alpaca",
        columns={"instruction": "question", "output": "answer"},
    )
    assert roles(conv) == [("user", "Q"), ("assistant", "A")]


def test_role_mapping(tmp_path, write_jsonl):
    row = {"conversations": [{"from": "person", "value": "Q"}, {"from": "ai", "value": "A"}]}
    conv = one(tmp_path, write_jsonl, row, roles={"person": "user", "ai": "assistant"})
    assert roles(conv) == [("user", "Q"), ("assistant", "A")]


def test_auto_detection_is_per_file(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [ALPACA])
    b = write_jsonl("b.jsonl", [SHAREGPT])
    c = write_jsonl("c.jsonl", [MESSAGES])
    d = write_jsonl("d.jsonl", [PROMPT_COMPLETION])
    e = write_jsonl("e.jsonl", [TEXT])
    result = read(tmp_path, [{"path": str(p)} for p in (a, b, c, d, e)])
    kinds = [len(c.messages) for c in result.conversations]
    assert kinds == [3, 5, 4, 2, 0]


def test_every_file_type_and_directories(tmp_path):
    rows = [ALPACA, {"instruction": "I2", "output": "O2"}]
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.json").write_text(json.dumps(rows))
    (d / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq.write_table(
        pa.Table.from_pylist(
            [{"instruction": r["instruction"], "output": r["output"]} for r in rows]
        ),
        d / "c.parquet",
    )
    (d / "d.csv").write_text('instruction,input,output\n"Reverse the word.",cat,tac\nI2,,O2\n')
    result = read(tmp_path, [{"path": str(d)}])
    assert len(result.conversations) == 8
    assert [s.files for s in result.sources] == [4]
    sources = [c.source.split("/")[-1] for c in result.conversations]
    assert sources == [
        "a.json[row 0]",
        "a.json[row 1]",
        "b.jsonl:line 1",
        "b.jsonl:line 2",
        "c.parquet[row 0]",
        "c.parquet[row 1]",
        "d.csv:line 2",
        "d.csv:line 3",
    ]
    csv_conv = result.conversations[6]
    assert csv_conv.messages[0] == Message("user", "Reverse the word.", context="cat")


def test_csv_with_json_encoded_messages(tmp_path):
    path = tmp_path / "m.csv"
    cell = json.dumps(MESSAGES["messages"]).replace('"', '""')
    path.write_text(f'messages\n"{cell}"\n')
    (conv,) = read(tmp_path, [{"path": str(path)}]).conversations
    assert len(conv.messages) == 4


# --------------------------------------------------------------------------- bad rows

BAD_ROWS = [
    # (row or raw line, reason, field, message fragment)
    (
        {"conversations": [{"from": "bot9", "value": "x"}]},
        "unknown_role",
        "conversations[0].from",
        "unknown role 'bot9'; expected one of",
    ),
    (
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "  "}]},
        "empty_assistant_content",
        "messages[1].content",
        "assistant content is empty",
    ),
    ({"instruction": "Q", "output": ""}, "empty_assistant_content", "output", "output is empty"),
    (
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "A"}]},
        "non_string_content",
        "messages[0].content",
        "expected a string, got int 5",
    ),
    (
        {"instruction": "Q", "output": ["a", "b"]},
        "non_string_content",
        "output",
        "expected a string, got list",
    ),
    (
        {"instruction": "Q", "output": None},
        "missing_field",
        "output",
        "required field is missing; add 'output'",
    ),
    (
        {"messages": [{"role": "user", "content": "Q"}, {"content": "A"}]},
        "missing_field",
        "messages[1].role",
        "message has no 'role' field",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "Q"},
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
            ]
        },
        "not_alternating",
        "messages[1]",
        "expected a assistant turn here but got user",
    ),
    (
        {"messages": [{"role": "assistant", "content": "A"}]},
        "not_alternating",
        "messages[0]",
        "expected a user turn here but got assistant",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
                {"role": "system", "content": "S"},
            ]
        },
        "misplaced_system",
        "messages[2]",
        "a system message may only come first",
    ),
    (
        {"messages": [{"role": "user", "content": "Q"}]},
        "no_assistant_turn",
        "messages",
        "has no assistant turn",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
                {"role": "user", "content": "Q2"},
            ]
        },
        "ends_with_user",
        "messages[2]",
        "ends with a user turn",
    ),
    ({"messages": "hello"}, "wrong_type", "messages", "expected a list of messages, got str"),
    (
        {"prompt": "Q", "completion": 3},
        "non_string_content",
        "completion",
        "must both be strings or both be message lists",
    ),
    ('{"instruction": "Q", "output": ', "invalid_json", None, "line is not valid JSON"),
    ('["not", "an", "object"]', "wrong_type", None, "expected a JSON object per row, got list"),
    (
        {"messages": [{"role": ["user"], "content": "Q"}]},
        "wrong_type",
        "messages[0].role",
        "role must be a string, got list",
    ),
]


@pytest.mark.parametrize(
    ("row", "reason", "field", "fragment"),
    BAD_ROWS,
    ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD_ROWS)],
)
def test_bad_row_errors_name_file_line_field(tmp_path, write_jsonl, row, reason, field, fragment):
    good = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    if isinstance(row, str):
        path = write_jsonl("bad.jsonl", [good], raw_lines=[row])
    else:
        path = write_jsonl("bad.jsonl", [good, row])
    # The good first row fixes the format (messages) unless the bad row's own keys differ:
    # give the format explicitly where the bad row is of another format.
    fmt = "auto"
    if isinstance(row, dict) and "messages" not in row:
        fmt = {"conversations": "sharegpt", "instruction": "alpaca", "prompt": "prompt_completion"}
        fmt = next(v for k, v in fmt.items() if k in row)
        path = write_jsonl("bad.jsonl", [row])
    with pytest.raises(RowError) as info:
        read(tmp_path, [{"path": str(path), "format": fmt}])
    err = info.value
    line = 1 if fmt != "auto" else 2
    assert err.location == f"{path}:line {line}"
    assert err.reason == reason
    assert err.field == field
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:line {line}:")
    assert "data.on_bad_row=skip" in str(err)


def test_undecodable_line(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n')
    with pytest.raises(RowError, match=r"u.jsonl:line 2: line is not valid UTF-8"):
        read(tmp_path, [{"path": str(path)}])


def test_skip_counts_every_bad_row_by_reason(tmp_path, write_jsonl):
    good = {"instruction": "Q", "output": "A"}
    path = write_jsonl(
        "mix.jsonl",
        [good, {"instruction": "Q", "output": ""}, good, {"instruction": "Q", "output": 7}],
        raw_lines=["{broken"],
    )
    result = read(tmp_path, [{"path": str(path)}], on_bad_row="skip")
    assert len(result.conversations) == 2
    reasons = sorted(r.reason for r in result.rejected)
    assert reasons == ["empty_assistant_content", "invalid_json", "non_string_content"]
    assert result.rejected[0].row == {"instruction": "Q", "output": ""}
    assert result.sources[0].rows_read == 5


def test_undetectable_format_says_what_to_set(tmp_path, write_jsonl):
    path = write_jsonl("q.jsonl", [{"question": "Q", "answer": "A"}])
    with pytest.raises(
        InstillError,
        match=r"cannot detect the data format.*answer, question.*"
        r"Set `format:` on the source, and `columns:`",
    ):
        read(tmp_path, [{"path": str(path)}])


def test_missing_mapped_column(tmp_path, write_jsonl):
    path = write_jsonl("q.jsonl", [{"question": "Q", "answer": "A"}])
    with pytest.raises(
        RowError,
        match=r"column 'reply' \(mapped to 'output' by `columns`\) is "
        r"missing",
    ):
        read(
            tmp_path,
            [
                {
                    "path": str(path),
                    "format": "alpaca",
                    "columns": {"instruction": "question", "output": "reply"},
                }
            ],
        )


def test_file_level_errors(tmp_path: Path):
    with pytest.raises(InstillError, match="no such file or directory"):
        read(tmp_path, [{"path": str(tmp_path / "missing.jsonl")}])
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,}')
    with pytest.raises(InstillError, match=r"bad.json: not valid JSON .* line 1 column 9"):
        read(tmp_path, [{"path": str(bad)}])
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(InstillError, match=r"cannot tell the file type .*'.txt'"):
        read(tmp_path, [{"path": str(odd)}])
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(InstillError, match="directory has no data files"):
        read(tmp_path, [{"path": str(empty)}])
    csv = tmp_path / "ragged.csv"
    csv.write_text("instruction,output\nQ,A,extra\n")
    with pytest.raises(RowError, match=r"ragged.csv:line 2: row has 3 fields but the header has 2"):
        read(tmp_path, [{"path": str(csv)}])


def test_non_object_and_undetectable_first_rows_are_row_errors(tmp_path, write_jsonl):
    good = {"instruction": "Q", "output": "A"}
    path = write_jsonl(
        "d.jsonl", [], raw_lines=["[1, 2]", "null", '{"question": "Q"}', json.dumps(good)]
    )
    with pytest.raises(RowError, match=r"d.jsonl:line 1: expected a JSON object per row, got list"):
        read(tmp_path, [{"path": str(path)}])
    result = read(tmp_path, [{"path": str(path)}], on_bad_row="skip")
    assert [r.reason for r in result.rejected] == [
        "wrong_type",
        "wrong_type",
        "undetectable_format",
    ]
    assert len(result.conversations) == 1  # the format was detected from the first good row


def test_strings_that_look_like_json_stay_strings(tmp_path, write_jsonl):
    conv = one(tmp_path, write_jsonl, {"prompt": "[INST] hi [/INST]", "completion": "[1, 2, 3]"})
    assert roles(conv) == [("user", "[INST] hi [/INST]"), ("assistant", "[1, 2, 3]")]


def test_column_swaps_and_shared_columns(tmp_path, write_jsonl):
    conv = one(
        tmp_path,
        write_jsonl,
        {"instruction": "A", "output": "Q"},
        format="alpaca",
        columns={"instruction": "output", "output": "instruction"},
    )
    assert roles(conv) == [("user", "Q"), ("assistant", "A")]
    conv = one(
        tmp_path,
        write_jsonl,
        {"q": "same"},
        format="alpaca",
        columns={"instruction": "q", "output": "q"},
    )
    assert roles(conv) == [("user", "same"), ("assistant", "same")]


def test_byte_order_marks_are_accepted(tmp_path):
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps(TEXT).encode() + b"\n")
    arr = tmp_path / "bom.json"
    arr.write_bytes(b"\xef\xbb\xbf" + json.dumps([TEXT]).encode())
    result = read(tmp_path, [{"path": str(jsonl)}, {"path": str(arr)}])
    assert [c.text for c in result.conversations] == [TEXT["text"]] * 2


def test_csv_line_numbers_survive_blank_and_multiline_records(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,output\n\nQ1,A1\n"multi\nline",A2\n\nQ3,\n')
    with pytest.raises(RowError, match=r"d.csv:line 7: field 'output': output is empty"):
        read(tmp_path, [{"path": str(path)}])
    result = read(tmp_path, [{"path": str(path)}], on_bad_row="skip")
    assert [c.source.split("/")[-1] for c in result.conversations] == [
        "d.csv:line 3",
        "d.csv:line 4",
    ]
    short = tmp_path / "short.csv"
    short.write_text("instruction,output\nQ\n")
    with pytest.raises(RowError, match=r"short.csv:line 2: row has 1 fields but the header has 2"):
        read(tmp_path, [{"path": str(short)}])


def test_directories_skip_hidden_files_and_the_output_dir(tmp_path):
    from instill.data.sources import list_files

    d = tmp_path / "data"
    (d / ".ipynb_checkpoints").mkdir(parents=True)
    (d / "out").mkdir()
    for p in (
        d / "a.jsonl",
        d / ".ipynb_checkpoints" / "a.jsonl",
        d / "out" / "rejected.jsonl",
        d / ".hidden.jsonl",
    ):
        p.write_text(json.dumps(TEXT) + "\n")
    assert list_files(d, exclude=d / "out") == [d / "a.jsonl"]


def test_infinite_weight_is_refused(tmp_path):
    from instill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.sources.0.weight: input should be a finite"):
        validate_config(base_config([{"path": "x", "weight": float("inf")}], tmp_path))
