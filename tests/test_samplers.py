"""Samplers: contract tests over all of them, then statistics on analytic targets.

Tolerances are ~5 Monte Carlo standard errors computed from the number of independent samples
(independent chains, or independent batch elements), never tuned to a seed.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from torch.distributions import Independent, MultivariateNormal, Normal, Uniform

from ebrl.energy import GaussianEnergy, GaussianMixtureEnergy, MLPEnergy
from ebrl.samplers import (
    MALA,
    Chain,
    ImportanceSampler,
    Langevin,
    MCMCInfo,
    MCMCState,
    categorical_draw,
    draw,
    energy_and_grad,
    init_state,
    langevin_step,
    mala_step,
    sample_chain,
)
from ebrl.samplers.importance import log_normalizer, normalized_weights
from ebrl.samplers.mcmc import gaussian_noise, invalid_energy, mh_log_uniform
from tests.helpers import assert_moments

F64 = torch.float64

SAMPLERS = {
    "is": lambda bounds=None: ImportanceSampler(64, bounds=bounds),
    "ula": lambda bounds=None: Langevin(0.05, 5, bounds=bounds),
    "mala": lambda bounds=None: MALA(0.05, 5, bounds=bounds, warmup_steps=2),
    "chain": lambda bounds=None: Chain(
        ImportanceSampler(64, bounds=bounds), MALA(0.05, 3, bounds=bounds)
    ),
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def normal_proposal(batch_shape, d, scale=1.0, dtype=torch.float32):
    loc = torch.zeros(*batch_shape, d, dtype=dtype)
    return Independent(Normal(loc, scale * torch.ones_like(loc)), 1)


def correlated_gaussian(d=3, dtype=torch.float64):
    a = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.4, 0.5]], dtype=dtype)[:d, :d]
    return GaussianEnergy(torch.tensor([0.5, -1.0, 2.0], dtype=dtype)[:d], a @ a.T)


# ---------------------------------------------------------------- contract, over all samplers


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("bounds", [None, (-1.0, 1.0)])
@pytest.mark.parametrize("batch_shape", [(), (3, 4)])
def test_shapes_dtype_and_stats(name, bounds, batch_shape):
    sampler = SAMPLERS[name](bounds)
    energy = GaussianEnergy(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    proposal = normal_proposal(batch_shape, 2, dtype=torch.float64)
    result = sampler.sample(energy, proposal, num_samples=7, generator=gen())
    assert result.samples.shape == (7, *batch_shape, 2)
    assert result.samples.dtype == torch.float64
    assert not result.samples.requires_grad
    for key, value in result.stats.items():
        assert isinstance(value, torch.Tensor), key
        assert value.shape == batch_shape, key
        assert torch.isfinite(value).all(), key
    if bounds is not None:
        assert result.samples.abs().max() < 1.0  # strictly inside the box


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_samples(name):
    energy = correlated_gaussian(2)
    proposal = normal_proposal((5,), 2, dtype=torch.float64)
    a = SAMPLERS[name]().sample(energy, proposal, 4, generator=gen(1)).samples
    b = SAMPLERS[name]().sample(energy, proposal, 4, generator=gen(1)).samples
    c = SAMPLERS[name]().sample(energy, proposal, 4, generator=gen(2)).samples
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_conditioned_batch_one_call():
    """64 states x 256 particles x 6-D actions, one call, energy conditioned on the states."""
    torch.manual_seed(0)
    energy = MLPEnergy(6, hidden_sizes=(32,), context_dim=3).condition(torch.randn(64, 3))
    proposal = Independent(Uniform(-torch.ones(64, 6), torch.ones(64, 6)), 1)
    sampler = Chain(ImportanceSampler(256, bounds=(-1, 1)), MALA(0.01, 3, bounds=(-1, 1)))
    result = sampler.sample(energy, proposal, num_samples=256, generator=gen())
    assert result.samples.shape == (256, 64, 6)
    assert result.stats["ess"].shape == (64,)
    assert result.samples.abs().max() < 1


def test_mcmc_starts_from_init():
    energy = GaussianEnergy(torch.zeros(1), torch.eye(1))
    init = torch.full((100, 1), 50.0)
    result = Langevin(1e-4, 1).sample(
        energy, normal_proposal((), 1), 100, init=init, generator=gen()
    )
    assert (result.samples > 49).all()  # one tiny step from 50, not a fresh draw near 0


@pytest.mark.parametrize("step", ["langevin", "mala"])
def test_steps_compile_fullgraph(step):
    """Each MCMC step is a pure function that torch.compile captures without a graph break."""
    torch.manual_seed(0)
    energy = MLPEnergy(2, hidden_sizes=(16, 16))
    x = torch.randn(8, 2)
    state = init_state(energy, x)
    noise, log_u = torch.randn(8, 2), torch.rand(8).log()
    if step == "langevin":
        fn = lambda s, n: langevin_step(s, energy, n, step_size=0.1)  # noqa: E731
        args = (state, noise)
    else:
        fn = lambda s, n, u: mala_step(s, energy, n, u, step_size=0.1)  # noqa: E731
        args = (state, noise, log_u)
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    (got, _), (want, _) = compiled(*args), fn(*args)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_langevin_equals_a_plain_loop_of_its_step():
    """The shared chain loop adds nothing to the step: ULA is init_state + n langevin_steps
    with the generator's normals drawn in order."""
    energy = correlated_gaussian(2)
    proposal = normal_proposal((3,), 2, dtype=torch.float64)
    got = Langevin(0.05, 4).sample(energy, proposal, 5, generator=gen(7)).samples
    g = gen(7)
    state = init_state(energy, draw(proposal, (5,), g))
    for _ in range(4):
        state, _ = langevin_step(
            state, energy, torch.randn(5, 3, 2, generator=g, dtype=F64), step_size=0.05
        )
    assert torch.equal(got, state.position)


