"""`instill quickstart`: the whole point in one command, on the embedded default model.

1. Build the built-in instruction suite (seeded) and export it to `<output_dir>/suite/`.
2. Evaluate the *base* model zero-shot on the three evaluation splits (held-out families,
   held-out phrasings, format compliance).
3. LoRA-tune it on the training split (response-masked, the configured template).
4. Evaluate the tuned model on the very same prompts.
5. Report base vs tuned per split and per family, the share of answers that stop at the
   end-of-turn token, and a few side-by-side answers; `<output_dir>/report/` keeps report.json,
   report.md, chart.png, report.html and every answer.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs

from instill.config import Config
from instill.errors import InstillError


def suite_params(config: Config) -> dict:
    """Seed and rows per family of the config's `builtin:train` source."""
    data = config.require_data("quickstart")
    specs = [s.path for s in data.sources if s.path.startswith("builtin:train")]
    if not specs:
        raise InstillError(
            "instill quickstart trains on the built-in suite: data.sources must include "
            "`builtin:train` (e.g. path: builtin:train?per_family=30)"
        )
    from instill.data.builtin.source import suite_kwargs

    query = {k: v[-1] for k, v in parse_qs(specs[0].partition("?")[2]).items()}
    # The `builtin:` source's own defaults (seed 0...), so the exported eval suite is the one
    # the training rows came from whatever the run's seed is.
    kwargs = suite_kwargs(specs[0], query)
    kwargs.pop("eval_per_family")  # quickstart.eval_per_family sizes the evaluation
    return kwargs


def run_quickstart(config: Config, log=print) -> dict:
    """Run the five steps above; returns the comparison (also in report/report.json)."""
    from instill.data.builtin.suite import build_suite, export_suite
    from instill.eval.builtin_tasks import suite_tasks
    from instill.eval.runner import compare, evaluate, write_report
    from instill.generate.engine import SamplingConfig
    from instill.models.bundle import load_bundle
    from instill.models.load import describe_compute
    from instill.train.loop import train

    started = time.perf_counter()
    out = Path(config.output_dir)
    params = suite_params(config)
    suite = build_suite(eval_per_family=config.quickstart.eval_per_family, **params)
    export_suite(suite, out / "suite")
    counts = suite.counts()
    log(
        f"built-in suite: {counts['train']} training rows; evaluation prompts: "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "train")
    )
    ev = config.eval
    tasks = suite_tasks(
        suite, max_new_tokens=ev.max_new_tokens, long_cap=config.quickstart.max_long_new_tokens
    )
    sampling = SamplingConfig(
        ev.max_new_tokens, ev.do_sample, ev.temperature, ev.top_p, ev.seed, ev.batch_size
    )
    data = config.require_data("quickstart")

    steps = 5 if config.quickstart.dpo.enabled else 3
    log(f"[1/{steps}] evaluating the base model {config.model.path}")
    base = load_bundle(config.model.path, name="base", template=data.template)
    log(f"compute: {describe_compute(base.model.dtype, base.model.device)}")
    records = evaluate(base, tasks, sampling, bar=True)
    del base
    gc.collect()

    log(f"[2/{steps}] tuning")
    result = train(config)
    curation = json.loads((out / "stats.json").read_text()).get("curation")
    log(curation_line(curation))

    log(f"[3/{steps}] evaluating the tuned model")
    tuned = load_bundle(str(result.final_dir), name="tuned")
    records += evaluate(tuned, tasks, sampling, bar=True)
    del tuned
    gc.collect()

    models = ["base", "tuned"]
    dpo_stats = None
    if config.quickstart.dpo.enabled:
        log("[4/5] DPO: preference pairs from the verifiers on the tuned model's answers")
        dpo_final, dpo_stats = run_dpo_stage(config, suite, params, result.final_dir, log)
        log("[5/5] evaluating the DPO-tuned model")
        dpo_model = load_bundle(str(dpo_final), name="tuned+dpo")
        records += evaluate(dpo_model, tasks, sampling, bar=True)
        del dpo_model
        gc.collect()
        models.append("tuned+dpo")

    comparison = compare(
        records,
        models,
        ev.bootstrap_samples,
        ev.seed,
        examples_per_task=config.quickstart.examples,
    )
    comparison["prompts"] = {k: v for k, v in counts.items() if k != "train"}
    comparison["training_rows"] = counts["train"]
    comparison["seconds"] = round(time.perf_counter() - started, 1)
    comparison["curation"] = curation
    if dpo_stats is not None:
        comparison["dpo"] = dpo_stats
    paths = write_report(out / "report", records, comparison)
    comparison["paths"] = {k: str(v) for k, v in paths.items()}
    keys = ("prompts", "training_rows", "seconds", "curation") + (
        ("dpo",) if dpo_stats is not None else ()
    )
    (out / "report" / "quickstart.json").write_text(
        json.dumps({k: comparison[k] for k in keys}, indent=2)
    )
    return comparison


