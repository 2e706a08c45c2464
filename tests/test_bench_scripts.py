"""The bench scripts on the tiny model, so they do not rot: the GPU script's CPU path
(`--dry-run`, run between loans), the step profile and the generation benchmark."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_bench_dry_run_prints_one_line_per_run(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_bench.py"),
            "--dry-run",
            "--methods",
            "lora",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    peak, *runs = lines
    assert peak["run"] == "matmul_peak" and peak["matmul_peak_tflops"] > 0
    assert [r["system"] for r in runs] == ["instill", "trl-defaults", "trl-fastest"]
    for r in runs:
        assert "skipped" not in r and "failed" not in r, r
        assert r["model"] == "tiny" and r["method"] == "lora"
        assert r["tokens_per_s_per_gpu"] > 0 and 0 < r["mfu"] < 1
        assert len(r["losses"]) == 3
    # the packed forward went through an attention kernel: instill's matmul attention on a
    # CPU in bf16 (SDPA's where the host has no bf16 and computes in fp32); on a GPU flash / varlen
    kernels = runs[0]["attention_kernels"]
    assert any("scaled_dot_product" in k or k == "CausalAttention" for k in kernels), kernels
    assert runs[0]["gradient_checkpointing"] is False


def test_gpu_bench_refuses_to_pretend_without_a_gpu():
    # no CUDA device visible, whatever this host has: the refusal path runs everywhere
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_bench.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode == 2
    assert "no CUDA device here: run with --dry-run" in proc.stderr


def _run_script(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _run_bench(script: str, *args: str, timeout: int = 600) -> list[dict]:
    proc = _run_script(script, *args, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]


def test_step_profile_attributes_the_step_to_components():
    (out,) = _run_bench("profile_step.py", "--model", "tiny", "--steps", "1", "--warmup-steps", "1")
    phases = out["phases_seconds_per_step"]
    assert set(phases) == {"data (collate)", "forward", "backward", "optimizer step"}
    kinds = {c["component"] for c in out["components"]}
    assert {"matmul: body linears", "matmul: LM head", "attention"} <= kinds
    assert "matmul: LoRA low-rank" in kinds  # the default method is LoRA
    # shares of the operators' self time add up to the whole
    assert sum(c["share_of_op_time"] for c in out["components"]) == pytest.approx(1, abs=0.01)
    # self times cannot exceed the wall time of the profiled steps (one thread issues them)
    assert out["op_seconds_per_step"] <= out["wall_seconds_per_step"] * 1.05


def test_generation_bench_agrees_with_plain_generate():
    lines = _run_bench(
        "generate_throughput.py",
        "--models",
        "tiny",
        "--prompts",
        "6",
        "--batch",
        "4",
        "--max-new-tokens",
        "6",
        "--repeats",
        "1",
    )
    systems = ["instill", "instill, stock linears", "transformers generate"]
    assert [x["system"] for x in lines] == systems
    # greedy decoding of one fp32 model: the same answers from every system, the same tokens
    assert all(x["identical_answers"] == "6/6" for x in lines)
    assert len({x["generated_tokens"] for x in lines}) == 1 and lines[0]["generated_tokens"] > 0
    assert lines[2]["vs_generate"] == 1.0 and lines[0]["vs_generate"] > 0


def test_lever_bench_tabulates_paired_differences(tmp_path):
    records = tmp_path / "records.jsonl"
    proc = _run_script(
        "if_levers.py",
        "--models",
        "a=tiny-random-gemma,b=tiny-random-gemma",
        "--eval-per-family",
        "1",
        "--max-long-new-tokens",
        "8",
        "--records",
        str(records),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [
        line
        for line in proc.stdout.splitlines()
        if line.startswith("| a |") or line.startswith("| b |")
    ]
    assert len(rows) == 2
    answers = [json.loads(line) for line in records.read_text().splitlines()]
    by_model = {m: [r for r in answers if r["model"] == m] for m in ("a", "b")}
    # 3 held-out long-form families x 1 + 13 trained ones x 2, and the format families x 1
    assert sum(r["task"] == "heldout_if" for r in by_model["a"]) == 29
    assert len(by_model["a"]) == len(by_model["b"]) > 29
    # the same greedy model twice: the same answers, so a zero paired difference
    assert [r["response"] for r in by_model["a"]] == [r["response"] for r in by_model["b"]]
    assert rows[1].count("+0.0 (+0.0, +0.0)") == 2
    # a long answer's budget is capped as asked, a short one keeps make demo's 64 tokens
    long_form = [r for r in answers if r["task"] == "heldout_if"]
    assert all(r["stopped"] or r["tokens"] in (8, 64) for r in answers)
    assert any(r["tokens"] == 8 and not r["stopped"] for r in long_form)

    bad = _run_script("if_levers.py", "--settings", "nope", timeout=120)
    assert bad.returncode == 2 and "unknown setting(s) ['nope']" in bad.stderr
