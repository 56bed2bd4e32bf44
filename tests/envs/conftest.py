"""Shared by the env tests: configs from the debug preset and a check of the step contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dreamerctl.config import EnvConfig, build_config
from dreamerctl.spaces import STEP_KEYS, Space

CheckStep = Callable[..., None]


@pytest.fixture
def env_cfg() -> Callable[..., EnvConfig]:
    """env_cfg(task, "env.x=1", ...) -> the env section of debug + overrides."""

    def make(task: str, *overrides: str) -> EnvConfig:
        return build_config(task, ["debug"], list(overrides)).env

    return make


def check_step_contract(obs: dict[str, Any], space: dict[str, Space], first: bool) -> None:
    """Keys, dtypes and shapes of one step dict (envs/base.py); reset steps have reward 0."""
    assert set(obs) == set(space) | set(STEP_KEYS)
    for key, spec in space.items():
        assert isinstance(obs[key], np.ndarray), key
        assert obs[key].dtype == np.dtype(spec.dtype), key
        assert obs[key].shape == spec.shape, key
    assert isinstance(obs["reward"], np.float32)
    for key in ("is_first", "is_last", "is_terminal"):
        assert type(obs[key]) is bool, key
    assert obs["is_first"] is first
    if first:
        assert obs["reward"] == 0 and not obs["is_last"] and not obs["is_terminal"]
    if obs["is_terminal"]:
        assert obs["is_last"]


@pytest.fixture
def check_step() -> CheckStep:
    return check_step_contract


@pytest.fixture
def custom_envs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make tests/envs/custom_gym_envs.py importable here and in spawned env workers."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
