"""Gymnasium envs that misbehave on purpose, registered when this module is imported.

Tasks name them `gym_fault_envs:<Id>`, so the CLI (and every spawned env worker) imports this
module first; the tests put this folder on PYTHONPATH.

- `FaultNan-v0`: rewards become NaN after 60 steps of the env's life (a numerical fault that
  makes the world model's reward loss NaN).
- `FaultFlaky-v0`: raises at every 15th step of the env's life (a fresh env starts counting again).
- `FaultBroken-v0`: raises at every step.
- `FaultDies-v0`: the worker process exits at the 15th step of the env's life (no exception at all).

Episodes of all four end after 10 steps, so ordinary episode ends happen between the faults.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

EPISODE = 10


class Faulty(gymnasium.Env):
    """A 4-dim observation, 2 discrete actions, reward 1 per step, and one kind of fault."""

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, fault: str, at: int, render_mode: str | None = None) -> None:
        self.fault, self.at = fault, at
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0      # steps in this episode
        self.life = 0   # steps since this env was made: faults count these

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        self.life += 1
        reward = 1.0
        if self.fault == "raise" and self.life % self.at == 0:
            raise RuntimeError(f"injected fault at step {self.life}")
        if self.fault == "exit" and self.life == self.at:
            os._exit(3)  # the worker dies as if killed: no reply ever comes
        if self.fault == "nan" and self.life > self.at:
            reward = float("nan")
        return self.observation(), reward, self.t >= EPISODE, False, {}

    def observation(self) -> np.ndarray:
        return self.np_random.uniform(-1, 1, 4).astype(np.float32)

    def render(self) -> np.ndarray:
        return np.zeros((16, 16, 3), np.uint8)


gymnasium.register("FaultNan-v0", entry_point=Faulty, kwargs={"fault": "nan", "at": 60})
gymnasium.register("FaultFlaky-v0", entry_point=Faulty, kwargs={"fault": "raise", "at": 15})
gymnasium.register("FaultBroken-v0", entry_point=Faulty, kwargs={"fault": "raise", "at": 1})
gymnasium.register("FaultDies-v0", entry_point=Faulty, kwargs={"fault": "exit", "at": 15})