def random_walk_metropolis_step(state, energy, noise, log_u, *, step_size):
    """A sampler written the way mcmc.py documents: a pure step (here random-walk Metropolis)."""
    y = state.position + torch.sqrt(2 * step_size).unsqueeze(-1) * noise
    e_y, g_y = energy_and_grad(energy, y)
    log_alpha = state.energy - e_y
    accept = log_u < log_alpha
    new = MCMCState(
        torch.where(accept.unsqueeze(-1), y, state.position),
        torch.where(accept, e_y, state.energy),
        torch.where(accept.unsqueeze(-1), g_y, state.grad),
    )
    invalid = invalid_energy(e_y) | torch.isnan(log_alpha)
    return new, MCMCInfo(torch.exp(log_alpha.clamp(max=0.0)), invalid)


def test_a_new_sampler_is_a_step_plus_sample_chain():
    """The extension point: a step and a kernel reuse start, warm-up, stats and checks."""

    def kernel(state, energy, step_size, generator):
        noise = gaussian_noise(state.position, generator)
        log_u = mh_log_uniform(state.position, generator)
        return random_walk_metropolis_step(state, energy, noise, log_u, step_size=step_size)

    target = correlated_gaussian(2)
    proposal = normal_proposal((), 2, scale=1.5, dtype=torch.float64)
    result = sample_chain(
        "RWM",
        kernel,
        target,
        proposal,
        4000,
        None,
        gen(5),
        bounds=None,
        n_steps=300,
        step_size=0.5,
        warmup_steps=100,
        target_acceptance=0.3,
    )
    assert 0.2 < float(result.stats["acceptance_rate"]) < 0.4  # adapted toward 0.3
    assert_moments(result.samples, target.mean, target.covariance, n_eff=4000)
    with pytest.raises(ValueError, match="RWM: init must have shape"):
        sample_chain(
            "RWM",
            kernel,
            target,
            proposal,
            4,
            torch.zeros(3, 2),
            None,
            bounds=None,
            n_steps=1,
            step_size=0.1,
        )


# ---------------------------------------------------------------- statistics


def test_mala_exact_on_correlated_gaussian():
    target = correlated_gaussian(3)
    proposal = normal_proposal((), 3, scale=2.0, dtype=torch.float64)
    sampler = MALA(0.1, 150, warmup_steps=50)
    result = sampler.sample(target, proposal, num_samples=4000, generator=gen(3))
    assert 0.4 < float(result.stats["acceptance_rate"]) < 0.75  # warm-up adapted toward 0.574
    assert_moments(result.samples, target.mean, target.covariance, n_eff=4000)


