"""Progress on stderr: a Rich bar on a terminal, plain periodic lines otherwise (SPEC §6)."""

from __future__ import annotations

import sys
import time
from collections import deque
from types import TracebackType
from typing import Any, cast

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

RATE_SPAN = 300.0  # the ETA follows the rate over the last 5 minutes
RATE_MIN = 5.0     # and says nothing before it has 5 seconds of them
NO_ETA = "-:--:--"


def fit_fields(fields: dict[str, Any], width: int) -> str:
    """format_fields of the leading fields that fit in `width` characters."""
    shown = {key: value for key, value in fields.items() if value is not None}
    while shown and len(format_fields(shown)) > width:
        shown.popitem()
    return format_fields(shown)


def format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        parts.append(f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)


BAR_WIDTH = 16
MIN_BAR = 5


class Rate:
    """Items per second over the last `span` seconds, from (time, completed) samples taken at
    most once a second, so a slow start (compiling, loading) fades from the estimate."""

    def __init__(self, now: float, completed: int, span: float = RATE_SPAN) -> None:
        self.span = span
        self.samples: deque[tuple[float, int]] = deque()
        self.restart(now, completed)

    def restart(self, now: float, completed: int) -> None:
        """Forget the samples so far: the work goes on at another pace from here."""
        self.samples.clear()
        self.samples.append((now, completed))

    def add(self, now: float, completed: int) -> None:
        if now - self.samples[-1][0] >= 1.0:
            self.samples.append((now, completed))
        while len(self.samples) > 1 and self.samples[0][0] < now - self.span:
            self.samples.popleft()

    def eta(self, now: float, completed: int, total: int) -> float | None:
        """Seconds left at the recent rate; None before RATE_MIN seconds of progress."""
        then, before = self.samples[0]
        if not before < completed < total or now - then < RATE_MIN:
            return None
        return (total - completed) * (now - then) / (completed - before)


class ProgressReporter:
    """One long job's progress. `update(completed, **fields)` shows the fields beside the bar.

    `start` is where a resumed job begins. With `warmup`, the first items go at another pace
    than the rest (a trainer's steps before its first update): no ETA until `warmed_up()`.
    """

    def __init__(self, description: str, total: int, interval: float = 30.0,
                 enabled: bool = True, console: Console | None = None, start: int = 0,
                 warmup: bool = False) -> None:
        self.description = description
        self.total = total
        self.interval = interval
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.plain = enabled and not self.live
        self.start = start
        self.last_print = 0.0
        self.rate = Rate(time.monotonic(), start)
        self.warm = not warmup
        self.bar: Progress | None = None
        self.task_id: TaskID | None = None

    def __enter__(self) -> ProgressReporter:
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=BAR_WIDTH),
                MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                TextColumn("eta [progress.remaining]{task.fields[eta]}"),
                console=self.console, transient=False,
            )
            self.bar.start()
            self.task_id = self.bar.add_task(self.description, total=self.total,
                                             completed=self.start, info="", eta=NO_ETA)
        return self

    def warmed_up(self, completed: int) -> None:
        """The job runs at its own pace from `completed` on: the ETA is measured from here."""
        self.rate.restart(time.monotonic(), completed)
        self.warm = True

    def eta(self, now: float, completed: int) -> float | None:
        return self.rate.eta(now, completed, self.total) if self.warm else None

    def update(self, completed: int, force: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        self.rate.add(now, completed)
        if self.bar is not None and self.task_id is not None:
            eta = self.eta(now, completed)
            eta_text = NO_ETA if eta is None else format_seconds(eta)
            # Steps/total, elapsed and ETA always show; the fields take what the terminal has
            # left and lose their last ones first (issue 23: at 80 columns they hid the ETA).
            # The bar shrinks to MIN_BAR before a field is dropped.
            free = self.console.width - (len(self.description) + 2 * len(str(self.total)) + 1
                                         + len("0:00:00") + len("eta ") + len(eta_text)
                                         + 6)  # 6 separating spaces
            bar_width = max(MIN_BAR, min(BAR_WIDTH, free - len(format_fields(fields))))
            cast(BarColumn, self.bar.columns[1]).bar_width = bar_width
            info = fit_fields(fields, free - bar_width)
            self.bar.update(self.task_id, completed=completed, info=info, eta=eta_text)
            return
        if self.plain and (force or now - self.last_print >= self.interval):
            info = format_fields(fields)
            self.last_print = now
            eta = self.eta(now, completed)
            tail = "" if eta is None else f" | eta {format_seconds(eta)}"
            line = f"{self.description} {completed}/{self.total}"
            sys.stderr.write(f"{line} | {info}{tail}\n" if info else f"{line}{tail}\n")
            sys.stderr.flush()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
