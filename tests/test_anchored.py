"""AnchoredPolicy: closed forms (discrete softmax, Gaussian posterior), limits in T, estimates
against their integrals with Monte Carlo tolerances, batching, gradients and bad input."""

import math

import pytest
import torch
from gymnasium.spaces import Box, Discrete
from torch.distributions import Categorical, Independent, Normal

from ebrl.policies import (
    AnchoredPolicy,
    GaussianAnchor,
    UniformAnchor,
    anchored_sampler,
    masked_categorical,
)
from ebrl.samplers import MALA, Chain, ImportanceSampler, draw
from tests.helpers import assert_mala_step_compiles, assert_moments

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- discrete


def discrete_problem(batch=6, n=5, seed=0):
    """An anchor given by probs with exact zeros, and a utility that is largest on them."""
    g = gen(seed)
    probs = torch.rand(batch, n, generator=g, dtype=F64) + 0.05
    probs[:, 0] = 0.0  # illegal everywhere
    probs[1, 3] = 0.0  # and one more in state 1
    q = torch.randn(batch, n, generator=g, dtype=F64)
    q[:, 0] = 1e4  # a huge utility must not resurrect a zero-probability action
    q[1, 3] = 1e4

    def anchor(obs):
        return Categorical(probs=probs[: obs.shape[0]])

    def utility(obs):
        return q[: obs.shape[0]]

    return anchor, utility, probs, q


def reference_pi(probs, q, t):
    logits = torch.where(probs > 0, probs.log() + q / t, -math.inf)
    return torch.softmax(logits, -1)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0, 3.0, 10.0])
def test_discrete_is_exact_softmax(t):
    anchor, utility, probs, q = discrete_problem()
    policy = AnchoredPolicy(anchor, utility, t)
    obs = torch.zeros(6, 2, dtype=F64)
    pi = policy.distribution(obs).probs
    want = reference_pi(probs / probs.sum(-1, keepdim=True), q, t)
    torch.testing.assert_close(pi, want, rtol=1e-10, atol=1e-12)
    assert (pi[:, 0] == 0).all() and pi[1, 3] == 0  # zeros stay exact zeros
    # the closed forms of the estimates
    p = probs / probs.sum(-1, keepdim=True)
    est = policy.estimate(obs)
    masked = torch.where(p > 0, p.log() + q / t, -math.inf)
    log_z = torch.logsumexp(masked, -1)
    torch.testing.assert_close(est.log_normalizer, log_z)
    torch.testing.assert_close(est.soft_value, t * log_z)
    torch.testing.assert_close(policy.soft_value(obs), t * log_z)
    support = p > 0
    kl = torch.where(support, want * (want.clamp_min(1e-300).log() - p.log()), 0.0).sum(-1)
    torch.testing.assert_close(policy.kl_to_anchor(obs), kl)
    torch.testing.assert_close(est.expected_utility, torch.where(support, want * q, 0.0).sum(-1))
    # log_prob of [B] and [n, B] actions
    a = torch.tensor([1, 2, 4, 1, 2, 3])
    torch.testing.assert_close(policy.log_prob(obs, a), want[torch.arange(6), a].log())
    a2 = torch.stack([a, (a + 1) % 5])
    assert policy.log_prob(obs, a2).shape == (2, 6)
    assert policy.log_prob(obs, torch.zeros(6, dtype=torch.long)).eq(-math.inf).all()


def test_discrete_limits_anchor_and_argmax_on_support():
    anchor, utility, probs, q = discrete_problem()
    obs = torch.zeros(6, 2, dtype=F64)
    p = probs / probs.sum(-1, keepdim=True)
    hot = AnchoredPolicy(anchor, utility, 1e9).distribution(obs).probs
    # |log pi - log p| <= 2 max|Q| / T on the support (zeros stay zeros)
    bound = 2 * q[p > 0].abs().max() / 1e9
    assert (hot - p).abs().max() <= bound
    cold = AnchoredPolicy(anchor, utility, 1e-6).distribution(obs).probs
    q_on_support = torch.where(p > 0, q, -math.inf)
    best = q_on_support.argmax(-1)
    torch.testing.assert_close(cold, torch.nn.functional.one_hot(best, 5).to(F64))
    assert (best != 0).all()  # the largest utility (an illegal action) is never the limit
    det = AnchoredPolicy(anchor, utility, 0.7).act(obs, deterministic=True)
    torch.testing.assert_close(det, reference_pi(p, q, 0.7).argmax(-1))


