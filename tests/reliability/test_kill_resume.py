"""`kill -9` at random moments of a real `dreamerctl train`: the checkpoint is always readable, a
resume loses at most run.save_every seconds, metrics are never duplicated, torn JSONL lines and
damaged replay chunks are survived."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from dreamerctl.run import rundir
from tests.helpers import dead_pid
from tests.reliability.reliability_tools import (
    CARTPOLE,
    Background,
    assert_single_error,
    dreamerctl,
    load_safely,
    metric_steps,
    only_run_dir,
    run_dirs,
    train_args,
)

SAVE_EVERY = 0.5
SETTINGS = (f"run.save_every={SAVE_EVERY}",)
# A kill can land just before a save was due, after one step, its updates and the save itself.
SLACK_S = 3.0
BIG = 100_000


def start(logdir: Path, resume: bool) -> Background:
    return Background(*train_args(CARTPOLE, *SETTINGS, steps=BIG,
                                  resume="latest" if resume else None), logdir=logdir)


def checkpoint_of(logdir: Path) -> Path:
    return only_run_dir(logdir) / rundir.CHECKPOINT


def saved_since(logdir: Path, moment: float) -> bool:
    """Whether the run's checkpoint was written after `moment` (wall time)."""
    paths = [d / rundir.CHECKPOINT for d in run_dirs(logdir)]
    return any(p.is_file() and p.stat().st_mtime > moment for p in paths)


def wait_for_own_checkpoint(run: Background, logdir: Path) -> None:
    run.wait_until(lambda: saved_since(logdir, run.started), 120, "a checkpoint of this run")


def wait_for_a_save(run: Background, run_dir: Path, timeout: float = 60) -> None:
    """Return as soon as a checkpoint is being written: a temporary checkpoint file exists, or
    checkpoint.pt itself changes (a writer without a temporary file). Polls about every 0.5 ms."""
    path = run_dir / rundir.CHECKPOINT
    before = path.stat().st_mtime_ns
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.proc.poll() is None:
        with os.scandir(run_dir) as entries:
            if any(entry.name.startswith(f".{rundir.CHECKPOINT}") for entry in entries):
                return
        if path.stat().st_mtime_ns != before:
            return
        time.sleep(0.0005)
    raise AssertionError(f"no checkpoint save seen:\n{run.stderr}")


def tear(path: Path, record: dict) -> None:
    """Append half a JSON line without its newline, as a kill in the middle of a write does."""
    line = json.dumps(record)
    with path.open("a") as f:
        f.write(line[: len(line) // 2])


def test_kill_before_the_first_checkpoint_then_resume_fails_cleanly(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    run = start(logdir, resume=False)
    run.wait_until(lambda: bool(run_dirs(logdir)), 120, "the run directory")
    run.kill()
    assert not checkpoint_of(logdir).exists()
    result = dreamerctl(*train_args(CARTPOLE, steps=10, resume="latest"), logdir=logdir)
    assert_single_error(result.returncode, 1, result.stderr, f"no checkpoint found under {logdir}")


def test_kill_at_random_moments_then_resume(tmp_path: Path) -> None:
    rng = random.Random(7)
    logdir = tmp_path / "logdir"
    data: dict = {}
    for index in range(6):
        run = start(logdir, resume=index > 0)
        late = index % 3 == 0
        if late:
            # After this process saved at least once, so the bound on lost work applies.
            wait_for_own_checkpoint(run, logdir)
            time.sleep(rng.uniform(0.0, 1.5))
        elif index % 3 == 1:
            # Anywhere in start-up, resume (replay load, JSONL rewrite) or the first steps.
            time.sleep(rng.uniform(0.5, 4.0))
        else:
            # In the middle of writing a checkpoint.
            wait_for_own_checkpoint(run, logdir)
            wait_for_a_save(run, only_run_dir(logdir))
        killed_at = run.kill()
        data = load_safely(checkpoint_of(logdir))  # never torn, whatever the moment
        if late:
            lost = killed_at - data["saved_at"]
            assert lost <= SAVE_EVERY + SLACK_S, (index, lost)
        if index == 2:
            # What a kill in the middle of a JSONL write leaves; the resume must drop both.
            run_dir = only_run_dir(logdir)
            late_counts = {"step": data["step"] + 1, "frames": data["frames"] + 1}
            tear(run_dir / rundir.METRICS, {**late_counts, "train/loss/x": 1.0})
            tear(run_dir / rundir.SCORES, {**late_counts, "episode/score": 1.0})
            assert len(rundir.read_jsonl(run_dir / rundir.METRICS)) > 0  # readers skip it

    run_dir = only_run_dir(logdir)
    # A chunk that was damaged after it was written (a torn copy): skipped with a warning.
    chunks = sorted((run_dir / "replay").glob("*.npz"))
    damaged = chunks[len(chunks) // 2]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    stale = run_dir / f".checkpoint.pt.tmp-{dead_pid()}"
    stale.write_bytes(b"half a checkpoint")

    final = data["step"] + 5
    result = dreamerctl(*train_args(CARTPOLE, steps=final, resume="latest"), logdir=logdir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any(f"skipping unreadable replay chunk {damaged}" in line for line in warnings), (
        result.stderr)
    assert not stale.exists()
    assert load_safely(run_dir / rundir.CHECKPOINT)["step"] == final

    for name in (rundir.METRICS, rundir.SCORES):
        lines = (run_dir / name).read_text().splitlines()
        assert all(json.loads(line) for line in lines), name  # no torn line stayed
        steps = metric_steps(run_dir, name)
        assert steps == sorted(set(steps)), (name, steps)  # strictly increasing, no duplicates
    assert metric_steps(run_dir)[-1] == final
