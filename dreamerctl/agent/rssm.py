"""The recurrent state-space model (paper section 2, 2023 code's nets.RSSM).

A state is a dict: h (..., D) deterministic GRU state in float32, z (..., K, C) straight-through
one-hot sample, and where it came from a distribution, logits (..., K, C) (log-probabilities after
the 1% uniform mix). feat(state) = concat(h, flatten(z)) is what every head reads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from dreamerctl.agent.distributions import OneHotCategorical, unimix_logits
from dreamerctl.agent.nets import NORM_EPS, DenseNormAct, linear
from dreamerctl.config.schema import WorldModelConfig

State = dict[str, Tensor]


class LayerNormGRU(nn.Module):
    """The 2023 code's GRU: one linear layer over concat(x, h) gives reset, candidate and update
    pre-activations, normalised together; the update gate has bias -1 so that early in training
    the state mostly carries over."""

    def __init__(self, in_dim: int, units: int) -> None:
        super().__init__()
        self.linear = linear(in_dim + units, 3 * units, bias=False)
        self.norm = nn.LayerNorm(3 * units, eps=NORM_EPS)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """x (N, in_dim), h (N, D) float32 -> new h (N, D) float32."""
        parts = self.norm(self.linear(torch.cat([x, h.to(x.dtype)], -1))).float()
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        # The state accumulates in float32 even under bf16 autocast.
        return update * cand + (1.0 - update) * h


def scale_action(action: Tensor) -> Tensor:
    """a / max(1, |a|) with the factor not differentiated (2023 code, action_clip=1)."""
    return action * (1.0 / torch.clamp(action.abs(), min=1.0)).detach()


class RSSM(nn.Module):
    def __init__(self, embed_dim: int, act_dim: int, wm: WorldModelConfig) -> None:
        super().__init__()
        self.deter, self.stoch, self.classes = wm.deter, wm.stoch, wm.classes
        self.unimix = wm.unimix
        latent = wm.stoch * wm.classes
        self.img_in = DenseNormAct(latent + act_dim, wm.hidden)
        self.gru = LayerNormGRU(wm.hidden, wm.deter)
        self.img_out = DenseNormAct(wm.deter, wm.hidden)
        self.img_stats = linear(wm.hidden, latent)
        # obs_out is one linear layer over concat(h, embed), split in two so that the embedding
        # half runs once over all (B, T) before the time loop. Both halves take the whole
        # layer's fan, as the one layer of the 2023 code: with fans of their own, h weighed
        # ~4.5x more against a 4,096-d image embedding at init (issue 19).
        fan_in = wm.deter + embed_dim
        self.obs_h = linear(wm.deter, wm.hidden, bias=False, fan_in=fan_in)
        self.obs_e = linear(embed_dim, wm.hidden, bias=False, fan_in=fan_in)
        self.obs_norm = nn.Sequential(nn.LayerNorm(wm.hidden, eps=NORM_EPS), nn.SiLU())
        self.obs_stats = linear(wm.hidden, latent)
        self.initial_h = nn.Parameter(torch.zeros(wm.deter)) if wm.initial == "learned" else None
        self.feat_dim = wm.deter + latent

    # ------------------------------------------------------------------------------ pieces
    def feat(self, state: State) -> Tensor:
        """concat(h, flatten(z)): (..., D + K*C)."""
        z = state["z"]
        return torch.cat([state["h"].to(z.dtype), z.flatten(-2)], -1)

    def _logits(self, x: Tensor) -> Tensor:
        """Stats layer output (..., K*C) -> unimix log-probs (..., K, C) in float32."""
        return unimix_logits(x.reshape(*x.shape[:-1], self.stoch, self.classes), self.unimix)

    def prior_logits(self, h: Tensor) -> Tensor:
        """The prior p(z | h): (..., D) -> (..., K, C)."""
        return self._logits(self.img_stats(self.img_out(h)))

    def post_logits(self, h: Tensor, embed_proj: Tensor) -> Tensor:
        """The posterior q(z | h, embed) from h (..., D) and obs_e(embed) (..., hidden)."""
        return self._logits(self.obs_stats(self.obs_norm(self.obs_h(h) + embed_proj)))

    def initial(self, n: int) -> State:
        """The state before the first step: h0 = tanh(learned vector), z0 = mode of the prior at
        h0 without gradient, as the 2023 code's mode() (or zeros with initial = "zeros");
        h (n, D), z (n, K, C)."""
        device = self.img_stats.weight.device
        if self.initial_h is None:
            return {"h": torch.zeros(n, self.deter, device=device),
                    "z": torch.zeros(n, self.stoch, self.classes, device=device)}
        h = torch.tanh(self.initial_h.float())[None]
        z = OneHotCategorical(self.prior_logits(h)).mode().detach()
        return {"h": h.expand(n, -1), "z": z.expand(n, -1, -1)}

    def reset(self, state: State, action: Tensor, is_first: Tensor,
              init: State | None = None) -> tuple[State, Tensor]:
        """Where is_first (N,), replace the state by `init` (default: initial(1)) and the action
        by zeros."""
        init = self.initial(1) if init is None else init
        first = is_first.bool()
        h = torch.where(first[:, None], init["h"], state["h"])
        z = torch.where(first[:, None, None], init["z"].to(state["z"].dtype), state["z"])
        return {"h": h, "z": z}, torch.where(first[:, None], 0.0, action)

    def _recur(self, state: State, action: Tensor) -> Tensor:
        """The deterministic step: h_t = GRU(img_in(z_{t-1}, a_{t-1}), h_{t-1}), (N, D)."""
        z = state["z"].flatten(-2)
        x = self.img_in(torch.cat([z, scale_action(action).to(z.dtype)], -1))
        return self.gru(x, state["h"])

    # ------------------------------------------------------------------------------- steps
    def img_step(self, state: State, action: Tensor) -> State:
        """One prior step from state (N, ...) with the action taken there (N, A)."""
        h = self._recur(state, action)
        logits = self.prior_logits(h)
        return {"h": h, "z": OneHotCategorical(logits).sample(), "logits": logits}

    def obs_step(self, state: State, action: Tensor, embed: Tensor, is_first: Tensor) -> State:
        """One posterior step for acting: state (N, ...), previous action (N, A), embedding of
        the new observation (N, E), is_first (N,) resets the state and action first."""
        state, action = self.reset(state, action, is_first)
        h = self._recur(state, action)
        logits = self.post_logits(h, self.obs_e(embed))
        return {"h": h, "z": OneHotCategorical(logits).sample(), "logits": logits}

    def observe(self, embed: Tensor, action: Tensor, is_first: Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Posterior and prior over a sequence.

        embed (B, T, E); action (B, T, A) is the PREVIOUS action of each step (a_{t-1}, zero at
        t = 0); is_first (B, T) resets to the initial state inside the sequence. Returns post and
        prior with h (B, T, D), z (B, T, K, C), logits (B, T, K, C).
        """
        batch, length = embed.shape[:2]
        if state is None:
            state = self.initial(batch)
        state = {"h": state["h"], "z": state["z"]}
        embed_proj = self.obs_e(embed)  # (B, T, hidden), once for all steps
        init = self.initial(1)
        hs, zs, logits = [], [], []
        for t in range(length):
            state, prev_action = self.reset(state, action[:, t], is_first[:, t], init)
            h = self._recur(state, prev_action)
            logit = self.post_logits(h, embed_proj[:, t])
            state = {"h": h, "z": OneHotCategorical(logit).sample()}
            hs.append(h)
            zs.append(state["z"])
            logits.append(logit)
        h = torch.stack(hs, 1)  # (B, T, D)
        post = {"h": h, "z": torch.stack(zs, 1), "logits": torch.stack(logits, 1)}
        # The prior is not needed inside the loop: compute it for all (B, T) at once.
        prior_logits = self.prior_logits(h)
        prior = {"h": h, "z": OneHotCategorical(prior_logits).sample(), "logits": prior_logits}
        return post, prior

    def imagine(self, start: State, policy: Callable[[Tensor], Tensor],
                horizon: int) -> tuple[State, Tensor]:
        """Roll the prior forward from start (N, ...) with actions a_t = policy(feat(s_t)).

        Returns the states s_0..s_H stacked time-major, h (H+1, N, D), z (H+1, N, K, C), and the
        actions a_0..a_{H-1} (H, N, A).
        """
        state = {"h": start["h"], "z": start["z"]}
        hs, zs, actions = [state["h"]], [state["z"]], []
        for _ in range(horizon):
            action = policy(self.feat(state))
            state = self.img_step(state, action)
            hs.append(state["h"])
            zs.append(state["z"])
            actions.append(action)
        return {"h": torch.stack(hs), "z": torch.stack(zs)}, torch.stack(actions)

    def rollout(self, start: State, actions: Tensor) -> State:
        """Open-loop prior states for given actions (B, L, A), a[:, i] taken in the state before
        step i: h (B, L, D), z (B, L, K, C)."""
        state = {"h": start["h"], "z": start["z"]}
        hs, zs = [], []
        for i in range(actions.shape[1]):
            state = self.img_step(state, actions[:, i])
            hs.append(state["h"])
            zs.append(state["z"])
        return {"h": torch.stack(hs, 1), "z": torch.stack(zs, 1)}
