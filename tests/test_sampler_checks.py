"""Samplers catch their own failures: frozen chains and chains thrown onto the bounds warn
(SamplerWarning, with stats), constant energies just work, starts outside the box are reflected
in, and non-finite starts are named (issue 10)."""

import contextlib
import math
import warnings

import pytest
import torch
from scipy import stats as sps
from torch.distributions import Independent, Normal, Uniform

from ebrl.energy import GaussianEnergy
from ebrl.samplers import MALA, Box, Chain, ImportanceSampler, Langevin, Mixture, SamplerWarning
from ebrl.samplers.proposal import ProposalSampler

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def normal(loc, scale, d=1, dtype=torch.float32, batch_shape=()):
    loc = torch.full((*batch_shape, d), loc, dtype=dtype)
    return Independent(Normal(loc, scale * torch.ones_like(loc)), 1)


def quadratic(x):
    return 0.5 * (x**2).sum(-1)


@contextlib.contextmanager
def no_sampler_warning():
    """A context in which a SamplerWarning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerWarning)
        yield


# ---------------------------------------------------------------- frozen and thrown chains


def test_ula_thrown_onto_the_bounds_warns_and_reports():
    """Before: every sample on the box's corners, acceptance 1, no word about it."""
    sampler = Langevin(1e3, 20, bounds=(-1.0, 1.0))
    with pytest.warns(SamplerWarning, match=r"Langevin: \d+ of the 2000 coordinates .* bounds"):
        result = sampler.sample(quadratic, normal(0.0, 1.0, d=2), 1000, generator=gen())
    assert float(result.stats["at_bounds_fraction"]) > 0.9
    assert float(result.stats["stuck_fraction"]) == 0.0  # ULA moves; it is thrown, not stuck


def test_mala_with_a_huge_step_warns_that_its_chains_never_moved():
    """Before: frozen chains, acceptance 0, visible only in stats."""
    init = torch.randn(500, 2, generator=gen(1))
    with pytest.warns(SamplerWarning, match=r"MALA: every chain .* lower it"):
        result = MALA(1e3, 20).sample(quadratic, normal(0.0, 1.0, d=2), 500, init=init)
    assert float(result.stats["stuck_fraction"]) == 1.0
    assert torch.equal(result.samples, init)  # really never moved


def test_stuck_fraction_is_per_batch_element():
    """Two states: a flat one where every chain moves and a steep one where none can."""
    scale = torch.tensor([0.0, 1e6]).unsqueeze(-1)
    energy = lambda x: (scale * x**2).sum(-1)  # noqa: E731
    with pytest.warns(SamplerWarning, match="every chain of 1 of 2 batch element"):
        result = MALA(1.0, 5).sample(
            energy, normal(0.0, 1.0, batch_shape=(2,)), 64, generator=gen()
        )
    assert result.stats["stuck_fraction"].tolist() == [0.0, 1.0]


def test_check_false_skips_the_check_and_keeps_the_stats():
    sampler = Langevin(1e3, 20, bounds=(-1.0, 1.0), check=False)
    with no_sampler_warning():
        result = sampler.sample(quadratic, normal(0.0, 1.0, d=2), 1000, generator=gen())
    assert float(result.stats["at_bounds_fraction"]) > 0.9
    with pytest.raises(TypeError, match="MALA: check must be a bool"):
        MALA(0.1, 5, check=1)


@pytest.mark.parametrize(
    "sampler",
    [
        Langevin(0.05, 50, bounds=(-1.0, 1.0)),
        Langevin(3.0, 50, bounds=(-1.0, 1.0)),  # large, but below ULA's instability in u space
        MALA(0.05, 20, bounds=(-1.0, 1.0), warmup_steps=5),
        MALA(2.0, 20),
        Chain(ImportanceSampler(64, bounds=(-1.0, 1.0)), MALA(0.05, 5, bounds=(-1.0, 1.0))),
    ],
    ids=["ula", "ula-large", "mala-box", "mala-large", "chain"],
)
def test_correct_runs_do_not_warn(sampler):
    with no_sampler_warning():
        result = sampler.sample(
            quadratic, normal(0.0, 2.0, d=3, batch_shape=(4,)), 16, generator=gen()
        )
    assert (result.stats["stuck_fraction"] < 1).all()


