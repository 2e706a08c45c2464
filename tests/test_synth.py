"""`instill synth` end to end: the funnel, the verifiers, the reply cache (rerun, kill and resume),
a teacher over real HTTP (`instill serve` on loopback) and the shipped config's rows training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from instill.config import load_config, validate_config
from instill.data.conversation import Conversation, Message
from instill.data.curate.filters import QualityFilter
from instill.data.synth.bootstrap import bootstrap_messages, input_messages
from instill.eval.constraints import check_all
from instill.generate.teacher import (
    CachedTeacher,
    LocalTeacher,
    OpenAITeacher,
    TeacherError,
    TeacherReply,
    TeacherRequest,
)
from instill.pipelines.synth import run_synth
from tests.serving import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]

SEEDS = [
    "Give three tips for staying healthy.",
    "Translate the sentence into French.",
    "Summarize the paragraph in one sentence.",
    "Suggest a name for a new coffee shop.",
    "Explain why the sky is blue.",
    "Classify the sentiment of the review as positive or negative.",
]
TOPICS = [
    "the water cycle", "photosynthesis", "compound interest", "volcanoes", "the stock market",
    "machine learning", "the French revolution", "plate tectonics", "black holes", "vaccines",
    "renewable energy", "the human heart", "ancient Rome", "climate change", "the internet",
    "honey bees", "electric cars", "the moon landing", "coral reefs", "democracy",
]  # fmt: skip
VERBS = ["Describe", "Write a short essay on", "Explain to a child", "List facts about"]


def _seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seeds.jsonl"
    rows = [
        {
            "id": f"seed_{i}",
            "instruction": text,
            "instances": [{"input": "", "output": "An answer."}],
            "is_classification": False,
        }
        for i, text in enumerate(SEEDS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prefix(messages: list[dict], marker: str) -> str:
    return messages[-1]["content"].split(marker)[0]


BOOTSTRAP = _prefix(bootstrap_messages(["MARKER"], 1), "1. MARKER")
INPUT = _prefix(input_messages("MARKER"), "MARKER")


class ScriptedTeacher:
    """Answers by rules, so that every verdict of the funnel is known: a bootstrap prompt gets
    a numbered list with good tasks and one of each kind the filters drop; an input prompt
    gets an input for the "Translate" tasks; a response is good except for the "volcanoes"
    tasks (a refusal) and the "List facts about" ones (it never stops); a constrained prompt gets a
    lowercase answer without commas."""

    identity = "scripted:v1"

    def __init__(self) -> None:
        self.seen: list[TeacherRequest] = []

    def complete(self, requests, on_done=None):
        self.seen += list(requests)
        out = [self._answer(r) for r in requests]
        if on_done is not None:
            for _ in out:
                on_done(1)
        return out

    def _answer(self, r: TeacherRequest) -> TeacherReply:
        user = r.messages[-1][1]
        if user.startswith(BOOTSTRAP):
            n = 1 + max(int(line.split(".")[0]) for line in user.splitlines() if line[:1].isdigit())
            k = r.seed
            items = [
                f"{VERBS[k % 4]} {TOPICS[k % 20]} in plain words for a curious reader.",
                f"{VERBS[(k + 1) % 4]} {TOPICS[(k + 7) % 20]} and why it matters today.",
                "Draw a picture of a cat sitting on a mat.",  # blocklist
                "Hi there.",  # too short
                "Write a program that sorts a list of numbers.",  # program
                SEEDS[k % len(SEEDS)],  # a copy of a seed: ROUGE
            ]
            text = "\n".join(f"{n + i}. {t}" for i, t in enumerate(items))
            return TeacherReply(text, "stop", 50, 60)
        if user.startswith(INPUT):
            return TeacherReply("No input needed.", "stop", 20, 4)
        if "volcanoes" in user and "lowercase" not in user.lower():
            return TeacherReply("I'm sorry, but as an AI language model I cannot.", "stop", 9, 9)
        if user.startswith("List facts about"):
            return TeacherReply("Bees bees bees and more", "length", 9, 9)
        body = (
            "here is a clear answer in three sentences. it explains the idea step by step. "
            "it ends with a short summary"
        )
        return TeacherReply(body, "stop", 30, 25)


def _config(tmp_path: Path, seeds: Path, **synth) -> object:
    raw = {
        "model": {"path": "tiny-random-qwen"},
        "synth": {
            "seeds": [str(seeds)],
            "instructions": {"target": 12, "max_requests": 8, "requests_per_round": 4},
            "augment": {"tries": 2, "repair": True},
            **synth,
        },
        "output_dir": str(tmp_path / "run"),
    }
    return validate_config(raw)


def test_funnel_verdicts_and_rows(tmp_path):
    seeds = _seed_file(tmp_path)
    teacher = ScriptedTeacher()
    run = run_synth(_config(tmp_path, seeds), teacher=teacher, progress=False)
    f = run.report["funnel"]
    dropped = json.loads("[" + ",".join(run.paths["dropped"].read_text().splitlines()) + "]")
    reasons = {d["reason"] for d in dropped if d["stage"] == "instructions"}
    assert {"blocklist", "too_short", "program", "rouge_similar"} <= reasons
    kept = [
        json.loads(line)["instruction"]
        for line in run.paths["instructions"].read_text().splitlines()
    ]
    assert 6 <= len(kept) == f["instructions"]["kept"] <= 12
    assert not any(k in SEEDS or "picture" in k or "program" in k for k in kept)
    # Every parsed candidate is either kept or dropped with a reason: nothing silently lost.
    i = f["instructions"]
    assert i["parsed"] == i["kept"] + sum(i["dropped"].values())
    # Stage 2: refusals and answers that never stop are not kept; the rest pass the filters.
    responses = [r for r in run.rows if r["synth"]["stage"] == "responses"]
    assert responses and all(
        "volcanoes" not in r["messages"][0]["content"]
        and "honey bees" not in r["messages"][0]["content"]
        for r in responses
    )
    kinds = {d["reason"] for d in dropped if d["stage"] == "responses"}
    assert "refusal" in " ".join(kinds) and "no_stop" in kinds
    quality = QualityFilter(_config(tmp_path, seeds).synth.responses.filters)
    for r in responses:
        conv = Conversation(tuple(Message(m["role"], m["content"]) for m in r["messages"]))
        assert quality.check(conv) == []
    # Stage 3: every kept answer passes every constraint on its row, repaired or not.
    augmented = [r for r in run.rows if r["synth"]["stage"] == "augment"]
    assert augmented
    for r in augmented:
        assert r["constraints"] == r["synth"]["constraints"]
        assert check_all(r["messages"][-1]["content"], r["constraints"])[0]
    a = f["augment"]
    assert a["prompts"] == a["kept"] + a["dropped"]["no_passing_answer"]
    assert any(r["synth"].get("repairs") for r in augmented)  # the uppercase ones got repaired
    # No duplicate rows; each row reads as a training row.
    texts = [json.dumps(r["messages"]) for r in run.rows]
    assert len(texts) == len(set(texts))
    assert run.paths["html"].read_text().startswith("<!doctype html>")
    assert "Stage 1: new instructions" in run.paths["md"].read_text()


def test_rerun_sends_nothing_and_writes_the_same(tmp_path):
    seeds = _seed_file(tmp_path)
    cfg = _config(tmp_path, seeds)
    first = run_synth(cfg, teacher=ScriptedTeacher(), progress=False)
    before = first.paths["rows"].read_bytes()
    again_teacher = ScriptedTeacher()
    second = run_synth(cfg, teacher=again_teacher, progress=False)
    assert again_teacher.seen == []  # every reply came from the cache
    assert second.report["teacher_calls"]["sent"] == 0
    assert second.paths["rows"].read_bytes() == before
    assert second.paths["dropped"].read_bytes() == first.paths["dropped"].read_bytes()


def test_cache_ignores_a_torn_line_and_resends_only_that(tmp_path):
    teacher = ScriptedTeacher()
    path = tmp_path / "cache.jsonl"
    reqs = [TeacherRequest.chat([{"role": "user", "content": f"q{i}"}], seed=i) for i in range(5)]
    CachedTeacher(teacher, path).complete(reqs)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])  # a kill mid-write
    again = ScriptedTeacher()
    cached = CachedTeacher(again, path)
    assert cached.stats.torn_lines == 1
    cached.complete(reqs)
    assert [r.seed for r in again.seen] == [4]


# --------------------------------------------------------------------------- real HTTP


def test_http_teacher_served_by_instill_serve_equals_in_process(tmp_path):
    local = LocalTeacher.load("tiny-random-qwen", dtype=__import__("torch").float32)
    reqs = [
        TeacherRequest.chat([{"role": "user", "content": "Name a color."}], max_tokens=12),
        TeacherRequest.chat(
            [{"role": "user", "content": "Say hi."}], max_tokens=12, temperature=0.9, seed=7
        ),
    ]
    expected = local.complete(reqs)
    args = ["tiny-random-qwen", "--dtype", "float32"]
    with running_server(args, tmp_path / "server.log") as url:
        remote = OpenAITeacher(f"{url}/v1", "tiny-random-qwen", concurrency=2)
        got = remote.complete(reqs)
        assert [g.text for g in got] == [e.text for e in expected]
        assert [g.finish_reason for g in got] == [e.finish_reason for e in expected]
        cfg = _config(
            tmp_path,
            _seed_file(tmp_path),
            teacher={"base_url": f"{url}/v1", "model": "tiny-random-qwen"},
            instructions={
                "target": 2,
                "max_requests": 2,
                "requests_per_round": 2,
                "max_tokens": 16,
            },
            augment={"tries": 1, "max_tokens": 16, "share": 0.5},
        )
        run = run_synth(cfg, progress=False)
    calls = run.report["teacher_calls"]
    assert calls["sent"] > 0 and calls["sent"] == calls["cached_replies"]
    assert run.paths["json"].is_file()


class _Flaky(BaseHTTPRequestHandler):
    plan: ClassVar[list[int]] = []
    hits = 0

    def do_POST(self):
        type(self).hits += 1
        self.rfile.read(int(self.headers["content-length"]))
        status = self.plan.pop(0) if self.plan else 200
        body = (
            {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
            if status == 200 else {"error": {"message": "bad field max_tokens"}}
        )  # fmt: skip
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_teacher_retries_then_refuses_bad_requests():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        req = [TeacherRequest.chat([{"role": "user", "content": "x"}])]
        _Flaky.plan = [503, 429]
        teacher = OpenAITeacher(url, "m", max_retries=3, backoff_s=0.01, timeout_s=5)
        assert teacher.complete(req)[0].text == "ok"
        assert teacher.retries == 2
        _Flaky.plan, _Flaky.hits = [400], 0
        with pytest.raises(TeacherError, match=r"HTTP 400.*max_tokens"):
            teacher.complete(req)
        assert _Flaky.hits == 1  # a bad request is not retried
        _Flaky.plan = [503] * 5
        with pytest.raises(TeacherError, match="failed 2 times"):
            OpenAITeacher(url, "m", max_retries=1, backoff_s=0.01).complete(req)
    finally:
        server.shutdown()


# --------------------------------------------------------------------------- kill and resume


def _synth_cmd(cfg_path: Path) -> list[str]:
    return [sys.executable, "-m", "instill.cli", "synth", str(cfg_path)]


def test_killed_run_resumes_without_sending_a_request_twice(tmp_path):
    seeds = _seed_file(tmp_path)

    def write_cfg(name: str) -> Path:
        raw = {
            "model": {"path": "tiny-random-qwen"},
            "synth": {
                "seeds": [str(seeds)],
                "teacher": {
                    "path": "tiny-random-qwen",
                    "dtype": "float32",
                    "batch_size": 2,
                    "write_every": 4,
                },
                "instructions": {"enabled": False},
                "augment": {"tries": 4, "max_tokens": 24, "temperature": 1.0},
            },
            "output_dir": str(tmp_path / name),
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(raw))
        return path

    env = {**os.environ, "INSTILL_PROGRESS": "off"}
    whole = write_cfg("whole")
    subprocess.run(_synth_cmd(whole), check=True, env=env, capture_output=True, timeout=300)
    killed = write_cfg("killed")
    cache = tmp_path / "killed" / "synth" / "cache" / "replies.jsonl"
    proc = subprocess.Popen(_synth_cmd(killed), env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (
        not cache.is_file() or len(cache.read_text().splitlines()) < 8
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    cached_before = len(cache.read_text().splitlines())
    assert 8 <= cached_before < 24, "the kill came too late to test resuming"
    subprocess.run(_synth_cmd(killed), check=True, env=env, capture_output=True, timeout=300)
    report = json.loads((tmp_path / "killed" / "synth" / "report.json").read_text())
    keys = [json.loads(line)["key"] for line in cache.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 24  # no request was answered twice
    assert report["teacher_calls"]["sent"] == 24 - cached_before
    for name in ("synth.jsonl", "dropped.jsonl"):
        a = (tmp_path / "whole" / "synth" / name).read_bytes()
        assert (tmp_path / "killed" / "synth" / name).read_bytes() == a


# --------------------------------------------------------------------------- the shipped config


class _ScriptedHandler(BaseHTTPRequestHandler):
    """The scripted teacher behind an OpenAI-compatible route."""

    teacher = ScriptedTeacher()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        req = TeacherRequest.chat(body["messages"], seed=body.get("seed", 0))
        reply = self.teacher.complete([req])[0]
        data = json.dumps(
            {
                "choices": [
                    {"message": {"content": reply.text}, "finish_reason": reply.finish_reason}
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_shipped_synth_config_writes_rows_that_instill_train_reads(tmp_path, monkeypatch):
    from instill.cli import main

    monkeypatch.chdir(ROOT)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _ScriptedHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "run"
    common = [f"output_dir={out}", f"data.sources.0.path={out / 'synth' / 'synth.jsonl'}"]
    try:
        code = main(
            [
                "synth",
                "configs/synth.yaml",
                *common,
                f"synth.teacher.base_url=http://127.0.0.1:{server.server_address[1]}/v1",
                "synth.teacher.model=scripted",
                "synth.instructions.target=10",
                "synth.instructions.max_requests=4",
                "synth.augment.share=0.05",
            ]
        )
    finally:
        server.shutdown()
    assert code == 0
    rows = (out / "synth" / "synth.jsonl").read_text().splitlines()
    assert len(rows) >= 5
    code = main(
        [
            "train",
            "configs/synth.yaml",
            *common,
            "model.path=tiny-random-gemma",
            "train.max_steps=2",
            "train.batch_size=2",
            "train.logging.tensorboard=false",
        ]
    )
    assert code == 0
    assert (out / "final").is_dir()


def test_synth_without_a_section_says_what_to_add(tmp_path):
    cfg = load_config(None, ["model.path=tiny-random-qwen", f"output_dir={tmp_path}"])
    from instill.errors import InstillError

    with pytest.raises(InstillError, match="synth: section"):
        run_synth(cfg, teacher=ScriptedTeacher(), progress=False)


@pytest.mark.slow
def test_embedded_teacher_keeps_checked_rows(tmp_path):
    """SmolLM2-135M-Instruct as the teacher: a small run keeps rows that pass their checks."""
    cfg = _config(
        tmp_path,
        _seed_file(tmp_path),
        teacher={"path": "smollm2-135m-instruct", "batch_size": 8},
        instructions={"target": 4, "max_requests": 4, "requests_per_round": 4, "max_tokens": 160},
        responses={"candidates": 2, "max_tokens": 128},
        augment={"tries": 2, "max_tokens": 160},
    )
    run = run_synth(cfg, progress=False)
    assert run.report["funnel"]["instructions"]["kept"] >= 1
    for r in run.rows:
        if "constraints" in r:
            assert check_all(r["messages"][-1]["content"], r["constraints"])[0]