def test_importance_exact_on_correlated_gaussian_and_log_z():
    target = correlated_gaussian(3)
    # 256 independent batch elements, each resampling 16 of 512 particles.
    batch = 256
    proposal = MultivariateNormal(
        torch.zeros(batch, 3, dtype=torch.float64), 4.0 * torch.eye(3, dtype=torch.float64)
    )
    result = ImportanceSampler(512).sample(target, proposal, num_samples=16, generator=gen(4))
    ess = result.stats["ess"]
    # resampling m of n weighted particles: variance ~ (1/ess + 1/m) per batch element
    n_eff = batch / (1 / ess.mean() + 1 / 16)
    assert_moments(result.samples, target.mean, target.covariance, n_eff=float(n_eff))
    # log Z: the estimate's standard error is sqrt(1/ess - 1/n) per element (delta method)
    log_z = result.stats["log_normalizer"]
    se = ((1 / ess - 1 / 512).clamp(min=0).mean() / batch).sqrt()
    assert (log_z.mean() - target.log_normalizer).abs() < 5 * se + 1e-3


def test_ula_matches_its_discretised_stationary_covariance():
    """ULA on N(mu, S) is an AR(1) with stationary covariance P^-1 (I - eps P / 2)^-1."""
    target = correlated_gaussian(3)
    eps = 0.2
    precision = torch.linalg.inv(target.covariance)
    biased = torch.linalg.inv(precision) @ torch.linalg.inv(
        torch.eye(3, dtype=torch.float64) - eps * precision / 2
    )
    result = Langevin(eps, 200).sample(
        target, normal_proposal((), 3, dtype=torch.float64), num_samples=4000, generator=gen(5)
    )
    assert_moments(result.samples, target.mean, biased, n_eff=4000)
    # ... and the bias is real: the exact covariance is rejected at this sample size
    with pytest.raises(AssertionError):
        assert_moments(result.samples, target.mean, target.covariance, n_eff=4000)


def test_mode_weights_importance_then_mala():
    """A 0.3 / 0.7 mixture of two modes 8 sd apart: MALA alone cannot cross, IS -> MALA must
    carry the weights (bar: within 0.02)."""
    target = GaussianMixtureEnergy(
        torch.tensor([0.3, 0.7]), torch.tensor([[-4.0, 0.0], [4.0, 0.0]]), 0.25
    )
    batch = 128
    proposal = normal_proposal((batch,), 2, scale=4.0)
    sampler = Chain(ImportanceSampler(2048), MALA(0.05, 20))
    result = sampler.sample(target, proposal, num_samples=64, generator=gen(6))
    left = (result.samples[..., 0] < 0).double()
    # independent over batch elements; within one, resampling adds (1/ess + 1/m) variance
    ess = result.stats["ess"].mean()
    se = math.sqrt(0.21 * (1 / ess + 1 / 64) / batch)
    assert abs(left.mean().item() - 0.3) < min(5 * se, 0.02)
    # the chains mixed locally inside each mode: the within-mode variance is the exact 0.25
    right = result.samples[left == 0]
    assert abs(right[:, 1].var().item() - 0.25) < 0.03


@pytest.mark.parametrize(
    "sampler",
    [
        MALA(0.05, 200, bounds=(-0.5, 1.0), warmup_steps=50),
        ImportanceSampler(4096, bounds=(-0.5, 1.0)),
    ],
    ids=["mala", "is"],
)
def test_truncated_gaussian_in_box(sampler):
    """N(mu, diag(s^2)) restricted to [-0.5, 1]^2: moments against scipy's truncnorm."""
    mu = torch.tensor([0.8, -0.3], dtype=torch.float64)
    sd = torch.tensor([0.5, 1.5], dtype=torch.float64)
    target = GaussianEnergy(mu, torch.diag(sd**2))
    proposal = normal_proposal((64,), 2, scale=1.0, dtype=torch.float64)
    result = sampler.sample(target, proposal, num_samples=64, generator=gen(7))
    x = result.samples.reshape(-1, 2)
    assert x.min() >= -0.5 and x.max() <= 1.0
    a, b = (-0.5 - mu) / sd, (1.0 - mu) / sd
    exact = sps.truncnorm(a.numpy(), b.numpy(), loc=mu.numpy(), scale=sd.numpy())
    mean, var = torch.from_numpy(exact.mean()), torch.from_numpy(exact.var())
    n_eff = 64 * 64 if isinstance(sampler, MALA) else 64 / (1 / result.stats["ess"].mean() + 1 / 64)
    assert ((x.mean(0) - mean).abs() < 5 * (var / n_eff).sqrt()).all(), (x.mean(0), mean)
    # var of the sample variance ~ (mu4 - var^2) / n; for these truncations mu4 < 3 var^2
    assert ((x.var(0) - var).abs() < 5 * var * (2 / n_eff) ** 0.5).all(), (x.var(0), var)


