"""Progress on stderr: a Rich bar on a terminal, plain periodic lines otherwise (SPEC §6)."""

from __future__ import annotations

import sys
import time
from collections import deque
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

RATE_LINES = 10  # the plain ETA uses the rate over the last 10 lines (5 min at 30 s apart)


def format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        parts.append(f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)


class ProgressReporter:
    """One long job's progress. `update(completed, **fields)` shows the fields beside the bar."""

    def __init__(self, description: str, total: int, interval: float = 30.0,
                 enabled: bool = True, console: Console | None = None) -> None:
        self.description = description
        self.total = total
        self.interval = interval
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.plain = enabled and not self.live
        self.last_print = 0.0
        # (time, completed) at the last plain lines: the ETA follows the recent rate, so a slow
        # start (compiling, the first updates after random prefill steps) fades from it.
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)], maxlen=RATE_LINES)
        self.bar: Progress | None = None
        self.task_id: Any = None

    def __enter__(self) -> ProgressReporter:
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), console=self.console, transient=False,
            )
            self.bar.start()
            self.task_id = self.bar.add_task(self.description, total=self.total, info="")
        return self

    def update(self, completed: int, force: bool = False, **fields: Any) -> None:
        info = format_fields(fields)
        if self.bar is not None:
            self.bar.update(self.task_id, completed=completed, info=info)
            return
        now = time.monotonic()
        if self.plain and (force or now - self.last_print >= self.interval):
            self.last_print = now
            then, before = self.samples[0]
            self.samples.append((now, completed))
            eta = ""
            if before < completed < self.total and now > then:
                rate = (completed - before) / (now - then)
                eta = f" | eta {format_seconds((self.total - completed) / rate)}"
            line = f"{self.description} {completed}/{self.total}"
            sys.stderr.write(f"{line} | {info}{eta}\n" if info else f"{line}{eta}\n")
            sys.stderr.flush()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
