"""Checkpoints from elsewhere through every command that reads one: pickled code is refused and
never runs; another format version, task or spaces, or a truncated file, each give one clear
error naming the difference or the file. (Garbage, empty and missing files: test_bad_input.py.)
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from dreamerctl.run import rundir
from tests.reliability.reliability_tools import (
    CARTPOLE,
    assert_single_error,
    cli_env,
    dreamerctl,
    dreamerctl_all,
    load_safely,
    only_run_dir,
    train_args,
)

CPU = ("--device", "cpu")


class Payload:
    """Unpickling this calls open(marker, "w"): the marker file appears if the pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of a short CartPole run."""
    logdir = tmp_path_factory.mktemp("trained") / "logdir"
    result = dreamerctl(*train_args(CARTPOLE, steps=20), logdir=logdir)
    assert result.returncode == 0, result.stderr
    return only_run_dir(logdir) / rundir.CHECKPOINT


def plant(logdir: Path, data: Any) -> Path:
    """Save `data` as the checkpoint of a CartPole run dir under `logdir`: `latest` finds it."""
    path = logdir / f"{rundir.PREFIX}{CARTPOLE}" / "29990101-000000" / rundir.CHECKPOINT
    path.parent.mkdir(parents=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        torch.save(data, path)
    return path


def reading_commands(path: Path, output: Path) -> list[list[str]]:
    """Every command that reads a checkpoint: the path itself, and `latest` (find-latest's)."""
    return [
        ["eval", "--checkpoint", str(path), "--episodes", "1", *CPU],
        ["record", "--checkpoint", str(path), "--output", str(output), *CPU],
        ["compare", str(path.parent), "--episodes", "1", *CPU],
        train_args(CARTPOLE, steps=40, resume=str(path)),
        ["find-latest"],
        ["eval", "--checkpoint", "latest", "--episodes", "1", *CPU],
    ]


def check_all_fail(commands: list[list[str]], logdir: Path, fragment: str) -> None:
    for command, result in zip(commands, dreamerctl_all(commands, logdir), strict=True):
        line = assert_single_error(result.returncode, 1, result.stderr, fragment)
        assert result.stdout == "", (command, result.stdout)
        assert line, command


def test_pickled_code_is_refused_everywhere_and_never_runs(trained: Path, tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"
    logdir = tmp_path / "logdir"
    data = load_safely(trained)
    data["agent"]["extra"] = Payload(marker)  # a real checkpoint, one object added
    path = plant(logdir, data)
    check_all_fail(reading_commands(path, tmp_path / "videos"), logdir,
                   f"refusing to load {path}: it holds pickled code")
    assert not marker.exists()
    assert not (tmp_path / "videos").exists()
    # The control: the payload is live, an unsafe load runs it.
    subprocess.run([sys.executable, "-c", "import sys, torch; "
                    "torch.load(sys.argv[1], weights_only=False)", str(path)],
                   env=cli_env(logdir), capture_output=True, timeout=120)
    assert marker.exists()


def test_truncated_checkpoint_in_record_compare_find_latest(trained: Path, tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    path = plant(logdir, trained.read_bytes()[: trained.stat().st_size // 2])
    # eval and train --resume: test_bad_input.py
    commands = [c for c in reading_commands(path, tmp_path / "videos")
                if c[0] in ("record", "compare", "find-latest")]
    check_all_fail(commands, logdir, f"checkpoint {path} is corrupt or truncated")


def test_other_version_task_and_spaces(trained: Path, tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    path = plant(logdir, {**load_safely(trained), "version": 99})
    commands = [
        ["eval", "--checkpoint", str(path), *CPU],
        train_args(CARTPOLE, steps=40, resume="latest"),
        train_args("gym_Acrobot-v1", steps=40, resume=str(trained)),
        ["eval", "--checkpoint", str(trained), "--task", "gym_Acrobot-v1", *CPU],
    ]
    version, resumed, task, spaces = dreamerctl_all(commands, logdir)
    assert_single_error(version.returncode, 1, version.stderr,
                        f"checkpoint {path} has format version 99, this dreamerctl reads "
                        "version 1")
    assert_single_error(resumed.returncode, 1, resumed.stderr, "format version 99")
    assert_single_error(task.returncode, 2, task.stderr,
                        f"checkpoint {trained} is for task {CARTPOLE}, not gym_Acrobot-v1")
    assert_single_error(spaces.returncode, 2, spaces.stderr,
                        "vector (6,) float32 vs (4,) float32; actions 3 discrete vs 2 discrete")


def test_a_plain_pickle_is_named_as_another_programs_file(tmp_path: Path) -> None:
    """A JAX DreamerV3 checkpoint.pkl is a bare pickle: one line says so, with no torch
    warning before it (issue 23)."""
    path = tmp_path / "checkpoint.pkl"
    path.write_bytes(pickle.dumps({"agent": {"w": [0.0, 1.0]}, "step": 5}, protocol=4))
    result = dreamerctl("eval", "--checkpoint", str(path), *CPU, logdir=tmp_path)
    assert_single_error(result.returncode, 1, result.stderr,
                        f"{path} is a plain pickle, not a dreamerctl checkpoint")
    assert "warning" not in result.stderr.lower()
