"""The README's preference-tuning commands, run as written on tiny models (paths and the model
swapped for tiny ones, each training cut to one step)."""

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
    start = readme.index("### Preference tuning: DPO")
    section = readme[start : readme.index("\n## ", start + 1)]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    return [shlex.split(line, comments=True) for line in block.strip().splitlines()]


def test_readme_dpo_commands_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # configs/dpo.yaml reads examples/preference from the repo
    (tmp_path / "sft").mkdir()
    raw = make_config(tmp_path / "sft", model="tiny-random-qwen", method="lora", max_steps=2)
    raw["output_dir"] = str(tmp_path / "runs" / "quickstart")
    train(validate_config(raw))
    commands = _commands()
    assert [c[:3] for c in commands] == [
        ["instill", "quickstart", "--dpo"],
        ["instill", "train", "configs/dpo.yaml"],
        ["instill", "merge", "runs/quickstart/final"],
        ["instill", "data", "pairs"],
        ["instill", "train", "configs/dpo.yaml"],
    ]
    tiny = {
        "train": [
            "model.path=tiny-random-qwen",
            "train.max_steps=1",
            f"output_dir={tmp_path}/runs/dpo",
        ],
        "merge": ["--dtype", "float32"],
        "data": ["--limit", "3", "--max-new-tokens", "8"],
        # the whole demo with its DPO stage, shrunk (tests/test_quickstart_dpo.py checks it)
        "quickstart": [
            "model.path=tiny-random-gemma",
            "data.sources.0.path=builtin:train?per_family=1",
            "train.max_steps=1",
            "quickstart.eval_per_family=1",
            "quickstart.max_long_new_tokens=4",
            "quickstart.dpo.prompts_per_family=1",
            "quickstart.dpo.samples=2",
            "quickstart.dpo.max_new_tokens=4",
            "quickstart.dpo.max_steps=1",
            "eval.max_new_tokens=4",
            "train.logging.tensorboard=false",
            f"output_dir={tmp_path}/runs/quickstart-dpo",
        ],
    }
    for command in commands:
        argv = [re.sub(r"(^|=)runs/", rf"\g<1>{tmp_path}/runs/", arg) for arg in command[1:]]
        extra = list(tiny[argv[0]])
        if argv[0] == "train" and any(a.startswith("model.path=") for a in argv):
            extra = extra[1:]  # the README's own model.path (the merged SFT model) stays
        assert main([*argv, *extra]) == 0, argv
    report = json.loads((tmp_path / "runs/quickstart-dpo/report/report.json").read_text())
    assert report["comparison"]["models"] == ["base", "tuned", "tuned+dpo"]
    pairs = [json.loads(line) for line in (tmp_path / "runs/pairs/pairs.jsonl").open()]
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    metrics = [json.loads(line) for line in (tmp_path / "runs/dpo/metrics.jsonl").open()]
    assert any("train/rewards/margin" in m for m in metrics)
