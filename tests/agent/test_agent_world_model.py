"""The RSSM and the world-model loss: shapes, action alignment, resets inside a sequence, the
continuation target, and the loss falling on a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OBS_KINDS, MakeAgent, MakeBatch, debug_config, new_agent

from dreamerctl.agent.agent import Agent
from dreamerctl.agent.rssm import State
from dreamerctl.agent.world_model import previous_actions


def tensors(agent: Agent, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return agent.tensors(batch, tuple(batch))


def observe(agent: Agent, batch: dict[str, np.ndarray], seed: int = 0) -> tuple[State, State]:
    torch.manual_seed(seed)
    with torch.no_grad():
        return agent.wm.observe(tensors(agent, batch))


@pytest.mark.parametrize("obs", ["image", "vector", "both"])
def test_observe_and_imagine_shapes(make_agent: MakeAgent, make_batch: MakeBatch,
                                    obs: str) -> None:
    agent = make_agent(obs)
    wm = agent.wm
    batch, length, deter = 2, 8, wm.rssm.deter
    latents = (wm.rssm.stoch, wm.rssm.classes)
    post, prior = observe(agent, make_batch(agent))
    for state in (post, prior):
        assert state["h"].shape == (batch, length, deter)
        assert state["z"].shape == (batch, length, *latents)
        assert state["logits"].shape == (batch, length, *latents)
    start = {"h": post["h"][:, -1], "z": post["z"][:, -1]}
    with torch.no_grad():
        states, actions = wm.rssm.imagine(start, lambda f: torch.zeros(len(f), 3), horizon=4)
    assert states["h"].shape == (5, batch, deter)  # the start plus H imagined states
    assert states["z"].shape == (5, batch, *latents)
    assert actions.shape == (4, batch, 3)
    assert torch.equal(states["h"][0], start["h"])


def test_loss_keys_follow_the_observations(make_agent: MakeAgent, make_batch: MakeBatch) -> None:
    common = {"reward", "cont", "dyn", "rep"}
    for obs, keys in (("image", {"image"}), ("vector", {"vector"}),
                      ("both", {"image", "vector"})):
        agent = make_agent(obs)
        losses, _ = agent.wm.loss(tensors(agent, make_batch(agent)))
        assert set(losses) == keys | common
        assert all(loss.shape == (2, 8) for loss in losses.values())
        assert set(agent.wm.scales) == set(losses)


def test_previous_actions_shift() -> None:
    action = torch.arange(1.0, 7.0).reshape(1, 3, 2)  # a_0, a_1, a_2
    assert torch.equal(previous_actions(action)[0], torch.tensor([[0, 0], [1, 2], [3, 4.0]]))


def test_rssm_step_into_t_uses_the_previous_action(make_agent: MakeAgent,
                                                   make_batch: MakeBatch) -> None:
    """h_t = GRU(z_{t-1}, a_{t-1}, h_{t-1}); at t = 0 and at is_first the action is zero."""
    agent = make_agent("vector", discrete=False)
    batch = make_batch(agent, batch=1, length=4)
    batch["action"] = np.array([[[0.5] * 3, [-0.7] * 3, [0.9] * 3, [0.3] * 3]], np.float32)
    post, _ = observe(agent, batch)
    rssm = agent.wm.rssm
    with torch.no_grad():
        init = rssm.initial(1)
        zero = torch.zeros(1, 3)
        assert torch.allclose(post["h"][:, 0], rssm._recur(init, zero))
        for t in (1, 2, 3):
            prev = {"h": post["h"][:, t - 1], "z": post["z"][:, t - 1]}
            a_prev = torch.as_tensor(batch["action"][:, t - 1])
            assert torch.allclose(post["h"][:, t], rssm._recur(prev, a_prev))
            a_now = torch.as_tensor(batch["action"][:, t])
            assert not torch.allclose(post["h"][:, t], rssm._recur(prev, a_now))
    # The last action of a sequence was never used; changing a_0 changes h from t = 1 on only.
    changed = dict(batch, action=batch["action"].copy())
    changed["action"][:, -1] = -1.0
    assert torch.equal(observe(agent, changed)[0]["h"], post["h"])
    changed["action"][:, 0] = -1.0
    h = observe(agent, changed)[0]["h"]
    assert torch.equal(h[:, 0], post["h"][:, 0]) and not torch.allclose(h[:, 1], post["h"][:, 1])
    # At is_first the previous action is zero whatever the data holds.
    first = dict(batch, is_first=np.array([[True, False, True, False]]))
    h = observe(agent, first)[0]["h"]
    assert torch.allclose(h[:, 2], rssm._recur(init, zero).detach())


@pytest.mark.parametrize("initial", ["learned", "zeros"])
def test_rssm_resets_inside_a_sequence(make_agent: MakeAgent, make_batch: MakeBatch,
                                       initial: str) -> None:
    """A sequence that crosses an episode boundary at t = 4: the state after the reset is the
    initial-state path, the same as a sequence that starts there."""
    agent = make_agent("both", overrides=(f"world_model.initial={initial!r}",))
    batch = make_batch(agent, batch=2, length=8)
    for key in agent.wm.keys:  # episode 2 (t = 4..7) sees the same observations as t = 0..3
        batch[key][:, 4:] = batch[key][:, :4]
    batch["is_first"][:, 4] = True
    post, _ = observe(agent, batch)
    assert torch.equal(post["h"][:, 4], post["h"][:, 0])
    assert torch.allclose(post["logits"][:, 4], post["logits"][:, 0])
    tail = {key: value[:, 4:] for key, value in batch.items()}
    alone, _ = observe(agent, tail)
    assert torch.allclose(post["h"][:, 4], alone["h"][:, 0])
    assert torch.allclose(post["logits"][:, 4], alone["logits"][:, 0])
    # Without the reset the state at t = 4 carries the first episode on.
    carried, _ = observe(agent, dict(batch, is_first=make_batch(agent)["is_first"]))
    assert not torch.allclose(carried["h"][:, 4], post["h"][:, 0])


def test_initial_state(make_agent: MakeAgent) -> None:
    agent = make_agent("vector")
    init = agent.wm.rssm.initial(3)
    assert torch.allclose(init["h"], torch.tanh(agent.wm.rssm.initial_h).expand(3, -1))
    assert torch.equal(init["z"].sum(-1), torch.ones(3, agent.wm.rssm.stoch))  # one-hot modes
    zeros = make_agent("vector", overrides=("world_model.initial='zeros'",)).wm.rssm.initial(2)
    assert not zeros["h"].any() and not zeros["z"].any()


def test_initial_z_passes_no_gradient(make_agent: MakeAgent) -> None:
    """z0 is the prior's mode at h0 without gradient (the 2023 code): a loss on the initial state
    reaches the learned h0 through h alone, never the prior's layers through z."""
    rssm = make_agent("vector").wm.rssm
    init = rssm.initial(2)
    assert not init["z"].requires_grad
    (init["h"].sum() + rssm.feat(init).sum()).backward()
    assert rssm.initial_h.grad is not None and rssm.initial_h.grad.abs().sum() > 0
    assert all(p.grad is None for p in (*rssm.img_out.parameters(), *rssm.img_stats.parameters()))


