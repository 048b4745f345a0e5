"""Energies: analytic targets against torch.distributions, composition, conditioning, score."""

import math

import pytest
import torch
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

from ebrl.energy import Energy, GaussianEnergy, GaussianMixtureEnergy, MLPEnergy, as_energy
from tests.helpers import assert_moments


def spd(d, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T + d * torch.eye(d, dtype=torch.float64)


def test_gaussian_log_prob_and_normalizer_match_torch():
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    cov = spd(3)
    energy = GaussianEnergy(mean, cov)
    ref = MultivariateNormal(mean, cov)
    x = torch.randn(10, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(energy.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(-energy(x) - energy.log_normalizer, ref.log_prob(x))
    assert energy(x).shape == (10, 4)


def test_gaussian_sample_moments_and_generator():
    energy = GaussianEnergy(torch.tensor([1.0, -1.0], dtype=torch.float64), spd(2, 1))
    x = energy.sample((50000,), generator=torch.Generator().manual_seed(0))
    assert_moments(x, energy.mean, energy.covariance, n_eff=50000)
    y = energy.sample((50000,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, y)


def test_batched_gaussian_broadcasts_over_sample_dims():
    means = torch.randn(4, 2, dtype=torch.float64)
    covs = torch.stack([spd(2, s) for s in range(4)])
    energy = GaussianEnergy(means, covs)
    x = torch.randn(7, 4, 2, dtype=torch.float64)
    want = torch.stack([GaussianEnergy(means[i], covs[i])(x[:, i]) for i in range(4)], dim=1)
    torch.testing.assert_close(energy(x), want)
    assert energy.log_normalizer.shape == (4,)


def test_mixture_matches_torch_mixture_same_family():
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    means = torch.tensor([[-3.0, 0.0], [0.0, 3.0], [3.0, -1.0]], dtype=torch.float64)
    covs = torch.stack([spd(2, s) / 4 for s in range(3)])
    energy = GaussianMixtureEnergy(weights, means, covs)
    ref = MixtureSameFamily(Categorical(weights), MultivariateNormal(means, covs))
    x = torch.randn(100, 2, dtype=torch.float64) * 3
    torch.testing.assert_close(energy.log_prob(x), ref.log_prob(x))
    samples = energy.sample((30000,), generator=torch.Generator().manual_seed(1))
    # component occupancy from the nearest-mean assignment of well-separated modes
    torch.testing.assert_close(samples.mean(0), ref.mean, atol=0.08, rtol=0)


def test_mixture_isotropic_float_covariance():
    energy = GaussianMixtureEnergy(torch.ones(2), torch.tensor([[-1.0], [1.0]]), 0.5)
    ref = MixtureSameFamily(
        Categorical(torch.ones(2)),
        Independent(Normal(torch.tensor([[-1.0], [1.0]]), math.sqrt(0.5) * torch.ones(2, 1)), 1),
    )
    x = torch.linspace(-3, 3, 13).unsqueeze(-1)
    torch.testing.assert_close(energy.log_prob(x), ref.log_prob(x))


def test_score_is_minus_grad_energy_for_gaussian():
    mean, cov = torch.tensor([0.5, -0.5], dtype=torch.float64), spd(2, 3)
    energy = GaussianEnergy(mean, cov)
    x = torch.randn(6, 2, dtype=torch.float64)
    want = -(x - mean) @ torch.linalg.inv(cov)  # -P (x - mu), P symmetric
    torch.testing.assert_close(energy.score(x), want)


def test_composition_sum_and_scale():
    e1 = GaussianEnergy(torch.zeros(2), torch.eye(2))
    e2 = MLPEnergy(2, (8,))
    x = torch.randn(5, 2)
    torch.testing.assert_close((e1 + e2)(x), e1(x) + e2(x))
    torch.testing.assert_close((0.25 * e1)(x), 0.25 * e1(x))
    torch.testing.assert_close((e1 * 3.0)(x), 3.0 * e1(x))
    plain = lambda y: y.pow(2).sum(-1)  # noqa: E731
    torch.testing.assert_close((e1 + plain)(x), e1(x) + plain(x))
    torch.testing.assert_close((plain + e1)(x), e1(x) + plain(x))
    assert len((e1 + e2 + e1).terms) == 3  # sums flatten
    # parameters of composed energies are visible to optimisers
    assert len(list((e1 + e2).parameters())) == len(list(e2.parameters()))


def test_conditioning_broadcasts_context_over_samples():
    torch.manual_seed(0)
    energy = MLPEnergy(3, (16,), context_dim=2)
    context = torch.randn(4, 2)
    x = torch.randn(7, 4, 3)
    got = energy.condition(context)(x)
    want = torch.stack([energy(x[:, i], context[i].expand(7, 2)) for i in range(4)], dim=1)
    torch.testing.assert_close(got, want)
    assert isinstance(energy.condition(context), Energy)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="GaussianEnergy: covariance must be symmetric positive"):
        GaussianEnergy(torch.zeros(2), -torch.eye(2))
    with pytest.raises(ValueError, match=r"GaussianEnergy: expected mean \[\*batch, d\]"):
        GaussianEnergy(torch.zeros(2), torch.eye(3))
    with pytest.raises(
        ValueError, match="GaussianMixtureEnergy: weights must be finite and non-negative"
    ):
        GaussianMixtureEnergy(torch.tensor([-1.0, 2.0]), torch.zeros(2, 2), 1.0)
    with pytest.raises(ValueError, match="MLPEnergy: dim"):
        MLPEnergy(0)
    with pytest.raises(ValueError, match="MLPEnergy: unknown activation"):
        MLPEnergy(2, activation="sigmoidish")
    with pytest.raises(ValueError, match="MLPEnergy: x must have last dimension 2"):
        MLPEnergy(2)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="MLPEnergy: context of shape"):
        MLPEnergy(2, context_dim=3)(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="ConditionedEnergy: x of shape"):
        MLPEnergy(2, context_dim=1).condition(torch.zeros(4, 1))(torch.zeros(5, 3, 2))
    with pytest.raises(ValueError, match="ScaledEnergy: scale must be a finite scalar"):
        float("inf") * GaussianEnergy(torch.zeros(1), torch.eye(1))
    with pytest.raises(TypeError):
        GaussianEnergy(torch.zeros(1), torch.eye(1)) + 3.0
    with pytest.raises(TypeError, match="FunctionEnergy: fn must be callable"):
        as_energy(3.0)
