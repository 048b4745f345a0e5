"""Property-based tests (Hypothesis) over ebrl's public entry points.

Every property draws arguments, good and bad, and asserts one of two outcomes: a clear
``ValueError``/``TypeError`` whose message names the argument, or a finite, correctly shaped
result, equal to the closed form where there is one (``pi = softmax(log anchor + Q / T)``,
``log Z`` of a Gaussian, ...). A raw torch/numpy error (``RuntimeError``, ``IndexError``), a NaN
or a hang is a failure.

Runs:
    pytest tests/test_properties.py                             # CI profile: fixed examples
    HYPOTHESIS_PROFILE=long pytest tests/test_properties.py     # 500 fresh examples a property

The profiles live in tests/conftest.py. A property that found a bug in code owned elsewhere is
marked ``xfail(strict=True)`` with the bug in its reason, so it flips when the bug is fixed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import tempfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch.distributions import Categorical, Independent, MultivariateNormal, Normal, Uniform

import ebrl
from ebrl.cli import main
from ebrl.data import toy2d
from ebrl.energy import GaussianEnergy, GaussianMixtureEnergy, MLPEnergy
from ebrl.metrics import grid_log_normalizer, grid_nll, mmd
from ebrl.policies import (
    AnchoredPolicy,
    CategoricalAnchor,
    GaussianAnchor,
    GaussianMixtureAnchor,
    UniformAnchor,
    masked_categorical,
)
from ebrl.samplers import (
    MALA,
    Chain,
    ImportanceSampler,
    Langevin,
    Mixture,
    draw,
    effective_sample_size,
    log_normalizer,
)
from ebrl.samplers.proposal import ProposalSampler
from ebrl.trainers import (
    ContrastiveDivergence,
    DenoisingScoreMatching,
    ExactScoreMatching,
    SlicedScoreMatching,
    fit,
)

CLEAR = (ValueError, TypeError)

# ----------------------------------------------------------------------------- strategies


def reals(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


seeds = st.integers(0, 2**31 - 1)
batch_shapes = st.lists(st.integers(1, 3), max_size=2).map(tuple)
dims = st.integers(1, 3)
dtypes = st.sampled_from([torch.float32, torch.float64])
not_positive = st.one_of(st.floats(max_value=0.0), st.sampled_from([math.nan, math.inf]))
# things that are not an int >= 1 (check_int's contract: no floats, no bools)
not_count = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=2),
    st.none(),
)


def raises_naming(call, *names: str) -> BaseException:
    """``call()`` raises ``ValueError``/``TypeError`` whose message names one of ``names``."""
    with pytest.raises(CLEAR) as info:
        call()
    message = str(info.value)
    assert any(name in message for name in names), f"{names} not in {message!r}"
    return info.value


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


# ----------------------------------------------------------------------------- samplers

SAMPLER_KINDS = ("importance", "langevin", "mala", "chain", "proposal")


def make_sampler(kind: str, bounds, step_size: float = 0.1, n_steps: int = 2):
    if kind == "importance":
        return ImportanceSampler(16, bounds=bounds)
    if kind == "langevin":
        return Langevin(step_size, n_steps, bounds=bounds)
    if kind == "mala":
        return MALA(step_size, n_steps, bounds=bounds, warmup_steps=2)
    if kind == "chain":
        return Chain(ImportanceSampler(16, bounds=bounds), MALA(step_size, n_steps, bounds=bounds))
    return ProposalSampler()


def gaussian_problem(batch: tuple, d: int, dtype: torch.dtype, scale: float = 2.0):
    """A standard Gaussian target with batch shape ``batch`` and a wider Gaussian proposal."""
    target = GaussianEnergy(torch.zeros(*batch, d, dtype=dtype), torch.eye(d, dtype=dtype))
    loc = torch.zeros(*batch, d, dtype=dtype)
    proposal = Independent(Normal(loc, torch.full_like(loc, scale)), 1)
    return target, proposal


@given(
    kind=st.sampled_from(SAMPLER_KINDS),
    batch=batch_shapes,
    d=dims,
    num=st.integers(1, 4),
    dtype=dtypes,
    bounded=st.booleans(),
    low=reals(-3.0, 1.0),
    width=reals(0.05, 4.0),
    step=reals(1e-4, 1.0),
    n_steps=st.integers(1, 4),
    tensors=st.booleans(),
    seed=seeds,
)
def test_sampler_contract(
    kind, batch, d, num, dtype, bounded, low, width, step, n_steps, tensors, seed
):
    """Shapes ``[num, *batch, d]``, the proposal's dtype, finite samples inside the box, and
    stats of shape ``[*batch]``; only importance sampling may fail, when no particle lands in a
    narrow box. ``tensors``: one step size per batch element, bounds per dimension."""
    bounds = (low, low + width) if bounded and kind != "proposal" else None
    if tensors:
        step = torch.full(batch, step, dtype=dtype)
        if bounds is not None:
            offsets = torch.linspace(0, 0.5, d, dtype=dtype)
            bounds = (low + offsets, low + width + offsets)
            low, width = bounds[0], bounds[1] - bounds[0]
    sampler = make_sampler(kind, bounds, step, n_steps)
    target, proposal = gaussian_problem(batch, d, dtype)
    g = torch.Generator().manual_seed(seed)
    try:
        result = sampler.sample(target, proposal, num, generator=g)
    except ValueError as err:
        assert bounds is not None and kind in ("importance", "chain"), err
        assert "zero weight" in str(err)
        return
    x = result.samples
    assert x.shape == (num, *batch, d) and x.dtype == dtype and finite(x)
    if bounds is not None:
        assert bool(((x >= low) & (x <= low + width)).all())
    for name, value in result.stats.items():
        assert value.shape == batch and finite(value), name
    if "acceptance_rate" in result.stats:
        rate = result.stats["acceptance_rate"]
        assert bool(((rate >= 0) & (rate <= 1)).all())
    if "ess" in result.stats:
        ess = result.stats["ess"]
        assert bool(((ess >= 1 - 1e-4) & (ess <= 16 + 1e-3)).all())


@given(kind=st.sampled_from(SAMPLER_KINDS), batch=batch_shapes, d=dims, seed=seeds)
def test_sampler_same_seed_same_samples(kind, batch, d, seed):
    target, proposal = gaussian_problem(batch, d, torch.float64)
    sampler = make_sampler(kind, None)
    first = sampler.sample(target, proposal, 3, generator=torch.Generator().manual_seed(seed))
    again = sampler.sample(target, proposal, 3, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(first.samples, again.samples)


@given(
    case=st.one_of(
        st.tuples(st.just("ImportanceSampler"), st.just("n_particles"), not_count),
        st.tuples(st.sampled_from(["Langevin", "MALA"]), st.just("step_size"), not_positive),
        st.tuples(st.sampled_from(["Langevin", "MALA"]), st.just("n_steps"), not_count),
        st.tuples(st.just("MALA"), st.just("warmup_steps"), st.integers(max_value=-1)),
        st.tuples(
            st.just("MALA"),
            st.just("target_acceptance"),
            st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(math.nan)),
        ),
        st.tuples(st.just("MALA"), st.just("adapt_rate"), not_positive),
    )
)
def test_sampler_constructors_name_bad_arguments(case):
    cls_name, arg, value = case
    cls = {"ImportanceSampler": ImportanceSampler, "Langevin": Langevin, "MALA": MALA}[cls_name]
    kwargs = {} if cls is ImportanceSampler else {"step_size": 0.1, "n_steps": 1}
    raises_naming(lambda: cls(**{**kwargs, arg: value}), arg)


@given(
    kind=st.sampled_from(SAMPLER_KINDS[:4]),
    bounds=st.one_of(
        st.tuples(reals(-5, 5), reals(-5, 5)).filter(lambda b: b[0] >= b[1]),
        st.tuples(st.just(math.nan), reals(-1, 1)),
        st.tuples(reals(-1, 1), st.just(math.inf)),
        st.just((-1.0, 0.0, 1.0)),
        st.just((torch.zeros(3), torch.ones(3))),  # 3 bounds for an event of size 2
        st.just(1.0),
    ),
)
def test_samplers_name_bad_bounds(kind, bounds):
    target, proposal = gaussian_problem((2,), 2, torch.float32)
    sampler = make_sampler(kind, bounds)
    raises_naming(lambda: sampler.sample(target, proposal, 2), "bounds")


@given(step=st.lists(reals(-1, 1), min_size=2, max_size=2).filter(lambda v: min(v) <= 0))
def test_mcmc_names_a_non_positive_tensor_step_size(step):
    for cls in (Langevin, MALA):
        raises_naming(lambda cls=cls: cls(torch.tensor(step), 1), "step_size")


@given(
    kind=st.sampled_from(SAMPLER_KINDS),
    generator=st.one_of(st.integers(), st.text(max_size=3), st.just(object())),
)
def test_samplers_name_a_bad_generator(kind, generator):
    target, proposal = gaussian_problem((2,), 2, torch.float32)
    name = type(make_sampler(kind, None)).__name__
    call = lambda: make_sampler(kind, None).sample(target, proposal, 2, generator=generator)  # noqa: E731
    raises_naming(call, f"{name}: generator")


@given(
    kind=st.sampled_from(SAMPLER_KINDS[:4]),
    output=st.sampled_from(["float", "list", "numpy"]),
)
def test_samplers_name_an_energy_that_returns_no_tensor(kind, output):
    energy = {
        "float": lambda x: 1.0,
        "list": lambda x: x.sum(-1).tolist(),
        "numpy": lambda x: x.detach().sum(-1).numpy(),
    }[output]
    _, proposal = gaussian_problem((2,), 2, torch.float32)
    raises_naming(lambda: make_sampler(kind, None).sample(energy, proposal, 2), "energy")


@given(
    cls=st.sampled_from([Langevin, MALA]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3)
    .map(tuple)
    .filter(lambda s: s not in ((1,), (2,))),
)
def test_mcmc_names_a_step_size_that_does_not_fit_the_batch(cls, shape):
    target, proposal = gaussian_problem((2,), 2, torch.float32)
    raises_naming(lambda: cls(torch.full(shape, 0.1), 1).sample(target, proposal, 2), "step_size")


@given(kind=st.sampled_from(["importance", "chain"]), d=dims, num=st.integers(1, 3))
def test_importance_sampling_on_an_empty_batch(kind, d, num):
    target, proposal = gaussian_problem((0,), d, torch.float32)
    try:
        x = make_sampler(kind, None).sample(target, proposal, num).samples
    except ValueError as err:
        assert "batch" in str(err)
        return
    assert x.shape == (num, 0, d)


@given(
    kind=st.sampled_from(SAMPLER_KINDS),
    nan_in=st.sampled_from(["loc", "scale"]),
    seeded=st.booleans(),
)
def test_samplers_name_a_nan_proposal(kind, nan_in, seeded):
    loc, scale = torch.zeros(2, 2), torch.ones(2, 2)
    (loc if nan_in == "loc" else scale)[0, 0] = math.nan
    proposal = Independent(Normal(loc, scale, validate_args=False), 1)
    target, _ = gaussian_problem((2,), 2, torch.float32)
    g = torch.Generator().manual_seed(0) if seeded else None
    try:
        x = make_sampler(kind, None).sample(target, proposal, 2, generator=g).samples
    except ValueError:
        return
    assert finite(x)


@given(value=st.one_of(st.none(), st.integers(), st.text(max_size=3)))
def test_chain_rejects_non_samplers(value):
    raises_naming(lambda: Chain(value, MALA(0.1, 1)), "first")
    raises_naming(lambda: Chain(ImportanceSampler(4), value), "then")


@given(kind=st.sampled_from(SAMPLER_KINDS), num=not_count)
def test_sample_names_bad_num_samples(kind, num):
    target, proposal = gaussian_problem((2,), 2, torch.float32)
    raises_naming(lambda: make_sampler(kind, None).sample(target, proposal, num), "num_samples")


@given(
    kind=st.sampled_from(SAMPLER_KINDS),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
)
def test_sample_names_bad_init(kind, shape):
    """MCMC needs ``init [num_samples, *batch, d]``; samplers that draw from the proposal take
    no init at all."""
    target, proposal = gaussian_problem((2,), 2, torch.float32)
    if kind in ("langevin", "mala"):
        assume(shape != (3, 2, 2))
    init = torch.zeros(shape)
    raises_naming(lambda: make_sampler(kind, None).sample(target, proposal, 3, init=init), "init")


@given(
    kind=st.sampled_from(SAMPLER_KINDS[:4]),
    wrong=st.sampled_from(["scalar", "same", "extra"]),
)
def test_samplers_name_energy_with_wrong_output_shape(kind, wrong):
    energies = {
        "scalar": lambda x: x.pow(2).sum(),
        "same": lambda x: x.pow(2),
        "extra": lambda x: x.pow(2).sum(-1, keepdim=True),
    }
    _, proposal = gaussian_problem((2,), 2, torch.float32)
    sampler = make_sampler(kind, None)
    raises_naming(lambda: sampler.sample(energies[wrong], proposal, 3), "energy")


@given(
    kind=st.sampled_from(SAMPLER_KINDS[:4]),
    threshold=st.one_of(st.just(-math.inf), reals(-4.0, 4.0)),
    bounded=st.booleans(),
    seed=seeds,
)
def test_samplers_never_return_nan_energy_regions(kind, threshold, bounded, seed):
    """An energy that is NaN where ``x_0 > threshold`` (everywhere for ``-inf``): a clear
    ``ValueError``, or samples that never visited the NaN region."""

    def energy(x):
        e = 0.5 * x.pow(2).sum(-1)
        return torch.where(x[..., 0] > threshold, math.nan, e)

    _, proposal = gaussian_problem((3,), 2, torch.float64)
    sampler = make_sampler(kind, (-3.0, 3.0) if bounded else None)
    try:
        x = sampler.sample(energy, proposal, 4, generator=torch.Generator().manual_seed(seed))
    except ValueError as err:
        assert "NaN" in str(err) or "nan" in str(err)
        return
    assert finite(x.samples) and bool((x.samples[..., 0] <= threshold).all())


@given(
    d=dims,
    mean=st.lists(reals(-3, 3), min_size=3, max_size=3),
    var=st.lists(reals(0.1, 5), min_size=3, max_size=3),
    n=st.integers(1, 64),
    seed=seeds,
)
def test_importance_log_normalizer_exact_when_proposal_is_target(d, mean, var, n, seed):
    """With ``q = p`` normalised, every weight is ``Z``: ``log_normalizer = log Z`` exactly and
    the ESS is the particle count."""
    cov = torch.diag(torch.tensor(var[:d], dtype=torch.float64))
    target = GaussianEnergy(torch.tensor(mean[:d], dtype=torch.float64), cov)
    result = ImportanceSampler(n).sample(
        target, target.distribution(), 2, generator=torch.Generator().manual_seed(seed)
    )
    torch.testing.assert_close(result.stats["log_normalizer"], target.log_normalizer)
    torch.testing.assert_close(result.stats["ess"], torch.tensor(float(n), dtype=torch.float64))


@given(log_w=st.lists(reals(-50, 50), min_size=1, max_size=20), shift=reals(-100, 100))
def test_ess_and_log_normalizer_closed_forms(log_w, shift):
    w = torch.tensor(log_w, dtype=torch.float64)
    n = len(log_w)
    ess = effective_sample_size(w)
    assert 1 - 1e-9 <= float(ess) <= n + 1e-9
    torch.testing.assert_close(effective_sample_size(w + shift), ess)  # scale-free
    expected = math.log(sum(math.exp(v - max(log_w)) for v in log_w) / n) + max(log_w)
    assert float(log_normalizer(w)) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@given(
    kind=st.sampled_from(["langevin", "mala"]),
    low=reals(-2, 0),
    width=reals(0.1, 3),
    init=st.lists(reals(-1e6, 1e6), min_size=6, max_size=6),
    seed=seeds,
)
def test_mcmc_from_any_init_stays_in_the_box(kind, low, width, init, seed):
    """Persistent chains may start anywhere, even outside the box: samples end inside it."""
    target, proposal = gaussian_problem((2,), 1, torch.float64)
    start = torch.tensor(init, dtype=torch.float64).reshape(3, 2, 1)
    sampler = make_sampler(kind, (low, low + width))
    g = torch.Generator().manual_seed(seed)
    x = sampler.sample(target, proposal, 3, init=start, generator=g).samples
    assert x.shape == (3, 2, 1) and bool(((x >= low) & (x <= low + width)).all())


@given(kind=st.sampled_from(["langevin", "mala"]), bounded=st.booleans(), where=st.integers(0, 5))
def test_mcmc_names_nan_init(kind, bounded, where):
    target, proposal = gaussian_problem((2,), 1, torch.float64)
    start = torch.zeros(6, dtype=torch.float64)
    start[where] = math.nan
    sampler = make_sampler(kind, (-1.0, 1.0) if bounded else None)
    with pytest.raises(ValueError):
        sampler.sample(target, proposal, 3, init=start.reshape(3, 2, 1))


@given(
    w=st.lists(reals(1e-3, 10), min_size=2, max_size=2),
    zero_second=st.booleans(),
    num=st.integers(1, 20),
    seed=seeds,
)
def test_mixture_draws_only_from_weighted_components(w, zero_second, num, seed):
    weights = [w[0], 0.0 if zero_second else w[1]]
    left = Independent(Uniform(torch.zeros(2, 1), torch.ones(2, 1), validate_args=False), 1)
    right = Independent(Uniform(torch.full((2, 1), 5.0), torch.full((2, 1), 6.0), False), 1)
    mixture = Mixture([left, right], weights)
    x = draw(mixture, (num,), torch.Generator().manual_seed(seed))
    assert x.shape == (num, 2, 1)
    in_left, in_right = (x >= 0) & (x <= 1), (x >= 5) & (x <= 6)
    assert bool((in_left | in_right).all())
    if zero_second:
        assert bool(in_left.all())
    assert finite(mixture.log_prob(x))


@given(tiny=st.floats(1e-300, 1e-46))
def test_mixture_checks_weights_before_rounding_them(tiny):
    comp = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
    assert finite(Mixture([comp, comp], [tiny, 0.0]).log_prob(torch.zeros(1)))
    raises_naming(lambda: Mixture([comp, comp], [1.0, -tiny]), "weights")


@given(
    weights=st.one_of(
        st.tuples(reals(0, 5), reals(-5, -1e-30)).map(list),
        st.just([0.0, 0.0]),
        st.lists(reals(0.1, 1), min_size=1, max_size=3).filter(lambda w: len(w) != 2),
    )
)
def test_mixture_names_bad_weights(weights):
    comp = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
    raises_naming(lambda: Mixture([comp, comp], weights), "weights")


@given(batch=batch_shapes, d=dims, num=st.integers(1, 5), seed=seeds)
def test_proposal_sampler_draws_the_proposal(batch, d, num, seed):
    low = -torch.ones(*batch, d)
    proposal = Independent(Uniform(low, low + 2), 1)
    x = ProposalSampler().sample(None, proposal, num, generator=torch.Generator().manual_seed(seed))
    assert x.samples.shape == (num, *batch, d) and x.stats == {}
    assert bool(((x.samples >= -1) & (x.samples <= 1)).all())


# ----------------------------------------------------------------------------- anchored policy


@st.composite
def discrete_problems(draw_, min_actions: int = 2):
    """``(anchor probs [B, n] with some zeros, Q [B, n], T)`` in float64."""
    b = draw_(st.integers(1, 3))
    n = draw_(st.integers(min_actions, 5))
    probs = draw_(st.lists(st.lists(reals(0, 1), min_size=n, max_size=n), min_size=b, max_size=b))
    probs = torch.tensor(probs, dtype=torch.float64)
    keep = draw_(st.lists(st.integers(0, n - 1), min_size=b, max_size=b))
    probs[torch.arange(b), torch.tensor(keep)] += 0.5  # every state allows some action
    probs = torch.where(probs < 1e-300, 0.0, probs)  # no denormals: they vanish when normalised
    q = draw_(st.lists(st.lists(reals(-10, 10), min_size=n, max_size=n), min_size=b, max_size=b))
    t = draw_(st.floats(1e-3, 1e3))
    return probs, torch.tensor(q, dtype=torch.float64), t


def discrete_policy(probs, q, t, **kwargs):
    return AnchoredPolicy(lambda obs: Categorical(probs=probs), lambda obs: q, t, **kwargs)


def expected_log_pi(probs, q, t):
    log_anchor = (probs / probs.sum(-1, keepdim=True)).log()
    scaled = torch.where(probs == 0, -math.inf, log_anchor + q / t)
    return torch.log_softmax(scaled, -1), log_anchor


@given(problem=discrete_problems())
def test_discrete_policy_is_softmax_of_log_anchor_plus_q_over_t(problem):
    probs, q, t = problem
    obs = torch.zeros(probs.shape[0], 2)
    pi = discrete_policy(probs, q, t).distribution(obs).probs
    log_pi, _ = expected_log_pi(probs, q, t)
    torch.testing.assert_close(pi, log_pi.exp(), rtol=1e-9, atol=1e-12)
    assert bool((pi[probs == 0] == 0).all())


@given(
    problem=discrete_problems(),
    masked_q=st.sampled_from([1e30, math.inf, -math.inf, math.nan]),
    num=st.integers(1, 20),
    seed=seeds,
)
def test_discrete_zero_anchor_actions_are_never_taken(problem, masked_q, num, seed):
    """Whatever the utility of an action the anchor forbids (huge, infinite, NaN), it keeps
    probability 0: never sampled, never the deterministic action, ``log_prob = -inf``."""
    probs, q, t = problem
    q = torch.where(probs == 0, masked_q, q)
    policy = discrete_policy(probs, q, t)
    obs = torch.zeros(probs.shape[0], 2)
    x = policy.sample(obs, num, generator=torch.Generator().manual_seed(seed)).samples
    assert x.shape == (num, probs.shape[0])
    allowed = probs > 0
    rows = torch.arange(probs.shape[0])
    assert bool(allowed[rows, x].all())
    assert bool(allowed[rows, policy.act(obs, deterministic=True)].all())
    forbidden = probs == 0
    if bool(forbidden.any()):
        all_actions = torch.arange(probs.shape[1]).unsqueeze(-1).expand(-1, probs.shape[0])
        log_p = policy.log_prob(obs, all_actions).T  # [B, n]
        assert bool((log_p[forbidden] == -math.inf).all())
        assert finite(log_p[allowed])


@given(problem=discrete_problems(), t=st.floats(1e7, 1e12))
def test_discrete_high_temperature_gives_the_anchor(problem, t):
    probs, q, _ = problem
    pi = discrete_policy(probs, q, t).distribution(torch.zeros(probs.shape[0], 1)).probs
    torch.testing.assert_close(pi, probs / probs.sum(-1, keepdim=True), rtol=0, atol=1e-5)


@given(problem=discrete_problems(), t=st.floats(1e-12, 1e-7))
def test_discrete_low_temperature_gives_the_argmax_on_the_support(problem, t):
    probs, q, _ = problem
    q = q + 0.01 * torch.arange(q.shape[-1])  # no ties
    best = torch.where(probs > 0, q, -math.inf).argmax(-1)
    policy = discrete_policy(probs, q, t)
    obs = torch.zeros(probs.shape[0], 1)
    assert torch.equal(policy.act(obs, deterministic=True), best)
    pi = policy.distribution(obs).probs
    torch.testing.assert_close(pi[torch.arange(len(best)), best], torch.ones(len(best)).double())


@given(problem=discrete_problems())
def test_discrete_soft_value_kl_and_expected_utility_closed_forms(problem):
    """``V = T logsumexp(log anchor + Q / T)``, ``KL = sum pi log(pi / anchor) >= 0`` and
    ``V = E_pi[Q] - T KL``."""
    probs, q, t = problem
    policy = discrete_policy(probs, q, t)
    obs = torch.zeros(probs.shape[0], 3)
    log_pi, log_anchor = expected_log_pi(probs, q, t)
    scaled = torch.where(probs == 0, -math.inf, log_anchor + q / t)
    value = t * torch.logsumexp(scaled, -1)
    pi = log_pi.exp()
    kl = torch.where(pi > 0, pi * (log_pi - log_anchor), 0.0).sum(-1)
    torch.testing.assert_close(policy.soft_value(obs), value)
    torch.testing.assert_close(policy.kl_to_anchor(obs), kl)
    assert bool((policy.kl_to_anchor(obs) >= -1e-12).all())
    est = policy.estimate(obs)
    torch.testing.assert_close(est.soft_value, est.expected_utility - t * est.kl_to_anchor)


@given(
    problem=discrete_problems(),
    shape=st.sampled_from(["single", "many"]),
    bad=st.sampled_from(["negative", "too_big", "float", "bool", "wrong_batch", "list"]),
    seed=seeds,
)
def test_discrete_log_prob_matches_the_distribution_and_names_bad_actions(
    problem, shape, bad, seed
):
    probs, q, t = problem
    b, n = probs.shape
    policy = discrete_policy(probs, q, t)
    obs = torch.zeros(b, 2)
    g = torch.Generator().manual_seed(seed)
    actions = torch.randint(0, n, (b,) if shape == "single" else (4, b), generator=g)
    expected = policy.distribution(obs).log_prob(actions)
    torch.testing.assert_close(policy.log_prob(obs, actions), expected)
    bad_actions = {
        "negative": actions - n,
        "too_big": actions + n,
        "float": actions.double(),
        "bool": actions > 0,
        "wrong_batch": torch.zeros(b + 1, dtype=torch.long),
        "list": actions.tolist(),
    }[bad]
    raises_naming(lambda: policy.log_prob(obs, bad_actions), "actions")


bad_temperatures = st.one_of(
    not_positive,
    st.sampled_from([True, "1.0", None, [1.0]]),
    st.just(torch.tensor([1.0, 2.0])),
    st.just(torch.tensor(1)),
    st.floats(max_value=0.0).map(torch.tensor),
)


@given(t=bad_temperatures, good=st.floats(1e-3, 1e3))
def test_policy_names_bad_temperatures(t, good):
    probs = torch.ones(1, 3)
    raises_naming(lambda: discrete_policy(probs, torch.zeros(1, 3), t), "temperature")
    policy = discrete_policy(probs, torch.zeros(1, 3), good)

    def assign():
        policy.temperature = t

    raises_naming(assign, "temperature")
    assert policy.temperature == good  # a rejected assignment leaves the policy as it was


@st.composite
def boxes(draw_, max_dim: int = 3):
    d = draw_(st.integers(1, max_dim))
    low = draw_(st.lists(reals(-5, 5), min_size=d, max_size=d))
    width = draw_(st.lists(reals(0.05, 5), min_size=d, max_size=d))
    low = np.array(low, dtype=np.float32)
    high = (low + np.array(width, dtype=np.float32)).astype(np.float32)
    assume(bool((high > low).all()))
    return gym.spaces.Box(low, high, dtype=np.float32)


def quadratic_utility(centre: torch.Tensor, scale: float):
    def utility(obs, actions):
        return -scale * (actions - centre).pow(2).sum(-1)

    return utility


CONTINUOUS_SAMPLERS = ("importance", "chain_mala", "chain_langevin")


def continuous_sampler(kind: str, space: gym.spaces.Box):
    bounds = (torch.as_tensor(space.low), torch.as_tensor(space.high))
    if kind == "importance":
        return ImportanceSampler(16)
    if kind == "chain_mala":
        return Chain(ImportanceSampler(16), MALA(0.05, 2, bounds=bounds, warmup_steps=1))
    return Chain(ImportanceSampler(16), Langevin(0.01, 2, bounds=bounds))


@given(
    space=boxes(),
    kind=st.sampled_from(CONTINUOUS_SAMPLERS),
    b=st.integers(1, 3),
    num=st.integers(1, 4),
    t=st.floats(1e-3, 1e3),
    scale=reals(0, 10),
    seed=seeds,
)
def test_continuous_policy_actions_stay_in_the_anchor_box(space, kind, b, num, t, scale, seed):
    """``sample [num, B, d]``, ``act [B, d]`` (stochastic and deterministic, the latter the
    same on every call), all inside the uniform anchor's box."""
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    centre = low + (high - low) * 0.3
    policy = AnchoredPolicy(
        UniformAnchor(space),
        quadratic_utility(centre, scale),
        t,
        sampler=continuous_sampler(kind, space),
    )
    obs = torch.zeros(b, 4)
    g = torch.Generator().manual_seed(seed)

    def inside(x):
        return bool(((x >= low) & (x <= high)).all())

    x = policy.sample(obs, num, generator=g).samples
    d = space.shape[0]
    assert x.shape == (num, b, d) and finite(x) and inside(x)
    a = policy.act(obs, generator=g)
    assert a.shape == (b, d) and inside(a)
    mode = policy.act(obs, deterministic=True)
    assert mode.shape == (b, d) and inside(mode)
    assert torch.equal(mode, policy.act(obs, deterministic=True))


