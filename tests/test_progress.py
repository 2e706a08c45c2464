"""Progress off a terminal: plain lines at a steady interval, for training, eval and prepare."""

import io
import json
import re
from pathlib import Path

import pytest
import torch

from instill.errors import InstillError
from instill.progress import PlainProgress, progress_interval, progress_mode, track


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_first_at_once_then_at_most_one_per_interval_and_a_last_one():
    out, clock = io.StringIO(), FakeClock()
    bar = PlainProgress("train", 10, unit="steps", interval_s=30, stream=out, clock=clock)
    bar.start()
    for step in range(1, 11):
        clock.now += 10  # one step every 10 s: a line every third step
        bar.update(step, f"loss {1 / step:.4f}")
    bar.finish()
    assert out.getvalue().splitlines() == [
        "train 0/10 steps (0%)  elapsed 0:00:00  ETA ?",
        "train 3/10 steps (30%)  loss 0.3333  elapsed 0:00:30  ETA 0:01:10",
        "train 6/10 steps (60%)  loss 0.1667  elapsed 0:01:00  ETA 0:00:40",
        "train 9/10 steps (90%)  loss 0.1111  elapsed 0:01:30  ETA 0:00:10",
        "train 10/10 steps (100%)  loss 0.1000  elapsed 0:01:40  ETA 0:00:00",
    ]


def test_resumed_loops_estimate_from_their_own_rate_and_last_line_is_not_repeated():
    out, clock = io.StringIO(), FakeClock()
    bar = PlainProgress("eval m", 8, done=4, unit="prompts", interval_s=0, stream=out, clock=clock)
    clock.now += 5
    bar.advance(2)
    bar.finish()
    assert out.getvalue().splitlines() == ["eval m 6/8 prompts (75%)  elapsed 0:00:05  ETA 0:00:05"]


def test_mode_and_interval_come_from_the_environment(monkeypatch, capsys):
    monkeypatch.delenv("INSTILL_PROGRESS", raising=False)
    assert progress_mode() == "plain"  # capsys: stdout is not a terminal
    monkeypatch.setenv("INSTILL_PROGRESS", "off")
    with track("x", 3) as bar:
        bar.advance(3)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("INSTILL_PROGRESS", "fancy")
    with pytest.raises(InstillError, match="INSTILL_PROGRESS must be auto, rich, plain or off"):
        progress_mode()
    assert progress_interval() == 30
    monkeypatch.setenv("INSTILL_PROGRESS_INTERVAL", "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv("INSTILL_PROGRESS_INTERVAL", "-1")
    with pytest.raises(InstillError, match="INSTILL_PROGRESS_INTERVAL must be"):
        progress_interval()


def test_disabled_tracking_prints_nothing(capsys):
    with track("x", 3, enabled=False, mode="plain") as bar:
        bar.update(3, "done")
    assert capsys.readouterr().out == ""


def _lines(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.fullmatch(pattern, line)]


def test_training_off_a_terminal_prints_step_loss_lr_speed_and_eta(tmp_path, monkeypatch, capsys):
    from instill.config import validate_config
    from instill.train.loop import train

    monkeypatch.setenv("INSTILL_PROGRESS_INTERVAL", "0")  # a line at every step
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"instruction": f"Repeat {i}.", "output": f"{i} {i}"}) + "\n"
            for i in range(12)
        )
    )
    config = {
        "model": {"path": "tiny-random-qwen", "dtype": "float32"},
        "data": {"sources": [{"path": str(rows)}], "max_length": 64},
        "train": {
            "method": "full",
            "max_steps": 3,
            "batch_size": 4,
            "lr": 1e-3,
            "logging": {"tensorboard": False},
        },
        "output_dir": str(tmp_path / "run"),
    }
    train(validate_config(config))
    lines = _lines(
        capsys.readouterr().out,
        r"train \d/3 steps \(\d+%\)  loss \d+\.\d{4}  lr \S+  [\d,]+ tok/s  "
        r"elapsed \d:\d\d:\d\d  ETA \d:\d\d:\d\d",
    )
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert lines[-1].endswith("ETA 0:00:00")


def _tiny_model():
    from instill.models.bundle import load_bundle

    return load_bundle("tiny-random-qwen", name="tiny", dtype=torch.float32)


def test_eval_off_a_terminal_prints_model_prompts_done_and_eta(monkeypatch, capsys):
    from instill.data.conversation import Message
    from instill.eval.runner import evaluate
    from instill.eval.tasks import EvalItem, EvalTask
    from instill.generate.engine import SamplingConfig

    monkeypatch.setenv("INSTILL_PROGRESS_INTERVAL", "0")
    items = [
        EvalItem(id=str(i), messages=[Message("user", f"Say {i}")], reference=str(i))
        for i in range(5)
    ]
    task = EvalTask(name="say", items=items, metric="exact_match")
    evaluate(_tiny_model(), [task], SamplingConfig(max_new_tokens=2, batch_size=2), bar=True)
    lines = _lines(
        capsys.readouterr().out,
        r"eval tiny \d/5 prompts \(\d+%\)  elapsed \d:\d\d:\d\d  ETA (\?|\d:\d\d:\d\d)",
    )
    # One line per finished answer (rows leave the batch as they finish).
    assert [line.split()[2] for line in lines] == ["0/5", "1/5", "2/5", "3/5", "4/5", "5/5"]
    assert lines[0].endswith("ETA ?") and lines[-1].endswith("ETA 0:00:00")


def test_prepare_off_a_terminal_prints_rows_rendered(monkeypatch, capsys):
    from instill.data.prepare import _progress_bar

    monkeypatch.setenv("INSTILL_PROGRESS_INTERVAL", "0")
    with _progress_bar(True, 5000) as advance:
        advance(2500)
        advance(2500)
    out = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in out] == [
        "render + mask 0/5000 rows (0%)",
        "render + mask 2500/5000 rows (50%)",
        "render + mask 5000/5000 rows (100%)",
    ]
    with _progress_bar(True, 10) as advance:  # small inputs report nothing
        assert advance is None


def test_plain_lines_are_flushed(tmp_path: Path):
    class Stream(io.StringIO):
        flushes = 0

        def flush(self):
            Stream.flushes += 1

    bar = PlainProgress("x", 2, stream=Stream(), interval_s=0)
    bar.start()
    bar.update(1)
    assert Stream.flushes == 2
