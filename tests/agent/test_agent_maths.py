"""Golden values for the pure maths and the distributions, each computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dreamerctl.agent.distributions import (
    Bernoulli,
    BoundedNormal,
    OneHotCategorical,
    SymlogMSE,
    TwoHot,
)
from dreamerctl.agent.maths import (
    ReturnNormaliser,
    discount_weights,
    free_bits,
    kl_losses,
    lambda_return,
    replay_lambda_return,
    symexp,
    symlog,
    twohot_bins,
    twohot_encode,
)

BINS = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])


def test_symlog_values_and_round_trip() -> None:
    x = torch.tensor([0.0, math.e - 1, -(math.e - 1), 99.0])
    assert torch.allclose(symlog(x), torch.tensor([0.0, 1.0, -1.0, math.log(100.0)]))
    assert torch.allclose(symexp(torch.tensor([0.0, 1.0, -2.0])),
                          torch.tensor([0.0, math.e - 1, -(math.e**2 - 1)]))
    wide = torch.linspace(-1e4, 1e4, 1001, dtype=torch.float64)
    assert torch.allclose(symexp(symlog(wide)), wide, rtol=1e-12, atol=1e-9)


def test_twohot_support_is_symexp_of_linspace() -> None:
    bins = twohot_bins(255)
    assert bins[0] == -20 and bins[-1] == 20 and bins[127] == 0
    assert math.isclose(float(symexp(bins[-1].double())), math.exp(20) - 1, rel_tol=1e-9)


def test_twohot_encode_between_on_and_outside_bins() -> None:
    values = torch.tensor([0.25, 1.0, 2.0, 5.0, -3.0, -1.5])
    expected = torch.tensor([
        [0, 0, 0.75, 0.25, 0],  # between 0 and 1: closer to 0
        [0, 0, 0, 1, 0],  # on a bin
        [0, 0, 0, 0, 1],  # on the last bin
        [0, 0, 0, 0, 1],  # above the range: clipped
        [1, 0, 0, 0, 0],  # below the range: clipped
        [0.5, 0.5, 0, 0, 0],
    ])
    target = twohot_encode(values, BINS)
    assert torch.allclose(target, expected)
    assert torch.allclose(target.sum(-1), torch.ones(6))


def test_twohot_cross_entropy_and_mean() -> None:
    logits = torch.log(torch.tensor([1.0, 1.0, 2.0, 4.0, 2.0]))  # probs .1 .1 .2 .4 .2
    dist = TwoHot(logits, BINS)
    # symexp(0.25) lands at 0.25 in symlog space: 0.75 on bin 0.0, 0.25 on bin 1.0.
    loss = dist.loss(torch.tensor(math.expm1(0.25)))
    assert math.isclose(float(loss), -(0.75 * math.log(0.2) + 0.25 * math.log(0.4)),
                        rel_tol=1e-6)
    assert math.isclose(float(loss), 1.4361511, rel_tol=1e-6)
    # mean = symexp(sum p b) = symexp(-0.2 - 0.1 + 0 + 0.4 + 0.4) = symexp(0.5)
    assert math.isclose(float(dist.mean()), math.expm1(0.5), rel_tol=1e-6)


@pytest.mark.parametrize("count", [255, 41, 4])
def test_twohot_zero_logits_predict_exactly_zero(count: int) -> None:
    bins = twohot_bins(count)
    assert torch.equal(bins, -bins.flip(0))
    assert float(TwoHot(torch.zeros(3, count), bins).mean().abs().max()) == 0.0


def test_lambda_return_by_hand() -> None:
    reward = torch.tensor([[1.0], [2.0], [3.0]])  # r_1..r_3
    cont = torch.tensor([[1.0], [1.0], [0.0]])  # c_1..c_3
    value = torch.tensor([[0.5], [1.0], [2.0], [4.0]])  # V(s_0..s_3)
    ret = lambda_return(reward, cont, value, discount=0.9, lam=0.8)
    # R_2 = 3 (terminal); R_1 = 2 + 0.9 (0.2 * 2 + 0.8 * 3); R_0 = 1 + 0.9 (0.2 * 1 + 0.8 R_1)
    assert torch.allclose(ret[:, 0], torch.tensor([4.4344, 4.52, 3.0]))


def test_lambda_return_matches_a_python_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    horizon, n, gamma, lam = 6, 4, 0.97, 0.95
    reward = torch.randn(horizon, n, generator=gen)
    cont = (torch.rand(horizon, n, generator=gen) > 0.2).float()
    value = torch.randn(horizon + 1, n, generator=gen)
    ret = lambda_return(reward, cont, value, gamma, lam)
    for i in range(n):
        following = value[horizon, i].item()
        for t in reversed(range(horizon)):
            next_value = value[t + 1, i].item()
            following = reward[t, i].item() + gamma * cont[t, i].item() * (
                (1 - lam) * next_value + lam * following)
            assert math.isclose(ret[t, i].item(), following, rel_tol=1e-5, abs_tol=1e-5)


def test_replay_lambda_return_by_hand() -> None:
    """Batch-major (B, T) = (3, 4), gamma 0.9, lambda 0.8, boot = 10, 20, 30, 40. Rows: no
    episode end; a termination at t = 2; a time-limit end (last, not terminal) at t = 2."""
    reward = torch.tensor([[0.0, 1.0, 2.0, 3.0]] * 3)  # r_t comes with observation t
    cont = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1]])
    last = torch.tensor([[0.0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    boot = torch.tensor([[10.0, 20, 30, 40]] * 3)
    ret = replay_lambda_return(reward, cont, last, boot, discount=0.9, lam=0.8)
    # Row 0: R_2 = 3 + 0.9 * 40 = 39; R_1 = 2 + 0.9 (0.2 * 30 + 0.8 * 39) = 35.48;
    #        R_0 = 1 + 0.9 (0.2 * 20 + 0.8 * 35.48) = 30.1456.
    # Row 1: R_1 = 2 (terminal next); R_0 = 1 + 0.9 (0.2 * 20 + 0.8 * 2) = 6.04.
    # Row 2: R_1 = 2 + 0.9 * 30 = 29 (full bootstrap at the truncation);
    #        R_0 = 1 + 0.9 (0.2 * 20 + 0.8 * 29) = 25.48.
    # R_2 crosses into the next episode in rows 1 and 2 (callers mask it): 39 like row 0.
    expected = torch.tensor([[30.1456, 35.48, 39.0], [6.04, 2.0, 39.0], [25.48, 29.0, 39.0]])
    assert torch.allclose(ret, expected)


def test_discount_weights() -> None:
    cont = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # c_0..c_3, N = 2
    weights = discount_weights(cont, 0.5)
    assert torch.allclose(weights[:, 0], torch.tensor([1.0, 0.5, 0.0]))
    assert torch.equal(weights[:, 1], torch.zeros(3))  # a terminal start counts for nothing


def test_return_normaliser_ema_after_two_updates() -> None:
    norm = ReturnNormaliser(decay=0.99, low=0.05, high=0.95, limit=1.0)
    norm.update(torch.arange(101.0))  # P5 = 5, P95 = 95
    assert math.isclose(float(norm.low), 0.05, rel_tol=1e-5)
    assert math.isclose(float(norm.high), 0.95, rel_tol=1e-5)
    assert float(norm.scale()) == 1.0  # 0.9 is below the limit
    norm.update(2 * torch.arange(101.0).reshape(1, 101))  # P5 = 10, P95 = 190
    assert math.isclose(float(norm.low), 0.99 * 0.05 + 0.01 * 10, rel_tol=1e-5)
    assert math.isclose(float(norm.high), 0.99 * 0.95 + 0.01 * 190, rel_tol=1e-5)
    assert math.isclose(float(norm.scale()), 2.8405 - 0.1495, rel_tol=1e-5)


def test_return_normaliser_uses_the_whole_batch() -> None:
    """Percentiles over all returns, not averaged per trajectory."""
    returns = torch.stack([torch.zeros(50), torch.full((50,), 10.0)])  # (2 trajectories, 50)
    norm = ReturnNormaliser(decay=0.0, low=0.05, high=0.95, limit=1.0)
    norm.update(returns)
    assert float(norm.low) == 0.0 and float(norm.high) == 10.0


def _binary_logits(p: float) -> torch.Tensor:
    return torch.log(torch.tensor([p, 1 - p]))


def test_free_bits_clip_the_kl_summed_over_latents() -> None:
    post = torch.stack([_binary_logits(0.5)] * 2)  # (K=2, C=2)
    # KL([.5, .5] || [.1, .9]) = -ln 2 - 0.5 ln 0.09 = 0.510826 per latent, 1.021651 summed:
    # above the free bit, so unclipped; clipping each latent would have given 2.
    dyn, rep = kl_losses(post, torch.stack([_binary_logits(0.1)] * 2), free=1.0)
    assert math.isclose(float(dyn), 1.021651, rel_tol=1e-5)
    assert math.isclose(float(rep), 1.021651, rel_tol=1e-5)
    # KL against [.2, .8] is 0.223144 per latent, 0.446 summed: clipped to 1.
    dyn, _ = kl_losses(post, torch.stack([_binary_logits(0.2)] * 2), free=1.0)
    assert float(dyn) == 1.0
    assert torch.equal(free_bits(torch.tensor([0.5, 1.5]), 1.0), torch.tensor([1.0, 1.5]))


def test_kl_gradients_go_where_they_should() -> None:
    post = (torch.randn(3, 4) * 3).requires_grad_()
    prior = (torch.randn(3, 4) * 3).requires_grad_()
    dyn, rep = kl_losses(post, prior, free=0.0)
    assert torch.autograd.grad(dyn, post, allow_unused=True)[0] is None
    assert torch.autograd.grad(rep, prior, allow_unused=True)[0] is None
    assert torch.autograd.grad(dyn, prior)[0].abs().sum() > 0


def test_onehot_unimix_and_straight_through() -> None:
    logits = torch.tensor([[0.0, -1e9]])
    dist = OneHotCategorical(logits, unimix=0.01)
    assert torch.allclose(dist.probs, torch.tensor([[0.995, 0.005]]))
    assert math.isclose(float(dist.log_prob(torch.tensor([[0.0, 1.0]]))), math.log(0.005),
                        rel_tol=1e-5)
    logits = torch.randn(64, 5).requires_grad_()
    sample = OneHotCategorical(logits, unimix=0.01).sample()
    assert set(sample.detach().flatten().tolist()) == {0.0, 1.0}
    assert torch.equal(sample.detach().sum(-1), torch.ones(64))
    (sample * torch.arange(5.0)).sum().backward()  # straight-through: the probs' gradient
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_bounded_normal() -> None:
    raw_std = torch.tensor([-100.0, 100.0])
    dist = BoundedNormal(torch.tensor([100.0, 0.0]), raw_std, min_std=0.1, max_std=1.0)
    assert torch.allclose(dist.std, torch.tensor([0.1, 1.0]))
    assert torch.allclose(dist.mode(), torch.tensor([1.0, 0.0]))
    samples = BoundedNormal(torch.zeros(1000, 2), torch.full((1000, 2), 5.0), 0.1, 3.0).sample()
    assert samples.abs().max() <= 1.0 and samples.abs().max() == 1.0
    # sigmoid(0 + 2) * 0.9 + 0.1 at raw 0
    expected = 0.9 / (1 + math.exp(-2)) + 0.1
    assert math.isclose(float(BoundedNormal(torch.zeros(1), torch.zeros(1), 0.1, 1.0).std),
                        expected, rel_tol=1e-6)


def test_bernoulli_and_symlog_mse() -> None:
    assert math.isclose(float(Bernoulli(torch.tensor(0.0)).loss(torch.tensor(1.0))),
                        math.log(2), rel_tol=1e-6)
    assert float(Bernoulli(torch.tensor(0.3)).mode()) == 1.0
    dist = SymlogMSE(torch.tensor([[1.0, 0.0]]), 1)
    assert math.isclose(float(dist.loss(torch.tensor([[math.e - 1, 0.0]]))), 0.0, abs_tol=1e-6)
    assert torch.allclose(dist.mode(), torch.tensor([[math.e - 1, 0.0]]))


@pytest.mark.parametrize("unimix", [0.0, 0.01])
def test_onehot_entropy_of_uniform(unimix: float) -> None:
    dist = OneHotCategorical(torch.zeros(4), unimix)
    assert math.isclose(float(dist.entropy()), math.log(4), rel_tol=1e-6)