@given(space=boxes(), c=reals(-100, 100), t=st.floats(1e-2, 1e2), b=st.integers(1, 3), seed=seeds)
def test_continuous_constant_utility_gives_the_anchor(space, c, t, b, seed):
    """A constant utility ``c`` leaves the anchor unchanged: every importance weight is equal,
    so ``V = c``, ``KL = 0`` and ``log pi = log anchor`` exactly."""
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    policy = AnchoredPolicy(UniformAnchor(space), lambda obs, a: torch.full(a.shape[:2], c), t)
    obs = torch.zeros(b, 2)
    g = torch.Generator().manual_seed(seed)
    # float32 rounding: log Z = c / T and the logsumexp over particles carry ulp(|c| / T + log n)
    tol = 8 * torch.finfo(torch.float32).eps * (1 + abs(c) / t + math.log(256))
    torch.testing.assert_close(
        policy.soft_value(obs, generator=g), torch.full((b,), c), rtol=0, atol=t * tol
    )
    kl = policy.kl_to_anchor(obs, generator=g)
    torch.testing.assert_close(kl, torch.zeros(b), atol=tol, rtol=0)
    a = low + (high - low) * torch.rand(b, space.shape[0], generator=g)
    expected = -torch.log(high - low).sum().expand(b)
    torch.testing.assert_close(policy.log_prob(obs, a, generator=g), expected, rtol=1e-4, atol=1e-4)


