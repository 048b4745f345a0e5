"""Energy-based SAC: gradient isolation, Polyak, equivalence with a reference SAC update,
determinism, save/load, a real learning test, and bad input."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from ebrl.agents import SAC, SACConfig, polyak_update
from ebrl.agents.buffer import Transitions
from ebrl.agents.sac import (
    _is_unit_box,
    actor_loss,
    critic_loss,
    squashed_log_prob,
    squashed_sample,
    temperature_loss,
)
from ebrl.envs import GOALS, MultiGoalEnv
from ebrl.policies import GaussianAnchor, SquashedDistribution
from ebrl.policies.distributions import tanh_log_det
from ebrl.samplers import MALA, Chain, ImportanceSampler, Langevin
from ebrl.samplers.proposal import ProposalSampler

SMALL = {"hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 50}


class TargetBandit(gym.Env):
    """One-step contextual bandit: obs c ~ U[-1, 1], reward -(a - c / 2)^2 * 4, action in [-1, 1].

    A uniform-random policy scores about -1.4; the optimum 0 (SAC's entropy costs a little).
    """

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.c = self.np_random.uniform(-1, 1, size=1).astype(np.float32)
        return self.c.copy(), {}

    def step(self, action):
        reward = -4.0 * float((action[0] - self.c[0] / 2) ** 2)
        return self.c.copy(), reward, True, False, {}


def random_batch(agent, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Transitions(
        obs=torch.randn(n, agent.obs_dim, generator=g),
        actions=torch.rand(n, agent.act_dim, generator=g) * 2 - 1,
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, agent.obs_dim, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.2).float(),
    )


# ----------------------------------------------------------------- isolation and Polyak


def grads(module):
    return [p.grad for p in module.parameters()]


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("value_target", ["samples", "importance"])
def test_each_loss_alone_puts_gradients_only_on_its_owner(value_target, anchored):
    """critic_loss -> critics only; actor_loss -> actor only (its gradient flows through the
    critics' inputs, not their weights); temperature_loss -> log T only; targets never."""
    anchor = None
    if anchored:
        anchor = GaussianAnchor(3, gym.spaces.Box(-2.0, 2.0, (1,)), hidden_sizes=(8,))
    agent = SAC("Pendulum-v1", seed=0, value_target=value_target, anchor=anchor, **SMALL)
    others = [agent.critic_target, *([anchor] if anchored else [])]
    sampler = agent.value_sampler
    batch, t = random_batch(agent), agent.temperature
    loss, _ = critic_loss(agent.nets, batch, t, gamma=0.99, value_sampler=sampler)
    loss.backward()
    assert all(g is not None and g.abs().sum() > 0 for g in grads(agent.critic))
    assert all(g is None for m in [agent.actor, *others] for g in grads(m))
    assert agent.log_temperature.grad is None

    agent.critic.zero_grad(set_to_none=True)
    loss, terms = actor_loss(agent.nets, batch, t)
    loss.backward()
    assert all(g is not None for g in grads(agent.actor))
    assert all(g is None for m in [agent.critic, *others] for g in grads(m))
    assert all(p.requires_grad for p in agent.critic.parameters())  # restored after the loss
    assert agent.log_temperature.grad is None

    agent.actor.zero_grad(set_to_none=True)
    reg = terms["kl_to_anchor"] if anchored else -terms["entropy"]
    loss, _ = temperature_loss(agent.log_temperature, reg, agent.target)
    loss.backward()
    assert agent.log_temperature.grad is not None
    assert all(g is None for m in [agent.actor, agent.critic, *others] for g in grads(m))


@pytest.mark.parametrize(
    "bounds, unit",
    [
        ((-1.0, 1.0), True),
        ((-1, 1), True),
        ((np.float32(-1), 1.0), True),
        ((np.int64(-1), np.float64(1)), True),
        ((-1.0, 2.0), False),
        ((-2, 1), False),
        ((True, 1), False),
        ((-1, 10**400), False),  # too large for a float
        ((np.float32(-1), 10**400), False),
        ([-1.0, 1.0], False),  # only a tuple of two numbers
        ((-1.0, 1.0, 0.0), False),
        ((torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])), False),
        ((torch.tensor(-1.0), torch.tensor(1.0)), False),
        (None, False),
    ],
)
def test_unit_box_bounds(bounds, unit):
    """Which sampler bounds let the fused acting step skip its bounds mask: the pair of numbers
    (-1, 1), whatever their numeric type; never an error."""
    assert _is_unit_box(bounds) is unit


