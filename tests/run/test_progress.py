"""Plain progress lines (stderr is not a terminal): the ETA follows the recent rate."""

from __future__ import annotations

import io

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


def plain_lines(bar: ProgressReporter, clock: list[float], capsys: pytest.CaptureFixture[str],
                steps: list[tuple[float, int]]) -> list[str]:
    """Advance the fake clock to each (time, completed) and collect the printed lines."""
    for now, completed in steps:
        clock[0] = now
        bar.update(completed)
    return capsys.readouterr().err.splitlines()


def test_no_eta_from_the_first_seconds(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with ProgressReporter("train", 1000, interval=10, console=Console(stderr=True)) as bar:
        # One step after 0.5 s says nothing of the rate; 10 s of steps do.
        lines = plain_lines(bar, clock, capsys, [(100.5, 1), (110.5, 21)])
    assert lines == ["train 1/1000", "train 21/1000 | eta 0:08:09"]  # 979 steps at 2 steps/s


def test_warmup_steps_do_not_count(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with ProgressReporter("train", 10_000, interval=10, console=Console(stderr=True),
                          warmup=True) as bar:
        # 500 steps in 20 s without updates, then 1 step per second with them.
        before = plain_lines(bar, clock, capsys, [(10.0, 250), (20.0, 500)])
        bar.warmed_up(500)
        after = plain_lines(bar, clock, capsys, [(30.0, 510), (40.0, 520)])
    assert before == ["train 250/10000", "train 500/10000"]
    assert after == ["train 510/10000 | eta 2:38:10", "train 520/10000 | eta 2:38:00"]
    # The rate since the start (520 steps in 40 s) would have said 0:12:09.


def test_resumed_job_eta_counts_from_its_start(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with ProgressReporter("train", 10_000, interval=10, console=Console(stderr=True),
                          start=5000) as bar:
        lines = plain_lines(bar, clock, capsys, [(110.0, 5010), (120.0, 5020)])
    assert lines == ["train 5010/10000 | eta 1:23:10", "train 5020/10000 | eta 1:23:00"]


def test_terminal_bar_shows_the_same_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with ProgressReporter("train", 1000, console=console, start=100, warmup=True) as bar:
        assert bar.bar is not None
        task = bar.bar.tasks[0]
        assert task.completed == 100 and task.fields["eta"] == "-:--:--"
        clock[0] = 10.0
        bar.update(300)
        assert task.fields["eta"] == "-:--:--"  # before the first update: not the job's pace
        bar.warmed_up(300)
        clock[0] = 20.0
        bar.update(310)
        assert task.fields["eta"] == "0:11:30"  # 690 steps at 1 step/s


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_terminal_bar_keeps_steps_elapsed_and_eta_at_any_width(width: int) -> None:
    """Steps/total, elapsed time and ETA always show; the fields lose their last ones first
    and never overflow the line (issue 23: at 80 columns they hid the ETA)."""
    import re

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=None)
    fields = {"score": 23.0, "updates/s": 16.9, "env fps": 87.4, "updates": 723}
    with ProgressReporter("train gym_CartPole-v1", 10000, console=console) as bar:
        bar.update(1234, **fields)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", buffer.getvalue())
    line = [row for row in text.splitlines() if row.strip()][-1]
    assert len(line) <= width
    assert "1234/10000" in line and re.search(r"\d:\d\d:\d\d eta ", line)
    shown = [name for name in fields if f"{name} " in line]
    assert shown == list(fields)[:len(shown)]  # a prefix: the last fields go first
    assert (len(shown) == len(fields)) == (width >= 130)
    if width >= 80:
        assert "score 23.0" in line
