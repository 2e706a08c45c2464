"""`instill synth`: instruction data from a teacher, checked before it is kept, with a yield report.

Three stages, each optional, all through one cached teacher (`instill.generate.teacher`):

1. **Instructions** (Self-Instruct's bootstrap). Each prompt shows `examples_per_prompt` tasks
   (seed tasks, and from the second round on up to `generated_examples` instructions generated
   earlier) and asks for `new_per_prompt` more. Candidates are parsed from the numbered reply and
   dropped with a counted reason: length in words, a blocklist of tasks a text model cannot do,
   "Write a program", leading punctuation or non-ASCII, then ROUGE-L >= `rouge_threshold` against
   every instruction kept so far, seeds included (`RougeIndex`: an inverted index with safe
   pruning, so the cost does not grow with the square of the pool), and at the end curate's exact
   and near dedup and decontamination against the config's eval tasks.
2. **Responses.** For each new instruction the teacher writes an example input when the task needs
   one and `candidates` responses; the first that ends its turn and passes the verifier is kept.
   The verifier is curate's quality filters (empty, too short, degenerate repetition, an echo of
   the instruction, canned refusals, broken encoding) and, when enabled, the teacher as a judge
   with a stated rubric, whose score is recorded on the row.
3. **Constraints.** Instructions (seeds and stage 2's) get 1-3 verifiable constraints
   (`instill.data.synth.constraints`, phrased in many ways); the teacher answers `tries` times
   and the first answer that ends its turn and passes every constraint checker
   (`instill.eval.constraints`) is kept, with its constraints recorded on the row so the same
   checkers can score a model later. With `repair: true` an answer that fails only on a
   repairable constraint (case, commas, quoting, JSON) is repaired deterministically; the row
   lists the repairs under `synth.repairs`, never silently.

Output (`<output_dir>/synth/` by default): `synth.jsonl` (messages rows with their provenance
under `synth`, trainable as a data source with `instill train` unchanged), `instructions.jsonl`
(stage 1's instructions), `dropped.jsonl` (every candidate that was not kept, with its stage and
reason: nothing is lost silently), `report.json|md|html` (the funnel, throughput and teacher
tokens per kept row) and `cache/replies.jsonl` (the teacher's replies: a rerun sends only what
is missing, and because every request is seeded it writes the same output).
"""

from __future__ import annotations

import html
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from instill.config import Config, SynthConfig
from instill.data.conversation import Conversation, Message
from instill.data.curate.filters import QualityFilter
from instill.data.curate.report import markdown_table
from instill.data.synth.bootstrap import (
    InstructionFilter,
    SeedTask,
    bootstrap_messages,
    first_new_number,
    input_messages,
    parse_input,
    parse_instructions,
    read_seed_tasks,
    response_messages,
)
from instill.data.synth.constraints import draw_constraints, repair
from instill.data.synth.rouge import RougeIndex
from instill.errors import InstillError
from instill.eval.constraints import check_all
from instill.generate.teacher import CachedTeacher, Teacher, TeacherReply, TeacherRequest
from instill.progress import track

# Seeds of the requests of each stage live in separate ranges, so that no two requests of a run
# share a seed by accident (the cache key holds the seed and the messages anyway).
_SEED_STRIDE = 1_000_003


@dataclass
class SynthRun:
    """What a run kept and where it wrote it."""

    rows: list[dict]
    report: dict
    paths: dict[str, Path] = field(default_factory=dict)


@dataclass
class _State:
    """Counters and dropped candidates shared by the stages."""

    funnel: dict[str, dict] = field(default_factory=dict)
    dropped: list[dict] = field(default_factory=list)

    def drop(self, stage: str, reason: str, text: str, **extra) -> None:
        self.dropped.append({"stage": stage, "reason": reason, "text": text, **extra})
        reasons = self.funnel[stage].setdefault("dropped", {})
        reasons[reason] = reasons.get(reason, 0) + 1


def build_teacher(cfg: SynthConfig) -> Teacher:
    """The teacher a synth config names: an endpoint (`base_url`) or a model in-process."""
    import os

    from instill.generate.teacher import LocalTeacher, OpenAITeacher

    t = cfg.teacher
    if t.base_url is not None:
        return OpenAITeacher(
            t.base_url,
            t.model or "",
            api_key=os.environ.get(t.api_key_env) or None,
            concurrency=t.concurrency,
            max_retries=t.max_retries,
            timeout_s=t.timeout_s,
            backoff_s=t.backoff_s,
        )
    import torch

    dtype = {"auto": None, "bfloat16": torch.bfloat16, "float32": torch.float32}[t.dtype]
    return LocalTeacher.load(t.path or "", t.template, dtype, t.batch_size)


