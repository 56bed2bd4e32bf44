"""Atari through the Arcade Learning Environment (ale-py's gymnasium env, ROMs ship with ale-py).

The settings follow Machado et al. (2018) as DreamerV3 uses them: frame skip `action_repeat` done
here (the emulator runs with frameskip 1) with rewards summed and a max over the last two RGB
frames (Atari sprites flicker between frames), optional sticky actions (p = 0.25), 0..noops random
no-ops at reset, life loss optionally terminal, and a time limit in emulator frames.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from dreamerctl.config.schema import EnvConfig
from dreamerctl.envs.base import Env, Obs
from dreamerctl.envs.common import discrete_index, resize, select_keys, step_dict
from dreamerctl.envs.registry import unknown
from dreamerctl.spaces import ActSpace, Space

NOOP = 0  # ALE action id of NOOP in both the minimal and the full action set.


@functools.cache
def games() -> tuple[str, ...]:
    """The snake_case ROM ids that ship with ale-py (`pong`, `ms_pacman`, ...)."""
    from ale_py import roms

    return tuple(roms.get_all_rom_ids())


def check(game: str) -> None:
    if game not in games():
        raise unknown("Atari game", game, "atari", games())


def make(game: str, cfg: EnvConfig, seed: int) -> Env:
    return Atari(game, cfg, seed)


class Atari(Env):
    """One ALE game. Observation: `image` uint8 (H, W, 3) = cfg.size; actions one-hot (A,)."""

    def __init__(self, game: str, cfg: EnvConfig, seed: int) -> None:
        import ale_py
        from ale_py.env import AtariEnv

        # Keep ALE's banner off stderr (AtariEnv sets this only after creating the emulator).
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.task = f"atari_{game}"
        self.cfg = cfg
        self.env = AtariEnv(
            game=game,
            obs_type="rgb",
            frameskip=1,
            repeat_action_probability=0.25 if cfg.atari.sticky else 0.0,
            full_action_space=cfg.atari.full_action_space,
        )
        self.ale = self.env.ale
        # ALE action ids; our one-hot index i means self.actions[i].
        full = cfg.atari.full_action_space
        self.actions = self.ale.getLegalActionSet() if full else self.ale.getMinimalActionSet()
        self.keys = select_keys(self.task, ["image"], cfg.obs_keys)
        self.obs_space = {"image": Space((*cfg.size, 3), "uint8")}
        self.act_space = ActSpace(discrete=True, size=len(self.actions))
        # The time limit: ours in agent steps (TimeLimit wrapper) replaces the frame limit.
        self.max_frames = cfg.atari.max_frames if cfg.time_limit == 0 else None
        self.seed: int | None = seed
        self.lives = 0
        self.continues = False  # the last episode ended by a life loss, the game goes on

    def reset(self, seed: int | None = None) -> Obs:
        seed = self.seed if seed is None else seed
        self.seed = None
        if self.continues and seed is None:
            # Life loss ended the last episode (life_done): the next one starts in the same game.
            self.continues = False
            return step_dict(self.observe(self.ale.getScreenRGB()), is_first=True)
        self.env.reset(seed=seed)  # a seed reloads the ROM and reseeds ALE and np_random
        self.noops()
        self.lives = self.ale.lives()
        self.continues = False
        return step_dict(self.observe(self.ale.getScreenRGB()), is_first=True)

    def noops(self) -> None:
        """0..cfg.atari.noops no-op frames (from the env's seeded RNG) so starts differ."""
        count = int(self.env.np_random.integers(0, self.cfg.atari.noops + 1))
        for _ in range(count):
            self.ale.act(NOOP)
            if self.ale.game_over(with_truncation=False):
                self.ale.reset_game()

    def step(self, action: np.ndarray) -> Obs:
        reward, frame, over, lost = self.repeat(self.actions[discrete_index(action)])
        truncated = (
            self.max_frames is not None
            and self.ale.getEpisodeFrameNumber() >= self.max_frames
        )
        self.continues = lost and not over and not truncated
        return step_dict(
            self.observe(frame), reward, is_last=over or lost or truncated,
            is_terminal=over or lost,
        )

    def repeat(self, action: Any) -> tuple[float, np.ndarray, bool, bool]:
        """Act `action_repeat` frames: (summed reward, max of the last two frames, game over,
        life lost). Stops early at game over or, with life_done, at a life loss."""
        reward, frames = 0.0, []
        over = lost = False
        repeat = self.cfg.action_repeat
        for k in range(repeat):
            reward += self.ale.act(action)
            over = self.ale.game_over(with_truncation=False)
            lives = self.ale.lives()
            lost = self.cfg.atari.life_done and lives < self.lives
            self.lives = lives
            if k >= repeat - 2 or over or lost:
                frames.append(self.ale.getScreenRGB())
            if over or lost:
                break
        frame = frames[-1] if len(frames) == 1 else np.maximum(frames[-2], frames[-1])
        return reward, frame, over, lost

    def observe(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        """Native (210, 160, 3) screen -> {"image": (H, W, 3)}."""
        return {"image": resize(frame, self.cfg.size)}

    def render(self) -> np.ndarray:
        """The current native screen, uint8 (210, 160, 3)."""
        return self.ale.getScreenRGB()

    def close(self) -> None:
        self.env.close()
