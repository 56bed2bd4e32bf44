"""The environment contract every suite adapter keeps (SPEC §2).

An env yields one dict per step: observation keys (`image` uint8 (H, W, 3) and/or `vector`
float32 (N,)), plus `reward` (float32), `is_first`, `is_last`, `is_terminal` (bool). `reset()`
returns the first step of an episode: reward 0, is_first true. A time limit ends an episode with
is_last true and is_terminal false; a terminal state has both true.

Actions: discrete ones are one-hot float32 vectors of length `act_space.size`; continuous ones are
float32 vectors in [-1, 1] (each adapter rescales to the env's bounds).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from dreamerctl.spaces import ActSpace, Space

Obs = dict[str, Any]


class Env(ABC):
    """A single environment. Adapters set `obs_space` and `act_space` in `__init__`."""

    task: str
    obs_space: dict[str, Space]
    act_space: ActSpace

    @abstractmethod
    def reset(self, seed: int | None = None) -> Obs:
        """Start an episode; the seed (if given) makes it reproducible."""

    @abstractmethod
    def step(self, action: np.ndarray) -> Obs:
        """Advance one agent step (action repeat included)."""

    @abstractmethod
    def render(self) -> np.ndarray:
        """The current frame at full resolution, uint8 (H, W, 3), for recording."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release simulator and renderer resources."""
