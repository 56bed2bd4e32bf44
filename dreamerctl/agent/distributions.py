"""Output distributions behind one interface, so that losses never branch on the head type.

Every distribution computes in float32 whatever precision produced its parameters: log-probs,
entropies and KLs are where bf16 loses the most. Event dimensions are summed; `loss(target)` is
`-log_prob(target)` with the batch shape (...) kept.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamerctl.agent.maths import symexp, symlog, symmetric_mean, twohot_encode


class Dist(ABC):
    """mode(), sample(), log_prob(x), entropy(), loss(target)."""

    @abstractmethod
    def mode(self) -> Tensor: ...

    @abstractmethod
    def sample(self) -> Tensor: ...

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor: ...

    @abstractmethod
    def entropy(self) -> Tensor: ...

    def mean(self) -> Tensor:
        return self.mode()

    def loss(self, target: Tensor) -> Tensor:
        return -self.log_prob(target)


def unimix_logits(logits: Tensor, unimix: float) -> Tensor:
    """Log-probabilities (..., C) of softmax(logits) mixed with `unimix` of the uniform
    distribution (paper, section "Robust predictors"): no class ever has a zero probability, which
    keeps KLs and log-probs bounded."""
    logp = logits.float().log_softmax(-1)
    if unimix <= 0:
        return logp
    probs = (1.0 - unimix) * logp.exp() + unimix / logits.shape[-1]
    return torch.log(probs)


class OneHotCategorical(Dist):
    """Categorical over the last axis with straight-through one-hot samples and mode: the forward
    value is exactly one-hot, the gradient is that of the probabilities."""

    def __init__(self, logits: Tensor, unimix: float = 0.0) -> None:
        self.logits = unimix_logits(logits, unimix)  # (..., C) normalised log-probs
        self.probs = self.logits.exp()

    def _straight_through(self, index: Tensor) -> Tensor:
        # scatter rather than F.one_hot, which checks the index range with host syncs on CPU.
        hard = torch.zeros_like(self.probs).scatter_(-1, index[..., None], 1.0)
        # probs - sg(probs) is exactly 0 in the forward pass, so the value stays exactly one-hot.
        return hard + (self.probs - self.probs.detach())

    def mode(self) -> Tensor:
        return self._straight_through(self.logits.argmax(-1))

    def sample(self) -> Tensor:
        # Gumbel-max: a categorical sample with no host sync and no per-element Python work.
        uniform = torch.rand_like(self.logits).clamp(1e-20, 1.0)
        return self._straight_through((self.logits - torch.log(-torch.log(uniform))).argmax(-1))

    def log_prob(self, x: Tensor) -> Tensor:
        return (x.float() * self.logits).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.logits).sum(-1)


class TwoHot(Dist):
    """A categorical over `bins` (symlog space) read as a real number: mean = symexp(sum p * b).
    Trained by cross-entropy against the two-hot encoding of symlog(target) (paper eq. 10)."""

    def __init__(self, logits: Tensor, bins: Tensor) -> None:
        self.logp = logits.float().log_softmax(-1)  # (..., n)
        self.bins = bins

    def mode(self) -> Tensor:
        return symexp(symmetric_mean(self.logp.exp(), self.bins))

    def sample(self) -> Tensor:
        return self.mode()

    def log_prob(self, x: Tensor) -> Tensor:
        return (twohot_encode(symlog(x.float()), self.bins) * self.logp).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.logp.exp() * self.logp).sum(-1)


class Bernoulli(Dist):
    """A binary variable from logits (...): mode is 0/1, mean the probability."""

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits.float()

    def mode(self) -> Tensor:
        return (self.logits > 0).float()

    def mean(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def sample(self) -> Tensor:
        return torch.bernoulli(self.mean())

    def log_prob(self, x: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits, x.float(), reduction="none")

    def entropy(self) -> Tensor:
        p = self.mean()
        return F.binary_cross_entropy_with_logits(self.logits, p, reduction="none")


class BoundedNormal(Dist):
    """Continuous actions (..., A): mean tanh(raw), std = (max - min) * sigmoid(raw + 2) + min,
    as the 2023 code. Samples are reparameterised and clipped to [-1, 1] straight-through, so the
    env sees valid actions and dynamics gradients still reach the actor."""

    def __init__(self, raw_mean: Tensor, raw_std: Tensor, min_std: float, max_std: float) -> None:
        self.loc = torch.tanh(raw_mean.float())
        self.std = (max_std - min_std) * torch.sigmoid(raw_std.float() + 2.0) + min_std

    def mode(self) -> Tensor:
        return self.loc

    def sample(self) -> Tensor:
        x = self.loc + self.std * torch.randn_like(self.loc)
        # Exactly the clipped value forward, the unclipped sample's gradient backward.
        return x.detach().clamp(-1.0, 1.0) + (x - x.detach())

    def log_prob(self, x: Tensor) -> Tensor:
        z = (x.float() - self.loc) / self.std
        return (-0.5 * z**2 - torch.log(self.std) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(self.std)).sum(-1)


class MSE(Dist):
    """A deterministic prediction scored by squared error summed over the last `dims` axes.
    Its log_prob is the negative summed squared error (a unit Gaussian up to constants)."""

    def __init__(self, mean: Tensor, dims: int) -> None:
        self.pred = mean.float()
        self.dims = tuple(range(-dims, 0))

    def mode(self) -> Tensor:
        return self.pred

    def sample(self) -> Tensor:
        return self.pred

    def log_prob(self, x: Tensor) -> Tensor:
        return -((self.pred - x.float()) ** 2).sum(self.dims)

    def entropy(self) -> Tensor:
        raise NotImplementedError("an MSE prediction has no entropy")


class SymlogMSE(MSE):
    """Squared error in symlog space (paper eq. 9); the prediction lives in symlog space."""

    def mode(self) -> Tensor:
        return symexp(self.pred)

    def sample(self) -> Tensor:
        return self.mode()

    def log_prob(self, x: Tensor) -> Tensor:
        return -((self.pred - symlog(x.float())) ** 2).sum(self.dims)