@pytest.mark.parametrize("sampler", [MALA(0.5, 100), Langevin(0.05, 400)], ids=["mala", "ula"])
def test_flat_energy_in_box_is_uniform(sampler):
    """A flat energy on [0, 1]: the target is uniform, mean 1/2, variance 1/12 (the Jacobian
    term is what makes this right; without it the chains would pile up at the edges). Chains
    start concentrated at 0.5, so the spread they reach is the sampler's doing."""
    sampler = type(sampler)(sampler.step_size, sampler.n_steps, bounds=(0.0, 1.0))
    energy = lambda x: torch.zeros(x.shape[:-1], dtype=x.dtype)  # noqa: E731
    proposal = Independent(
        Normal(
            torch.full((1,), 0.5, dtype=torch.float64), 0.05 * torch.ones(1, dtype=torch.float64)
        ),
        1,
    )
    x = sampler.sample(energy, proposal, 20000, generator=gen(8)).samples.flatten()
    assert abs(x.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / 20000)
    # ULA's own bias in u space at eps = 0.05 is far below this tolerance
    assert abs(x.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / 20000)
    assert sps.kstest(x.numpy(), "uniform").pvalue > 1e-4


# ---------------------------------------------------------------- proposals with a generator


@pytest.mark.parametrize(
    "make",
    [
        lambda: Normal(torch.zeros(3), torch.ones(3)),
        lambda: Independent(Normal(torch.zeros(4, 2), 2 * torch.ones(4, 2)), 1),
        lambda: MultivariateNormal(torch.ones(2), torch.tensor([[2.0, 0.5], [0.5, 1.0]])),
        lambda: Uniform(-torch.ones(2), torch.ones(2)),
        lambda: torch.distributions.TransformedDistribution(
            Independent(Normal(torch.zeros(2), torch.ones(2)), 1),
            [torch.distributions.TanhTransform(), torch.distributions.AffineTransform(0.0, 2.0)],
        ),
        lambda: torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(torch.tensor([0.3, 0.7])),
            Independent(Normal(torch.tensor([[-3.0], [3.0]]), torch.ones(2, 1)), 1),
        ),
    ],
    ids=["normal", "independent", "mvn", "uniform", "transformed", "mixture"],
)
def test_draw_with_generator_is_reproducible_and_correct(make):
    dist = make()
    a, b = draw(dist, (20000,), gen(9)), draw(dist, (20000,), gen(9))
    assert torch.equal(a, b)
    assert a.shape == dist.sample((20000,)).shape
    # first two moments against the distribution's own (from many global-RNG draws)
    ref = dist.sample((200000,))
    sd = ref.std(0)
    assert ((a.mean(0) - ref.mean(0)).abs() < 5 * sd * math.sqrt(1 / 20000 + 1 / 200000)).all()
    assert ((a.std(0) - sd).abs() < 0.05 * sd + 1e-6).all()


# ---------------------------------------------------------------- bad input


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="MALA: step_size"):
        MALA(0.0, 10)
    with pytest.raises(ValueError, match="Langevin: step_size"):
        Langevin(-1e-3, 10)
    with pytest.raises(ValueError, match="Langevin: step_size"):
        Langevin(float("nan"), 10)
    with pytest.raises(ValueError, match="MALA: n_steps"):
        MALA(0.1, 0)
    with pytest.raises(TypeError, match="Langevin: n_steps"):
        Langevin(0.1, 2.5)
    with pytest.raises(ValueError, match="ImportanceSampler: n_particles"):
        ImportanceSampler(0)
    with pytest.raises(ValueError, match="MALA: target_acceptance"):
        MALA(0.1, 10, target_acceptance=1.0)
    with pytest.raises(TypeError, match="Chain: then"):
        Chain(ImportanceSampler(4), "mala")