@given(space=boxes(), t=st.floats(1e8, 1e12), scale=reals(0, 10), seed=seeds)
def test_continuous_high_temperature_gives_the_anchor(space, t, scale, seed):
    """As ``T -> inf``: ``KL -> 0``, ``log pi -> log anchor`` and ``V -> E_anchor[Q]``.

    In float64 (a float64 obs makes the uniform anchor float64): ``V = T log mean exp(Q / T)``
    carries ``T`` times the rounding of ``log Z``, so float32 loses ``Q`` entirely at ``T = 1e8``.
    """
    low, high = torch.as_tensor(space.low).double(), torch.as_tensor(space.high).double()
    anchor = UniformAnchor(space)
    policy = AnchoredPolicy(anchor, quadratic_utility(low, scale), t, sampler=ImportanceSampler(32))
    obs = torch.zeros(2, 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    est = policy.estimate(obs, generator=g)
    torch.testing.assert_close(est.kl_to_anchor, torch.zeros(2).double(), atol=1e-5, rtol=0)
    # V = T log mean exp(Q / T) tends to the mean of Q over the same particles: E_pi[Q] too
    q_range = scale * float((high - low).pow(2).sum())
    tol = 1e-3 * (1 + q_range) + 8 * torch.finfo(torch.float64).eps * t * math.log(32)
    assert bool(((est.soft_value - est.expected_utility).abs() <= tol).all())
    a = low + (high - low) * torch.rand(2, space.shape[0], generator=g, dtype=torch.float64)
    log_p = policy.log_prob(obs, a, generator=g)
    torch.testing.assert_close(log_p, anchor(obs).log_prob(a), atol=1e-4, rtol=1e-5)


@given(
    space=boxes(),
    t=st.floats(1e-3, 1e3),
    scale=reals(0, 10),
    n=st.integers(1, 64),
    seed=seeds,
)
def test_continuous_kl_and_soft_value_bounds(space, t, scale, n, seed):
    """With the anchor as proposal the KL estimate is ``log n - H(w)``: in ``[0, log n]``;
    the soft value of a utility in ``[q_min, 0]`` is in ``[q_min, 0]``."""
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    policy = AnchoredPolicy(
        UniformAnchor(space), quadratic_utility(low, scale), t, sampler=ImportanceSampler(n)
    )
    obs = torch.zeros(2, 3)
    est = policy.estimate(obs, generator=torch.Generator().manual_seed(seed))
    assert bool(
        (est.kl_to_anchor >= -1e-4).all() and (est.kl_to_anchor <= math.log(n) + 1e-4).all()
    )
    q_min = -scale * float((high - low).pow(2).sum())
    tol = 1e-4 * (1 + abs(q_min)) + 8 * torch.finfo(torch.float32).eps * t * math.log(n + 1)
    assert bool(((est.soft_value <= tol) & (est.soft_value >= q_min - tol)).all())
    assert bool(((est.ess >= 1 - 1e-3) & (est.ess <= n + 1e-3)).all())


@given(
    space=boxes(),
    mixture=st.booleans(),
    obs=st.lists(reals(-100, 100), min_size=6, max_size=6),
    t=st.floats(1e-3, 1e3),
    scale=reals(0, 10),
    steps=st.integers(0, 5),
)
def test_mode_is_deterministic_in_the_box_and_never_decreases_the_density(
    space, mixture, obs, t, scale, steps
):
    torch.manual_seed(0)
    if mixture:
        anchor = GaussianMixtureAnchor(3, space, n_components=2, hidden_sizes=(4,))
    else:
        anchor = GaussianAnchor(3, space, hidden_sizes=(4,))
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    policy = AnchoredPolicy(anchor, quadratic_utility(high, scale), t, mode_steps=steps)
    obs = torch.tensor(obs).reshape(2, 3)
    init = low + (high - low) * torch.tensor([[0.25], [0.75]])
    mode = policy.mode(obs, init=init)
    assert mode.shape == (2, space.shape[0]) and bool(((mode >= low) & (mode <= high)).all())
    assert torch.equal(mode, policy.mode(obs, init=init))
    log_target = policy.energy(obs).log_target
    before, after = log_target(init.unsqueeze(0))[0], log_target(mode.unsqueeze(0))[0]
    assert bool((after >= before).all())


OBS_METHODS = ("distribution", "sample", "act", "soft_value", "kl_to_anchor", "estimate")


@given(
    method=st.sampled_from(OBS_METHODS),
    bad=st.sampled_from(["list", "numpy", "scalar", "wrong_dim", "float64", "none", "empty"]),
    continuous=st.booleans(),
)
def test_policy_methods_name_bad_observations(method, bad, continuous):
    torch.manual_seed(0)
    if continuous:
        anchor = GaussianAnchor(3, gym.spaces.Box(-1, 1, (2,)), hidden_sizes=(4,))
        policy = AnchoredPolicy(anchor, quadratic_utility(torch.zeros(2), 1.0), 1.0)
        assume(method != "distribution")
    else:
        anchor = CategoricalAnchor(3, 4, hidden_sizes=(4,))
        policy = AnchoredPolicy(anchor, lambda obs: torch.zeros(obs.shape[0], 4), 1.0)
    obs = {
        "list": [[0.0, 0.0, 0.0]],
        "numpy": np.zeros((1, 3), dtype=np.float32),
        "scalar": torch.tensor(0.0),
        "wrong_dim": torch.zeros(2, 5),
        "float64": torch.zeros(2, 3, dtype=torch.float64),
        "none": None,
        "empty": torch.zeros(0, 3),
    }[bad]
    raises_naming(lambda: getattr(policy, method)(obs), "obs")


# ----------------------------------------------------------------------------- anchors


@given(
    n=st.integers(1, 6),
    b=st.integers(1, 4),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8]),
)
def test_uniform_anchor_over_discrete_actions(n, b, dtype):
    dist = UniformAnchor(gym.spaces.Discrete(n))(torch.zeros(b, 2, dtype=dtype))
    assert isinstance(dist, Categorical) and dist.batch_shape == (b,)
    expected_dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
    assert dist.probs.dtype == expected_dtype
    torch.testing.assert_close(dist.probs, torch.full((b, n), 1 / n, dtype=expected_dtype))


