"""Curation benchmark: rows per second of each step, memory, and planted precision/recall.

Measured, each on its own with one worker (rows per CPU-second of this process, so other load
on a shared machine does not count) and with `--num-proc` workers (wall time):

* exact dedup, near dedup (signatures; LSH index + verification + clusters), quality filters,
  decontamination, and the whole `curate()` with every step on;
* on `--rows` synthetic instruction rows (deterministic: unique prompts, exact copies, near
  duplicates, filter targets and pasted eval prompts) and on the real multi-template T0 sample
  in ../shared/data/t0-sample (5,000 prompt/completion rows; the same article under many
  templates), decontaminated against the 252 user-oriented instructions of Self-Instruct;
* the LSH index against datasketch's `MinHashLSH` on the same signatures (time, traced memory,
  candidate pairs);
* the planted sets of `tests/planted.py`: near-duplicate precision/recall at the defaults and
  at datatrove's web defaults (word 5-grams, 14 bands x 8 rows, no verification), and
  decontamination recall and false-positive rate at 13- and 8-grams.

Prints one JSON line per measurement on stdout and Markdown tables on stderr:
    .venv/bin/python bench/curate.py > bench-curate.jsonl
    .venv/bin/python bench/curate.py --rows 20000 --skip-datasketch   # quick (~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shlex
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/planted.py: the planted sets the tests assert on

from instill.config import CurateConfig  # noqa: E402
from instill.data.conversation import Conversation, Message  # noqa: E402
from instill.data.curate import EvalPrompt, curate  # noqa: E402
from instill.data.curate.decontaminate import EvalIndex, contaminated_rows  # noqa: E402
from instill.data.curate.dedup import (  # noqa: E402
    MinHashParams,
    candidate_pairs,
    exact_duplicates,
    near_duplicates,
    signatures_parallel,
    star_clusters,
    verified_pairs,
)
from instill.data.curate.filters import QualityFilter  # noqa: E402
from instill.data.curate.text import view  # noqa: E402
from tests.planted import (  # noqa: E402
    TEMPLATES,
    WORDS,
    contamination_scores,
    contamination_set,
    edit,
    near_dup_scores,
    near_dup_set,
)

SHARED = ROOT.parent / "shared" / "data"
RESULTS: list[dict] = []


def emit(**record) -> None:
    RESULTS.append(record)
    print(json.dumps(record), flush=True)


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores, {model}, Python {platform.python_version()}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    """Wall and CPU time (this process and its finished children) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = _cpu() - self.cpu


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# --------------------------------------------------------------------------- data


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def synthetic(n: int, seed: int = 0) -> tuple[list[Conversation], list[EvalPrompt]]:
    """`n` rows: 72% unique prompts, 10% exact copies, 10% near duplicates (1-3 word edits),
    4% filter targets and 4% rows containing one of 500 eval prompts; 20-60-word prompts,
    10-120-word answers."""
    rng = random.Random(seed)
    evals = [
        EvalPrompt("synthetic-eval", str(k), _words(rng, rng.randint(20, 40)) + "?")
        for k in range(500)
    ]
    rows: list[Conversation] = []
    prompts: list[str] = []
    for i in range(n):
        where = f"synthetic.jsonl:line {i + 1}"
        r = rng.random()
        answer = _words(rng, rng.randint(10, 120)).capitalize() + "."
        if r < 0.10 and rows:
            user, answer = (m.content for m in rng.choice(rows).messages)
            user = user.upper() + "  "  # the same row, case and spacing changed
        elif r < 0.20 and prompts:
            user = " ".join(edit(rng.choice(prompts).split(), rng.randint(1, 3), rng))
        elif r < 0.24:
            user = _words(rng, 25)
            answer = rng.choice(
                [
                    "As an AI language model, I cannot help with that.",
                    user,
                    "again and again " * 12,
                    "It costs 5 â‚¬ at the cafÃ©.",
                ]
            )
        elif r < 0.28:
            user = "Please answer: " + rng.choice(evals).text
        else:
            template = rng.choice(TEMPLATES) if rng.random() < 0.5 else ""
            user = template + _words(rng, rng.randint(20, 60) - len(template.split()))
            prompts.append(user)
        rows.append(
            Conversation((Message("user", user), Message("assistant", answer)), source=where)
        )
    return rows, evals


