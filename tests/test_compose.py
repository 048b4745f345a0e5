"""AnchoredPolicy.compose: deploy-time costs, ``pi' ∝ anchor exp(Q / T - sum_i w_i cost_i)``.

A zero cost is the same policy; discrete composition is the exact softmax; an infinite cost
removes actions exactly; a quadratic cost on a Gaussian problem gives the Gaussian posterior;
the estimates stay consistent; agents act with a composed policy without retraining and it
reads their temperature; bad costs and weights raise errors that name them.
"""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete
from torch.distributions import Categorical, Independent, Normal

from ebrl.agents import SAC, SoftQ
from ebrl.policies import AnchoredPolicy, UniformAnchor
from ebrl.samplers import MALA, Chain, ImportanceSampler
from ebrl.samplers.proposal import ProposalSampler
from tests.helpers import assert_mala_step_compiles, assert_moments
from tests.test_anchored import CONFIGS, GaussianProblem, discrete_problem

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def table_cost(values):
    """A discrete cost ``obs -> [B, n]`` from a fixed ``[B, n]`` table."""
    values = torch.as_tensor(values)
    return lambda obs: values[: obs.shape[0]]


def continuous_policy(sampler=None, t=0.5):
    """A uniform anchor on [-1, 1]^2 with a linear utility."""
    space = Box(-1.0, 1.0, (2,))
    return AnchoredPolicy(UniformAnchor(space), lambda o, a: a.sum(-1) + o[:, 0], t, sampler)


# ----------------------------------------------------------------------------- zero cost


def test_a_zero_cost_is_the_same_discrete_policy():
    anchor, utility, _, q = discrete_problem()
    policy = AnchoredPolicy(anchor, utility, 0.7)
    obs = torch.zeros(6, 2, dtype=F64)
    zero = table_cost(torch.zeros_like(q))
    composed = policy.compose(zero, 5.0)
    assert torch.equal(composed.distribution(obs).logits, policy.distribution(obs).logits)
    for got, want in zip(composed.estimate(obs), policy.estimate(obs), strict=True):
        assert torch.equal(got, want)
    # weight 0 ignores even an infinite cost (0 · inf counts as 0), so a sweep starts at pi
    infinite = table_cost(torch.full_like(q, math.inf))
    same = policy.compose(infinite, 0.0).distribution(obs).logits
    assert torch.equal(same, policy.distribution(obs).logits)


@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_a_zero_cost_is_the_same_continuous_policy(weight):
    """Same samples from the same generator, same log_prob and estimates; weight 0 likewise
    with a cost that is not zero."""
    sampler = Chain(ImportanceSampler(64, bounds=(-1.0, 1.0)), MALA(0.05, 3, bounds=(-1.0, 1.0)))
    policy = continuous_policy(sampler)
    obs = torch.randn(5, 3, generator=gen(0))
    cost = (lambda o, a: torch.zeros(a.shape[:-1])) if weight else (lambda o, a: 10 * a[..., 0])
    composed = policy.compose(cost, weight)
    want, got = policy.sample(obs, 7, generator=gen(1)), composed.sample(obs, 7, generator=gen(1))
    assert torch.equal(got.samples, want.samples)
    a = torch.rand(4, 5, 2, generator=gen(2)) * 2 - 1
    assert torch.equal(
        composed.log_prob(obs, a, generator=gen(3)), policy.log_prob(obs, a, generator=gen(3))
    )
    for x, y in zip(
        composed.estimate(obs, generator=gen(4)),
        policy.estimate(obs, generator=gen(4)),
        strict=True,
    ):
        assert torch.equal(x, y)
    init = torch.zeros(5, 2)
    assert torch.equal(composed.mode(obs, init=init), policy.mode(obs, init=init))


# ----------------------------------------------------------------------------- discrete exact