@given(start=st.integers(-(2**62), 2**62).filter(lambda s: s != 0), n=st.integers(1, 5))
def test_uniform_anchor_names_a_discrete_start(start, n):
    raises_naming(lambda: UniformAnchor(gym.spaces.Discrete(n, start=start)), "start")


@given(space=boxes(), b=st.integers(1, 3), points=st.lists(reals(-20, 20), min_size=9, max_size=9))
def test_uniform_anchor_density_on_the_closed_box(space, b, points):
    """``log p = -sum log(high - low)`` on the closed box (boundary included), ``-inf``
    outside; draws land in the box."""
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    dist = UniformAnchor(space)(torch.zeros(b, 1))
    d = space.shape[0]
    a = torch.tensor(points[: b * d]).reshape(b, d) if len(points) >= b * d else torch.zeros(b, d)
    a = torch.cat([a.unsqueeze(0), low.expand(1, b, d), high.expand(1, b, d)])
    inside = ((a >= low) & (a <= high)).all(-1)
    log_p = dist.log_prob(a)
    expected = torch.where(inside, -torch.log(high - low).sum(), -math.inf)
    torch.testing.assert_close(log_p, expected)
    x = draw(dist, (5,), torch.Generator().manual_seed(0))
    assert bool(((x >= low) & (x <= high)).all())


