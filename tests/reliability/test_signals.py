"""SIGINT and SIGTERM at random moments of a real `dreamerctl train`: every one ends with exit 130,
one `error: interrupted ...` line and a checkpoint that loads with weights_only=True and resumes.
`record` stopped either way removes the video it was writing.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.reliability_tools import (
    CARTPOLE,
    Background,
    assert_single_error,
    dreamerctl,
    load_safely,
    loss_logged_after,
    metric_steps,
    only_run_dir,
    train_args,
)

# Saves every 0.3 s, so some signals land while one is being written.
SETTINGS = ("run.save_every=0.3",)
BIG = 100_000  # --steps: the run only ends by the signal


def interrupt(logdir: Path, rng: random.Random, signals: list[int], resume: bool,
              group: bool = False, settings: tuple[str, ...] = SETTINGS) -> dict:
    """Start (or resume) a run, wait until updates run past the last checkpoint, sleep a random
    moment, send `signals[0]`. Further signals follow 0-0.2 s apart once the first
    is acknowledged: while the step ends, the checkpoint is saved or the process exits.
    Returns the loaded checkpoint."""
    before = 0
    if resume:
        before = load_safely(only_run_dir(logdir) / "checkpoint.pt")["frames"]
    args = train_args(CARTPOLE, *settings, steps=BIG, resume="latest" if resume else None)
    run = Background(*args, logdir=logdir, new_session=group)
    run.wait_until(lambda: bool(list(logdir.glob("dreamer_*/*/metrics.jsonl")))
                   and loss_logged_after(only_run_dir(logdir), before), 120, "training")
    delay = rng.uniform(0.0, 1.0)
    time.sleep(delay)
    send = (lambda sig: os.killpg(run.proc.pid, sig)) if group else run.proc.send_signal
    send(signals[0])
    name = signal.Signals(signals[0]).name
    if len(signals) > 1:
        run.wait_until(lambda: run.has_line(f"{name} received: saving"), 60, "the acknowledgement")
        for sig in signals[1:]:
            time.sleep(rng.uniform(0.0, 0.2))
            if run.proc.poll() is None:
                send(sig)
    code = run.finish()
    context = f"signals {signals} after {delay:.2f}s"
    checkpoint = only_run_dir(logdir) / "checkpoint.pt"
    line = assert_single_error(code, 130, run.stderr, f"error: interrupted by {name}")
    assert f"checkpoint saved to {checkpoint}" in line, (context, line)
    data = load_safely(checkpoint)
    assert data["frames"] > before, (context, data["frames"], before)
    assert not list(checkpoint.parent.glob(".checkpoint.pt.tmp-*")), context
    return data


def test_signals_at_random_moments_save_and_resume(tmp_path: Path) -> None:
    rng = random.Random(1234)
    logdir = tmp_path / "logdir"
    cases = [
        [signal.SIGINT],
        [signal.SIGTERM],
        [signal.SIGINT, signal.SIGINT],   # a second Ctrl-C while saving or exiting
        [signal.SIGTERM, signal.SIGINT, signal.SIGTERM],
    ]
    data: dict = {}
    for index, signals in enumerate(cases):
        data = interrupt(logdir, rng, signals, resume=index > 0)
    # The last interrupted checkpoint resumes to a clean finish a few steps later.
    result = dreamerctl(*train_args(CARTPOLE, steps=data["step"] + 5, resume="latest"),
                        logdir=logdir)
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(logdir)
    assert load_safely(run_dir / "checkpoint.pt")["step"] == data["step"] + 5
    steps = metric_steps(run_dir)
    assert steps == sorted(set(steps)), steps  # strictly increasing: nothing logged twice


def test_ctrl_c_to_the_process_group_with_env_workers(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the env workers too: they ignore it, the trainer saves."""
    data = interrupt(tmp_path / "logdir", random.Random(5), [signal.SIGINT], resume=False,
                     group=True, settings=(*SETTINGS, "env.num_envs=2", "env.parallel=true"))
    assert data["config"]["env"]["num_envs"] == 2


@pytest.mark.parametrize(("sig", "message"), [(signal.SIGINT, "error: interrupted"),
                                              (signal.SIGTERM, "error: interrupted by SIGTERM")])
def test_record_stopped_mid_video_leaves_no_temporary_file(tmp_path: Path, sig: int,
                                                           message: str) -> None:
    output = tmp_path / "videos"
    run = Background("record", "--checkpoint", "none", "--random-agent", "--task", "atari_pong",
                     "--episodes", "50", "--output", str(output), logdir=tmp_path)
    # A random Pong episode is ~900 frames: the signal lands while one is being written.
    run.wait_until(lambda: bool(list(output.glob(".*.tmp-*.mp4"))), 120, "a video being written")
    run.proc.send_signal(sig)
    code = run.finish()
    line = assert_single_error(code, 130, run.stderr, message)
    assert line == message
    assert not [p.name for p in output.iterdir() if ".tmp-" in p.name]