@pytest.mark.parametrize("t", [0.3, 1.0, 4.0])
def test_discrete_composition_is_the_exact_softmax(t):
    """softmax(log anchor + Q/T - w1 c1 - w2 c2), exactly, with the estimates in closed form."""
    anchor, utility, probs, q = discrete_problem()
    c1 = torch.rand(q.shape, generator=gen(5), dtype=F64) * 3
    c2 = torch.randn(q.shape, generator=gen(6), dtype=F64)  # negative costs are allowed
    policy = AnchoredPolicy(anchor, utility, t).compose(table_cost(c1)).compose(table_cost(c2), 2.5)
    obs = torch.zeros(6, 2, dtype=F64)
    probs = probs / probs.sum(-1, keepdim=True)  # the anchor's normalised probabilities
    target = torch.where(probs > 0, probs.log() + q / t - c1 - 2.5 * c2, -math.inf)
    want = torch.softmax(target, -1)
    dist = policy.distribution(obs)
    torch.testing.assert_close(dist.probs, want)
    assert (dist.probs[probs == 0] == 0).all()  # the anchor's zeros stay exact zeros

    est = policy.estimate(obs)
    log_z = torch.logsumexp(target, -1)
    torch.testing.assert_close(est.log_normalizer, log_z)
    torch.testing.assert_close(est.soft_value, t * log_z)
    support = want > 0
    kl = torch.where(support, want * (want.log() - probs.log()), 0.0).sum(-1)
    cost = torch.where(support, want * (c1 + 2.5 * c2), 0.0).sum(-1)
    utility_mean = torch.where(support, want * q, 0.0).sum(-1)
    torch.testing.assert_close(est.kl_to_anchor, kl)
    torch.testing.assert_close(est.expected_cost, cost)
    torch.testing.assert_close(est.expected_utility, utility_mean)
    # KL(pi' || anchor) = E[Q]/T - E[C] - log Z'
    torch.testing.assert_close(est.kl_to_anchor, utility_mean / t - cost - log_z)
    actions = torch.tensor([1, 2, 3, 4, 1, 2])
    torch.testing.assert_close(policy.log_prob(obs, actions), want.log()[range(6), actions])
    assert policy.sample(obs, 4, generator=gen(7)).samples.shape == (4, 6)


def test_costs_compose_in_order_and_leave_the_original_unchanged():
    anchor, utility, _, q = discrete_problem()
    base = AnchoredPolicy(anchor, utility, 1.0)
    c1, c2 = table_cost(torch.ones_like(q)), table_cost(torch.zeros_like(q))
    both = base.compose(c1).compose(c2, 3.0)
    assert both.costs == ((c1, 1.0), (c2, 3.0)) and both.costs[1].weight == 3.0
    assert base.costs == () and base.compose(c1).costs == ((c1, 1.0),)
    assert isinstance(both, AnchoredPolicy) and both.anchor is base.anchor
    assert both.sampler is base.sampler and both.mode_steps == base.mode_steps
    assert "costs=[1·<lambda>, 3·<lambda>]" in repr(both)


# ----------------------------------------------------------------------------- infinite cost


def test_an_infinite_cost_removes_a_discrete_action_exactly():
    """Probability exactly 0, never sampled, never the argmax, even where Q is largest (and
    whatever Q is there, NaN included, as for a zero of the anchor)."""
    batch, n = 4, 3
    q = torch.tensor([[0.0, 1.0, 50.0]]).repeat(batch, 1)
    q[3, 2] = math.nan  # a NaN utility on a removed action does not matter
    policy = AnchoredPolicy(UniformAnchor(Discrete(n)), lambda obs: q[: obs.shape[0]], 1.0)
    forbid = torch.zeros(batch, n)
    forbid[:, 2] = math.inf
    composed = policy.compose(table_cost(forbid), 0.5)
    obs = torch.zeros(batch, 2)
    probs = composed.distribution(obs).probs
    assert (probs[:, 2] == 0).all()
    torch.testing.assert_close(probs[:, :2], torch.softmax(q[:, :2], -1))
    assert (composed.sample(obs, 2000, generator=gen(8)).samples != 2).all()
    assert (composed.act(obs, deterministic=True) == 1).all()
    assert (composed.log_prob(obs, torch.full((batch,), 2)) == -math.inf).all()
    est = composed.estimate(obs)
    assert torch.isfinite(est.kl_to_anchor).all() and torch.isfinite(est.expected_cost).all()
    # removing every action is an error that says so
    with pytest.raises(ValueError, match="every action"):
        policy.compose(table_cost(torch.full((batch, n), math.inf))).distribution(obs)


