"""Data-path benchmark: prepared rows as Python lists (the old loop) vs memory-mapped int32 arrays.

What the training loop does with prepared data before any model runs: load `prepared/` and build
micro-batches. Both paths get the same `prepare` output (synthetic Alpaca-like rows from
`bench/data_pipeline.py`, SmolLM2's tokenizer and template, max length 512, packed and unpacked)
and run in separate child processes, one after the other, alternating, so that each one's memory
is its own:

* **lists** (the anchor, the loop before the int32 path, kept verbatim below): `load_from_disk`,
  `ds[column]` per column (with datasets >= 4 a lazy `Column` that converts a row to a Python
  list on each access), per-row supervised counts in Python, and batches built row by row with
  one `torch.tensor` per row and column;
* **int32**: `TokenRows.load` (the flat `.npy` columns `prepare` writes, memory-mapped) and
  `instill.train.data.collate` (one vectorised gather per column).

Figures per child: seconds to load, resident memory added by the load (RSS after minus before;
for int32 these are file-backed pages of the labels read to count supervised tokens, shared by
ranks and reclaimable),
peak RSS of the child, and microseconds per micro-batch of 8 rows over `--batches` micro-batches
taken in the loop's seeded permutation order. One JSON line per run on stdout, a Markdown table on
stderr. `.venv/bin/python bench/data_path.py --rows 50000`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IGNORE_INDEX = -100


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- the anchor


def lists_load(directory: str):
    """The loop before the int32 path (`train/setup.py::_load_rows` + `Rows.from_columns`)."""
    import datasets

    ds = datasets.load_from_disk(directory)
    cols = {c: ds[c] for c in ("input_ids", "labels", "position_ids") if c in ds.column_names}
    labels = cols["labels"]
    supervised = [sum(1 for x in row[1:] if x != IGNORE_INDEX) for row in labels]
    return cols["input_ids"], labels, cols.get("position_ids"), supervised


def lists_collate(data, idx, pad_id, fixed_length):
    """The old `train/data.py::collate`, verbatim but for the tuple argument."""
    import torch

    input_ids, labels_rows, position_ids, _ = data
    longest = max(len(input_ids[i]) for i in idx)
    n = fixed_length if (fixed_length and position_ids is not None) else -(-longest // 8) * 8
    ids = torch.full((len(idx), n), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), n), IGNORE_INDEX, dtype=torch.long)
    if position_ids is not None:
        pos = torch.zeros((len(idx), n), dtype=torch.long)
        for b, i in enumerate(idx):
            k = len(input_ids[i])
            ids[b, :k] = torch.tensor(input_ids[i])
            labels[b, :k] = torch.tensor(labels_rows[i])
            pos[b, :k] = torch.tensor(position_ids[i])
            pos[b, k:] = torch.arange(n - k)
        return {"input_ids": ids, "labels": labels, "position_ids": pos, "attention_mask": None}
    mask = torch.zeros((len(idx), n), dtype=torch.long)
    for b, i in enumerate(idx):
        k = len(input_ids[i])
        ids[b, :k] = torch.tensor(input_ids[i])
        labels[b, :k] = torch.tensor(labels_rows[i])
        mask[b, :k] = 1
    return {"input_ids": ids, "labels": labels, "position_ids": None, "attention_mask": mask}


# --------------------------------------------------------------------------- one child


def child(spec: dict) -> dict:
    import datasets  # noqa: F401  (imported before measuring: the libraries are not the data)
    import pyarrow  # noqa: F401
    import torch

    from instill.data.prepared import TokenRows
    from instill.train.data import collate, epoch_permutation

    torch.set_num_threads(1)
    before = rss_bytes()
    t0 = time.perf_counter()
    if spec["path"] == "lists":
        data = lists_load(spec["dir"])
        n_rows = len(data[0])
        checksum_sup = sum(data[3])
    else:
        data = TokenRows.load(spec["dir"])
        n_rows = len(data)
        checksum_sup = int(data.supervised.sum())
    load_s = time.perf_counter() - t0
    added = rss_bytes() - before
    perm = epoch_permutation(n_rows, 0, 0)
    fixed = spec["max_length"] if spec["packed"] else None
    batches = [perm[k * 8 : (k + 1) * 8] for k in range(min(spec["batches"], n_rows // 8))]
    build = lists_collate if spec["path"] == "lists" else collate
    t0 = time.perf_counter()
    tokens = 0
    for idx in batches:
        batch = build(data, idx, 0, fixed)
        tokens += int((batch["labels"] != IGNORE_INDEX).sum())
    per_batch_us = (time.perf_counter() - t0) / len(batches) * 1e6
    return {
        "path": spec["path"],
        "packed": spec["packed"],
        "rows": n_rows,
        "supervised_tokens": checksum_sup,
        "load_s": round(load_s, 3),
        "rss_added_mb": round(added / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "collate_us_per_batch": round(per_batch_us, 1),
        "batched_labels": tokens,
    }


def prepare_dirs(rows: int, work: Path) -> dict[bool, str]:
    sys.path.insert(0, str(HERE))
    from data_pipeline import as_messages, make_rows, write_jsonl

    from instill.config import validate_config
    from instill.data.prepare import prepare
    from instill.models.tokenizer_loading import load_tokenizer_for

    src = write_jsonl(work / "rows.jsonl", (as_messages(r) for r in make_rows(rows)))
    out = {}
    for packed in (True, False):
        config = validate_config(
            {
                "model": {"path": "smollm2-135m-instruct"},
                "data": {"sources": [{"path": str(src)}], "max_length": 512, "packing": packed},
                "output_dir": str(work / f"packed-{packed}"),
            }
        )
        prepare(config, load_tokenizer_for(config), progress=False)
        out[packed] = str(work / f"packed-{packed}" / "prepared")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child(json.loads(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="synthetic conversations")
    parser.add_argument("--batches", type=int, default=300, help="micro-batches of 8 timed")
    parser.add_argument("--repeats", type=int, default=2)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="instill-data-path-") as tmp:
        dirs = prepare_dirs(opts.rows, Path(tmp))
        results = []
        for _ in range(opts.repeats):
            for packed in (True, False):
                for path in ("lists", "int32"):
                    spec = {
                        "path": path,
                        "packed": packed,
                        "dir": dirs[packed],
                        "batches": opts.batches,
                        "max_length": 512,
                    }
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", json.dumps(spec)],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    rec = json.loads(out.stdout.strip().splitlines()[-1])
                    rec.update(
                        machine=cpu_name(),
                        command=" ".join([Path(sys.argv[0]).name, *argv]),
                        date=time.strftime("%Y-%m-%d"),
                    )
                    print(json.dumps(rec), flush=True)
                    results.append(rec)
    _table(results)
    return 0


def _table(results: list[dict]) -> None:
    import statistics

    head = "| rows | path | load s | RSS added MB | peak RSS MB | collate us/batch |"
    print(head, file=sys.stderr)
    print("|---|---|---:|---:|---:|---:|", file=sys.stderr)
    for packed in (True, False):
        for path in ("lists", "int32"):
            rs = [r for r in results if r["packed"] == packed and r["path"] == path]
            if not rs:
                continue

            def med(key, rs=rs):
                return statistics.median(r[key] for r in rs)

            kind = f"{rs[0]['rows']:,} {'packed' if packed else 'unpacked'}"
            print(
                f"| {kind} | {path} | {med('load_s'):.2f} | {med('rss_added_mb'):.0f} | "
                f"{med('peak_rss_mb'):.0f} | {med('collate_us_per_batch'):.0f} |",
                file=sys.stderr,
            )
    for packed in (True, False):
        sup = {r["path"]: r["supervised_tokens"] for r in results if r["packed"] == packed}
        if len(set(sup.values())) > 1:
            raise SystemExit(f"the two paths disagree on supervised tokens: {sup}")


if __name__ == "__main__":
    raise SystemExit(main())