def test_a_target_on_the_bound_started_there_does_not_warn():
    """exp(c x) on [0, 1] with c = 1e8 lives within 1e-8 of 1, below float32's resolution, so
    its samples are rightly on the bound; chains that start there (as from a saturated tanh
    actor) are not thrown there."""
    energy = lambda x: -1e8 * x.sum(-1)  # noqa: E731
    proposal = Independent(Uniform(torch.zeros(1), torch.ones(1)), 1)
    with no_sampler_warning():
        result = MALA(0.01, 20, bounds=(0.0, 1.0)).sample(
            energy, proposal, 256, init=torch.ones(256, 1), generator=gen()
        )
    assert float(result.stats["at_bounds_fraction"]) > 0.5


# ---------------------------------------------------------------- constant energies


@pytest.mark.parametrize("make", [Langevin, MALA], ids=["ula", "mala"])
@pytest.mark.parametrize("kind", ["no-graph", "parameter-only"])
def test_a_constant_energy_is_a_random_walk(make, kind):
    """Before: 'energy failed ... does the energy's batch shape match?' (autograd.grad on an
    output with no graph to x). Zero gradient: x_n = x_0 + sqrt(2 eps) sum of n N(0, 1)."""
    c = torch.tensor(3.0, requires_grad=kind == "parameter-only")
    energy = lambda x: c.expand(x.shape[:-1]) * 1.0  # noqa: E731
    n, eps, steps = 20000, 0.1, 10
    result = make(eps, steps).sample(
        energy, normal(0.0, 1.0), n, init=torch.zeros(n, 1), generator=gen(2)
    )
    var = 2 * eps * steps
    assert abs(float(result.samples.var()) - var) < 5 * var * math.sqrt(2 / n)
    assert float(result.stats["acceptance_rate"]) == 1.0  # MALA: the MH ratio is exactly 1


# ---------------------------------------------------------------- starts outside the box


def test_box_reflects_points_back_inside():
    box = Box("test", (0.0, 1.0), torch.zeros(1))
    x = torch.tensor([0.3, 1.2, -0.3, 2.5, -1.75, 0.0, 1.0])
    expected = torch.tensor([0.3, 0.8, 0.3, 0.5, 0.25, 0.0, 1.0])
    torch.testing.assert_close(box.reflect(x), expected)


def test_starts_outside_the_box_do_not_bias_the_chain():
    """MALA(0.05, 400) on N(0, 1) truncated to [0, 1] started from N(0.5, 1), half of whose
    draws lie outside the box. Before: those entered logit space at -+13.8 and 400 steps left
    a variance of 0.0864 against 0.0797. Tolerance: 5 standard errors of the sample variance of
    n independent chains, sqrt((mu4 - var^2) / n)."""
    exact = sps.truncnorm(0.0, 1.0)
    mean, var = exact.mean(), exact.var()
    mu4 = exact.expect(lambda x: (x - mean) ** 4)
    n = 20000
    result = MALA(0.05, 400, bounds=(0.0, 1.0)).sample(
        quadratic, normal(0.5, 1.0, dtype=F64), n, generator=gen()
    )
    x = result.samples.flatten()
    assert abs(float(x.var()) - var) < 5 * math.sqrt((mu4 - var**2) / n), float(x.var())
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / n)


# ---------------------------------------------------------------- non-finite input


@pytest.mark.parametrize("make", [Langevin, MALA], ids=["ula", "mala"])
@pytest.mark.parametrize("bounds", [None, (-1.0, 1.0)])
def test_non_finite_init_is_named(make, bounds):
    init = torch.zeros(8, 2)
    init[3, 1] = math.nan
    with pytest.raises(ValueError, match=r"initial points .* contain NaN or inf"):
        make(0.1, 2, bounds=bounds).sample(
            GaussianEnergy(torch.zeros(2), torch.eye(2)), normal(0.0, 1.0, d=2), 8, init=init
        )


