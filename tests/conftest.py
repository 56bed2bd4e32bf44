"""Shared fixtures: every test gets a private logdir."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_logdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's ~/logdir."""
    monkeypatch.setenv("DREAMERCTL_LOGDIR", str(tmp_path / "logdir"))
