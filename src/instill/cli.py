"""The `instill` command line: `instill prepare CONFIG [key=value ...] [--show N]`.

Every command takes a YAML config plus `key.sub=value` overrides, validated together (config.py);
flags that set config keys (`instill eval --batch-size`) go through the same validation.
Errors for bad input are printed as one clear message (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from instill import __version__, allocator
from instill.errors import InstillError

if TYPE_CHECKING:
    from instill.config import Config, EvalConfig

console = Console(soft_wrap=True)  # unwrapped lines: logs keep paths and messages whole
err_console = Console(stderr=True, soft_wrap=True)


def _quiet_third_party() -> None:
    """Silence messages that say nothing to a user of this command line."""
    # bitsandbytes announces, at import (through PEFT), an optional kernel package it lacks.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # PEFT reads a transformers attribute that transformers itself deprecated.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `instill` command itself (not a call from Python)
        try:
            allocator.reexec(sys.argv[1:])
        except InstillError as e:
            return _print_error(e)
    _quiet_third_party()
    parser = build_parser()
    # Overrides (key=value) may come before or after options such as --show.
    args, extra = parser.parse_known_args(argv)
    unknown = [x for x in extra if x.startswith("-") or "=" not in x]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*getattr(args, "overrides", []), *extra]
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except InstillError as e:
        return _print_error(e)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


def _print_error(e: InstillError) -> int:
    # One unwrapped line per message: a log keeps it whole (grep finds it), whatever the console
    # width or the length of the paths in it; a terminal wraps it for display.
    err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instill", description="Instruction tuning for causal language models."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"instill {__version__}; allocator: {allocator.describe()}",
    )
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser(
        "prepare",
        help="read, validate, render, mask and pack the data of a config",
        description="Read, validate, render, mask and pack the data; write "
        "<output_dir>/prepared/ (datasets.load_from_disk), stats.json and rejected.jsonl.",
    )
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. data.max_length=512")
    p.add_argument(
        "--show",
        type=_non_negative,
        default=0,
        metavar="N",
        help="print N rendered examples with the trained tokens marked",
    )
    p.set_defaults(func=cmd_prepare)

    t = sub.add_parser(
        "train",
        help="supervised fine-tuning (full, freeze, LoRA, QLoRA) on the data of a config",
        description="Prepare the data, then fine-tune with the response-masked loss. Writes "
        "checkpoints/, metrics.jsonl, tensorboard/ and the tuned model in <output_dir>/final/. "
        "Under `accelerate launch` or `torchrun` it runs data-parallel with the same config.",
    )
    t.add_argument("config", help="YAML config file")
    t.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.lr=1e-4")
    t.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CHECKPOINT",
        help="continue from the run's latest checkpoint, or from the given checkpoint dir",
    )
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "eval",
        help="evaluate models on held-out tasks; compare base vs tuned",
        description="Evaluate one or more models on eval tasks (registered names or task "
        "files) and write per-prompt records, report.json/.md, chart.png and report.html. "
        "With a config, models and tasks come from its eval: section (default models: the base "
        "model and the run's final/ model).",
    )
    e.add_argument("config", nargs="?", help="YAML config file with an eval: section")
    e.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    e.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH",
        help="model to evaluate (repeatable); a base model, final/ dir or adapter dir",
    )
    e.add_argument("--adapter", default=None, help="LoRA adapter on top of the (single) --model")
    e.add_argument(
        "--compare",
        nargs=2,
        metavar=("BASE", "TUNED"),
        help="evaluate two models side by side (BASE is the baseline)",
    )
    e.add_argument(
        "--tasks", default=None, help="comma-separated registered task names or task files"
    )
    e.add_argument("--metric", default="exact_match", help="metric for task files given by path")
    e.add_argument("--output-dir", default=None, help="where the report goes")
    e.add_argument("--max-new-tokens", type=int, default=None)
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--limit", type=int, default=None, help="first N prompts of each task")
    e.add_argument(
        "--lm-eval",
        default=None,
        metavar="TASKS",
        help="run lm-evaluation-harness tasks (comma-separated) on the model instead",
    )
    e.add_argument(
        "--lm-eval-include",
        default=None,
        metavar="DIR",
        help="a directory of lm-eval task YAMLs (local tasks)",
    )
    e.set_defaults(func=cmd_eval)

    q = sub.add_parser(
        "quickstart",
        help="evaluate the base model, LoRA-tune it on the built-in suite, evaluate again",
        description="The main job on the embedded default: build the built-in instruction "
        "suite, evaluate the base model on held-out families, held-out phrasings and format "
        "prompts, tune it on the training split, evaluate the tuned model on the same prompts "
        "and report base vs tuned.",
    )
    q.add_argument("config", nargs="?", default="configs/quickstart.yaml")
    q.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    q.add_argument(
        "--dpo",
        action="store_true",
        help="add a third stage: preference pairs from the verifiers on the tuned model's "
        "answers, DPO on top of it, and base vs tuned vs tuned+dpo in the same report "
        "(quickstart.dpo.enabled=true)",
    )
    q.set_defaults(func=cmd_quickstart)

    d = sub.add_parser("data", help="data utilities")
    d.set_defaults(func=lambda _: (d.print_help(), 2)[1])
    dsub = d.add_subparsers(dest="data_command")
    x = dsub.add_parser("export", help="export the built-in suite as JSONL in a training format")
    x.add_argument("what", choices=["builtin"], help="what to export")
    x.add_argument(
        "--format",
        default="messages",
        choices=["alpaca", "sharegpt", "messages", "prompt_completion"],
    )
    x.add_argument("--out", default="runs/builtin-suite", help="output directory")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--per-family", type=_non_negative, default=80, help="training rows per family")
    x.add_argument(
        "--eval-per-family",
        type=_non_negative,
        default=6,
        help="prompts per family in each evaluation split",
    )
    x.set_defaults(func=cmd_data_export)
    _add_pairs_command(dsub)
    _add_inference_commands(sub)
    _add_curate_command(sub)
    _add_synth_command(sub)
    _add_export_command(sub)
    _add_merge_and_adapter_commands(sub)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _top_p(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _model_arguments(p: argparse.ArgumentParser, sampling: bool = True) -> None:
    p.add_argument(
        "model", help="a base model, a run's final/ dir, a LoRA adapter dir or merged dir"
    )
    p.add_argument("--template", default="auto", help="template for a base model without one")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    if sampling:
        p.add_argument("--max-new-tokens", type=_positive, default=256)
        p.add_argument(
            "--temperature", type=_non_negative_float, default=0.0, help="0 (default): greedy"
        )
        p.add_argument("--top-p", type=_top_p, default=1.0)
        p.add_argument("--seed", type=int, default=None)


def _add_inference_commands(sub) -> None:
    """`instill chat`, `instill generate` and `instill serve`."""
    c = sub.add_parser(
        "chat",
        help="chat with a model in the terminal (streamed, rendered as in training)",
        description="An interactive chat: /reset, /system TEXT, /save FILE (a messages JSONL "
        "row), /exit. Answers stream as they are generated and stop at the end-of-turn token.",
    )
    _model_arguments(c)
    c.add_argument("--system", default=None, help="the system prompt")
    c.set_defaults(func=cmd_chat, max_new_tokens=512)

    g = sub.add_parser(
        "generate",
        help="answer a file of prompts (any training or eval format) into JSONL, resumably",
        description="Answer every prompt of --input; write one JSONL row per prompt (id, "
        "prompt, answer, stopped, finish_reason, token counts) to --output. A rerun skips the "
        "rows already answered.",
    )
    _model_arguments(g)
    g.add_argument("--input", required=True, help="prompt file (JSON/JSONL/Parquet/CSV)")
    g.add_argument("--output", required=True, help="answers JSONL (appended; resumable)")
    g.add_argument("--batch-size", type=_positive, default=8)
    g.add_argument("--limit", type=_positive, default=None, help="first N prompts only")
    g.set_defaults(func=cmd_generate, seed=0)

    s = sub.add_parser(
        "serve",
        help="OpenAI-compatible HTTP server (many LoRA adapters on one base)",
        description="Serve /v1/chat/completions, /v1/completions, /v1/models, /health and a "
        "chat page at /. Needs the [serve] extra.",
    )
    _model_arguments(s, sampling=False)
    s.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a LoRA adapter served as model NAME (repeatable)",
    )
    s.add_argument("--name", default=None, help="the base model's name in requests")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--api-key",
        default=None,
        help="require `Authorization: Bearer KEY` (default: $INSTILL_API_KEY if set)",
    )
    s.add_argument("--max-tokens-limit", type=_positive, default=2048)
    s.add_argument("--max-batch", type=_positive, default=16, help="rows decoded together")
    s.add_argument("--max-queue", type=_positive, default=64, help="waiting requests before 429")
    s.add_argument(
        "--print-vllm",
        metavar="DIR",
        default=None,
        help="write DIR/chat_template.jinja and print the equivalent `vllm serve` command",
    )
    s.set_defaults(func=cmd_serve)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def cmd_prepare(args: argparse.Namespace) -> int:
    from instill.config import load_config
    from instill.data.prepare import prepare
    from instill.data.show import render_marked
    from instill.models.tokenizer_loading import load_tokenizer_for

    config = load_config(args.config, args.overrides)
    data = config.require_data("prepare")  # before loading the tokenizer, which can take a while
    prompts = None
    if data.curate.decontaminate.enabled:
        from instill.eval.prompts import eval_prompts_for

        prompts = eval_prompts_for(config)
    result = prepare(config, load_tokenizer_for(config), eval_prompts=prompts)
    stats = result.stats
    if args.show:
        color = console.is_terminal
        legend = "green" if color else "[[...]]"
        console.print(f"[bold]Examples[/] (trained tokens in {legend}):", highlight=False)
        for ex in result.examples[: args.show]:
            console.rule(escape(ex.source), style="dim")
            console.print(
                render_marked(ex, result.renderer.tokenizer, color), highlight=False, markup=False
            )
        console.rule(style="dim")
    console.print(summary_table(stats))
    if stats["rows_rejected"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in stats["rejected_by_reason"].items())
        console.print(
            f"[yellow]{stats['rows_rejected']} rows not used[/] ({reasons}); see "
            f"{result.output_dir / 'rejected.jsonl'}",
            highlight=False,
        )
    _print_curation(stats.get("curation"))
    console.print(f"wrote {result.output_dir / 'prepared'}", highlight=False)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from instill.config import load_config
    from instill.train.loop import train

    config = load_config(args.config, args.overrides)
    try:
        result = train(config, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    if not result.is_main_process:
        return 0
    console.print(
        f"trained {result.state.step} steps; final loss {result.state.last_loss:.4f}"
        + (f", validation loss {result.val_losses[-1]:.4f}" if result.val_losses else "")
        + f"\nwrote {result.final_dir}",
        highlight=False,
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.markdown import Markdown

    from instill.config import EvalModelConfig, load_config
    from instill.errors import ConfigError
    from instill.eval.runner import build_tasks, markdown_table, run_eval

    config = load_config(args.config, args.overrides) if args.config else None
    cfg = _eval_section(args, config)
    if cfg.models:
        models = list(cfg.models)
    elif config is not None:
        models = [EvalModelConfig(path=config.model.path, name="base")]
        final = Path(config.output_dir) / "final"
        if final.is_dir():
            models.append(EvalModelConfig(path=str(final), name="tuned"))
    else:
        raise ConfigError(["give a config, --model PATH or --compare BASE TUNED"])
    if args.lm_eval:
        from instill.eval.lm_eval_adapter import run_lm_eval

        for spec in models:
            results = run_lm_eval(
                spec,
                args.lm_eval.split(","),
                include=args.lm_eval_include,
                limit=args.limit,
                out_dir=Path(args.output_dir or "runs/lm-eval"),
            )
            console.print(results["table"], highlight=False, markup=False)
        return 0
    specs = list(cfg.tasks)
    if not specs:
        raise ConfigError(["no eval tasks: pass --tasks or list eval.tasks in the config"])
    tasks = build_tasks(specs)
    out_dir = Path(cfg.output_dir or (Path(config.output_dir) / "eval" if config else "runs/eval"))
    _, comparison, paths = run_eval(models, tasks, cfg, out_dir, log=console.print, bar=True)
    console.print(Markdown("## Per family\n\n" + markdown_table(comparison, "family")))
    console.print(Markdown("## Overall\n\n" + markdown_table(comparison, "overall")))
    for e in comparison["examples"][:3]:
        console.rule(escape(f"{e['task']} / {e['id']}"), style="dim")
        for model, answer in e["answers"].items():
            console.print(
                f"[bold]{escape(model)}[/] ({answer['score']:.2f}): "
                f"{escape(answer['response'][:300])}",
                highlight=False,
            )
    console.print(f"wrote {paths['html']} and {paths['json']}", highlight=False)
    return 0


def _eval_section(args: argparse.Namespace, config: Config | None) -> EvalConfig:
    """The `eval:` section with the `instill eval` flags applied, validated like YAML keys.

    Each flag sets a key of the section (`--batch-size` sets `eval.batch_size`, `--limit` the
    `limit` of every task), and the merged section is validated once by the schema, so
    `--max-new-tokens 0` fails exactly as `eval.max_new_tokens: 0` in a YAML file does, with the
    flag named in the message.
    """
    from pathlib import Path

    from instill.config import validate_section

    raw = config.eval.model_dump() if config is not None else {}
    flags: dict[str, str] = {}
    for key in ("max_new_tokens", "batch_size", "output_dir"):
        value = getattr(args, key)
        if value is not None:
            raw[key] = value
            flags[f"eval.{key}"] = "--" + key.replace("_", "-")
    paths = args.compare or args.model
    if paths:
        raw["models"] = [
            {"path": p, "adapter": args.adapter if k == 0 and not args.compare else None}
            for k, p in enumerate(paths)
        ]
        flags["eval.models.*.path"] = "--compare" if args.compare else "--model"
        flags["eval.models.*.adapter"] = "--adapter"
    # lm-eval task names are the eval tasks of that run, validated (--limit) like ours.
    names, flag = (args.lm_eval, "--lm-eval") if args.lm_eval else (args.tasks, "--tasks")
    if names:
        raw["tasks"] = [
            {"path": item, "metric": args.metric}
            if not args.lm_eval and Path(item).exists()
            else {"name": item}
            for item in names.split(",")
        ]
        flags["eval.tasks.*"] = flag
        flags["eval.tasks.*.name"] = flag
        flags["eval.tasks.*.metric"] = "--metric"
    if args.limit is not None:
        for task in raw.get("tasks", []):
            task["limit"] = args.limit
        flags["eval.tasks.*.limit"] = "--limit"
    return validate_section("eval", raw, args.config, flags)


def cmd_quickstart(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.markdown import Markdown

    from instill.config import load_config
    from instill.eval.runner import headline, markdown_table
    from instill.pipelines.quickstart import run_quickstart

    config_path, overrides = args.config, list(args.overrides)
    if "=" in config_path and not Path(config_path).exists():
        # `instill quickstart key=value ...`: no config given, the first word is an override
        config_path, overrides = "configs/quickstart.yaml", [config_path, *overrides]
    overrides += ["quickstart.dpo.enabled=true"] if args.dpo else []
    config = load_config(config_path, overrides)
    comp = run_quickstart(config, log=lambda m: console.print(m, highlight=False))
    title = " vs ".join(comp["models"])
    console.print(Markdown("## Headline\n\n" + headline(comp)))
    console.print(Markdown(f"## {title} per split\n\n" + markdown_table(comp, "task")))
    console.print(Markdown("## Per family\n\n" + markdown_table(comp, "family")))
    for e in comp["examples"][:3]:
        console.rule(escape(f"{e['task']} / {e['id']}"), style="dim")
        console.print(escape(e["prompt"][-400:]), highlight=False, markup=False)
        for model, answer in e["answers"].items():
            console.print(
                f"[bold]{escape(model)}[/] (score {answer['score']:.0f}): "
                f"{escape(answer['response'][:300])}",
                highlight=False,
            )
    console.print(
        f"finished in {comp['seconds'] / 60:.1f} min; report: {comp['paths']['html']}",
        highlight=False,
    )
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from instill.data.builtin.suite import build_suite, export_suite

    suite = build_suite(args.seed, args.per_family, args.eval_per_family)
    report = export_suite(suite, Path(args.out), args.format)
    for split, r in report.items():
        skipped = ", ".join(f"{v} {k}" for k, v in r["skipped"].items())
        note = f" (not written: {skipped}; use --format messages or sharegpt)" if skipped else ""
        console.print(f"{split}: {r['written']} rows{note}", highlight=False)
    console.print(f"wrote {args.out}/<split>.jsonl and <split>.eval.jsonl", highlight=False)
    return 0


def _load_inference_bundle(args: argparse.Namespace, merge_adapter: bool = True):
    import torch

    from instill.models.bundle import load_bundle

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return load_bundle(args.model, template=args.template, dtype=dtype, merge_adapter=merge_adapter)


def cmd_chat(args: argparse.Namespace) -> int:
    from instill.generate.chat import ChatSampling, ChatSession, run_chat
    from instill.generate.stream import DecodeEngine

    bundle = _load_inference_bundle(args)
    session = ChatSession(
        DecodeEngine.for_bundle(bundle),
        bundle.renderer,
        system=args.system,
        sampling=ChatSampling(args.max_new_tokens, args.temperature, args.top_p, args.seed),
    )

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    return run_chat(session, input, write)


def cmd_generate(args: argparse.Namespace) -> int:
    from instill.pipelines.batch_generate import BatchSettings, generate_file

    bundle = _load_inference_bundle(args)
    settings = BatchSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
        limit=args.limit,
    )
    r = generate_file(bundle, args.input, args.output, settings)
    console.print(
        f"{r['answered']} answered ({r['stopped']} stopped at the end of turn), "
        f"{r['skipped']} already in {r['output']}",
        highlight=False,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    adapters: dict[str, str] = {}
    for item in args.adapter:
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            raise InstillError(f"--adapter {item!r}: expected NAME=PATH")
        if name in adapters:
            raise InstillError(f"--adapter {name!r} is given twice")
        adapters[name] = path
    if args.print_vllm:
        return _print_vllm(args, adapters)
    try:
        from instill.generate.server import ModelPool, ServeSettings, serve
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise InstillError(
            f"instill serve needs the serve extra: pip install 'instill[serve]' ({e})"
        ) from e
    api_key = args.api_key or os.environ.get("INSTILL_API_KEY") or None
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        api_key=api_key,
        max_tokens_limit=args.max_tokens_limit,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
    )
    pool = ModelPool(_load_inference_bundle(args), name=args.name or args.model)
    for name, path in adapters.items():
        pool.load_adapter(name, path)
    auth = "API key required" if api_key else "no API key"
    err_console.print(
        f"serving {', '.join(pool.models)} on http://{args.host}:{args.port} ({auth})",
        highlight=False,
    )
    serve(pool, settings)
    return 0


def _print_vllm(args: argparse.Namespace, adapters: dict[str, str]) -> int:
    import os
    from pathlib import Path

    from instill.generate.vllm import lora_rank, vllm_command, write_chat_template
    from instill.models.bundle import load_adapter_renderer, load_renderer

    model = args.model
    if (Path(model) / "adapter_config.json").is_file():  # a LoRA final/: its base + it
        renderer, stop_ids, model = load_adapter_renderer(args.model)
        adapters = {Path(args.model).name: args.model, **adapters}
    else:
        renderer, stop_ids = load_renderer(model, args.template)
    template_file = write_chat_template(renderer, args.print_vllm)
    ranks = [r for r in (lora_rank(p) for p in adapters.values()) if r]
    print(
        vllm_command(
            model,
            template_file,
            stop_ids,
            adapters,
            max(ranks) if ranks else None,
            host=args.host,
            port=args.port,
            api_key_env=bool(args.api_key or os.environ.get("INSTILL_API_KEY")),
        )
    )
    return 0


def summary_table(stats: dict) -> Table:
    table = Table(title="instill prepare", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    length = stats["length"]
    rows = [
        (
            "rows read / kept / rejected",
            f"{stats['rows_read']} / {stats['rows_kept']} / {stats['rows_rejected']}",
        ),
        ("template (end of turn)", f"{stats['template']} ({stats['end_of_turn']})"),
        ("masking", stats["masking"]),
        (
            "tokens total / supervised",
            f"{stats['tokens_total']} / {stats['tokens_supervised']} "
            f"({100 * stats['supervised_fraction']:.1f}%)",
        ),
        (
            "length p50 / p90 / p99 / max",
            f"{length['p50']} / {length['p90']} / {length['p99']} / {length['max']}",
        ),
        ("truncated rows", str(stats["truncated_rows"])),
        ("zero-supervision rows (dropped)", str(stats["zero_supervision_rows"])),
    ]
    if stats["packing"]:
        rows.append(
            (
                "packed rows (fill)",
                f"{stats['packing']['rows']} ({100 * stats['packing']['fill']:.1f}%)",
            )
        )
    rows.append(("rows / second", f"{stats['rows_per_second']:.0f}"))
    for k, v in rows:
        table.add_row(k, v)
    return table


def _add_export_command(sub) -> None:
    """`instill export MODEL --format gguf`: one file for llama.cpp / Ollama, checked."""
    from instill.models.gguf_export import QUANT_TYPES

    x = sub.add_parser(
        "export",
        help="export a full or merged model to GGUF (llama.cpp, Ollama), checked by a round trip",
        description="Write the model as one GGUF file (Llama, Qwen2, Gemma 3) with its tokenizer, "
        "the chat template it was trained with and the end-of-turn token as EOS. Before the "
        "file is published, transformers loads it back and its logits on probe conversations "
        "are compared with the source model's (max |delta logit|, argmax agreement, greedy "
        "answers); on a mismatch nothing is written. A LoRA adapter must be merged first "
        "(`instill merge`).",
    )
    x.add_argument("model", help="a full fine-tune's final/, a merged dir or a base model")
    x.add_argument("--format", required=True, choices=["gguf"], help="the output format")
    x.add_argument("--type", default="f16", choices=QUANT_TYPES, help="weights type")
    x.add_argument("--out", required=True, help="the .gguf file to write")
    x.add_argument("--ollama", action="store_true", help="also write an Ollama Modelfile")
    x.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import shlex

    from instill.models.gguf_export import export_gguf

    report = export_gguf(args.model, args.out, args.type, ollama=args.ollama)
    rt = report.round_trip
    path = shlex.quote(str(report.path))
    lines = [
        f"wrote {report.path} ({report.architecture}, {report.quant_type}, "
        f"{report.size_bytes / 2**20:.1f} MiB, {report.tensors} tensors, "
        f"{report.parameters / 1e6:.1f}M parameters, EOS {report.eos_token}, "
        f"{report.seconds:.1f} s)",
    ]
    if rt is not None:
        lines.append(
            f"round trip (transformers): max |delta logit| {rt.max_abs_delta:.3g} "
            f"(tolerance {rt.tolerance:.3g} from the {report.quant_type} rounding), argmax "
            f"agreement {100 * rt.argmax_agreement:.1f}% of {rt.positions} positions, greedy "
            f"answers identical, token ids identical"
        )
    lines.append(f"run it:  llama-cli -m {path} -cnv   (or llama-server -m {path})")
    if report.modelfile is not None:
        folder = shlex.quote(str(report.modelfile.parent))
        lines.append(f"ollama:  cd {folder} && ollama create NAME -f Modelfile && ollama run NAME")
    console.print("\n".join(lines), highlight=False, markup=False)
    return 0


def _add_pairs_command(dsub) -> None:
    """`instill data pairs MODEL`: preference pairs from checkable prompts (pipelines/pairs.py)."""
    p = dsub.add_parser(
        "pairs",
        help="build DPO pairs: a passing answer (chosen) vs a sampled one that fails its check",
        description="Sample answers from MODEL to prompts whose answers can be checked (the "
        "built-in suite, or eval tasks); chosen = the reference answer (or a sampled one) that "
        "passes the prompt's checker, rejected = a sampled answer that fails it or does not "
        "stop. Writes prompt/chosen/rejected JSONL (train.objective: dpo reads it) and "
        "<out>.stats.json.",
    )
    _model_arguments(p)
    p.add_argument(
        "--from",
        dest="source",
        default="builtin:train?per_family=4",
        help="the built-in suite split to draw prompts from (builtin:<split>[?per_family=N])",
    )
    p.add_argument(
        "--tasks", default=None, help="comma-separated eval task names or task files instead"
    )
    p.add_argument("--metric", default="exact_match", help="metric of task files given by path")
    p.add_argument("--samples", type=_positive, default=4, help="answers sampled per prompt")
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument("--limit", type=_positive, default=None, help="first N prompts only")
    p.add_argument("--out", default="runs/pairs/pairs.jsonl", help="the pairs JSONL")
    p.set_defaults(func=cmd_pairs, temperature=1.0, max_new_tokens=128, seed=0)


def cmd_pairs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from instill.generate.engine import Generator, SamplingConfig
    from instill.pipelines.pairs import (
        build_pairs,
        builtin_checkables,
        task_checkables,
        write_pairs,
    )
    from instill.progress import track

    if args.tasks:
        from instill.config import EvalTaskConfig
        from instill.eval.runner import build_tasks

        specs = [
            EvalTaskConfig(path=t, metric=args.metric)
            if Path(t).exists()
            else EvalTaskConfig(name=t)
            for t in args.tasks.split(",")
        ]
        checkables = task_checkables(build_tasks(specs))
    else:
        checkables = builtin_checkables(args.source)
    checkables = checkables[: args.limit] if args.limit else checkables
    if args.samples > 1 and args.temperature == 0:
        raise InstillError("--samples > 1 needs --temperature > 0 (greedy gives one answer)")
    sampling = SamplingConfig(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.temperature > 0,
        temperature=args.temperature or 1.0,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    generator = Generator.for_bundle(_load_inference_bundle(args))
    total = len(checkables) * args.samples
    with track("sample", total, unit="answers") as tracker:
        result = build_pairs(generator, checkables, args.samples, sampling, tracker.advance)
    path = write_pairs(result, Path(args.out))
    outcome = ", ".join(f"{k}: {v}" for k, v in result.stats["outcome"].items())
    console.print(
        f"{result.stats['pairs']} pairs from {result.stats['prompts']} prompts ({outcome}); "
        f"wrote {path} and {path.with_suffix('.stats.json')}",
        highlight=False,
        markup=False,
    )
    return 0


def _add_curate_command(sub) -> None:
    """`instill curate CONFIG`: dedup, filters, decontamination and mixing, with a report."""
    c = sub.add_parser(
        "curate",
        help="dedup, quality-filter and decontaminate the data of a config, with a report",
        description="Run the data.curate steps (exact and near-duplicate removal, quality "
        "filters, decontamination against the config's eval tasks, mixing) on the config's "
        "sources; write curated.jsonl (messages format), removed.jsonl (every removed row with "
        "its file:line, step and reason) and report.md/.json/.html to data.curate.output_dir "
        "(default <output_dir>/curation).",
    )
    c.add_argument("config", help="YAML config file")
    c.add_argument(
        "overrides",
        nargs="*",
        help="key.sub=value overrides, e.g. data.curate.near_dedup.enabled=true",
    )
    c.set_defaults(func=cmd_curate)


def cmd_curate(args: argparse.Namespace) -> int:
    from instill.config import load_config
    from instill.data.curate.report import STEP_TITLES, decontamination_line, summary_line
    from instill.pipelines.curate import run_curate

    config = load_config(args.config, args.overrides)
    run = run_curate(config, log=lambda m: console.print(m, highlight=False, markup=False))
    stats = run.result.stats
    table = Table(title="instill curate", title_justify="left")
    table.add_column("source")
    for step in ("read", "valid", "exact_dedup", "near_dedup", "filters", "decontaminate", "kept"):
        off = step in stats["enabled"] and not stats["enabled"][step]
        table.add_column(STEP_TITLES[step] + (" (off)" if off else ""), justify="right")
    funnel = stats["funnel"]
    for f in funnel["sources"] + ([funnel["total"]] if len(funnel["sources"]) > 1 else []):
        table.add_row(
            f["source"],
            *(
                str(f[s])
                for s in (
                    "read",
                    "valid",
                    "exact_dedup",
                    "near_dedup",
                    "filters",
                    "decontaminate",
                    "kept",
                )
            ),
        )
    console.print(table)
    console.print(summary_line(stats), highlight=False, markup=False)
    line = decontamination_line(stats)
    if line:
        console.print(line, highlight=False, markup=False)
    mixture = sum(m["examples"] for m in stats["mixture"])
    console.print(
        f"wrote {run.paths['curated']} ({mixture} rows), {run.paths['removed']} and "
        f"{run.paths['html']}",
        highlight=False,
        markup=False,
    )
    return 0


def _add_synth_command(sub) -> None:
    """`instill synth CONFIG`: instructions, checked responses and constrained answers."""
    c = sub.add_parser(
        "synth",
        help="synthesize instruction data with a teacher (Self-Instruct + verifiers)",
        description="Bootstrap new instructions from the seed tasks of synth.seeds (ROUGE-L "
        "and curate's dedup/decontamination filter them), have the teacher (a model "
        "in-process, or an OpenAI-compatible endpoint) write inputs and responses kept only "
        "when they pass the verifiers, and add verifiable constraints whose answers are kept "
        "only when the constraint checkers accept them. Writes synth.jsonl (messages rows with "
        "provenance, trainable with instill train), dropped.jsonl and report.md/.json/.html "
        "to synth.output_dir (default <output_dir>/synth). Teacher replies are cached: a "
        "rerun sends only what is missing.",
    )
    c.add_argument("config", help="YAML config file with a synth: section")
    c.add_argument(
        "overrides", nargs="*", help="key.sub=value overrides, e.g. synth.instructions.target=50"
    )
    c.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from instill.config import load_config
    from instill.pipelines.synth import run_synth

    config = load_config(args.config, args.overrides)
    run = run_synth(config, log=lambda m: console.print(m, highlight=False, markup=False))
    table = Table(title="instill synth", title_justify="left")
    for col in ("stage", "in", "kept", "dropped (top reasons)"):
        table.add_column(col, justify="left" if col.startswith(("stage", "dropped")) else "right")
    first = {
        "instructions": "parsed",
        "responses": "instructions",
        "augment": "prompts",
        "output": "rows",
    }
    for stage, f in run.report["funnel"].items():
        top = sorted(f.get("dropped", {}).items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            stage,
            str(f.get(first[stage], "")),
            str(f.get("kept", "")),
            ", ".join(f"{k} {v}" for k, v in top),
        )
    console.print(table)
    t = run.report["throughput"]
    console.print(
        f"{run.report['rows']['total']} rows in {t['seconds']} s "
        f"({t['rows_per_hour']} rows/h; teacher {t['completion_tokens_per_s']} tokens/s); "
        f"wrote {run.paths['rows']} and {run.paths['html']}",
        highlight=False,
        markup=False,
    )
    return 0


def _print_curation(curation: dict | None) -> None:
    """One line per curation result of `instill prepare` (what was removed, decontamination)."""
    if not curation:
        return
    removed = {k: v for k, v in curation["removed_by_step"].items() if v}
    text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in removed.items()) or "nothing"
    console.print(f"curation removed {text}; report: {curation['report']}", highlight=False)
    dc = curation.get("decontaminate")
    if dc:
        tasks = ", ".join(f"{t} ({n})" for t, n in dc["tasks"].items())
        line = (
            f"decontamination: {dc['rows_checked']} rows checked against {dc['prompts']} eval "
            f"prompts ({tasks}), {dc['ngram']}-grams, min_score {dc['min_score']}: "
            f"{curation['removed_by_step']['decontaminate']} removed"
        )
        if dc["kept_below_min_score"]:
            line += (
                f"; {dc['kept_below_min_score']} rows share fewer n-grams (at most "
                f"{dc['max_score_kept']:.0%} of a prompt) and were kept"
            )
        console.print(line, highlight=False, markup=False)


def _add_merge_and_adapter_commands(sub) -> None:
    """`instill merge` and `instill adapters ls|combine`: adapters into models, many on one base."""
    m = sub.add_parser(
        "merge",
        help="merge a LoRA / QLoRA adapter into its base, checked against the unmerged adapter",
        description="Merge the adapter into its base (QLoRA: into the dequantized 4-bit base "
        "it was trained against; trained token rows and resized embeddings included) and write "
        "a plain transformers directory with the tokenizer, the chat template and a "
        "generation_config.json whose EOS ids include the end-of-turn token. Before writing, "
        "the merged model is compared with the unmerged adapter on probe prompts: max |delta "
        "logit| and greedy-token agreement; below --min-agreement nothing is written.",
    )
    m.add_argument("adapter", help="adapter dir (a run's final/ trained with LoRA or QLoRA)")
    m.add_argument("--out", required=True, help="directory to write the merged model to")
    m.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="weights dtype of the merged model (auto: the dtype the base trained in)",
    )
    m.add_argument("--base", default=None, help="the base model, if the adapter's moved")
    m.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="smallest greedy-token agreement with the unmerged adapter accepted (0..1)",
    )
    m.add_argument(
        "--prompts",
        default=None,
        metavar="FILE",
        help="probe prompts, one user message per line (default: a built-in probe set)",
    )
    m.add_argument("--max-new-tokens", type=_positive, default=24, help="per probe answer")
    m.set_defaults(func=cmd_merge)

    a = sub.add_parser("adapters", help="list, inspect and combine adapters of one base")
    a.set_defaults(func=lambda _: (a.print_help(), 2)[1])
    asub = a.add_subparsers(dest="adapters_command")
    ls = asub.add_parser(
        "ls",
        help="list the adapters under a directory: base, rank, targets, trained tokens, size",
    )
    ls.add_argument("root", help="a directory holding adapter dirs (searched recursively)")
    ls.add_argument("--base", default=None, help="refuse adapters trained on another base")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_adapters_ls)
    c = asub.add_parser(
        "combine",
        help="combine adapters of one base (PEFT add_weighted_adapter) and evaluate the result",
        description="Combine LoRA adapters trained on the same base into one adapter: cat "
        "(exact weighted sum of the updates), linear, ties or dare. Trained token rows are "
        "combined too. Then every input and the combination are evaluated on the tasks the "
        "inputs were trained for (their runs' eval tasks, or --task) and a report is written "
        "to OUT/report/.",
    )
    c.add_argument("adapters", nargs="+", help="two or more adapter dirs")
    c.add_argument("--out", required=True, help="adapter dir to write")
    c.add_argument("--weights", type=float, nargs="+", default=None, help="one per adapter")
    c.add_argument("--method", default="cat", choices=["cat", "linear", "ties", "dare"])
    c.add_argument("--density", type=float, default=0.5, help="kept share for ties / dare")
    c.add_argument("--base", default=None, help="the base model, if the adapters' moved")
    c.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME_OR_FILE",
        help="eval task (repeatable; default: the eval tasks of the inputs' runs)",
    )
    c.add_argument("--limit", type=_positive, default=None, help="first N prompts per task")
    c.add_argument("--max-new-tokens", type=_positive, default=128)
    c.add_argument("--no-eval", action="store_true", help="combine only")
    c.set_defaults(func=cmd_adapters_combine)


def cmd_merge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from instill.models.export import merge_adapter

    prompts = None
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise InstillError(f"--prompts {path}: no such file")
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not prompts:
            raise InstillError(f"--prompts {path}: no prompt in it (one per line)")
    report = merge_adapter(
        args.adapter,
        args.out,
        dtype=args.dtype,
        base=args.base,
        prompts=prompts,
        min_agreement=args.min_agreement,
        max_new_tokens=args.max_new_tokens,
    )
    check = report.check
    console.print(
        f"merged {report.adapter} ({report.method}) into {report.base} -> {report.out} "
        f"({report.dtype}, {report.size_bytes / 2**20:.1f} MiB, {report.seconds:.1f} s)\n"
        f"check on {check.probes} probes: max |delta logit| {check.max_abs_logit_delta:.3g}, "
        f"greedy-token agreement {100 * check.greedy_agreement:.2f}% of "
        f"{check.answer_tokens} tokens",
        highlight=False,
        markup=False,
    )
    return 0


def cmd_adapters_ls(args: argparse.Namespace) -> int:
    import json

    from instill.models.adapter_ops import check_same_base, list_adapters

    infos = list_adapters(args.root)
    if not infos:
        raise InstillError(f"{args.root}: no adapter dir (adapter_config.json) under it")
    if args.base:
        check_same_base(infos, args.base)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    table = Table(title=f"adapters under {args.root}", title_justify="left")
    for col in ("adapter", "base", "method", "r", "alpha", "targets", "trained tokens", "MiB"):
        table.add_column(col, justify="right" if col in ("r", "alpha", "MiB") else "left")
    for i in infos:
        targets = i.targets if isinstance(i.targets, str) else _short_targets(i.targets)
        tokens = ", ".join(f"{k} {len(v)}" for k, v in i.trained_tokens.items()) or "-"
        extra = "+dora" if i.dora else "+rslora" if i.rslora else ""
        table.add_row(
            i.path,
            str(i.base),
            i.method + extra,
            str(i.r),
            f"{i.alpha:g}",
            targets,
            tokens,
            f"{i.size_bytes / 2**20:.2f}",
        )
    console.print(table)
    return 0


def _short_targets(targets: list[str]) -> str:
    """`q_proj, v_proj` for PEFT's module lists (full paths after a combine)."""
    return ", ".join(sorted({t.rsplit(".", 1)[-1] for t in targets}))


def cmd_adapters_combine(args: argparse.Namespace) -> int:
    from instill.eval.runner import markdown_table
    from instill.pipelines.adapters import combine_and_evaluate

    result = combine_and_evaluate(
        args.adapters,
        args.out,
        weights=args.weights,
        method=args.method,
        density=args.density,
        base=args.base,
        tasks=args.task,
        evaluate_tasks=not args.no_eval,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        log=lambda msg: console.print(msg, highlight=False, markup=False),
    )
    if result.comparison is not None:
        console.print(markdown_table(result.comparison, "task"), highlight=False, markup=False)
        console.print(f"report: {result.paths['md']}", highlight=False, markup=False)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
