"""Action distributions: the squashed Gaussian's log-density against change of variables, at and
beyond the bounds, and its normalisation; categorical zeros kept exactly."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

from ebrl.policies import SquashedDistribution, categorical_log_probs

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


LOW = torch.tensor([-1.0, 0.0, -3.0], dtype=F64)
HIGH = torch.tensor([3.0, 0.5, -2.0], dtype=F64)


def squashed(loc, scale):
    return SquashedDistribution(Independent(Normal(loc, scale), 1), LOW, HIGH)


def reference_log_prob(a, loc, scale):
    """Change of variables by hand, naive formulas, float64: u = atanh(y), y = (a - c) / h."""
    c, h = (HIGH + LOW) / 2, (HIGH - LOW) / 2
    y = (a - c) / h
    u = 0.5 * torch.log((1 + y) / (1 - y))
    log_base = (-0.5 * ((u - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_jac = (h.log() + torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    return log_base - log_jac


def test_squashed_log_prob_matches_change_of_variables():
    g = gen(0)
    loc = torch.randn(4, 3, generator=g, dtype=F64)
    scale = torch.rand(4, 3, generator=g, dtype=F64) + 0.2
    dist = squashed(loc, scale)
    unit = torch.rand(50, 4, 3, generator=g, dtype=F64) * 1.98 - 0.99  # inside, off the edge
    a = (HIGH + LOW) / 2 + (HIGH - LOW) / 2 * unit
    torch.testing.assert_close(dist.log_prob(a), reference_log_prob(a, loc, scale))
    # rsample: in the box, reparameterised; rsample_and_log_prob: exact log-density of the draw
    x = dist.rsample((1000,))
    assert x.shape == (1000, 4, 3) and x.requires_grad is False
    assert ((x >= LOW) & (x <= HIGH)).all()
    loc_p = loc.clone().requires_grad_(True)
    d2 = squashed(loc_p, scale)
    y, lp = d2.rsample_and_log_prob((7,))
    assert y.shape == (7, 4, 3) and lp.shape == (7, 4)
    (grad,) = torch.autograd.grad(lp.sum() + y.sum(), loc_p)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    torch.testing.assert_close(lp, reference_log_prob(y.detach(), loc, scale))
    torch.testing.assert_close(lp, d2.log_prob(y))
    torch.testing.assert_close(dist.median, (HIGH + LOW) / 2 + (HIGH - LOW) / 2 * torch.tanh(loc))


def test_squashed_log_prob_is_safe_at_and_beyond_the_bounds():
    loc = torch.tensor([[8.0, -8.0, 0.0]])  # float32, tanh saturates: draws land on the bounds
    dist = SquashedDistribution(
        Independent(Normal(loc, torch.ones(1, 3)), 1), LOW.float(), HIGH.float()
    )
    on_edge = torch.stack([HIGH.float(), LOW.float(), (LOW.float() + HIGH.float()) / 2])[None, [0]]
    assert torch.isfinite(dist.log_prob(on_edge)).all()
    assert torch.isfinite(dist.log_prob(LOW.float()[None])).all()
    outside = HIGH.float()[None] + torch.tensor([[0.1, 0.0, 0.0]])
    assert dist.log_prob(outside).item() == -math.inf
    x = dist.rsample((4096,))
    assert (x[..., 0] == HIGH[0].float()).any()  # tanh rounded to 1: draws on the bound
    assert torch.isfinite(dist.log_prob(x)).all()  # clamped atanh, no NaN or inf
    loc_p = loc.clone().requires_grad_(True)
    d = SquashedDistribution(
        Independent(Normal(loc_p, torch.ones(1, 3)), 1), LOW.float(), HIGH.float()
    )
    z = d.rsample((256,))
    (grad,) = torch.autograd.grad(d.log_prob(z).sum(), loc_p)
    assert torch.isfinite(grad).all()
    # from the pre-squash sample the log-density stays exact where tanh saturates
    torch.manual_seed(0)
    _, lp = d.rsample_and_log_prob((256,))
    torch.manual_seed(0)
    u = Normal(loc, torch.ones(1, 3)).rsample((256,)).double()  # the same draws, in float64
    h = (HIGH - LOW) / 2
    log_jac = (h.log() + 2 * (math.log(2) - u - torch.nn.functional.softplus(-2 * u))).sum(-1)
    want = Independent(Normal(loc.double(), 1.0), 1).log_prob(u) - log_jac
    torch.testing.assert_close(lp.double(), want, rtol=1e-5, atol=1e-4)
    (grad,) = torch.autograd.grad(lp.sum(), loc_p)
    assert torch.isfinite(grad).all()


def test_squashed_density_integrates_to_one():
    """1-D, a mass piled against the upper bound: the exact density integrates to 1."""
    low, high = torch.tensor([-2.0], dtype=F64), torch.tensor([1.0], dtype=F64)
    for loc, scale in [(0.3, 0.5), (2.5, 1.2), (-1.0, 0.05)]:
        base = Independent(
            Normal(torch.tensor([loc], dtype=F64), torch.tensor([scale], dtype=F64)), 1
        )
        dist = SquashedDistribution(base, low, high)
        # integrate over u (x = squash(u), dx = |dx/du| du) on a fine grid: no boundary blow-up
        u = torch.linspace(-40, 40, 400001, dtype=F64)[:, None]
        x = dist.squash(u)
        jac = 1.5 * (1 - torch.tanh(u) ** 2)
        total = torch.trapezoid((dist.log_prob(x).exp() * jac[:, 0]), u[:, 0])
        assert abs(total.item() - 1) < 1e-6, (loc, scale, total)


def test_categorical_log_probs_keeps_zeros_and_tiny_probabilities():
    probs = torch.tensor([[0.5, 0.5 - 1e-30, 1e-30, 0.0]], dtype=F64)
    lp = categorical_log_probs(Categorical(probs=probs))
    assert lp[0, 3] == -math.inf
    torch.testing.assert_close(lp[0, 2], torch.tensor(math.log(1e-30), dtype=F64))  # not clamped
    logits = torch.tensor([[0.0, -200.0, -math.inf]])
    lp = categorical_log_probs(Categorical(logits=logits))
    assert lp[0, 2] == -math.inf and lp[0, 1] == pytest.approx(-200.0)  # not rounded to -inf
    with pytest.raises(TypeError, match="Categorical"):
        categorical_log_probs(Normal(0.0, 1.0))
