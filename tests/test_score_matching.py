"""Score matching: closed forms, plain-loop references, bad input, and learning a 2-D mixture."""

import math

import pytest
import torch
from torch import nn

from ebrl.energy import Energy, GaussianEnergy, MLPEnergy
from ebrl.trainers import (
    DenoisingScoreMatching,
    ExactScoreMatching,
    SlicedScoreMatching,
    denoising_score_matching_loss,
    exact_score_matching_loss,
    fit,
    sliced_score_matching_loss,
)
from tests.trainer_helpers import assert_learns_mixture, random_energy


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


class QuadraticEnergy(Energy):
    """``E(x) = 1/2 (x - mu)^T L L^T (x - mu)``: a Gaussian family with learnable mean and
    precision ``P = L L^T`` (``L`` lower triangular with a positive diagonal)."""

    def __init__(self, d):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(d, dtype=torch.float64))
        self.lower = nn.Parameter(torch.zeros(d, d, dtype=torch.float64))
        self.log_diag = nn.Parameter(torch.zeros(d, dtype=torch.float64))

    def tril(self):
        return torch.tril(self.lower, -1) + torch.diag(self.log_diag.exp())

    def forward(self, x):
        z = (x - self.mean) @ self.tril()
        return 0.5 * z.pow(2).sum(-1)


# ---------------------------------------------------------------- closed forms


def test_esm_gaussian_family_recovers_sample_mean_and_covariance():
    """For a Gaussian energy J(mu, P) = mean 1/2 |P (x - mu)|^2 - tr P, minimised exactly at
    mu = sample mean and P = S^-1 with S the (1/n) sample covariance: a deterministic optimum."""
    a = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.4]], dtype=torch.float64)
    x = torch.randn(400, 3, generator=gen(), dtype=torch.float64) @ a.T + torch.tensor(
        [1.0, -2.0, 0.5], dtype=torch.float64
    )
    energy = QuadraticEnergy(3)
    opt = torch.optim.LBFGS(
        energy.parameters(),
        lr=1,
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss, _ = exact_score_matching_loss(energy, x)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    sample_cov = torch.cov(x.T, correction=0)
    precision = energy.tril() @ energy.tril().T
    torch.testing.assert_close(energy.mean.detach(), x.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.inv(precision).detach(), sample_cov, atol=1e-6, rtol=0)


def test_esm_on_standard_normal_with_quadratic_energy_is_minus_half_d():
    """E = |x|^2 / 2: the loss is mean |x|^2 / 2 - d exactly, whose expectation is -d/2
    (Var(|x|^2 / 2) = d/2, so the standard error is sqrt(d / 2n))."""
    d, n = 4, 20000
    x = torch.randn(n, d, generator=gen(1), dtype=torch.float64)
    energy = GaussianEnergy(torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64))
    loss, terms = exact_score_matching_loss(energy, x)
    torch.testing.assert_close(loss, 0.5 * x.pow(2).sum(-1).mean() - d)
    torch.testing.assert_close(terms["divergence"], torch.tensor(-float(d), dtype=torch.float64))
    assert abs(float(loss.detach()) + d / 2) < 5 * math.sqrt(d / 2 / n)


# ---------------------------------------------------------------- plain-loop references


def _per_point(energy, x_i):
    """Energy gradient and Hessian at one point, by torch.autograd.functional (with graphs)."""
    f = lambda y: energy(y.unsqueeze(0)).squeeze(0)  # noqa: E731
    g = torch.autograd.functional.jacobian(f, x_i, create_graph=True)
    h = torch.autograd.functional.hessian(f, x_i, create_graph=True)
    return g, h


def _assert_same_value_and_grads(energy, loss, ref):
    params = list(energy.parameters())
    # (the output bias gets no gradient: a constant shift of E leaves every score unchanged)
    got = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    want = torch.autograd.grad(ref, params, allow_unused=True)
    torch.testing.assert_close(loss, ref)
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)
        if g is not None:
            torch.testing.assert_close(g, w)


