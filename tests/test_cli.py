"""Command-line flags that set config keys are validated exactly like YAML keys."""

import json
from pathlib import Path

import pytest
import yaml

from instill import cli
from instill.eval import runner


def _task_file(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "say.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"Say {i}", "reference": str(i)}) + "\n" for i in range(n))
    )
    return path


@pytest.fixture
def no_eval_run(monkeypatch):
    """Records what `instill eval` would evaluate, instead of loading models."""
    seen = {}

    def fake_run_eval(models, tasks, cfg, out_dir, **kw):
        seen.update(models=models, tasks=tasks, cfg=cfg, out_dir=out_dir)
        raise SystemExit("run_eval reached")

    monkeypatch.setattr(runner, "run_eval", fake_run_eval)
    return seen


def _error(capsys) -> str:
    # rich wraps long lines at the console width; compare with the wrapping undone.
    return " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        (
            "--max-new-tokens",
            "0",
            "--max-new-tokens (eval.max_new_tokens): input should be greater than or equal to 1, "
            "got 0 (int)",
        ),
        (
            "--batch-size",
            "-1",
            "--batch-size (eval.batch_size): input should be greater than or equal to 1, "
            "got -1 (int)",
        ),
        (
            "--limit",
            "0",
            "--limit (eval.tasks.*.limit): input should be greater than or equal to 1, got 0 (int)",
        ),
    ],
)
def test_eval_flags_out_of_range_name_the_flag(
    tmp_path, capsys, no_eval_run, flag, value, expected
):
    argv = [
        "eval",
        "--model",
        "tiny-random-qwen",
        "--tasks",
        str(_task_file(tmp_path)),
        flag,
        value,
    ]
    assert cli.main(argv) == 2
    assert not no_eval_run
    assert f"error: invalid config: - {expected}" in _error(capsys)


def test_eval_flags_over_a_config_file_are_validated_with_it(tmp_path, capsys, no_eval_run):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"path": "tiny-random-qwen"},
                "eval": {"tasks": [{"path": str(_task_file(tmp_path))}]},
            }
        )
    )
    assert cli.main(["eval", str(config), "--batch-size", "0", "--max-new-tokens", "-3"]) == 2
    err = _error(capsys)
    assert f"invalid config in {config}:" in err
    assert (
        "--batch-size (eval.batch_size): input should be greater than or equal to 1, got 0" in err
    )
    assert (
        "--max-new-tokens (eval.max_new_tokens): input should be greater than or equal to 1, got -3"
        in err
    )
    assert not no_eval_run


def test_valid_eval_flags_override_the_config_file(tmp_path, no_eval_run):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"path": "tiny-random-qwen"},
                "eval": {"batch_size": 4, "tasks": [{"path": str(_task_file(tmp_path))}]},
            }
        )
    )
    argv = ["eval", str(config), "--max-new-tokens", "5", "--batch-size", "2", "--limit", "1"]
    with pytest.raises(SystemExit, match="run_eval reached"):
        cli.main([*argv, "--output-dir", str(tmp_path / "out")])
    cfg = no_eval_run["cfg"]
    assert (cfg.max_new_tokens, cfg.batch_size) == (5, 2)
    assert [len(t.items) for t in no_eval_run["tasks"]] == [1]  # --limit reaches config tasks
    assert no_eval_run["out_dir"] == tmp_path / "out"
    assert [m.path for m in no_eval_run["models"]] == ["tiny-random-qwen"]


def test_lm_eval_limit_is_validated_before_the_harness_runs(capsys, monkeypatch):
    from instill.eval import lm_eval_adapter

    monkeypatch.setattr(lm_eval_adapter, "run_lm_eval", lambda *a, **k: pytest.fail("ran"))
    argv = ["eval", "--model", "tiny-random-qwen", "--lm-eval", "arc_easy", "--limit", "0"]
    assert cli.main(argv) == 2
    assert "--limit (eval.tasks.*.limit): input should be greater than or equal to 1" in _error(
        capsys
    )


@pytest.mark.parametrize("flag", ["--per-family", "--eval-per-family"])
def test_data_export_counts_must_not_be_negative(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as info:
        cli.main(["data", "export", "builtin", "--out", str(tmp_path / "suite"), flag, "-1"])
    assert info.value.code == 2
    assert f"argument {flag}: must be 0 or more, got -1" in capsys.readouterr().err
    assert not (tmp_path / "suite").exists()
