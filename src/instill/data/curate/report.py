"""The curation report: `removed.jsonl`, `report.json`, `report.md` and `report.html`.

- `removed.jsonl`: one line per removed row: location (`file:line N`), source, step, reason,
  message, the row itself and, for duplicates and contamination, what it collided with.
- `report.json`: the funnel per source and in total (read -> valid -> exact dedup -> near dedup
  -> filters -> decontam -> kept), removals by step and reason, the settings, the decontamination
  index (eval prompts per task, boilerplate n-grams ignored), the mixture's composition and up
  to `examples` removed rows per step.
- `report.md`: the same as tables, with the examples.
- `report.html`: one self-contained page (no script, no network) with a funnel chart per source.

Every file is written atomically and holds no timing, so two runs on the same input give
byte-identical reports (timings go to `timings.json` beside them).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from instill.atomic import atomic_file, write_atomic
from instill.data.curate.stage import FUNNEL, STEPS, CurationResult
from instill.data.curate.text import preview

STEP_TITLES = {
    "read": "read",
    "valid": "valid",
    "exact_dedup": "exact dedup",
    "near_dedup": "near dedup",
    "filters": "filters",
    "decontaminate": "decontam",
    "kept": "kept",
}


def write_removed(path: Path, result: CurationResult) -> Path:
    """`removed.jsonl`: one JSON object per removed row."""
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for r in result.removed:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=False) + "\n")
    return path


def write_report(out_dir: Path, result: CurationResult) -> dict[str, Path]:
    """Write removed.jsonl, report.json, report.md, report.html and timings.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "removed": out_dir / "removed.jsonl",
        "json": out_dir / "report.json",
        "md": out_dir / "report.md",
        "html": out_dir / "report.html",
        "timings": out_dir / "timings.json",
    }
    write_removed(paths["removed"], result)
    write_atomic(paths["json"], json.dumps(result.stats, indent=2, ensure_ascii=False) + "\n")
    write_atomic(paths["md"], markdown(result.stats))
    write_atomic(paths["html"], html_page(result.stats))
    write_atomic(paths["timings"], json.dumps(result.timings, indent=2) + "\n")
    return paths


# --------------------------------------------------------------------------- markdown


def summary_line(stats: dict) -> str:
    """One sentence: rows read, kept and removed by each enabled step."""
    total = stats["funnel"]["total"]
    parts = [
        f"{STEP_TITLES[s]} {stats['removed_by_step'][s]}" for s in STEPS if stats["enabled"].get(s)
    ]
    removed = total["valid"] - total["kept"]
    return (
        f"{total['read']} rows read, {total['valid']} valid, {total['kept']} kept; {removed} "
        f"removed ({', '.join(parts) or 'no curation step on'})"
    )


