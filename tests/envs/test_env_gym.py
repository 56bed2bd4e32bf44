"""The env contract on gymnasium CartPole (discrete, terminates) and Pendulum (continuous)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dreamerctl.config import EnvConfig
from dreamerctl.envs import make_env

EnvCfg = Callable[..., EnvConfig]
CheckStep = Callable[..., None]


def test_cartpole_contract_and_termination(env_cfg: EnvCfg, check_step: CheckStep) -> None:
    env = make_env("gym_CartPole-v1", env_cfg("gym_CartPole-v1"), seed=0)
    assert set(env.obs_space) == {"vector"} and env.obs_space["vector"].shape == (4,)
    assert env.act_space.discrete and env.act_space.size == 2
    check_step(env.reset(), env.obs_space, first=True)
    rng = np.random.default_rng(0)
    steps = [env.step(env.act_space.sample(rng))]
    while not steps[-1]["is_last"] and len(steps) < 500:
        steps.append(env.step(env.act_space.sample(rng)))
    for obs in steps:
        check_step(obs, env.obs_space, first=False)
    # Random actions drop the pole long before the 500-step limit: a termination.
    assert steps[-1]["is_terminal"] and len(steps) < 200
    frame = env.render()
    assert frame.shape == (400, 600, 3) and frame.dtype == np.uint8 and frame.std() > 5
    env.close()


def test_pendulum_truncates_at_its_limit(env_cfg: EnvCfg, check_step: CheckStep) -> None:
    env = make_env("gym_Pendulum-v1", env_cfg("gym_Pendulum-v1"), seed=0)
    assert not env.act_space.discrete and env.act_space.size == 1
    check_step(env.reset(), env.obs_space, first=True)
    steps = [env.step(np.array([0.3], np.float32)) for _ in range(200)]
    assert [s["is_last"] for s in steps] == [False] * 199 + [True]
    assert not any(s["is_terminal"] for s in steps)
    assert all(s["reward"] <= 0 for s in steps)
    assert env.render().shape == (500, 500, 3)
    env.close()


def test_time_limit_in_agent_steps_with_action_repeat(env_cfg: EnvCfg) -> None:
    cfg = env_cfg("gym_Pendulum-v1", "env.time_limit=5", "env.action_repeat=3")
    env = make_env("gym_Pendulum-v1", cfg, seed=0)
    env.reset()
    steps = [env.step(np.zeros(1, np.float32)) for _ in range(5)]
    assert [s["is_last"] for s in steps] == [False] * 4 + [True]
    assert not steps[-1]["is_terminal"]
    # Rewards of the 3 repeated frames are summed: each frame's is in [-16.3, 0].
    assert steps[0]["reward"] < 0 and steps[0]["reward"] >= 3 * -16.3


def test_pendulum_torque_is_rescaled(env_cfg: EnvCfg) -> None:
    env = make_env("gym_Pendulum-v1", env_cfg("gym_Pendulum-v1"), seed=0)
    env.reset()
    # Pendulum's torque lies in [-2, 2]: our 1.0 is its 2.0, and 7.0 is clipped to the same.
    np.testing.assert_allclose(env.convert(np.array([1.0])), [2.0])
    np.testing.assert_allclose(env.convert(np.array([7.0])), [2.0])
    np.testing.assert_allclose(env.convert(np.array([-0.25])), [-0.5])
    env.close()


def test_seeding(env_cfg: EnvCfg) -> None:
    def first_two(seed: int) -> list[np.ndarray]:
        env = make_env("gym_CartPole-v1", env_cfg("gym_CartPole-v1"), seed=seed)
        obs = [env.reset()["vector"], env.step(np.array([1.0, 0.0]))["vector"]]
        env.close()
        return obs

    np.testing.assert_array_equal(np.stack(first_two(4)), np.stack(first_two(4)))
    assert not np.array_equal(first_two(4)[0], first_two(5)[0])


def test_later_episodes_continue_the_rng(env_cfg: EnvCfg) -> None:
    env = make_env("gym_CartPole-v1", env_cfg("gym_CartPole-v1"), seed=0)
    first, second = env.reset()["vector"], env.reset()["vector"]
    assert not np.array_equal(first, second)
    env.close()


def test_grey_image_observations_become_rgb(
    env_cfg: EnvCfg, check_step: CheckStep, custom_envs: None
) -> None:
    task = "gym_custom_gym_envs:GreyImage-v0"
    env = make_env(task, env_cfg(task, "env.size=[32, 48]"), seed=0)
    assert set(env.obs_space) == {"image"} and env.obs_space["image"].shape == (32, 48, 3)
    check_step(env.reset(), env.obs_space, first=True)
    obs = env.step(np.array([1.0, -0.5], np.float32))
    check_step(obs, env.obs_space, first=False)
    np.testing.assert_array_equal(obs["image"][..., 0], obs["image"][..., 1])
    assert obs["reward"] == np.float32(3.0 - 1.5)  # Box [-3, 3]: (1, -0.5) -> (3, -1.5)
    env.close()