def test_categorical_probs_pitfall_masked_actions_never_sampled():
    """Categorical(probs=[.5, .5, 0]) stores a finite logit for the 0; the policy must not."""
    dist = Categorical(probs=torch.tensor([[0.5, 0.5, 0.0]]).expand(4, 3))
    assert torch.isfinite(dist.logits).all()  # torch's clamping, the trap
    policy = AnchoredPolicy(
        lambda obs: dist, lambda obs: torch.tensor([0.0, 0.0, 100.0]).expand(4, 3), 1.0
    )
    obs = torch.zeros(4, 1)
    assert (policy.distribution(obs).probs[:, 2] == 0).all()
    draws = policy.sample(obs, 5000, generator=gen(1)).samples
    assert draws.shape == (5000, 4) and (draws != 2).all()


def test_masked_categorical_anchor_masks_illegal_actions():
    base = UniformAnchor(Discrete(4))
    legal = torch.tensor([[True, False, True, True], [False, True, False, True]])
    policy = AnchoredPolicy(
        lambda obs: masked_categorical(base(obs), legal),
        lambda obs: torch.tensor([0.0, 50.0, 0.0, 1.0]).expand(2, 4),
        0.5,
    )
    pi = policy.distribution(torch.zeros(2, 3)).probs
    assert (pi[~legal] == 0).all()
    torch.testing.assert_close(pi.sum(-1), torch.ones(2))
    assert policy.act(torch.zeros(2, 3), deterministic=True).tolist() == [3, 1]
    with pytest.raises(ValueError, match="no legal action"):
        masked_categorical(base(torch.zeros(1, 3)), torch.zeros(1, 4, dtype=torch.bool))


def test_discrete_sample_frequencies_and_reproducibility():
    anchor, utility, _, _ = discrete_problem()
    policy = AnchoredPolicy(anchor, utility, 1.0)
    obs = torch.zeros(6, 2, dtype=F64)
    pi = policy.distribution(obs).probs
    n = 20000
    result = policy.sample(obs, n, generator=gen(2))
    assert result.samples.shape == (n, 6) and result.samples.dtype == torch.long
    assert result.stats["log_normalizer"].shape == (6,)
    freq = torch.nn.functional.one_hot(result.samples, 5).to(F64).mean(0)
    se = (pi * (1 - pi) / n).sqrt()
    assert ((freq - pi).abs() <= 5 * se + 1e-12).all()
    again = policy.sample(obs, n, generator=gen(2)).samples
    assert torch.equal(result.samples, again)
    act = policy.act(obs, generator=gen(3))
    assert act.shape == (6,) and (act != 0).all()


def test_discrete_batched_equals_per_state_loop():
    anchor, utility, _, _ = discrete_problem(batch=6)
    policy = AnchoredPolicy(anchor, utility, 0.3)
    obs = torch.zeros(6, 2, dtype=F64)
    batched = policy.distribution(obs).probs
    for i in range(6):
        one = AnchoredPolicy(
            lambda o, i=i: Categorical(probs=anchor(obs).probs[i : i + 1]),
            lambda o, i=i: utility(obs)[i : i + 1],
            0.3,
        )
        torch.testing.assert_close(one.distribution(obs[i : i + 1]).probs[0], batched[i])


def test_discrete_temperature_gradient_is_minus_kl():
    """d/dT [T log Z(T)] = log Z - E_pi[Q] / T = -KL(pi || anchor)."""
    anchor, utility, _, _ = discrete_problem()
    log_t = torch.tensor(0.2, dtype=F64, requires_grad=True)
    policy = AnchoredPolicy(anchor, utility, log_t.exp())
    obs = torch.zeros(6, 2, dtype=F64)
    (grad,) = torch.autograd.grad(policy.soft_value(obs).sum(), log_t)
    kl = policy.kl_to_anchor(obs).detach()
    torch.testing.assert_close(grad, -(kl.sum() * log_t.exp()).detach())


# ----------------------------------------------------------------------------- continuous: Gaussian


