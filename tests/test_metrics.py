"""Metrics: grid log-normaliser and NLL against analytic Gaussians, MMD against a plain double
loop and as a two-sample statistic, the KDE baseline, bad input."""

import math

import pytest
import torch

from ebrl.energy import GaussianEnergy, GaussianMixtureEnergy, MLPEnergy
from ebrl.metrics import (
    grid_log_normalizer,
    grid_nll,
    grid_points,
    kde_log_prob,
    mmd,
    select_kde_bandwidth,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def correlated_gaussian(dtype=torch.float64):
    cov = torch.tensor([[0.5, 0.3], [0.3, 0.8]], dtype=dtype)
    return GaussianEnergy(torch.tensor([0.5, -1.0], dtype=dtype), cov)


BOX = ((-6.0, 7.0), (-8.0, 6.0))


def test_grid_points_layout():
    points, area = grid_points(((0.0, 2.0), (0.0, 1.0)), 4)
    assert points.shape == (4, 4, 2) and math.isclose(area, 0.5 * 0.25)
    torch.testing.assert_close(points[0, :, 0], torch.tensor([0.25, 0.75, 1.25, 1.75]))
    torch.testing.assert_close(points[:, 0, 1], torch.tensor([0.125, 0.375, 0.625, 0.875]))


def test_grid_log_normalizer_and_nll_match_an_analytic_gaussian():
    """Midpoint rule on a smooth density: error far below 1e-4 nats at 400^2 cells."""
    target = correlated_gaussian()
    log_z = grid_log_normalizer(target, BOX, 400)
    torch.testing.assert_close(log_z, target.log_normalizer, atol=1e-6, rtol=0)
    x = target.sample((5000,), generator=gen())
    nll = grid_nll(target, x, BOX, 400)
    torch.testing.assert_close(nll, -target.log_prob(x).mean(), atol=1e-6, rtol=0)


def test_grid_nll_of_an_unnormalised_mixture_and_a_plain_function():
    """Shifting an energy by a constant changes nothing (the grid finds log Z); a plain callable
    works as well as a module."""
    target = GaussianMixtureEnergy(
        torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), torch.tensor(0.3)
    )
    x = target.sample((2000,), generator=gen(1))
    exact = -target.log_prob(x).mean()
    shifted = lambda y: target(y) + 17.0  # noqa: E731
    torch.testing.assert_close(grid_nll(shifted, x, BOX, 400), exact, atol=1e-4, rtol=0)


def test_grid_nll_rejects_bounds_that_miss_the_data():
    x = torch.randn(1000, 2, generator=gen(2))
    with pytest.raises(ValueError, match=r"% of x lies outside bounds"):
        grid_nll(MLPEnergy(2, (8,)), x, ((0.0, 5.0), (-5.0, 5.0)), 64)
    # a few points outside are tolerated up to max_outside
    assert torch.isfinite(grid_nll(correlated_gaussian(), x.double(), ((-3.0, 3.0),) * 2, 64))


@pytest.mark.parametrize(
    ("bounds", "resolution", "match"),
    [
        (((1.0, 0.0), (0.0, 1.0)), 64, "min < max"),
        (((0.0, 1.0),), 64, "bounds must be"),
        (((0.0, math.inf), (0.0, 1.0)), 64, "finite"),
        (((0.0, 1.0), (0.0, 1.0)), 1, "resolution"),
    ],
)
def test_grid_bad_arguments(bounds, resolution, match):
    with pytest.raises(ValueError, match=match):
        grid_nll(correlated_gaussian(), torch.zeros(3, 2, dtype=torch.float64), bounds, resolution)


def test_grid_nll_bad_data():
    energy = correlated_gaussian()
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        grid_nll(energy, torch.zeros(3, 3), BOX)
    with pytest.raises(TypeError, match="floating-point"):
        grid_nll(energy, torch.zeros(3, 2, dtype=torch.long), BOX)
    with pytest.raises(ValueError, match="NaN"):
        grid_nll(lambda y: torch.full(y.shape[:-1], math.nan), torch.zeros(3, 2), BOX, 8)


