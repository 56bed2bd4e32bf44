"""The actor-critic objective raises a known reward: a one-step bandit where the reward at t is
a function of a_{t-1}. The world model first learns the reward from random-action data, then the
actor-critic, trained in imagination only, must prefer the rewarded action (REINFORCE for discrete
actions, backpropagation through the dynamics for continuous ones). ~5 s each."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import debug_config

from dreamerctl.agent.agent import Agent
from dreamerctl.spaces import ActSpace, Space

BATCH, LENGTH = 8, 16
# Faster learning rates than the recipe's, so that a few hundred updates suffice.
FAST = ("world_model.lr=3e-3", "actor_critic.actor_lr=1e-3", "actor_critic.critic_lr=1e-3")


def bandit(discrete: bool, rng: np.random.Generator) -> Callable[[], dict[str, np.ndarray]]:
    """Random-action sequences of a blind bandit: reward_t = [a_{t-1} == 0] (discrete) or
    a_{t-1} (continuous, best at +1)."""

    def sample() -> dict[str, np.ndarray]:
        if discrete:
            index = rng.integers(0, 2, (BATCH, LENGTH))
            action = np.eye(2, dtype=np.float32)[index]
            gain = (index == 0).astype(np.float32)
        else:
            action = rng.uniform(-1, 1, (BATCH, LENGTH, 1)).astype(np.float32)
            gain = action[..., 0]
        reward = np.zeros((BATCH, LENGTH), np.float32)
        reward[:, 1:] = gain[:, :-1]  # the reward that follows an action comes with the next obs
        is_first = np.zeros((BATCH, LENGTH), bool)
        is_first[:, 0] = True
        flags = np.zeros((BATCH, LENGTH), bool)
        return {"vector": np.zeros((BATCH, LENGTH, 1), np.float32), "action": action,
                "reward": reward, "is_first": is_first, "is_last": flags, "is_terminal": flags}

    return sample


def preference(agent: Agent, batch: dict[str, np.ndarray]) -> float:
    """Discrete: mean pi(a = 0); continuous: mean policy mode, over the batch's posterior."""
    starts = agent.encode_starts(batch)
    with torch.no_grad():
        policy = agent.behavior.policy(agent.wm.rssm.feat(starts))
    value = policy.probs[..., 0] if agent.act_space.discrete else policy.mode()
    return float(value.mean())


@pytest.mark.parametrize("discrete", [True, False])
def test_actor_critic_learns_the_rewarded_action(discrete: bool) -> None:
    torch.manual_seed(0)
    config = debug_config(*FAST)
    agent = Agent.from_config({"vector": Space((1,), "float32")},
                              ActSpace(discrete, 2 if discrete else 1), config)
    with torch.no_grad():  # start from no preference at all: uniform, or mean 0
        agent.behavior.actor.out.weight.zero_()
    sample = bandit(discrete, np.random.default_rng(0))
    for _ in range(300):
        metrics, _ = agent.train_world_model(sample())
    assert metrics["train/loss/reward"] < 1.0, metrics  # the reward model has learned
    before = preference(agent, sample())
    assert before == pytest.approx(0.5 if discrete else 0.0, abs=1e-6)
    for _ in range(100):
        agent.train_actor_critic(agent.encode_starts(sample()))
    after = preference(agent, sample())
    target = 0.85 if discrete else 0.8
    assert after > target, after