class GaussianProblem:
    """Anchor N(mu0(s), diag s0(s)^2), utility Q(s, a) = -1/2 sum_i p_i (a_i - c_i(s))^2.

    ``obs`` carries the state's parameters, ``[B, 4d] = [mu0, log s0, c, log p]``. The policy is
    the Gaussian posterior N(m, diag 1/lam) with lam = 1/s0^2 + p/T, m = (mu0/s0^2 + p c/T)/lam.
    """

    def __init__(self, configs, replicates, t):
        self.d = configs.shape[-1] // 4
        self.obs = configs.repeat_interleave(replicates, dim=0)
        self.k, self.r, self.t = configs.shape[0], replicates, t

    def parts(self, obs=None):
        obs = self.obs if obs is None else obs
        mu0, log_s0, c, log_p = obs.split(self.d, dim=-1)
        return mu0, log_s0.exp(), c, log_p.exp()

    def anchor(self, obs):
        mu0, s0, _, _ = self.parts(obs)
        return Independent(Normal(mu0, s0), 1)

    def utility(self, obs, actions):
        _, _, c, p = self.parts(obs)
        return -0.5 * (p * (actions - c) ** 2).sum(-1)

    def posterior(self):
        mu0, s0, c, p = self.parts()
        lam = 1 / s0**2 + p / self.t
        return (mu0 / s0**2 + p * c / self.t) / lam, 1 / lam

    def log_z(self):
        mu0, s0, c, p = self.parts()
        var = s0**2 + self.t / p
        log_n = -0.5 * ((c - mu0) ** 2 / var + torch.log(2 * math.pi * var))
        return (log_n + 0.5 * torch.log(2 * math.pi * self.t / p)).sum(-1)

    def kl(self):
        mu0, s0, _, _ = self.parts()
        m, v = self.posterior()
        return 0.5 * (v / s0**2 + (m - mu0) ** 2 / s0**2 - 1 - torch.log(v / s0**2)).sum(-1)

    def expected_utility(self):
        _, _, c, p = self.parts()
        m, v = self.posterior()
        return -0.5 * (p * (v + (m - c) ** 2)).sum(-1)

    def utility_over_t_var(self):
        """Var_pi(Q / T): (a - c)^2 with a ~ N(m, v) has variance 2 v^2 + 4 (m - c)^2 v."""
        _, _, c, p = self.parts()
        m, v = self.posterior()
        return ((p / (2 * self.t)) ** 2 * (2 * v**2 + 4 * (m - c) ** 2 * v)).sum(-1)

    def per_config(self, x):
        return x.reshape(self.k, self.r, *x.shape[1:])