def test_posterior_layer_halves_share_one_fan() -> None:
    """obs_h and obs_e are the two blocks of one Linear over concat(h, embed): both are drawn
    with that layer's average fan, std = sqrt(2 / (D + E + hidden)) (truncated normal), not
    each with its own."""
    from dreamerctl.agent.rssm import RSSM

    torch.manual_seed(0)
    config = debug_config("world_model.deter=512", "world_model.hidden=256")
    rssm = RSSM(4096, 3, config.world_model)
    expected = (2.0 / (512 + 4096 + 256)) ** 0.5
    for layer in (rssm.obs_h, rssm.obs_e):
        assert abs(layer.weight.std().item() / expected - 1) < 0.02


def test_continuation_target_is_terminal_not_last(make_agent: MakeAgent,
                                                  make_batch: MakeBatch) -> None:
    agent = make_agent("vector")
    base = make_batch(agent)
    timeout = dict(base, is_last=np.ones((2, 8), bool))  # time limits everywhere: not deaths
    terminal = dict(base, is_last=np.ones((2, 8), bool), is_terminal=np.ones((2, 8), bool))
    results = {}
    for name, batch in (("base", base), ("timeout", timeout), ("terminal", terminal)):
        torch.manual_seed(0)
        losses, post = agent.wm.loss(tensors(agent, batch))
        logits = agent.wm.cont_head(agent.wm.rssm.feat(post))[..., 0]
        results[name] = (losses["cont"], logits)
    assert torch.equal(results["timeout"][0], results["base"][0])
    loss, logits = results["timeout"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.ones_like(logits), reduction="none")
    assert torch.allclose(loss, expected)
    loss, logits = results["terminal"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction="none")
    assert torch.allclose(loss, expected)


