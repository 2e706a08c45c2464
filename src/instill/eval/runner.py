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
import operator
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
        details: dict = {"constraints_failed": failed}
        asked = length_asked(item.constraints)
        if asked is not None:
            from instill.eval.constraints import count_words

            details["length_asked"] = asked
            details["words_written"] = count_words(response)
        return (1.0 if passed else 0.0), details
    from instill.eval.metrics import score

    value = score(metric, response, item.reference, **(options or {}))
    return float(value), {}


def length_asked(constraints: Sequence[dict]) -> dict | None:
    """The word count a prompt asks for (`{"relation", "n"}`), from its first `word_count`
    constraint (nested ones in `all_of` included); None when it asks for none."""
    for c in constraints:
        if c.get("type") == "word_count":
            return {"relation": c["relation"], "n": c["n"]}
        if c.get("type") == "all_of":
            found = length_asked(c.get("constraints") or [])
            if found is not None:
                return found
    return None


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
            gens = generator.generate(
                [item.messages for item in task.items],
                cfg,
                advance,
                budgets=[item.max_new_tokens for item in task.items],
            )
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
    return {
        "models": list(models),
        "baseline": base_name,
        "rows": rows,
        "examples": examples,
        "lengths": length_rows(records, models),
    }


LENGTH_BUCKETS = ((0, 100), (100, 200), (200, 300), (300, 10**9))
_RELATION_HOLDS = {
    "exactly": operator.eq,
    "at_least": operator.ge,
    "at_most": operator.le,
    "less_than": operator.lt,
    "more_than": operator.gt,
}


