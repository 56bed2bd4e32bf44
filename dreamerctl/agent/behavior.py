"""Actor, critic, slow critic and return normaliser, and the imagination losses (paper sec. 3,
2023 code's ImagActorCritic / VFunction).

Trajectories are time-major: states s_0..s_H (H+1, N, ...), actions a_0..a_{H-1} (H, N, A).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dreamerctl.agent.distributions import BoundedNormal, Dist, OneHotCategorical, TwoHot
from dreamerctl.agent.maths import (
    ReturnNormaliser,
    discount_weights,
    lambda_return,
    replay_lambda_return,
    twohot_bins,
)
from dreamerctl.agent.nets import Head
from dreamerctl.agent.rssm import State
from dreamerctl.agent.world_model import WorldModel
from dreamerctl.config.schema import ActorCriticConfig
from dreamerctl.spaces import ActSpace


@dataclass
class Trajectory:
    """An imagined batch: feat (H+1, N, F) of s_0..s_H, actions (H, N, A), reward and cont of
    s_1..s_H (H, N), value V(s_0..s_H) (H+1, N), returns R_0..R_{H-1} (H, N), weight (H, N)."""

    feat: Tensor
    action: Tensor
    reward: Tensor
    cont: Tensor
    value: Tensor
    ret: Tensor
    weight: Tensor


class Behavior(nn.Module):
    bins: Tensor

    def __init__(self, feat_dim: int, act_space: ActSpace, ac: ActorCriticConfig,
                 bins: int) -> None:
        super().__init__()
        self.ac = ac
        self.discrete = act_space.discrete
        self.discount = 1.0 - 1.0 / ac.discount_horizon
        self.grad = ac.actor_grad_discrete if self.discrete else ac.actor_grad_continuous
        out = act_space.size if self.discrete else 2 * act_space.size
        self.actor = Head(feat_dim, ac.layers, ac.units, out)
        # Zero-initialised value output: values start at exactly 0 (paper, sec. 2).
        self.critic = Head(feat_dim, ac.layers, ac.units, bins, out_scale=0.0)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.retnorm = ReturnNormaliser(ac.retnorm_decay, ac.retnorm_low, ac.retnorm_high,
                                        ac.retnorm_max)
        self.register_buffer("bins", twohot_bins(bins), persistent=False)

    def policy(self, feat: Tensor) -> Dist:
        """pi(a | s) from feat (..., F): one-hot categorical (1% unimix) or bounded normal."""
        raw = self.actor(feat)
        if self.discrete:
            return OneHotCategorical(raw, self.ac.unimix)
        mean, std = raw.chunk(2, -1)
        return BoundedNormal(mean, std, self.ac.min_std, self.ac.max_std)

    def value(self, feat: Tensor) -> TwoHot:
        return TwoHot(self.critic(feat), self.bins)

    def slow_value(self, feat: Tensor) -> TwoHot:
        return TwoHot(self.slow_critic(feat), self.bins)

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        """slow <- (1 - rate) slow + rate critic, once per update."""
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(fast, self.ac.slow_critic_rate)


def imagine(wm: WorldModel, behavior: Behavior, starts: State, horizon: int) -> Trajectory:
    """Imagine `horizon` steps from starts h (N, D), z (N, K, C) and optionally cont (N,), the
    start's own continuation 1 - is_terminal (else the continue head's)."""
    def act(feat: Tensor) -> Tensor:
        # The actor reads states without gradient (2023 code: actor(sg(state))).
        return behavior.policy(feat.detach()).sample()

    states, action = wm.rssm.imagine(starts, act, horizon)
    feat = wm.rssm.feat(states)  # (H+1, N, F)
    # Reward and continuation for step t+1 come from the heads at s_{t+1}. The continuation is
    # the head's probability by default (as NM512/dreamerv3-torch, which reproduces the paper's
    # scores): a continue head that is not yet sure still lowers the value of states near a
    # termination. imag_cont = "mode" rounds it as the 2023 code does, which gives the actor no
    # signal about terminations until the head predicts them with p > 0.5 (CartPole).
    cont_dist = wm.cont(feat)
    cont_all = cont_dist.mean() if behavior.ac.imag_cont == "mean" else cont_dist.mode()
    reward = wm.reward(feat[1:]).mean()  # (H, N)
    if behavior.ac.reward_deadzone > 0:
        # Off in the paper. The two-hot head keeps ~1e-4 of mass on rewards it saw elsewhere;
        # summed over the discount's horizon that pays every live state (RESULTS, FrozenLake).
        reward = torch.where(reward.abs() < behavior.ac.reward_deadzone, 0.0, reward)
    cont = cont_all[1:]  # (H, N)
    first = starts["cont"].float() if "cont" in starts else cont_all[0]
    value = behavior.value(feat).mean()  # (H+1, N)
    ret = lambda_return(reward, cont, value, behavior.discount, behavior.ac.lam)
    weight = discount_weights(torch.cat([first[None], cont]), behavior.discount)
    return Trajectory(feat, action, reward, cont, value, ret, weight)


def actor_loss(behavior: Behavior, traj: Trajectory) -> tuple[Tensor, Tensor]:
    """The actor's loss (scalar) and mean entropy (paper eq. 11).

    Advantage (R_t - V(s_t)) / S with S from the return normaliser (updated with this batch
    first). "reinforce": -log pi(sg a_t | s_t) sg(adv); "dynamics": -adv, differentiated through
    the imagined dynamics. Both minus the entropy bonus, weighted by the continuation weights.
    """
    behavior.retnorm.update(traj.ret)
    adv = (traj.ret - traj.value[:-1]) / behavior.retnorm.scale()  # (H, N)
    # The actor reads states without gradient: its own gradient reaches it through actions only.
    policy = behavior.policy(traj.feat[:-1].detach())
    if behavior.grad == "reinforce":
        loss = -policy.log_prob(traj.action.detach()) * adv.detach()
    else:
        loss = -adv
    entropy = policy.entropy()  # (H, N)
    loss = loss - behavior.ac.entropy * entropy
    return (loss * traj.weight).mean(), entropy.mean()


def critic_loss(behavior: Behavior, traj: Trajectory) -> Tensor:
    """Two-hot cross-entropy toward sg(R_t) plus slow_reg x toward the slow critic's mean, at
    s_0..s_{H-1}, weighted (2023 code's VFunction.loss)."""
    feat = traj.feat[:-1].detach()
    dist = behavior.value(feat)
    with torch.no_grad():
        slow = behavior.slow_value(feat).mean()
    loss = dist.loss(traj.ret.detach()) + behavior.ac.slow_reg * dist.loss(slow)
    return (loss * traj.weight).mean()


def replay_boot(behavior: Behavior, feat: Tensor, start_ret: Tensor, imag_starts: str
                ) -> Tensor:
    """The value estimates (B, T) that the replay targets bootstrap with, no gradient.

    feat (B, T, F): the replayed posterior; start_ret: R_0 imagined from each start, (B * T,)
    for imag_starts "all", (B,) for "last". "all": the imagined return from every state (the
    2024 code). "last": only the last state was imagined from; the others bootstrap with the
    critic's own value V(s_t), i.e. TD(lambda) along the real sequence, so that the critic
    learns from every replayed step (real terminations included) at the cost of one critic
    pass over B x T states, not from its B imagined starts alone.
    """
    lead = feat.shape[:2]
    if imag_starts == "all":
        return start_ret.detach().reshape(lead)
    with torch.no_grad():
        value = behavior.value(feat[:, :-1]).mean()
    return torch.cat([value, start_ret.detach().reshape(lead[0], 1).to(value.dtype)], 1)


def replay_value_loss(behavior: Behavior, replay: dict[str, Tensor], boot: Tensor) -> Tensor:
    """The critic's loss on the replay sequences its imagination started from (the 2024
    DreamerV3 code's `repval`), scalar.

    replay: feat (B, T, F) of the posterior, reward, cont = 1 - is_terminal and last = is_last
    (B, T); boot (B, T): the value estimate of each of those states (`replay_boot`). Targets are
    lambda-returns along the real sequence (real rewards and terminations, bootstrapped with
    `boot`), so values learn what happened in the data over up to T steps rather than only the
    15 imagined ones. Two-hot cross-entropy plus slow_reg x toward the slow critic, at steps
    0..T-2 that are not an episode's last step.
    """
    feat = replay["feat"][:, :-1].detach()
    with torch.no_grad():
        ret = replay_lambda_return(replay["reward"], replay["cont"], replay["last"],
                                   boot.detach(), behavior.discount, behavior.ac.lam)
        slow = behavior.slow_value(feat).mean()
    dist = behavior.value(feat)
    loss = dist.loss(ret) + behavior.ac.slow_reg * dist.loss(slow)
    weight = 1.0 - replay["last"][:, :-1]
    return (loss * weight).mean()