def test_an_infinite_cost_gives_a_continuous_region_zero_weight():
    """+inf on a[0] > 0: no sample there (importance and MALA), log_prob -inf there, the mode
    stays out; the rest of the policy is the original restricted to a[0] <= 0."""
    sampler = Chain(ImportanceSampler(256, bounds=(-1.0, 1.0)), MALA(0.05, 5, bounds=(-1.0, 1.0)))
    policy = continuous_policy(sampler, t=1.0)
    wall = lambda o, a: torch.where(a[..., 0] > 0, math.inf, 0.0)  # noqa: E731
    composed = policy.compose(wall, 2.0)
    obs = torch.zeros(64, 3)
    x = composed.sample(obs, 32, generator=gen(9)).samples
    assert (x[..., 0] <= 0).all() and (x[..., 1] > 0).float().mean() > 0.6  # Q still tilts a[1]
    inside, outside = torch.tensor([[-0.5, 0.5]]), torch.tensor([[0.5, 0.5]])
    assert composed.log_prob(obs[:1], outside) == -math.inf
    assert torch.isfinite(composed.log_prob(obs[:1], inside))
    mode = composed.mode(obs[:4], init=torch.full((4, 2), -0.5))
    assert (mode[:, 0] <= 0).all()
    # log Z' = log E_uniform[exp(Q/T) 1{a0 <= 0}] = log(E[exp(a0) 1{a0 <= 0}] E[exp(a1)])
    est = composed.estimate(obs, generator=gen(10))
    exact = math.log((1 - math.exp(-1)) / 2) + math.log((math.e - math.exp(-1)) / 2)
    inv_ess = (1 / est.ess - 1 / 256).clamp_min(0)
    se = (inv_ess.mean() / obs.shape[0]).sqrt()
    assert abs(est.log_normalizer.mean() - exact) <= 5 * se + inv_ess.mean() / 2
    assert (est.expected_cost == 0).all()


# ----------------------------------------------------------------------------- closed form


