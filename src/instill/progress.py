"""Progress of long loops (training steps, eval prompts, rows rendered), on a terminal or not.

On a terminal a rich bar redraws in place. Anywhere else (CI, nohup, `make demo > log`) a bar
draws nothing until it ends, so plain lines are printed instead: one when the loop starts, then at
most one every `interval_s` seconds (30 by default), and one when it ends, each flushed at once.

Two environment variables override the choice: `INSTILL_PROGRESS=auto|rich|plain|off` forces a
mode, and `INSTILL_PROGRESS_INTERVAL=SECONDS` sets the time between plain lines.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, Protocol, TextIO

from instill.errors import InstillError

Mode = Literal["rich", "plain", "off"]
MODES = ("auto", "rich", "plain", "off")
DEFAULT_INTERVAL_S = 30.0


class Tracker(Protocol):
    """What a loop reports its progress to."""

    def update(self, done: int, detail: str = "") -> None:
        """Set the number of finished units and the text shown after it (`loss 1.2345 ...`)."""

    def advance(self, n: int = 1) -> None:
        """Add `n` finished units, keeping the last detail."""


@contextmanager
def track(
    label: str,
    total: int,
    *,
    done: int = 0,
    unit: str = "",
    enabled: bool = True,
    transient: bool = False,
    mode: Mode | None = None,
    interval_s: float | None = None,
) -> Iterator[Tracker]:
    """Report the progress of a loop of `total` units.

    Args:
        label: what runs, e.g. `train` or `eval base`.
        total: units in the whole loop.
        done: units already finished (a resumed run).
        unit: the unit's name after the count, e.g. `steps` or `prompts`.
        enabled: False reports nothing (e.g. on all but the main process).
        transient: remove the rich bar when the loop ends (plain lines stay).
        mode: `rich`, `plain` or `off`; default `progress_mode()`.
        interval_s: seconds between plain lines; default `progress_interval()`.

    Yields:
        the `Tracker` to call as units finish.
    """
    chosen = (mode or progress_mode()) if enabled else "off"
    if chosen == "rich":
        tracker: _Tracker = RichProgress(label, total, done, unit, transient)
    elif chosen == "plain":
        interval = progress_interval() if interval_s is None else interval_s
        tracker = PlainProgress(label, total, done, unit, interval)
    else:
        tracker = NoProgress()
    tracker.start()
    try:
        yield tracker
    finally:
        tracker.finish()


def progress_mode() -> Mode:
    """`INSTILL_PROGRESS` if set, else `rich` when stdout is a terminal and `plain` otherwise."""
    value = os.environ.get("INSTILL_PROGRESS", "").strip().lower() or "auto"
    if value not in MODES:
        raise InstillError(f"INSTILL_PROGRESS must be auto, rich, plain or off, got {value!r}")
    if value != "auto":
        return value  # type: ignore[return-value]
    from rich import get_console

    return "rich" if get_console().is_terminal else "plain"


def progress_interval() -> float:
    """Seconds between plain progress lines: `INSTILL_PROGRESS_INTERVAL`, else 30."""
    text = os.environ.get("INSTILL_PROGRESS_INTERVAL", "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise InstillError(
            f"INSTILL_PROGRESS_INTERVAL must be a number of seconds >= 0, got {text!r}"
        )
    return value


class _Tracker(Tracker, Protocol):
    def start(self) -> None: ...

    def finish(self) -> None: ...


class PlainProgress:
    """Plain, flushed progress lines: at the start, at most one per `interval_s`, at the end.

    A line reads `train 12/40 steps (30%)  loss 1.2345  lr 2.00e-04  812 tok/s  elapsed 0:00:36
    ETA 0:01:24`; the ETA extrapolates the rate since the start (`?` before the first unit).
    """

    def __init__(
        self,
        label: str,
        total: int,
        done: int = 0,
        unit: str = "",
        interval_s: float = DEFAULT_INTERVAL_S,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.interval_s = interval_s
        self.done, self.detail = done, ""
        self._stream, self._clock = stream, clock
        self._first_done = done
        self._began = clock()
        self._printed_at = -math.inf
        self._printed: tuple[int, str] | None = None

    def start(self) -> None:
        self._print()

    def update(self, done: int, detail: str = "") -> None:
        self.done, self.detail = done, detail
        if self._clock() - self._printed_at >= self.interval_s:
            self._print()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n, self.detail)

    def finish(self) -> None:
        if self._printed != (self.done, self.detail):
            self._print()

    def line(self) -> str:
        """The current progress as one line."""
        elapsed = self._clock() - self._began
        count = f"{self.label} {self.done}/{self.total}" + (f" {self.unit}" if self.unit else "")
        if self.total > 0:
            count += f" ({100 * self.done / self.total:.0f}%)"
        finished = self.done - self._first_done
        if self.done >= self.total:
            eta = _duration(0)
        elif finished > 0:
            eta = _duration(elapsed / finished * (self.total - self.done))
        else:
            eta = "?"
        parts = [count, self.detail, f"elapsed {_duration(elapsed)}", f"ETA {eta}"]
        return "  ".join(p for p in parts if p)

    def _print(self) -> None:
        print(self.line(), file=self._stream or sys.stdout, flush=True)
        self._printed_at = self._clock()
        self._printed = (self.done, self.detail)


class RichProgress:
    """A rich bar: label, bar, done/total, unit, detail, elapsed time and ETA."""

    def __init__(
        self, label: str, total: int, done: int = 0, unit: str = "", transient: bool = False
    ) -> None:
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn(f"[bold]{escape(label)}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit, markup=False),
            TextColumn("{task.fields[detail]}", markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=transient,
        )
        self._task = self._bar.add_task(label, total=total, completed=done, detail="")

    def start(self) -> None:
        self._bar.start()

    def update(self, done: int, detail: str = "") -> None:
        self._bar.update(self._task, completed=done, detail=detail)

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)

    def finish(self) -> None:
        self._bar.stop()


class NoProgress:
    """Reports nothing."""

    def start(self) -> None:
        pass

    def update(self, done: int, detail: str = "") -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


def _duration(seconds: float) -> str:
    """`H:MM:SS`, as rich prints elapsed and remaining time."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
