"""Batched greedy generation: instill's `Generator` (DecodeEngine) vs plain `model.generate`.

Three systems: instill as it ships; instill with its oneDNN linears off (`packed_linears=False`,
so the growing KV cache and continuous batching are what remain); and `model.generate`. They
answer the same rendered prompts (user messages of the synthetic Alpaca-style rows
of `bench/data_pipeline.py`, the model's template), greedy, with the same token budget, stop
tokens and batch size, on the same loaded model in one process, alternating systems over
`--repeats` timed runs after an untimed warm-up. `model.generate` gets the prompts left-padded
in batches of `--batch` (its usual batched use); instill's engine batches continuously (a
finished row hands its place to the next prompt). Figures: generated tokens (each answer up to
and including its stop token) per second of wall time, the median over repeats; and the share
of answers each system wrote as `generate` did (greedy decoding of the same model should agree, up
to the float ties that padding can flip). Prints one JSON line per model and system and a
Markdown table on stderr.

    .venv/bin/python bench/generate_throughput.py                       # SmolLM2 + Gemma 3 270M
    .venv/bin/python bench/generate_throughput.py --models tiny --prompts 8 --max-new-tokens 8
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_pipeline import command, machine, make_rows, versions

MODELS = {"tiny": "tiny-random-llama", "smollm2": "smollm2-135m-instruct", "gemma": "gemma-3-270m"}


def hf_generate(model, tokenizer, prompts: list[list[int]], stop_ids, batch: int, budget: int):
    """`model.generate` over left-padded batches; each answer cut after its first stop token."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        with torch.no_grad():
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=budget,
                do_sample=False,
                eos_token_id=list(stop_ids),
                pad_token_id=pad,
            )
        for row in gen[:, width:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in stop_ids), len(row))
            out.append(row[:cut])
    return out


def measure(key: str, chats, opts) -> list[dict]:
    """Both systems on one model: the JSON lines."""
    from instill.generate.engine import Generator, SamplingConfig
    from instill.models.bundle import load_bundle

    lines = []
    bundle = load_bundle(MODELS[key])
    model = bundle.model.eval()
    gen = Generator.for_bundle(bundle)
    prompts = [gen.prompt_ids(c) for c in chats]
    stop = list(gen.stop_ids)

    stock = Generator(model, bundle.renderer, bundle.stop_ids, packed_linears=False)

    def instill(k: int, budget: int, generator=gen) -> list[list[int]]:
        sampling = SamplingConfig(max_new_tokens=budget, batch_size=opts.batch)
        return [g.token_ids for g in generator.generate(chats[:k], sampling)]

    def instill_stock(k: int, budget: int) -> list[list[int]]:
        return instill(k, budget, stock)

    def plain(k: int, budget: int) -> list[list[int]]:
        tok = bundle.renderer.tokenizer
        return hf_generate(model, tok, prompts[:k], stop, opts.batch, budget)

    runs = {
        "instill": instill,
        "instill, stock linears": instill_stock,
        "transformers generate": plain,
    }
    for fn in runs.values():  # untimed warm-up: kernel set-up, allocator
        fn(opts.batch, 4)
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, list[list[int]]] = {}
    for _ in range(opts.repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            outputs[name] = fn(len(chats), opts.max_new_tokens)
            times[name].append(time.perf_counter() - t)
    ref = None
    for name in runs:
        same = sum(
            a == b for a, b in zip(outputs[name], outputs["transformers generate"], strict=True)
        )
        tokens = sum(len(x) for x in outputs[name])
        seconds = statistics.median(times[name])
        line = {
            "bench": "generate_throughput",
            "model": MODELS[key],
            "system": name,
            "prompts": opts.prompts,
            "batch": opts.batch,
            "max_new_tokens": opts.max_new_tokens,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "generated_tokens": tokens,
            "seconds": round(seconds, 3),
            "seconds_all": [round(x, 3) for x in times[name]],
            "tokens_per_s": round(tokens / seconds, 2),
            "identical_answers": f"{same}/{opts.prompts}",
            "machine": machine(),
            "versions": versions(),
            "command": command(),
        }
        ref = line["tokens_per_s"] if name == "transformers generate" else ref
        lines.append(line)
    for line in lines:
        line["vs_generate"] = round(line["tokens_per_s"] / ref, 2) if ref else None
        print(json.dumps(line), flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch
    import transformers

    from instill.data.conversation import Message

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(opts.threads)
    rows = make_rows(opts.prompts, 0)
    chats = [[Message("user", r["user"])] for r in rows]
    lines = []
    for key in opts.models.split(","):
        lines += measure(key, chats, opts)
    print(
        "| model | system | batch | tokens | s | tokens/s | vs generate | identical |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|",
        file=sys.stderr,
    )
    for x in lines:
        print(
            f"| {x['model']} | {x['system']} | {x['batch']} | {x['generated_tokens']} | "
            f"{x['seconds']} | {x['tokens_per_s']} | {x['vs_generate']}x | "
            f"{x['identical_answers']} |",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
