"""Self-Instruct's bootstrap pieces: seed files, the prompt, parsing the reply, the filters."""

from __future__ import annotations

import json

import pytest

from instill.data.synth.bootstrap import (
    NO_INPUT,
    InstructionFilter,
    bootstrap_messages,
    first_new_number,
    parse_input,
    parse_instructions,
    read_seed_tasks,
    response_messages,
)
from instill.errors import InstillError


def test_reads_self_instruct_and_training_formats(tmp_path):
    si = tmp_path / "seeds.jsonl"
    si.write_text(
        json.dumps(
            {
                "id": "seed_task_0",
                "instruction": "Name a fruit.",
                "instances": [{"input": "", "output": "Apple."}],
                "is_classification": False,
            }
        )
        + "\n"
    )
    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text(
        json.dumps({"instruction": "Translate.", "input": "Hola", "output": "Hello"}) + "\n"
    )
    (a,) = read_seed_tasks(si)
    assert (a.id, a.instruction, a.instances) == ("seed_task_0", "Name a fruit.", (("", "Apple."),))
    (b,) = read_seed_tasks(alpaca)
    assert b.instruction == "Translate." and b.instances == (("Hola", "Hello"),)


def test_a_bad_seed_row_names_file_and_line(tmp_path):
    bad = tmp_path / "seeds.jsonl"
    good = {"id": "s", "instruction": "Name a fruit.", "instances": []}
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "instruction": " "}) + "\n")
    with pytest.raises(InstillError, match=r"seeds\.jsonl.*2"):
        read_seed_tasks(bad)


def test_prompt_numbers_examples_and_asks_to_continue():
    (msg,) = bootstrap_messages(["Name a fruit:", "Add  two\nnumbers."], 3)
    assert msg["role"] == "user"
    assert "1. Name a fruit\n2. Add two numbers." in msg["content"]
    assert "3 to 5" in msg["content"] and first_new_number(["a", "b"]) == 3
    with pytest.raises(ValueError):
        bootstrap_messages([], 2)


def test_parser_reads_messy_numbered_replies():
    reply = (
        "Sure! Here are new tasks:\n"
        "9. Describe a sunset in two sentences.\n"
        "10) Task: Suggest a name for a bakery.\n"
        "Task 11: Explain gravity to a child.\n"
        "12. Describe a sunset in two sentences.\n"
        "13. "
    )
    assert parse_instructions(reply, 9) == [
        "Describe a sunset in two sentences.",
        "Suggest a name for a bakery.",
        "Explain gravity to a child.",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Hi there.", "too_short"),
        (" ".join(["word"] * 200), "too_long"),
        ("Draw a picture of a cat on a mat.", "blocklist"),
        ("Write a program that sorts numbers.", "program"),
        ("- Explain how tides work.", "leading_punctuation"),
        ("Élaborer un plan de voyage court.", "non_ascii"),
        ("Explain how tides work on Earth.", None),
    ],
)
def test_filter_reasons(text, reason):
    assert InstructionFilter().reason(text) == reason


def test_input_parsing_and_response_messages():
    assert parse_input(NO_INPUT) is None
    assert parse_input("Input: The cat sat.\nOutput: Le chat.") == "The cat sat."
    assert response_messages("Translate.", "Hola", system="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Translate.\n\nHola"},
    ]