CONFIGS = torch.tensor(
    [
        # mu0          log s0          c             log p
        [0.0, 0.0, 0.0, 0.0, 0.5, -0.5, 0.0, 0.0],
        [1.0, -1.0, -0.3, 0.2, 0.0, 0.0, 1.0, -0.5],
        [-0.5, 2.0, 0.4, -0.2, -1.5, 1.0, -0.7, 0.3],
    ],
    dtype=F64,
)


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_gaussian_anchor_quadratic_utility_is_the_gaussian_posterior(t):
    """Samples, log Z / soft value, log_prob, KL and E_pi[Q] against their integrals.

    3 different states x 128 replicates each, in one batch: each replicate is an independent
    estimate, so errors are judged against the Monte Carlo standard error (delta method from the
    ESS) of their mean over replicates.
    """
    prob = GaussianProblem(CONFIGS, replicates=128, t=t)
    n = 2048
    policy = AnchoredPolicy(prob.anchor, prob.utility, t, sampler=ImportanceSampler(n))
    obs = prob.obs
    m, v = prob.posterior()

    # samples: resampling m of n weighted particles, variance ~ (1/ess + 1/m) per state
    result = policy.sample(obs, num_samples=16, generator=gen(10))
    assert result.samples.shape == (16, obs.shape[0], 2)
    ess = result.stats["ess"]
    for k in range(prob.k):
        x = prob.per_config(result.samples.transpose(0, 1))[k]  # [R, 16, d]
        n_eff = prob.r / (1 / prob.per_config(ess)[k].mean() + 1 / 16)
        mean_k, var_k = prob.per_config(m)[k, 0], prob.per_config(v)[k, 0]
        assert_moments(x, mean_k, torch.diag(var_k), n_eff=float(n_eff))

    est = policy.estimate(obs, generator=gen(11))
    inv_ess = (1 / est.ess - 1 / n).clamp_min(0)
    # log Z: se per state sqrt(1/ess - 1/n); the log of an unbiased Z estimate has bias -se^2/2
    err_logz = prob.per_config(est.log_normalizer - prob.log_z())
    se_logz = prob.per_config(inv_ess).mean(1).div(prob.r).sqrt()
    bias = prob.per_config(inv_ess).mean(1) / 2
    assert (err_logz.mean(1).abs() <= 5 * se_logz + bias).all(), (err_logz.mean(1), se_logz)
    torch.testing.assert_close(est.soft_value, t * est.log_normalizer)
    # E_pi[Q] (self-normalised): se sqrt(Var_pi(Q) / ess); SNIS bias is O(1 / ess)
    var_q = t**2 * prob.utility_over_t_var()
    err_q = prob.per_config(est.expected_utility - prob.expected_utility())
    se_q = prob.per_config(var_q / est.ess).mean(1).div(prob.r).sqrt()
    bias_q = prob.per_config(var_q.sqrt() / est.ess).mean(1)
    assert (err_q.mean(1).abs() <= 5 * se_q + bias_q).all(), (err_q.mean(1), se_q)
    # KL = E_pi[Q]/T - log Z: the two errors add (bound by the sum of their se)
    err_kl = prob.per_config(est.kl_to_anchor - prob.kl())
    se_kl = se_q / t + se_logz
    assert (err_kl.mean(1).abs() <= 5 * se_kl + bias_q / t + bias).all(), (err_kl.mean(1), se_kl)
    # and no single state is far off (a per-state 6-sigma bound)
    assert (err_logz.abs() <= 6 * prob.per_config(inv_ess).sqrt() + 1e-3).all()

    # log_prob at fixed actions: exact log N(a; m, v) up to the log Z error
    a = m + 0.7 * v.sqrt()
    lp = policy.log_prob(obs, a, generator=gen(12))
    exact = Independent(Normal(m, v.sqrt()), 1).log_prob(a)
    err_lp = prob.per_config(lp - exact)
    assert (err_lp.mean(1).abs() <= 5 * se_logz + bias).all(), (err_lp.mean(1), se_logz)
    assert policy.log_prob(obs, a.expand(3, *a.shape), generator=gen(12)).shape == (3, len(a))


def test_other_proposal_gives_the_same_estimates():
    """A proposal other than the anchor (a wide Gaussian) must give the same log Z and KL: this
    exercises the -log q term of the weights."""
    t = 1.0
    prob = GaussianProblem(CONFIGS[:1], replicates=256, t=t)
    policy = AnchoredPolicy(prob.anchor, prob.utility, t, sampler=ImportanceSampler(4096))
    obs = prob.obs
    wide = Independent(Normal(torch.zeros_like(obs[:, :2]), 2.5 * torch.ones_like(obs[:, :2])), 1)
    est = policy.estimate(obs, proposal=wide, generator=gen(13))
    inv_ess = (1 / est.ess - 1 / 4096).clamp_min(0)
    se = (inv_ess.mean() / obs.shape[0]).sqrt()
    assert abs(est.log_normalizer.mean() - prob.log_z().mean()) <= 5 * se + inv_ess.mean() / 2
    var_q = prob.utility_over_t_var()
    se_kl = (var_q / est.ess).mean().div(obs.shape[0]).sqrt() + se
    assert (
        abs(est.kl_to_anchor.mean() - prob.kl().mean())
        <= 5 * se_kl + (var_q.sqrt() / est.ess).mean()
    )
    x = policy.sample(obs, 8, proposal=wide, generator=gen(14))
    m, v = prob.posterior()
    n_eff = obs.shape[0] / (1 / x.stats["ess"].mean() + 1 / 8)
    assert_moments(x.samples, m[0], torch.diag(v[0]), n_eff=float(n_eff))


def test_continuous_temperature_gradient_is_minus_kl_estimate():
    """The estimates are differentiable in T; on the same particles dV/dT = -KL exactly."""
    prob = GaussianProblem(CONFIGS, replicates=4, t=1.0)
    log_t = torch.tensor(0.0, dtype=F64, requires_grad=True)
    policy = AnchoredPolicy(prob.anchor, prob.utility, log_t.exp(), sampler=ImportanceSampler(512))
    est = policy.estimate(prob.obs, generator=gen(15))
    (grad,) = torch.autograd.grad(est.soft_value.sum(), log_t)
    torch.testing.assert_close(grad, -est.kl_to_anchor.sum().detach())  # dT/dlog T = T = 1


