"""The world model: encoders, RSSM and heads, and its loss (paper eq. 4-5, 2023 code's WorldModel).

A batch holds at index t the observation o_t, the reward r_t and flags that came with it, and
the action a_t chosen from o_t. The RSSM step into t therefore uses a_{t-1}.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dreamerctl.agent.distributions import MSE, Bernoulli, Dist, SymlogMSE, TwoHot
from dreamerctl.agent.maths import kl_losses, symlog, twohot_bins
from dreamerctl.agent.nets import MLP, ConvDecoder, ConvEncoder, Head
from dreamerctl.agent.rssm import RSSM, State
from dreamerctl.config.schema import WorldModelConfig
from dreamerctl.spaces import ActSpace, Space

OBS_KEYS = ("image", "vector")


def previous_actions(action: Tensor) -> Tensor:
    """a_{t-1} for each t of (B, T, A): zeros at t = 0 (the RSSM also zeroes it at is_first)."""
    return torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)


def used_keys(obs_space: dict[str, Space]) -> list[str]:
    """The observation keys the agent reads: an image (H, W, C) and/or a vector (D,)."""
    keys = [key for key in OBS_KEYS if key in obs_space]
    if not keys:
        raise ValueError(
            f"the agent needs an 'image' or 'vector' observation, got {list(obs_space)}")
    if "image" in keys and len(obs_space["image"].shape) != 3:
        raise ValueError(f"image observations must be (H, W, C), got {obs_space['image'].shape}")
    if "vector" in keys and len(obs_space["vector"].shape) != 1:
        raise ValueError(f"vector observations must be (D,), got {obs_space['vector'].shape}")
    return keys


class WorldModel(nn.Module):
    bins: Tensor

    def __init__(self, obs_space: dict[str, Space], act_space: ActSpace,
                 wm: WorldModelConfig) -> None:
        super().__init__()
        self.keys = used_keys(obs_space)
        self.free_bits = wm.free_bits
        self.cont_terminal_weight = wm.cont_terminal_weight
        self.scales = {key: getattr(wm.loss_scales, key)
                       for key in (*self.keys, "reward", "cont", "dyn", "rep")}
        embed = 0
        if "image" in self.keys:
            self.image_shape = tuple(obs_space["image"].shape)
            self.image_encoder = ConvEncoder(self.image_shape, wm.cnn_depth, wm.kernel)
            embed += self.image_encoder.out_dim
        if "vector" in self.keys:
            self.vector_dim = obs_space["vector"].shape[0]
            self.vector_encoder = MLP(self.vector_dim, wm.layers, wm.units)
            embed += self.vector_encoder.out_dim
        self.rssm = RSSM(embed, act_space.size, wm)
        feat = self.rssm.feat_dim
        if "image" in self.keys:
            self.image_decoder = ConvDecoder(feat, self.image_shape, wm.cnn_depth, wm.kernel)
        if "vector" in self.keys:
            self.vector_decoder = Head(feat, wm.layers, wm.units, self.vector_dim)
        # Zero-initialised reward output: predicted rewards start at exactly 0 (paper, sec. 2).
        self.reward_head = Head(feat, wm.layers, wm.units, wm.bins, out_scale=0.0)
        self.cont_head = Head(feat, wm.layers, wm.units, 1)
        self.register_buffer("bins", twohot_bins(wm.bins), persistent=False)

    # -------------------------------------------------------------------------- encoders
    def encode(self, obs: dict[str, Tensor]) -> Tensor:
        """Observations with leading dims (...) -> embedding (..., E)."""
        parts = []
        if "image" in self.keys:
            parts.append(self.image_encoder(obs["image"]))
        if "vector" in self.keys:
            parts.append(self.vector_encoder(symlog(obs["vector"].float())))
        return torch.cat(parts, -1)

    # ----------------------------------------------------------------------------- heads
    def reward(self, feat: Tensor) -> TwoHot:
        return TwoHot(self.reward_head(feat), self.bins)

    def cont(self, feat: Tensor) -> Bernoulli:
        return Bernoulli(self.cont_head(feat)[..., 0])

    def decode(self, feat: Tensor) -> dict[str, Dist]:
        """Observation predictions: image means in [-0.5, 0.5] (MSE summed over H, W, C) and
        vectors in symlog space (MSE summed over D)."""
        out: dict[str, Dist] = {}
        if "image" in self.keys:
            out["image"] = MSE(self.image_decoder(feat), 3)
        if "vector" in self.keys:
            out["vector"] = SymlogMSE(self.vector_decoder(feat), 1)
        return out

    # ------------------------------------------------------------------------------ loss
    def observe(self, data: dict[str, Tensor], state: State | None = None
                ) -> tuple[State, State]:
        """Posterior and prior (B, T, ...) of a batch, with the actions shifted to a_{t-1}."""
        embed = self.encode(data)  # (B, T, E)
        return self.rssm.observe(embed, previous_actions(data["action"]), data["is_first"],
                                 state)

    def loss(self, data: dict[str, Tensor]) -> tuple[dict[str, Tensor], State]:
        """Per-step losses name -> (B, T) and the posterior."""
        post, prior = self.observe(data)
        feat = self.rssm.feat(post)  # (B, T, F)
        losses = {}
        for key, dist in self.decode(feat).items():
            target = data[key].float() / 255.0 - 0.5 if key == "image" else data[key]
            losses[key] = dist.loss(target)
        losses["reward"] = self.reward(feat).loss(data["reward"])
        # A time limit (is_last without is_terminal) is not a death: only terminals stop.
        terminal = data["is_terminal"].float()
        losses["cont"] = self.cont(feat).loss(1.0 - terminal) * (
            1.0 + (self.cont_terminal_weight - 1.0) * terminal)
        losses["dyn"], losses["rep"] = kl_losses(post["logits"], prior["logits"], self.free_bits)
        assert set(losses) == set(self.scales), (sorted(losses), sorted(self.scales))
        return losses, post

    def total(self, losses: dict[str, Tensor]) -> Tensor:
        """sum(scale * mean loss) over the losses, one scale each."""
        return sum((self.scales[key] * loss.mean() for key, loss in losses.items()),
                   start=torch.zeros((), device=self.bins.device))