def dpo_prompts(suite, params: dict, per_family: int) -> list[dict]:
    """Training-split prompts for the DPO stage: per trained family, the `per_family` rows that
    come right after the ones SFT trained on (same seeded streams), minus any whose prompt is
    an evaluation prompt or an SFT row (exact prompt match), so no evaluation prompt is trained
    on and DPO sees prompts SFT did not."""
    from instill.data.builtin.suite import build_suite, prompt_key

    trained = params["train_per_family"]
    longform = params.get("longform_per_family")
    longform = trained if longform is None else longform
    more = build_suite(
        **{
            **params,
            "train_per_family": trained + per_family,
            "longform_per_family": longform + per_family,
            "eval_per_family": 1,
        }
    ).rows["train"]
    taken = {prompt_key(r) for rows in suite.rows.values() for r in rows}
    out = []
    for row in more:
        sft_rows = longform if row["category"] == "longform" else trained
        if int(row["id"].rsplit("/", 1)[1]) < sft_rows or prompt_key(row) in taken:
            continue
        taken.add(prompt_key(row))
        out.append(row)
    return out


def run_dpo_stage(config: Config, suite, params: dict, sft_final: Path, log=print):
    """Pairs from the verifiers on the SFT model's sampled answers (chosen: the reference or a
    passing sample; rejected: a failing or non-stopping sample), the SFT adapter merged into
    the base (the checked `instill merge`), then DPO with a fresh LoRA on the merged model,
    whose reference is the SFT model itself (adapters off). Returns (DPO final dir, stats)."""
    from instill.config import DataConfig, SourceConfig
    from instill.generate.engine import Generator, SamplingConfig
    from instill.models.bundle import load_bundle
    from instill.models.export import merge_adapter
    from instill.pipelines.pairs import build_pairs, suite_checkables, write_pairs
    from instill.progress import track
    from instill.train.loop import train

    q, cap = config.quickstart.dpo, config.quickstart.max_long_new_tokens
    out = Path(config.output_dir)
    started = time.perf_counter()
    rows = dpo_prompts(suite, params, q.prompts_per_family)
    checkables = [
        replace(c, item=replace(c.item, max_new_tokens=min(c.item.max_new_tokens, cap)))
        if c.item.max_new_tokens
        else c
        for c in suite_checkables(rows, "dpo-prompts")
    ]
    sft = load_bundle(str(sft_final), name="tuned")
    sampling = SamplingConfig(
        q.max_new_tokens, True, q.temperature, 1.0, config.seed, config.eval.batch_size
    )
    with track("pairs", len(checkables) * q.samples, unit="answers") as bar:
        result = build_pairs(
            Generator.for_bundle(sft), checkables, q.samples, sampling, bar.advance
        )
    del sft
    gc.collect()
    pairs_path = write_pairs(result, out / "dpo" / "pairs.jsonl")
    stats = dict(result.stats)
    stats["pairs_seconds"] = round(time.perf_counter() - started, 1)
    log(
        f"pairs: {stats['pairs']} from {stats['prompts']} prompts x {q.samples} samples "
        f"({', '.join(f'{v} {k}' for k, v in stats['outcome'].items())}); {pairs_path}"
    )
    if not result.rows:
        raise InstillError(
            "the DPO stage found no preference pairs: every sampled answer passed or none did; "
            "raise quickstart.dpo.prompts_per_family or samples"
        )
    merged = out / "dpo" / "sft-merged"
    # float32: the merged weights are the SFT model itself (no rounding of base + delta), so
    # DPO's reference (the merged model, adapters off) is exactly the model that made the pairs.
    report = merge_adapter(sft_final, merged, dtype="float32")
    log(
        f"merged the SFT adapter into the base for DPO: {merged} (checked: greedy agreement "
        f"{report.check.greedy_agreement:.1%} on {report.check.answer_tokens} tokens)"
    )
    data = config.require_data("quickstart")
    dpo_config = config.model_copy(
        update={
            "model": config.model.model_copy(update={"path": str(merged)}),
            "data": DataConfig(
                sources=[SourceConfig(path=str(pairs_path))],
                template=data.template,
                max_length=data.max_length,
            ),
            "train": config.train.model_copy(
                update={
                    "objective": "dpo",
                    "dpo": q.dpo,
                    "epochs": q.epochs,
                    "max_steps": q.max_steps,
                    "batch_size": q.batch_size,
                    "lr": q.lr,
                    "sample_prompts": [],
                    "eval_tasks": [],
                }
            ),
            "output_dir": str(out / "dpo"),
        }
    )
    # Validated again as a whole (the DPO objective's own rules: the pair file's format).
    dpo_config = type(config).model_validate(dpo_config.model_dump())
    trained = train(dpo_config)
    stats["train_seconds"] = round(time.perf_counter() - started - stats["pairs_seconds"], 1)
    stats["pairs_path"] = str(pairs_path)
    return trained.final_dir, stats


def curation_line(curation: dict | None) -> str:
    """What curation did to the training split: rows removed and the decontamination verdict."""
    if not curation:
        return "curation: off"
    removed = curation["removed_by_step"]
    dc = curation.get("decontaminate")
    text = (
        f"curation of the training split: {curation['funnel']['valid']} rows, "
        f"{removed['exact_dedup']} exact duplicates removed"
    )
    if dc:
        text += (
            f"; decontaminated against {dc['prompts']} prompts of the evaluation splits "
            f"({dc['ngram']}-grams, a row is removed when it holds >= {dc['min_score']:.0%} of "
            f"a prompt's n-grams): {removed['decontaminate']} rows removed"
        )
        if removed["decontaminate"] == 0:
            text += " (the splits are disjoint by construction)"
        if dc["kept_below_min_score"]:
            text += (
                f"; {dc['kept_below_min_score']} rows share some context n-grams with an eval "
                f"prompt (at most {dc['max_score_kept']:.0%} of it) and are kept"
            )
    return text + f"; report: {curation['report']}"
