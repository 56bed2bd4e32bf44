"""Data-parallel training under torchrun (issue 9), with two CPU ranks on gloo.

Every test launches the real thing, `python -m torch.distributed.run --standalone
--nproc_per_node 2 -m dreamerctl train ...`, with one torch thread per process and a timeout, and
checks what a user relies on: one run directory written by rank 0, parameters bitwise identical
on every rank (the checkpoint holds each rank's digest of them), counters that continue on
resume, a world-size change that rebuilds the replay, Ctrl-C to the launcher, and a rank that
dies ending the job instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dreamerctl.cli.app import fail
from dreamerctl.errors import RunError, shared
from dreamerctl.run import rundir
from dreamerctl.run.distributed import World, state_digest
from tests.reliability.reliability_tools import (
    CARTPOLE,
    ROOT,
    cli_env,
    dreamerctl,
    error_lines,
    load_safely,
    only_run_dir,
    train_args,
)

HERE = Path(__file__).resolve().parent
DIES = "gym_rank_faults:RankDies-v0"  # rank 1 exits at its 40th env step (rank_faults.py)
TIMEOUT = 120.0


def torchrun_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "dreamerctl", *args]


def torchrun_env(logdir: Path) -> dict[str, str]:
    """cli_env plus this folder on PYTHONPATH (rank_faults) and a short process-group timeout,
    so that a bug that leaves a rank waiting fails the test instead of stalling it."""
    env = cli_env(logdir)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env["PYTHONPATH"]])
    env["DREAMERCTL_DIST_TIMEOUT"] = "60"
    return env


def torchrun(*args: str, logdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(torchrun_command(*args), env=torchrun_env(logdir), cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


def assert_identical_on_all_ranks(data: dict[str, Any]) -> None:
    """Each rank's digest of its parameters and buffers, taken at the save, is the same, and it
    is the digest of the model the checkpoint holds."""
    digests = [part["digest"] for part in data["ranks"]]
    assert len(digests) == 2
    assert digests[0] == digests[1] == state_digest(data["agent"]["modules"])


def test_two_ranks_train_resume_and_resume_on_one(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    result = torchrun(*train_args(CARTPOLE, steps=80), logdir=logdir)
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(logdir)  # one run directory, named by rank 0 alone
    assert result.stdout.split() == [str(run_dir)], result.stdout  # printed once
    assert not error_lines(result.stderr), result.stderr
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "checkpoint.pt", "config.toml", "metrics.jsonl", "replay", "scores.jsonl"]
    data = load_safely(run_dir / "checkpoint.pt")
    assert_identical_on_all_ranks(data)
    runner = data["runner"]
    assert data["step"] == 80 and runner["world_size"] == 2
    # Steps count both ranks: each rank's replay holds a batch (2 x 8) after 16 of its steps,
    # step 32 of both; then 2 updates per iteration, as with one process (ratio 32 / (2 x 8 x 2)
    # per agent step of the job, 2 agent steps per iteration).
    assert runner["ready_step"] == 32
    assert runner["updates"] == 2 * ((80 - 32) // 2 + 1)
    assert runner["replayed"] == runner["updates"] * 2 * 8 * 2
    for rank in (0, 1):
        assert list((run_dir / "replay" / f"rank_{rank}").glob("*.npz")), rank
        # its 40 steps' observations and the last step's result
        assert data["ranks"][rank]["replay"]["added"] == 41
    metrics = rundir.read_jsonl(run_dir / "metrics.jsonl")
    assert metrics[-1]["step"] == 80 and metrics[-1]["replay/size"] == 80
    assert "train/loss/actor" in metrics[-1]
    scores = rundir.read_jsonl(run_dir / "scores.jsonl")
    assert len(scores) == runner["episodes"] > 0  # the episodes of both ranks

    # Resume with the same world size: counters, replay and the schedule continue.
    result = torchrun(*train_args(CARTPOLE, steps=120, resume="latest"), logdir=logdir)
    assert result.returncode == 0, result.stderr
    again = load_safely(run_dir / "checkpoint.pt")
    assert_identical_on_all_ranks(again)
    assert again["step"] == 120 and again["runner"]["ready_step"] == 32
    assert again["runner"]["updates"] == runner["updates"] + 40
    assert [part["replay"]["added"] for part in again["ranks"]] == [62, 62]
    metrics = rundir.read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == sorted(m["step"] for m in metrics)
    assert metrics[-1]["replay/size"] == 122  # 2 x (41 + 20) at the last log, before the last store

    # Resume on one process: the model and counters come back, the replay is rebuilt.
    result = dreamerctl(*train_args(CARTPOLE, steps=140, resume="latest"), logdir=logdir)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "replay is rebuilt" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:"), result.stderr
    single = load_safely(run_dir / "checkpoint.pt")
    assert single["runner"]["world_size"] == 1 and "ranks" not in single
    # The empty replay holds a batch again 16 steps later, at step 136: 5 iterations x 2.
    assert single["runner"]["updates"] == again["runner"]["updates"] + 10
    assert not list((run_dir / "replay").glob("rank_*"))
    # Nothing was deleted: the two ranks' chunks were moved aside, named in the warning.
    (moved,) = run_dir.glob("replay-2ranks-*")
    assert str(moved) in warnings[0]
    for rank in range(2):
        assert list((moved / f"rank_{rank}").glob("*.npz")), rank


def test_ctrl_c_to_the_launcher_saves_once(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = subprocess.Popen(torchrun_command(*train_args(CARTPOLE, steps=100_000)),
                                env=torchrun_env(logdir), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=err, text=True)
        try:
            deadline = time.monotonic() + TIMEOUT
            while not any("train/loss/actor" in record for path in
                          logdir.glob("dreamer_*/*/metrics.jsonl")
                          for record in rundir.read_jsonl(path)):
                assert proc.poll() is None, err_path.read_text()
                assert time.monotonic() < deadline, err_path.read_text()
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = err_path.read_text()
    # torchrun forwards the signal to every worker and ends with its own report (exit 1); the
    # workers save once and rank 0 alone prints the one error line.
    assert proc.returncode != 0
    checkpoint = only_run_dir(logdir) / "checkpoint.pt"
    assert error_lines(stderr) == [
        f"error: interrupted by SIGINT; checkpoint saved to {checkpoint}"], stderr
    data = load_safely(checkpoint)
    assert_identical_on_all_ranks(data)
    assert 0 < data["step"] < 100_000


def test_a_rank_that_dies_ends_the_job(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    started = time.monotonic()
    result = torchrun(*train_args(DIES, "run.save_every=0.5", steps=100_000), logdir=logdir)
    assert result.returncode != 0
    assert time.monotonic() - started < 90, "the surviving rank waited for the dead one"
    # Rank 1 vanished without a word; rank 0 names it, and torchrun's report gives its exit.
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: rank 0: rank 1 (pid "), lines[0]
    assert "stopped, so this rank stops too" in lines[0]
    run_dir = only_run_dir(logdir, DIES)
    if (run_dir / "checkpoint.pt").exists():  # saved before the death: still a good one
        assert "the last good checkpoint is kept in" in lines[0]
        assert_identical_on_all_ranks(load_safely(run_dir / "checkpoint.pt"))


# ------------------------------------------------------------------------- in-process, fast
def test_one_process_is_a_world_of_one() -> None:
    world = World()
    assert world.main and not world.distributed
    assert world.max(3, 0) == [3, 0] and world.any(True, False) == [True, False]
    assert world.all_gather("x") == ["x"] and world.broadcast(5) == 5
    assert world.from_main(lambda: 7) == 7
    assert world.replay_dir(Path("run")) == Path("run/replay")
    assert world.seed(11) == 11
    assert World(rank=1, size=2).replay_dir(Path("run")) == Path("run/replay/rank_1")
    assert World(rank=1, size=2).seed(11) != 11
    assert world.explain(RuntimeError("Connection closed by peer")) is None


@pytest.mark.parametrize(("rank", "is_shared", "expected"), [
    ("0", True, "error: interrupted\n"),
    ("1", True, ""),  # rank 0 prints what every rank raised
    ("1", False, "error: rank 1: env 0 failed\n"),
    ("0", False, "error: rank 0: env 0 failed\n"),
])
def test_errors_under_torchrun_are_printed_once(rank: str, is_shared: bool, expected: str,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", rank)
    error = RunError("interrupted" if is_shared else "env 0 failed")
    if is_shared:
        shared(error)
    assert fail(str(error), 1, shared=error.shared) == 1
    assert capsys.readouterr().err == expected