def test_gaussian_anchor_quadratic_utility_and_quadratic_cost_is_the_gaussian_posterior():
    """anchor N(mu0, s0^2), Q = -p (a - c)^2 / 2, cost = pc (a - cc)^2 / 2 with weight w: the
    composed policy is the Gaussian posterior of the quadratic Q' = Q - T w cost, i.e.
    precision p' = p + T w pc, centre c' = (p c + T w pc cc) / p', and
    log Z' = log Z(c', p') - w pc p (c - cc)^2 / (2 p'). Samples, log Z and E[cost] against their
    integrals, with tolerances from the Monte Carlo standard error over 128 replicates."""
    t, w = 1.0, 3.0
    prob = GaussianProblem(CONFIGS, replicates=128, t=t)
    d = prob.d
    pc = torch.tensor([2.0, 0.5], dtype=F64)
    cc = torch.tensor([0.8, -1.0], dtype=F64)

    def cost(obs, actions):
        return 0.5 * (pc * (actions - cc) ** 2).sum(-1)

    n = 2048
    policy = AnchoredPolicy(prob.anchor, prob.utility, t, sampler=ImportanceSampler(n))
    composed = policy.compose(cost, w)
    # the same policy as a Gaussian problem with the combined quadratic utility
    mu0, log_s0, c, log_p = prob.obs.split(d, dim=-1)
    p = log_p.exp()
    p2 = p + t * w * pc
    c2 = (p * c + t * w * pc * cc) / p2
    shifted = GaussianProblem(torch.cat([mu0, log_s0, c2, p2.log()], -1), replicates=1, t=t)
    m, v = shifted.posterior()
    log_z = shifted.log_z() - (w * pc * p * (c - cc) ** 2 / (2 * p2)).sum(-1)

    obs = prob.obs
    result = composed.sample(obs, num_samples=16, generator=gen(11))
    ess = result.stats["ess"]
    for k in range(prob.k):
        x = prob.per_config(result.samples.transpose(0, 1))[k]
        n_eff = prob.r / (1 / prob.per_config(ess)[k].mean() + 1 / 16)
        mean_k, var_k = prob.per_config(m)[k, 0], prob.per_config(v)[k, 0]
        assert_moments(x, mean_k, torch.diag(var_k), n_eff=float(n_eff))

    est = composed.estimate(obs, generator=gen(12))
    inv_ess = (1 / est.ess - 1 / n).clamp_min(0)
    err = prob.per_config(est.log_normalizer - log_z)
    se = prob.per_config(inv_ess).mean(1).div(prob.r).sqrt()
    bias = prob.per_config(inv_ess).mean(1) / 2
    assert (err.mean(1).abs() <= 5 * se + bias).all(), (err.mean(1), se)
    # E_pi'[cost] = sum pc (v + (m - cc)^2) / 2; a self-normalised mean: se from Var(cost)/ess
    exact_cost = w * 0.5 * (pc * (v + (m - cc) ** 2)).sum(-1)
    var_cost = (w * 0.5 * pc) ** 2 * (2 * v**2 + 4 * (m - cc) ** 2 * v)
    var_cost = var_cost.sum(-1)
    err_c = prob.per_config(est.expected_cost - exact_cost)
    se_c = prob.per_config(var_cost / est.ess).mean(1).div(prob.r).sqrt()
    bias_c = prob.per_config(var_cost.sqrt() / est.ess).mean(1)
    assert (err_c.mean(1).abs() <= 5 * se_c + bias_c).all(), (err_c.mean(1), se_c)
    # the estimates stay consistent: KL = E[Q]/T - E[C] - log Z' (same particles), V = T log Z'
    kl = est.expected_utility / t - est.expected_cost - est.log_normalizer
    torch.testing.assert_close(est.kl_to_anchor, kl)
    torch.testing.assert_close(est.soft_value, t * est.log_normalizer)
    # log_prob: log N(a; m, v) up to the log Z error
    a = m + 0.5 * v.sqrt()
    lp = composed.log_prob(obs, a, generator=gen(13))
    err_lp = prob.per_config(lp - Independent(Normal(m, v.sqrt()), 1).log_prob(a))
    assert (err_lp.mean(1).abs() <= 5 * se + bias).all(), (err_lp.mean(1), se)


def test_mala_step_on_a_composed_energy_compiles_fullgraph():
    """The cost check records nothing under torch.compile: a sampler step over a composed energy
    is captured without a graph break, and equals the eager step."""
    policy = continuous_policy(t=0.5).compose(lambda o, a: (a**2).sum(-1), 2.0)
    obs = torch.randn(4, 3, generator=gen(14))
    init = torch.randn(8, 4, 2, generator=gen(15))
    noise, log_u = torch.randn(8, 4, 2, generator=gen(16)), torch.rand(8, 4).log()
    assert_mala_step_compiles(policy, obs, init, noise, log_u)


# ----------------------------------------------------------------------------- agents


class ActionLog(gym.Wrapper):
    """Records the actions an agent sends to the env."""

    def __init__(self, env):
        super().__init__(env)
        self.actions = []

    def step(self, action):
        self.actions.append(np.asarray(action).copy())
        return super().step(action)