def test_esm_equals_plain_loop():
    energy = random_energy(3)
    x = torch.randn(7, 3, generator=gen(2), dtype=torch.float64)
    loss, _ = exact_score_matching_loss(energy, x)
    ref = 0
    for x_i in x:
        g, h = _per_point(energy, x_i)  # s = -g, tr grad s = -tr H
        ref = ref + 0.5 * g.pow(2).sum() - torch.trace(h)
    _assert_same_value_and_grads(energy, loss, ref / len(x))


def test_dsm_equals_plain_loop_with_per_point_sigmas():
    energy = random_energy(3)
    x = torch.randn(6, 3, generator=gen(3), dtype=torch.float64)
    noise = torch.randn(6, 3, generator=gen(4), dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 0.1, 0.3, 2.0], dtype=torch.float64)
    loss, _ = denoising_score_matching_loss(energy, x, noise, sigma)
    ref = 0
    for x_i, e_i, s_i in zip(x, noise, sigma, strict=True):
        g, _ = _per_point(energy, x_i + s_i * e_i)
        target = -e_i / s_i  # grad log N(x~; x, s^2 I)
        ref = ref + 0.5 * s_i**2 * (-g - target).pow(2).sum()
    _assert_same_value_and_grads(energy, loss, ref / len(x))


@pytest.mark.parametrize("variance_reduction", [True, False])
def test_ssm_equals_plain_loop(variance_reduction):
    energy = random_energy(3)
    x = torch.randn(5, 3, generator=gen(5), dtype=torch.float64)
    v = torch.randn(2, 5, 3, generator=gen(6), dtype=torch.float64)
    loss, _ = sliced_score_matching_loss(energy, x, v, variance_reduction)
    ref = 0
    for j in range(2):
        for i in range(5):
            g, h = _per_point(energy, x[i])
            s = -g
            norm = 0.5 * s.pow(2).sum() if variance_reduction else 0.5 * (v[j, i] @ s) ** 2
            ref = ref + (-(v[j, i] @ h @ v[j, i]) + norm)
    _assert_same_value_and_grads(energy, loss, ref / 10)


def test_ssm_and_esm_agree_in_expectation():
    """E_v[v^T H v] = tr H: with many projections SSM-VR approaches ESM."""
    energy = random_energy(2)
    x = torch.randn(64, 2, generator=gen(7), dtype=torch.float64)
    esm, _ = exact_score_matching_loss(energy, x)
    losses = torch.stack(
        [SlicedScoreMatching(64).loss(energy, x, generator=gen(s))[0] for s in range(8)]
    ).detach()
    se = losses.std() / math.sqrt(len(losses))
    assert abs(float(losses.mean() - esm.detach())) < 5 * float(se) + 1e-9


def test_objectives_are_deterministic_given_the_generator():
    energy = random_energy(2)
    x = torch.randn(16, 2, generator=gen(8), dtype=torch.float64)
    for objective in (DenoisingScoreMatching((0.1, 0.5)), SlicedScoreMatching(2)):
        a, _ = objective.loss(energy, x, generator=gen(1))
        b, _ = objective.loss(energy, x, generator=gen(1))
        c, _ = objective.loss(energy, x, generator=gen(2))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "objective",
    [
        DenoisingScoreMatching((0.1, 0.3, 0.5)),
        SlicedScoreMatching(2),
        SlicedScoreMatching(1, projection="rademacher"),
        ExactScoreMatching(),
    ],
)
def test_shards_draw_what_one_process_draws_for_the_whole_batch(objective):
    """Data-parallel fit: each rank's shard of the global batch, with the shared generator,
    gets the noise one process draws for those rows, so the mean of the shards' losses and
    gradients is the one-process loss and gradient."""
    energy = random_energy(2)
    x = torch.randn(12, 2, generator=gen(3), dtype=torch.float64)
    params = list(energy.parameters())

    def loss_and_grad(rows, shard):
        loss, _ = objective.loss(energy, x[rows], generator=gen(4), shard=shard)
        grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
        return loss.detach(), grads

    whole, whole_grad = loss_and_grad(slice(None), (0, 1))
    for n_ranks in (2, 3):
        n = x.shape[0] // n_ranks
        parts = [loss_and_grad(slice(r * n, (r + 1) * n), (r, n_ranks)) for r in range(n_ranks)]
        torch.testing.assert_close(sum(p[0] for p in parts) / n_ranks, whole)
        for i, g in enumerate(whole_grad):
            torch.testing.assert_close(sum(p[1][i] for p in parts) / n_ranks, g)
    if isinstance(objective, DenoisingScoreMatching):  # a draw for the shard alone differs
        own, _ = objective.loss(energy, x[:6], generator=gen(4))
        first, _ = objective.loss(energy, x[:6], generator=gen(4), shard=(0, 2))
        assert not torch.equal(own, first)


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), [0, 1], (0.0, 1), (True, 2), (0,)])
def test_bad_shard(shard):
    x = torch.randn(4, 2)
    for objective in (ExactScoreMatching(), DenoisingScoreMatching(0.1), SlicedScoreMatching()):
        with pytest.raises(ValueError, match="shard must be a tuple"):
            objective.loss(MLPEnergy(2, (8,)), x, generator=gen(), shard=shard)


