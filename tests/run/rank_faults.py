"""A gymnasium env that kills the rank it runs in, registered when this module is imported.

`gym_rank_faults:RankDies-v0` behaves like tests/reliability/fault_envs.py's envs (a 4-dim
observation, 2 actions, reward 1, episodes of 10 steps), but in the process of torchrun rank 1
it calls os._exit at the 40th step of its life: the rank vanishes without a message, as if it
had been killed, once training is under way. The tests put this folder on PYTHONPATH.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

EPISODE = 10
DIES_AT = 40


class RankDies(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0
        self.life = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        self.life += 1
        if os.environ.get("RANK") == "1" and self.life == DIES_AT:
            os._exit(3)
        obs = self.np_random.uniform(-1, 1, 4).astype(np.float32)
        return obs, 1.0, self.t >= EPISODE, False, {}

    def render(self) -> np.ndarray:
        return np.zeros((16, 16, 3), np.uint8)


gymnasium.register("RankDies-v0", entry_point=RankDies)