def test_mala_refinement_is_exact_on_a_narrow_posterior():
    """At T = 0.02 the posterior is ~7x narrower than the anchor: IS alone has a small ESS, the
    Chain(IS, MALA) must still produce the exact posterior moments."""
    t = 0.02
    prob = GaussianProblem(CONFIGS[1:2], replicates=128, t=t)
    sampler = Chain(ImportanceSampler(1024), MALA(0.01, 30, warmup_steps=20))
    policy = AnchoredPolicy(prob.anchor, prob.utility, t, sampler=sampler)
    result = policy.sample(prob.obs, 32, generator=gen(16))
    m, v = prob.posterior()
    assert 0.3 < float(result.stats["acceptance_rate"].mean()) < 0.8
    # chains of one state may share an IS start: count min(ESS, 32) independent samples per
    # state (conservative: the chains decorrelate further over the MALA steps)
    n_eff = prob.r * float(result.stats["ess"].mean().clamp(max=32))
    assert_moments(result.samples.transpose(0, 1), m[0], torch.diag(v[0]), n_eff=n_eff)


def test_continuous_limits():
    """T -> inf: the anchor (KL -> 0); T -> 0: the argmax of Q on the anchor's support, here a
    point on the boundary of the box because Q peaks outside it."""
    space = Box(-1.0, 1.0, (2,), dtype="float64")
    anchor = UniformAnchor(space)
    c = torch.tensor([2.0, 0.3], dtype=F64)
    utility = lambda obs, a: -((a - c) ** 2).sum(-1)  # noqa: E731
    obs = torch.zeros(64, 1, dtype=F64)
    hot = AnchoredPolicy(anchor, utility, 1e8, sampler=ImportanceSampler(1024))
    est = hot.estimate(obs, generator=gen(17))
    assert est.kl_to_anchor.abs().max() < 1e-6
    x = hot.sample(obs, 64, generator=gen(18)).samples
    # uniform on [-1, 1]^2: mean 0, var 1/3 (samples from 1024 particles per state, 64 states)
    assert_moments(
        x, torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64) / 3, n_eff=64 / (1 / 1024 + 1 / 64)
    )
    cold = AnchoredPolicy(
        anchor, utility, 1e-3, sampler=anchored_sampler(space, 1024, mala_steps=30, step_size=1e-3)
    )
    y = cold.sample(obs, 16, generator=gen(19)).samples
    assert y.abs().max() < 1.0  # inside the box
    # the limit law is a0 = 1 - Exp(rate 2 / T), a1 ~ N(0.3, T / 2): concentrated at (1, 0.3),
    # where at T = 1 the policy is still spread over the box
    assert (1 - y[..., 0]).mean() < 0.01 and (y[..., 1] - 0.3).abs().mean() < 0.05
    warm = AnchoredPolicy(anchor, utility, 1.0, sampler=ImportanceSampler(1024))
    assert (1 - warm.sample(obs, 16, generator=gen(19)).samples[..., 0]).mean() > 0.3
    # deterministic: a function of obs alone (any generator), the mode search from the box's
    # centre; it beats the best of 1024 uniform particles and lands at the limit point
    det = cold.act(obs, deterministic=True, generator=gen(20))
    torch.testing.assert_close(det, cold.act(obs, deterministic=True, generator=gen(21)))
    particles = draw(anchor(obs), (1024,), gen(20))
    best = utility(obs, particles).max(0).values
    assert (utility(obs, det.unsqueeze(0))[0] >= best).all()
    assert (det - torch.tensor([1.0, 0.3], dtype=F64)).norm(dim=-1).max() < 0.02


def test_one_call_1024_states_6d_actions():
    """One sample call serves 1024 states x 6-D actions (IS -> MALA in the box), batched."""
    torch.manual_seed(0)
    space = Box(-1.0, 1.0, (6,))
    anchor = GaussianAnchor(8, space, hidden_sizes=(32, 32))
    weight = torch.randn(8, 6) / 3

    def utility(obs, actions):
        return -((actions - torch.tanh(obs @ weight)) ** 2).sum(-1)

    policy = AnchoredPolicy(anchor, utility, 0.1, sampler=anchored_sampler(space, 64, mala_steps=5))
    obs = torch.randn(1024, 8)
    result = policy.sample(obs, 16, generator=gen(21))
    assert result.samples.shape == (16, 1024, 6) and result.samples.dtype == torch.float32
    assert result.samples.abs().max() < 1.0
    for key in ("ess", "log_normalizer", "acceptance_rate", "step_size"):
        assert result.stats[key].shape == (1024,) and torch.isfinite(result.stats[key]).all()
    # E_pi[Q] >= E_anchor[Q] (pi tilts the anchor toward higher Q): a large, certain margin here
    with torch.no_grad():
        q_pi = utility(obs, result.samples).mean()
        q_anchor = utility(obs, anchor(obs).sample((16,))).mean()
    assert q_pi > q_anchor + 0.5
    assert policy.act(obs, generator=gen(22)).shape == (1024, 6)