def test_rademacher_projections_and_no_grad_evaluation():
    energy = MLPEnergy(2, (16,))
    x = torch.randn(8, 2, generator=gen(9))
    with torch.no_grad():
        loss, terms = SlicedScoreMatching(3, projection="rademacher").loss(
            energy, x, generator=gen()
        )
        esm, _ = ExactScoreMatching().loss(energy, x)
    assert not loss.requires_grad and not esm.requires_grad
    assert torch.isfinite(loss) and set(terms) == {"score_norm", "divergence"}


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: DenoisingScoreMatching(0.0), ValueError, "sigma"),
        (lambda: DenoisingScoreMatching(-1.0), ValueError, "sigma"),
        (lambda: DenoisingScoreMatching(()), ValueError, "sigma"),
        (lambda: DenoisingScoreMatching((0.1, float("nan"))), ValueError, "sigma"),
        (lambda: SlicedScoreMatching(0), ValueError, "n_projections"),
        (lambda: SlicedScoreMatching(projection="sobol"), ValueError, "projection"),
    ],
)
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "objective", [ExactScoreMatching(), DenoisingScoreMatching(0.1), SlicedScoreMatching(1)]
)
def test_bad_batches(objective):
    energy = MLPEnergy(2, (8,))
    with pytest.raises(ValueError, match=r"x must have shape \[n, d\]"):
        objective.loss(energy, torch.zeros(2))
    with pytest.raises(TypeError, match="floating point"):
        objective.loss(energy, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="energy must map"):
        objective.loss(lambda x: x.sum(), torch.zeros(4, 2))


def test_sigma_sequence_is_stored_as_a_tuple():
    objective = DenoisingScoreMatching([0.1, 0.2])
    assert objective.sigma == (0.1, 0.2) and objective.levels == (0.1, 0.2)
    hash(objective)


# ---------------------------------------------------------------- learning


@pytest.mark.parametrize(
    ("objective", "steps"),
    [
        (ExactScoreMatching(), 600),
        (SlicedScoreMatching(1), 600),
        (DenoisingScoreMatching(0.1), 2000),
    ],
    ids=["esm", "ssm", "dsm"],
)
def test_learns_a_two_component_mixture(objective, steps):
    assert_learns_mixture(
        lambda energy, data: fit(
            energy, data, objective, steps, batch_size=256, lr=3e-3, seed=0, progress_bar=False
        )
    )


class AffineEnergy(Energy):
    """``E(x) = w . x``: its score ``-w`` does not depend on ``x`` (zero Hessian)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return x @ self.w


def test_a_score_constant_in_x_has_zero_divergence():
    """ESM and SSM of an affine energy are exactly 1/2 |w|^2 (autograd sees no x-dependence)."""
    w = torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)
    x = torch.randn(64, 3, dtype=torch.float64, generator=gen())
    expected = 0.5 * w.pow(2).sum()
    esm, _ = exact_score_matching_loss(AffineEnergy(w.clone()), x)
    torch.testing.assert_close(esm, expected)
    v = torch.randn(2, 64, 3, dtype=torch.float64, generator=gen(1))
    ssm, _ = sliced_score_matching_loss(AffineEnergy(w.clone()), x, v)
    torch.testing.assert_close(ssm, expected)
