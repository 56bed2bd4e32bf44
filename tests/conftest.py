"""Shared fixtures: every test gets a private logdir; under pytest-xdist each worker's torch
uses its share of the cores; Ctrl-C reaches the CLI processes the tests start."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """With N xdist workers on C usable cores, torch in each worker uses C // N threads (at
    least 1): the workers' own OpenMP threads would otherwise wait for each other (issue 24).

    A shell starts a background job (`pytest ... &`, `nohup`) with SIGINT ignored, and a
    child keeps an ignored signal: the Ctrl-C tests of `record` would then test
    nothing but the shell. Catching SIGINT here gives every child the default disposition."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        torch.set_num_threads(max(1, cores // workers))


@pytest.fixture(autouse=True)
def _isolated_logdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's ~/logdir."""
    monkeypatch.setenv("DREAMERCTL_LOGDIR", str(tmp_path / "logdir"))


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> object:
    """A training run in this process sets torch's threads (run.threads = auto: one for the
    debug models); later tests keep the threads they started with."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