SMALL = {"hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 50}


def test_softq_with_a_composed_cost_never_takes_the_forbidden_action():
    agent = SoftQ("CartPole-v1", seed=0, **SMALL)
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    before = agent.predict(obs)[0]
    assert (before == 0).any() and (before == 1).any()  # it takes both actions uncomposed

    def forbid_left(o):
        return torch.tensor([math.inf, 0.0]).expand(o.shape[0], 2)

    agent.policy = agent.policy.compose(forbid_left)
    for deterministic in (False, True):
        assert (agent.predict(obs, deterministic)[0] == 1).all()
        env = ActionLog(gym.make("CartPole-v1"))
        agent.evaluate_on(env, 2, deterministic)
        assert env.actions and all(int(a) == 1 for a in env.actions)


def test_sac_with_a_strong_cost_on_positive_actions_keeps_them_small():
    agent = SAC("Pendulum-v1", seed=0, **SMALL)
    obs = np.random.default_rng(1).uniform(-1, 1, size=(256, 3)).astype(np.float32)
    assert (agent.predict(obs)[0] > 0.5).any()  # env torque in [-2, 2]

    def push_right(o, a):  # a: the agent's normalised actions in [-1, 1]
        return torch.relu(a).sum(-1)

    agent.policy = agent.policy.compose(push_right, 1000.0)
    for deterministic in (False, True):
        assert (agent.predict(obs, deterministic)[0] <= 0.02).all()
        env = ActionLog(gym.make("Pendulum-v1"))
        agent.evaluate_on(env, 1, deterministic)
        assert len(env.actions) == 200 and max(float(a[0]) for a in env.actions) <= 0.02


def test_the_composed_policy_reads_the_agents_temperature():
    """The setter hands the composed policy the agent's temperature tensor; a composed policy
    not (yet) assigned shares it too. Updates of log T reach both."""
    agent = SAC("Pendulum-v1", seed=0, **SMALL)
    composed = agent.policy.compose(lambda o, a: a.sum(-1))
    agent.policy = composed
    kept = agent.policy.compose(lambda o, a: a.sum(-1), 2.0)  # never assigned
    with torch.no_grad():
        agent.log_temperature.fill_(math.log(0.25))
    agent.sync_temperature()
    for policy in (agent.policy, composed, kept):
        torch.testing.assert_close(policy.temperature, torch.tensor(0.25))
    agent.learn(60, progress_bar=False)  # crosses learning_starts: T moves with training
    assert float(agent.temperature) != 0.25
    torch.testing.assert_close(agent.policy.temperature, agent.temperature)


# ----------------------------------------------------------------------------- bad input


def test_compose_rejects_bad_costs_and_weights():
    policy = continuous_policy()
    cost = lambda o, a: a.sum(-1)  # noqa: E731
    with pytest.raises(TypeError, match="cost must be callable"):
        policy.compose(3.0)
    for weight in ("1", True, None, torch.ones(2)):
        with pytest.raises(TypeError, match="weight must be a real number"):
            policy.compose(cost, weight)
    for weight in (-0.1, math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="weight must be finite and >= 0"):
            policy.compose(cost, weight)
    assert policy.compose(cost, torch.tensor(2.0)).costs[0].weight == 2.0
    plain = continuous_policy(ProposalSampler())
    with pytest.raises(ValueError, match=r"ProposalSampler .* never evaluates the energy"):
        plain.compose(cost)
    composed = policy.compose(cost)
    composed.sampler = ProposalSampler()  # swapped in after composing: refused when sampling
    with pytest.raises(ValueError, match="ProposalSampler"):
        composed.sample(torch.zeros(2, 3))


def test_a_cost_of_the_wrong_shape_is_named():
    obs = torch.zeros(3, 3)
    policy = continuous_policy().compose(lambda o, a: a)  # [n, B, d], not [n, B]
    for call in (
        lambda: policy.sample(obs),
        lambda: policy.estimate(obs),
        lambda: policy.mode(obs),
        lambda: policy.log_prob(obs, torch.zeros(3, 2)),
    ):
        with pytest.raises(ValueError, match=r"cost #0 .* must return \[n, B\]"):
            call()
    discrete = AnchoredPolicy(UniformAnchor(Discrete(3)), lambda o: torch.zeros(o.shape[0], 3), 1)
    for bad in (lambda o: torch.zeros(o.shape[0], 2), lambda o: 0.0):
        with pytest.raises(ValueError, match=r"cost #1 .* must return \[B, n_actions\]"):
            discrete.compose(lambda o: torch.zeros(o.shape[0], 3)).compose(bad).distribution(obs)


@pytest.mark.parametrize("bad_value", [math.nan, -math.inf])
def test_a_nan_or_minus_inf_cost_raises_and_names_the_cost(bad_value):
    """-inf would make an action infinitely likely, NaN is undefined: both raise, on every
    path, naming the cost (also with weight 0)."""
    obs = torch.zeros(3, 3)

    def bad_continuous(o, a):
        return torch.where(a[..., 0] > 0, bad_value, 0.0)

    bad_continuous.__name__ = "bad_cost"
    for weight in (1.0, 0.0):
        sampler = Chain(ImportanceSampler(32, bounds=(-1.0, 1.0)), MALA(0.05, 2, bounds=(-1, 1)))
        for policy in (continuous_policy(), continuous_policy(sampler)):
            composed = policy.compose(lambda o, a: a.sum(-1)).compose(bad_continuous, weight)
            for call in (
                lambda p=composed: p.sample(obs, 4, generator=gen(17)),
                lambda p=composed: p.estimate(obs, generator=gen(18)),
                lambda p=composed: p.log_prob(obs, torch.full((3, 2), 0.5)),
                lambda p=composed: p.mode(obs, init=torch.full((3, 2), 0.5)),
            ):
                with pytest.raises(ValueError, match=r"cost #1 \(bad_cost, .*NaN or -inf"):
                    call()
    values = torch.zeros(3, 3)
    values[1, 2] = bad_value
    discrete = AnchoredPolicy(UniformAnchor(Discrete(3)), lambda o: torch.zeros(o.shape[0], 3), 1)
    for weight in (1.0, 0.0):
        composed = discrete.compose(table_cost(values), weight)
        for call in (
            lambda p=composed: p.distribution(obs),
            lambda p=composed: p.sample(obs, generator=gen(19)),
            lambda p=composed: p.act(obs, deterministic=True),
            lambda p=composed: p.estimate(obs),
        ):
            with pytest.raises(ValueError, match=r"cost #0 .*NaN or -inf"):
                call()


def test_costs_are_cast_to_the_policys_dtype():
    """A cost of another dtype composes: it is cast to the log target's dtype, so the energy
    and the probabilities keep the policy's dtype (continuous float32 with a float64 cost;
    discrete float64 with a float32 cost)."""
    policy = continuous_policy().compose(lambda o, a: a.double().sum(-1), 0.5)
    obs = torch.zeros(3, 3)
    assert policy.energy(obs)(torch.zeros(4, 3, 2)).dtype == torch.float32
    assert policy.estimate(obs, generator=gen(20)).log_normalizer.dtype == torch.float32
    probs = torch.tensor([[0.2, 0.3, 0.5]], dtype=F64)
    policy = AnchoredPolicy(
        lambda o: Categorical(probs=probs.expand(o.shape[0], 3)),
        lambda o: torch.zeros(o.shape[0], 3, dtype=F64),
        1.0,
    ).compose(lambda o: torch.tensor([[0.0, math.log(3.0), 0.0]]).expand(o.shape[0], 3))
    got = policy.distribution(torch.zeros(2, 1)).probs
    torch.testing.assert_close(got, torch.tensor([[0.2, 0.1, 0.5]], dtype=F64).expand(2, 3) / 0.8)
