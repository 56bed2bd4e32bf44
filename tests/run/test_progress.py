"""Plain progress lines (stderr is not a terminal): the ETA follows the recent rate."""

from __future__ import annotations

import pytest
from rich.console import Console

from dreamerctl.run import progress
from dreamerctl.run.progress import ProgressReporter


def test_plain_eta_follows_the_recent_rate(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    console = Console(stderr=True, force_terminal=False)
    lines = []
    with ProgressReporter("train", 1000, interval=10, console=console) as bar:
        # A slow start (600 s for 10 steps: compiling), then 1 step per second.
        clock[0] = 600.0
        bar.update(10)
        for _ in range(12):
            clock[0] += 10
            bar.update(10 + int(clock[0] - 600))
            lines.append(capsys.readouterr().err.strip())
    assert lines[-1] == "train 130/1000 | eta 0:14:30"  # 870 steps at 1 step/s
    # The average since the start (130 steps in 720 s) would have said 1:20:18.


def test_plain_lines_without_progress_have_no_eta(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with ProgressReporter("record", 5, interval=1, console=Console(stderr=True)) as bar:
        clock[0] = 5.0
        bar.update(0, score=1.5)
        clock[0] = 10.0
        bar.update(5, force=True)
    assert capsys.readouterr().err.splitlines() == ["record 0/5 | score 1.5", "record 5/5"]