def test_fused_squashed_log_density_equals_the_distribution():
    """``squashed_sample`` and ``squashed_log_prob`` (the update's and acting step's written-out
    log-density) give :class:`SquashedDistribution`'s ``log_prob`` and its gradients, also where
    ``tanh`` saturates (|u| up to 12) and for actions on the box's bounds."""
    gen = torch.Generator().manual_seed(0)
    mean = (6 * torch.randn(64, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    log_std = (0.5 * torch.randn(64, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    noise = torch.randn(5, 64, 3, generator=gen, dtype=torch.float64)
    dist = SquashedDistribution(
        Independent(Normal(mean, log_std.exp()), 1), torch.tensor(-1.0), torch.tensor(1.0)
    )
    actions, log_q = squashed_sample(mean, log_std, noise)
    u = mean + log_std.exp() * noise
    expected = Independent(Normal(mean, log_std.exp()), 1).log_prob(u) - tanh_log_det(u).sum(-1)
    torch.testing.assert_close(actions, torch.tanh(u))
    torch.testing.assert_close(log_q, expected, rtol=1e-10, atol=1e-9)
    grads = torch.autograd.grad(log_q.sum(), (mean, log_std))
    for g, e in zip(grads, torch.autograd.grad(expected.sum(), (mean, log_std)), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-8)
    # inputs that broadcast: one noise draw and one scale for all 3 coordinates
    one_scale, one_noise = log_std[:, :1], noise[..., :1]
    _, log_q = squashed_sample(mean, one_scale, one_noise)
    u = mean + one_scale.exp() * one_noise
    base = Independent(Normal(mean, one_scale.exp().expand_as(mean)), 1)
    torch.testing.assert_close(log_q, base.log_prob(u) - tanh_log_det(u).sum(-1))
    inside = torch.tanh(torch.randn(5, 64, 3, generator=gen, dtype=torch.float64))
    inside[0, :4] = torch.tensor([-1.0, 1.0, 1.0])  # on the bounds: clamped inside by one ulp
    torch.testing.assert_close(
        squashed_log_prob(mean, log_std, inside), dist.log_prob(inside), rtol=1e-9, atol=1e-8
    )


def test_polyak_update():
    src, tgt = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in tgt.parameters()]
    polyak_update(src, tgt, 0.1)
    for b, s, t in zip(before, src.parameters(), tgt.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)


# ----------------------------------------------------------------- reference equivalence


def reference_sac_update(agent, batch, eps_pi, eps_next):
    """SAC's update written out from the paper (Haarnoja et al. 2018b, Algorithm 1), on copies
    of the agent's networks, with the same noise: critics (eq. 5 with the soft value eq. 3),
    actor (eq. 7), temperature (eq. 18), Polyak."""
    import copy

    actor, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    target = copy.deepcopy(agent.critic_target)
    log_alpha = agent.log_temperature.detach().clone().requires_grad_(True)
    lr = agent.config.learning_rate
    opt_a = torch.optim.Adam(actor.parameters(), lr=lr)
    opt_c = torch.optim.Adam(critic.parameters(), lr=lr)
    opt_t = torch.optim.Adam([log_alpha], lr=lr)

    def squashed(obs, eps):
        base = actor(obs).base_dist  # Independent(Normal(mu, std))
        mu, std = base.base_dist.loc, base.base_dist.scale
        u = mu + std * eps
        log_p = torch.distributions.Normal(mu, std).log_prob(u).sum(-1)
        log_p = log_p - (2 * (math.log(2) - u - torch.nn.functional.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_p

    alpha = log_alpha.detach().exp()
    with torch.no_grad():
        a_next, log_p_next = squashed(batch.next_obs, eps_next)
        q_next = target(batch.next_obs, a_next).min(0).values - alpha * log_p_next
        y = batch.rewards + agent.config.gamma * (1 - batch.terminated) * q_next
    q1, q2 = critic(batch.obs, batch.actions)
    critic_loss = 0.5 * (torch.nn.functional.mse_loss(q1, y) + torch.nn.functional.mse_loss(q2, y))
    opt_c.zero_grad()
    critic_loss.backward()
    opt_c.step()
    a_pi, log_p = squashed(batch.obs, eps_pi)
    actor_loss = (alpha * log_p - critic(batch.obs, a_pi).min(0).values).mean()
    opt_a.zero_grad()
    actor_loss.backward()
    opt_a.step()
    alpha_loss = -(log_alpha * (log_p + agent.target).detach()).mean()
    opt_t.zero_grad()
    alpha_loss.backward()
    opt_t.step()
    with torch.no_grad():
        for p, tp in zip(critic.parameters(), target.parameters(), strict=True):
            tp.mul_(1 - agent.config.tau).add_(agent.config.tau * p)
    return actor, critic, target, log_alpha


def test_plain_configuration_is_exactly_sac():
    agent = SAC("Pendulum-v1", seed=3, config=SACConfig.plain(**SMALL))
    assert isinstance(agent.policy.sampler, ProposalSampler)
    batch = random_batch(agent, seed=1)
    state = agent.generator.get_state()
    g = torch.Generator().set_state(state)
    eps_next = torch.randn(32, agent.act_dim, generator=g)
    eps_pi = torch.randn(32, agent.act_dim, generator=g)
    actor, critic, target, log_alpha = reference_sac_update(agent, batch, eps_pi, eps_next)
    agent.update(batch)
    torch.testing.assert_close(agent.log_temperature.detach(), log_alpha.detach())
    for mine, ref in [(agent.actor, actor), (agent.critic, critic), (agent.critic_target, target)]:
        for p, q in zip(mine.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p, q)


# ----------------------------------------------------------------- runs


def test_same_seed_same_run_and_save_load_round_trip(tmp_path):
    def run():
        agent = SAC("Pendulum-v1", seed=7, log_interval=100, **SMALL)
        returns = []
        agent.learn(
            400,
            progress_bar=False,
            callback=lambda a, info: returns.extend(info["episode_returns"].tolist()),
        )
        return agent, returns

    a, ra = run()
    b, rb = run()
    assert ra == rb and len(ra) == 2  # two 200-step episodes
    for p, q in zip(a.critic.parameters(), b.critic.parameters(), strict=True):
        assert torch.equal(p, q)
    path = a.save(tmp_path / "sac.pt")
    loaded = SAC.load(path)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        a.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    assert loaded.num_timesteps == a.num_timesteps
    torch.testing.assert_close(loaded.temperature, a.temperature)


def test_truncated_gaussian_anchor_trains_acts_in_the_box_and_round_trips(tmp_path):
    """SAC regularised toward a :class:`TruncatedGaussianAnchor` (a density with no squash):
    trains, its stochastic actions stay in the box, and a checkpoint rebuilds the anchor."""
    from ebrl.policies import TruncatedGaussianAnchor

    env = gym.make("Pendulum-v1")
    torch.manual_seed(0)
    anchor = TruncatedGaussianAnchor(3, env.action_space, hidden_sizes=(8,))
    agent = SAC("Pendulum-v1", seed=0, anchor=anchor, target_kl=0.5, **SMALL)
    agent.learn(120, progress_bar=False)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(64, 3)).astype(np.float32)
    actions = agent.predict(obs, deterministic=False)[0]
    assert actions.shape == (64, 1) and (np.abs(actions) <= 2).all()
    assert len(np.unique(actions)) > 32  # stochastic, not stuck on a bound
    loaded = SAC.load(agent.save(tmp_path / "a.pt"))
    assert isinstance(loaded.user_anchor, TruncatedGaussianAnchor)
    np.testing.assert_array_equal(
        agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )


@pytest.mark.parametrize("saturate", [-30.0, 30.0])
def test_truncated_anchor_on_a_box_whose_unit_map_rounds_outside(saturate):
    """On ``[0.2, 0.7]`` the unit box's +-1 maps a rounding step outside the env box; a
    saturated actor's actions (exactly +-1) must still have a finite anchor density, so the
    losses and their gradients stay finite (they were inf / NaN before the bound tolerance)."""
    from ebrl.agents.sac import SACNetworks, _BoxAnchor
    from ebrl.policies import TruncatedGaussianAnchor

    space = gym.spaces.Box(np.float32(0.2), np.float32(0.7), (1,), np.float32)
    center = torch.as_tensor((space.high + space.low) / 2)
    half = torch.as_tensor((space.high - space.low) / 2)
    assert (center + half * torch.ones(1) > torch.as_tensor(space.high)).any() or (
        center - half * torch.ones(1) < torch.as_tensor(space.low)
    ).any()  # the rounding this test is about
    torch.manual_seed(0)
    anchor = _BoxAnchor(TruncatedGaussianAnchor(3, space, hidden_sizes=(8,)), center, half)
    nets = SACNetworks(3, 1, SACConfig(hidden_sizes=(8,)), anchor)
    with torch.no_grad():
        nets.actor.net[-1].bias[0] = saturate  # the actor's draws are exactly -1 or +1
    g = torch.Generator().manual_seed(0)
    batch = Transitions(
        obs=torch.randn(16, 3, generator=g),
        actions=torch.rand(16, 1, generator=g) * 2 - 1,
        rewards=torch.randn(16, generator=g),
        next_obs=torch.randn(16, 3, generator=g),
        terminated=torch.zeros(16),
    )
    t = torch.tensor(0.5)
    loss, _ = critic_loss(nets, batch, t, gamma=0.99, noise=torch.zeros(16, 1))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in nets.critic.parameters())
    loss, terms = actor_loss(nets, batch, t, noise=torch.zeros(16, 1))
    assert torch.isfinite(loss) and torch.isfinite(terms["kl_to_anchor"])


def test_learns_a_contextual_bandit_past_learning_starts():
    agent = SAC(
        TargetBandit(),
        seed=0,
        learning_starts=200,
        batch_size=64,
        hidden_sizes=(64, 64),
        learning_rate=3e-3,
    )
    agent.learn(1200, progress_bar=False)
    assert agent.num_timesteps == 1200 and len(agent.buffer) == 1200
    rng = np.random.default_rng(1)
    obs = rng.uniform(-1, 1, size=(256, 1)).astype(np.float32)
    actions = agent.predict(obs, deterministic=True)[0]
    reward = -4 * ((actions[:, 0] - obs[:, 0] / 2) ** 2)
    assert reward.mean() > -0.05, reward.mean()  # uniform random: about -1.4


def test_energy_policy_with_mala_and_importance_target_runs_and_logs(tmp_path):
    agent = SAC(
        "Pendulum-v1",
        seed=0,
        n_particles=8,
        mala_steps=2,
        value_target="importance",
        target_particles=4,
        tensorboard_log=tmp_path,
        log_interval=50,
        num_envs=2,
        **SMALL,
    )
    agent.learn(120, progress_bar=False)
    assert agent.num_timesteps == 120
    # acting runs the configured sampler: 8 particles, then 2 MALA steps
    _, stats = agent.act(torch.zeros(3, 3), deterministic=False)
    assert stats["ess"].shape == (3,) and (stats["ess"] <= 8 + 1e-4).all()
    assert "acceptance_rate" in stats
    assert any(tmp_path.iterdir())  # TensorBoard events written


# ----------------------------------------------------------------- bad input


def test_bad_input():
    with pytest.raises(ValueError, match="unknown or unavailable env id 'NoSuchEnv-v9'"):
        SAC("NoSuchEnv-v9")
    with pytest.raises(ValueError, match=r"SAC: supports 1-D bounded Box action spaces.*Discrete"):
        SAC("CartPole-v1")

    class DictActions(TargetBandit):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (1,))})

    with pytest.raises(ValueError, match="SAC: supports 1-D bounded Box action spaces"):
        SAC(DictActions())

    class Unbounded(TargetBandit):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    with pytest.raises(ValueError, match="must be bounded"):
        SAC(Unbounded())
    agent = SAC("Pendulum-v1", **SMALL)
    with pytest.raises(ValueError, match="total_timesteps must be an int >= 1"):
        agent.learn(0)
    with pytest.raises(ValueError, match="temperature must be 'auto' or a float > 0"):
        SAC("Pendulum-v1", temperature=-1.0)
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        SAC("Pendulum-v1", learning_rat=1e-3)
    with pytest.raises(ValueError, match="SACConfig: n_particles"):
        SAC("Pendulum-v1", n_particles=0)
    with pytest.raises(ValueError, match="SACConfig: utility must be 'min' or 'mean'"):
        SAC("Pendulum-v1", utility="max")
    with pytest.raises(ValueError, match=r"SAC\.predict: observation must have shape"):
        agent.predict(np.zeros(5, dtype=np.float32))


