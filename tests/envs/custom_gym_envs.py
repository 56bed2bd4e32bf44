"""Small gymnasium envs for the env tests, registered when this module is imported.

`Flaky-v0` raises at the 3rd step of every episode and `Broken-v0` at every step (worker crash
tests of ParallelEnvs); `GreyImage-v0` observes a (20, 30, 1) uint8 image. Tasks name them as
`gym_custom_gym_envs:Flaky-v0`, so spawned workers import this module too (the tests put this
folder on sys.path, which workers inherit).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


class Flaky(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, crash_step: int, render_mode: str | None = None) -> None:
        self.crash_step = crash_step
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        if self.t == self.crash_step:
            raise RuntimeError(f"boom at step {self.t}")
        return np.full(2, self.t / 10, np.float32), 1.0, False, False, {}

    def render(self) -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)


class GreyImage(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (20, 30, 1), np.uint8)
        self.action_space = spaces.Box(-3.0, 3.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self.observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self.observation(), float(action.sum()), False, False, {}

    def observation(self) -> np.ndarray:
        return self.np_random.integers(0, 256, (20, 30, 1), dtype=np.uint8)

    def render(self) -> np.ndarray:
        return np.zeros((20, 30, 3), np.uint8)


class Sampled(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, observation_space: spaces.Space, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = observation_space
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        return self.observation_space.sample(), 0.0, False, False, {}

    def render(self) -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)


gymnasium.register("GreyImage-v0", entry_point=GreyImage)
gymnasium.register("DictVector-v0", entry_point=Sampled, kwargs={"observation_space": spaces.Dict(
    {"pos": spaces.Box(-1.0, 1.0, (2,), np.float32), "mode": spaces.Discrete(3, start=1),
     "bits": spaces.MultiBinary(2)})})
gymnasium.register("DictImage-v0", entry_point=Sampled, kwargs={"observation_space": spaces.Dict(
    {"image": spaces.Box(0, 255, (20, 30, 3), np.uint8),
     "pos": spaces.Box(-1.0, 1.0, (2,), np.float32)})})
gymnasium.register("TwoImages-v0", entry_point=Sampled, kwargs={"observation_space": spaces.Dict(
    {"a": spaces.Box(0, 255, (8, 8, 3), np.uint8), "b": spaces.Box(0, 255, (8, 8), np.uint8)})})
gymnasium.register("Rgba-v0", entry_point=Sampled, kwargs={
    "observation_space": spaces.Box(0, 255, (8, 8, 4), np.uint8)})
gymnasium.register("ImageAndText-v0", entry_point=Sampled, kwargs={
    "observation_space": spaces.Dict({"image": spaces.Box(0, 255, (8, 8, 3), np.uint8),
                                      "mission": spaces.Text(10)})})
gymnasium.register("Flaky-v0", entry_point=Flaky, kwargs={"crash_step": 3})
gymnasium.register("Broken-v0", entry_point=Flaky, kwargs={"crash_step": 1})