def test_importance_check_false_skips_the_check():
    """ImportanceSampler's check is one host sync per call; check=False skips it."""
    nan_energy = lambda x: torch.where(x[..., 0] > 0, torch.nan, 0.0)  # noqa: E731
    proposal = normal(0.0, 1.0, d=2)
    with pytest.raises(ValueError, match="ImportanceSampler: energy or proposal log_prob is NaN"):
        ImportanceSampler(16).sample(nan_energy, proposal, 4, generator=gen())
    with pytest.raises(ValueError, match="ImportanceSampler: energy or proposal log_prob is NaN"):
        ImportanceSampler(16).weigh(nan_energy, proposal, generator=gen())
    _, log_w = ImportanceSampler(16, check=False).weigh(nan_energy, proposal, generator=gen())
    assert torch.isnan(log_w).any()
    result = ImportanceSampler(16, check=False).sample(quadratic, proposal, 4, generator=gen())
    assert torch.isfinite(result.samples).all()
    with pytest.raises(TypeError, match="ImportanceSampler: check must be a bool"):
        ImportanceSampler(16, check="yes")


def test_importance_names_a_proposal_with_zero_density_at_its_own_draws():
    """log q = -inf at a drawn particle gives a weight of +inf (before: torch.multinomial's raw
    'probability tensor contains either inf, nan or element < 0')."""

    class Broken(Independent):
        def log_prob(self, value):
            return torch.where(value[..., 0] > 0, -math.inf, super().log_prob(value))

    proposal = Broken(Normal(torch.zeros(2), torch.ones(2)), 1)
    with pytest.raises(ValueError, match="proposal's log_prob -inf at its own draws"):
        ImportanceSampler(16).sample(quadratic, proposal, 4, generator=gen())


@pytest.mark.parametrize(
    "make",
    [
        lambda check: Langevin(0.1, 3, bounds=(-1.0, 1.0), check=check),
        lambda check: MALA(0.1, 3, bounds=(-1.0, 1.0), warmup_steps=2, check=check),
        lambda check: ImportanceSampler(8, bounds=(-1.0, 1.0), check=check),
        lambda check: Chain(
            ImportanceSampler(8, bounds=(-1.0, 1.0), check=check),
            MALA(0.1, 3, bounds=(-1.0, 1.0), check=check),
        ),
    ],
    ids=["ula", "mala", "is", "chain"],
)
def test_check_false_makes_no_host_sync(make):
    """On the meta device every read of a tensor's value on the host raises, so a call that
    runs there makes no host sync (and can run without one on an accelerator). With the
    default check=True the call ends with exactly that read."""
    meta = torch.device("meta")
    loc = torch.zeros(3, 2, device=meta)
    proposal = Independent(Normal(loc, torch.ones_like(loc), validate_args=False), 1)
    result = make(False).sample(quadratic, proposal, 5)
    assert result.samples.shape == (5, 3, 2) and result.samples.device == meta
    assert all(value.shape == (3,) for value in result.stats.values())
    with pytest.raises((RuntimeError, NotImplementedError), match="meta"):
        make(True).sample(quadratic, proposal, 5)


@pytest.mark.parametrize(
    "bounds", [(1.0, 1.0 + 1e-12), (0.0, 1e-50), (-1e39, 0.0), (0.0, math.nan)]
)
def test_numeric_bounds_are_checked_in_the_samples_dtype(bounds):
    """Number bounds are checked on the host, after rounding to float32: bounds that collapse or
    overflow there are refused (they would give a box of width 0 or inf)."""
    with pytest.raises(ValueError, match="MALA: bounds must be finite with low < high"):
        MALA(0.1, 2, bounds=bounds).sample(quadratic, normal(0.0, 1.0), 4, generator=gen())
    MALA(0.1, 2, bounds=(0.0, 1e-30)).sample(
        quadratic, normal(0.0, 1.0, dtype=F64), 4, generator=gen()
    )