def test_checkpoint_from_another_env_is_rejected(tmp_path):
    path = SAC("Pendulum-v1", **SMALL).save(tmp_path / "pendulum.pt")
    with pytest.raises(ValueError, match="do not match the checkpoint"):
        SAC.load(path, env="MountainCarContinuous-v0")
    with pytest.raises(ValueError, match="no checkpoint"):
        SAC.load(tmp_path / "missing.pt")


# ----------------------------------------------------------------- MultiGoal


def test_multigoal_dynamics_reward_and_termination():
    env = gym.make("ebrl/MultiGoal-v0")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, reward, terminated, _, info = env.step(np.array([1.0, 0.0], np.float32))
    np.testing.assert_allclose(obs, [1.0, 0.0])
    assert reward == pytest.approx(-(30 * 1.0 + 16.0))  # action cost + squared distance to (5,0)
    for _ in range(3):
        obs, reward, terminated, _, info = env.step(np.array([1.0, 0.0], np.float32))
    assert not terminated
    obs, reward, terminated, _truncated, info = env.step(np.array([0.5, 0.0], np.float32))
    assert terminated and info["goal"] == 0
    assert reward == pytest.approx(-(30 * 0.25 + 0.25) + 10)
    assert env.spec.max_episode_steps == 30
    assert set(map(tuple, GOALS)) == {(5, 0), (-5, 0), (0, 5), (0, -5)}
    with pytest.raises(ValueError, match="MultiGoalEnv: goal_radius"):
        MultiGoalEnv(goal_radius=0)