def t0_rows() -> list[Conversation]:
    """The T0 sample as conversations (prompt -> user, completion -> assistant)."""
    rows = []
    for path in sorted((SHARED / "t0-sample").glob("*.jsonl")):
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                d = json.loads(line)
                rows.append(
                    Conversation(
                        (Message("user", d["prompt"]), Message("assistant", d["completion"])),
                        source=f"{path.name}:line {k}",
                    )
                )
    return rows


def self_instruct_prompts() -> list[EvalPrompt]:
    """Self-Instruct's 252 user-oriented instructions (with their first input) as eval prompts."""
    out = []
    path = SHARED / "self-instruct" / "user_oriented_instructions.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        first = (d.get("instances") or [{}])[0].get("input", "")
        out.append(
            EvalPrompt("self-instruct-user-oriented", d["id"], f"{d['instruction']}\n{first}")
        )
    return out


# --------------------------------------------------------------------------- steps


def bench_steps(name: str, rows: list[Conversation], evals: list[EvalPrompt], num_proc: int):
    cfg = CurateConfig.model_validate(
        {
            "near_dedup": {"enabled": True},
            "filters": {"enabled": True},
            "decontaminate": {"enabled": True},
        }
    )
    params = MinHashParams.from_config(cfg.near_dedup)
    n = len(rows)
    user = [view(r, "user") for r in rows]
    convo = [view(r, "conversation") for r in rows]

    def record(step: str, workers: int, t: Timer, rows_in: int, **extra) -> None:
        emit(
            bench="curate",
            data=name,
            step=step,
            workers=workers,
            rows=rows_in,
            wall_s=round(t.wall, 3),
            cpu_s=round(t.cpu, 3),
            rows_per_cpu_s=round(rows_in / max(t.cpu, 1e-9)),
            rows_per_wall_s=round(rows_in / max(t.wall, 1e-9)),
            **extra,
        )

    with Timer() as t:
        dups = exact_duplicates(convo, lambda i: i)
    record("exact_dedup", 1, t, n, removed=len(dups))
    rank = np.arange(n, dtype=np.int64)
    for workers in sorted({1, num_proc}):
        with Timer() as t:
            sig = signatures_parallel(user, params, workers)
        record("near_dedup: signatures", workers, t, n)
    ref = user[: min(n, 10_000)]
    with Timer() as t:
        reference = datasketch_signatures(ref, params)
    record(
        "near_dedup: signatures, datasketch MinHash.update_batch (reference)",
        1,
        t,
        len(ref),
        same_values=bool((reference == signatures_parallel(ref, params, 1)).all()),
    )
    with Timer() as t:
        pairs, sims, checked = verified_pairs(sig, rank, params)
        found = star_clusters(pairs, sims, rank, params.threshold)
    record(
        "near_dedup: LSH + verify + clusters",
        1,
        t,
        n,
        candidates_checked=checked,
        removed=len(found),
    )
    tracemalloc.start()
    verified_pairs(sig, rank, params)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    emit(
        bench="curate",
        data=name,
        step="near_dedup: index memory",
        rows=n,
        signatures_bytes_per_row=int(sig.nbytes / n),
        lsh_peak_bytes_per_row=int(peak / n),
        rows_per_gb=int(2**30 / (sig.nbytes / n + peak / n)),
    )
    check = QualityFilter(cfg.filters).check
    with Timer() as t:
        flagged = sum(1 for r in rows if check(r))
    record("filters", 1, t, n, flagged=flagged)
    index = EvalIndex(evals, 13)
    for workers in sorted({1, num_proc}):
        with Timer() as t:
            hits = contaminated_rows(user, index, 0.0, workers)
        record(
            "decontaminate (13-grams)", workers, t, n, eval_prompts=len(evals), removed=len(hits)
        )
    for workers in sorted({1, num_proc}):
        with Timer() as t:
            result = curate(
                [rows], cfg.model_copy(update={"num_proc": workers}), eval_prompts=evals
            )
        record(
            "all steps (curate)",
            workers,
            t,
            n,
            removed=result.stats["removed_by_step"],
            kept=len(result.kept),
        )
    return sig


