"""Many LoRA adapters on one base through `instill serve`: selection by `model`, run-time load and
unload, and answers equal to each adapter's offline answer whatever else is in flight."""

from __future__ import annotations

import concurrent.futures
import json
import shlex

import httpx
import openai
import pytest
import torch

from instill.cli import main
from instill.config import validate_config
from instill.data.conversation import Message
from instill.generate.stream import DecodeEngine, DecodeRequest
from instill.models.bundle import load_bundle
from instill.train.loop import train
from tests.serving import running_server

BASE = "tiny-random-qwen"
PROMPTS = ["Repeat the number 7 twice.", "List three colors.", "Reverse the word hello."]


def _adapter(root, name: str, rows: list[dict]):
    root.mkdir(parents=True, exist_ok=True)
    data = root / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    raw = {
        "model": {"path": BASE, "dtype": "float32"},
        "data": {"sources": [{"path": str(data)}], "max_length": 64},
        "train": {
            "method": "lora",
            "max_steps": 2,
            "batch_size": 8,
            "lr": 1e-3,
            "warmup_ratio": 0.0,
            "logging": {"tensorboard": False},
            "sample_prompts": [],
        },
        "output_dir": str(root / "run"),
    }
    return train(validate_config(raw)).final_dir


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    numbers = [
        {"instruction": f"Repeat the number {i} twice.", "output": f"{i} {i}"} for i in range(24)
    ]
    words = ["hello", "banana", "sea", "fox", "dog", "code", "math", "letter"] * 3
    reverse = [{"instruction": f"Reverse the word {w}.", "output": w[::-1]} for w in words]
    return {
        "numbers": _adapter(root / "a", "numbers", numbers),
        "reverse": _adapter(root / "b", "reverse", reverse),
    }


def _offline(path: str | None, max_tokens: int = 8) -> dict[str, str]:
    """Greedy answers of the base, or of one adapter loaded alone (unmerged, fp32)."""
    bundle = load_bundle(str(path) if path else BASE, dtype=torch.float32, merge_adapter=False)
    engine = DecodeEngine.for_bundle(bundle)
    out = {}
    for p in PROMPTS:
        prompt = bundle.renderer.encode_prompt([Message("user", p)])
        out[p] = engine.run([DecodeRequest(prompt, max_new_tokens=max_tokens)])[0].text
    return out


def test_adapters_on_one_base_answer_as_alone_and_load_at_run_time(tmp_path, adapters):
    expected = {None: _offline(None), **{n: _offline(p) for n, p in adapters.items()}}
    assert expected["numbers"] != expected[None] != expected["reverse"]
    args = [BASE, "--dtype", "float32", "--adapter", f"numbers={adapters['numbers']}"]
    args += ["--adapter", f"reverse={adapters['reverse']}"]
    with running_server(args, tmp_path / "server.log") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        models = {m.id: getattr(m, "parent", None) for m in client.models.list().data}
        assert models == {BASE: None, "numbers": BASE, "reverse": BASE}

        def ask(job):
            name, prompt = job
            r = client.chat.completions.create(
                model=name or BASE,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=8,
                temperature=0,
            )
            return r.choices[0].message.content

        # Base and both adapters at once, many times over: batches are per adapter.
        jobs = [(n, p) for _ in range(3) for n in (None, "numbers", "reverse") for p in PROMPTS]
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(ask, jobs))
        assert [a == expected[n][p] for (n, p), a in zip(jobs, answers, strict=True)] == [
            True
        ] * len(jobs)
        # Unload one at run time: it is gone, the others still answer as before.
        assert httpx.delete(f"{url}/admin/adapters/reverse").json()["deleted"] is True
        with pytest.raises(openai.NotFoundError):
            ask(("reverse", PROMPTS[0]))
        assert ask(("numbers", PROMPTS[0])) == expected["numbers"][PROMPTS[0]]
        # Load it again under a new name.
        r = httpx.post(
            f"{url}/admin/adapters", json={"name": "again", "path": str(adapters["reverse"])}
        )
        assert r.status_code == 200 and r.json()["parent"] == BASE
        assert [ask(("again", p)) for p in PROMPTS] == [expected["reverse"][p] for p in PROMPTS]
        assert [ask((None, p)) for p in PROMPTS] == [expected[None][p] for p in PROMPTS]
        dup = httpx.post(f"{url}/admin/adapters", json={"name": "numbers", "path": "x"})
        assert dup.status_code == 409 and "already loaded" in dup.json()["error"]["message"]


def test_print_vllm_gives_the_same_model_template_adapters_and_stops(tmp_path, capsys, adapters):
    argv = ["serve", BASE, "--adapter", f"numbers={adapters['numbers']}"]
    argv += ["--adapter", f"reverse={adapters['reverse']}", "--print-vllm", str(tmp_path)]
    assert main(argv) == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[:3] == ["vllm", "serve", BASE]
    template = tmp_path / "chat_template.jinja"
    assert words[words.index("--chat-template") + 1] == str(template)
    assert words[words.index("--host") + 1] == "127.0.0.1"
    lora = words.index("--lora-modules")
    assert "--enable-lora" in words
    assert words[lora + 1 : lora + 3] == [
        f"numbers={adapters['numbers']}",
        f"reverse={adapters['reverse']}",
    ]
    assert words[words.index("--max-lora-rank") + 1] == "16"
    bundle = load_bundle(BASE, dtype=torch.float32)
    generation = json.loads(words[words.index("--override-generation-config") + 1])
    assert generation == {"eos_token_id": bundle.stop_ids}
    # The written template renders prompts exactly as the training renderer does.
    messages = [
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello"),
        Message("user", "List three colors."),
    ]
    as_dicts = [{"role": m.role, "content": m.content} for m in messages]
    text = bundle.tokenizer.apply_chat_template(
        as_dicts, chat_template=template.read_text(), tokenize=False, add_generation_prompt=True
    )
    assert text == bundle.renderer.template.render(messages, add_generation_prompt=True)
    # A LoRA final/ as the model: vLLM serves its base with it as an adapter.
    assert main(["serve", str(adapters["numbers"]), "--print-vllm", str(tmp_path / "b")]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[2] == BASE
    assert words[words.index("--lora-modules") + 1] == f"final={adapters['numbers']}"
