"""The DreamerV3 maths as pure functions (plus the return normaliser, whose only state is two
EMAs). Every function here is pinned by a golden test in tests/agent/test_agent_maths.py.

Shapes: H horizon, N imagined starts, K latents, C classes, n bins.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dreamerctl.agent.collective import gather_cat


def symlog(x: Tensor) -> Tensor:
    """sign(x) * log(1 + |x|) (paper eq. 9): compresses large magnitudes, keeps small ones."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """The inverse of `symlog`: sign(x) * (exp(|x|) - 1)."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def twohot_bins(count: int, device: torch.device | str | None = None) -> Tensor:
    """Bin positions in symlog space: linspace(-20, 20, count); the support is their symexp.

    Made exactly antisymmetric (a float32 linspace is not), so the middle bin is exactly 0."""
    bins = torch.linspace(-20.0, 20.0, count, dtype=torch.float64, device=device)
    return ((bins - bins.flip(0)) / 2).float()


def symmetric_mean(probs: Tensor, bins: Tensor) -> Tensor:
    """sum(probs * bins) over the last axis, added in mirrored pairs: with antisymmetric bins and
    uniform probabilities the result is exactly 0, where a left-to-right sum is not (the 2024
    code's fix), so zero-initialised reward and value heads predict exactly 0."""
    terms = probs * bins  # (..., n)
    half = terms.shape[-1] // 2
    pairs = terms[..., :half].flip(-1) + terms[..., -half:]
    middle = terms[..., half:half + 1].sum(-1) if terms.shape[-1] % 2 else 0.0
    return pairs.sum(-1) + middle


def twohot_encode(x: Tensor, bins: Tensor) -> Tensor:
    """Two-hot targets (..., n) for values x (...) already in bin space (symlog applied).

    The weight goes to the two neighbouring bins in proportion to closeness, so the encoding's
    expectation over `bins` equals x; values outside the range go to the end bin.
    """
    x = x.float().clamp(bins[0], bins[-1])
    below = (torch.searchsorted(bins, x.contiguous(), right=True) - 1).clamp(0, len(bins) - 1)
    above = (below + 1).clamp(max=len(bins) - 1)
    # On the last bin below == above and x - bins[below] == 0: all weight stays on `below`.
    # A NaN stays NaN (rather than landing on a bin), so the non-finite guard sees it.
    w_above = (x - bins[below]) / (bins[above] - bins[below]).clamp(min=1e-12)
    target = torch.zeros(*x.shape, len(bins), device=x.device)
    target.scatter_add_(-1, below[..., None], (1.0 - w_above)[..., None])
    target.scatter_add_(-1, above[..., None], w_above[..., None])
    return target


def lambda_return(reward: Tensor, cont: Tensor, value: Tensor, discount: float,
                  lam: float) -> Tensor:
    """TD(lambda) returns R_0..R_{H-1}, (H, N).

    reward, cont: (H, N), r_{t+1} and c_{t+1} predicted at s_{t+1}; value: (H+1, N), V(s_0..s_H).
    R_H = V(s_H); R_t = r_{t+1} + gamma c_{t+1} ((1 - lam) V(s_{t+1}) + lam R_{t+1}).
    """
    disc = discount * cont
    # The bootstrap part does not depend on the recursion: compute it for all t at once.
    interm = reward + disc * value[1:] * (1.0 - lam)
    out = [value[-1]]
    for t in reversed(range(reward.shape[0])):
        out.append(interm[t] + disc[t] * lam * out[-1])
    return torch.stack(out[:0:-1])


