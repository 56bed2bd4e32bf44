"""Run directories, `latest`, JSONL files that survive torn lines, the train-ratio clock."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dreamerctl.errors import RunError
from dreamerctl.run import rundir
from dreamerctl.run.checkpoint import save_checkpoint
from dreamerctl.run.stats import EpisodeTracker, TrainRatioClock


def fake_run(logdir: Path, task: str, step: int, mtime: float) -> Path:
    run_dir = rundir.new_run_dir(logdir, task)
    path = run_dir / rundir.CHECKPOINT
    save_checkpoint(path, {"task": task, "step": step, "frames": step * 4, "obs_space": {},
                           "act_space": {"discrete": True, "size": 2}, "config": {},
                           "agent": {}})
    os.utime(path, (mtime, mtime))
    return path


def test_new_run_dirs_never_collide(tmp_path: Path) -> None:
    first = rundir.new_run_dir(tmp_path, "atari_pong")
    second = rundir.new_run_dir(tmp_path, "atari_pong")
    assert first != second
    assert first.parent == tmp_path / "dreamer_atari_pong"
    assert rundir.task_of_run_dir(first) == "atari_pong"


def test_latest_by_checkpoint_time_and_task(tmp_path: Path) -> None:
    old = fake_run(tmp_path, "atari_pong", 5, 1000)
    new = fake_run(tmp_path, "gym_CartPole-v1", 7, 3000)
    mid = fake_run(tmp_path, "atari_pong", 6, 2000)
    assert rundir.latest_checkpoint(tmp_path).path == new
    found = rundir.latest_checkpoint(tmp_path, task="atari_pong")
    assert found.path == mid and found.step == 6 and found.frames == 24
    assert found.to_dict()["run_dir"] == str(mid.parent)
    assert old != mid


def test_latest_with_nothing(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=f"no checkpoint found under {tmp_path}"):
        rundir.latest_checkpoint(tmp_path)
    with pytest.raises(RunError, match="for task atari_pong"):
        rundir.latest_checkpoint(tmp_path / "missing", task="atari_pong")


def test_resolve_checkpoint(tmp_path: Path) -> None:
    path = fake_run(tmp_path, "atari_pong", 5, 1000)
    assert rundir.resolve_checkpoint(str(path.parent), tmp_path) == path
    assert rundir.resolve_checkpoint("latest", tmp_path) == path
    with pytest.raises(RunError, match="checkpoint not found"):
        rundir.resolve_checkpoint(str(tmp_path / "x.pt"), tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError) as error:
        rundir.resolve_checkpoint(str(empty), tmp_path)
    assert str(error.value) == f"no checkpoint.pt in run directory {empty}"
    # A logdir or a task folder where a run directory was meant: say which runs it holds.
    with pytest.raises(RunError) as error:
        rundir.resolve_checkpoint(str(tmp_path), tmp_path)
    assert str(error.value) == (
        f"no checkpoint.pt in run directory {tmp_path}; it holds 1 run: {path.parent}")
    newer = fake_run(tmp_path, "atari_pong", 9, 2000)
    with pytest.raises(RunError) as error:
        rundir.resolve_checkpoint(str(path.parent.parent), tmp_path)
    assert str(error.value) == (f"no checkpoint.pt in run directory {path.parent.parent}; "
                                f"it holds 2 runs, the newest: {newer.parent}")


def test_jsonl_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rundir.append_jsonl(path, {"step": 1})
    with path.open("a") as f:
        f.write('{"step": 2, "trai')  # a kill in the middle of a write
    rundir.append_jsonl(path, {"step": 3})
    assert rundir.read_jsonl(path) == [{"step": 1}, {"step": 3}]


def test_train_ratio_clock_carries_the_fraction() -> None:
    clock = TrainRatioClock(512 / (16 * 64))  # 0.5 updates per agent step
    assert [clock.due(1) for _ in range(6)] == [0, 1, 0, 1, 0, 1]
    clock = TrainRatioClock(32 / (2 * 8), remainder=0.0)
    assert sum(clock.due(3) for _ in range(100)) == 600
    clock = TrainRatioClock(0.3)
    total = sum(clock.due(1) for _ in range(1000))
    assert total == 300 or total == 299  # floating point may leave the last one in remainder
    assert 0 <= clock.remainder < 1


def test_episode_tracker() -> None:
    tracker = EpisodeTracker(2)
    steps = [
        ([True, True], [0, 0], [False, False]),
        ([False, False], [1, 2], [False, True]),
        ([False, True], [3, 0], [True, False]),
    ]
    done = []
    for first, reward, last in steps:
        done += tracker.update({"is_first": np.array(first), "reward": np.array(reward, float),
                                "is_last": np.array(last)})
    assert [(e.env, e.score, e.length) for e in done] == [(1, 2.0, 1), (0, 4.0, 2)]


def test_a_snapshot_belongs_to_the_run_above_its_folder(tmp_path: Path) -> None:
    """diagnose and report read a checkpoint's run: the folder of checkpoint.pt and
    checkpoint_best.pt, the one above for checkpoints/checkpoint_<step>.pt."""
    from dreamerctl.run.report import resolve_run_dirs

    run = tmp_path / "dreamer_gym_CartPole-v1" / "20261203-000000"
    snapshot = rundir.snapshot_path(run, 500)
    snapshot.parent.mkdir(parents=True)
    for path in (run / rundir.CHECKPOINT, run / rundir.BEST, snapshot):
        path.write_bytes(b"")
        assert rundir.run_dir_of(path) == run
    (run / rundir.METRICS).write_text("")
    assert resolve_run_dirs([str(snapshot), str(run)], tmp_path) == [run]
