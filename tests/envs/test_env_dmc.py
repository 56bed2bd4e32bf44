"""The env contract on dm_control cartpole balance, from pixels and from proprioception."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dreamerctl.config import EnvConfig
from dreamerctl.envs import make_env

EnvCfg = Callable[..., EnvConfig]
CheckStep = Callable[..., None]
TASK = "dmc_cartpole_balance"
VECTOR = 'env.obs_keys=["vector"]'


def test_image_contract_and_render(env_cfg: EnvCfg, check_step: CheckStep) -> None:
    env = make_env(TASK, env_cfg(TASK), seed=0)
    assert env.obs_space == {"image": env.obs_space["image"]}
    assert env.obs_space["image"].shape == (64, 64, 3)
    assert not env.act_space.discrete and env.act_space.size == 1
    first = env.reset()
    check_step(first, env.obs_space, first=True)
    steps = [env.step(np.array([1.0], np.float32)) for _ in range(5)]
    for obs in steps:
        check_step(obs, env.obs_space, first=False)
        assert 0 < obs["reward"] <= 2  # reward in [0, 1] per control step, action repeat 2
    assert first["image"].std() > 5
    assert not np.array_equal(first["image"], steps[-1]["image"])  # the cart moved
    frame = env.render()
    assert frame.shape == (384, 384, 3) and frame.dtype == np.uint8 and frame.std() > 5
    env.close()


def test_vector_episode_is_500_agent_steps_of_truncation(
    env_cfg: EnvCfg, check_step: CheckStep
) -> None:
    env = make_env(TASK, env_cfg(TASK, VECTOR), seed=0)
    assert env.obs_space["vector"].shape == (5,)  # position (3) + velocity (2), flattened
    check_step(env.reset(), env.obs_space, first=True)
    rng = np.random.default_rng(0)
    steps = [env.step(env.act_space.sample(rng)) for _ in range(500)]
    assert [s["is_last"] for s in steps] == [False] * 499 + [True]
    assert not any(s["is_terminal"] for s in steps)  # a time limit is not a death
    check_step(steps[-1], env.obs_space, first=False)
    check_step(env.reset(), env.obs_space, first=True)
    env.close()


@pytest.mark.parametrize("limit", [10, 600])
def test_time_limit_overrides_the_suite(env_cfg: EnvCfg, limit: int) -> None:
    # 600 agent steps are 1,200 control steps: past the suite's own 1,000.
    env = make_env(TASK, env_cfg(TASK, VECTOR, f"env.time_limit={limit}"), seed=0)
    env.reset()
    zero = np.zeros(1, np.float32)
    steps = [env.step(zero) for _ in range(limit)]
    assert [s["is_last"] for s in steps] == [False] * (limit - 1) + [True]
    assert not steps[-1]["is_terminal"]
    env.close()


def test_seeding(env_cfg: EnvCfg) -> None:
    def first_obs(seed: int) -> np.ndarray:
        env = make_env(TASK, env_cfg(TASK, VECTOR), seed=seed)
        obs = env.reset()["vector"]
        env.close()
        return obs

    np.testing.assert_array_equal(first_obs(1), first_obs(1))
    assert not np.array_equal(first_obs(1), first_obs(2))


def test_actions_are_clipped_and_rescaled(env_cfg: EnvCfg) -> None:
    env = make_env(TASK, env_cfg(TASK, VECTOR), seed=0)
    env.reset()
    env.step(np.array([5.0], np.float32))
    # cartpole's action bounds are [-1, 1]: 5 is clipped to 1.
    np.testing.assert_allclose(env.env.physics.data.ctrl, [1.0])
    env.close()


def test_quadruped_uses_camera_2(env_cfg: EnvCfg) -> None:
    env = make_env("dmc_quadruped_walk", env_cfg("dmc_quadruped_walk", VECTOR), seed=0)
    assert env.camera == 2
    env.close()
