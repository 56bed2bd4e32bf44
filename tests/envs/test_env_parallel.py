"""ParallelEnvs: batching, auto-reset, worker processes, crash handling and clean shutdown."""

from __future__ import annotations

import gc
import itertools
import os
import signal
from collections.abc import Callable

import numpy as np
import pytest

from dreamerctl.config import EnvConfig
from dreamerctl.envs import EnvCrash, ParallelEnvs
from dreamerctl.envs.parallel import Process
from dreamerctl.errors import RunError, UsageError

EnvCfg = Callable[..., EnvConfig]
CARTPOLE = "gym_CartPole-v1"
FLAKY = "gym_custom_gym_envs:Flaky-v0"  # crashes at the 3rd step of every episode
BROKEN = "gym_custom_gym_envs:Broken-v0"  # crashes at every step


def run(envs: ParallelEnvs, steps: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [envs.step(envs.act_space.sample(rng, envs.num)) for _ in range(steps)]


def check_auto_reset(batches: list[dict[str, np.ndarray]], num: int) -> int:
    """Every env whose step had is_last starts a new episode on the next step; returns the count
    of episode ends seen."""
    ends = 0
    for before, after in itertools.pairwise(batches):
        for i in range(num):
            ended = bool(before["is_last"][i])
            assert bool(after["is_first"][i]) == ended
            if ended:
                ends += 1
                assert after["reward"][i] == 0 and not after["is_last"][i]
    return ends


def test_in_process_batches_and_auto_resets(env_cfg: EnvCfg) -> None:
    envs = ParallelEnvs(CARTPOLE, env_cfg(CARTPOLE), num=3, seed=0)
    assert not envs.parallel  # the debug preset runs envs in-process
    first = envs.reset()
    assert first["vector"].shape == (3, 4) and first["vector"].dtype == np.float32
    assert first["reward"].dtype == np.float32 and first["is_first"].dtype == bool
    assert first["is_first"].all() and not first["is_last"].any()
    # Seeds seed, seed + 1, ...: the envs start in different states.
    assert len({tuple(row) for row in first["vector"]}) == 3
    batches = [first, *run(envs, 150)]
    assert check_auto_reset(batches, 3) >= 3
    assert envs.render(1).shape == (400, 600, 3)
    with pytest.raises(ValueError, match="actions must have shape"):
        envs.step(np.zeros((2, 2), np.float32))
    envs.close()
    envs.close()  # idempotent


def test_worker_processes_match_in_process_envs(env_cfg: EnvCfg) -> None:
    cfg = env_cfg(CARTPOLE, "env.parallel=true")
    envs = ParallelEnvs(CARTPOLE, cfg, num=2, seed=5)
    local = ParallelEnvs(CARTPOLE, cfg, num=2, seed=5, parallel=False)
    assert envs.parallel and all(isinstance(w, Process) for w in envs.workers)
    assert envs.obs_space == local.obs_space and envs.act_space == local.act_space
    batches = [envs.reset(), *run(envs, 60)]
    expected = [local.reset(), *run(local, 60)]
    for got, want in zip(batches, expected, strict=True):
        assert got.keys() == want.keys()
        for key in got:
            np.testing.assert_array_equal(got[key], want[key])
    assert check_auto_reset(batches, 2) >= 2
    processes = [w.process for w in envs.workers]
    envs.close()
    assert all(not p.is_alive() and p.exitcode == 0 for p in processes)
    local.close()


def test_dmc_pixels_in_workers(env_cfg: EnvCfg) -> None:
    task = "dmc_cartpole_balance"
    envs = ParallelEnvs(task, env_cfg(task, "env.parallel=true"), num=2, seed=0)
    first = envs.reset()
    assert first["image"].shape == (2, 64, 64, 3) and first["image"].dtype == np.uint8
    step = run(envs, 2)[-1]
    assert step["reward"].shape == (2,) and (step["reward"] > 0).all()
    assert envs.render(1).shape == (384, 384, 3)
    processes = [w.process for w in envs.workers]
    del envs  # garbage collection closes the workers too
    gc.collect()
    assert all(not p.is_alive() and p.exitcode == 0 for p in processes)


def test_env_exception_names_task_index_and_error(env_cfg: EnvCfg, custom_envs: None) -> None:
    cfg = env_cfg(FLAKY, "env.parallel=true")
    envs = ParallelEnvs(FLAKY, cfg, num=2, seed=0, max_crashes=1)
    envs.reset()
    run(envs, 2)
    with pytest.raises(EnvCrash) as info:
        run(envs, 1)
    message = str(info.value)
    assert FLAKY in message and "env 0" in message and "RuntimeError: boom at step 3" in message
    assert "custom_gym_envs.py" in info.value.trace
    assert envs.closed


def test_crashed_env_restarts_and_ends_its_episode(
    env_cfg: EnvCfg, custom_envs: None, caplog: pytest.LogCaptureFixture
) -> None:
    envs = ParallelEnvs(FLAKY, env_cfg(FLAKY), num=1, seed=0)
    with caplog.at_level("WARNING", logger="dreamerctl"):
        batches = [envs.reset(), *run(envs, 5)]
    # Steps 1, 2 succeed; step 3 crashes: the episode ends there, not as a terminal.
    crash = batches[3]
    assert crash["is_last"][0] and not crash["is_terminal"][0] and crash["reward"][0] == 0
    np.testing.assert_array_equal(crash["vector"], batches[2]["vector"])
    assert batches[4]["is_first"][0] and batches[5]["reward"][0] == 1
    # A warning through logging (the CLI prints it as `warning: ...`).
    assert "env 0 of gym_custom_gym_envs:Flaky-v0 crashed" in caplog.text
    assert envs.restarts == [1]
    envs.close()


def test_three_crashes_in_a_row_are_fatal(env_cfg: EnvCfg, custom_envs: None) -> None:
    envs = ParallelEnvs(BROKEN, env_cfg(BROKEN), num=1, seed=0)
    envs.reset()
    run(envs, 4)  # crash, reset, crash, reset
    with pytest.raises(RunError, match="3 crashes in a row"):
        run(envs, 1)


def test_killed_worker_is_restarted(
    env_cfg: EnvCfg, caplog: pytest.LogCaptureFixture
) -> None:
    envs = ParallelEnvs(CARTPOLE, env_cfg(CARTPOLE, "env.parallel=true"), num=2, seed=0)
    envs.reset()
    os.kill(envs.workers[1].process.pid, signal.SIGKILL)
    with caplog.at_level("WARNING", logger="dreamerctl"):
        step = run(envs, 1)[0]
    assert step["is_last"][1] and not step["is_terminal"][1]
    assert "worker process died" in caplog.text
    assert run(envs, 1)[0]["is_first"][1]
    envs.close()


def test_usage_errors_in_workers_pass_through(env_cfg: EnvCfg) -> None:
    cfg = env_cfg(CARTPOLE, "env.parallel=true", 'env.obs_keys=["image"]')
    with pytest.raises(UsageError, match="offers observations"):
        ParallelEnvs(CARTPOLE, cfg, num=2, seed=0)
