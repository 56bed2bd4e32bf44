"""DeepMind Control Suite tasks (`dmc_<domain>_<task>`) through dm_control.

Episodes last 1,000 control steps (500 agent steps at action repeat 2) and end by time limit, so
they are truncations: is_last without is_terminal. `image` is rendered only when cfg.obs_keys asks
for it: on a CPU, software rendering is ~99% of a step.
"""

from __future__ import annotations

import functools
import threading
import weakref
from types import ModuleType
from typing import Any

import numpy as np

from dreamerctl.config.schema import EnvConfig
from dreamerctl.envs.base import Env, Obs
from dreamerctl.envs.common import rescale, select_keys, step_dict
from dreamerctl.envs.registry import unknown
from dreamerctl.envs.rendering import ensure_mujoco_gl, require_rendering
from dreamerctl.spaces import ActSpace, Space

ALIASES = {"cup_catch": ("ball_in_cup", "catch")}
DEFAULT_CAMERA = {"quadruped": 2}  # camera -1 picks this, else camera 0

LIVE: weakref.WeakSet[DMC] = weakref.WeakSet()


def suite() -> ModuleType:
    """dm_control.suite, imported after choosing a headless GL backend."""
    ensure_mujoco_gl()
    from dm_control import suite as dm_suite

    return dm_suite


@functools.cache
def tasks() -> dict[str, tuple[str, str]]:
    """`walker_walk` -> ("walker", "walk"), for every task in dm_control.suite.ALL_TASKS, plus
    aliases. Joining with "_" is unambiguous for the suite's names (point_mass_easy)."""
    table = {f"{domain}_{task}": (domain, task) for domain, task in suite().ALL_TASKS}
    return {**table, **ALIASES}


def check(name: str) -> None:
    if name not in tasks():
        raise unknown("DMC task", name, "dmc", tasks())


def make(name: str, cfg: EnvConfig, seed: int) -> Env:
    return DMC(name, cfg, seed)


class DMC(Env):
    """One dm_control task. Observations: `vector` float32 (N,) = all observation arrays
    flattened and concatenated; `image` uint8 (H, W, 3) = cfg.size. Actions: float32 (A,) in
    [-1, 1], rescaled to the action spec's bounds."""

    def __init__(self, name: str, cfg: EnvConfig, seed: int) -> None:
        domain, task = tasks()[name]
        self.task = f"dmc_{name}"
        self.cfg = cfg
        self.seed: int | None = seed
        kwargs: dict[str, Any] = {"random": seed}
        if cfg.time_limit > 0:  # our TimeLimit wrapper ends episodes instead
            kwargs["time_limit"] = float("inf")
        self.env = suite().load(domain, task, task_kwargs=kwargs)
        self.camera = cfg.dmc.camera if cfg.dmc.camera >= 0 else DEFAULT_CAMERA.get(domain, 0)
        spec = self.env.action_spec()
        self.low, self.high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.keys = select_keys(self.task, ["image", "vector"], cfg.obs_keys)
        if "image" in self.keys:
            require_rendering()
        self.obs_space = self.spaces()
        self.act_space = ActSpace(discrete=False, size=int(np.prod(spec.shape)))
        self.grow_framebuffer()
        LIVE.add(self)
        free_before_thread_shutdown()

    def spaces(self) -> dict[str, Space]:
        spaces = {
            "image": Space((*self.cfg.size, 3), "uint8"),
            "vector": Space((sum(int(np.prod(s.shape)) for s in self.obs_specs()),), "float32"),
        }
        return {key: spaces[key] for key in self.keys}

    def obs_specs(self) -> list[Any]:
        return list(self.env.observation_spec().values())

    def grow_framebuffer(self) -> None:
        """MuJoCo's offscreen buffer defaults to 640x480; larger renders need a larger one."""
        visual = self.env.physics.model.vis.global_
        sizes = (self.cfg.size, self.cfg.dmc.render_size)
        visual.offheight = max(visual.offheight, *(int(s[0]) for s in sizes))
        visual.offwidth = max(visual.offwidth, *(int(s[1]) for s in sizes))

    def reset(self, seed: int | None = None) -> Obs:
        seed = self.seed if seed is None else seed
        self.seed = None
        if seed is not None:
            self.env.task.random.seed(seed)  # the task's RandomState draws initial states
        time_step = self.env.reset()
        return step_dict(self.observe(time_step.observation), is_first=True)

    def step(self, action: np.ndarray) -> Obs:
        action = rescale(action, self.low, self.high)
        reward, time_step = 0.0, None
        for _ in range(self.cfg.action_repeat):
            time_step = self.env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        assert time_step is not None
        # Suite tasks end only by time limit (discount 1); a discount of 0 would be a terminal.
        terminal = time_step.last() and time_step.discount == 0
        return step_dict(
            self.observe(time_step.observation), reward, is_last=time_step.last(),
            is_terminal=terminal,
        )

    def observe(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        obs = {}
        if "vector" in self.keys:
            parts = [np.asarray(v, dtype=np.float32).reshape(-1) for v in observation.values()]
            obs["vector"] = np.concatenate(parts)
        if "image" in self.keys:
            obs["image"] = self.render_at(self.cfg.size)
        return obs

    def render_at(self, size: list[int]) -> np.ndarray:
        height, width = int(size[0]), int(size[1])
        return self.env.physics.render(height, width, camera_id=self.camera)

    def render(self) -> np.ndarray:
        """uint8 (H, W, 3) at cfg.dmc.render_size (384x384 by default) from the task camera."""
        require_rendering()
        return self.render_at(self.cfg.dmc.render_size)

    def close(self) -> None:
        """Free the physics and its GL contexts now: left to interpreter exit, dm_control's
        OSMesa render thread is already gone and it prints 'cannot schedule new futures'."""
        env, self.env = getattr(self, "env", None), None
        if env is not None:
            env.physics.free()
            LIVE.discard(self)


@functools.cache
def free_before_thread_shutdown() -> None:
    """Close live DMC envs before concurrent.futures stops its threads at interpreter exit.

    Plain atexit handlers run after that shutdown, too late for dm_control's render executor.
    Thread-shutdown hooks run last registered first: importing concurrent.futures.thread (which
    registers its hook at import, and is otherwise imported only at the first render) before
    registering ours makes ours run first.
    """
    import concurrent.futures.thread  # noqa: F401

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(close_live)


def close_live() -> None:
    for env in list(LIVE):
        env.close()