# ---------------------------------------------------------------- MMD


def test_mmd_equals_a_plain_double_loop():
    x = torch.randn(6, 3, generator=gen(3), dtype=torch.float64)
    y = torch.randn(4, 3, generator=gen(4), dtype=torch.float64) + 0.5
    h = 1.3

    def k(a, b):
        return math.exp(-float((a - b).pow(2).sum()) / (2 * h * h))

    kxx = sum(k(a, b) for a in x for b in x) / 36
    kyy = sum(k(a, b) for a in y for b in y) / 16
    kxy = sum(k(a, b) for a in x for b in y) / 24
    assert math.isclose(float(mmd(x, y, bandwidth=h)), math.sqrt(kxx + kyy - 2 * kxy), rel_tol=1e-7)
    assert float(mmd(x, x)) == 0.0
    assert math.isclose(float(mmd(x, y)), float(mmd(y, x)), rel_tol=1e-9)


def test_mmd_separates_distributions_beyond_its_floor():
    """Same law: MMD at the V-statistic's floor (~1/sqrt(n)); a 0.5 sd shift: far above it."""
    n = 1000
    a, b = torch.randn(n, 5, generator=gen(5)), torch.randn(n, 5, generator=gen(6))
    shifted = torch.randn(n, 5, generator=gen(7)) + 0.5
    same, different = float(mmd(a, b)), float(mmd(a, shifted))
    assert same < 3 / math.sqrt(n)
    assert different > 5 * same


def test_mmd_bad_input():
    with pytest.raises(ValueError, match="dimension"):
        mmd(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        mmd(torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(torch.zeros(3, 2), torch.ones(3, 2), bandwidth=0.0)


# ---------------------------------------------------------------- KDE


def test_kde_log_prob_equals_a_plain_mixture():
    data = torch.randn(7, 2, generator=gen(8), dtype=torch.float64)
    x = torch.randn(5, 2, generator=gen(9), dtype=torch.float64)
    h = 0.4
    mixture = GaussianMixtureEnergy(torch.ones(7), data, torch.tensor(h * h))
    torch.testing.assert_close(kde_log_prob(x, data, h), mixture.log_prob(x))


def test_cross_validated_bandwidth_is_near_the_optimal_one_for_a_gaussian():
    """For N(0, I) in 2-D the likelihood-optimal bandwidth is close to Silverman's
    n^(-1/6) (about 0.46 at n=2000); cross-validation must pick the grid point next to it."""
    data = torch.randn(2000, 2, generator=gen(10), dtype=torch.float64)
    candidates = [0.05, 0.1, 0.2, 0.3, 0.45, 0.7, 1.0, 2.0]
    best, scores = select_kde_bandwidth(data, candidates, n_folds=4, seed=0)
    assert best in (0.3, 0.45, 0.7)
    assert scores[best] == max(scores.values()) and set(scores) == set(candidates)


def test_kde_bad_input():
    with pytest.raises(ValueError, match="bandwidth"):
        kde_log_prob(torch.zeros(2, 2), torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match="n_folds"):
        select_kde_bandwidth(torch.zeros(3, 2), [0.1], n_folds=5)
    with pytest.raises(ValueError, match="candidates"):
        select_kde_bandwidth(torch.zeros(30, 2), [])


def test_grid_follows_the_energys_buffers_or_the_data():
    """A buffer-only float64 energy is evaluated in float64; a plain function in x's dtype."""
    target = GaussianEnergy(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    x = target.sample((500,), generator=gen())
    assert grid_log_normalizer(target, BOX, 64).dtype == torch.float64
    nll = grid_nll(target, x, BOX, 400)
    assert nll.dtype == torch.float64
    torch.testing.assert_close(nll, -target.log_prob(x).mean(), atol=1e-6, rtol=0)
    plain = lambda y: 0.5 * y.pow(2).sum(-1)  # noqa: E731
    assert grid_nll(plain, x, BOX, 64).dtype == torch.float64
