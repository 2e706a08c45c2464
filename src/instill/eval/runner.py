"""Run eval tasks on models and compare them: per-prompt records, summaries, base vs tuned.

`evaluate` answers every prompt of every task (batched generation with the training renderer)
and scores it; `compare` puts several models side by side per task family with the score delta
and a paired 95% bootstrap interval over prompts, the share of answers that stopped at the
end-of-turn token, and examples where the models disagree. `write_report` writes it all
atomically (each file to a temp name, then renamed), so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from instill.atomic import atomic_directory, write_atomic
from instill.data.conversation import Conversation, Message
from instill.data.masking import IGNORE_INDEX
from instill.eval.tasks import EvalItem, EvalTask
from instill.generate.engine import Generator, SamplingConfig
from instill.models.bundle import Bundle
from instill.models.loss import decoder_hidden_states, labelled_logprobs, logit_softcap


@dataclass
class Record:
    """One prompt's outcome for one model."""

    model: str
    task: str
    family: str
    id: str
    prompt: str
    response: str
    reference: Any
    score: float
    stopped: bool | None
    tokens: int
    details: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- scoring


def score_answer(task: EvalTask, item: EvalItem, response: str) -> tuple[float, dict]:
    """Score one answer with the prompt's (else the task's) metric, or the row's constraints."""
    metric = item.metric or task.metric
    options = item.metric_options if item.metric is not None else task.metric_options
    if metric == "constraints":
        from instill.eval.constraints import check_all

        passed, results = check_all(response, list(item.constraints))
        failed = [r.detail for r in results if not r.passed]
        return (1.0 if passed else 0.0), {"constraints_failed": failed}
    from instill.eval.metrics import score

    value = score(metric, response, item.reference, **(options or {}))
    return float(value), {}


def evaluate(
    lm: Bundle,
    tasks: Sequence[EvalTask],
    sampling: SamplingConfig,
    bar: bool = False,
) -> list[Record]:
    """Every prompt of every task, answered by `lm` and scored.

    Args:
        bar: show a progress bar over the prompts (not inside another live display, such as
            the training bar).
    """
    with _eval_bar(bar, lm.name, sum(len(t.items) for t in tasks)) as advance:
        return _evaluate(lm, tasks, sampling, advance)


@contextmanager
def _eval_bar(enabled: bool, name: str, total: int) -> Iterator[Callable[[int], None]]:
    from instill.progress import track

    with track(f"eval {name}", total, unit="prompts", enabled=enabled) as tracker:
        yield tracker.advance


def _evaluate(lm, tasks, sampling, advance) -> list[Record]:
    records: list[Record] = []
    generator = Generator.for_bundle(lm)
    tok = lm.renderer.tokenizer
    for task in tasks:
        if task.kind == "generate":
            budget = task.max_new_tokens or sampling.max_new_tokens
            cfg = SamplingConfig(
                budget,
                sampling.do_sample,
                sampling.temperature,
                sampling.top_p,
                sampling.seed,
                sampling.batch_size,
            )
            gens = generator.generate([item.messages for item in task.items], cfg, advance)
            for item, gen in zip(task.items, gens, strict=True):
                value, details = score_answer(task, item, gen.text)
                records.append(
                    Record(
                        lm.name,
                        task.name,
                        task.family_of(item),
                        item.id,
                        _prompt_text(tok, generator, item),
                        gen.text,
                        item.reference,
                        value,
                        gen.stopped,
                        len(gen.token_ids),
                        details,
                    )
                )
        elif task.kind == "loglik_choice":
            for item in task.items:
                pick, logps = _choose(lm, item, bool(task.metric_options.get("length_normalize")))
                advance(1)
                ref = (
                    item.reference
                    if isinstance(item.reference, int)
                    else item.choices.index(item.reference)
                )
                records.append(
                    Record(
                        lm.name,
                        task.name,
                        task.family_of(item),
                        item.id,
                        _prompt_text(tok, generator, item),
                        item.choices[pick],
                        item.choices[ref],
                        float(pick == ref),
                        None,
                        0,
                        {"logprobs": logps},
                    )
                )
        else:  # perplexity
            for item in task.items:
                loss, n = _reference_loss(lm, item)
                advance(1)
                records.append(
                    Record(
                        lm.name,
                        task.name,
                        task.family_of(item),
                        item.id,
                        _prompt_text(tok, generator, item),
                        "",
                        item.reference,
                        -loss / max(n, 1),
                        None,
                        n,
                        {"loss_sum": loss},
                    )
                )
    return records


