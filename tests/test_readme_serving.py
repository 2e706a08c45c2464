"""The README's chat / generate / serve commands, its curl and its openai-client example, run as
written on a tiny LoRA `final/` (model paths swapped for tiny ones, the port for a free one)."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
from pathlib import Path

from instill.cli import main
from instill.config import validate_config
from instill.train.loop import train
from tests.serving import running_server
from tests.test_train import make_config

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Using a model: `instill chat`")
    return readme[start : readme.index("\n## ", start + 1)]


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", _section(), flags=re.S)


def test_readme_serving_commands_run(tmp_path, monkeypatch, capsys):
    final = train(validate_config(make_config(tmp_path, method="lora", max_steps=2))).final_dir
    swaps = {
        "runs/quickstart/final": str(final),
        "gemma-3-270m": "tiny-random-qwen",
        "runs/answers.jsonl": str(tmp_path / "answers.jsonl"),
        "runs/vllm": str(tmp_path / "vllm"),
    }

    def swap(text: str) -> str:
        for old, new in swaps.items():
            text = text.replace(old, new)
        return text

    commands = [
        shlex.split(swap(line), comments=True) for line in _blocks("bash")[0].strip().splitlines()
    ]
    assert [c[:2] for c in commands] == [
        ["instill", "chat"],
        ["instill", "generate"],
        ["instill", "serve"],
        ["instill", "serve"],
    ]
    chat, generate, serve, print_vllm = (c[1:] for c in commands)

    monkeypatch.setattr("sys.stdin", io.StringIO("List three colors.\n/exit\n"))
    assert main([*chat, "--max-new-tokens", "4"]) == 0
    assert "assistant> " in capsys.readouterr().out

    assert main([*generate, "--max-new-tokens", "4", "--limit", "3"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all({"answer", "stopped", "prompt_tokens"} <= set(r) for r in rows)
    assert "3 answered" in capsys.readouterr().out

    assert main(print_vllm) == 0
    assert capsys.readouterr().out.startswith("vllm serve tiny-random-qwen ")
    assert (tmp_path / "vllm" / "chat_template.jinja").is_file()

    with running_server([*serve[1:], "--dtype", "float32"], tmp_path / "server.log") as url:
        port = url.rsplit(":", 1)[1]
        curl = _blocks("bash")[1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        done = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120)
        answer = json.loads(done.stdout)
        assert answer["model"] == "tuned" and answer["choices"][0]["finish_reason"]
        code = _blocks("python")[0].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        exec(compile(code, "README.md", "exec"), {})  # streams the answer to stdout
        assert capsys.readouterr().out