# ---------------------------------------------------------------- bad input, named at the door

ALL = {
    "ImportanceSampler": lambda: ImportanceSampler(16),
    "Langevin": lambda: Langevin(0.1, 2),
    "MALA": lambda: MALA(0.1, 2, warmup_steps=1),
    "Chain": lambda: Chain(ImportanceSampler(16), MALA(0.1, 2)),
    "ProposalSampler": lambda: ProposalSampler(),
}


@pytest.mark.parametrize("name", ALL)
def test_a_bad_generator_is_named(name):
    """Before: torch's raw 'randn() received an invalid combination of arguments'."""
    with pytest.raises(TypeError, match=f"{name}: generator must be a torch.Generator"):
        ALL[name]().sample(quadratic, normal(0.0, 1.0, d=2), 2, generator=7)


@pytest.mark.parametrize("name", ["ImportanceSampler", "Langevin", "MALA", "Chain"])
@pytest.mark.parametrize(
    "energy",
    [lambda x: 1.0, lambda x: x.sum(-1).tolist(), lambda x: x.detach().sum(-1).numpy()],
    ids=["float", "list", "numpy"],
)
def test_an_energy_that_returns_no_tensor_is_named(name, energy):
    """Before (Langevin/MALA): AttributeError '... has no attribute requires_grad'."""
    with pytest.raises(ValueError, match="energy must map x"):
        ALL[name]().sample(energy, normal(0.0, 1.0, d=2), 2, generator=gen())


@pytest.mark.parametrize("make", [Langevin, MALA], ids=["ula", "mala"])
@pytest.mark.parametrize("shape", [(3,), (1, 1), (2, 2)])
def test_a_step_size_that_does_not_fit_the_batch_is_named(make, shape):
    """Batch shape (2,): a step size per element must broadcast to it (before: torch's raw
    'expand' RuntimeError inside run_chain)."""
    with pytest.raises(ValueError, match=r"step_size of shape .* does not broadcast"):
        make(torch.full(shape, 0.1), 1).sample(quadratic, normal(0.0, 1.0, batch_shape=(2,)), 2)
    make(torch.full((2,), 0.1), 1).sample(quadratic, normal(0.0, 1.0, batch_shape=(2,)), 2)


@pytest.mark.parametrize("name", ["ImportanceSampler", "Chain"])
def test_importance_sampling_on_an_empty_batch_returns_no_samples(name):
    """No states: [num_samples, 0, d], as Langevin and MALA return (before: torch's raw
    'cannot reshape tensor of 0 elements')."""
    result = ALL[name]().sample(quadratic, normal(0.0, 1.0, d=2, batch_shape=(0,)), 3)
    assert result.samples.shape == (3, 0, 2)
    assert all(value.shape == (0,) for value in result.stats.values())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("nan_in", ["loc", "scale"])
@pytest.mark.parametrize("seeded", [False, True])
def test_a_nan_proposal_is_named(name, nan_in, seeded):
    """Before: torch's raw 'normal expects all elements of std >= 0.0' without a generator, and
    NaN samples from ProposalSampler with one."""
    loc, scale = torch.zeros(2, 2), torch.ones(2, 2)
    (loc if nan_in == "loc" else scale)[0, 0] = math.nan
    proposal = Independent(Normal(loc, scale, validate_args=False), 1)
    owner = "ImportanceSampler" if name == "Chain" else name  # a Chain's first stage names it
    with pytest.raises(ValueError, match=f"{owner}: .*(NaN|proposal)"):
        ALL[name]().sample(quadratic, proposal, 2, generator=gen() if seeded else None)


def test_mixture_checks_weights_before_rounding_them():
    comp = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
    mixture = Mixture([comp, comp], [1e-300, 0.0])  # before: underflowed to 0, 'all zero'
    assert torch.isfinite(mixture.log_prob(torch.zeros(1))).all()
    with pytest.raises(ValueError, match="Mixture: weights"):
        Mixture([comp, comp], [1.0, -1e-300])  # before: passed as -0