def _prompt_text(tok, generator: Generator, item: EvalItem) -> str:
    return tok.decode(generator.prompt_ids(item.messages), skip_special_tokens=False)


@torch.no_grad()
def _labelled_logprobs(
    lm: Bundle, rows: Sequence[tuple[list[int], list[int]]]
) -> tuple[list[float], list[int]]:
    """Summed log-probability of each row's labelled tokens, all rows in one forward.

    Rows are `(input_ids, labels)` pairs (-100 = not scored), right-padded into one batch; the
    LM head runs only at labelled positions (the training loss's code), not over the vocabulary
    at every position.
    """
    device = lm.device
    width = max(len(ids) for ids, _ in rows)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.stop_ids[0]
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (row_ids, row_labels) in enumerate(rows):
        ids[b, : len(row_ids)] = torch.tensor(row_ids)
        labels[b, : len(row_labels)] = torch.tensor(row_labels)
        mask[b, : len(row_ids)] = 1
    ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
    hidden = decoder_hidden_states(lm.model, ids, attention_mask=mask)  # [rows, width, dim]
    sums, counts = labelled_logprobs(
        hidden, labels, lm.model.get_output_embeddings(), softcap=logit_softcap(lm.model)
    )
    return [float(x) for x in sums], [int(n) for n in counts]


def _choose(lm: Bundle, item: EvalItem, normalize: bool) -> tuple[int, list[float]]:
    """Multiple choice by log-likelihood of each option as the assistant's answer."""
    tok = lm.tokenizer
    prompt = lm.renderer.encode_prompt(item.messages)
    rows = []
    for choice in item.choices:
        cont = tok(choice, add_special_tokens=False)["input_ids"]
        rows.append((prompt + cont, [IGNORE_INDEX] * len(prompt) + cont))
    sums, counts = _labelled_logprobs(lm, rows)
    scores = [lp / max(n, 1) if normalize else lp for lp, n in zip(sums, counts, strict=True)]
    return max(range(len(scores)), key=scores.__getitem__), scores


def _reference_loss(lm: Bundle, item: EvalItem) -> tuple[float, int]:
    """Summed cross-entropy of the reference answer (end-of-turn included) and its token count."""
    conv = Conversation((*item.messages, Message("assistant", str(item.reference))))
    ex = lm.renderer.encode(conv)
    sums, counts = _labelled_logprobs(lm, [(ex.input_ids, ex.labels)])
    return -sums[0], counts[0]


# --------------------------------------------------------------------------- summaries


def summarize(records: Sequence[Record]) -> dict:
    """Per model, per task and per family: n, mean score, stop rate."""
    out: dict = {}
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.model, "task", r.task)].append(r)
        groups[(r.model, "family", r.family)].append(r)
        groups[(r.model, "overall", "all")].append(r)
    for (model, level, key), rs in groups.items():
        stops = [r.stopped for r in rs if r.stopped is not None]
        out.setdefault(model, {}).setdefault(level, {})[key] = {
            "n": len(rs),
            "score": sum(r.score for r in rs) / len(rs),
            "stop_rate": (sum(stops) / len(stops)) if stops else None,
        }
    return out


