"""Env faults in a real run with two env worker processes: a crashing env is restarted, its
episode ends there and the run goes on, with a warning naming the task and the error; an env
that keeps crashing stops the run with one clear error (exit 1)."""

from __future__ import annotations

from pathlib import Path

from dreamerctl.run import rundir
from tests.reliability.reliability_tools import (
    assert_single_error,
    dreamerctl_all,
    load_safely,
    only_run_dir,
    train_args,
)

WORKERS = ("env.num_envs=2", "env.parallel=true")
STEPS = 60  # agent steps over both envs: 30 each, so each env faults at its 15th step


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def test_env_faults(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    tasks = {"flaky": "gym_fault_envs:FaultFlaky-v0", "dies": "gym_fault_envs:FaultDies-v0",
             "broken": "gym_fault_envs:FaultBroken-v0"}
    flaky, dies, broken = dreamerctl_all(
        [train_args(task, *WORKERS, steps=STEPS) for task in tasks.values()], logdir)

    # An exception in the env, and a worker process that exits: both restart and go on.
    for result, task, error in [
        (flaky, tasks["flaky"], "RuntimeError: injected fault at step 15"),
        (dies, tasks["dies"], "worker process died (exit code 3)"),
    ]:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        for index in (0, 1):
            expected = f"warning: env {index} of {task} crashed ({error}); restarting it"
            assert expected in warnings_of(result.stderr), result.stderr
        run_dir = only_run_dir(logdir, task)
        assert load_safely(run_dir / rundir.CHECKPOINT)["step"] == STEPS
        # Episodes last 10 steps; steps 11-15 of an env's life end in the crash: the episode
        # ends there (is_last), 4 rewarded steps and the crashed one, which gets reward 0.
        scores = rundir.read_jsonl(run_dir / rundir.SCORES)
        assert [s["episode/length"] for s in scores].count(5) == 2, scores
        assert {s["episode/score"] for s in scores if s["episode/length"] == 5} == {4.0}

    line = assert_single_error(broken.returncode, 1, broken.stderr,
                               f"of {tasks['broken']} failed: RuntimeError: injected fault at "
                               "step 1 (3 crashes in a row)")
    assert line.startswith("error: env ")