@given(side=st.sampled_from(["low", "high", "both"]))
def test_uniform_anchor_names_an_unbounded_box(side):
    low = -np.inf if side in ("low", "both") else -1.0
    high = np.inf if side in ("high", "both") else 1.0
    raises_naming(lambda: UniformAnchor(gym.spaces.Box(low, high, (2,))), "bounded")


@given(
    space=boxes(),
    mixture=st.booleans(),
    obs=st.lists(reals(-1e3, 1e3), min_size=6, max_size=6),
    num=st.integers(1, 5),
    seed=seeds,
)
def test_gaussian_anchors_draw_in_the_box_with_finite_log_prob(space, mixture, obs, num, seed):
    """Squashed (mixture) Gaussians: draws ``[num, B, d]`` in the closed box, finite ``log_prob``
    there and on the boundary (clipped demonstrations), ``-inf`` outside."""
    torch.manual_seed(seed % 1000)
    if mixture:
        anchor = GaussianMixtureAnchor(3, space, n_components=2, hidden_sizes=(4,))
    else:
        anchor = GaussianAnchor(3, space, hidden_sizes=(4,))
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    dist = anchor(torch.tensor(obs).reshape(2, 3))
    x = draw(dist, (num,), torch.Generator().manual_seed(seed))
    d = space.shape[0]
    assert x.shape == (num, 2, d) and bool(((x >= low) & (x <= high)).all())
    assert finite(dist.log_prob(x))
    assert finite(dist.log_prob(torch.stack([low, high]).unsqueeze(1).expand(2, 2, d)))
    outside = torch.stack([low - 1, high + 1]).unsqueeze(1).expand(2, 2, d)
    assert bool((dist.log_prob(outside) == -math.inf).all())


@given(
    which=st.sampled_from(["categorical", "gaussian", "mixture"]),
    bad=st.sampled_from(["list", "wrong_dim", "float64", "scalar", "none"]),
)
def test_anchors_name_bad_observations(which, bad):
    box = gym.spaces.Box(-1, 1, (2,))
    anchor = {
        "categorical": lambda: CategoricalAnchor(3, 4, hidden_sizes=(4,)),
        "gaussian": lambda: GaussianAnchor(3, box, hidden_sizes=(4,)),
        "mixture": lambda: GaussianMixtureAnchor(3, box, 2, hidden_sizes=(4,)),
    }[which]()
    obs = {
        "list": [[0.0, 0.0, 0.0]],
        "wrong_dim": torch.zeros(2, 4),
        "float64": torch.zeros(2, 3, dtype=torch.float64),
        "scalar": torch.tensor(1.0),
        "none": None,
    }[bad]
    raises_naming(lambda: anchor(obs), "obs")


@given(
    case=st.one_of(
        st.tuples(st.just("obs_dim"), not_count),
        st.tuples(st.just("n_components"), not_count),
        st.tuples(st.just("action_space"), not_count),
        st.tuples(
            st.just("log_std_bounds"),
            st.one_of(
                st.tuples(reals(-10, 10), reals(-10, 10)).filter(lambda b: b[0] >= b[1]),
                st.tuples(st.just(math.nan), reals(-1, 1)),
                st.tuples(reals(-1, 1), st.just(math.inf)),
            ),
        ),
        st.tuples(st.just("hidden_sizes"), st.sampled_from([(0,), (-3,), (2.5,)])),
    )
)
def test_anchor_constructors_name_bad_arguments(case):
    arg, value = case
    box = gym.spaces.Box(-1, 1, (2,))
    if arg == "action_space":
        raises_naming(lambda: CategoricalAnchor(3, value), "action_space")
        return
    if arg == "n_components":
        raises_naming(lambda: GaussianMixtureAnchor(3, box, n_components=value), arg)
        return
    for cls in (GaussianAnchor, GaussianMixtureAnchor):
        raises_naming(lambda cls=cls: cls(**{"obs_dim": 3, "action_space": box, arg: value}), arg)


@given(problem=discrete_problems(), legal_bits=st.lists(st.booleans(), min_size=15, max_size=15))
def test_masked_categorical_zeroes_illegal_actions(problem, legal_bits):
    probs, _, _ = problem
    b, n = probs.shape
    legal = torch.tensor(legal_bits[: b * n]).reshape(b, n)
    allowed = legal & (probs > 0)
    dist = Categorical(probs=probs)
    if not bool(allowed.any(-1).all()):
        raises_naming(lambda: masked_categorical(dist, legal), "legal")
        return
    masked = masked_categorical(dist, legal).probs
    expected = torch.where(allowed, probs, 0.0)
    torch.testing.assert_close(masked, expected / expected.sum(-1, keepdim=True))
    assert bool((masked[~allowed] == 0).all())


# ----------------------------------------------------------------------------- energies


@st.composite
def gaussians(draw_, max_dim: int = 3):
    d = draw_(st.integers(1, max_dim))
    mean = torch.tensor(draw_(st.lists(reals(-5, 5), min_size=d, max_size=d)), dtype=torch.float64)
    a = draw_(st.lists(reals(-2, 2), min_size=d * d, max_size=d * d))
    a = torch.tensor(a, dtype=torch.float64).reshape(d, d)
    cov = a @ a.T + draw_(reals(0.1, 2)) * torch.eye(d, dtype=torch.float64)
    return mean, cov


@given(gauss=gaussians(), x=st.lists(reals(-10, 10), min_size=12, max_size=12))
def test_gaussian_energy_matches_torch(gauss, x):
    mean, cov = gauss
    d = mean.shape[0]
    points = torch.tensor(x, dtype=torch.float64)[: 4 * d].reshape(4, d)
    energy = GaussianEnergy(mean, cov)
    reference = MultivariateNormal(mean, cov).log_prob(points)
    torch.testing.assert_close(energy.log_prob(points), reference)
    # the score is -Sigma^-1 (x - mu)
    score = -torch.linalg.solve(cov, (points - mean).T).T
    torch.testing.assert_close(energy.score(points), score)


@given(d=dims, negative=reals(-10, 0))
def test_gaussian_energy_names_a_non_positive_definite_covariance(d, negative):
    cov = torch.eye(d, dtype=torch.float64)
    cov[0, 0] = negative
    raises_naming(lambda: GaussianEnergy(torch.zeros(d, dtype=torch.float64), cov), "covariance")


@given(
    k=st.integers(1, 3),
    d=dims,
    data=st.data(),
)
def test_gaussian_mixture_energy_matches_torch(k, d, data):
    # tiny weights too: they must not underflow to zero in float32
    weights = data.draw(st.lists(st.floats(1e-300, 1.0), min_size=k, max_size=k))
    weights = torch.tensor(weights, dtype=torch.float64)
    means = torch.tensor(data.draw(st.lists(reals(-5, 5), min_size=k * d, max_size=k * d)))
    variances = torch.tensor(data.draw(st.lists(reals(0.1, 3), min_size=k, max_size=k)))
    x = torch.tensor(data.draw(st.lists(reals(-10, 10), min_size=5 * d, max_size=5 * d)))
    means, x = means.double().reshape(k, d), x.double().reshape(5, d)
    energy = GaussianMixtureEnergy(weights.tolist(), means.float(), variances)
    scale = variances.double().sqrt().reshape(k, 1).expand(k, d)
    reference = torch.distributions.MixtureSameFamily(
        Categorical(logits=weights.log()), Independent(Normal(means, scale), 1)
    )
    log_p = energy.log_prob(x.float()).double()
    torch.testing.assert_close(log_p, reference.log_prob(x), rtol=1e-4, atol=1e-3)


@given(
    weights=st.one_of(
        st.lists(reals(-5, 5), min_size=2, max_size=2).filter(lambda w: min(w) < 0),
        st.just([0.0, 0.0]),
        st.lists(reals(0.1, 1), min_size=1, max_size=3).filter(lambda w: len(w) != 2),
        st.tuples(reals(0, 1), st.sampled_from([math.nan, math.inf])).map(list),
    )
)
def test_gaussian_mixture_energy_names_bad_weights(weights):
    raises_naming(lambda: GaussianMixtureEnergy(weights, torch.zeros(2, 2), 1.0), "weights")