def length_rows(records: Sequence[Record], models: Sequence[str]) -> list[dict]:
    """Length asked vs length written: prompts that ask for a word count, grouped by the
    relation (at least / at most...) and size asked; per model the median words written, the
    share of answers within the length asked, and the stop rate."""
    groups: dict[tuple[str, int, int], dict[str, list[Record]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in records:
        asked = (r.details or {}).get("length_asked")
        if r.model not in models or asked is None:
            continue
        lo, hi = next(b for b in LENGTH_BUCKETS if b[0] <= asked["n"] < b[1])
        kind = (
            "at least"
            if asked["relation"] in ("at_least", "more_than")
            else ("at most" if asked["relation"] in ("at_most", "less_than") else "exactly")
        )
        groups[(kind, lo, hi)][r.model].append(r)
    out = []
    for (kind, lo, hi), per_model in sorted(groups.items()):
        row: dict = {"asked": kind, "words": [lo, hi if hi < 10**9 else None], "models": {}}
        for m in models:
            rs = per_model.get(m, [])
            if not rs:
                continue
            written = sorted(r.details["words_written"] for r in rs)
            within = [
                _RELATION_HOLDS[r.details["length_asked"]["relation"]](
                    r.details["words_written"], r.details["length_asked"]["n"]
                )
                for r in rs
            ]
            stops = [r.stopped for r in rs if r.stopped is not None]
            row["models"][m] = {
                "n": len(rs),
                "median_asked": sorted(r.details["length_asked"]["n"] for r in rs)[len(rs) // 2],
                "median_written": written[len(written) // 2],
                "within": sum(within) / len(within),
                "stop_rate": (sum(stops) / len(stops)) if stops else None,
            }
        out.append(row)
    return out


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


def length_table(comparison: dict) -> str:
    """Markdown: length asked vs length written per model (empty when no prompt asks)."""
    rows = comparison.get("lengths") or []
    if not rows:
        return ""
    models = comparison["models"]
    head = ["asked", "n", "median asked"]
    for m in models:
        head += [f"median written {m}", f"within length {m}", f"stopped {m}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lo, hi = row["words"]
        label = f"{row['asked']} {lo}-{hi - 1} words" if hi else f"{row['asked']} {lo}+ words"
        first = next(iter(row["models"].values()))
        cells = [label, str(first["n"]), str(first["median_asked"])]
        for m in models:
            s = row["models"].get(m) or {}
            cells += [
                str(s.get("median_written", "-")),
                _pct(s.get("within")),
                _pct(s.get("stop_rate")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline(comparison: dict) -> str:
    """One line per split and overall: scores, the delta with its interval, stop rates."""
    models = comparison["models"]
    parts = []
    rows = [r for r in comparison["rows"] if r["level"] == "overall"]
    for row in rows + [r for r in comparison["rows"] if r["level"] == "task"]:
        stats = [row["models"].get(m) or {} for m in models]
        pairs = list(zip(models, stats, strict=True))
        scores = " vs ".join(f"{m} {_pct(s.get('score'))}" for m, s in pairs)
        deltas = "".join(
            f", {m} {_signed(s.get('delta'))} ({_signed(s.get('ci95', [math.nan] * 2)[0])}, "
            f"{_signed(s.get('ci95', [math.nan] * 2)[1])})"
            for m, s in pairs[1:]
        )
        stops = "/".join(_pct(s.get("stop_rate")) for s in stats)
        name = "all prompts" if row["level"] == "overall" else row["name"]
        n = next((s["n"] for s in stats if s), 0)
        parts.append(f"- **{name}** (n={n}): {scores}{deltas}; stopped {stops}%")
    return "\n".join(parts)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: Path) -> None:
    import io

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def chart_png(comparison: dict, path: Path) -> None:
    """The summary chart: the score per split (task) and overall, one bar per model, with the
    paired 95% interval of each model's delta drawn on its bar."""
    plt = _figure()
    rows = [r for r in comparison["rows"] if r["level"] in ("task", "overall")]
    names = [r["name"] if r["level"] == "task" else "all" for r in rows]
    models = comparison["models"]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(min(12, max(6, 1.4 * len(names) + 2)), 4.2))
    for k, m in enumerate(models):
        stats = [r["models"].get(m) or {} for r in rows]
        vals = [100 * (s.get("score") or 0) for s in stats]
        xs = [i + k * width for i in range(len(names))]
        ax.bar(xs, vals, width, label=m)
        if k:
            base = [100 * ((r["models"].get(models[0]) or {}).get("score") or 0) for r in rows]
            lo = [b + 100 * s.get("ci95", [0, 0])[0] for b, s in zip(base, stats, strict=True)]
            hi = [b + 100 * s.get("ci95", [0, 0])[1] for b, s in zip(base, stats, strict=True)]
            ax.vlines(xs, lo, hi, colors="black", linewidth=1)
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, rotation=15, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("score per split (lines: 95% interval of the gain over the baseline)")
    _save(fig, plt, path)


def family_chart_png(comparison: dict, path: Path) -> None:
    """Per family, one horizontal bar per model, sorted by the last model's score; the height
    grows with the number of families so 50+ stay readable."""
    plt = _figure()
    models = comparison["models"]
    rows = [r for r in comparison["rows"] if r["level"] == "family"]
    rows.sort(key=lambda r: ((r["models"].get(models[-1]) or {}).get("score") or 0, r["name"]))
    height = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(8, max(3, 0.12 + 0.22 * len(rows) * max(1, len(models) / 2))))
    for k, m in enumerate(models):
        vals = [100 * ((r["models"].get(m) or {}).get("score") or 0) for r in rows]
        ax.barh([i + k * height for i in range(len(rows))], vals, height, label=m)
    ax.set_yticks([i + height * (len(models) - 1) / 2 for i in range(len(rows))])
    ax.set_yticklabels([r["name"] for r in rows], fontsize=7)
    ax.set_xlabel("score (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.5, len(rows))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("score per family")
    _save(fig, plt, path)


def html_page(comparison: dict, png: bytes, families_png: bytes | None = None) -> str:
    import base64
    import html

    def table(md_text: str) -> str:
        md = md_text.splitlines()
        if not md:
            return ""
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

    def img(data: bytes | None, alt: str) -> str:
        if not data:
            return ""
        return f"<img alt='{alt}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"

    lines = headline(comparison).splitlines()
    items = "".join(
        "<li>" + html.escape(line.removeprefix("- ")).replace("**", "") + "</li>" for line in lines
    )
    lengths = length_table(comparison)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "img{max-width:100%;height:auto}table{border-collapse:collapse;display:block;"
        "overflow-x:auto}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "pre{background:#f6f6f6;padding:6px;white-space:pre-wrap}.ex{border-top:1px solid "
        "#ddd;margin-top:1em}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>instill eval</title>"
        f"<style>{style}</style></head><body><h1>instill eval</h1>"
        f"<h2>Headline</h2><ul>{items}</ul>"
        f"<p>Baseline: {html.escape(comparison['baseline'])}. Scores in %, deltas in points "
        f"with paired 95% bootstrap intervals; stopped = answers that ended with the "
        f"end-of-turn token.</p>{img(png, 'score per split')}"
        f"<h2>Per split</h2>{table(markdown_table(comparison, 'task'))}"
        + (f"<h2>Length asked vs written</h2>{table(lengths)}" if lengths else "")
        + f"<h2>Per family</h2>{img(families_png, 'score per family')}"
        f"{table(markdown_table(comparison, 'family'))}"
        f"<h2>Overall</h2>{table(markdown_table(comparison, 'overall'))}"
        f"<h2>Examples where the models differ</h2>{''.join(ex)}</body></html>"
    )


def write_report(out_dir: Path, records: Sequence[Record], comparison: dict) -> dict[str, Path]:
    """records-<model>.jsonl, report.json, report.md (headline first), chart.png (per split),
    families.png (per family) and report.html in `out_dir`.

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
        lengths = length_table(comparison)
        md = [
            "# instill eval",
            "",
            "## Headline",
            "",
            headline(comparison),
            "",
            "## Per split",
            "",
            markdown_table(comparison, "task"),
            "",
            *(["## Length asked vs written", "", lengths, ""] if lengths else []),
            "## Per family",
            "",
            markdown_table(comparison, "family"),
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
        names["families_png"] = "families.png"
        family_chart_png(comparison, tmp / "families.png")
        names["html"] = "report.html"
        (tmp / "report.html").write_text(
            html_page(
                comparison, (tmp / "chart.png").read_bytes(), (tmp / "families.png").read_bytes()
            ),
            encoding="utf-8",
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
                    stated_formats=spec.stated_formats,
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
