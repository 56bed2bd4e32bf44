"""Any registered gymnasium env (`gym_<EnvId>`, e.g. gym_CartPole-v1, gym_Pendulum-v1).

An (H, W, C) or (H, W) uint8 Box observation becomes `image` resized to cfg.size; a space
without an image in it (Box, Discrete, MultiDiscrete, MultiBinary, Tuple and Dict of these:
CartPole, FrozenLake, Taxi, Blackjack) becomes `vector` through gymnasium's `flatten` (float32,
Discrete parts one-hot); a Dict with one image entry gives both, the image and the rest flattened.
Discrete actions are one-hot, Box actions lie in [-1, 1]. An id of the form `module:EnvId`
imports `module` first (gymnasium's convention for third-party envs).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dreamerctl.config.schema import EnvConfig
from dreamerctl.envs.base import Env, Obs
from dreamerctl.envs.common import discrete_index, rescale, resize, select_keys, step_dict
from dreamerctl.envs.registry import unknown
from dreamerctl.errors import UsageError
from dreamerctl.spaces import ActSpace, Space

if TYPE_CHECKING:  # gymnasium itself is imported where an env is made (a fast CLI start)
    from gymnasium.spaces import Space as GymSpace


def registry() -> dict[str, Any]:
    import gymnasium

    return gymnasium.registry


def check(env_id: str) -> None:
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UsageError(f"cannot import module '{module}' of gym_{env_id}: {e}") from None
    if name.startswith("ALE/") and name not in registry():
        import ale_py
        import gymnasium

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr
        gymnasium.register_envs(ale_py)
    if name not in registry():
        raise unknown("gymnasium id", env_id, "gym", registry())


def make(env_id: str, cfg: EnvConfig, seed: int) -> Env:
    return Gym(env_id, cfg, seed)


def headless_pygame() -> None:
    """Classic-control envs draw rgb_array frames with pygame: keep its banner off stdout (where
    results go) and SDL off the (absent) display and sound card, whose errors go to stderr."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


def needs_mujoco(env_id: str) -> bool:
    entry = registry()[env_id.rpartition(":")[2]].entry_point
    return isinstance(entry, str) and "mujoco" in entry


class Gym(Env):
    """One gymnasium env made with render_mode="rgb_array"; see the module docstring."""

    def __init__(self, env_id: str, cfg: EnvConfig, seed: int) -> None:
        import gymnasium

        headless_pygame()
        if needs_mujoco(env_id):
            from dreamerctl.envs.rendering import ensure_mujoco_gl

            ensure_mujoco_gl()
        self.task = f"gym_{env_id}"
        self.cfg = cfg
        kwargs: dict[str, Any] = {"render_mode": "rgb_array", "disable_env_checker": True}
        if cfg.time_limit > 0:  # the TimeLimit wrapper counts agent steps; keep gym's out of it
            kwargs["max_episode_steps"] = cfg.time_limit * cfg.action_repeat
        try:
            self.env = gymnasium.make(env_id, **cfg.gym.kwargs, **kwargs)
        except TypeError as e:
            if not cfg.gym.kwargs:
                raise
            why = str(e).split(" was raised from the environment creator")[0]  # gymnasium's tail
            raise UsageError(f"env.gym.kwargs {cfg.gym.kwargs} do not fit {self.task}: {why}") \
                from None
        self.layout = Layout.of(self.task, self.env.observation_space)
        offered = self.layout.spaces(cfg)
        self.keys = select_keys(self.task, list(offered), cfg.obs_keys)
        self.obs_space = {key: offered[key] for key in self.keys}
        self.act_space = action_space(self.task, self.env.action_space)
        self.seed: int | None = seed
        self.env.action_space.seed(seed)

    def reset(self, seed: int | None = None) -> Obs:
        # Seed once; later episodes continue the env's RNG.
        seed = self.seed if seed is None else seed
        self.seed = None
        obs, _ = self.env.reset(seed=seed)
        return step_dict(self.observe(obs), is_first=True)

    def step(self, action: np.ndarray) -> Obs:
        env_action = self.convert(action)
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.cfg.action_repeat):
            obs, r, terminated, truncated, _ = self.env.step(env_action)
            reward += float(r)
            if terminated or truncated:
                break
        return step_dict(
            self.observe(obs), reward, is_last=terminated or truncated, is_terminal=terminated,
        )

    def convert(self, action: np.ndarray) -> int | np.ndarray:
        """Our action -> the env's: one-hot -> int, [-1, 1] -> the Box bounds and dtype."""
        space: Any = self.env.action_space  # Discrete or Box, as act_space says
        if self.act_space.discrete:
            return int(space.start) + discrete_index(action)
        return rescale(action, space.low, space.high).astype(space.dtype)

    def observe(self, obs: Any) -> dict[str, np.ndarray]:
        return self.layout.split(obs, self.keys, self.cfg.size)

    def render(self) -> np.ndarray:
        """The env's rgb_array frame at its own size, uint8 (H, W, 3)."""
        frame = self.env.render()
        if frame is None:
            raise UsageError(f"{self.task} cannot render rgb_array frames")
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        self.env.close()


