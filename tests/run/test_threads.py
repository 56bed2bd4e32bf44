"""run.threads: the thread policy, the cores a process may use, and what training applies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dreamerctl.config import build_config
from dreamerctl.errors import UsageError
from dreamerctl.run.threads import SMALL_MODEL, cgroup_quota, choose_threads, usable_cores


@pytest.fixture(autouse=True)
def no_omp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_auto_gives_small_models_one_thread_and_large_ones_the_cores() -> None:
    assert choose_threads("auto", 660_000, cores=8)[0] == 1
    # A small model with image convolutions (vision_cpu, 2M) has long ops: every core; a tiny
    # one (the debug preset's) does not.
    threads, why = choose_threads("auto", 2_060_000, cores=8, convolutional=True)
    assert threads == 8 and "convolutional" in why
    assert choose_threads("auto", 100_000, cores=8, convolutional=True)[0] == 1
    threads, why = choose_threads("auto", SMALL_MODEL, cores=8)
    assert threads == 8 and "8 usable cores" in why
    # torchrun's local ranks share the cores; never fewer than one each.
    assert choose_threads("auto", 18_000_000, processes=3, cores=8)[0] == 2
    assert choose_threads("auto", 18_000_000, processes=4, cores=2)[0] == 1


def test_a_number_or_omp_num_threads_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_threads(3, 100, cores=8) == (3, "run.threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads("auto", 18_000_000, cores=8) == (2, "auto: OMP_NUM_THREADS")
    assert choose_threads(5, 100, cores=8)[0] == 5


def test_cgroup_quota_v2_and_v1(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None  # nothing to read
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cgroup_quota(v1) == 3.0


def test_usable_cores_is_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one thread
    assert usable_cores(tmp_path) == 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_values_are_one_error_naming_the_field(value: str) -> None:
    with pytest.raises(UsageError) as info:
        build_config("gym_CartPole-v1", ["debug"], [f"run.threads={value}"])
    assert str(info.value).count("\n") == 0
    assert "'run.threads'" in str(info.value) and '"auto" or a number' in str(info.value)


def test_training_applies_and_logs_the_choice(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from dreamerctl.run.train import train_run

    before = torch.get_num_threads()
    try:
        with caplog.at_level("INFO", logger="dreamerctl"):
            train_run("gym_CartPole-v1", ["debug"], ["run.steps=5", 'run.device="cpu"'],
                           tmp_path, None)
        assert torch.get_num_threads() == 1
        assert any(r.getMessage().startswith("torch threads: 1 (auto: a 0.")
                   for r in caplog.records)
        assert any(r.getMessage().startswith("malloc: ") for r in caplog.records)
        caplog.clear()
        with caplog.at_level("INFO", logger="dreamerctl"):
            train_run("gym_CartPole-v1", ["debug"],
                           ["run.steps=5", 'run.device="cpu"', "run.threads=2"], tmp_path, None)
        assert torch.get_num_threads() == 2
        assert "torch threads: 2 (run.threads)" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_apply_threads_counts_convolutions_as_long_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from dreamerctl.run import threads as module

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(module, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    try:
        assert module.apply_threads("auto", torch.nn.Linear(4, 4), quiet=True) == 1
        assert module.apply_threads("auto", torch.nn.Conv2d(3, 4, 4), quiet=True) == 1  # tiny
        assert module.apply_threads("auto", torch.nn.Conv2d(256, 256, 4), quiet=True) == 2  # 1.05M
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
