"""`instill serve` under N concurrent clients vs transformers `generate`, one request at a time.

For each model: first the baseline in this process (the model loaded by `load_bundle`, each
prompt rendered by the same renderer and answered by `model.generate`, greedy, one request at a
time, time to first token taken by a streamer), then the model is freed and `instill serve` is
started on 127.0.0.1; closed-loop clients (each sends its next request when its answer is
complete) stream `/v1/chat/completions` (greedy, `include_usage`) at each concurrency. Reported
per setting: requests/s, output tokens/s, time to first token and total latency (p50 / p95), and
failed requests. One JSON line per setting on stdout, a Markdown table on stderr.

    .venv/bin/python bench/serve.py                      # SmolLM2-135M and Gemma 3 270M
    .venv/bin/python bench/serve.py --models smollm2-135m-instruct --concurrency 1,4
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import torch

from instill.data.conversation import Message
from instill.models.bundle import contiguous_lm_head_input, load_bundle

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how a bicycle works to a child.",
    "List ten fruits and one fact about each.",
    "Describe the water cycle step by step.",
    "Write a poem about the sea at night.",
    "Give advice for someone learning to cook.",
    "Explain why the sky is blue.",
    "Describe a day in the life of a lighthouse keeper.",
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class FirstTokenClock:
    """A `generate` streamer that notes when the first generated token arrives."""

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2 and self.first is None:  # the first call is the prompt
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def baseline(model_name: str, n_requests: int, max_tokens: int) -> dict:
    bundle = load_bundle(model_name)
    model, tok = bundle.model, bundle.tokenizer
    prompts = [PROMPTS[k % len(PROMPTS)] for k in range(n_requests + 1)]
    ttft, total, tokens = [], [], 0
    began = None
    for k, p in enumerate(prompts):
        ids = torch.tensor([bundle.renderer.encode_prompt([Message("user", p)])])
        clock = FirstTokenClock()
        start = time.perf_counter()
        with torch.no_grad(), contiguous_lm_head_input(model):
            out = model.generate(
                input_ids=ids.to(bundle.device),
                attention_mask=torch.ones_like(ids).to(bundle.device),
                max_new_tokens=max_tokens,
                do_sample=False,
                eos_token_id=bundle.stop_ids,
                pad_token_id=tok.pad_token_id,
                streamer=clock,
            )
        end = time.perf_counter()
        if k == 0:  # warm-up, untimed
            began = time.perf_counter()
            continue
        tokens += out.shape[1] - ids.shape[1]
        ttft.append(clock.first - start)
        total.append(end - start)
    wall = time.perf_counter() - began
    del bundle, model
    gc.collect()
    return summary(
        "transformers generate, 1 at a time", 1, n_requests, 0, tokens, wall, ttft, total
    )


def summary(system, clients, requests, failed, tokens, wall, ttft, total) -> dict:
    return {
        "system": system,
        "clients": clients,
        "requests": requests,
        "failed": failed,
        "output_tokens": tokens,
        "wall_s": round(wall, 2),
        "requests_per_s": round(requests / wall, 3),
        "output_tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_s": round(percentile(ttft, 50), 3),
        "ttft_p95_s": round(percentile(ttft, 95), 3),
        "latency_p50_s": round(percentile(total, 50), 3),
        "latency_p95_s": round(percentile(total, 95), 3),
    }


def stream_one(http: httpx.Client, model: str, prompt: str, max_tokens: int) -> tuple:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first, tokens = None, 0
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            return False, 0, 0.0, 0.0
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for c in chunk.get("choices", []):
                if first is None and c["delta"].get("content"):
                    first = time.perf_counter()
    end = time.perf_counter()
    return True, tokens, (first or end) - start, end - start


def run_clients(url: str, model: str, clients: int, per_client: int, max_tokens: int) -> dict:
    results, lock = [], threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            for k in range(per_client):
                prompt = PROMPTS[(c + k) % len(PROMPTS)]
                try:
                    r = stream_one(http, model, prompt, max_tokens)
                except httpx.HTTPError:
                    r = (False, 0, 0.0, 0.0)
                with lock:
                    results.append((*r, k))

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - began
    ok = [r for r in results if r[0]]
    out = summary(
        "instill serve",
        clients,
        len(results),
        len(results) - len(ok),
        sum(r[1] for r in ok),
        wall,
        [r[2] for r in ok],
        [r[3] for r in ok],
    )
    # Every client sends its first request at t=0: those all arrive in one burst, whose prefills
    # alone cost `clients` prompts of compute before the last first token. Later requests arrive
    # staggered, as a service's do; their p95 is reported beside the overall one.
    later = [r[2] for r in ok if r[4] > 0]
    out["ttft_p95_after_first_s"] = round(percentile(later, 95), 3) if later else None
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_bench(model: str, levels: list[int], per_client: int, max_tokens: int) -> list[dict]:
    port = free_port()
    exe = Path(sys.executable).with_name("instill")
    cmd = [str(exe), "serve", model, "--port", str(port), "--max-batch", str(max(levels))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
            if proc.poll() is not None:
                raise RuntimeError(f"instill serve exited with {proc.returncode}")
        run_clients(url, model, 1, 1, max_tokens)  # warm-up
        return [run_clients(url, model, c, per_client, max_tokens) for c in levels]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m-instruct,gemma-3-270m")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--baseline-requests", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "command": " ".join(["bench/serve.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    rows = []
    for model in args.models.split(","):
        base = baseline(model, args.baseline_requests, args.max_tokens)
        for r in [base, *serve_bench(model, levels, args.requests_per_client, args.max_tokens)]:
            r = {"model": model, "max_tokens": args.max_tokens, **r, "machine": machine}
            rows.append(r)
            print(json.dumps(r), flush=True)
    head = (
        "| model | system | clients | requests | failed | req/s | out tok/s | x baseline | "
        "TTFT p50 / p95 (s) | TTFT p95 after first (s) | latency p50 / p95 (s) |"
    )
    lines = [head, "|" + "---|" * 11]
    by_model: dict[str, float] = {}
    for r in rows:
        if r["system"].startswith("transformers"):
            by_model[r["model"]] = r["output_tokens_per_s"]
        ratio = r["output_tokens_per_s"] / by_model[r["model"]]
        lines.append(
            f"| {r['model']} | {r['system']} | {r['clients']} | {r['requests']} | {r['failed']} | "
            f"{r['requests_per_s']:.2f} | {r['output_tokens_per_s']:.1f} | {ratio:.1f}x | "
            f"{r['ttft_p50_s']:.2f} / {r['ttft_p95_s']:.2f} | "
            f"{_num(r.get('ttft_p95_after_first_s'))} | "
            f"{r['latency_p50_s']:.2f} / {r['latency_p95_s']:.2f} |"
        )
    print("\n".join(lines), file=sys.stderr)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    main()