def synth_dir(config: Config) -> Path:
    cfg = _require(config)
    return Path(cfg.output_dir or Path(config.output_dir) / "synth")


def _require(config: Config) -> SynthConfig:
    if config.synth is None:
        raise InstillError(
            "instill synth needs a synth: section with at least `seeds:` (seed task files); "
            "see configs/synth.yaml"
        )
    return config.synth


def run_synth(
    config: Config,
    teacher: Teacher | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> SynthRun:
    """Run the enabled stages and write the rows, the dropped candidates and the report.

    Args:
        config: a config with a `synth:` section (`seed` seeds every request).
        teacher: the teacher to use (default: the one `synth.teacher` names); it is wrapped in
            the on-disk reply cache either way.
        log: where progress lines go.
        progress: show progress bars.
    """
    cfg = _require(config)
    out = synth_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    seeds = [s for path in cfg.seeds for s in read_seed_tasks(path)]
    if not seeds:
        raise InstillError(f"synth.seeds: no seed task in {', '.join(cfg.seeds)}")
    log(f"synth: {len(seeds)} seed tasks from {', '.join(cfg.seeds)}")
    cached = CachedTeacher(
        teacher or build_teacher(cfg), out / "cache" / "replies.jsonl", cfg.teacher.write_every
    )
    if cached.replies:
        log(f"synth: {len(cached.replies)} cached teacher replies in {cached.path}")
    state = _State()
    base_seed = config.seed

    def ask(stage: str, requests: list[TeacherRequest]) -> list[TeacherReply]:
        with track(f"synth {stage}", len(requests), unit="requests", enabled=progress) as bar:
            return cached.complete(requests, on_done=bar.advance, stage=stage)

    instructions: list[dict] = []
    if cfg.instructions.enabled:
        instructions = _stage_instructions(config, cfg, seeds, ask, state, base_seed)
        log(f"synth: stage 1 kept {len(instructions)} new instructions")
    rows: list[dict] = []
    if cfg.responses.enabled and instructions:
        rows += _stage_responses(cfg, instructions, ask, state, base_seed, cached.identity)
        log(f"synth: stage 2 kept {len(rows)} checked responses")
    if cfg.augment.enabled:
        pool = _augment_pool(cfg, seeds, instructions, rows)
        augmented = _stage_augment(cfg, pool, ask, state, base_seed, cached.identity)
        log(f"synth: stage 3 kept {len(augmented)} constraint-following answers")
        rows += augmented
    rows = _dedup_rows(config, cfg, rows, state)

    seconds = time.perf_counter() - started
    report = _report(cfg, state, rows, cached, seconds, len(seeds))
    paths = _write(out, rows, instructions, state, report)
    log(
        f"synth: {len(rows)} rows -> {paths['rows']} ({seconds:.0f} s; teacher sent "
        f"{cached.stats.sent} requests, {cached.stats.hits} from the cache)"
    )
    return SynthRun(rows, report, paths)


# --------------------------------------------------------------------------- stage 1


def _stage_instructions(
    config: Config,
    cfg: SynthConfig,
    seeds: Sequence[SeedTask],
    ask: Callable[[str, list[TeacherRequest]], list[TeacherReply]],
    state: _State,
    base_seed: int,
) -> list[dict]:
    ic = cfg.instructions
    rng = random.Random(base_seed)
    funnel = state.funnel.setdefault("instructions", {})
    counts = Counter()
    filt = InstructionFilter(
        min_words=ic.min_words,
        max_words=ic.max_words,
        **({} if ic.blocklist is None else {"blocklist": tuple(ic.blocklist)}),
    )
    index = RougeIndex(ic.rouge_threshold)
    for s in seeds:
        index.add(s.instruction)
    seed_texts = [s.instruction for s in seeds]
    seed_ids = {s.instruction: s.id for s in seeds}
    kept: list[dict] = []
    sent = 0
    round_no = 0
    while len(kept) < ic.target and sent < ic.max_requests:
        n = min(ic.requests_per_round, ic.max_requests - sent)
        shown: list[list[str]] = []
        requests = []
        for j in range(n):
            n_gen = min(ic.generated_examples, len(kept))
            n_seed = min(ic.examples_per_prompt - n_gen, len(seed_texts))
            examples = rng.sample(seed_texts, n_seed) + [
                k["instruction"] for k in rng.sample(kept, n_gen)
            ]
            rng.shuffle(examples)
            shown.append(examples)
            requests.append(
                TeacherRequest.chat(
                    bootstrap_messages(examples, ic.new_per_prompt),
                    max_tokens=ic.max_tokens,
                    temperature=ic.temperature,
                    top_p=ic.top_p,
                    seed=base_seed * _SEED_STRIDE + sent + j,
                )
            )
        replies = ask("instructions", requests)
        sent += n
        for examples, reply in zip(shown, replies, strict=True):
            counts["replies"] += 1
            candidates = parse_instructions(reply.text, first_new_number(examples))
            counts["parsed"] += len(candidates)
            for text in candidates:
                reason = filt.reason(text)
                if reason is not None:
                    state.drop("instructions", reason, text)
                    continue
                counts["passed_filters"] += 1
                match = index.best_match(text)
                if match is not None:
                    state.drop(
                        "instructions",
                        "rouge_similar",
                        text,
                        similar_to=match.text,
                        rouge_l=round(match.score, 4),
                    )
                    continue
                counts["passed_rouge"] += 1
                if len(kept) >= ic.target:
                    state.drop("instructions", "over_target", text)
                    continue
                index.add(text)
                kept.append(
                    {
                        "id": f"synth-{len(kept)}",
                        "instruction": text,
                        "round": round_no,
                        "seed_ids": sorted(seed_ids[e] for e in examples if e in seed_ids),
                    }
                )
        round_no += 1
    funnel.update(
        requests=sent,
        rounds=round_no,
        replies=counts["replies"],
        parsed=counts["parsed"],
        passed_filters=counts["passed_filters"],
        passed_rouge=counts["passed_rouge"],
        rouge_index=asdict(index.stats),
    )
    kept = _curate_instructions(config, cfg, kept, state)
    funnel["kept"] = len(kept)
    return kept


def _curate_instructions(
    config: Config, cfg: SynthConfig, kept: list[dict], state: _State
) -> list[dict]:
    """Exact and near dedup and decontamination of the new instructions (curate's steps)."""
    if not kept:
        return kept
    convs = [Conversation((Message("user", k["instruction"]),), source=k["id"]) for k in kept]
    result = _curate(config, cfg, convs, filters=False)
    alive = {c.source for c in result.kept}
    for r in result.removed:
        state.drop("instructions", r.step, r.row.get("text") or _user_text(r.row), **_why(r))
    return [k for k in kept if k["id"] in alive]


def _user_text(row: dict) -> str:
    return next((m["content"] for m in row.get("messages", []) if m["role"] == "user"), "")


def _why(removal) -> dict:
    d = removal.to_dict()
    return {k: d[k] for k in ("message", "duplicate_of", "eval_prompt") if k in d}


def _curate(config: Config, cfg: SynthConfig, convs: list[Conversation], filters: bool):
    from instill.data.curate.stage import curate

    cc = cfg.curate if filters else cfg.curate.model_copy(update={"keep": "first"})
    if not filters:
        cc = cc.model_copy(update={"filters": cc.filters.model_copy(update={"enabled": False})})
    prompts = None
    if cc.decontaminate.enabled:
        from instill.eval.prompts import eval_prompts_for

        prompts = eval_prompts_for(config, cc.decontaminate)
    return curate([convs], cc, source_names=["synth"], eval_prompts=prompts)


# --------------------------------------------------------------------------- stage 2


def _stage_responses(
    cfg: SynthConfig,
    instructions: Sequence[dict],
    ask: Callable[[str, list[TeacherRequest]], list[TeacherReply]],
    state: _State,
    base_seed: int,
    teacher_id: str,
) -> list[dict]:
    rc = cfg.responses
    funnel = state.funnel.setdefault("responses", {})
    seed0 = (base_seed * _SEED_STRIDE + 1) * 7
    inputs: list[str | None] = [None] * len(instructions)
    if rc.inputs:
        requests = [
            TeacherRequest.chat(input_messages(k["instruction"]), max_tokens=160, seed=seed0 + i)
            for i, k in enumerate(instructions)
        ]
        inputs = [parse_input(r.text) for r in ask("inputs", requests)]
    requests = [
        TeacherRequest.chat(
            response_messages(k["instruction"], inputs[i]),
            max_tokens=rc.max_tokens,
            temperature=rc.temperature,
            top_p=rc.top_p,
            seed=seed0 + _SEED_STRIDE + i * rc.candidates + j,
        )
        for i, k in enumerate(instructions)
        for j in range(rc.candidates)
    ]
    replies = ask("responses", requests)
    quality = QualityFilter(rc.filters) if rc.filters.enabled else None
    verified: list[tuple[int, int, str]] = []  # (instruction, candidate, text)
    for i, k in enumerate(instructions):
        mine = replies[i * rc.candidates : (i + 1) * rc.candidates]
        for j, reply in enumerate(mine):
            why = _response_problem(k["instruction"], inputs[i], reply, quality)
            if why is None:
                verified.append((i, j, reply.text.strip()))
                break
            state.drop("responses", why, reply.text, instruction=k["instruction"])
        else:
            state.drop("responses", "no_passing_candidate", k["instruction"])
    scores: dict[int, int | None] = {}
    if rc.judge.enabled and verified:
        scores = _judge(cfg, instructions, inputs, verified, ask, seed0 + 2 * _SEED_STRIDE)
    rows = []
    for i, j, text in verified:
        k = instructions[i]
        verifier: dict = {"kind": "filters" if quality else "stop", "candidate": j + 1}
        if rc.judge.enabled:
            score = scores.get(i)
            verifier.update(kind="judge", judge_score=score, judge_threshold=rc.judge.threshold)
            if score is None or score < rc.judge.threshold:
                reason = "judge_unparsed" if score is None else "judge_below_threshold"
                state.drop("responses", reason, text, instruction=k["instruction"], score=score)
                continue
        rows.append(
            _row(
                response_messages(k["instruction"], inputs[i]),
                text,
                stage="responses",
                teacher=teacher_id,
                instruction_id=k["id"],
                seed_ids=k["seed_ids"],
                input=inputs[i],
                verifier=verifier,
            )
        )
    funnel.update(
        instructions=len(instructions),
        with_input=sum(x is not None for x in inputs),
        candidates=len(requests),
        stopped=sum(r.stopped for r in replies),
        verified=len(verified),
        kept=len(rows),
    )
    return rows


def _response_problem(
    instruction: str, context: str | None, reply: TeacherReply, quality: QualityFilter | None
) -> str | None:
    if not reply.stopped:
        return "no_stop"
    if not reply.text.strip():
        return "empty"
    user = instruction if context is None else f"{instruction}\n\n{context}"
    return _filter_reason(quality, user, reply.text)


def _judge(cfg, instructions, inputs, verified, ask, seed0: int) -> dict[int, int | None]:
    """The teacher's 1-10 score of each verified response (None when no score could be read)."""
    import re

    jc = cfg.responses.judge
    requests = []
    for i, _j, text in verified:
        task = instructions[i]["instruction"]
        if inputs[i]:
            task += f"\n\nInput: {inputs[i]}"
        prompt = (
            f"{jc.rubric}\n\nInstruction: {task}\n\nResponse: {text}\n\n"
            "Reply with one number from 1 to 10."
        )
        requests.append(
            TeacherRequest.chat(
                [{"role": "user", "content": prompt}], max_tokens=jc.max_tokens, seed=seed0 + i
            )
        )
    out: dict[int, int | None] = {}
    for (i, _j, _t), reply in zip(verified, ask("judge", requests), strict=True):
        m = re.search(r"\b(10|[1-9])\b", reply.text)
        out[i] = int(m.group(1)) if m else None
    return out


# --------------------------------------------------------------------------- stage 3


def _augment_pool(
    cfg: SynthConfig, seeds: Sequence[SeedTask], instructions: Sequence[dict], rows: list[dict]
) -> list[dict]:
    """The instructions stage 3 adds constraints to: seeds and stage 2's kept rows."""
    pool = []
    if cfg.augment.from_seeds:
        for s in seeds:
            context = next((i for i, _o in s.instances if i.strip()), None)
            pool.append(
                {"id": s.id, "instruction": s.instruction, "input": context, "seed_ids": [s.id]}
            )
    if cfg.augment.from_synthesized:
        by_id = {k["id"]: k for k in instructions}
        for r in rows:
            syn = r["synth"]
            k = by_id[syn["instruction_id"]]
            pool.append(
                {
                    "id": k["id"],
                    "instruction": k["instruction"],
                    "input": syn["input"],
                    "seed_ids": k["seed_ids"],
                }
            )
    return pool


def _stage_augment(
    cfg: SynthConfig,
    pool: Sequence[dict],
    ask: Callable[[str, list[TeacherRequest]], list[TeacherReply]],
    state: _State,
    base_seed: int,
    teacher_id: str,
) -> list[dict]:
    ac = cfg.augment
    funnel = state.funnel.setdefault("augment", {})
    rng = random.Random(base_seed * _SEED_STRIDE + 3)
    prompts = []
    for p in pool:
        if rng.random() >= ac.share:
            continue
        n = None if ac.max_constraints == 3 else rng.randint(1, ac.max_constraints)
        cp = draw_constraints(p["instruction"], rng, n=n, context=p["input"])
        if cp is None:
            state.drop("augment", "no_compatible_constraints", p["instruction"])
            continue
        prompts.append((p, cp))
    seed0 = (base_seed * _SEED_STRIDE + 5) * 11
    requests = [
        TeacherRequest.chat(
            response_messages(cp.instruction, p["input"], cp.system),
            max_tokens=ac.max_tokens,
            temperature=ac.temperature,
            top_p=ac.top_p,
            seed=seed0 + i * ac.tries + j,
        )
        for i, (p, cp) in enumerate(prompts)
        for j in range(ac.tries)
    ]
    replies = ask("augment", requests) if requests else []
    # curate's filters too (an answer can follow every format and still be a refusal), except
    # the echo check: a constraint may ask to repeat the request.
    rc = cfg.responses.filters
    quality = QualityFilter(rc.model_copy(update={"max_echo": None})) if rc.enabled else None
    rows = []
    first_try = passed_by_k = repaired = 0
    for i, (p, cp) in enumerate(prompts):
        mine = replies[i * ac.tries : (i + 1) * ac.tries]
        constraints = list(cp.constraints)
        chosen = None
        for j, reply in enumerate(mine):
            ok = reply.stopped and reply.text.strip() and check_all(reply.text, constraints)[0]
            if ok and _filter_reason(quality, cp.instruction, reply.text):
                state.drop("augment", "quality_filter", reply.text, instruction=cp.instruction)
                continue
            if ok:
                chosen = (j, reply.text.strip(), ())
                break
        if chosen is None and ac.repair:
            for j, reply in enumerate(mine):
                if not (reply.stopped and reply.text.strip()):
                    continue
                text, applied = repair(reply.text.strip(), constraints)
                if (
                    applied
                    and check_all(text, constraints)[0]
                    and not _filter_reason(quality, cp.instruction, text)
                ):
                    chosen = (j, text, tuple(applied))
                    break
        if chosen is None:
            failed = _failed_types(mine, constraints)
            state.drop(
                "augment",
                "no_passing_answer",
                cp.instruction,
                constraints=constraints,
                failed=failed,
            )
            continue
        j, text, applied = chosen
        first_try += j == 0 and not applied
        passed_by_k += not applied
        repaired += bool(applied)
        verifier = {"kind": "constraints", "try": j + 1, "tries": ac.tries}
        extra = {"repairs": list(applied)} if applied else {}
        rows.append(
            _row(
                response_messages(cp.instruction, p["input"], cp.system),
                text,
                stage="augment",
                teacher=teacher_id,
                instruction_id=p["id"],
                seed_ids=p["seed_ids"],
                constraints=constraints,
                verifier=verifier,
                **extra,
            )
        )
    funnel.update(
        pool=len(pool),
        prompts=len(prompts),
        answers=len(requests),
        stopped=sum(r.stopped for r in replies),
        passed_first_try=first_try,
        passed_within_k=passed_by_k,
        repaired=repaired,
        kept=len(rows),
        pass_rate_first_try=round(first_try / len(prompts), 4) if prompts else None,
        pass_rate_within_k=round(passed_by_k / len(prompts), 4) if prompts else None,
        failed_by_type=dict(
            Counter(
                t for d in state.dropped if d["stage"] == "augment" for t in d.get("failed", [])
            ).most_common()
        ),
    )
    return rows


def _filter_reason(quality: QualityFilter | None, user: str, answer: str) -> str | None:
    """The first quality check (curate's filters) the answer fails, or None."""
    if quality is None:
        return None
    hits = quality.check(Conversation((Message("user", user), Message("assistant", answer))))
    return hits[0].reason if hits else None


def _failed_types(replies: Sequence[TeacherReply], constraints: list[dict]) -> list[str]:
    """The constraint types the answers failed (each type once per prompt; `no_stop` too)."""
    failed: set[str] = set()
    for reply in replies:
        if not reply.stopped:
            failed.add("no_stop")
            continue
        _ok, results = check_all(reply.text, constraints)
        failed.update(c["type"] for c, r in zip(constraints, results, strict=True) if not r.passed)
    return sorted(failed)


# --------------------------------------------------------------------------- rows and report


def _row(messages: list[dict], answer: str, **provenance) -> dict:
    row: dict = {"messages": [*messages, {"role": "assistant", "content": answer}]}
    if "constraints" in provenance:
        row["constraints"] = provenance["constraints"]  # what eval's checkers read
    row["synth"] = provenance
    return row


def _dedup_rows(config: Config, cfg: SynthConfig, rows: list[dict], state: _State) -> list[dict]:
    """Curate's dedup (and decontamination) over the output rows: no duplicate row is written."""
    state.funnel.setdefault("output", {})["rows"] = len(rows)
    if not rows:
        state.funnel["output"]["kept"] = 0
        return rows
    convs = [
        Conversation(tuple(Message(m["role"], m["content"]) for m in r["messages"]), source=str(i))
        for i, r in enumerate(rows)
    ]
    result = _curate(config, cfg, convs, filters=False)
    alive = {c.source for c in result.kept}
    for r in result.removed:
        state.drop("output", r.step, _user_text(r.row), **_why(r))
    kept = [r for i, r in enumerate(rows) if str(i) in alive]
    state.funnel["output"]["kept"] = len(kept)
    return kept


def _report(cfg: SynthConfig, state: _State, rows, cached: CachedTeacher, seconds, n_seeds):
    stats = cached.stats
    tokens_in = sum(r.prompt_tokens for r in cached.replies.values())
    tokens_out = sum(r.completion_tokens for r in cached.replies.values())
    teacher_s = stats.teacher_seconds
    kept = len(rows)
    return {
        "teacher": cached.identity,
        "seeds": n_seeds,
        "funnel": state.funnel,
        "rows": {
            "total": kept,
            "by_stage": dict(Counter(r["synth"]["stage"] for r in rows)),
        },
        "teacher_calls": {
            "cached_replies": len(cached.replies),
            "hits": stats.hits,
            "sent": stats.sent,
            "torn_cache_lines": stats.torn_lines,
            "by_stage": stats.calls,
        },
        "throughput": {
            "seconds": round(seconds, 2),
            "teacher_seconds": round(teacher_s, 2),
            "requests_per_s": round(stats.sent / teacher_s, 3) if teacher_s else None,
            "completion_tokens_per_s": (
                round(stats.sent_completion_tokens / teacher_s, 1) if teacher_s else None
            ),
            "rows_per_hour": round(kept * 3600 / seconds, 1) if seconds and stats.sent else None,
        },
        "cost": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "prompt_tokens_per_kept_row": round(tokens_in / kept, 1) if kept else None,
            "completion_tokens_per_kept_row": round(tokens_out / kept, 1) if kept else None,
        },
        "settings": cfg.model_dump(mode="json"),
    }