@given(
    g1=gaussians(max_dim=2),
    c=reals(-10, 10),
    bad_c=st.sampled_from([math.nan, math.inf, -math.inf]),
    x=st.lists(reals(-5, 5), min_size=6, max_size=6),
)
def test_energy_algebra(g1, c, bad_c, x):
    """``(E1 + E2)(x) = E1(x) + E2(x)``, ``(c E)(x) = c E(x)`` (and its score ``c`` times the
    score), plain callables compose too; a non-finite scale is named."""
    mean, cov = g1
    d = mean.shape[0]
    points = torch.tensor(x, dtype=torch.float64)[: 3 * d].reshape(3, d)
    e1 = GaussianEnergy(mean, cov)
    e2 = GaussianEnergy(-mean, 2 * cov)
    torch.testing.assert_close((e1 + e2)(points), e1(points) + e2(points))
    torch.testing.assert_close((c * e1)(points), c * e1(points))
    torch.testing.assert_close((c * e1).score(points), c * e1.score(points))

    def plain(y):
        return y.pow(2).sum(-1)

    torch.testing.assert_close((e1 + plain)(points), e1(points) + plain(points))
    torch.testing.assert_close((plain + e1)(points), e1(points) + plain(points))
    raises_naming(lambda: bad_c * e1, "scale")


@given(
    d=dims,
    batch=batch_shapes,
    hidden=st.lists(st.integers(1, 8), max_size=2).map(tuple),
    wrong=st.integers(1, 5),
)
def test_mlp_energy_shapes_and_named_errors(d, batch, hidden, wrong):
    energy = MLPEnergy(d, hidden_sizes=hidden)
    e = energy(torch.randn(*batch, d))
    assert e.shape == batch and finite(e)
    if wrong != d:
        raises_naming(lambda: energy(torch.zeros(*batch, wrong)), "x")


@given(value=not_count)
def test_mlp_energy_names_bad_dim(value):
    raises_naming(lambda: MLPEnergy(value), "dim")


@given(d=dims, c=st.integers(1, 3), b=st.integers(1, 3), n=st.integers(1, 4), seed=seeds)
def test_conditioned_energy_broadcasts_the_context(d, c, b, n, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed % 1000)
    energy = MLPEnergy(d, hidden_sizes=(4,), context_dim=c)
    context = torch.randn(b, c, generator=g)
    x = torch.randn(n, b, d, generator=g)
    conditioned = energy.condition(context)(x)
    assert conditioned.shape == (n, b)
    torch.testing.assert_close(conditioned, energy(x, context.expand(n, b, c)))
    raises_naming(lambda: energy.condition(context)(torch.zeros(n, b + 1, d)), "batch shape")


# ----------------------------------------------------------------------------- trainers

OBJECTIVES = ("esm", "dsm", "dsm_levels", "ssm", "ssm_rademacher", "cd", "pcd")


def make_objective(name: str):
    return {
        "esm": lambda: ExactScoreMatching(),
        "dsm": lambda: DenoisingScoreMatching(0.1),
        "dsm_levels": lambda: DenoisingScoreMatching((0.05, 0.5)),
        "ssm": lambda: SlicedScoreMatching(2),
        "ssm_rademacher": lambda: SlicedScoreMatching(1, False, "rademacher"),
        "cd": lambda: ContrastiveDivergence(Langevin(0.01, 2), persistent=False),
        "pcd": lambda: ContrastiveDivergence(MALA(0.01, 2), buffer_size=16),
    }[name]()


@given(
    objective=st.sampled_from(OBJECTIVES),
    n=st.integers(1, 8),
    d=dims,
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=seeds,
)
def test_objective_losses_are_finite_scalars_with_finite_gradients(objective, n, d, scale, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed % 1000)
    energy = MLPEnergy(d, hidden_sizes=(8,))
    x = scale * torch.randn(n, d, generator=g)
    loss, terms = make_objective(objective).loss(energy, x, generator=g)
    assert loss.shape == () and finite(loss)
    for name, value in terms.items():
        assert value.shape == () and finite(value), name
    loss.backward()
    assert all(finite(p.grad) for p in energy.parameters() if p.grad is not None)


@given(
    objective=st.sampled_from(["cd", "pcd"]),
    value=st.one_of(reals(4096, 1e6), reals(-1e6, -4096)),
    n=st.integers(1, 4),
)
def test_contrastive_divergence_on_constant_data(objective, value, n):
    """Data whose bounding box has zero width (one point, or n copies of it), far from 0 (the
    default proposal's padding must not vanish in float32)."""
    loss, _ = make_objective(objective).loss(
        MLPEnergy(1, hidden_sizes=(4,)), torch.full((n, 1), value)
    )
    assert finite(loss)


@given(gauss=gaussians(), x=st.lists(reals(-5, 5), min_size=12, max_size=12))
def test_exact_score_matching_closed_form_on_a_gaussian(gauss, x):
    """For ``E = 1/2 (x - mu)^T P (x - mu)``: ``s = -P (x - mu)``, ``tr grad s = -tr P``, so the
    loss is ``mean 1/2 |P (x - mu)|^2 - tr P``."""
    mean, cov = gauss
    d = mean.shape[0]
    points = torch.tensor(x, dtype=torch.float64)[: 4 * d].reshape(4, d)
    precision = torch.linalg.inv(cov)
    score = (points - mean) @ precision
    expected = 0.5 * score.pow(2).sum(-1).mean() - precision.trace()
    loss, terms = ExactScoreMatching().loss(GaussianEnergy(mean, cov), points)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(terms["divergence"], -precision.trace())


@given(
    case=st.one_of(
        st.tuples(st.just("dsm"), st.just("sigma"), not_positive),
        st.tuples(
            st.just("dsm"),
            st.just("sigma"),
            st.lists(st.one_of(reals(0.1, 1), not_positive), min_size=1, max_size=3).filter(
                lambda v: not all(isinstance(s, float) and 0 < s < math.inf for s in v)
            ),
        ),
        st.tuples(st.just("ssm"), st.just("n_projections"), not_count),
        st.tuples(st.just("ssm"), st.just("projection"), st.text(max_size=4)),
        st.tuples(st.just("cd"), st.just("energy_reg"), st.floats(max_value=-1e-9)),
        st.tuples(st.just("cd"), st.just("temperature"), not_positive),
        st.tuples(st.just("cd"), st.just("persistent"), st.sampled_from([0, 1, "yes", None])),
        st.tuples(
            st.just("cd"), st.just("num_negatives"), not_count.filter(lambda v: v is not None)
        ),
    )
)
def test_objective_constructors_name_bad_arguments(case):
    kind, arg, value = case
    if kind == "dsm":
        raises_naming(lambda: DenoisingScoreMatching(value), arg)
    elif kind == "ssm":
        raises_naming(lambda: SlicedScoreMatching(**{arg: value}), arg)
    else:
        raises_naming(lambda: ContrastiveDivergence(Langevin(0.1, 1), **{arg: value}), arg)


@given(
    objective=st.sampled_from(OBJECTIVES), shape=st.sampled_from([(3,), (0, 2), (2, 0), (2, 2, 2)])
)
def test_objective_losses_name_badly_shaped_data(objective, shape):
    raises_naming(lambda: make_objective(objective).loss(MLPEnergy(2), torch.zeros(shape)), "x")


FIT_ARGS = {
    "steps": (st.integers(1, 3), not_count),
    "batch_size": (st.integers(1, 16), not_count),
    "lr": (reals(1e-5, 1e-2), st.one_of(not_positive, st.just("0.1"))),
    "seed": (seeds, st.one_of(st.integers(max_value=-1), st.just(1.5), st.just(True))),
    "log_every": (st.integers(1, 5), not_count),
    "lr_schedule": (st.sampled_from(["constant", "cosine"]), st.text(max_size=5)),
    "grad_clip": (st.one_of(st.none(), reals(0.1, 10)), not_positive),
}


@given(data=st.data(), objective=st.sampled_from(["esm", "dsm", "cd"]))
def test_fit_names_a_bad_argument_or_trains(data, objective):
    """One argument drawn bad (or none): a named error, else a finite history of ``steps``."""
    bad = data.draw(st.sampled_from([None, *FIT_ARGS]), label="bad")
    kwargs = {
        name: data.draw(bad_values if name == bad else good, label=name)
        for name, (good, bad_values) in FIT_ARGS.items()
    }
    if bad == "lr_schedule":
        assume(kwargs["lr_schedule"] not in ("constant", "cosine"))
    torch.manual_seed(0)
    energy = MLPEnergy(2, hidden_sizes=(8,))
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    call = lambda: fit(energy, x, make_objective(objective), progress_bar=False, **kwargs)  # noqa: E731
    if bad is not None:
        raises_naming(call, bad)
        return
    result = call()
    assert result.steps == kwargs["steps"] and result.history_steps[-1] == kwargs["steps"] - 1
    assert all(math.isfinite(v) for values in result.history.values() for v in values)


@given(
    bad=st.sampled_from(["nan", "inf", "int", "1d", "empty", "list"]),
    where=st.integers(0, 19),
)
def test_fit_names_bad_data(bad, where):
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    if bad in ("nan", "inf"):
        x.view(-1)[where] = math.nan if bad == "nan" else -math.inf
    data = {
        "int": x.long(),
        "1d": x[:, 0],
        "empty": x[:0],
        "list": x.tolist(),
    }.get(bad, x)
    energy = MLPEnergy(2, hidden_sizes=(4,))
    raises_naming(lambda: fit(energy, data, ExactScoreMatching(), 1, progress_bar=False), "data")


# ----------------------------------------------------------------------------- metrics


