"""run.compile (issue 8): the compiled loss computations compute what the eager ones compute
(forward and gradients, with the compiled code drawing its random numbers as eager code does),
compile once rather than on every update, and leave checkpoints as they were.

Compiling costs tens of seconds on a CPU, so one compiled agent serves every test here."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch._dynamo
import torch._inductor.config
from conftest import new_agent, random_batch

from dreamerctl.agent.agent import TRAIN_KEYS, Agent, flatten_starts
from dreamerctl.agent.loops import run_updates
from dreamerctl.agent.optim import frozen

# Replay sequences as starts (imag_starts "all") with the critic's replay loss on, so that every
# branch of the three losses is compiled.
OVERRIDES = ('train.imag_starts="all"', "actor_critic.replay_value=0.3")


@pytest.fixture(scope="module")
def agents() -> Iterator[tuple[Agent, Agent]]:
    """An eager agent and a compiled one with the same parameters. The compiled one draws its
    random numbers from torch's generator exactly as eager code does (inductor's fallback_random),
    so the two can be compared value for value."""
    torch._dynamo.reset()
    with torch._inductor.config.patch(fallback_random=True):
        yield new_agent(overrides=OVERRIDES), new_agent(overrides=OVERRIDES, compile="default")
    torch._dynamo.reset()


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def test_compiled_losses_and_gradients_match_eager(agents: tuple[Agent, Agent]) -> None:
    eager, compiled = agents
    for name, value in eager.state_dict().items():  # the same parameters to begin with
        assert torch.equal(value, compiled.state_dict()[name]), name
    batch = random_batch(eager, batch=2, length=8, seed=3)
    results = {}
    for agent in (eager, compiled):
        data = agent.tensors(batch, (*agent.wm.keys, *TRAIN_KEYS))
        torch.manual_seed(7)
        losses, total, post = agent._world_model_loss(data)
        total.backward()
        wm_grads = grads(agent.wm)
        agent.wm.zero_grad(set_to_none=True)
        starts = {key: value.detach() for key, value in post.items()}
        starts.update(cont=1.0 - data["is_terminal"].float(), reward=data["reward"],
                      last=data["is_last"].float())
        with frozen(agent.wm, agent.behavior.critic):
            traj, a_loss, entropy = agent._actor_loss(flatten_starts(starts))
            a_loss.backward()
        actor_grads = grads(agent.behavior.actor)
        agent.behavior.zero_grad(set_to_none=True)
        c_loss, r_loss = agent._critic_loss(traj, starts, "all")
        c_loss.backward()
        critic_grads = grads(agent.behavior.critic)
        agent.behavior.zero_grad(set_to_none=True)
        results[agent.compile_mode] = {
            "losses": {key: loss.detach() for key, loss in losses.items()},
            "values": torch.stack([total, a_loss, entropy, c_loss, r_loss]).detach(),
            "wm": wm_grads, "actor": actor_grads, "critic": critic_grads,
        }
    want, got = results["off"], results["default"]
    assert r_loss is not None and torch.isfinite(got["values"]).all()
    for key, loss in want["losses"].items():
        torch.testing.assert_close(got["losses"][key], loss, rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(got["values"], want["values"], rtol=1e-4, atol=1e-5)
    for part in ("wm", "actor", "critic"):
        assert got[part].keys() == want[part].keys() and want[part], part
        for name, grad in want[part].items():
            torch.testing.assert_close(got[part][name], grad, rtol=1e-3, atol=1e-5,
                                       msg=f"{part} {name}")


def test_compiled_agent_trains_without_recompiling(agents: tuple[Agent, Agent]) -> None:
    _, compiled = agents
    pool = [random_batch(compiled, batch=2, length=8, seed=s) for s in range(3)]
    batches = iter(pool * 2)
    first = run_updates(compiled, lambda: next(batches), 1, "coupled", "all")
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert frames >= 3  # the three losses were compiled
    later = run_updates(compiled, lambda: next(batches), 4, "coupled", "all")
    # New batches of the same shapes reuse the compiled code.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames
    for metrics in (first, later):
        assert metrics["train/nonfinite"] == 0
        assert all(np.isfinite(value) for value in metrics.values())
    assert "train/loss/critic_replay" in later
    assert compiled.counters == {"world_model_updates": 5, "actor_critic_updates": 5}


def test_compiled_agent_checkpoints_like_an_eager_one(agents: tuple[Agent, Agent]) -> None:
    eager, compiled = agents
    state = compiled.save_state()
    assert state["modules"].keys() == eager.save_state()["modules"].keys()
    eager.load_state(state)  # a compiled run's checkpoint loads into an eager agent
    for name, value in compiled.state_dict().items():
        assert torch.equal(eager.state_dict()[name], value.cpu()), name
