"""`instill prepare` end to end on a tiny tokenizer: outputs, statistics, rejects, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from transformers import AutoTokenizer

from instill.cli import main
from instill.config import validate_config
from instill.data.masking import IGNORE_INDEX
from instill.data.prepare import prepare
from instill.errors import InstillError, TemplateError
from instill.models.tokenizer_loading import load_tokenizer_for

from .conftest import base_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "data"


def example_sources() -> list[dict]:
    return [{"path": str(p)} for p in sorted(EXAMPLES.iterdir())]


def run(tmp_path, sources, **data):
    config = validate_config(base_config(sources, tmp_path, **data))
    return prepare(config, load_tokenizer_for(config), progress=False)


def test_packed_output_and_stats(tmp_path):
    result = run(tmp_path, example_sources(), max_length=256)
    out = tmp_path / "out"
    ds = datasets.load_from_disk(str(out / "prepared"))
    assert set(ds.column_names) == {"input_ids", "labels", "position_ids", "row_ids"}
    stats = json.loads((out / "stats.json").read_text())
    n_rows = sum(1 for p in EXAMPLES.iterdir() for _ in _rows_of(p))
    assert stats["rows_read"] == n_rows == stats["rows_kept"]
    assert sum(len(r) for r in ds["row_ids"]) == n_rows
    supervised = sum(sum(1 for x in row if x != IGNORE_INDEX) for row in ds["labels"])
    assert supervised == stats["tokens_supervised"] > 0
    assert sum(len(r) for r in ds["input_ids"]) == stats["tokens_total"]
    assert all(len(r) <= 256 for r in ds["input_ids"])
    assert stats["packing"]["rows"] == len(ds)
    assert stats["template"] == "tokenizer" and stats["end_of_turn"] == "<end_of_turn>"
    for key in ("p50", "p90", "p99", "max"):
        assert stats["length"][key] > 0
    # Resolved config and tokenizer are written beside the data.
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["max_length"] == 256
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    assert len(tok) == len(result.renderer.tokenizer)
    assert (out / "rejected.jsonl").read_text() == ""


def _rows_of(path: Path):
    if path.suffix == ".jsonl":
        return [line for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return path.read_text().splitlines()[1:]  # csv without header


def test_unpacked_output_keeps_source_order_with_row_ids(tmp_path):
    run(tmp_path, example_sources(), packing=False)
    ds = datasets.load_from_disk(str(tmp_path / "out" / "prepared"))
    assert set(ds.column_names) == {"input_ids", "labels", "row_id"}
    ids = ds["row_id"]
    assert ids[0] == f"{EXAMPLES / 'alpaca.jsonl'}:line 1"
    assert ids[1] == f"{EXAMPLES / 'alpaca.jsonl'}:line 2"
    assert ids[-1].startswith(str(EXAMPLES / "sharegpt.json"))
    files = [i.split(":line")[0].split("[row")[0] for i in ids]
    assert files == sorted(files)  # the sources were given in sorted order


def test_skipped_rows_are_counted_and_written(tmp_path, write_jsonl):
    good = {"instruction": "Say hi", "output": "hi"}
    other = {"instruction": "Say bye", "output": "bye"}  # distinct: exact duplicates are removed
    path = write_jsonl(
        "d.jsonl", [good, {"instruction": "x", "output": ""}, other], raw_lines=["not json"]
    )
    result = run(tmp_path, [{"path": str(path)}], on_bad_row="skip")
    assert result.stats["rows_read"] == 4
    assert result.stats["rows_kept"] == 2
    assert result.stats["rejected_by_reason"] == {"empty_assistant_content": 1, "invalid_json": 1}
    lines = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [(x["location"].split("/")[-1], x["reason"]) for x in lines] == [
        ("d.jsonl:line 2", "empty_assistant_content"),
        ("d.jsonl:line 4", "invalid_json"),
    ]
    assert lines[0]["row"] == {"instruction": "x", "output": ""}


def test_zero_supervision_and_too_long_rows_are_reported(tmp_path, write_jsonl):
    untrained = {
        "messages": [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A", "train": False},
        ]
    }
    long = {
        "messages": [
            {"role": "user", "content": "word " * 300},
            {"role": "assistant", "content": "A"},
        ]
    }
    ok = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    path = write_jsonl("d.jsonl", [untrained, long, ok])
    result = run(tmp_path, [{"path": str(path)}], max_length=64, truncation="drop_row")
    assert result.stats["rejected_by_reason"] == {"no_supervised_tokens": 1, "too_long": 1}
    assert result.stats["zero_supervision_rows"] == 1
    assert result.stats["rows_kept"] == 1
    # truncate_response cuts the long prompt so that no response token is left: also reported.
    result = run(tmp_path, [{"path": str(path)}], max_length=64)
    assert result.stats["rejected_by_reason"] == {"no_supervised_tokens": 2}
    reasons = [
        json.loads(x)["message"]
        for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()
    ]
    assert any("truncation removed every response token" in r for r in reasons)


def test_two_processes_give_identical_output(tmp_path, write_jsonl):
    rows = [
        {"instruction": f"Count to {i}.", "output": " ".join(map(str, range(i % 17))) or "zero"}
        for i in range(700)
    ]
    path = write_jsonl("many.jsonl", rows)
    one = run(tmp_path / "a", [{"path": str(path)}], num_proc=1, max_length=128)
    two = run(tmp_path / "b", [{"path": str(path)}], num_proc=2, max_length=128)
    assert [e.input_ids for e in one.examples] == [e.input_ids for e in two.examples]
    assert [e.labels for e in one.examples] == [e.labels for e in two.examples]
    assert [e.source for e in two.examples] == [e.source for e in one.examples]


def test_cli_prepare_show_marks_trained_tokens(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config(example_sources(), tmp_path, max_length=256)))
    assert main(["prepare", str(cfg), "--show", "2", "data.packing=false"]) == 0
    out = capsys.readouterr().out
    assert "[[positive<end_of_turn>]]" in out
    assert "<start_of_turn>model\n[[" in out
    assert "rows read / kept / rejected" in out
    ds = datasets.load_from_disk(str(tmp_path / "out" / "prepared"))
    assert "row_id" in ds.column_names  # the override was applied


def test_cli_errors_are_one_clear_message(tmp_path, capsys, write_jsonl):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config(example_sources(), tmp_path)))
    assert main(["prepare", str(cfg), "data.max_lenght=5"]) == 2
    err = capsys.readouterr().err
    assert "unknown key data.max_lenght: did you mean data.max_length?" in err
    bad = write_jsonl("bad.jsonl", [{"instruction": "Q", "output": 3}])
    cfg.write_text(yaml.safe_dump(base_config([{"path": str(bad)}], tmp_path)))
    assert main(["prepare", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:line 1: field 'output': expected a string, got int 3" in err.replace("\n", "")


def test_console_script_runs(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config(example_sources(), tmp_path)))
    exe = Path(sys.executable).with_name("instill")
    proc = subprocess.run(
        [str(exe), "prepare", str(cfg)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    assert (tmp_path / "out" / "prepared").is_dir()


@pytest.mark.parametrize("policy", ["drop_row", "truncate_response", "drop_oldest_turns"])
def test_every_truncation_policy_runs_end_to_end(tmp_path, policy):
    result = run(tmp_path, example_sources(), max_length=48, truncation=policy)
    assert all(len(e.input_ids) <= 48 for e in result.examples)
    assert result.stats["rows_kept"] + result.stats["rows_rejected"] == result.stats["rows_read"]


def test_saved_tokenizer_renders_prompts_like_training(tmp_path):
    result = run(tmp_path, example_sources(), template="alpaca", packing=False)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "out" / "tokenizer"))
    ex = result.examples[0]
    conv_msgs = [
        {
            "role": "user",
            "content": "Classify the sentiment of the review as positive or negative.",
            "context": "The battery lasts all day and the screen is gorgeous.",
        }
    ]
    prompt = tok.apply_chat_template(conv_msgs, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ex.input_ids[: len(ids)] == ids
    assert ex.labels[len(ids) - 1] == IGNORE_INDEX and ex.labels[len(ids)] != IGNORE_INDEX


def test_mixing_weights_apply_to_encoded_rows(tmp_path, write_jsonl):
    a = write_jsonl("a.jsonl", [{"instruction": f"a{i}", "output": "x"} for i in range(10)])
    b = write_jsonl(
        "b.jsonl",
        [{"instruction": f"b{i}", "output": "x"} for i in range(10)]
        + [{"instruction": "long " * 400, "output": "x"}],
    )
    sources = [{"path": str(a), "weight": 2.0}, {"path": str(b), "weight": 0.5}]
    result = run(tmp_path, sources, packing=False, max_length=64, truncation="drop_row")
    names = [e.source.split("/")[-1] for e in result.examples]
    assert names[:4] == ["a.jsonl:line 1", "a.jsonl:line 1", "a.jsonl:line 2", "a.jsonl:line 2"]
    assert sum(n.startswith("a") for n in names) == 20
    assert sum(n.startswith("b") for n in names) == 5
    assert [s["examples_after_mixing"] for s in result.stats["sources"]] == [20, 5]
    assert result.stats["rejected_by_reason"] == {"too_long": 1}  # counted once, not per copy
    again = run(tmp_path, sources, packing=False, max_length=64, truncation="drop_row")
    assert [e.source for e in again.examples] == [e.source for e in result.examples]  # seeded


def test_a_source_that_contributes_nothing_is_an_error(tmp_path, write_jsonl):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InstillError, match=r"source .*empty.jsonl: no rows found"):
        run(tmp_path, [{"path": str(empty)}])
    one = write_jsonl("one.jsonl", [{"instruction": "Q", "output": "A"}])
    with pytest.raises(InstillError, match=r"weight 0.4 keeps 0 of its 1 rows"):
        run(tmp_path, [{"path": str(one), "weight": 0.4}])
    bad = write_jsonl("bad.jsonl", [{"instruction": "Q", "output": ""}])
    with pytest.raises(InstillError, match=r"none of its 1 rows is usable"):
        run(tmp_path, [{"path": str(one)}, {"path": str(bad)}], on_bad_row="skip")
    # The reports are written all the same, so the user can see why.
    assert "empty_assistant_content" in (tmp_path / "out" / "rejected.jsonl").read_text()


def test_a_template_error_names_the_row_or_is_skipped(tmp_path, write_jsonl):
    jinja = tmp_path / "t.jinja"
    jinja.write_text(
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system role') }}{% endif %}"
        "{{ '<start_of_turn>' + m['role'] + '\\n' + m['content'] + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>assistant\\n' }}{% endif %}"
    )
    path = write_jsonl(
        "d.jsonl",
        [{"instruction": "Q", "output": "A"}, {"instruction": "Q", "output": "A", "system": "S"}],
    )
    with pytest.raises(TemplateError, match=r"d.jsonl:line 2: chat template 't.jinja' failed"):
        run(tmp_path, [{"path": str(path)}], template=str(jinja))
    result = run(tmp_path, [{"path": str(path)}], template=str(jinja), on_bad_row="skip")
    assert result.stats["rejected_by_reason"] == {"template_error": 1}


def test_cli_prints_locations_with_brackets_verbatim(tmp_path, capsys):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"instruction": "[INST] Q", "output": 3}]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config([{"path": str(path)}], tmp_path)))
    assert main(["prepare", str(cfg)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "d.json[row 0]: field 'output': expected a string, got int 3" in err


def test_rows_that_cannot_be_parsed_keep_their_text_in_rejected_jsonl(tmp_path):
    good = json.dumps({"instruction": "Say hi", "output": "hi"})
    other = json.dumps({"instruction": "Say bye", "output": "bye"})  # exact duplicates go
    broken = '{"instruction": "Qué tal?", "output": "bien"  '  # unterminated, trailing spaces
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(
        "\n".join([good, broken, other]).encode() + b'\n{"output": "caf\xe9"}\r\n' + b"[1,\n"
    )
    csv = tmp_path / "d.csv"
    csv.write_text('instruction,output\nQ,A\n"multi\nline",A2,extra\nQ3,A3\n')
    result = run(tmp_path, [{"path": str(jsonl)}, {"path": str(csv)}], on_bad_row="skip")
    assert result.stats["rejected_by_reason"] == {
        "invalid_json": 2,
        "undecodable_line": 1,
        "malformed_csv": 1,
    }
    lines = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    got = [(x["location"].split("/")[-1], x.get("raw"), "row" in x) for x in lines]
    assert got == [
        ("d.jsonl:line 2", broken, False),
        ("d.jsonl:line 4", '{"output": "caf\\xe9"}', False),  # the bad byte, escaped
        ("d.jsonl:line 5", "[1,", False),
        ("d.csv:line 3", '"multi\nline",A2,extra', False),
    ]


def test_cli_errors_are_not_wrapped_whatever_the_path_length(tmp_path, capsys):
    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "nested"
    deep.mkdir(parents=True)
    path = deep / "d.jsonl"
    path.write_text(json.dumps({"instruction": "Q", "output": 3}) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config([{"path": str(path)}], tmp_path)))
    assert main(["prepare", str(cfg)]) == 2
    err = capsys.readouterr().err
    # The whole location and message on one line, as written (no wrapping at the console width).
    assert f"error: {path}:line 1: field 'output': expected a string, got int 3" in err
