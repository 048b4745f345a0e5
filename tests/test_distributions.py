"""Action distributions: the squashed Gaussian's log-density against change of variables, at and
beyond the bounds, and its normalisation; categorical zeros kept exactly; the truncated normal
against scipy (density, mean, draws, far tails) and its reparameterised gradient."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

from ebrl.policies import SquashedDistribution, TruncatedNormal, categorical_log_probs
from ebrl.policies.distributions import log_normal_mass
from ebrl.samplers import draw

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


# ----------------------------------------------------------------------------- truncated normal

TRUNC_CASES = [  # (loc, scale) on the box [-1, 1]: inside, straddling, both tails, narrow
    (0.3, 0.5),
    (-2.0, 0.5),
    (5.0, 0.2),
    (0.0, 0.01),
    (-1.5, 0.3),
    (1.2, 2.0),
    (-10.0, 1.0),  # the box in the upper tail (mirrored), 9 to 11 scales from loc
    (10.0, 1.0),  # and in the lower tail
]


def truncated(cases=TRUNC_CASES, dtype=F64):
    loc = torch.tensor([c[0] for c in cases], dtype=dtype)
    scale = torch.tensor([c[1] for c in cases], dtype=dtype)
    return TruncatedNormal(loc, scale, -1.0, 1.0)


def test_truncated_normal_log_prob_and_moments_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    dist = truncated()
    x = torch.linspace(-1, 1, 41, dtype=F64)[:, None].expand(41, len(TRUNC_CASES))
    lp = dist.log_prob(x)
    for i, (m, s) in enumerate(TRUNC_CASES):
        a, b = (-1 - m) / s, (1 - m) / s
        ref = stats.truncnorm.logpdf(x[:, i].numpy(), a, b, loc=m, scale=s)
        torch.testing.assert_close(lp[:, i], torch.as_tensor(ref), rtol=1e-9, atol=1e-9)
        mean, var = stats.truncnorm.stats(a, b, loc=m, scale=s, moments="mv")
        torch.testing.assert_close(
            dist.mean[i], torch.tensor(mean, dtype=F64), rtol=1e-8, atol=1e-9
        )
        torch.testing.assert_close(
            dist.variance[i], torch.tensor(var, dtype=F64), rtol=1e-6, atol=1e-12
        )
        median = stats.truncnorm.median(a, b, loc=m, scale=s)
        torch.testing.assert_close(
            dist.median[i], torch.tensor(median, dtype=F64), rtol=1e-7, atol=1e-9
        )
    # closed box: finite on the bounds, -inf outside it; a few ulps outside (rounding in an
    # affine map) count as on the bound
    k = len(TRUNC_CASES)
    on_bound = dist.log_prob(torch.full((k,), 1.0, dtype=F64))
    assert torch.isfinite(on_bound).all()
    ulps = torch.full((k,), 1.0, dtype=F64).nextafter(torch.tensor(2.0, dtype=F64))
    torch.testing.assert_close(dist.log_prob(ulps), on_bound)
    assert (dist.log_prob(torch.full((k,), -1.0 - 1e-9, dtype=F64)) == -math.inf).all()
    # float32 parameters: the moments are still exact far in a tail (computed in float64)
    far = TruncatedNormal(torch.tensor([-40.0, 0.0]), torch.tensor([0.5, 1e5]), -1.0, 1.0)
    a = torch.tensor([(-1 + 40) / 0.5, -1e-5], dtype=F64)
    b = torch.tensor([(1 + 40) / 0.5, 1e-5], dtype=F64)
    ref_mean = [stats.truncnorm.mean(a[0], b[0], loc=-40, scale=0.5), 0.0]
    torch.testing.assert_close(far.mean, torch.tensor(ref_mean, dtype=torch.float32))
    ref_var = [stats.truncnorm.var(a[0], b[0], loc=-40, scale=0.5), 1 / 3]  # the uniform's
    torch.testing.assert_close(
        far.variance, torch.tensor(ref_var, dtype=torch.float32), rtol=1e-4, atol=1e-9
    )


def test_log_normal_mass_in_the_far_tails():
    stats = pytest.importorskip("scipy.stats")
    alpha = torch.tensor([-40.0, -3.0, 8.0, 30.0, -0.5], dtype=F64)
    beta = torch.tensor([-39.0, 2.0, 9.0, 31.0, 0.5], dtype=F64)
    got = log_normal_mass(alpha, beta)
    for a, b, g in zip(alpha.tolist(), beta.tolist(), got.tolist(), strict=True):
        # log(Phi(b) - Phi(a)) on the side of 0 where it does not cancel
        if a > 0:
            hi, lo = stats.norm.logsf(a), stats.norm.logsf(b)
        else:
            hi, lo = stats.norm.logcdf(b), stats.norm.logcdf(a)
        ref = hi + math.log(-math.expm1(lo - hi))
        assert math.isfinite(g) and abs(g - ref) < 1e-8 * max(1.0, abs(ref)), (a, b, g, ref)


def test_truncated_normal_draws_follow_the_distribution():
    """Draws (the inverse CDF, float32 parameters as anchors have) against the exact CDF by
    Kolmogorov-Smirnov, with the same draws from the same generator; in the box always."""
    stats = pytest.importorskip("scipy.stats")
    dist = truncated(dtype=torch.float32)
    spy = []
    fork = torch.random.fork_rng
    torch.random.fork_rng = lambda *a, **k: spy.append(1) or fork(*a, **k)
    try:
        x = draw(dist, (20000,), gen(3))
    finally:
        torch.random.fork_rng = fork
    assert not spy  # drawn from the generator itself, not torch's fallback (a host sync)
    assert torch.equal(x, draw(dist, (20000,), gen(3)))
    assert ((x >= -1) & (x <= 1)).all()
    for i, (m, s) in enumerate(TRUNC_CASES):
        a, b = (-1 - m) / s, (1 - m) / s
        p = stats.kstest(x[:, i].double().numpy(), stats.truncnorm(a, b, loc=m, scale=s).cdf).pvalue
        assert p > 1e-4, (m, s, p)
    # a box 80 scales away: every draw on its near bound (the mass is within scale / 80 of it)
    far = TruncatedNormal(torch.tensor([3.0, -40.0]), torch.tensor([0.025, 0.5]), -1.0, 1.0)
    y = far.sample((100,))
    assert torch.equal(y, torch.tensor([1.0, -1.0]).expand(100, 2))
    assert torch.isfinite(far.log_prob(y)).all()


def test_truncated_normal_rsample_gradient_is_the_mean_s():
    """d E[x] / d(loc, scale) from reparameterised draws equals the derivative of the exact mean."""
    loc = torch.tensor([0.3, -1.5], dtype=F64, requires_grad=True)
    scale = torch.tensor([0.5, 0.3], dtype=F64, requires_grad=True)
    torch.manual_seed(0)
    n = 200_000
    x = TruncatedNormal(loc, scale, -1.0, 1.0).rsample((n,))
    g_mc = torch.autograd.grad(x.mean(0).sum(), (loc, scale))
    g_exact = torch.autograd.grad(TruncatedNormal(loc, scale, -1.0, 1.0).mean.sum(), (loc, scale))
    for mc, exact in zip(g_mc, g_exact, strict=True):
        # per-draw derivatives are bounded by about 1 + |z|: 0.02 is > 5 standard errors
        assert (mc - exact).abs().max() < 0.02, (mc, exact)


def test_truncated_normal_bad_parameters():
    for loc, scale, low, high, match in [
        (0.0, 0.0, -1.0, 1.0, "scale must be finite and > 0"),
        (0.0, -1.0, -1.0, 1.0, "scale must be finite and > 0"),
        (math.nan, 1.0, -1.0, 1.0, "loc must be finite"),
        (0.0, 1.0, 1.0, 1.0, "low < high"),
        (0.0, 1.0, -math.inf, 1.0, "low and high must be finite"),
        (torch.zeros(3), torch.ones(2), -1.0, 1.0, "do not broadcast"),
    ]:
        with pytest.raises(ValueError, match=match):
            TruncatedNormal(torch.as_tensor(loc), torch.as_tensor(scale), low, high)
    with pytest.raises(TypeError, match="loc must be a real tensor or number, got str"):
        TruncatedNormal("a", 1.0, -1.0, 1.0)
    with pytest.raises(TypeError, match="scale must be real"):
        TruncatedNormal(0.0, torch.ones(2, dtype=torch.complex64), -1.0, 1.0)