def test_cont_terminal_weight_scales_terminal_steps_only(make_batch: MakeBatch) -> None:
    """world_model.cont_terminal_weight = w multiplies the continue loss at terminal steps by w
    and leaves live steps and time limits (is_last without is_terminal) as they were."""
    terminal = np.zeros((2, 8), bool)
    terminal[0, 3] = terminal[1, 7] = True
    last = terminal.copy()
    last[0, 7] = True  # a time limit: weight 1
    losses = {}
    for weight in (1.0, 7.0):
        agent = new_agent("vector", overrides=(f"world_model.cont_terminal_weight={weight}",))
        batch = make_batch(agent, is_terminal=terminal, is_last=last)
        torch.manual_seed(0)
        losses[weight] = agent.wm.loss(tensors(agent, batch))[0]["cont"]
    expected = torch.where(torch.from_numpy(terminal), 7.0 * losses[1.0], losses[1.0])
    assert torch.allclose(losses[7.0], expected)
    assert not torch.allclose(losses[7.0], losses[1.0])


def test_reward_head_starts_at_zero(make_agent: MakeAgent) -> None:
    agent = make_agent("vector")
    feat = torch.randn(4, agent.wm.rssm.feat_dim)
    assert torch.equal(agent.wm.reward(feat).mean(), torch.zeros(4))
    assert torch.equal(agent.behavior.value(feat).mean(), torch.zeros(4))


@pytest.mark.parametrize("obs", ["vector", "image"])
def test_world_model_loss_falls_on_a_fixed_batch(make_agent: MakeAgent, make_batch: MakeBatch,
                                                 obs: str) -> None:
    agent = make_agent(obs)
    batch = make_batch(agent, batch=4, length=8)
    if obs == "image":  # a learnable picture: a gradient whose brightness varies over time
        ramp = np.linspace(0, 1, 16).reshape(1, 1, 1, 16, 1) * np.linspace(0.2, 1, 8).reshape(
            1, 8, 1, 1, 1)
        batch["image"] = np.broadcast_to(255 * ramp, batch["image"].shape).astype(np.uint8)
    totals = []
    for _ in range(60):
        metrics, _ = agent.train_world_model(batch)
        totals.append(sum(agent.wm.scales[k.split("/")[-1]] * v for k, v in metrics.items()
                          if k.startswith("train/loss/")))
    assert np.mean(totals[-5:]) < 0.9 * np.mean(totals[:5]), totals


def test_obs_kinds_cover_the_agent_keys(make_agent: MakeAgent) -> None:
    for obs, spaces in OBS_KINDS.items():
        assert make_agent(obs).wm.keys == [k for k in ("image", "vector") if k in spaces]
