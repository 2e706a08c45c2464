"""The `instill` command line: `instill prepare CONFIG [key=value ...] [--show N]`.

Every command takes a YAML config plus `key.sub=value` overrides, validated together (config.py).
Errors for bad input are printed as one clear message (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from instill import __version__
from instill.errors import InstillError

console = Console()
err_console = Console(stderr=True)


def _quiet_third_party() -> None:
    """Silence messages that say nothing to a user of this command line."""
    # bitsandbytes announces, at import (through PEFT), an optional kernel package it lacks.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # PEFT reads a transformers attribute that transformers itself deprecated.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")


def main(argv: Sequence[str] | None = None) -> int:
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
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instill", description="Instruction tuning for causal language models."
    )
    parser.add_argument("--version", action="version", version=f"instill {__version__}")
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
    return parser


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def cmd_prepare(args: argparse.Namespace) -> int:
    from instill.config import load_config
    from instill.data.prepare import prepare
    from instill.data.show import render_marked

    config = load_config(args.config, args.overrides)
    result = prepare(config, progress=console.is_terminal)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
