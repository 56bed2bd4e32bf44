"""Wrappers that apply to any suite adapter."""

from __future__ import annotations

import numpy as np

from dreamerctl.envs.base import Env, Obs


class TimeLimit(Env):
    """End an episode after `limit` agent steps: is_last true, is_terminal unchanged (false unless
    the env terminated on that very step). Suites disable their own limit when this one is used.
    """

    def __init__(self, env: Env, limit: int) -> None:
        self.env = env
        self.limit = limit
        self.task = env.task
        self.obs_space = env.obs_space
        self.act_space = env.act_space
        self.steps = 0

    def reset(self, seed: int | None = None) -> Obs:
        self.steps = 0
        return self.env.reset(seed)

    def step(self, action: np.ndarray) -> Obs:
        obs = self.env.step(action)
        self.steps += 1
        if self.steps >= self.limit:
            obs["is_last"] = True
        return obs

    def render(self) -> np.ndarray:
        return self.env.render()

    def close(self) -> None:
        self.env.close()