def replay_lambda_return(reward: Tensor, cont: Tensor, last: Tensor, boot: Tensor,
                         discount: float, lam: float) -> Tensor:
    """TD(lambda) returns along replay sequences, batch-major (B, T) in, (B, T - 1) out (the
    2024 DreamerV3 code's replay value targets).

    reward[:, t], cont[:, t] = 1 - is_terminal and last[:, t] = is_last come with observation t;
    boot[:, t] is the value estimate of state t (the imagined return from it).
    R_t = r_{t+1} + gamma c_{t+1} ((1 - l_{t+1}) boot_{t+1} + l_{t+1} R_{t+1}) with
    l_{t+1} = lam (1 - last_{t+1}): an episode's last step bootstraps fully (or not at all when
    terminal), and R_{T-1} = boot_{T-1}. Steps that are themselves `last` cross into the next
    episode; callers mask them.
    """
    live = discount * cont[:, 1:]
    mix = lam * (1.0 - last[:, 1:])
    interm = reward[:, 1:] + live * (1.0 - mix) * boot[:, 1:]
    out = [boot[:, -1]]
    for t in reversed(range(live.shape[1])):
        out.append(interm[:, t] + live[:, t] * mix[:, t] * out[-1])
    return torch.stack(out[:0:-1], 1)


def discount_weights(cont: Tensor, discount: float) -> Tensor:
    """Loss weights (H, N) for t = 0..H-1 from continuations c_0..c_H (H+1, N), no gradient.

    weight_t = c_0 prod_{i=1..t} gamma c_i (the 2023 code's cumprod(gamma c) / gamma): an
    imagined step counts as much as the chance of still being alive there. c_0 is the start
    state's own continuation, 1 unless the start was terminal.
    """
    return (torch.cumprod(discount * cont[:-1], 0) / discount).detach()


def categorical_kl(lhs_logits: Tensor, rhs_logits: Tensor) -> Tensor:
    """KL(lhs || rhs) of K categoricals given as log-probabilities (..., K, C), summed over the
    K latents: (...)."""
    lhs = lhs_logits.float().log_softmax(-1)
    rhs = rhs_logits.float().log_softmax(-1)
    return (lhs.exp() * (lhs - rhs)).sum((-2, -1))


def free_bits(kl: Tensor, free: float) -> Tensor:
    """max(free, kl) of a KL already summed over the latents (paper eq. 5)."""
    return kl.clamp(min=free)


def kl_losses(post_logits: Tensor, prior_logits: Tensor, free: float) -> tuple[Tensor, Tensor]:
    """Dynamics and representation losses (...) from logits (..., K, C).

    dyn = max(free, KL(sg(post) || prior)) trains the prior; rep = max(free, KL(post ||
    sg(prior))) trains the encoder. Both KLs are summed over K before the clip.
    """
    dyn = free_bits(categorical_kl(post_logits.detach(), prior_logits), free)
    rep = free_bits(categorical_kl(post_logits, prior_logits.detach()), free)
    return dyn, rep


class ReturnNormaliser(nn.Module):
    """S = max(limit, P_high - P_low) of lambda-returns, percentiles tracked by an EMA (paper
    eq. 7). Both EMAs start at 0 with no bias correction, as in the 2023 code."""

    low: Tensor
    high: Tensor
    quantiles: Tensor

    def __init__(self, decay: float, low: float, high: float, limit: float) -> None:
        super().__init__()
        self.decay, self.limit = decay, limit
        self.register_buffer("quantiles", torch.tensor([low, high]), persistent=False)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: Tensor) -> None:
        """Fold in the percentiles of all returns of a batch (any shape): over the whole imagined
        batch, not per trajectory, and under torchrun over the batches of all ranks, so that every
        rank scales its advantages alike and the EMAs stay identical (issue 9)."""
        flat = gather_cat(returns.detach().float().flatten())
        low, high = torch.quantile(flat, self.quantiles)
        ok = torch.isfinite(low) & torch.isfinite(high)
        # A non-finite batch (whose actor step is skipped) must not poison the EMAs for good.
        self.low.copy_(torch.where(ok, self.low.lerp(low, 1.0 - self.decay), self.low))
        self.high.copy_(torch.where(ok, self.high.lerp(high, 1.0 - self.decay), self.high))

    def scale(self) -> Tensor:
        """S, a scalar tensor."""
        return torch.clamp(self.high - self.low, min=self.limit)
