"""The Agent facade and the update loops: shapes, gradient isolation, start states, state round
trips, per-env policy resets, bf16, non-finite steps, parameter counts."""

from __future__ import annotations

import copy
import io
import logging
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import ACTIONS, IMAGE, VECTOR, MakeAgent, MakeBatch, random_batch

from dreamerctl.agent.agent import Agent
from dreamerctl.agent.loops import IMAG_STARTS, LOOPS, run_updates, select_starts
from dreamerctl.agent.maths import lambda_return
from dreamerctl.config import build_config
from dreamerctl.spaces import ActSpace, Space

WM_LOSSES = {"reward", "cont", "dyn", "rep"}
METRICS = {
    "train/loss/actor", "train/loss/critic", "train/actor_entropy", "train/retnorm/low",
    "train/retnorm/high", "train/retnorm/scale", "train/grad_norm/world_model",
    "train/grad_norm/actor", "train/grad_norm/critic", "train/imag_return_mean",
    "train/nonfinite",
}


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def observations(agent: Agent, n: int, first: list[bool], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = {"is_first": np.array(first), "reward": np.zeros(n, np.float32)}
    if "image" in agent.wm.keys:
        obs["image"] = rng.integers(0, 256, (n, *IMAGE), dtype=np.uint8)
    if "vector" in agent.wm.keys:
        obs["vector"] = rng.normal(size=(n, VECTOR)).astype(np.float32)
    return obs


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("obs", ["image", "vector", "both"])
def test_updates_and_acting(make_agent: MakeAgent, make_batch: MakeBatch, obs: str,
                            discrete: bool) -> None:
    agent = make_agent(obs, discrete)
    batch = make_batch(agent)
    metrics = run_updates(agent, lambda: batch, 1, "coupled", "all")
    keys = {"image", "vector"} & set(agent.wm.keys)
    if agent.behavior.ac.replay_value > 0:  # the gym preset under debug has the replay loss
        keys.add("critic_replay")
    assert set(metrics) == METRICS | {f"train/loss/{k}" for k in WM_LOSSES | keys}
    assert all(math.isfinite(v) for v in metrics.values())
    _, post = agent.train_world_model(batch)
    assert post["h"].shape == (2, 8, 32) and post["z"].shape == (2, 8, 4, 4)
    assert post["cont"].shape == (2, 8)
    assert all(value.grad_fn is None for value in post.values())

    action, state = agent.policy(observations(agent, 3, [True] * 3), None)
    assert action.shape == (3, ACTIONS) and action.dtype == np.float32
    if discrete:
        assert np.array_equal(action.sum(-1), np.ones(3)) and set(action.flatten()) <= {0, 1}
    else:
        assert np.abs(action).max() <= 1.0
    greedy, _ = agent.policy(observations(agent, 3, [False] * 3), state, mode="greedy")
    assert greedy.shape == (3, ACTIONS)
    recon = agent.reconstruct(state)
    report = agent.openloop(batch, context=5)
    if "image" in keys:
        assert recon is not None and recon.shape == (3, *IMAGE) and recon.dtype == np.uint8
        assert report is not None
        true, pred = report
        assert true.shape == pred.shape == (2, 8, *IMAGE) and pred.dtype == np.uint8
        assert np.array_equal(true, batch["image"])
    else:
        assert recon is None and report is None


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("replay_value", [0.0, 0.3])
@pytest.mark.parametrize("imag_starts", IMAG_STARTS)
@pytest.mark.parametrize("loop", LOOPS)
def test_actor_critic_never_touches_the_world_model(make_agent: MakeAgent, make_batch: MakeBatch,
                                                    loop: str, imag_starts: str,
                                                    discrete: bool, replay_value: float) -> None:
    """Bitwise: no world-model parameter changes and none gets a gradient, also when the actor's
    gradient flows through the imagined dynamics (continuous actions) and when the critic also
    learns on the replay sequences."""
    agent = make_agent("both", discrete,
                       overrides=('train.imag_starts="all"',
                                  f"actor_critic.replay_value={replay_value}"))
    batch = make_batch(agent)
    run_updates(agent, lambda: batch, 1, loop, imag_starts)  # optimiser states exist
    if loop == "coupled":
        _, post = agent.train_world_model(batch)
        world_model = snapshot(agent.wm)
    else:
        world_model = snapshot(agent.wm)
        post = agent.encode_starts(make_batch(agent, seed=1))
        assert same(snapshot(agent.wm), world_model)
    assert all(value.grad_fn is None and not value.requires_grad for value in post.values())
    actor, critic = snapshot(agent.behavior.actor), snapshot(agent.behavior.critic)
    metrics = agent.train_actor_critic(post, imag_starts)
    assert same(snapshot(agent.wm), world_model)
    assert all(p.grad is None and p.requires_grad for p in agent.wm.parameters())
    assert metrics["train/grad_norm/actor"] > 0 and metrics["train/nonfinite"] == 0
    assert not same(snapshot(agent.behavior.actor), actor)
    assert not same(snapshot(agent.behavior.critic), critic)
    assert ("train/loss/critic_replay" in metrics) == (replay_value > 0)


def test_start_shapes(make_agent: MakeAgent, make_batch: MakeBatch) -> None:
    # Without the critic's replay loss, which needs the replayed rewards and flags.
    agent = make_agent("vector", overrides=("actor_critic.replay_value=0",))
    starts = agent.encode_starts(make_batch(agent, batch=3, length=5))
    assert starts["h"].shape == (3, 5, 32) and starts["z"].shape == (3, 5, 4, 4)
    last = select_starts(starts, "last")
    assert last["h"].shape == (3, 32) and last["z"].shape == (3, 4, 4)
    assert last["cont"].shape == (3,)
    assert torch.equal(last["h"], starts["h"][:, -1])
    no_cont = {"h": starts["h"], "z": starts["z"]}  # the continue head stands in
    assert math.isfinite(agent.train_actor_critic(no_cont)["train/loss/actor"])
    with pytest.raises(ValueError, match="imag_starts"):
        select_starts(starts, "first")


def counting_sampler(agent: Agent) -> tuple[Callable[[], dict[str, np.ndarray]], list[int]]:
    """A sampler of fresh random batches and the list that counts its calls."""
    calls: list[int] = []

    def sample() -> dict[str, np.ndarray]:
        calls.append(1)
        return random_batch(agent, seed=len(calls))

    return sample, calls


def test_loops_sample_and_train(make_agent: MakeAgent, make_batch: MakeBatch) -> None:
    """coupled samples once per update; sample_starts twice (a batch for the world model, a
    fresh one for the starts). Both train both parts."""
    for loop, samples in (("coupled", 3), ("sample_starts", 6)):
        agent = make_agent("vector")
        sample, calls = counting_sampler(agent)
        before = snapshot(agent)
        run_updates(agent, sample, 3, loop, "all")
        assert len(calls) == samples
        assert agent.counters == {"world_model_updates": 3, "actor_critic_updates": 3}
        after = snapshot(agent)
        for prefix in ("wm.", "behavior.actor.", "behavior.critic.", "behavior.slow_critic."):
            changed = [k for k in before if k.startswith(prefix)
                       and not torch.equal(before[k], after[k])]
            assert changed, prefix
    with pytest.raises(ValueError, match="loop"):
        run_updates(agent, sample, 1, "decoupled", "all")


def test_state_round_trip_through_torch_load(make_agent: MakeAgent,
                                             make_batch: MakeBatch) -> None:
    agent = make_agent("both", discrete=False)
    batch = make_batch(agent)
    run_updates(agent, lambda: batch, 2, "coupled", "all")
    buffer = io.BytesIO()
    torch.save(agent.save_state(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    other = make_agent("both", discrete=False, seed=1)
    assert not same(snapshot(other), snapshot(agent))
    other.load_state(state)
    assert same(snapshot(other), snapshot(agent))
    assert other.counters == agent.counters
    obs = observations(agent, 2, [True, True])
    outputs = []
    for model in (agent, other):  # acting, and training on from the restored optimisers
        torch.manual_seed(3)
        action, _ = model.policy(obs, None, mode="greedy")
        run_updates(model, lambda: batch, 1, "coupled", "all")
        outputs.append((action, snapshot(model)))
    assert np.array_equal(outputs[0][0], outputs[1][0])
    assert same(outputs[0][1], outputs[1][1])
    assert float(other.behavior.retnorm.high) != 0.0  # normaliser state came back too


def test_policy_resets_each_env_on_is_first(make_agent: MakeAgent) -> None:
    agent = make_agent("vector")
    _, state = agent.policy(observations(agent, 2, [True, True]), None)
    fresh_h = state["h"].clone()  # after a reset h is the initial path, whatever the obs
    for step in range(3):
        _, state = agent.policy(observations(agent, 2, [False, False], seed=step + 1), state)
    assert not torch.allclose(state["h"], fresh_h)
    _, state = agent.policy(observations(agent, 2, [True, False], seed=9), state)
    assert torch.allclose(state["h"][0], fresh_h[0])
    assert not torch.allclose(state["h"][1], fresh_h[1])


@pytest.mark.parametrize("loop", LOOPS)
def test_bf16_runs(make_agent: MakeAgent, make_batch: MakeBatch, loop: str) -> None:
    agent = make_agent("both", discrete=False, precision="bf16")
    batch = make_batch(agent)
    metrics = run_updates(agent, lambda: batch, 2, loop, "all")
    assert all(math.isfinite(v) for v in metrics.values()) and metrics["train/nonfinite"] == 0
    assert all(p.dtype == torch.float32 for p in agent.parameters())
    action, state = agent.policy(observations(agent, 2, [True, True]), None)
    assert np.isfinite(action).all() and state["h"].dtype == torch.float32
    assert agent.openloop(batch, 4) is not None


def test_nonfinite_steps_are_skipped(make_agent: MakeAgent, make_batch: MakeBatch) -> None:
    agent = make_agent("vector")
    good = make_batch(agent)
    run_updates(agent, lambda: good, 1, "coupled", "all")
    bad = dict(good, reward=np.full_like(good["reward"], np.nan))
    before = snapshot(agent.wm)
    adam = copy.deepcopy(agent.optimizers["world_model"].state_dict()["state"])
    for count in (1, 2):
        metrics, post = agent.train_world_model(bad)
        assert metrics["train/nonfinite"] == 1 and agent.consecutive_nonfinite == count
        assert same(snapshot(agent.wm), before)
    # Adam's moments and step counts are untouched too (the skip is decided on the device).
    after = agent.optimizers["world_model"].state_dict()["state"]
    assert after.keys() == adam.keys()
    for index, state in adam.items():
        for key, value in state.items():
            assert torch.equal(after[index][key], value), (index, key)
    behavior = snapshot(agent.behavior)
    broken = dict(post, h=torch.full_like(post["h"], np.nan))
    assert agent.train_actor_critic(broken)["train/nonfinite"] == 2  # actor and critic
    assert agent.nonfinite_runs == {"world_model": 2, "actor": 1, "critic": 1}
    assert agent.consecutive_nonfinite == 2  # the longest run of any one optimiser
    changed = [k for k, v in snapshot(agent.behavior).items()
               if not k.startswith("slow_critic") and not torch.equal(v, behavior[k])]
    assert changed == []  # nor the return normaliser's EMAs
    agent.train_world_model(good)
    agent.train_actor_critic(agent.encode_starts(good))
    assert agent.consecutive_nonfinite == 0


def test_debug_logs_shapes_once(make_agent: MakeAgent, make_batch: MakeBatch,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("dreamerctl.agent")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    monkeypatch.setenv("DREAMERCTL_DEBUG", "1")
    try:
        agent = make_agent("vector")
        batch = make_batch(agent)
        run_updates(agent, lambda: batch, 2, "coupled", "all")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    text = "\n".join(record.getMessage() for record in records)
    assert len(records) == 2, text
    assert "h (2, 8, 32)" in text and "starts_h (16, 32)" in text
    assert "imagined_feat (5, 16, 48)" in text


def test_parameter_counts_of_the_sizes() -> None:
    """Built on the meta device: shapes only, no memory. DMC-vision shapes (64x64x3, 6 actions)."""
    counts = {}
    for size in ("debug", "small", "medium", "large", "xlarge"):
        config = build_config(None, ["dmc_vision", size])
        agent = Agent.from_config({"image": Space((64, 64, 3), "uint8")}, ActSpace(False, 6),
                                  config, device="meta")
        counts[size] = {
            "world_model": sum(p.numel() for p in agent.wm.parameters()),
            "actor": sum(p.numel() for p in agent.behavior.actor.parameters()),
            "critic": sum(p.numel() for p in agent.behavior.critic.parameters()),
        }
    print()
    for size, parts in counts.items():
        total = sum(parts.values())
        detail = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in parts.items())
        print(f"{size:>7}: {total / 1e6:7.1f}M trainable ({detail})")
    totals = [sum(parts.values()) for parts in counts.values()]
    assert totals == sorted(totals)
    assert 10e6 < totals[1] < 30e6  # small: ~ the 12M-20M DreamerV3 S model
    assert 150e6 < totals[-1] < 300e6  # xlarge: ~200M


@pytest.mark.parametrize("imag_cont", ["mean", "mode"])
def test_imagined_continuation_is_the_head_probability_or_mode(make_agent: MakeAgent,
                                                               imag_cont: str) -> None:
    from dreamerctl.agent.behavior import imagine

    agent = make_agent(overrides=(f'actor_critic.imag_cont="{imag_cont}"',))
    starts = agent.wm.rssm.initial(4)
    with torch.no_grad():
        traj = imagine(agent.wm, agent.behavior, starts, horizon=3)
        probs = torch.sigmoid(agent.wm.cont(traj.feat[1:]).logits)
    expected = probs if imag_cont == "mean" else (probs > 0.5).float()
    torch.testing.assert_close(traj.cont, expected)
    # weight_t = prod_{i<=t} gamma c_i, starting from the start state's own continuation
    assert traj.weight.shape == traj.cont.shape
    assert bool((traj.weight[1:] <= traj.weight[:-1] + 1e-6).all())


@pytest.mark.parametrize("deadzone", [0.0, 0.3])
def test_imagined_rewards_below_the_deadzone_are_zero(make_agent: MakeAgent,
                                                      deadzone: float) -> None:
    """actor_critic.reward_deadzone: |r| below it counts as 0 in imagination, the rest as is
    (and so in the lambda-returns); 0 keeps the head's mean, as in the paper."""
    from dreamerctl.agent.behavior import imagine

    agent = make_agent(overrides=(f"actor_critic.reward_deadzone={deadzone}",))
    with torch.no_grad():  # a reward head that predicts something (it starts at exactly 0)
        for param in agent.wm.reward_head.parameters():
            param.normal_(0.0, 0.5)
    starts = agent.wm.rssm.initial(16)
    torch.manual_seed(0)
    with torch.no_grad():
        traj = imagine(agent.wm, agent.behavior, starts, horizon=3)
        raw = agent.wm.reward(traj.feat[1:]).mean()
    small = raw.abs() < 0.3
    assert 0 < int(small.sum()) < small.numel()  # both sides of the deadzone occur
    expected = torch.where(small, 0.0, raw) if deadzone else raw
    torch.testing.assert_close(traj.reward, expected)
    ret = lambda_return(expected, traj.cont, traj.value, agent.behavior.discount,
                        agent.behavior.ac.lam)
    torch.testing.assert_close(traj.ret, ret)


def test_replay_value_loss_ignores_each_episodes_last_step(make_agent: MakeAgent,
                                                           make_batch: MakeBatch) -> None:
    """The target at an episode's last step crosses into the next episode: weight 0 there."""
    from dreamerctl.agent.behavior import replay_value_loss

    agent = make_agent("vector")
    starts = agent.encode_starts(make_batch(agent, batch=2, length=6))
    feat = agent.wm.rssm.feat({"h": starts["h"], "z": starts["z"]})
    replay = {"feat": feat, "reward": starts["reward"], "cont": starts["cont"],
              "last": torch.ones_like(starts["last"])}
    boot = torch.zeros(2, 6)
    assert replay_value_loss(agent.behavior, replay, boot).item() == 0.0
    replay["last"] = torch.zeros_like(starts["last"])
    assert replay_value_loss(agent.behavior, replay, boot).item() > 0.0


def test_optimiser_state_of_the_earlier_non_fused_adam_loads_and_trains(
        make_agent: MakeAgent, make_batch: MakeBatch) -> None:
    # Checkpoints before fused Adam hold param groups with fused=None (torch's foreach Adam):
    # loading one must keep the fused implementation, which the device-side skip needs.
    agent = make_agent("vector")
    batch = make_batch(agent)
    run_updates(agent, lambda: batch, 2, "coupled", "all")
    state = agent.save_state()
    for saved in state["optimizers"].values():
        for group in saved["param_groups"]:
            group.update(fused=None, foreach=None)  # as torch.optim.Adam(...) saved them
    other = make_agent("vector", seed=1)
    other.load_state(state)
    for opt in other.optimizers.values():
        assert opt.adam.param_groups[0]["fused"] is True
    metrics = run_updates(other, lambda: batch, 1, "coupled", "all")
    assert metrics["train/nonfinite"] == 0
    assert other.optimizers["world_model"].adam.state_dict()["state"][0]["step"].item() == 3


def test_resumed_optimiser_follows_the_config_learning_rate(make_agent: MakeAgent,
                                                            make_batch: MakeBatch) -> None:
    agent = make_agent("vector")
    run_updates(agent, lambda: make_batch(agent), 1, "coupled", "all")
    other = make_agent("vector", overrides=("world_model.lr=0.001",))
    other.load_state(agent.save_state())  # e.g. --resume with --set world_model.lr=0.001
    assert other.optimizers["world_model"].adam.param_groups[0]["lr"] == 0.001
    assert other.optimizers["world_model"].adam.state_dict()["state"][0]["step"].item() == 1


def test_replay_targets_from_last_starts_bootstrap_with_the_critic(make_agent: MakeAgent,
                                                                   make_batch: MakeBatch) -> None:
    """imag_starts "last": the replay targets bootstrap with V(s_t) along the sequence and with
    the imagined return only at its last state. A fresh critic's values are exactly 0, so the
    targets are hand-computable: R_3 = 10 (imagined), R_2 = 1 + g 10, R_t = 1 + g lam R_{t+1}."""
    from dreamerctl.agent.behavior import replay_boot
    from dreamerctl.agent.maths import replay_lambda_return

    agent = make_agent("vector")
    behavior = agent.behavior
    starts = agent.encode_starts(make_batch(agent, batch=2, length=4))
    feat = agent.wm.rssm.feat({"h": starts["h"], "z": starts["z"]})
    boot = replay_boot(behavior, feat, torch.tensor([10.0, 20.0]), "last")
    assert torch.equal(boot, torch.tensor([[0.0, 0.0, 0.0, 10.0], [0.0, 0.0, 0.0, 20.0]]))
    ones, zeros = torch.ones(2, 4), torch.zeros(2, 4)
    ret = replay_lambda_return(ones, ones, zeros, boot, behavior.discount, behavior.ac.lam)
    g, lam = 1.0 - 1.0 / behavior.ac.discount_horizon, behavior.ac.lam
    r2 = 1 + g * 10
    r1 = 1 + g * lam * r2
    torch.testing.assert_close(ret[0], torch.tensor([1 + g * lam * r1, r1, r2]))
    # "all": every state was imagined from; its return is its bootstrap, as the 2024 code.
    every = torch.arange(8.0)
    assert torch.equal(replay_boot(behavior, feat, every, "all"), every.reshape(2, 4))