@pytest.mark.parametrize("name", SAMPLERS)
def test_bad_sample_arguments(name):
    sampler = SAMPLERS[name]()
    owner = {"is": "ImportanceSampler", "ula": "Langevin", "mala": "MALA", "chain": ""}[name]
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    proposal = normal_proposal((3,), 2)
    with pytest.raises(ValueError, match=f"{owner}.*num_samples"):
        sampler.sample(energy, proposal, num_samples=0)
    with pytest.raises(TypeError, match=f"{owner}.*proposal"):
        sampler.sample(energy, torch.zeros(3, 2))
    # energy conditioned on 5 states, proposal over 3: a shape mismatch, named
    mismatched = MLPEnergy(2, (8,), context_dim=1).condition(torch.zeros(5, 1))
    with pytest.raises(ValueError, match=f"{owner}.*energy"):
        sampler.sample(mismatched, proposal, num_samples=2)
    # wrong output shape
    with pytest.raises(ValueError, match=f"{owner}.*energy must map"):
        sampler.sample(lambda x: x.sum(), proposal, num_samples=2)
    # NaN energy
    nan_energy = lambda x: torch.where(x[..., 0] > 0, torch.nan, 0.0) + 0 * x.sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match=f"{owner}.*NaN"):
        sampler.sample(nan_energy, proposal, num_samples=8, generator=gen())
    with pytest.raises(ValueError, match=f"{owner}.*bounds"):
        SAMPLERS[name]((1.0, -1.0)).sample(energy, proposal, num_samples=2)


def test_bad_init_shape_and_generator_device():
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    proposal = normal_proposal((3,), 2)
    with pytest.raises(ValueError, match=r"MALA: init must have shape"):
        MALA(0.1, 2).sample(energy, proposal, num_samples=4, init=torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="ImportanceSampler: init"):
        ImportanceSampler(8).sample(energy, proposal, init=torch.zeros(1, 3, 2))


def test_all_particles_outside_bounds_is_an_error():
    energy = GaussianEnergy(torch.zeros(1), torch.eye(1))
    proposal = Independent(Normal(torch.full((1,), 100.0), torch.ones(1)), 1)
    with pytest.raises(ValueError, match="ImportanceSampler: every particle has zero weight"):
        ImportanceSampler(16, bounds=(-1, 1)).sample(energy, proposal, generator=gen())


def test_no_python_float_leak_in_stats_numpy_roundtrip():
    # stats are tensors a logger can convert once, after the call
    r = MALA(0.1, 3).sample(correlated_gaussian(2), normal_proposal((2,), 2, dtype=torch.float64))
    assert np.isfinite(r.stats["acceptance_rate"].numpy()).all()


def test_sample_energy_draws_a_box_restricted_gaussian():
    """sample_energy on a standard normal restricted to [0, 1] x [-1, 1]: the moments of the
    truncated normal (scipy's), within 5 standard errors."""
    from scipy.stats import truncnorm

    from ebrl.samplers import sample_energy

    x = sample_energy(lambda x: 0.5 * x.pow(2).sum(-1), 8192, ([0.0, -1.0], [1.0, 1.0]), seed=0)
    assert x.shape == (8192, 2)
    assert (x[:, 0] >= 0).all() and (x[:, 0] <= 1).all() and (x.abs()[:, 1] <= 1).all()
    for i, (a, b) in enumerate(((0.0, 1.0), (-1.0, 1.0))):
        mean, var = truncnorm.stats(a, b, moments="mv")
        se = (float(var) / 8192) ** 0.5
        assert abs(float(x[:, i].mean()) - float(mean)) < 5 * se
    with pytest.raises(ValueError, match="dim="):
        sample_energy(lambda x: x.sum(-1), 10, (-1.0, 1.0))
    with pytest.raises(ValueError, match="low < high"):
        sample_energy(lambda x: x.sum(-1), 10, (1.0, -1.0), dim=2)