def decontamination_line(stats: dict) -> str | None:
    """What decontamination checked and found, or None when it was off."""
    dc = stats.get("decontaminate")
    if dc is None:
        return None
    tasks = ", ".join(f"{t} ({n})" for t, n in dc["tasks"].items())
    removed = stats["removed_by_step"]["decontaminate"]
    rule = f"at least {dc['min_score']:.0%} of its n-grams" if dc["min_score"] else "any n-gram"
    verdict = (
        f"no training row contains an eval prompt ({rule}): 0 removed"
        if removed == 0
        else f"{removed} training row(s) contain an eval prompt ({rule}) and were removed"
    )
    if dc["kept_below_min_score"]:
        verdict += (
            f"; {dc['kept_below_min_score']} rows share fewer of a prompt's n-grams (at most "
            f"{dc['max_score_kept']:.0%}) and were kept"
        )
    return (
        f"decontamination: {dc['rows_checked']} rows checked against {dc['prompts']} eval prompts "
        f"({tasks}) with {dc['ngram']}-grams; {verdict}"
    )


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table (cells with `|` escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(stats: dict) -> str:
    """The report as Markdown."""
    enabled = stats["enabled"]
    head = ["source"] + [
        STEP_TITLES[s] + ("" if s not in STEPS or enabled[s] else " (off)") for s in FUNNEL
    ]
    funnel = stats["funnel"]
    rows = [[f["source"], *(f[s] for s in FUNNEL)] for f in funnel["sources"]]
    if len(funnel["sources"]) > 1:
        rows.append(["**total**", *(funnel["total"][s] for s in FUNNEL)])
    out = ["# Curation report", "", summary_line(stats) + ".", "", "## Funnel", ""]
    out += [markdown_table(head, rows), ""]
    out += ["## Removed by step and reason", ""]
    if stats["removed_by_reason"]:
        out += [
            markdown_table(
                ["reason", "rows"], [[k, v] for k, v in stats["removed_by_reason"].items()]
            )
        ]
    else:
        out += ["Nothing was removed."]
    out.append("")
    line = decontamination_line(stats)
    if line:
        dc = stats["decontaminate"]
        out += ["## Decontamination", "", line[0].upper() + line[1:] + ".", ""]
        out += [
            f"- eval prompts matched as a whole (shorter than {dc['ngram']} words): "
            f"{dc['prompts_matched_whole']}; skipped as too short: {dc['prompts_skipped_short']}; "
            f"made only of boilerplate: {dc['prompts_all_boilerplate']}",
            f"- counted n-grams: {dc['ngrams']}; boilerplate n-grams ignored (in "
            f"{stats['settings']['decontaminate']['boilerplate_min_prompts']}+ eval prompts): "
            f"{dc['boilerplate_ngrams']}",
        ]
        out += [f"  - `{b}`" for b in dc["boilerplate_examples"]]
        for b in dc["kept_below_min_score_examples"]:
            out.append(
                f"  - kept `{b['location']}`: {b['score']:.0%} of {b['eval_prompt']} "
                f"(`{b['ngram']}`)"
            )
        if dc["removed_by_task"]:
            out.append(
                "- removed per task: "
                + ", ".join(f"{t}: {n}" for t, n in dc["removed_by_task"].items())
            )
        out.append("")
    if "near_dedup" in stats:
        nd = stats["settings"]["near_dedup"]
        curve = ", ".join(
            f"J={j}: {p}" for j, p in stats["near_dedup"]["candidate_probability"].items()
        )
        out += [
            "## Near dedup settings",
            "",
            f"{nd['shingle']} {nd['shingle_size']}-grams of the {nd['scope']} view, "
            f"{nd['num_perm']} permutations, {nd['bands']} bands x {nd['rows_per_band']} rows, "
            "threshold "
            f"{nd['threshold']} (estimated Jaccard), seed {nd['seed']}; keep rule "
            f"`{stats['settings']['keep']}`.",
            "",
            f"Chance that a pair becomes a candidate: {curve}.",
            "",
        ]
    if stats.get("mixture"):
        out += ["## Mixture", ""]
        out += [
            markdown_table(
                ["source", "rows", "weight", "cap", "examples", "share"],
                [
                    [
                        m["source"],
                        m["rows"],
                        m["weight"],
                        m["max_examples"] if m["max_examples"] is not None else "-",
                        m["examples"],
                        f"{100 * m['share']:.1f}%",
                    ]
                    for m in stats["mixture"]
                ],
            ),
            "",
        ]
    examples = {s: e for s, e in stats["examples"].items() if e}
    if examples:
        out += ["## Examples of removed rows", ""]
        for step, items in examples.items():
            out += [f"### {STEP_TITLES[step]}", ""]
            for r in items:
                out.append(f"- `{r['location']}` ({r['reason']}): {r['message']}")
                if "duplicate_of" in r:
                    out.append(
                        f"  - kept `{r['duplicate_of']['location']}`: {r['duplicate_of']['text']}"
                    )
                if "eval_prompt" in r:
                    out.append(f"  - eval prompt: {preview(r['eval_prompt']['text'], 200)}")
                    out.append(f"  - shared n-gram: `{r['ngram']}`")
                out.append(f"  - row: {preview(_row_text(r['row']), 200)}")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _row_text(row: dict) -> str:
    if "text" in row:
        return row["text"]
    return " / ".join(f"{m['role']}: {m['content']}" for m in row.get("messages", []))


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em}
td.n{text-align:right}h2{margin-top:1.6em}.muted{color:#777}code{font-size:90%}
"""


def _funnel_svg(row: dict, enabled: dict) -> str:
    """A horizontal funnel: one bar per stage, its width the share of rows read."""
    width, bar, gap, label = 560, 22, 6, 110
    top = max(row["read"], 1)
    parts = []
    for k, stage in enumerate(FUNNEL):
        y = k * (bar + gap)
        n = row[stage]
        w = max(1.0, (width - label - 70) * n / top)
        off = stage in STEPS and not enabled[stage]
        color = "#bbb" if off else ("#2e7d32" if stage == "kept" else "#4a78b5")
        removed = row[FUNNEL[k - 1]] - n if k else 0
        note = f" (-{removed})" if removed else (" (off)" if off else "")
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="12">{html.escape(STEP_TITLES[stage])}</text>'
            f'<rect x="{label}" y="{y}" width="{w:.1f}" height="{bar}" fill="{color}"/>'
            f'<text x="{label + w + 6:.1f}" y="{y + 15}" font-size="12">{n}{note}</text>'
        )
    height = len(FUNNEL) * (bar + gap)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="funnel of {html.escape(row["source"])}">{"".join(parts)}</svg>'
    )


def html_page(stats: dict) -> str:
    """The report as one HTML page with a funnel chart per source."""
    e = html.escape
    enabled = stats["enabled"]
    body = [f"<h1>Curation report</h1><p>{e(summary_line(stats))}.</p>"]
    line = decontamination_line(stats)
    if line:
        body.append(f"<p><b>{e(line[0].upper() + line[1:])}.</b></p>")
    body.append("<h2>Funnel per source</h2>")
    sources = stats["funnel"]["sources"]
    for f in sources + ([stats["funnel"]["total"]] if len(sources) > 1 else []):
        body.append(f"<h3>{e(f['source'])}</h3>{_funnel_svg(f, enabled)}")
    if stats["removed_by_reason"]:
        rows = "".join(
            f"<tr><td>{e(k)}</td><td class=n>{v}</td></tr>"
            for k, v in stats["removed_by_reason"].items()
        )
        body.append(
            f"<h2>Removed by reason</h2><table><tr><th>reason</th><th>rows</th></tr>{rows}</table>"
        )
    if stats.get("mixture"):
        rows = "".join(
            f"<tr><td>{e(m['source'])}</td><td class=n>{m['rows']}</td><td class=n>{m['weight']}"
            f"</td><td class=n>{m['max_examples'] if m['max_examples'] is not None else '-'}</td>"
            f"<td class=n>{m['examples']}</td><td class=n>{100 * m['share']:.1f}%</td></tr>"
            for m in stats["mixture"]
        )
        body.append(
            "<h2>Mixture</h2><table><tr><th>source</th><th>rows</th><th>weight</th><th>cap</th>"
            f"<th>examples</th><th>share</th></tr>{rows}</table>"
        )
    for step, items in stats["examples"].items():
        if not items:
            continue
        body.append(f"<h2>Examples: {e(STEP_TITLES[step])}</h2><ul>")
        for r in items:
            extra = ""
            if "duplicate_of" in r:
                extra = (
                    f"<br><span class=muted>kept <code>{e(r['duplicate_of']['location'])}</code>: "
                    f"{e(r['duplicate_of']['text'])}</span>"
                )
            if "eval_prompt" in r:
                extra = (
                    "<br><span class=muted>eval prompt: "
                    f"{e(preview(r['eval_prompt']['text'], 200))}; shared n-gram "
                    f"<code>{e(r['ngram'])}</code></span>"
                )
            body.append(
                f"<li><code>{e(r['location'])}</code> ({e(r['reason'])}): {e(r['message'])}<br>"
                f"{e(preview(_row_text(r['row']), 200))}{extra}</li>"
            )
        body.append("</ul>")
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Curation report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
