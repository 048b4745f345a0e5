"""Toy 2-D densities: contract (shapes, seeds, no global RNG), exact log-densities normalise and
agree with the samplers (chi-square on a coarse grid), bad input."""

import math

import pytest
import torch
from scipy import stats as sps

from ebrl.data import toy2d
from ebrl.metrics import grid_points

EXACT = [name for name in toy2d.DATASETS if toy2d.has_log_prob(name)]


@pytest.mark.parametrize("name", toy2d.DATASETS)
def test_shape_dtype_seed_and_no_global_rng(name):
    state = torch.get_rng_state()
    a = toy2d.sample(name, 500, seed=3)
    b = toy2d.sample(name, 500, seed=3)
    c = toy2d.sample(name, 500, seed=4)
    d = toy2d.sample(name, 500, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was never touched
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(a, d) and not torch.equal(a, c)
    assert toy2d.sample(name, 3, seed=0, dtype=torch.float64).dtype == torch.float64
    low, high = toy2d.BOUNDS[0][0], toy2d.BOUNDS[0][1]
    x = toy2d.sample(name, 20000, seed=5)
    assert ((x > low) & (x < high)).all()  # the documented box holds the data


def test_exact_log_density_is_known_where_documented():
    assert set(EXACT) == set(toy2d.DATASETS) - {"pinwheel"}
    with pytest.raises(ValueError, match="no exact log-density for 'pinwheel'; available for"):
        toy2d.log_prob("pinwheel", torch.zeros(3, 2))


@pytest.mark.parametrize("name", EXACT)
def test_log_prob_normalises_and_matches_the_sampler(name):
    """Integrate the density on a 128^2 grid (midpoint rule; the Gaussian smoothing makes it
    spectrally accurate, the checkerboard is piecewise constant on the grid) and compare cell
    masses, summed into 10 x 10 blocks, with the counts of 20000 samples (chi-square test)."""
    points, area = grid_points(toy2d.BOUNDS, 160, dtype=torch.float64)
    log_p = toy2d.log_prob(name, points)
    assert log_p.shape == (160, 160) and log_p.dtype == torch.float64
    cells = log_p.exp() * area
    assert abs(float(cells.sum()) - 1.0) < 2e-3
    blocks = cells.reshape(10, 16, 10, 16).sum((1, 3))  # [y block, x block]
    n = 20000
    x = toy2d.sample(name, n, seed=11, dtype=torch.float64)
    (x0, x1), (y0, y1) = toy2d.BOUNDS
    ix = ((x[:, 0] - x0) / (x1 - x0) * 10).long().clamp(0, 9)
    iy = ((x[:, 1] - y0) / (y1 - y0) * 10).long().clamp(0, 9)
    counts = torch.zeros(10, 10, dtype=torch.float64).index_put_(
        (iy, ix), torch.ones(n, dtype=torch.float64), accumulate=True
    )
    expected = (n * blocks / blocks.sum()).flatten()
    counts = counts.flatten()
    keep = expected > 5  # pool the sparse blocks into one bin
    observed, pooled = counts[keep], counts[~keep].sum()
    pooled_expected = float(expected[~keep].sum())
    expected = expected[keep]
    if pooled_expected > 5:
        observed = torch.cat([observed, pooled.reshape(1)])
        expected = torch.cat([expected, torch.tensor([pooled_expected], dtype=expected.dtype)])
    else:  # Poisson with mean <= 5: more than 20 has probability < 1e-6
        assert float(pooled) <= 20
    expected = expected * observed.sum() / expected.sum()
    p_value = sps.chisquare(observed.numpy(), expected.numpy()).pvalue
    assert p_value > 1e-6, (p_value, observed, expected)


def test_checkerboard_and_8gaussians_closed_forms():
    # black squares: floor(x / 2) + floor(y / 2) even, inside [-4, 4]^2
    inside = torch.tensor([[-3.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [3.0, -1.0], [-3.0, -3.0]])
    outside = torch.tensor([[-3.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [4.5, 0.0]])
    torch.testing.assert_close(
        toy2d.log_prob("checkerboard", inside), torch.full((5,), -math.log(32))
    )
    assert (toy2d.log_prob("checkerboard", outside) == -math.inf).all()
    # at a mode of 8gaussians the density is ~ one component's peak / 8
    mode = torch.tensor([[4.0 / 1.414, 0.0]], dtype=torch.float64)
    peak = -math.log(8 * 2 * math.pi * (0.5 / 1.414) ** 2)
    assert abs(float(toy2d.log_prob("8gaussians", mode)) - peak) < 1e-6


def test_true_entropies_are_stable():
    """The exact NLL of a large sample equals the entropy: 8gaussians ~ log 8 + log(2 pi e s^2)
    (modes 6 sd apart barely overlap), checkerboard = log 32 exactly."""
    x = toy2d.sample("8gaussians", 100000, seed=0, dtype=torch.float64)
    nll = -toy2d.log_prob("8gaussians", x)
    entropy = math.log(8) + math.log(2 * math.pi * math.e * (0.5 / 1.414) ** 2)
    assert abs(float(nll.mean()) - entropy) < 5 * float(nll.std()) / math.sqrt(len(x)) + 1e-3
    x = toy2d.sample("checkerboard", 1000, seed=0)
    torch.testing.assert_close(
        -toy2d.log_prob("checkerboard", x).mean(), torch.tensor(math.log(32))
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: toy2d.sample("spiral", 10), ValueError, "valid names: 8gaussians, 2spirals"),
        (lambda: toy2d.sample("moons", 0), ValueError, "n must be"),
        (lambda: toy2d.sample("moons", 2.5), ValueError, "n must be"),
        (lambda: toy2d.sample("moons", 10, seed=-1), ValueError, "seed"),
        (
            lambda: toy2d.sample("moons", 10, seed=1, generator=torch.Generator()),
            ValueError,
            "not both",
        ),
        (lambda: toy2d.sample("moons", 10, dtype=torch.int64), TypeError, "dtype"),
        (lambda: toy2d.log_prob("moons", torch.zeros(4, 3)), ValueError, r"\[\.\.\., 2\]"),
        (lambda: toy2d.log_prob("moons", torch.zeros(4, 2, dtype=torch.long)), TypeError, "x"),
        (lambda: toy2d.has_log_prob("nope"), ValueError, "valid names"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