def test_construction_leaves_the_global_rng_alone():
    """Seeded parameter init happens in a forked RNG: the caller's global state is untouched,
    and two agents with one seed still start from the same parameters."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = SAC("Pendulum-v1", seed=3, **SMALL)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(5)  # move the global RNG: the next agent's init must not depend on it
    b = SAC("Pendulum-v1", seed=3, **SMALL)
    for p, q in zip(a.critic.parameters(), b.critic.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(a.actor.parameters(), b.actor.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("utility", ["min", "mean"])
def test_policy_utility_is_the_configured_reduction_of_the_critics(utility):
    agent = SAC("Pendulum-v1", seed=0, utility=utility, n_critics=3, **SMALL)
    batch = random_batch(agent)
    actions = torch.rand(4, 32, agent.act_dim, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        q = agent.critic(batch.obs, actions)  # [3, 4, 32]
        expected = q.mean(0) if utility == "mean" else q.min(0).values
        torch.testing.assert_close(agent.policy.utility(batch.obs, actions), expected)


# ----------------------------------------------------------------- the acting contract

SAMPLERS = {
    "importance": lambda: ImportanceSampler(8, bounds=(-1.0, 1.0)),
    "mala": lambda: MALA(0.05, 3, bounds=(-1.0, 1.0)),
    "langevin": lambda: Langevin(0.01, 3, bounds=(-1.0, 1.0)),
    "chain": lambda: Chain(ImportanceSampler(8, bounds=(-1.0, 1.0)), MALA(0.05, 2, bounds=(-1, 1))),
    "proposal": ProposalSampler,
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_acts_trains_and_evaluates(name):
    agent = SAC("Pendulum-v1", sampler=SAMPLERS[name](), seed=0, **SMALL)
    agent.learn(80, progress_bar=False)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(4, 3)).astype(np.float32)
    for deterministic in (False, True):
        actions = agent.predict(obs, deterministic=deterministic)[0]
        assert actions.shape == (4, 1) and np.isfinite(actions).all()
        assert (np.abs(actions) <= 2).all()
    assert len(agent.evaluate(1)["returns"]) == 1


def test_deterministic_predict_is_a_function_of_the_observation():
    agent = SAC("Pendulum-v1", seed=0, **SMALL)
    agent.learn(150, progress_bar=False)
    obs = np.array([0.3, -0.9, 0.5], np.float32)
    first = agent.predict(obs, deterministic=True)[0]
    for _ in range(20):
        np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], first)
    # and the same inside a batch, up to rounding (matmul kernels for 1 and 2 rows may sum in
    # another order)
    batch = np.stack([obs, -obs])
    np.testing.assert_allclose(agent.predict(batch, deterministic=True)[0][0], first, atol=1e-6)
    # the mode search never lowers the policy density below the actor's mode it starts from
    o = torch.as_tensor(batch)
    with torch.no_grad():
        start = agent.actor(o).median
        mode = agent.policy.mode(o, init=start)
        energy = agent.policy.energy(o)
        assert (-energy(mode.unsqueeze(0)) >= -energy(start.unsqueeze(0))).all()


@pytest.mark.parametrize("make", [SACConfig.plain, lambda **kw: SACConfig(mode_steps=0, **kw)])
def test_deterministic_action_without_mode_steps_is_the_actor_mode(make):
    """Plain SAC, and the energy policy with ``mode_steps=0`` (the MuJoCo presets' setting):
    the deterministic action is the actor's mode, not a search from it."""
    agent = SAC("Pendulum-v1", seed=0, device="cpu", config=make(**SMALL))
    agent.learn(150, progress_bar=False)
    obs = torch.randn(5, 3)
    with torch.no_grad():
        expected = agent.actor(obs).median * 2.0  # Pendulum's box is [-2, 2]
    actions = agent.predict(obs.numpy(), deterministic=True)[0]
    np.testing.assert_allclose(actions, expected.numpy(), rtol=1e-6, atol=1e-6)
    agent.policy.mode_steps = 10  # a search moves it (the untrained critic is not flat)
    assert np.abs(agent.predict(obs.numpy(), deterministic=True)[0] - actions).max() > 1e-3


def test_a_composed_cost_reaches_deterministic_actions_without_mode_steps():
    """Composing a cost onto a policy with ``mode_steps=0`` gives the composed policy a mode
    search (10 steps): its deterministic actions follow the cost instead of ignoring it."""
    agent = SAC("Pendulum-v1", seed=0, device="cpu", config=SACConfig(mode_steps=0, **SMALL))
    obs = torch.randn(5, 3).numpy()
    actor_mode = agent.predict(obs, deterministic=True)[0] / 2.0  # Pendulum's box is [-2, 2]
    agent.policy = agent.policy.compose(lambda o, a: 100.0 * ((a - 0.9) ** 2).sum(-1))
    assert agent.policy.mode_steps == 10
    composed = agent.predict(obs, deterministic=True)[0] / 2.0
    assert (np.abs(composed - 0.9) < np.abs(actor_mode - 0.9) - 0.1).all()


def test_the_policy_reads_the_agents_temperature():
    agent = SAC("Pendulum-v1", seed=0, **SMALL)
    agent.learn(120, progress_bar=False)
    assert float(agent.temperature) != 1.0  # it moved
    torch.testing.assert_close(agent.policy.temperature, agent.temperature)


def test_non_finite_numbers_are_caught_on_every_acting_path():
    agent = SAC("Pendulum-v1", seed=0, **SMALL)
    for deterministic in (False, True):
        with pytest.raises(ValueError, match="non-finite observation"):
            agent.predict(np.full(3, np.nan, np.float32), deterministic=deterministic)
    with torch.no_grad():
        agent.critic.layers[-1].bias.fill_(float("nan"))  # a NaN utility everywhere
    obs = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        agent.predict(obs, deterministic=True)
    with pytest.raises(ValueError, match="NaN"):
        agent.predict(obs, deterministic=False)

    class NaNReward(TargetBandit):
        def step(self, action):
            obs, _, terminated, truncated, info = super().step(action)
            return obs, float("nan"), terminated, truncated, info

    with pytest.raises(ValueError, match="non-finite reward"):
        SAC(NaNReward(), **SMALL).learn(5, progress_bar=False)