@given(
    c=reals(-50, 50),
    x0=reals(-10, 10),
    wx=reals(0.1, 10),
    y0=reals(-10, 10),
    wy=reals(0.1, 10),
    resolution=st.integers(2, 64),
)
def test_grid_log_normalizer_of_a_constant_energy(c, x0, wx, y0, wy, resolution):
    """``log ∫_box exp(-c) = log(area) - c``, whatever the grid."""
    bounds = ((x0, x0 + wx), (y0, y0 + wy))
    energy = lambda x: torch.full(x.shape[:-1], c, dtype=x.dtype)  # noqa: E731
    log_z = grid_log_normalizer(energy, bounds, resolution)
    assert float(log_z) == pytest.approx(math.log(wx * wy) - c, abs=1e-4 * (1 + abs(c)))


@given(
    mean=st.lists(reals(-1, 1), min_size=2, max_size=2),
    var=st.lists(reals(0.3, 1.5), min_size=2, max_size=2),
    seed=seeds,
)
def test_grid_nll_matches_the_gaussian_closed_form(mean, var, seed):
    gauss = GaussianEnergy(torch.tensor(mean), torch.diag(torch.tensor(var)))
    x = gauss.sample((50,), generator=torch.Generator().manual_seed(seed))
    nll = grid_nll(gauss, x, ((-10, 10), (-10, 10)), resolution=200)
    assert float(nll) == pytest.approx(float(-gauss.log_prob(x).mean()), abs=2e-3)


bad_bounds = st.one_of(
    st.tuples(st.tuples(reals(-5, 5), reals(-5, 5)), st.tuples(st.just(0.0), st.just(1.0))).filter(
        lambda b: b[0][0] >= b[0][1]
    ),
    st.just(((0.0, math.nan), (0.0, 1.0))),
    st.just(((0.0, 1.0), (-math.inf, 1.0))),
    st.just((0.0, 1.0)),
    st.just(((0.0, 1.0, 2.0), (0.0, 1.0))),
    st.just("box"),
    st.just(None),
)


@given(
    bounds=bad_bounds,
    resolution=st.one_of(st.integers(2, 8), st.integers(max_value=1), st.just(4.0), st.just(True)),
)
def test_grid_metrics_name_bad_bounds_and_resolution(bounds, resolution):
    gauss = GaussianEnergy(torch.zeros(2), torch.eye(2))
    raises_naming(lambda: grid_log_normalizer(gauss, bounds, resolution), "bounds", "resolution")
    raises_naming(
        lambda: grid_nll(gauss, torch.zeros(3, 2), bounds, resolution), "bounds", "resolution"
    )
    good = ((-1.0, 1.0), (-1.0, 1.0))
    if not (isinstance(resolution, int) and not isinstance(resolution, bool) and resolution >= 2):
        raises_naming(lambda: grid_log_normalizer(gauss, good, resolution), "resolution")


@given(
    bad=st.sampled_from(["shape", "dim3", "int", "list", "outside", "max_outside"]),
    max_outside=st.one_of(
        st.floats(max_value=-1e-9), st.floats(min_value=1.0 + 1e-9), st.just(math.nan), st.just("1")
    ),
)
def test_grid_nll_names_bad_points(bad, max_outside):
    gauss = GaussianEnergy(torch.zeros(2), torch.eye(2))
    good = ((-1.0, 1.0), (-1.0, 1.0))
    x = torch.zeros(4, 2)
    if bad == "max_outside":
        raises_naming(lambda: grid_nll(gauss, x, good, 8, max_outside=max_outside), "max_outside")
        return
    points = {
        "shape": torch.zeros(4, 3),
        "dim3": torch.zeros(2, 2, 2),
        "int": torch.zeros(4, 2, dtype=torch.long),
        "list": [[0.0, 0.0]],
        "outside": torch.full((4, 2), 5.0),
    }[bad]
    raises_naming(lambda: grid_nll(gauss, points, good, 8), "x")


@given(
    n=st.integers(2, 20),
    m=st.integers(2, 20),
    d=dims,
    bandwidth=st.one_of(st.none(), reals(0.1, 10)),
    shift=reals(-5, 5),
    seed=seeds,
)
def test_mmd_is_a_symmetric_nonnegative_discrepancy(n, m, d, bandwidth, shift, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g) + shift
    value = mmd(x, y, bandwidth)
    assert value.shape == () and finite(value) and float(value) >= 0
    torch.testing.assert_close(value, mmd(y, x, bandwidth))
    assert float(mmd(x, x, bandwidth)) == pytest.approx(0.0, abs=1e-6)


@given(bandwidth=st.one_of(not_positive, st.just(torch.tensor(-1.0))))
def test_mmd_names_a_bad_bandwidth(bandwidth):
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    raises_naming(lambda: mmd(x, x + 1, bandwidth), "bandwidth")


# ----------------------------------------------------------------------------- data


@given(name=st.sampled_from(toy2d.DATASETS), n=st.integers(1, 50), seed=seeds)
def test_toy2d_samples_are_finite_reproducible_and_in_their_support(name, n, seed):
    x = toy2d.sample(name, n, seed)
    assert x.shape == (n, 2) and x.dtype == torch.float32 and finite(x)
    assert torch.equal(x, toy2d.sample(name, n, seed))
    if toy2d.has_log_prob(name):
        assert finite(toy2d.log_prob(name, x.double()))


@given(
    case=st.one_of(
        st.tuples(st.just("name"), st.one_of(st.text(max_size=6), st.none(), st.integers())),
        st.tuples(st.just("n"), not_count),
        st.tuples(
            st.just("seed"), st.one_of(st.integers(max_value=-1), st.just(1.5), st.just(True))
        ),
    )
)
def test_toy2d_names_bad_arguments(case):
    arg, value = case
    kwargs = {"name": "moons", "n": 5, "seed": 0, arg: value}
    if arg == "name":
        assume(value not in toy2d.DATASETS)
        raises_naming(lambda: toy2d.sample(**kwargs), "dataset")
    else:
        raises_naming(lambda: toy2d.sample(**kwargs), arg)


# ----------------------------------------------------------------------------- agents

ENVS = {"sac": "Pendulum-v1", "softq": "CartPole-v1"}
TINY_AGENT = {"hidden_sizes": (8,), "buffer_size": 100, "device": "cpu"}


@functools.cache
def tiny_agent(algo: str):
    cls = ebrl.SAC if algo == "sac" else ebrl.SoftQ
    return cls(ENVS[algo], seed=0, **TINY_AGENT)


def assert_valid_actions(agent, actions, batch: int | None) -> None:
    space = agent.action_space
    expected = tuple(space.shape) if batch is None else (batch, *space.shape)
    assert actions.shape == expected
    for action in actions.reshape(-1, *space.shape) if batch != 0 else []:
        assert space.contains(action.astype(space.dtype)), action


@given(
    algo=st.sampled_from(["sac", "softq"]),
    batch=st.one_of(st.none(), st.integers(0, 4)),
    values=st.lists(reals(-1e3, 1e3), min_size=16, max_size=16),
    kind=st.sampled_from(["float32", "float64", "int64", "list"]),
    deterministic=st.booleans(),
)
def test_predict_gives_actions_in_the_action_space(algo, batch, values, kind, deterministic):
    """Any finite observation, one or a batch, of any numeric dtype: actions of the right
    shape inside the action space (deterministic ones the same on every call); an empty batch
    may be refused with an error naming the observation."""
    agent = tiny_agent(algo)
    shape = agent.observation_space.shape
    full = shape if batch is None else (batch, *shape)
    obs = np.array(values[: math.prod(full)]).reshape(full)
    obs = obs.tolist() if kind == "list" else obs.astype(kind)
    try:
        actions, state = agent.predict(obs, deterministic=deterministic)
    except ValueError as err:
        assert batch == 0 and "obs" in str(err), err
        return
    assert state is None
    assert_valid_actions(agent, np.asarray(actions), batch)
    if deterministic:
        np.testing.assert_array_equal(actions, agent.predict(obs, deterministic=True)[0])


@given(
    algo=st.sampled_from(["sac", "softq"]),
    bad=st.sampled_from(["shape", "nan", "inf", "text", "none", "ragged", "dict"]),
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
    where=st.integers(0, 3),
)
def test_predict_names_bad_observations(algo, bad, shape, where):
    agent = tiny_agent(algo)
    obs_shape = agent.observation_space.shape
    good = np.zeros(obs_shape, dtype=np.float32)
    if bad == "shape":
        assume(shape != obs_shape and shape[1:] != obs_shape)
        obs = np.zeros(shape, dtype=np.float32)
    elif bad in ("nan", "inf"):
        obs = good.copy()
        obs[where % obs_shape[0]] = np.nan if bad == "nan" else -np.inf
    else:
        obs = {"text": "obs", "none": None, "ragged": [[0.0], [0.0, 1.0]], "dict": {"a": 1}}[bad]
    raises_naming(lambda: agent.predict(obs), "observation")


bad_seeds = st.one_of(
    st.integers(max_value=-1), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)
)
bad_agent_temperatures = st.one_of(
    not_positive, st.booleans(), st.none(), st.text(max_size=4).filter(lambda t: t != "auto")
)
BAD_HYPERPARAMETERS = {
    "learning_rate": not_positive,
    "gamma": st.one_of(
        st.floats(max_value=-1e-9), st.floats(min_value=1 + 1e-9), st.just(math.nan)
    ),
    "batch_size": not_count,
    "buffer_size": not_count,
    "learning_starts": st.integers(max_value=-1),
    "train_freq": not_count,
    "gradient_steps": not_count,
    "hidden_sizes": st.sampled_from([(), (0,), (8, -1), (2.5,)]),
    "tau": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1 + 1e-9)),
    "initial_temperature": not_positive,
    "target_kl": st.sampled_from([-1.0, math.nan, math.inf]),
}


