"""Shared fixtures: every test gets a private logdir."""

from __future__ import annotations

from pathlib import Path

import pytest


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
