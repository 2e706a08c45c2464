"""Everything shipped is exercised: every YAML in configs/ and the README's commands."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from instill.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_shipped_configs():
    assert [p.name for p in CONFIGS] == ["example.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates_and_its_files_exist(path):
    cfg = load_config(path)
    for src in cfg.data.sources:
        assert (ROOT / src.path).exists(), f"{path.name}: {src.path} does not exist"


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
def test_make_demo_command_runs(tmp_path):
    """Runs the `instill` command of `make demo` (the install steps are what `make test` did)."""
    (command,) = [c for c in _make_recipe("demo") if "instill " in c]
    args = command.replace("$(BIN)/instill", "").split()
    exe = Path(sys.executable).with_name("instill")
    out_dir = tmp_path / "run"
    proc = subprocess.run(
        [str(exe), *args, f"output_dir={out_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[[" in proc.stdout and "<end_of_turn>]]" in proc.stdout  # examples shown, marked
    assert "rows read / kept / rejected" in proc.stdout
    assert (out_dir / "prepared").is_dir() and (out_dir / "stats.json").is_file()
