"""Anchors: squashed-Gaussian log-density against change of variables, normalisation, the
uniform anchor, categorical zeros, behaviour cloning recovering known demonstrators."""

import math

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ebrl.policies import (
    CategoricalAnchor,
    GaussianAnchor,
    GaussianMixtureAnchor,
    SquashedDistribution,
    UniformAnchor,
    categorical_log_probs,
    fit_behaviour_cloning,
)
from ebrl.samplers import draw
from tests.helpers import assert_moments

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


def test_gaussian_anchor_shapes_bounds_and_draw():
    torch.manual_seed(0)
    anchor = GaussianAnchor(5, Box(-2.0, 1.0, (3,)), hidden_sizes=(16,))
    obs = torch.randn(7, 5)
    dist = anchor(obs)
    assert isinstance(dist, SquashedDistribution)
    assert dist.batch_shape == (7,) and dist.event_shape == (3,)
    a = dist.rsample()
    assert a.requires_grad and a.shape == (7, 3)
    assert dist.log_prob(a).shape == (7,)
    x = draw(dist, (50000,), gen(1))
    assert torch.equal(x, draw(dist, (50000,), gen(1)))
    ref = dist.sample((50000,))
    assert ((x.mean(0) - ref.mean(0)).abs() < 5 * ref.std(0) * math.sqrt(2 / 50000)).all()
    # log-std is held in its range whatever the network outputs
    with torch.no_grad():
        anchor.net[-1].bias.fill_(1e4)
    std = anchor(obs).base_dist.base_dist.scale
    assert (std <= math.exp(2.0) + 1e-5).all()
    unbounded = GaussianAnchor(5, Box(-np.inf, np.inf, (3,)), hidden_sizes=())
    assert isinstance(unbounded(obs), Independent)


def test_mixture_anchor_log_prob_is_the_squashed_mixture():
    torch.manual_seed(1)
    anchor = GaussianMixtureAnchor(4, Box(-1.0, 1.0, (2,)), n_components=3, hidden_sizes=(16,))
    obs = torch.randn(6, 4)
    dist = anchor(obs)
    base = dist.base_dist
    assert isinstance(base, MixtureSameFamily) and dist.batch_shape == (6,)
    a = draw(dist, (20,), gen(2))
    assert a.shape == (20, 6, 2) and (a.abs() <= 1).all()
    # reference: log sum_k w_k p_k(a) with each p_k the squashed k-th component
    comps = base.component_distribution.base_dist
    log_w = base.mixture_distribution.logits
    lp_k = torch.stack(
        [
            SquashedDistribution(
                Independent(Normal(comps.loc[:, k], comps.scale[:, k]), 1), -1.0, 1.0
            ).log_prob(a)
            for k in range(3)
        ],
        -1,
    )
    torch.testing.assert_close(
        dist.log_prob(a), torch.logsumexp(lp_k + log_w, -1), rtol=1e-5, atol=1e-5
    )


def test_uniform_anchor_box_and_discrete():
    box = UniformAnchor(Box(np.array([-1.0, 0.0]), np.array([1.0, 4.0]), dtype=np.float64))
    obs = torch.zeros(5, 3, dtype=F64)
    dist = box(obs)
    assert dist.batch_shape == (5,) and dist.event_shape == (2,)
    inside = torch.tensor([[0.0, 2.0], [1.0, 4.0], [-1.0, 0.0], [0.5, 0.5], [0.9, 3.9]], dtype=F64)
    torch.testing.assert_close(dist.log_prob(inside), torch.full((5,), -math.log(8.0), dtype=F64))
    assert dist.log_prob(inside + torch.tensor([0.0, 4.5], dtype=F64)).eq(-math.inf).all()
    x = draw(dist, (4000,), gen(3))
    assert x.dtype == F64
    assert_moments(
        x,
        torch.tensor([0.0, 2.0], dtype=F64),
        torch.diag(torch.tensor([1 / 3, 16 / 12], dtype=F64)),
        4000 * 5,
    )
    cat = UniformAnchor(Discrete(4))(torch.zeros(3, 2))
    assert isinstance(cat, Categorical) and cat.batch_shape == (3,)
    torch.testing.assert_close(cat.probs, torch.full((3, 4), 0.25))