def test_normalized_weights_equal_softmax_and_log_normalizer():
    """One exp gives ``softmax`` and ``log_normalizer`` together, also for weights of very
    different scales and for an element whose weights are all zero (log Z = -inf)."""
    gen = torch.Generator().manual_seed(0)
    log_w = torch.randn(16, 5, generator=gen, dtype=torch.float64) * torch.tensor(
        [1.0, 10.0, 100.0, 1000.0, 1.0], dtype=torch.float64
    )
    log_w[:, 4] = -math.inf
    probs, log_z = normalized_weights(log_w)
    torch.testing.assert_close(probs[:, :4], torch.softmax(log_w[:, :4], 0))
    torch.testing.assert_close(log_z, log_normalizer(log_w))
    assert log_z[4] == -math.inf


@pytest.mark.parametrize("shape", [(7,), (7, 3), (4, 7, 3)])
def test_normalized_weights_along_every_dimension(shape):
    """Along each dimension (negative too): ``softmax`` and ``log_normalizer`` along it, and a
    ``log Z`` of the input's shape without that dimension."""
    log_w = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for dim in range(-len(shape), len(shape)):
        probs, log_z = normalized_weights(log_w * 5, dim)
        torch.testing.assert_close(probs, torch.softmax(log_w * 5, dim))
        torch.testing.assert_close(log_z, log_normalizer(log_w * 5, dim))
        assert log_z.shape == torch.Size(s for i, s in enumerate(shape) if i != dim % len(shape))


@pytest.mark.parametrize(
    "layout", ["2-D", "transposed", "1-D", "float64"]
)  # transposed: the agents draw from softmax(log w, 0).T
@pytest.mark.parametrize("shape", [(1, 2), (16, 5), (3, 7)])
def test_categorical_draw_is_torch_multinomial_without_its_check(shape, layout):
    """The same draws as ``torch.multinomial(p, 1)`` from the same generator state (its own
    algorithm), unnormalised weights and zero weights included, and the generator ends in the
    same state."""
    weights = torch.rand(shape[::-1], generator=torch.Generator().manual_seed(1)) * 3
    weights[0] = 0.0  # a zero-probability category is never drawn
    weights = weights.T  # [*shape], not contiguous
    if layout != "transposed":
        weights = weights.contiguous()
    if layout == "1-D":
        weights = weights[0]
    if layout == "float64":
        weights = weights.double()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ours = torch.stack([categorical_draw(weights, g1) for _ in range(300)])
    torchs = torch.stack([torch.multinomial(weights, 1, generator=g2)[..., 0] for _ in range(300)])
    assert torch.equal(ours, torchs)
    assert torch.equal(g1.get_state(), g2.get_state())
    assert (ours != 0).all()


def test_categorical_draw_frequencies_match_the_probabilities():
    """Chi-square goodness of fit of 20k draws of one row against its normalised weights."""
    weights = torch.tensor([[0.5, 2.0, 1.0, 0.0, 0.25]])
    index = categorical_draw(weights.expand(20_000, 5), torch.Generator().manual_seed(0))
    counts = torch.bincount(index, minlength=5).double()
    expected = weights[0].double() / weights.double().sum() * 20_000
    assert counts[3] == 0
    keep = expected > 0
    p_value = sps.chisquare(counts[keep].numpy(), expected[keep].numpy()).pvalue
    assert p_value > 1e-3


def test_categorical_draw_rejects_bad_input():
    """Wrong types and shapes are named errors (the weights' values are the caller's to check)."""
    with pytest.raises(TypeError, match="probs must be a floating-point tensor, got list"):
        categorical_draw([0.5, 0.5])
    with pytest.raises(TypeError, match=r"probs must be a floating-point tensor, got torch\.int64"):
        categorical_draw(torch.ones(2, 3, dtype=torch.int64))
    for shape in [(), (4, 0)]:
        with pytest.raises(ValueError, match="n >= 1 categories"):
            categorical_draw(torch.ones(shape))
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None, got int"):
        categorical_draw(torch.ones(2, 3), generator=0)