@given(
    algo=st.sampled_from(["sac", "softq"]),
    arg=st.sampled_from(["seed", "temperature", "num_envs", "device", *BAD_HYPERPARAMETERS]),
    data=st.data(),
)
def test_agent_constructors_name_bad_arguments(algo, arg, data):
    strategy = {
        "seed": bad_seeds,
        "temperature": bad_agent_temperatures,
        "num_envs": not_count,
        "device": st.sampled_from(["gpu", "cuda:99", "", "tpu"]),
        **BAD_HYPERPARAMETERS,
    }[arg]
    value = data.draw(strategy, label=arg)
    if algo == "softq" and arg == "device":
        assume(torch.cuda.is_available() is False or value != "cuda:99")
    cls = ebrl.SAC if algo == "sac" else ebrl.SoftQ
    raises_naming(lambda: cls(ENVS[algo], **{**TINY_AGENT, arg: value}), arg)


@given(algo=st.sampled_from(["sac", "softq"]), seed=st.integers(min_value=2**63, max_value=2**80))
def test_agent_constructors_name_an_overflowing_seed(algo, seed):
    cls = ebrl.SAC if algo == "sac" else ebrl.SoftQ
    raises_naming(lambda: cls(ENVS[algo], seed=seed, **TINY_AGENT), "seed")


@given(
    algo=st.sampled_from(["sac", "softq"]),
    arg=st.sampled_from(["seed", "temperature", "learning_rate", "num_envs"]),
    value=st.integers(1, 3),
)
def test_agent_constructors_accept_numpy_scalars(algo, arg, value):
    numpy_value = np.int64(value) if arg in ("seed", "num_envs") else np.float32(value / 4)
    cls = ebrl.SAC if algo == "sac" else ebrl.SoftQ
    agent = cls(ENVS[algo], **{**TINY_AGENT, arg: numpy_value})
    obs = np.zeros((1, *agent.observation_space.shape), dtype=np.float32)
    assert_valid_actions(agent, agent.predict(obs)[0], 1)


@given(
    algo=st.sampled_from(["sac", "softq"]),
    seed=st.integers(0, 2**63 - 1),
    temperature=st.one_of(st.just("auto"), st.floats(1e-6, 1e6)),
    learning_rate=reals(1e-6, 1.0),
    gamma=reals(0, 1),
    hidden=st.lists(st.integers(1, 8), min_size=1, max_size=2).map(tuple),
)
def test_agents_built_from_valid_arguments_act(
    algo, seed, temperature, learning_rate, gamma, hidden
):
    cls = ebrl.SAC if algo == "sac" else ebrl.SoftQ
    agent = cls(
        ENVS[algo],
        seed=seed,
        temperature=temperature,
        learning_rate=learning_rate,
        gamma=gamma,
        **{**TINY_AGENT, "hidden_sizes": hidden},
    )
    assert agent.config.gamma == gamma and agent.config.hidden_sizes == hidden
    expected_t = agent.config.initial_temperature if temperature == "auto" else temperature
    assert float(agent.temperature) == pytest.approx(expected_t, rel=1e-5)
    obs = np.zeros((2, *agent.observation_space.shape), dtype=np.float32)
    assert_valid_actions(agent, agent.predict(obs)[0], 2)


# ----------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``ebrl.cli.main(argv)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def assert_one_line_error(err: str) -> None:
    """argparse's own errors: its usage, then one ``ebrl ...: error:`` line; errors found when
    the command runs: that one line alone."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("ebrl") and ": error: " in lines[-1], err
    assert lines[0].startswith("usage:") or len(lines) == 1, err


@contextlib.contextmanager
def no_training():
    """Agents built by ``ebrl train`` are real (their checks run) but neither learn nor
    evaluate: the property is about flags, and a run per example would take minutes."""
    from ebrl.agents.core import OffPolicyAgent

    def learn(self, total_timesteps, *args, **kwargs):
        self.num_timesteps = total_timesteps
        return self

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OffPolicyAgent, "learn", learn)
        patch.setattr(OffPolicyAgent, "save", lambda self, path: path)
        patch.setattr(
            OffPolicyAgent,
            "evaluate",
            lambda self, *a, **k: {"mean_return": 0.0, "std_return": 0.0},
        )
        try:
            yield
        finally:
            torch.set_num_threads(1)  # --threads sets it for the process


def as_flag(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, tuple) else [str(value)]


counts = st.integers(1, 10**6)
TRAIN_FLAGS = {  # flag: (valid values, invalid values)
    "--steps": (counts, st.integers(-5, 0)),
    "--seed": (seeds, st.integers(-(2**40), -1)),
    "--num-envs": (st.integers(1, 2), st.integers(-3, 0)),
    "--temperature": (
        st.one_of(st.just("auto"), st.floats(1e-6, 1e6)),
        st.one_of(not_positive, st.sampled_from(["hot", "-inf", ""])),
    ),
    "--eval-episodes": (st.integers(1, 100), st.integers(-3, 0)),
    "--threads": (st.integers(1, 2), st.integers(-3, 0)),
    "--learning-rate": (reals(1e-6, 1), not_positive),
    "--gamma": (
        reals(0, 1),
        st.one_of(st.floats(min_value=1.001, max_value=1e9), st.just(math.nan)),
    ),
    "--batch-size": (st.integers(1, 512), st.integers(-3, 0)),
    "--train-freq": (st.integers(1, 8), st.integers(-3, 0)),
    "--hidden-sizes": (
        st.lists(st.integers(1, 16), min_size=1, max_size=3).map(tuple),
        st.lists(st.integers(-3, 0), min_size=1, max_size=2).map(tuple),
    ),
    "--tau": (reals(0.01, 1), st.one_of(st.floats(max_value=-0.01), st.floats(min_value=1.01))),
    "--n-particles": (st.integers(1, 64), st.integers(-3, 0)),
    "--device": (st.sampled_from(["cpu", "auto"]), st.sampled_from(["gpu", "tpu", "cpu:x"])),
    "--env": (st.just("default"), st.sampled_from(["NoSuchEnv-v0", "Pendulum-v99", "x"])),
}


@given(
    algo=st.sampled_from(["sac", "softq"]),
    flag=st.sampled_from(sorted(TRAIN_FLAGS)),
    valid=st.booleans(),
    data=st.data(),
)
def test_cli_train_flags_give_a_one_line_error_or_a_run(algo, flag, valid, data):
    """One flag drawn valid or invalid: exit 2 with a last stderr line ``ebrl...: error:``
    naming the flag, or a run that prints its JSON line (agents built, not trained)."""
    good, bad = TRAIN_FLAGS[flag]
    value = data.draw(good if valid else bad, label=flag)
    if flag == "--env" and value == "default":
        value = ENVS[algo]
    sac_only = flag == "--n-particles" and algo == "softq"  # a flag of the other config
    base = ["train", "--algo", algo, "--env", ENVS[algo], "--no-progress", "--eval-episodes", "1"]
    tiny = {"--hidden-sizes": ("8",), "--buffer-size": ("100",)}
    extra = [f for name, v in tiny.items() if name != flag for f in (name, *v)]
    with tempfile.TemporaryDirectory() as logdir, no_training():
        argv = [*base, *extra, "--logdir", logdir, flag, *as_flag(value)]
        status, out, err = run_cli(argv)
    if valid and not sac_only:
        assert status == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["algo"] == algo and result["env"] == ENVS[algo]
        return
    assert status == 2, (argv, out, err)
    assert_one_line_error(err)
    last = err.strip().splitlines()[-1]
    names = (flag, flag[2:].replace("-", "_"))
    assert any(name in last for name in names), (names, last)


FIT_DENSITY_BAD_FLAGS = {
    "--steps": st.integers(-3, 0).map(str),
    "--batch-size": st.integers(-3, 0).map(str),
    "--lr": not_positive.map(str),
    "--sigma": st.one_of(not_positive.map(str), st.just("0.1 -1")),
    "--resolution": st.integers(-3, 1).map(str),
    "--reinit-prob": st.one_of(
        st.floats(min_value=1.01, max_value=1e9), st.floats(max_value=-0.01)
    ).map(str),
    "--seed": st.one_of(st.integers(max_value=-1), st.integers(2**32, 2**40)).map(str),
    "--n-train": st.integers(-3, 0).map(str),
    "--energy-reg": st.floats(max_value=-0.01).map(str),
    "--dataset": st.sampled_from(["mnist", "8gaussian", ""]),
    "--objective": st.sampled_from(["mle", "DSM", ""]),
    "--threads": st.integers(-3, 0).map(str),
    "--step-size": not_positive.map(str),
}


@given(flag=st.sampled_from(sorted(FIT_DENSITY_BAD_FLAGS)), data=st.data())
def test_cli_fit_density_names_a_bad_flag(flag, data):
    """Invalid values stop ``ebrl fit-density`` before any training, with exit status 2 and a
    last stderr line naming the flag."""
    value = data.draw(FIT_DENSITY_BAD_FLAGS[flag], label=flag)
    status, out, err = run_cli(["fit-density", "--steps", "1", flag, *value.split(" ")])
    torch.set_num_threads(1)
    assert status == 2 and out == "", (out, err)
    assert_one_line_error(err)
    last = err.strip().splitlines()[-1]
    assert flag in last or flag[2:].replace("-", "_") in last, last