@dataclass(frozen=True)
class Layout:
    """Where our keys lie in a gymnasium observation: `image` is None (no image), "" (the whole
    observation) or the Dict entry holding it; `vector` is the space flattened into `vector`
    (the whole observation, or the Dict without its image), None when nothing is left."""

    image: str | None
    vector: GymSpace[Any] | None

    @staticmethod
    def of(task: str, space: GymSpace[Any]) -> Layout:
        from gymnasium import spaces

        if is_image(space):
            return Layout("", None)
        if flat_size(space) is not None:
            return Layout(None, space)
        if isinstance(space, spaces.Dict):
            images = [key for key, part in space.spaces.items() if is_image(part)]
            rest = spaces.Dict({k: v for k, v in space.spaces.items() if k not in images})
            if len(images) == 1 and flat_size(rest) is not None:
                return Layout(images[0], rest if rest.spaces else None)
        raise UsageError(
            f"{task} has observation space {space}: supported are a uint8 (H, W), (H, W, 1) or "
            "(H, W, 3) Box (image), spaces without images that flatten to a vector (Box, "
            "Discrete, MultiDiscrete, MultiBinary, and Tuple or Dict of these), and a Dict of one "
            "such image and such parts"
        )

    def spaces(self, cfg: EnvConfig) -> dict[str, Space]:
        """Our observation spaces, image first (the order select_keys keeps)."""
        out = {}
        if self.image is not None:
            out["image"] = Space((*cfg.size, 3), "uint8")
        if self.vector is not None:
            from gymnasium.spaces import flatdim

            out["vector"] = Space((flatdim(self.vector),), "float32")
        return out

    def split(self, obs: Any, keys: list[str], size: Sequence[int]) -> dict[str, np.ndarray]:
        """A gymnasium observation -> our `keys` of it."""
        out = {}
        if "image" in keys:
            frame = obs if self.image == "" else obs[self.image]
            out["image"] = resize(np.asarray(frame, dtype=np.uint8), size)
        # A Dict's flatten reads only its own entries, not the image.
        if "vector" in keys and self.vector is not None:
            from gymnasium.spaces import flatten

            out["vector"] = np.asarray(flatten(self.vector, obs), dtype=np.float32)
        return out


def is_image(space: GymSpace[Any]) -> bool:
    """Pixels we read: grey (H, W) or (H, W, 1), or RGB (H, W, 3)."""
    shape = space.shape or ()
    return pixels(space) and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3)))


def pixels(space: GymSpace[Any]) -> bool:
    """A uint8 Box of rank 2 or more: an image, or frames we do not read (RGBA, stacks)."""
    from gymnasium import spaces

    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) >= 2


def flat_size(space: GymSpace[Any]) -> int | None:
    """The length of `space` flattened by gymnasium (Discrete one-hot, Tuple and Dict parts
    concatenated); None when it holds pixels (flattened, they would lose their layout) or a
    part gymnasium cannot flatten to a fixed size (Text, Graph, Sequence)."""
    from gymnasium import spaces

    if isinstance(space, spaces.Tuple | spaces.Dict):
        parts = space.spaces.values() if isinstance(space, spaces.Dict) else space.spaces
        if any(flat_size(part) is None for part in parts):
            return None
    elif pixels(space) or not isinstance(
        space, spaces.Box | spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary
    ):
        return None
    return int(spaces.flatdim(space))


def action_space(task: str, space: GymSpace[Any]) -> ActSpace:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return ActSpace(discrete=True, size=int(space.n))
    if isinstance(space, spaces.Box):
        return ActSpace(discrete=False, size=int(np.prod(space.shape)))
    raise UsageError(f"{task} has action space {space}: supported are Discrete and Box")
