"""Everything shipped is exercised: every YAML in configs/ and the README's commands."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from instill.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


def test_there_are_shipped_configs():
    assert [p.name for p in CONFIGS] == [
        "curate.yaml",
        "dpo.yaml",
        "eval.yaml",
        "freeze.yaml",
        "full.yaml",
        "lora.yaml",
        "multi_gpu.yaml",
        "qlora.yaml",
        "quality.yaml",
        "quickstart.yaml",
        "synth.yaml",
    ]
    assert [p.name for p in ACCELERATE_CONFIGS] == ["ddp.yaml", "deepspeed.yaml", "fsdp.yaml"]


# synth.yaml trains on what `instill synth` writes: tests/test_synth.py runs both steps.
TRAIN_CONFIGS = [p for p in CONFIGS if load_config(p).data is not None and p.name != "synth.yaml"]
EVAL_CONFIGS = [p for p in CONFIGS if load_config(p).data is None]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates_and_its_files_exist(path):
    cfg = load_config(path)
    for src in cfg.data.sources if cfg.data else []:
        if src.path.startswith("builtin:"):
            continue  # generated in-process (tests/test_builtin_suite.py)
        if cfg.synth is not None and src.path == f"{cfg.output_dir}/synth/synth.jsonl":
            assert all((ROOT / seed).is_file() for seed in cfg.synth.seeds)
            continue  # written by `instill synth` (tests/test_synth.py)
        assert (ROOT / src.path).exists(), f"{path.name}: {src.path} does not exist"
    for task in cfg.eval.tasks + cfg.train.eval_tasks:
        assert task.path is None or (ROOT / task.path).exists(), f"{path.name}: {task.path}"


@pytest.mark.parametrize("path", EVAL_CONFIGS, ids=[p.name for p in EVAL_CONFIGS])
def test_every_eval_config_runs_on_a_tiny_model(path, tmp_path, monkeypatch):
    from instill.cli import main

    monkeypatch.chdir(ROOT)
    code = main(
        [
            "eval",
            str(path),
            "--model",
            "tiny-random-qwen",
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--output-dir",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0
    assert (tmp_path / "eval" / "report.html").is_file()


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=[p.name for p in ACCELERATE_CONFIGS])
def test_every_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes == 8 and cfg.mixed_precision == "bf16"


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=[p.name for p in TRAIN_CONFIGS])
def test_every_shipped_config_trains_a_few_steps_on_a_tiny_model(path, tmp_path, monkeypatch):
    """The shipped recipe as it is, but on a tiny model for two steps."""
    from instill.train.loop import train

    monkeypatch.chdir(ROOT)
    cfg = load_config(
        path,
        [
            "model.path=tiny-random-gemma",
            "train.max_steps=2",
            "train.batch_size=2",
            "train.freeze.last_n_layers=1",
            "train.logging.tensorboard=false",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    result = train(cfg)
    assert result.state.step == 2
    assert (result.final_dir / "generation_config.json").is_file()


def _make_recipe(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, flags=re.M)
    assert match, f"Makefile has no {target} target"
    return [line.strip() for line in match.group(1).splitlines()]


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_make_demo_commands_run(tmp_path):
    """Runs the `instill` commands of `make demo` on the real default model, shrunk.

    The install steps are what `make test` did; the quickstart's full size is measured by
    `make demo` itself (bench/RESULTS.md), so here the suite, steps and budgets are small.
    """
    commands = [c for c in _make_recipe("demo") if "instill " in c]
    assert [c.split()[1] for c in commands] == ["prepare", "quickstart"]
    exe = Path(sys.executable).with_name("instill")
    out_dir = tmp_path / "run"
    small = [
        "data.sources.0.path=builtin:train?per_family=2",
        "train.max_steps=2",
        "quickstart.eval_per_family=1",
        "quickstart.max_long_new_tokens=16",
        "eval.max_new_tokens=8",
        "train.sample_prompts=[]",
        "train.logging.tensorboard=false",
        f"output_dir={out_dir}",
    ]
    outputs = []
    for command in commands:
        args = command.replace("$(BIN)/instill", "").split()
        proc = subprocess.run(
            [str(exe), *args, *small], cwd=ROOT, capture_output=True, text=True, timeout=1500
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs.append(proc.stdout)
    assert "[[" in outputs[0] and "<end_of_turn>]]" in outputs[0]  # examples shown, marked
    assert "rows read / kept / rejected" in outputs[0]
    assert "base vs tuned per split" in outputs[1] and "heldout_families" in outputs[1]
    report = json.loads((out_dir / "report" / "report.json").read_text())
    assert report["comparison"]["models"] == ["base", "tuned"]
    assert (out_dir / "final" / "adapter_model.safetensors").is_file()