def test_mala_step_on_the_policy_energy_compiles_fullgraph():
    """A sampler step over an anchored energy (squashed-Gaussian anchor, in the box's logit
    space) is captured by torch.compile without a graph break (no host syncs, no side effects)."""
    torch.manual_seed(0)
    space = Box(-1.0, 1.0, (2,))
    anchor = GaussianAnchor(3, space, hidden_sizes=(16,))
    obs = torch.randn(4, 3)
    policy = AnchoredPolicy(anchor, lambda o, a: -(a**2).sum(-1) + o[..., 0], 0.5)
    init, noise, log_u = torch.randn(8, 4, 2), torch.randn(8, 4, 2), torch.rand(8, 4).log()
    assert_mala_step_compiles(policy, obs, init, noise, log_u)


def test_energy_contract_and_zero_density():
    space = Box(-1.0, 1.0, (2,))
    policy = AnchoredPolicy(UniformAnchor(space), lambda o, a: a.sum(-1), 2.0)
    obs = torch.zeros(3, 4)
    energy = policy.energy(obs)
    a = torch.tensor([[[0.5, 0.5], [2.0, 0.0], [1.0, -1.0]]])  # second is outside the box
    e = energy(a)
    assert e.shape == (1, 3)
    torch.testing.assert_close(e[0, 0], torch.tensor(math.log(4.0) - 0.5))
    assert e[0, 1] == math.inf and torch.isfinite(e[0, 2])
    # a batched energy equals one evaluated state by state
    x = torch.rand(5, 3, 2) * 2 - 1
    loop = torch.stack([policy.energy(obs[i : i + 1])(x[:, i : i + 1])[:, 0] for i in range(3)], 1)
    torch.testing.assert_close(energy(x), loop)
    assert policy.log_prob(obs, a[0]).isinf()[1]


def test_same_generator_same_draws_and_dtype_follows_inputs():
    prob = GaussianProblem(CONFIGS, replicates=2, t=1.0)
    policy = AnchoredPolicy(prob.anchor, prob.utility, 1.0, sampler=ImportanceSampler(64))
    a = policy.sample(prob.obs, 4, generator=gen(5)).samples
    b = policy.sample(prob.obs, 4, generator=gen(5)).samples
    c = policy.sample(prob.obs, 4, generator=gen(6)).samples
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == F64
    e1 = policy.soft_value(prob.obs, generator=gen(7))
    assert torch.equal(e1, policy.soft_value(prob.obs, generator=gen(7)))


# ----------------------------------------------------------------------------- temperature