def bootstrap_delta(
    base: Sequence[float], tuned: Sequence[float], samples: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of `tuned - base` over paired prompts, with a 95% percentile bootstrap interval."""
    diffs = [t - b for b, t in zip(base, tuned, strict=True)]
    if not diffs:
        return math.nan, math.nan, math.nan
    mean = sum(diffs) / len(diffs)
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    lo = means[int(0.025 * (samples - 1))]
    hi = means[int(0.975 * (samples - 1))]
    return mean, lo, hi


def compare(
    records: Sequence[Record],
    models: Sequence[str],
    samples: int = 1000,
    seed: int = 0,
    examples_per_task: int = 3,
) -> dict:
    """Models side by side: per family and per task, the first model is the baseline."""
    base_name = models[0]
    by_key: dict[tuple[str, str, str], Record] = {(r.model, r.task, r.id): r for r in records}
    summary = summarize(records)
    rows = []
    for level in ("family", "task", "overall"):
        keys = sorted({k for m in models for k in summary.get(m, {}).get(level, {})})
        for key in keys:
            row: dict = {"level": level, "name": key, "models": {}}
            base_items = [r for r in records if r.model == base_name and _in(r, level, key)]
            for m in models:
                s = summary.get(m, {}).get(level, {}).get(key)
                row["models"][m] = s
                if m == base_name or s is None:
                    continue
                pairs = [
                    (b.score, by_key[(m, b.task, b.id)].score)
                    for b in base_items
                    if (m, b.task, b.id) in by_key
                ]
                delta, lo, hi = bootstrap_delta(
                    [p[0] for p in pairs], [p[1] for p in pairs], samples, seed
                )
                row["models"][m] = {**s, "delta": delta, "ci95": [lo, hi]}
            rows.append(row)
    examples = []
    if len(models) > 1:
        tasks = sorted({r.task for r in records})
        for task in tasks:
            shown = 0
            for b in (r for r in records if r.model == base_name and r.task == task):
                other = [by_key.get((m, b.task, b.id)) for m in models[1:]]
                if any(o is not None and o.response != b.response for o in other):
                    examples.append(
                        {
                            "task": task,
                            "id": b.id,
                            "prompt": b.prompt,
                            "reference": b.reference,
                            "answers": {
                                m: {"response": r.response, "score": r.score}
                                for m, r in zip(models, [b, *other], strict=True)
                                if r is not None
                            },
                        }
                    )
                    shown += 1
                    if shown >= examples_per_task:
                        break
    return {"models": list(models), "baseline": base_name, "rows": rows, "examples": examples}


def _in(r: Record, level: str, key: str) -> bool:
    return level == "overall" or (r.family if level == "family" else r.task) == key


# --------------------------------------------------------------------------- reports


def markdown_table(comparison: dict, level: str = "family") -> str:
    models = comparison["models"]
    head = ["name", "n"] + [f"{m}" for m in models]
    if len(models) > 1:
        head += [f"delta {m} (95% CI)" for m in models[1:]] + ["stopped " + m for m in models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in comparison["rows"]:
        if row["level"] != level:
            continue
        stats = [row["models"].get(m) or {} for m in models]
        n = next((s["n"] for s in stats if s), 0)
        cells = [row["name"], str(n)] + [_pct(s.get("score")) for s in stats]
        if len(models) > 1:
            for s in stats[1:]:
                lo, hi = s.get("ci95", [math.nan, math.nan])
                cells.append(f"{_signed(s.get('delta'))} ({_signed(lo)}, {_signed(hi)})")
            cells += [_pct(s.get("stop_rate")) for s in stats]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _signed(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{100 * x:+.1f}"


def chart_png(comparison: dict, path: Path) -> None:
    """Bar chart of the score per family, one bar per model."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in comparison["rows"] if r["level"] in ("family", "overall")]
    names = [r["name"] for r in rows]
    models = comparison["models"]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
    for k, m in enumerate(models):
        vals = [100 * ((r["models"].get(m) or {}).get("score") or 0) for r in rows]
        ax.bar([i + k * width for i in range(len(names))], vals, width, label=m)
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("instill eval: score per task family")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def html_page(comparison: dict, png: bytes) -> str:
    import base64
    import html

    def table(level: str) -> str:
        md = markdown_table(comparison, level).splitlines()
        head = [c.strip() for c in md[0].strip("|").split("|")]
        body = [[c.strip() for c in line.strip("|").split("|")] for line in md[2:]]
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        trs = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body
        )
        return f"<table><tr>{th}</tr>{trs}</table>"

    ex = []
    for e in comparison["examples"]:
        answers = "".join(
            f"<h4>{html.escape(m)} (score {a['score']:.2f})</h4><pre>{html.escape(a['response'])}"
            "</pre>"
            for m, a in e["answers"].items()
        )
        ex.append(
            f"<div class='ex'><h3>{html.escape(e['task'])} / {html.escape(e['id'])}</h3>"
            f"<pre>{html.escape(e['prompt'])}</pre>{answers}</div>"
        )
    img = base64.b64encode(png).decode()
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "pre{background:#f6f6f6;padding:6px;white-space:pre-wrap}.ex{border-top:1px solid "
        "#ddd;margin-top:1em}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>instill eval</title>"
        f"<style>{style}</style></head><body><h1>instill eval</h1>"
        f"<p>Baseline: {html.escape(comparison['baseline'])}. Scores in %, deltas in points "
        f"with paired 95% bootstrap intervals.</p><img src='data:image/png;base64,{img}'>"
        f"<h2>Per family</h2>{table('family')}<h2>Per task</h2>{table('task')}"
        f"<h2>Overall</h2>{table('overall')}<h2>Examples where the models differ</h2>"
        f"{''.join(ex)}</body></html>"
    )


