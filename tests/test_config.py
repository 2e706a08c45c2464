from pathlib import Path

import pytest
import yaml

from instill.config import Config, load_config, validate_config
from instill.errors import ConfigError

MINIMAL = {"model": {"path": "tiny-random-llama"}, "data": {"sources": [{"path": "x.jsonl"}]}}


def _problems(raw: dict, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(base=raw, overrides=overrides)
    return info.value.problems


def test_minimal_config_gets_defaults():
    cfg = validate_config(MINIMAL)
    assert cfg.data.max_length == 2048
    assert cfg.data.packing is True
    assert cfg.data.masking == "all_assistant"
    assert cfg.data.on_bad_row == "error"


def test_unknown_key_suggests_nearest_valid_key():
    raw = {**MINIMAL, "data": {**MINIMAL["data"], "max_lenght": 512}}
    (problem,) = _problems(raw)
    assert problem.startswith("unknown key data.max_lenght: did you mean data.max_length?")


def test_unknown_key_inside_a_list_item_names_the_index():
    raw = {**MINIMAL, "data": {"sources": [{"path": "a", "wieght": 2}]}}
    (problem,) = _problems(raw)
    assert "unknown key data.sources.0.wieght: did you mean data.sources.0.weight?" in problem


def test_unknown_top_level_key():
    (problem,) = _problems({**MINIMAL, "ouput_dir": "x"})
    assert "unknown key ouput_dir: did you mean output_dir?" in problem


def test_wrong_type_names_key_value_and_expectation():
    raw = {**MINIMAL, "data": {**MINIMAL["data"], "max_length": "long"}}
    (problem,) = _problems(raw)
    assert problem.startswith("data.max_length: input should be a valid integer")
    assert "got 'long' (str)" in problem


def test_out_of_range_value():
    raw = {**MINIMAL, "data": {**MINIMAL["data"], "max_length": 4}}
    (problem,) = _problems(raw)
    assert problem == "data.max_length: input should be greater than or equal to 8, got 4 (int)"


def test_bad_choice_lists_the_valid_ones():
    raw = {**MINIMAL, "data": {**MINIMAL["data"], "masking": "assistant"}}
    (problem,) = _problems(raw)
    assert "'all_assistant', 'last_assistant' or 'all'" in problem


def test_missing_required_key():
    (problem,) = _problems({"data": MINIMAL["data"]})
    assert problem == "model is required but missing"


def test_all_problems_are_reported_at_once():
    raw = {"model": {"path": "m"}, "data": {"sources": [], "packing": "maybe"}}
    problems = _problems(raw)
    assert len(problems) == 2
    assert any(p.startswith("data.sources") for p in problems)
    assert any(p.startswith("data.packing") for p in problems)


def test_overrides_are_validated_like_yaml(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    cfg = load_config(path, ["data.max_length=64", "data.sources.0.weight=0.5", "seed=3"])
    assert (cfg.data.max_length, cfg.data.sources[0].weight, cfg.seed) == (64, 0.5, 3)
    with pytest.raises(ConfigError, match=r"data.max_length: input should be greater"):
        load_config(path, ["data.max_length=2"])
    with pytest.raises(ConfigError, match=r"did you mean data.packing\?"):
        load_config(path, ["data.packin=false"])


def test_override_errors_name_the_override(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data.sources is a list of 1 items; use an index 0..0"):
        load_config(base=MINIMAL, overrides=["data.sources.4.path=x"])
    with pytest.raises(ConfigError, match=r"must look like key.sub=value"):
        load_config(base=MINIMAL, overrides=["data.packing"])


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)


def test_resolved_config_round_trips(tmp_path: Path):
    cfg = load_config(base=MINIMAL, overrides=["data.max_length=128"])
    written = cfg.save(tmp_path)
    again = load_config(written)
    assert again == cfg
    assert isinstance(again, Config)


def test_flag_values_are_reported_under_the_flag():
    from instill.config import validate_section

    flags = {"eval.batch_size": "--batch-size", "eval.tasks.*.limit": "--limit"}
    raw = {"batch_size": 0, "tasks": [{"name": "a", "limit": 0}, {"name": "b", "limit": 0}]}
    with pytest.raises(ConfigError) as info:
        validate_section("eval", raw, flags=flags)
    assert info.value.problems == [  # one line for --limit, though it failed on both tasks
        "--limit (eval.tasks.*.limit): input should be greater than or equal to 1, got 0 (int)",
        "--batch-size (eval.batch_size): input should be greater than or equal to 1, got 0 (int)",
    ]
    with pytest.raises(ConfigError, match=r"^invalid config:\n  - eval.top_p: input should be"):
        validate_section("eval", {"top_p": 2})  # keys not set by a flag keep their own name
