"""The env contract on gymnasium envs: CartPole (discrete, terminates), Pendulum (continuous),
images, spaces flattened to a vector (FrozenLake, Blackjack, Dicts), Dicts with an image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dreamerctl.config import EnvConfig
from dreamerctl.envs import make_env
from dreamerctl.errors import UsageError
from dreamerctl.run.evaluate import evaluate_checkpoint
from dreamerctl.run.train import train_run

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


def test_discrete_observations_become_one_hot(env_cfg: EnvCfg, check_step: CheckStep) -> None:
    """FrozenLake observes its cell as Discrete(16): the vector is that cell one-hot."""
    env = make_env("gym_FrozenLake-v1", env_cfg("gym_FrozenLake-v1"), seed=0)
    assert set(env.obs_space) == {"vector"} and env.obs_space["vector"].shape == (16,)
    obs = env.reset()
    check_step(obs, env.obs_space, first=True)
    np.testing.assert_array_equal(obs["vector"], np.eye(16, dtype=np.float32)[0])  # the start
    rng = np.random.default_rng(0)
    cells = set()
    for _ in range(40):
        obs = env.step(env.act_space.sample(rng))
        check_step(obs, env.obs_space, first=False)
        cell = int(env.env.unwrapped.s)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(obs["vector"], np.eye(16, dtype=np.float32)[cell])
        cells.add(cell)
        if obs["is_last"]:
            obs = env.reset()
    assert len(cells) > 2
    env.close()


def test_gym_kwargs_reach_gymnasium_make(env_cfg: EnvCfg) -> None:
    """env.gym.kwargs: the 8x8 map without slipping, so moves are deterministic; a keyword the
    env does not take is one error naming it."""
    task = "gym_FrozenLake-v1"
    cfg = env_cfg(task, 'env.gym.kwargs={is_slippery = false, map_name = "8x8"}')
    env = make_env(task, cfg, seed=0)
    assert env.obs_space["vector"].shape == (64,)
    env.reset()
    right, down = np.eye(4, dtype=np.float32)[2], np.eye(4, dtype=np.float32)[1]
    cells = [int(env.step(action)["vector"].argmax()) for action in [right, right, down]]
    assert cells == [1, 2, 10]  # (0, 1), (0, 2), (1, 2) on 8 columns
    env.close()
    with pytest.raises(UsageError) as error:
        make_env(task, env_cfg(task, "env.gym.kwargs.slippery=false"), seed=0)
    assert str(error.value) == (
        f"env.gym.kwargs {{'slippery': False}} do not fit {task}: FrozenLakeEnv.__init__() got an "
        "unexpected keyword argument 'slippery'")


def test_tuple_observations_are_concatenated(env_cfg: EnvCfg) -> None:
    """Blackjack observes (player sum, dealer card, usable ace) as Tuple(Discrete(32),
    Discrete(11), Discrete(2)): three one-hots side by side."""
    env = make_env("gym_Blackjack-v1", env_cfg("gym_Blackjack-v1"), seed=3)
    assert env.obs_space["vector"].shape == (32 + 11 + 2,)
    vector = env.reset()["vector"]
    player, dealer, ace = env.env.unwrapped._get_obs()  # type: ignore[attr-defined]
    assert vector.sum() == 3
    assert vector[player] == vector[32 + dealer] == vector[43 + int(ace)] == 1
    env.close()


def test_dict_observations(env_cfg: EnvCfg, check_step: CheckStep, custom_envs: None) -> None:
    """A Dict of Box, Discrete and MultiBinary parts flattens to one vector in gymnasium's
    (sorted key) order; a Dict with one image entry gives `image` and the rest as `vector`."""
    task = "gym_custom_gym_envs:DictVector-v0"
    env = make_env(task, env_cfg(task), seed=0)
    assert env.obs_space["vector"].shape == (2 + 3 + 2,)  # bits, mode (one-hot of 3), pos
    for obs in [env.reset(), env.step(np.array([1.0, 0.0], np.float32))]:
        check_step(obs, env.obs_space, first=obs["is_first"])
        bits, mode, pos = obs["vector"][:2], obs["vector"][2:5], obs["vector"][5:]
        assert set(bits.tolist()) <= {0.0, 1.0} and mode.sum() == 1
        assert np.all(np.abs(pos) <= 1) and np.all(pos != 0)
    env.close()
    task = "gym_custom_gym_envs:DictImage-v0"
    cfg = env_cfg(task, "env.size=[16, 16]", 'env.obs_keys=["image", "vector"]')
    env = make_env(task, cfg, seed=0)
    assert env.obs_space["image"].shape == (16, 16, 3)
    assert env.obs_space["vector"].shape == (2,)
    for obs in [env.reset(), env.step(np.array([1.0, 0.0], np.float32))]:
        check_step(obs, env.obs_space, first=obs["is_first"])
        assert obs["image"].std() > 20  # the sampled noise image, resized
        assert np.all(np.abs(obs["vector"]) <= 1) and np.all(obs["vector"] != 0)
    env.close()
    for keys in ["image"], ["vector"]:  # obs_keys picks from what the Dict offers
        env = make_env(task, env_cfg(task, f"env.obs_keys={keys}".replace("'", '"')), seed=0)
        assert list(env.obs_space) == keys and set(keys) < set(env.reset())
        env.close()


@pytest.mark.parametrize("env_id, space", [
    ("TwoImages-v0", "Dict('a': Box(0, 255, (8, 8, 3), uint8), 'b': Box(0, 255, (8, 8), uint8))"),
    ("Rgba-v0", "Box(0, 255, (8, 8, 4), uint8)"),
    ("ImageAndText-v0", "Dict('image': Box(0, 255, (8, 8, 3), uint8), 'mission': Text("),
])
def test_observations_that_do_not_fit_are_refused(
    env_cfg: EnvCfg, custom_envs: None, env_id: str, space: str,
) -> None:
    """Two images, pixels that are no RGB/grey image (flattened they would lose their layout),
    and parts of no fixed size: one error naming the space and what is supported."""
    task = f"gym_custom_gym_envs:{env_id}"
    with pytest.raises(UsageError) as error:
        make_env(task, env_cfg(task), seed=0)
    assert str(error.value).startswith(f"{task} has observation space {space}")
    assert str(error.value).endswith(
        "supported are a uint8 (H, W), (H, W, 1) or (H, W, 3) Box (image), spaces without "
        "images that flatten to a vector (Box, Discrete, MultiDiscrete, MultiBinary, and Tuple "
        "or Dict of these), and a Dict of one such image and such parts")


def test_train_on_a_discrete_observation_env(tmp_path: Path) -> None:
    """The whole path (replay, world model, checkpoint, eval) on FrozenLake's one-hot cells, with
    gymnasium.make keywords that eval takes back from the checkpoint (64 cells, not 16)."""
    sets = ["run.steps=40", 'run.device="cpu"', 'env.gym.kwargs={map_name = "8x8"}']
    run_dir = train_run("gym_FrozenLake-v1", ["debug"], sets, tmp_path, None)
    assert 'map_name = "8x8"' in (run_dir / "config.toml").read_text()
    result = evaluate_checkpoint(run_dir / "checkpoint.pt", None, 2, 0, "sample", "cpu")
    assert result["task"] == "gym_FrozenLake-v1" and result["episodes"] == 2
    assert set(result["scores"]) <= {0.0, 1.0}
