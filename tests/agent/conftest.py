"""Shared by the agent tests: debug-size configs, agents and synthetic replay batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from dreamerctl.agent.agent import Agent
from dreamerctl.config import Config, build_config
from dreamerctl.spaces import ActSpace, Space

IMAGE = (16, 16, 3)  # the smallest size the config allows: 2 conv stages down to 4x4
VECTOR = 5
ACTIONS = 3
OBS_KINDS = {
    "image": {"image": Space(IMAGE, "uint8")},
    "vector": {"vector": Space((VECTOR,), "float32")},
    "both": {"image": Space(IMAGE, "uint8"), "vector": Space((VECTOR,), "float32")},
}

MakeAgent = Callable[..., Agent]
MakeBatch = Callable[..., dict[str, np.ndarray]]


def debug_config(*overrides: str) -> Config:
    """The debug preset (as for gym_CartPole-v1) with `--set` style overrides."""
    return build_config("gym_CartPole-v1", ["debug"], list(overrides))


def new_agent(obs: str = "vector", discrete: bool = True, precision: str = "fp32",
              overrides: tuple[str, ...] = (), seed: int = 0, compile: str = "off") -> Agent:
    """A debug-size Agent for `obs` ("image", "vector" or "both") with `--set` style overrides,
    its parameters drawn from `seed`."""
    torch.manual_seed(seed)
    config = debug_config(f'run.precision="{precision}"', f'run.compile="{compile}"', *overrides)
    return Agent.from_config(OBS_KINDS[obs], ActSpace(discrete, ACTIONS), config)


@pytest.fixture
def make_agent() -> MakeAgent:
    """new_agent, as a fixture."""
    return new_agent


def random_batch(agent: Agent, batch: int = 2, length: int = 8, seed: int = 0,
                 **flags: Any) -> dict[str, np.ndarray]:
    """A replay-like batch (B, T, ...) for the agent's spaces; flags override the defaults
    (episodes start at t = 0, no terminals)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    if "image" in agent.wm.keys:
        out["image"] = rng.integers(0, 256, (batch, length, *IMAGE), dtype=np.uint8)
    if "vector" in agent.wm.keys:
        out["vector"] = rng.normal(size=(batch, length, VECTOR)).astype(np.float32)
    actions = agent.act_space.sample(rng, batch * length)
    out["action"] = actions.reshape(batch, length, -1)
    out["reward"] = rng.normal(size=(batch, length)).astype(np.float32)
    out["is_first"] = np.zeros((batch, length), bool)
    out["is_first"][:, 0] = True
    out["is_last"] = np.zeros((batch, length), bool)
    out["is_terminal"] = np.zeros((batch, length), bool)
    out.update(flags)
    return out


@pytest.fixture
def make_batch() -> MakeBatch:
    return random_batch
