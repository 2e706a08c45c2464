"""`instill generate`: answers for a file of prompts, as JSONL, resumable.

Prompts are read with the eval task reader (`eval.tasks.parse_eval_row`), so any training format
(Alpaca, ShareGPT, messages, prompt/completion) or eval shape is accepted; a row that ends with an
assistant turn is answered from the turn before it. Each answer is appended to the output as soon
as its batch finishes (and flushed), keyed by the row's `id` (the row's own `id`, else its
`file:line N`). A rerun reads the output first and skips every id already answered, so a killed
run continues where it stopped; a last line cut short by the kill is dropped first.

Batches are sorted by prompt length (less padding) and decoded by the step-wise engine, whose
greedy answers equal `Generator`'s.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from instill.errors import InstillError, RowError
from instill.eval.tasks import parse_eval_row
from instill.generate.stream import DecodeEngine, DecodeRequest
from instill.progress import track


@dataclass(frozen=True)
class BatchSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    batch_size: int = 8
    limit: int | None = None


def read_prompts(path: str | Path, limit: int | None = None) -> list[tuple[str, list]]:
    """`(id, messages)` of every row of a prompt file, in file order; ids must be unique."""
    from instill.data.sources import read_source

    out: list[tuple[str, list]] = []
    seen: dict[str, str] = {}
    for _file, rows in read_source(str(path)):
        for raw in rows:
            if isinstance(raw, RowError):
                raise raw
            item = parse_eval_row(raw, "generate", "json_valid")
            if item.id in seen:
                raise InstillError(
                    f"{raw.location}: id {item.id!r} is used twice (also at {seen[item.id]}); "
                    "answers are keyed by id, so ids must be unique"
                )
            seen[item.id] = raw.location
            out.append((item.id, list(item.messages)))
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise InstillError(f"{path}: no prompts")
    return out


def answered_ids(output: Path) -> set[str]:
    """Ids already in `output`; a trailing partial line (a killed write) is removed first."""
    if not output.is_file():
        return set()
    data = output.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with output.open("r+b") as f:
            f.truncate(end)
    ids = set()
    for k, line in enumerate(data[:end].decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError) as e:
                raise InstillError(
                    f"{output}:line {k}: not an answer row of instill generate ({e}); "
                    "give another --output or remove the file"
                ) from e
    return ids


def generate_file(
    bundle, input_path: str | Path, output_path: str | Path, settings: BatchSettings
) -> dict:
    """Answer every prompt of `input_path` not yet in `output_path`; return counts."""
    output = Path(output_path)
    prompts = read_prompts(input_path, settings.limit)
    done = answered_ids(output)
    # A row's seed is its position in the file, so a resumed run samples as a whole one would.
    todo = [(pos, i, m) for pos, (i, m) in enumerate(prompts) if i not in done]
    engine = DecodeEngine.for_bundle(bundle)
    encoded = [(pos, i, m, bundle.renderer.encode_prompt(m)) for pos, i, m in todo]
    encoded.sort(key=lambda row: len(row[3]))
    output.parent.mkdir(parents=True, exist_ok=True)
    stopped = 0
    with (
        output.open("a", encoding="utf-8") as f,
        track("generate", len(prompts), done=len(prompts) - len(todo), unit="prompts") as bar,
    ):
        for start in range(0, len(encoded), settings.batch_size):
            batch = encoded[start : start + settings.batch_size]
            requests = [
                DecodeRequest(
                    ids,
                    max_new_tokens=settings.max_new_tokens,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                    seed=None if settings.seed is None else settings.seed + pos,
                )
                for pos, _, _, ids in batch
            ]
            for (_, row_id, messages, _), answer in zip(batch, engine.run(requests), strict=True):
                stopped += answer.stopped
                row = {
                    "id": row_id,
                    "prompt": [m.to_dict() for m in messages],
                    "answer": answer.text,
                    "stopped": answer.stopped,
                    "finish_reason": answer.finish_reason,
                    "prompt_tokens": answer.prompt_tokens,
                    "completion_tokens": answer.completion_tokens,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.advance(len(batch))
    return {
        "total": len(prompts),
        "skipped": len(prompts) - len(todo),
        "answered": len(todo),
        "stopped": stopped,
        "output": str(output),
    }
