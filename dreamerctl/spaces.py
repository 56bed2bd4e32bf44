"""The types every layer shares, on the ground floor: envs, replay, the agent and the runner import
them from here, and this module imports nothing of dreamerctl (SPEC §2).

- `Space` and `ActSpace`: an observation key's shape and dtype, and the action space.
- The step record: every env step is the observation keys plus `reward` (float32) and the flags
  `is_first`, `is_last`, `is_terminal` (bool); what is stored and replayed adds the `action` chosen
  from that observation. `record_spaces` gives the (shape, dtype) of every key of it, which the
  replay, its memory estimate and `diagnose` all use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FLAGS = ("is_first", "is_last", "is_terminal")
STEP_KEYS = ("reward", *FLAGS)  # what every env step carries besides its observation keys
TRAIN_KEYS = ("action", *STEP_KEYS)  # ... and what a replayed step adds for training
# How a trained agent acts (`--mode`, `Agent.act`): sample its policy, as DreamerV3 evaluates, or
# take the policy's mode.
ACT_MODES = ("sample", "greedy")
# With which of a checkpoint's parameters it acts (`--parameters`): the moving average its policy
# acts with (train.policy_ema; the last trained ones where none was kept), or the last trained.
ACT_PARAMETERS = ("average", "live")

# (shape, dtype) of one key of a step record, as the replay stores it.
KeySpaces = dict[str, tuple[tuple[int, ...], str]]


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


def record_spaces(obs_space: dict[str, Space], act_space: ActSpace) -> KeySpaces:
    """(shape, dtype) of every key of a stored step: the observation keys, the action, the reward
    and the flags."""
    spaces = {key: (tuple(space.shape), space.dtype) for key, space in obs_space.items()}
    spaces["action"] = ((act_space.size,), "float32")
    spaces["reward"] = ((), "float32")
    spaces.update({flag: ((), "bool") for flag in FLAGS})
    return spaces
