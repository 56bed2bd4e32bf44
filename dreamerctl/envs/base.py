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
from dataclasses import dataclass
from typing import Any

import numpy as np

Obs = dict[str, Any]

STEP_KEYS = ("reward", "is_first", "is_last", "is_terminal")


@dataclass(frozen=True)
class Space:
    """One observation key: its shape and dtype ("uint8" or "float32")."""

    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Space:
        return cls(tuple(int(s) for s in data["shape"]), str(data["dtype"]))


@dataclass(frozen=True)
class ActSpace:
    """Discrete: `size` one-hot actions. Continuous: `size` dims in [-1, 1]."""

    discrete: bool
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"discrete": self.discrete, "size": self.size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActSpace:
        return cls(bool(data["discrete"]), int(data["size"]))

    def sample(self, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """Uniform random actions: (size,) or (n, size) float32."""
        shape = (1 if n is None else n,)
        if self.discrete:
            out = np.eye(self.size, dtype=np.float32)[rng.integers(0, self.size, size=shape)]
        else:
            out = rng.uniform(-1.0, 1.0, size=(*shape, self.size)).astype(np.float32)
        return out[0] if n is None else out


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
