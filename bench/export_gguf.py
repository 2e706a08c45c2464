"""GGUF export benchmark: time, peak memory and file size of `instill export` per type.

The model is saved once as a plain Hugging Face dir with instill's renderer (`save_bundle`, what
a full fine-tune's `final/` looks like), then each type is exported in its own child process so
its peak RSS is its own; the export includes the transformers round trip, reported too.

Prints one JSON line per export on stdout and a Markdown table on stderr:
    .venv/bin/python bench/export_gguf.py                          # Gemma 3 270M, f16 + q8_0
    .venv/bin/python bench/export_gguf.py --model tiny-random-gemma --types f16,bf16,q8_0
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def save_plain_dir(model: str, directory: Path) -> float:
    import torch

    from instill.data.templates import chat_template_source
    from instill.models.bundle import load_bundle, save_bundle

    started = time.perf_counter()
    bundle = load_bundle(model, dtype=torch.float32, device="cpu")
    # As training saves it: the tokenizer carries the training template as Jinja.
    bundle.tokenizer.chat_template = chat_template_source(bundle.renderer.template)
    save_bundle(directory, bundle, {"base_model": model})
    return time.perf_counter() - started


def export_one(model_dir: str, out: str, quant_type: str) -> dict:
    from instill.models.gguf_export import export_gguf

    started = time.perf_counter()
    report = export_gguf(model_dir, out, quant_type, ollama=True)
    rt = report.round_trip
    return {
        "type": quant_type,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "size_mb": round(report.size_bytes / 2**20, 1),
        "tensors": report.tensors,
        "max_abs_delta": rt.max_abs_delta,
        "tolerance": rt.tolerance,
        "exact_delta": rt.exact_delta,
        "argmax_agreement": rt.argmax_agreement,
        "greedy_identical": rt.greedy_identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--types", default="f16,q8_0")
    parser.add_argument("--child", nargs=3, metavar=("DIR", "OUT", "TYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(export_one(*args.child)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="instill-bench-gguf-") as tmp:
        model_dir = Path(tmp) / "model"
        save_s = save_plain_dir(args.model, model_dir)
        for quant_type in args.types.split(","):
            out = str(Path(tmp) / f"model-{quant_type}.gguf")
            cmd = [sys.executable, __file__, "--child", str(model_dir), out, quant_type]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = {"model": args.model, "save_dir_s": round(save_s, 1), **json.loads(line)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(
        "| type | export s (incl. round trip) | peak RSS MB | size MB | max abs dlogit "
        "| tolerance | argmax agree | greedy same |",
        file=sys.stderr,
    )
    print("|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        print(
            f"| {r['type']} | {r['seconds']} | {r['peak_rss_mb']} | {r['size_mb']} "
            f"| {r['max_abs_delta']:.3g} | {r['tolerance']:.3g} "
            f"| {r['argmax_agreement']:.1%} | {r['greedy_identical']} |",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