def datasketch_signatures(texts: list[str], params: MinHashParams) -> np.ndarray:
    """The signatures through datasketch's own per-row API, on the same shingle hashes."""
    import datasketch

    from instill.data.curate.dedup import shingle_hashes

    a_b = datasketch.MinHash(num_perm=params.num_perm, seed=params.seed).permutations
    out = np.empty((len(texts), params.num_perm), dtype=np.uint32)
    for i, text in enumerate(texts):
        m = datasketch.MinHash(
            num_perm=params.num_perm, hashfunc=int, permutations=a_b, scheme="affine32"
        )
        hashes = shingle_hashes(text, params.shingle, params.shingle_size)
        m.update_batch(hashes.tolist())
        out[i] = m.hashvalues
    return out


def bench_datasketch_lsh(sig: np.ndarray, params: MinHashParams, limit: int) -> None:
    """datasketch's MinHashLSH on the same signatures: insert + query, time and memory."""
    import datasketch

    sig = sig[:limit]
    n = len(sig)
    rank = np.arange(n, dtype=np.int64)
    with Timer() as ours:
        pairs = candidate_pairs(sig, rank, params)
    tracemalloc.start()
    candidate_pairs(sig, rank, params)
    ours_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    sketches = [
        datasketch.LeanMinHash(seed=params.seed, hashvalues=sig[i], scheme="affine32")
        for i in range(n)
    ]
    tracemalloc.start()
    with Timer() as theirs:
        lsh = datasketch.MinHashLSH(
            num_perm=params.num_perm, params=(params.bands, params.rows_per_band)
        )
        for i, m in enumerate(sketches):
            lsh.insert(i, m, check_duplication=False)
        found = 0
        for i, m in enumerate(sketches):
            found += sum(1 for j in lsh.query(m) if j > i)
    theirs_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    emit(
        bench="curate",
        data="synthetic",
        step="LSH index: instill (NumPy band sort) vs datasketch MinHashLSH",
        rows=n,
        instill_s=round(ours.wall, 2),
        instill_cpu_s=round(ours.cpu, 2),
        instill_peak_mb=round(ours_peak / 2**20, 1),
        instill_candidate_pairs=len(pairs),
        datasketch_s=round(theirs.wall, 2),
        datasketch_cpu_s=round(theirs.cpu, 2),
        datasketch_peak_mb=round(theirs_peak / 2**20, 1),
        datasketch_candidate_pairs=found,
    )


def bench_planted() -> None:
    default = MinHashParams()
    web = MinHashParams(threshold=1e-9, shingle="word", shingle_size=5, bands=14, rows_per_band=8)
    for label, params in (
        ("defaults (char 5-grams, 32x4, 0.6)", default),
        ("datatrove web defaults (word 5-grams, 14x8, LSH only)", web),
    ):
        for edits in ((1, 2), (3, 5)):
            scores = []
            for seed in range(3):
                s = near_dup_set(edit_counts=edits, seed=seed)
                found = near_duplicates(s.texts, list(range(len(s.texts))), params, num_proc=1)
                scores.append(near_dup_scores(s, {d.removed: d.kept for d in found}))
            p = float(np.mean([x["precision"] for x in scores]))
            r = float(np.mean([x["recall"] for x in scores]))
            by = {
                k: round(float(np.mean([x["recall_by_edits"][k] for x in scores])), 4)
                for k in scores[0]["recall_by_edits"]
            }
            emit(
                bench="curate",
                planted="near_dedup",
                settings=label,
                edits=list(edits),
                rows=len(s.texts),
                seeds=3,
                precision=round(p, 4),
                recall=round(r, 4),
                f1=round(2 * p * r / (p + r), 4) if p + r else 0.0,
                recall_by_edits=by,
                hard_negatives_removed=sum(x["hard_negatives_removed"] for x in scores),
            )
    s = contamination_set()
    prompts = [EvalPrompt("planted", str(i), p) for i, p in enumerate(s.prompts)]
    for n in (13, 8):
        index = EvalIndex(prompts, n)
        hits = contaminated_rows(s.texts, index, 0.0, 1)
        emit(
            bench="curate",
            planted="decontaminate",
            ngram=n,
            prompts=len(prompts),
            texts=len(s.texts),
            **contamination_scores(s, {h.row for h in hits}),
        )


# --------------------------------------------------------------------------- tables


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(*names: str, right: int = 0) -> list[str]:
    aligns = ["---"] * (len(names) - right) + ["---:"] * right
    return [_row(*names), "|" + "|".join(aligns) + "|"]


