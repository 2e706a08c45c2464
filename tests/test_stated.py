"""Formats stated in words (`instill.eval.stated`) and Self-Instruct task files."""

from __future__ import annotations

import json

import pytest

from instill.errors import InstillError
from instill.eval.constraints import check_all, validate_constraint
from instill.eval.stated import stated_constraints
from instill.eval.tasks import load_task_file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Explain the movie in just one sentence.",
            [{"type": "sentence_count", "relation": "exactly", "n": 1}],
        ),
        (
            "Write a story that contains the given words in 4 sentences.",
            [{"type": "sentence_count", "relation": "exactly", "n": 4}],
        ),
        (
            "Answer in no more than 50 words.",
            [{"type": "word_count", "relation": "at_most", "n": 50}],
        ),
        ("Use fewer than 20 words.", [{"type": "word_count", "relation": "less_than", "n": 20}]),
        (
            "Write at least three paragraphs.",
            [{"type": "paragraph_count", "relation": "at_least", "n": 3}],
        ),
        (
            "Write more than two paragraphs.",
            [{"type": "paragraph_count", "relation": "at_least", "n": 3}],
        ),
        (
            "Keep it to 100 words or less.",
            [{"type": "word_count", "relation": "at_most", "n": 100}],
        ),
        ("Return the result in JSON.", [{"type": "json_format"}]),
        ("Reply all in lowercase, please.", [{"type": "lowercase"}]),
        ("Write your answer only in capital letters.", [{"type": "uppercase"}]),
    ],
)
def test_stated_formats_become_checkable_constraints(text, expected):
    found = stated_constraints(text)
    assert found == expected
    for c in found:
        validate_constraint(c)


@pytest.mark.parametrize(
    "text",
    [
        "Summarize the article in 50 words.",  # a loose length: no relation, not taken
        "Generate a one-sentence description for each of the following people.",
        "Tell me a joke that has three sentences, each containing a pun.",
        "Count the words in the sentence below.",
        "What is JSON used for?",
        "Convert the text to lowercase letters.",
    ],
)
def test_loose_or_per_item_wording_states_nothing(text):
    assert stated_constraints(text) == []


def test_self_instruct_rows_and_stated_formats_only(tmp_path):
    rows = [
        {
            "id": "t0",
            "instruction": "Summarize the email below in a single sentence.",
            "instances": [{"input": "Hi team, the launch moved to May.", "output": "It moved."}],
        },
        {
            "id": "t1",
            "instruction": "Rewrite the sentence to sound friendlier.",
            "instances": [{"input": "Send it now.", "output": "Could you send it soon?"}],
        },
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    every = load_task_file(path, metric="rouge_l")
    assert [i.reference for i in every.items] == ["It moved.", "Could you send it soon?"]
    assert every.items[0].messages[-1].context == "Hi team, the launch moved to May."
    stated = load_task_file(path, metric="rouge_l", stated_formats="only")
    assert [i.id for i in stated.items] == ["t0"]
    (item,) = stated.items
    assert item.metric == "constraints"
    assert check_all("The launch moved to May.", list(item.constraints))[0]
    assert not check_all("It moved. The date is May.", list(item.constraints))[0]
    nothing = tmp_path / "plain.jsonl"
    nothing.write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(InstillError, match="no prompt states a checkable format"):
        load_task_file(nothing, stated_formats="only")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "Do it.", "instances": []}) + "\n")
    with pytest.raises(
        InstillError,
        match=r"bad.jsonl:line 1: field .instances.: instances must be a non-empty list",
    ):
        load_task_file(bad)


def test_selfinstruct_bench_runs_on_files_in_its_format(tmp_path, capsys):
    """bench/selfinstruct_eval.py (run on ../shared/data in the benchmarks) on small files of
    the same shape, with a tiny model, so it does not rot."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("si", root / "bench" / "selfinstruct_eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = tmp_path / "si"
    data.mkdir()
    rows = [
        {"id": "a", "instruction": "Describe rain in one sentence.", "instances": [
            {"input": "", "output": "Rain is water falling from clouds."}]},
        {"id": "b", "instruction": "Name a colour.", "instances": [
            {"input": "", "output": "Blue."}]},
    ]  # fmt: skip
    for file in bench.FILES.values():
        (data / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = bench.main(
        ["--model", "tiny=tiny-random-qwen", "--data", str(data), "--max-new-tokens", "4",
         "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["tasks"]) == {
        "user-oriented", "seed-tasks", "user-oriented-stated", "seed-tasks-stated"
    }  # fmt: skip
    records = [
        json.loads(x) for x in (tmp_path / "out" / "records-tiny.jsonl").read_text().splitlines()
    ]
    stated = [r for r in records if r["task"].endswith("-stated")]
    assert len(records) == 6 and len(stated) == 2  # 2 + 2 prompts, 1 + 1 stating a format