def write_report(out_dir: Path, records: Sequence[Record], comparison: dict) -> dict[str, Path]:
    """records-<model>.jsonl, report.json, report.md, chart.png, report.html in `out_dir`.

    Everything is written into a sibling temp dir that replaces `out_dir` only when complete,
    so a crash leaves either the previous report or the new one, never half of one.
    """

    with atomic_directory(out_dir) as tmp:
        names: dict[str, str] = {}
        for m in comparison["models"]:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in m)[-80:]
            names[f"records:{m}"] = f"records-{safe}.jsonl"
            (tmp / names[f"records:{m}"]).write_text(
                "".join(
                    json.dumps(asdict(r), ensure_ascii=False, default=str) + "\n"
                    for r in records
                    if r.model == m
                ),
                encoding="utf-8",
            )
        summary = {"comparison": comparison, "summary": summarize(records)}
        names["json"] = "report.json"
        (tmp / "report.json").write_text(json.dumps(summary, indent=2, default=str))
        md = [
            "# instill eval",
            "",
            "## Per family",
            "",
            markdown_table(comparison, "family"),
            "",
            "## Per task",
            "",
            markdown_table(comparison, "task"),
            "",
            "## Overall",
            "",
            markdown_table(comparison, "overall"),
            "",
        ]
        names["md"] = "report.md"
        (tmp / "report.md").write_text("\n".join(md), encoding="utf-8")
        names["png"] = "chart.png"
        chart_png(comparison, tmp / "chart.png")
        names["html"] = "report.html"
        (tmp / "report.html").write_text(
            html_page(comparison, (tmp / "chart.png").read_bytes()), encoding="utf-8"
        )
    return {k: out_dir / v for k, v in names.items()}


def build_tasks(specs: Sequence[Any]) -> list[EvalTask]:
    """Eval tasks from config entries (`EvalTaskConfig`): registered names or task files."""
    from instill.eval.tasks import get_task, load_task_file

    tasks = []
    for spec in specs:
        if spec.path:
            tasks.append(
                load_task_file(
                    spec.path,
                    name=spec.name,
                    kind=spec.kind,
                    metric=spec.metric,
                    metric_options=spec.metric_options,
                    family=spec.family,
                    max_new_tokens=spec.max_new_tokens,
                    limit=spec.limit,
                )
            )
        else:
            task = get_task(spec.name)
            if spec.limit:
                task.items = task.items[: spec.limit]
            tasks.append(task)
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        from instill.errors import InstillError

        raise InstillError(f"eval tasks must have distinct names; repeated: {', '.join(dupes)}")
    return tasks


def run_eval(
    models: Sequence[Any],
    tasks: Sequence[EvalTask],
    cfg: Any,
    out_dir: Path,
    log=print,
    bar: bool = False,
) -> tuple[list[Record], dict, dict[str, Path]]:
    """Evaluate each model (`EvalModelConfig`) on the tasks, compare, write the report."""
    import gc

    from instill.models.bundle import load_bundle

    sampling = SamplingConfig(
        cfg.max_new_tokens, cfg.do_sample, cfg.temperature, cfg.top_p, cfg.seed, cfg.batch_size
    )
    records: list[Record] = []
    names = []
    for spec in models:
        lm = load_bundle(spec.path, name=spec.name, adapter=spec.adapter, template=spec.template)
        if lm.name in names:
            lm.name = f"{lm.name}#{len(names)}"
        names.append(lm.name)
        log(
            f"evaluating {lm.name} on {len(tasks)} task(s), "
            f"{sum(len(t.items) for t in tasks)} prompts"
        )
        records += evaluate(lm, tasks, sampling, bar=bar)
        del lm
        gc.collect()
    comparison = compare(records, names, cfg.bootstrap_samples, cfg.seed)
    paths = write_report(out_dir, records, comparison)
    return records, comparison, paths
