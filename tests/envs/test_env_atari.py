"""The env contract on Atari Pong (and Breakout for lives): frame skip, limits, seeding, render."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dreamerctl.config import EnvConfig
from dreamerctl.envs import Env, make_env

EnvCfg = Callable[..., EnvConfig]
CheckStep = Callable[..., None]


def run_until_last(env: Env, rng: np.random.Generator, limit: int) -> tuple[dict, int, float]:
    """Random actions until is_last: (last step, agent steps, summed reward)."""
    score = 0.0
    for steps in range(1, limit + 1):
        obs = env.step(env.act_space.sample(rng))
        score += float(obs["reward"])
        if obs["is_last"]:
            return obs, steps, score
    raise AssertionError(f"no is_last within {limit} steps")


def test_pong_contract_and_game_over(env_cfg: EnvCfg, check_step: CheckStep) -> None:
    env = make_env("atari_pong", env_cfg("atari_pong"), seed=0)
    assert env.task == "atari_pong"
    assert env.obs_space["image"].shape == (64, 64, 3) and set(env.obs_space) == {"image"}
    assert env.act_space.discrete and env.act_space.size == 6  # Pong's minimal action set
    check_step(env.reset(), env.obs_space, first=True)
    check_step(env.step(np.eye(6, dtype=np.float32)[1]), env.obs_space, first=False)
    last, steps, score = run_until_last(env, np.random.default_rng(0), 5000)
    check_step(last, env.obs_space, first=False)
    # A random agent loses 21 points (rewards unclipped) and the game ends: a terminal.
    assert last["is_terminal"]
    assert -21 <= score <= -15 and steps > 500
    env.close()


def test_pong_render_is_the_native_screen(env_cfg: EnvCfg) -> None:
    env = make_env("atari_pong", env_cfg("atari_pong"), seed=0)
    obs = env.reset()
    frame = env.render()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
    assert frame.std() > 10 and obs["image"].std() > 10  # not a constant frame
    env.close()


def test_frame_time_limit_truncates(env_cfg: EnvCfg) -> None:
    # 400 emulator frames at frame skip 4: at most 100 agent steps, no-ops at reset included.
    env = make_env("atari_pong", env_cfg("atari_pong", "env.atari.max_frames=400"), seed=0)
    env.reset()
    last, steps, _ = run_until_last(env, np.random.default_rng(0), 200)
    assert last["is_last"] and not last["is_terminal"]
    assert 100 - 30 // 4 - 1 <= steps <= 100


def test_agent_step_time_limit_overrides_frames(env_cfg: EnvCfg) -> None:
    env = make_env("atari_pong", env_cfg("atari_pong", "env.time_limit=7"), seed=0)
    for _ in range(2):  # the limit counts from every reset
        env.reset()
        last, steps, _ = run_until_last(env, np.random.default_rng(0), 100)
        assert steps == 7 and not last["is_terminal"]


def test_same_seed_same_episode(env_cfg: EnvCfg) -> None:
    cfg = env_cfg("atari_pong", "env.atari.sticky=true")
    runs = []
    for _ in range(2):
        env = make_env("atari_pong", cfg, seed=3)
        frames = [env.reset()["image"]]
        rng = np.random.default_rng(0)
        frames += [env.step(env.act_space.sample(rng))["image"] for _ in range(60)]
        runs.append(np.stack(frames))
        env.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_settings_reach_the_emulator(env_cfg: EnvCfg) -> None:
    cfg = env_cfg("atari_pong", "env.atari.sticky=true", "env.atari.full_action_space=true")
    env = make_env("atari_pong", cfg, seed=0)
    assert env.act_space.size == 18
    assert env.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    env.close()


def test_life_loss_ends_an_episode_only_with_life_done(env_cfg: EnvCfg) -> None:
    env = make_env("atari_breakout", env_cfg("atari_breakout", "env.atari.life_done=true"), 0)
    env.reset()
    lives = env.ale.lives()
    last, _, _ = run_until_last(env, np.random.default_rng(0), 2000)
    assert last["is_terminal"] and env.ale.lives() == lives - 1
    # The next episode goes on in the same game, with one life fewer.
    assert env.reset()["is_first"] and env.ale.lives() == lives - 1
    env.close()
