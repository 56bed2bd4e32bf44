"""Task names: validation with close matches, lazy suite imports, observation-key selection."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dreamerctl.config import build_config
from dreamerctl.envs import check_task, make_env
from dreamerctl.envs.registry import split_task
from dreamerctl.errors import UsageError


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("atari_pongg", "unknown Atari game 'pongg' (did you mean atari_pong?)"),
        ("atari_MsPacman", "unknown Atari game 'MsPacman' (did you mean atari_ms_pacman?)"),
        ("dmc_walker_wlk", "unknown DMC task 'walker_wlk' (did you mean dmc_walker_walk"),
        ("gym_CartPol-v1", "unknown gymnasium id 'CartPol-v1' (did you mean gym_CartPole-v1"),
        ("bogus_thing", "unknown suite 'bogus' in task 'bogus_thing'"),
        ("atri_pong", "(did you mean atari_pong?)"),
        ("dmc", "task 'dmc' names no dmc environment"),
        ("gym_nomodule:Env-v0", "cannot import module 'nomodule'"),
    ],
)
def test_unknown_tasks_name_close_matches(task: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        check_task(task)
    assert message in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "task",
    [
        "atari_pong", "atari_ms_pacman", "dmc_walker_walk", "dmc_cup_catch",
        "dmc_point_mass_easy", "dmc_ball_in_cup_catch", "gym_CartPole-v1", "gym_Pendulum-v1",
    ],
)
def test_known_tasks_pass(task: str) -> None:
    check_task(task)


def test_split_task_keeps_underscores_in_the_name() -> None:
    assert split_task("dmc_point_mass_easy") == ("dmc", "point_mass_easy")
    assert split_task("gym_CartPole-v1") == ("gym", "CartPole-v1")


def test_make_env_checks_the_task() -> None:
    cfg = build_config("atari_pong", ["debug"]).env
    with pytest.raises(UsageError, match="did you mean atari_pong"):
        make_env("atari_pongg", cfg, seed=0)


def test_obs_keys_the_env_lacks_are_a_usage_error() -> None:
    cfg = build_config("gym_CartPole-v1", ["debug"], ['env.obs_keys=["image"]']).env
    with pytest.raises(UsageError, match=r"offers observations \['vector'\]"):
        make_env("gym_CartPole-v1", cfg, seed=0)


def test_importing_envs_loads_no_suite_or_torch() -> None:
    code = (
        "import sys, dreamerctl.envs\n"
        "heavy = [m for m in ('ale_py', 'dm_control', 'mujoco', 'torch', 'gymnasium')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name, meant", [("pong", "atari_pong"),
                                         ("CartPole-v1", "gym_CartPole-v1"),
                                         ("walker_walk", "dmc_walker_walk")])
def test_a_task_without_its_suite_names_the_task_meant(name: str, meant: str) -> None:
    with pytest.raises(UsageError, match=f"did you mean {meant}\\?"):
        check_task(name)
