"""The README's merge / export / adapters commands, run as written on tiny LoRA runs (paths
swapped for tiny ones)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from instill.cli import main
from instill.config import validate_config
from instill.train.loop import train
from tests.test_train import make_config

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Taking a model elsewhere")
    section = readme[start : readme.index("\n## ", start + 1)]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[:1]
    return [shlex.split(line, comments=True) for line in block.strip().splitlines()]


def test_readme_merge_export_and_adapter_commands_run(tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"prompt": "Say hi", "completion": "hi"}) + "\n")
    finals = {}
    for i, name in enumerate(["quickstart", "task-a", "task-b"]):
        (tmp_path / name).mkdir()
        raw = make_config(tmp_path / name, model="tiny-random-llama", method="lora", lr=1e-2)
        raw["seed"] = i
        raw["train"]["eval_tasks"] = [{"path": str(tasks), "max_new_tokens": 4}]
        raw["output_dir"] = str(tmp_path / "runs" / name)
        finals[name] = train(validate_config(raw)).final_dir
    commands = _commands()
    assert [c[:2] for c in commands] == [
        ["instill", "merge"],
        ["instill", "export"],
        ["instill", "adapters"],
        ["instill", "adapters"],
    ]
    for command in commands:
        argv = [
            f"{tmp_path}/{arg}" if arg == "runs" or arg.startswith("runs/") else arg
            for arg in command[1:]
        ]
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "greedy-token agreement" in out
    runs = tmp_path / "runs"
    assert (runs / "merged" / "config.json").is_file()
    assert (runs / "tuned.gguf").is_file() and (runs / "Modelfile").is_file()
    for name in finals:  # adapters ls listed all three runs
        assert name in out
    report = json.loads((runs / "combined" / "report" / "report.json").read_text())
    assert report["comparison"]["models"] == ["task-a", "task-b", "combined"]