def test_uniform_anchor_bad_spaces():
    with pytest.raises(ValueError, match="UniformAnchor: the Box must be bounded"):
        UniformAnchor(Box(-np.inf, np.inf, (2,)))
    with pytest.raises(ValueError, match="UniformAnchor: the Box must be bounded"):
        UniformAnchor(Box(np.array([0.0, -np.inf], np.float32), np.array([1.0, 1.0], np.float32)))
    with pytest.raises(ValueError, match="start at 0"):
        UniformAnchor(Discrete(3, start=1))
    with pytest.raises(ValueError, match="Discrete or Box"):
        UniformAnchor("box")
    with pytest.raises(TypeError, match="leading batch dim"):
        UniformAnchor(Discrete(3))(torch.tensor(1.0))


def test_anchor_constructor_and_input_errors():
    with pytest.raises(ValueError, match="GaussianAnchor: the Box must be bounded on every side"):
        GaussianAnchor(
            3, Box(np.array([0.0, -np.inf], np.float32), np.array([1.0, 1.0], np.float32))
        )
    with pytest.raises(ValueError, match=r"1-D gymnasium\.spaces\.Box"):
        GaussianAnchor(3, Discrete(2))
    with pytest.raises(ValueError, match="obs_dim"):
        CategoricalAnchor(0, 3)
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixtureAnchor(3, Box(-1.0, 1.0, (2,)), n_components=0)
    with pytest.raises(ValueError, match="log_std_bounds"):
        GaussianAnchor(3, Box(-1.0, 1.0, (2,)), log_std_bounds=(2.0, -5.0))
    anchor = GaussianAnchor(3, Box(-1.0, 1.0, (2,)), hidden_sizes=(8,))
    with pytest.raises(ValueError, match=r"obs must have shape \[B, 3\]"):
        anchor(torch.zeros(4, 5))
    with pytest.raises(TypeError, match="dtype"):
        anchor(torch.zeros(4, 3, dtype=F64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        anchor(np.zeros((4, 3)))


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


# ----------------------------------------------------------------------------- behaviour cloning


@pytest.mark.parametrize("bounded", [True, False], ids=["squashed", "unbounded"])
def test_bc_recovers_a_linear_gaussian_demonstrator(bounded):
    """u = W s + b + sigma eps (squashed into the box, or not): a linear GaussianAnchor must
    recover W, b and sigma within the Monte Carlo error of maximum likelihood."""
    g = gen(4)
    n, obs_dim, d = 4000, 3, 2
    w = torch.tensor([[0.8, -0.5, 0.2], [0.0, 0.6, -0.9]])
    b = torch.tensor([0.3, -0.2])
    sigma = torch.tensor([0.3, 0.5])
    s = torch.randn(n, obs_dim, generator=g)
    u = s @ w.T + b + sigma * torch.randn(n, d, generator=g)
    space = Box(-2.0, 2.0, (d,)) if bounded else Box(-np.inf, np.inf, (d,))
    a = 2.0 * torch.tanh(u) if bounded else u
    torch.manual_seed(0)
    anchor = GaussianAnchor(obs_dim, space, hidden_sizes=())
    report = fit_behaviour_cloning(
        anchor, s, a, lr=0.02, batch_size=500, max_epochs=150, patience=15, seed=0
    )
    lin = anchor.net[0]
    w_hat, b_hat = lin.weight[:d].detach(), lin.bias[:d].detach()
    sigma_hat = anchor._log_std(lin.bias[d:]).exp().detach()
    # MLE standard errors with n_train samples, s ~ N(0, I): se(W_ij) = se(b_i) = sigma_i / sqrt(n),
    # se(sigma_i) = sigma_i / sqrt(2 n); plus the optimiser's tolerance
    n_train = report.n_train
    se = (sigma / math.sqrt(n_train))[:, None]
    assert ((w_hat - w).abs() <= 5 * se + 0.01).all(), (w_hat, w)
    assert ((b_hat - b).abs() <= 5 * se[:, 0] + 0.01).all(), (b_hat, b)
    assert ((sigma_hat - sigma).abs() <= 5 * sigma / math.sqrt(2 * n_train) + 0.01).all(), sigma_hat
    assert (lin.weight[d:].abs() < 0.1).all()  # log-std does not depend on s
    assert report.heldout_top1 is None and report.n_heldout == 400
    assert report.best_epoch <= report.epochs_run == len(report.history)
    # held-out NLL near the demonstrator's own (its entropy), within 5 sigma of that mean
    true_nll = -Independent(Normal(s @ w.T + b, sigma), 1).log_prob(u)
    if bounded:
        true_nll = true_nll + (math.log(2.0) + torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    assert (
        abs(report.heldout_nll - true_nll.mean().item())
        < 5 * true_nll.std().item() / math.sqrt(400) + 0.02
    )


def test_bc_discrete_linear_softmax_demonstrator():
    g = gen(5)
    n, obs_dim, k = 6000, 4, 3
    w = torch.randn(k, obs_dim, generator=g) * 1.5
    s = torch.randn(n, obs_dim, generator=g)
    logits = s @ w.T
    a = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)[:, 0]
    torch.manual_seed(0)
    anchor = CategoricalAnchor(obs_dim, Discrete(k), hidden_sizes=())
    report = fit_behaviour_cloning(
        anchor, s.numpy(), a.numpy(), lr=0.05, batch_size=500, max_epochs=100, seed=1
    )
    # the demonstrator's own NLL and top-1 agreement of its argmax, over all data (held-out
    # split of 600: standard errors sd / sqrt(600))
    true_nll = -Categorical(logits=logits).log_prob(a)
    agree = (logits.argmax(-1) == a).double()
    assert (
        abs(report.heldout_nll - true_nll.mean().item())
        < 5 * true_nll.std().item() / math.sqrt(600) + 0.02
    )
    assert (
        abs(report.heldout_top1 - agree.mean().item())
        < 5 * agree.std().item() / math.sqrt(600) + 0.02
    )
    # the logits are identified up to a shift per state: compare centred weights
    w_hat = anchor.net[0].weight.detach()
    centred = lambda m: m - m.mean(0)  # noqa: E731
    assert (centred(w_hat) - centred(w)).abs().max() < 0.35


def test_bc_is_deterministic_and_restores_the_best_epoch():
    """200 noisy labels and a wide net: it overfits, so early stopping must step back."""
    s = torch.randn(200, 2, generator=gen(6))
    flip = torch.rand(200, generator=gen(7)) < 0.2
    a = ((s[:, 0] > 0) ^ flip).long()

    def run():
        torch.manual_seed(3)
        anchor = CategoricalAnchor(2, 2, hidden_sizes=(128, 128))
        report = fit_behaviour_cloning(
            anchor, s, a, lr=0.01, batch_size=32, max_epochs=200, patience=10, seed=2
        )
        return anchor, report

    (a1, r1), (a2, r2) = run(), run()
    assert r1 == r2
    for p, q in zip(a1.parameters(), a2.parameters(), strict=True):
        assert torch.equal(p, q)
    assert r1.heldout_nll == min(h for _, h in r1.history)
    # the anchor is left with the best epoch's weights: its NLL over all the data is the
    # size-weighted mix of the reported (best-epoch) held-out and train NLLs
    with torch.no_grad():
        total = -a1(s).log_prob(a).sum().item()
    assert total == pytest.approx(
        r1.train_nll * r1.n_train + r1.heldout_nll * r1.n_heldout, rel=1e-5
    )
    assert r1.best_epoch < r1.epochs_run < 200 and r1.heldout_top1 > 0.6


def test_bc_bad_inputs():
    anchor = GaussianAnchor(2, Box(-1.0, 1.0, (1,)), hidden_sizes=(4,))
    s = torch.zeros(10, 2)
    with pytest.raises(ValueError, match="same number of rows"):
        fit_behaviour_cloning(anchor, s, torch.zeros(9, 1))
    with pytest.raises(ValueError, match=r"actions must have shape \[N, 1\]"):
        fit_behaviour_cloning(anchor, s, torch.zeros(10, 2))
    with pytest.raises(ValueError, match="zero \\(or NaN\\) density"):
        fit_behaviour_cloning(anchor, s, torch.full((10, 1), 1.5))
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit_behaviour_cloning(UniformAnchor(Discrete(2)), s, torch.zeros(10))
    with pytest.raises(ValueError, match="heldout_fraction"):
        fit_behaviour_cloning(anchor, s, torch.zeros(10, 1), heldout_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        fit_behaviour_cloning(anchor, s[:1], torch.zeros(1, 1))
    cat = CategoricalAnchor(2, 3, hidden_sizes=(4,))
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        fit_behaviour_cloning(cat, s, torch.full((10,), 3))
    with pytest.raises(ValueError, match="integers"):
        fit_behaviour_cloning(cat, s, torch.full((10,), 0.5))
    with pytest.raises(TypeError, match=r"nn\.Module"):
        fit_behaviour_cloning(lambda o: None, s, torch.zeros(10))