def test_temperature_validation_and_setter():
    anchor, utility, _, _ = discrete_problem()
    for bad in (
        0.0,
        -1.0,
        float("nan"),
        float("inf"),
        torch.tensor(-0.1),
        torch.tensor(float("nan")),
    ):
        with pytest.raises(ValueError, match="temperature"):
            AnchoredPolicy(anchor, utility, bad)
    with pytest.raises(ValueError, match="temperature"):
        AnchoredPolicy(anchor, utility, torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="temperature"):
        AnchoredPolicy(anchor, utility, True)
    with pytest.raises(TypeError, match="temperature"):
        AnchoredPolicy(anchor, utility, "1.0")
    policy = AnchoredPolicy(anchor, utility, 1.0)
    log_alpha = torch.tensor(-1.0, requires_grad=True)
    policy.temperature = log_alpha.exp().detach()
    assert isinstance(policy.temperature, torch.Tensor) and policy.temperature.shape == ()
    for bad in (0.0, torch.tensor(0.0), torch.nn.Parameter(torch.tensor(-2.0))):
        with pytest.raises(ValueError, match="temperature"):
            policy.temperature = bad
    policy.temperature = torch.nn.Parameter(torch.tensor(2.0))  # validated, not registered
    assert "temperature" not in dict(policy.named_parameters())
    assert float(policy.temperature.detach()) == 2.0
    policy.temperature = 3
    assert policy.temperature == 3.0


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_are_named_errors():
    anchor, utility, _, _ = discrete_problem()
    policy = AnchoredPolicy(anchor, utility, 1.0)
    obs = torch.zeros(6, 2, dtype=F64)
    with pytest.raises(TypeError, match=r"obs must be a torch\.Tensor"):
        policy.distribution([[0.0, 0.0]])
    # utility of the wrong shape, discrete
    wrong = AnchoredPolicy(anchor, lambda o: utility(o)[:, :4], 1.0)
    with pytest.raises(ValueError, match=r"utility\(obs\) must return \[B, n_actions\]"):
        wrong.distribution(obs)
    with pytest.raises(ValueError, match="utility"):
        AnchoredPolicy(anchor, lambda o: utility(o).sum(-1), 1.0).sample(obs)
    # observations whose batch differs from the anchor's
    fixed = Categorical(probs=torch.ones(5, 3))
    with pytest.raises(ValueError, match=r"batch shape \(5,\) but obs has batch"):
        AnchoredPolicy(lambda o: fixed, lambda o: torch.zeros(3, 3), 1.0).distribution(
            torch.zeros(3, 2)
        )
    with pytest.raises(ValueError, match="actions must be in"):
        policy.log_prob(obs, torch.full((6,), 7))
    with pytest.raises(ValueError, match=r"\[B\] or \[n, B\]"):
        policy.log_prob(obs, torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        policy.log_prob(obs, torch.zeros(6))
    with pytest.raises(ValueError, match="proposal is only used for continuous"):
        policy.sample(obs, proposal=Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="num_samples"):
        policy.sample(obs, 0)
    nan_q = AnchoredPolicy(anchor, lambda o: torch.full((6, 5), float("nan"), dtype=F64), 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        nan_q.distribution(obs)
    with pytest.raises(TypeError, match="anchor must be callable"):
        AnchoredPolicy(fixed, utility, 1.0)
    with pytest.raises(TypeError, match="sampler"):
        AnchoredPolicy(anchor, utility, 1.0, sampler="mala")


def test_bad_continuous_inputs_are_named_errors():
    space = Box(-1.0, 1.0, (2,))
    q = lambda o, a: -(a**2).sum(-1)  # noqa: E731
    policy = AnchoredPolicy(UniformAnchor(space), q, 1.0, sampler=ImportanceSampler(32))
    obs = torch.zeros(3, 4)
    with pytest.raises(
        ValueError, match=r"utility\(obs, actions\[n, B, d\]\) must return \[n, B\]"
    ):
        AnchoredPolicy(UniformAnchor(space), lambda o, a: a, 1.0).sample(obs)
    with pytest.raises(ValueError, match="utility"):
        AnchoredPolicy(UniformAnchor(space), lambda o, a: a.sum((-1, -2)), 1.0).soft_value(obs)
    with pytest.raises(ValueError, match="proposal must have batch shape"):
        policy.sample(obs, proposal=Independent(Normal(torch.zeros(4, 2), 1.0), 1))
    with pytest.raises(TypeError, match="proposal must be"):
        policy.soft_value(obs, proposal=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\[B, d\] or \[n, B, d\]"):
        policy.log_prob(obs, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="exact only for discrete"):
        policy.distribution(obs)
    with pytest.raises(ValueError, match="importance stage"):
        AnchoredPolicy(UniformAnchor(space), q, 1.0, sampler=MALA(0.1, 2)).soft_value(obs)
    nan_q = AnchoredPolicy(UniformAnchor(space), lambda o, a: a.sum(-1) * math.nan, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        nan_q.soft_value(obs)
    far = Independent(Normal(torch.full((3, 2), 50.0), 1.0), 1)
    with pytest.raises(ValueError, match="zero weight"):
        policy.kl_to_anchor(obs, proposal=far)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_follows_inputs_cuda():
    """Contract: anchors, samples, stats and estimates live on the observations' device."""
    dev = torch.device("cuda")
    space = Box(-1.0, 1.0, (3,))
    anchor = GaussianAnchor(4, space, hidden_sizes=(16,)).to(dev)
    policy = AnchoredPolicy(
        anchor,
        lambda o, a: -(a**2).sum(-1) + o[..., 0],
        torch.tensor(0.5, device=dev),
        sampler=anchored_sampler(space, 64, mala_steps=3),
    )
    obs = torch.randn(8, 4, device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    result = policy.sample(obs, 5, generator=g)
    assert result.samples.device.type == "cuda" and result.samples.shape == (5, 8, 3)
    assert all(v.device.type == "cuda" for v in result.stats.values())
    assert policy.soft_value(obs, generator=g).device.type == "cuda"
    assert policy.act(obs, deterministic=True, generator=g).device.type == "cuda"
    uniform = AnchoredPolicy(UniformAnchor(Discrete(3)), lambda o: o[:, :3], 1.0)
    assert uniform.distribution(obs).probs.device.type == "cuda"
    assert uniform.sample(obs, 4, generator=g).samples.device.type == "cuda"


def test_proposal_sampler_draws_the_proposal_and_rejects_bad_input():
    from ebrl.samplers.proposal import ProposalSampler

    proposal = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(3, 2), torch.ones(3, 2)), 1
    )
    x = ProposalSampler().sample(None, proposal, 4000, generator=gen(0)).samples
    assert x.shape == (4000, 3, 2)
    # N(0, 1) per coordinate: the sample mean of 4000 draws is within 5 sd (5 / sqrt(4000))
    assert x.mean(0).abs().max() < 5 / 4000**0.5
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        ProposalSampler().sample(None, proposal, 0)
    with pytest.raises(ValueError, match="init is not used"):
        ProposalSampler().sample(None, proposal, 1, init=torch.zeros(1, 3, 2))
    with pytest.raises(TypeError, match=r"proposal must be a torch\.distributions\.Distribution"):
        ProposalSampler().sample(None, "normal", 1)


def test_mode_rejects_a_badly_shaped_init_and_a_discrete_policy():
    space = Box(-1.0, 1.0, (2,))
    policy = AnchoredPolicy(
        UniformAnchor(space), lambda o, a: -(a**2).sum(-1), 1.0, ImportanceSampler(8)
    )
    obs = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"init must be a tensor \[B, d\] = \[3, 2\]"):
        policy.mode(obs, init=torch.zeros(3, 5))
    torch.testing.assert_close(policy.mode(obs), torch.zeros(3, 2))  # the centre is the mode
    discrete = AnchoredPolicy(UniformAnchor(Discrete(3)), lambda o: o[:, :3], 1.0)
    with pytest.raises(ValueError, match="for continuous actions"):
        discrete.mode(obs)


def test_truncated_normal_anchor_tilted_by_a_linear_utility_is_the_shifted_truncated_normal():
    """``N(mu, s^2) exp(c a / T)`` restricted to a box is ``N(mu + c s^2 / T, s^2)`` restricted
    to it: the importance-sampled policy's moments against that closed form."""
    from ebrl.policies import TruncatedNormal

    mu = torch.tensor([[0.2, -0.6], [0.9, 0.0]], dtype=F64)
    s = torch.tensor([[0.4, 0.3], [0.5, 1.0]], dtype=F64)
    c, t = torch.tensor([1.0, -1.0], dtype=F64), 0.25

    def anchor(obs):
        return Independent(TruncatedNormal(mu, s, -1.0, 1.0), 1)

    utility = lambda o, a: (a * c).sum(-1)  # noqa: E731
    policy = AnchoredPolicy(anchor, utility, t, sampler=ImportanceSampler(4096))
    obs = torch.zeros(2, 3, dtype=F64)
    result = policy.sample(obs, 256, generator=gen(7))
    exact = TruncatedNormal(mu + c * s**2 / t, s, -1.0, 1.0)
    sd = exact.variance.sqrt()
    # 256 draws resampled from 4096 weighted particles (ESS 750-1400): se^2 = sd^2 (1/256 + 1/ESS)
    ess = result.stats["ess"][:, None]
    assert (ess > 500).all()
    se = sd * (1 / 256 + 1 / ess).sqrt()
    error = (result.samples.mean(0) - exact.mean).abs()
    assert (error < 5 * se).all(), (result.samples.mean(0), exact.mean, se)
    # the untilted anchor's mean is many standard errors away (the test can fail)
    assert ((anchor(obs).base_dist.mean - exact.mean).abs() > 5 * se).all()