_FUNNEL_KEYS = {
    "instructions": ("requests", "replies", "parsed", "passed_filters", "passed_rouge", "kept"),
    "responses": ("instructions", "with_input", "candidates", "stopped", "verified", "kept"),
    "augment": (
        "pool",
        "prompts",
        "answers",
        "stopped",
        "passed_first_try",
        "passed_within_k",
        "repaired",
        "kept",
    ),
    "output": ("rows", "kept"),
}
_STAGE_TITLES = {
    "instructions": "Stage 1: new instructions",
    "responses": "Stage 2: responses",
    "augment": "Stage 3: constraint-augmented answers",
    "output": "Output: dedup and decontamination of the rows",
}


def report_markdown(report: dict) -> str:
    """The synth report as Markdown: the funnel of each stage, throughput and cost."""
    lines = [
        "# Synth report",
        "",
        f"Teacher `{report['teacher']}`, {report['seeds']} seed tasks: "
        f"**{report['rows']['total']} rows kept** "
        f"({', '.join(f'{k} {v}' for k, v in report['rows']['by_stage'].items()) or 'none'}).",
    ]
    for stage, keys in _FUNNEL_KEYS.items():
        f = report["funnel"].get(stage)
        if not f:
            continue
        lines += ["", f"## {_STAGE_TITLES[stage]}", ""]
        lines.append(markdown_table(["step", "count"], [[k, f.get(k, 0)] for k in keys]))
        if f.get("dropped"):
            lines += ["", "Dropped, by reason:", ""]
            rows = sorted(f["dropped"].items(), key=lambda kv: -kv[1])
            lines.append(markdown_table(["reason", "count"], [list(kv) for kv in rows]))
        if stage == "augment" and f.get("prompts"):
            lines += [
                "",
                f"Pass rate: {100 * f['pass_rate_first_try']:.1f}% on the first try, "
                f"{100 * f['pass_rate_within_k']:.1f}% within "
                f"{report['settings']['augment']['tries']} tries.",
            ]
    t, c, calls = report["throughput"], report["cost"], report["teacher_calls"]
    lines += [
        "",
        "## Throughput and cost",
        "",
        markdown_table(
            ["measure", "value"],
            [
                ["wall seconds", t["seconds"]],
                ["teacher seconds (sent requests)", t["teacher_seconds"]],
                ["requests sent / from cache", f"{calls['sent']} / {calls['hits']}"],
                ["requests per second", t["requests_per_s"]],
                ["completion tokens per second", t["completion_tokens_per_s"]],
                ["kept rows per hour", t["rows_per_hour"]],
                ["teacher tokens in / out", f"{c['prompt_tokens']} / {c['completion_tokens']}"],
                [
                    "teacher tokens per kept row (in / out)",
                    f"{c['prompt_tokens_per_kept_row']} / {c['completion_tokens_per_kept_row']}",
                ],
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def report_html(report: dict) -> str:
    """The synth report as one self-contained page with a bar per funnel step."""
    e = html.escape
    body = [
        f"<h1>Synth report</h1><p>Teacher <code>{e(report['teacher'])}</code>: "
        f"<b>{report['rows']['total']} rows kept</b>.</p>"
    ]
    for stage, keys in _FUNNEL_KEYS.items():
        f = report["funnel"].get(stage)
        if not f:
            continue
        top = max([f.get(k, 0) for k in keys] + [1])
        bars = "".join(
            f"<tr><td>{e(k)}</td><td class=n>{f.get(k, 0)}</td><td><div style='background:"
            f"#4a78b5;height:1em;width:{300 * f.get(k, 0) / top:.0f}px'></div></td></tr>"
            for k in keys
        )
        dropped = "".join(
            f"<li>{e(r)}: {n}</li>"
            for r, n in sorted(f.get("dropped", {}).items(), key=lambda kv: -kv[1])
        )
        body.append(f"<h2>{e(_STAGE_TITLES[stage])}</h2><table>{bars}</table>")
        if dropped:
            body.append(f"<p>Dropped, by reason:</p><ul>{dropped}</ul>")
    t = report["throughput"]
    body.append(
        f"<h2>Throughput</h2><p>{t['requests_per_s']} requests/s, "
        f"{t['completion_tokens_per_s']} completion tokens/s, {t['rows_per_hour']} kept rows/h."
        "</p>"
    )
    css = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
        "td{padding:.2em .6em}td.n{text-align:right}"
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Synth report</title>"
        f"<style>{css}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _write(out: Path, rows, instructions, state: _State, report: dict) -> dict[str, Path]:
    from instill.atomic import write_atomic

    paths = {
        "rows": out / "synth.jsonl",
        "instructions": out / "instructions.jsonl",
        "dropped": out / "dropped.jsonl",
        "json": out / "report.json",
        "md": out / "report.md",
        "html": out / "report.html",
    }

    def jsonl(items) -> str:
        return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items)

    write_atomic(paths["rows"], jsonl(rows))
    write_atomic(paths["instructions"], jsonl(instructions))
    write_atomic(paths["dropped"], jsonl(state.dropped))
    write_atomic(paths["json"], json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_atomic(paths["md"], report_markdown(report))
    write_atomic(paths["html"], report_html(report))
    return paths
