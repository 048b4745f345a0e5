"""Shared pieces of the trainer tests: random energies and the 2-D mixture learning check."""

import math

import torch

from ebrl.energy import GaussianMixtureEnergy, MLPEnergy
from ebrl.metrics import grid_nll

# The learning target: two components 5 standard deviations apart, close enough that data fall
# between them (the density midway is 4% of a peak's), so every objective, score matching
# included, can see the 0.3 / 0.7 weights.
MIXTURE = GaussianMixtureEnergy(
    torch.tensor([0.3, 0.7]), torch.tensor([[-1.25, 0.0], [1.25, 0.5]]), torch.tensor(0.25)
)
MIXTURE_BOUNDS = ((-5.0, 5.0), (-5.0, 5.5))
# Test NLL margin (nats) over the truth. An untrained energy scores ~2 nats above it, the best
# single Gaussian 0.32, the two right modes with swapped weights 0.32; the margin sits well
# below these, and far above the Monte Carlo error of the paired NLL difference (~0.005 at 4000
# test points).
MARGIN = 0.05


def random_energy(d, seed=0):
    """A small float64 MLP energy with parameters drawn from a seeded generator."""
    energy = MLPEnergy(d, (16, 16), activation="softplus").double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in energy.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return energy


def mixture_data(n, seed):
    return MIXTURE.sample((n,), generator=torch.Generator().manual_seed(seed))


def assert_learns_mixture(train, margin=MARGIN):
    """``train(energy, data)`` must bring a fresh (32, 32) MLP energy within ``margin`` nats of
    the true test NLL of :data:`MIXTURE`."""
    torch.manual_seed(0)  # the MLP's initialisation only
    energy = MLPEnergy(2, (32, 32))
    train(energy, mixture_data(8000, seed=1))
    test = mixture_data(4000, seed=2)
    nll = float(grid_nll(energy, test, MIXTURE_BOUNDS, 256))
    true = float(-MIXTURE.log_prob(test).mean())
    assert math.isfinite(nll)
    assert nll - true < margin, (nll, true)
    return nll - true