def tables() -> str:
    out = _header("data", "step", "workers", "rows", "wall s", "CPU s", "rows/s per core")
    out[0] = out[0][:-1] + "| rows/s (wall) | notes |"
    out[1] = "|---|---|---:|---:|---:|---:|---:|---:|---|"
    keys = ("removed", "flagged", "candidates_checked", "kept", "eval_prompts", "same_values")
    for r in RESULTS:
        if "rows_per_cpu_s" in r:
            notes = ", ".join(f"{k}={v}" for k, v in r.items() if k in keys)
            out.append(
                _row(
                    r["data"],
                    r["step"],
                    r["workers"],
                    f"{r['rows']:,}",
                    r["wall_s"],
                    r["cpu_s"],
                    f"{r['rows_per_cpu_s']:,}",
                    f"{r['rows_per_wall_s']:,}",
                    notes,
                )
            )
    out.append("")
    for r in RESULTS:
        if r.get("step") == "near_dedup: index memory":
            out.append(
                f"- {r['data']}: signatures {r['signatures_bytes_per_row']} B/row + LSH peak "
                f"{r['lsh_peak_bytes_per_row']} B/row = {r['rows_per_gb']:,} rows per GB"
            )
        if r.get("step", "").startswith("LSH index"):
            out.append(
                f"- LSH on {r['rows']:,} signatures: instill {r['instill_s']} s, "
                f"{r['instill_peak_mb']} MB peak, {r['instill_candidate_pairs']:,} pairs; "
                f"datasketch MinHashLSH {r['datasketch_s']} s, {r['datasketch_peak_mb']} MB peak, "
                f"{r['datasketch_candidate_pairs']:,} pairs"
            )
    out += ["", *_header("planted set", "settings", "edits", "precision", "recall", "F1")]
    out[-2] = out[-2][:-1] + "| recall by edits | hard negatives removed |"
    out[-1] = "|---|---|---|---:|---:|---:|---|---:|"
    for r in RESULTS:
        if r.get("planted") == "near_dedup":
            by = ", ".join(f"{k}: {v}" for k, v in r["recall_by_edits"].items())
            out.append(
                _row(
                    f"near dup ({r['rows']} rows x {r['seeds']} seeds)",
                    r["settings"],
                    r["edits"],
                    r["precision"],
                    r["recall"],
                    r["f1"],
                    by,
                    r["hard_negatives_removed"],
                )
            )
    names = ("pasted", "substring", "paraphrased", "edited", "reworded")
    out += ["", *_header("planted set", "n-gram", *names, "false-positive rate", right=7)]
    for r in RESULTS:
        if r.get("planted") == "decontaminate":
            out.append(
                _row(
                    f"contamination ({r['prompts']} eval prompts, {r['texts']} rows)",
                    r["ngram"],
                    *(r[f"recall_{k}"] for k in names),
                    f"{r['false_positive_rate']} ({r['negatives']} negatives)",
                )
            )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000, help="synthetic rows")
    ap.add_argument("--num-proc", type=int, default=2, help="workers for the parallel runs")
    ap.add_argument(
        "--datasketch-rows", type=int, default=50_000, help="rows for the MinHashLSH comparison"
    )
    ap.add_argument("--skip-datasketch", action="store_true")
    args = ap.parse_args()
    started = time.perf_counter()
    emit(
        bench="curate",
        machine=machine(),
        command="python " + shlex.join(sys.argv),
        date=str(date.today()),
        load_average=[round(x, 2) for x in os.getloadavg()],
    )
    rows, evals = synthetic(args.rows)
    sig = bench_steps("synthetic", rows, evals, args.num_proc)
    if (SHARED / "t0-sample").is_dir():
        bench_steps("t0-sample", t0_rows(), self_instruct_prompts(), args.num_proc)
    if not args.skip_datasketch:
        bench_datasketch_lsh(sig, MinHashParams(), args.datasketch_rows)
    bench_planted()
    emit(
        bench="curate",
        peak_rss_mb=round(peak_rss_mb(), 1),
        seconds=round(time.perf_counter() - started, 1),
        load_average=[round(x, 2) for x in os.getloadavg()],
    )
    print(tables(), file=sys.stderr)


if __name__ == "__main__":
    main()
