"""SoftQ (discrete soft Q-learning with an anchor): the exact policy and soft value against their
closed forms, the limits in T, zero-probability actions, gradient isolation, learning past
learning_starts, determinism, save/load, and bad input."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical

from ebrl.agents import SACConfig, SoftQ, SoftQConfig, Transitions, load_agent
from ebrl.agents.softq import q_loss, q_loss_with_gradients
from ebrl.agents.updates import temperature_loss
from ebrl.cli import main
from ebrl.policies import CategoricalAnchor

SMALL = {"hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 50, "train_freq": 1}
SMALL_STEPS = {**SMALL, "gradient_steps": 1, "target_update_interval": 10}


class FixedAnchor(nn.Module):
    """The same categorical probabilities (zeros allowed) for every state."""

    def __init__(self, probs):
        super().__init__()
        self.register_buffer("probs", torch.as_tensor(probs, dtype=torch.float32))

    def forward(self, obs):
        return Categorical(probs=self.probs.expand(obs.shape[0], -1), validate_args=False)


class SignBandit(gym.Env):
    """One-step contextual bandit: obs c ~ U{-1, 1} x noise; reward 1 for action (c > 0), 0 for
    the other of two, -1 for a third 'bad' action. Uniform play scores 0."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.c = np.array(
            [self.np_random.choice([-1.0, 1.0]), self.np_random.uniform(-1, 1)], np.float32
        )
        return self.c.copy(), {}

    def step(self, action):
        reward = {int(self.c[0] > 0): 1.0, int(self.c[0] <= 0): 0.0, 2: -1.0}[int(action)]
        return self.c.copy(), reward, True, False, {}


def random_batch(agent, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Transitions(
        obs=torch.randn(n, agent.obs_dim, generator=g),
        actions=torch.randint(0, agent.n_actions, (n,), generator=g),
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, agent.obs_dim, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.2).float(),
    )


# ----------------------------------------------------------------- closed forms


def test_policy_is_the_exact_softmax_and_the_target_the_exact_soft_value():
    agent = SoftQ("CartPole-v1", temperature=0.7, **SMALL)
    agent.nets.q_target[-1].bias.data += torch.tensor([0.0, 1.0])  # target != online
    batch = random_batch(agent)
    t = 0.7
    with torch.no_grad():
        q = agent.nets.q(batch.obs)
        expected = torch.softmax(q / t, -1)
        torch.testing.assert_close(agent.policy.distribution(batch.obs).probs, expected)
        # the soft Bellman target: r + gamma (1 - d) T log sum_a exp(Q'(s', a) / T)
        q_next = agent.nets.q_target(batch.next_obs)
        value = t * torch.logsumexp(q_next / t, -1)
        target = batch.rewards + 0.99 * (1 - batch.terminated) * value
    _, terms = q_loss(agent.nets, batch, agent.temperature, gamma=0.99)
    torch.testing.assert_close(terms["target_mean"], target)  # per transition


def test_piKL_policy_and_soft_value_with_a_given_anchor():
    anchor = FixedAnchor([0.5, 0.5])
    agent = SoftQ("CartPole-v1", anchor=anchor, temperature=0.5, **SMALL)
    batch = random_batch(agent)
    with torch.no_grad():
        q = agent.nets.q(batch.obs)
        expected = torch.softmax(math.log(0.5) + q / 0.5, -1)
        torch.testing.assert_close(agent.policy.distribution(batch.obs).probs, expected)
        q_next = agent.nets.q_target(batch.next_obs)
        value = 0.5 * torch.log((0.5 * (q_next / 0.5).exp()).sum(-1))
        target = batch.rewards + 0.99 * (1 - batch.terminated) * value
    _, terms = q_loss(agent.nets, batch, agent.temperature, gamma=0.99)
    torch.testing.assert_close(terms["target_mean"], target)  # per transition


def test_double_q_value_weighs_target_q_by_the_online_policy():
    agent = SoftQ("CartPole-v1", temperature=0.3, **SMALL)
    agent.nets.q_target[-1].bias.data += torch.tensor([0.5, -0.5])
    batch = random_batch(agent)
    with torch.no_grad():
        log_pi = torch.log_softmax(agent.nets.q(batch.next_obs) / 0.3, -1)
        q_next = agent.nets.q_target(batch.next_obs)
        value = (log_pi.exp() * (q_next - 0.3 * log_pi)).sum(-1)
        target = batch.rewards + 0.99 * (1 - batch.terminated) * value
    _, terms = q_loss(agent.nets, batch, agent.temperature, gamma=0.99, double_q=True)
    torch.testing.assert_close(terms["target_mean"], target)  # per transition


def test_limits_in_temperature_and_zero_probability_actions():
    env = SignBandit()
    anchor = FixedAnchor([0.0, 0.6, 0.4])
    obs = torch.tensor([[1.0, 0.0], [-1.0, 0.3]])

    def agent_at(t):
        agent = SoftQ(env, anchor=anchor, temperature=t, **SMALL)
        with torch.no_grad():  # a huge utility on the action the anchor forbids
            agent.nets.q[-1].weight.zero_()
            agent.nets.q[-1].bias.copy_(torch.tensor([1e6, 1.0, 2.0]))
        return agent

    hot = agent_at(1e6).policy.distribution(obs).probs
    torch.testing.assert_close(hot, torch.tensor([[0.0, 0.6, 0.4]] * 2), atol=1e-5, rtol=0)
    cold = agent_at(1e-3)
    torch.testing.assert_close(cold.policy.distribution(obs).probs, torch.tensor([[0.0, 0, 1]] * 2))
    warm = agent_at(1.0)
    draws = warm.policy.sample(obs, 20_000, generator=torch.Generator().manual_seed(0)).samples
    assert (draws != 0).all()  # never taken, exactly
    assert (warm.predict(obs.numpy(), deterministic=True)[0] == 2).all()
    assert (warm.predict(obs.numpy())[0] != 0).all()


# ----------------------------------------------------------------- gradient isolation


@pytest.mark.parametrize("double_q", [False, True])
def test_each_loss_alone_puts_gradients_only_on_its_owner(double_q):
    anchor = CategoricalAnchor(4, 2, hidden_sizes=(8,))
    for a in [None, anchor]:
        agent = SoftQ("CartPole-v1", anchor=a, **SMALL)
        batch = random_batch(agent)
        loss, terms = q_loss(agent.nets, batch, agent.temperature, gamma=0.99, double_q=double_q)
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.nets.q.parameters())
        assert all(p.grad is None for p in agent.nets.q_target.parameters())
        assert all(p.grad is None for p in anchor.parameters())
        assert agent.log_temperature.grad is None
        agent.nets.q.zero_grad(set_to_none=True)
        reg = terms["kl_to_anchor"] if a is not None else -terms["entropy"]
        loss, _ = temperature_loss(agent.log_temperature, reg, agent.bound)
        loss.backward()
        assert agent.log_temperature.grad is not None
        assert all(p.grad is None for p in agent.nets.q.parameters())
        assert all(p.grad is None for p in anchor.parameters())


@pytest.mark.parametrize("anchor", [None, "learned", "with_zeros"])
@pytest.mark.parametrize("double_q", [False, True])
@pytest.mark.parametrize("loss", ["huber", "mse"])
@pytest.mark.parametrize("n", [32, 2])
def test_gradients_by_hand_equal_autograds(anchor, double_q, loss, n):
    """Equal up to rounding: with double-Q the hand-written path computes Q(s) and Q(s') in one
    product of 2n rows, whose rows a BLAS may round differently (it does at n = 2 here)."""
    anchor = {
        None: None,
        "learned": CategoricalAnchor(4, 2, hidden_sizes=(8,)),
        "with_zeros": FixedAnchor([0.0, 1.0]),
    }[anchor]
    agent = SoftQ("CartPole-v1", anchor=anchor, **SMALL)
    batch = random_batch(agent, n)
    batch = batch._replace(rewards=batch.rewards * 3)  # errors beyond the Huber loss's kink too
    options = {"gamma": 0.99, "loss": loss, "double_q": double_q}
    value, terms = q_loss(agent.nets, batch, agent.temperature, **options)
    value.backward()
    expected = [p.grad.clone() for p in agent.nets.q.parameters()]
    for p in agent.nets.q.parameters():  # set, not accumulated
        p.grad = torch.full_like(p, 7.0)
    by_hand, hand_terms = q_loss_with_gradients(agent.nets, batch, agent.temperature, **options)
    # float32 rounding of sums over the batch and the hidden units: a few ulps of the terms
    tight = {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(by_hand, value.detach(), **tight)
    assert terms.keys() == hand_terms.keys()
    for key, term in terms.items():
        torch.testing.assert_close(hand_terms[key], term.detach(), **tight)
    for p, e in zip(agent.nets.q.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, **tight)
    assert all(p.grad is None for p in agent.nets.q_target.parameters())
    assert not any(t.requires_grad for t in hand_terms.values())


def test_gradients_by_hand_reject_what_they_do_not_compute():
    agent = SoftQ("CartPole-v1", **SMALL)
    batch, t = random_batch(agent), agent.temperature
    with pytest.raises(ValueError, match="loss must be 'huber' or 'mse', got 'Huber'"):
        q_loss_with_gradients(agent.nets, batch, t, gamma=0.99, loss="Huber")
    with pytest.raises(ValueError, match="q_loss: loss must be"):
        q_loss(agent.nets, batch, t, gamma=0.99, loss="l1")
    empty = Transitions(*(x[:0] for x in batch))
    with pytest.raises(ValueError, match="q_loss_with_gradients: the batch is empty"):
        q_loss_with_gradients(agent.nets, empty, t, gamma=0.99)
    agent.nets.q.register_forward_hook(lambda module, args, out: out)
    with pytest.raises(ValueError, match=r"nets\.q must be a plain ReLU MLP"):
        q_loss_with_gradients(agent.nets, batch, t, gamma=0.99)
    q_loss_with_gradients(agent.nets, batch, t, gamma=0.99, check=False)  # the caller's word


def test_update_computes_gradients_by_hand_eagerly_and_trains_as_autograd_does():
    runs = []
    for by_hand in (True, False):
        agent = SoftQ("CartPole-v1", seed=3, **SMALL_STEPS)
        assert agent._gradients_by_hand  # eager, ReLU: the default
        agent._gradients_by_hand = by_hand
        for i in range(12):  # past a target update (interval 10), temperature stepping
            agent.update(random_batch(agent, seed=i))
        runs.append([*agent.nets.q.parameters(), agent.log_temperature])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_a_forward_hook_on_the_q_network_runs_in_the_update():
    """The hand-written gradient cannot run a hook: the update then goes through autograd."""
    agent = SoftQ("CartPole-v1", **SMALL_STEPS)
    batch, calls = random_batch(agent), []
    agent.nets.q.register_forward_hook(lambda module, args, out: calls.append(1))
    agent.update(batch)
    assert calls  # the hook saw the update's passes
    assert all(p.grad is not None for p in agent.nets.q.parameters())


def test_a_frozen_layer_stays_frozen():
    """autograd leaves a frozen parameter's grad None (Adam skips it); the hand-written
    gradient would set it: the update must take autograd's path."""
    agent = SoftQ("CartPole-v1", **SMALL_STEPS)
    agent.nets.q[0].requires_grad_(False)
    before = agent.nets.q[0].weight.clone()
    for i in range(3):
        agent.update(random_batch(agent, seed=i))
    assert torch.equal(agent.nets.q[0].weight, before)
    assert not torch.equal(agent.nets.q[2].weight, agent.nets.q_target[2].weight)  # others move


def test_temperature_step_is_an_adam_step_on_the_dual_loss():
    """The agent sets the dual loss's gradient by hand (it is linear in log T): the logged loss
    and the step equal, bit for bit, autograd's on temperature_loss, then torch's fused Adam."""
    agent = SoftQ("CartPole-v1", **SMALL)
    log_t = agent.log_temperature.detach().clone().requires_grad_(True)
    reference = torch.optim.Adam([log_t], lr=agent.config.learning_rate, fused=True)
    for reg in (-0.3, -0.9, -0.1, -0.2, -0.7, -0.4):  # entropies above and below the target
        reg = torch.tensor(reg)
        loss, _ = temperature_loss(log_t, reg, agent.bound)
        reference.zero_grad()
        loss.backward()
        reference.step()
        terms = agent.step_temperature(reg)
        assert torch.equal(terms["temperature_loss"], loss.detach())
        assert torch.equal(agent.log_temperature.detach(), log_t.detach())
        assert torch.equal(agent._policy_temperature, agent.log_temperature.detach().exp())


def test_target_network_updates_every_interval():
    agent = SoftQ("CartPole-v1", **{**SMALL_STEPS, "target_update_interval": 3})
    before = [p.clone() for p in agent.nets.q_target.parameters()]
    batch = random_batch(agent)
    for _ in range(2):
        agent.update(batch)
    assert all(
        torch.equal(p, b) for p, b in zip(agent.nets.q_target.parameters(), before, strict=True)
    )
    agent.update(batch)
    for p, q in zip(agent.nets.q_target.parameters(), agent.nets.q.parameters(), strict=True):
        assert torch.equal(p, q)  # tau = 1: a copy


# ----------------------------------------------------------------- learning and runs


def test_learns_a_contextual_bandit_past_learning_starts():
    agent = SoftQ(SignBandit(), seed=0, learning_rate=3e-3, **SMALL_STEPS)
    agent.learn(600, progress_bar=False)
    assert agent.num_timesteps == 600 and len(agent.buffer) == 600
    assert agent.buffer.actions.dtype == torch.int64
    obs = np.array([[1.0, 0.2], [-1.0, -0.5], [1.0, -0.9], [-1.0, 0.7]], np.float32)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], [1, 0, 1, 0])
    with torch.no_grad():  # one-step episodes: Q regresses on the rewards
        q = agent.nets.q(torch.as_tensor(obs))
    assert (q[:, 2] < q.max(-1).values - 0.5).all()


def test_same_seed_same_run_and_save_load_round_trip(tmp_path):
    def run():
        agent = SoftQ("CartPole-v1", seed=5, log_interval=100, **SMALL_STEPS)
        agent.learn(300, progress_bar=False)
        return agent

    a, b = run(), run()
    for p, q in zip(a.nets.q.parameters(), b.nets.q.parameters(), strict=True):
        assert torch.equal(p, q)
    path = a.save(tmp_path / "softq.pt")
    loaded = SoftQ.load(path)
    assert type(load_agent(path)) is SoftQ
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(obs, True)[0], loaded.predict(obs, True)[0])
    np.testing.assert_array_equal(a.predict(obs)[0], loaded.predict(obs)[0])  # same generator
    assert loaded.num_timesteps == a.num_timesteps
    assert loaded.gradient_steps_done == a.gradient_steps_done
    torch.testing.assert_close(loaded.temperature, a.temperature)


def test_anchored_agent_round_trips_with_its_categorical_anchor(tmp_path):
    anchor = CategoricalAnchor(4, 2, hidden_sizes=(8,))
    agent = SoftQ("CartPole-v1", anchor=anchor, **SMALL)
    path = agent.save(tmp_path / "a.pt")
    loaded = SoftQ.load(path)
    obs = torch.randn(8, 4)
    torch.testing.assert_close(loaded.user_anchor(obs).probs, anchor(obs).probs)
    torch.testing.assert_close(
        loaded.policy.distribution(obs).probs, agent.policy.distribution(obs).probs
    )


def test_auto_temperature_moves_toward_the_entropy_target():
    agent = SoftQ("CartPole-v1", target_entropy=0.05, **SMALL_STEPS)
    batch = random_batch(agent)
    t0 = float(agent.temperature)
    for _ in range(20):  # an untrained Q: near-uniform policy, entropy ~ log 2 > target
        agent.update(batch)
    assert float(agent.temperature) < t0


def test_cli_trains_and_evaluates_softq(tmp_path, capsys):
    import json

    out = tmp_path / "m.pt"
    argv = ["train", "--algo", "softq", "--env", "CartPole-v1", "--steps", "300", "--out", str(out)]
    argv += ["--logdir", str(tmp_path), "--no-progress", "--learning-starts", "100"]
    argv += ["--eval-episodes", "2", "--hidden-sizes", "16"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["algo"] == "softq" and result["steps"] == 300 and out.is_file()
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["algo"] == "softq" and result["episodes"] == 2


# ----------------------------------------------------------------- bad input


def test_bad_input(tmp_path, capsys):
    with pytest.raises(ValueError, match="SoftQ: supports Discrete action spaces"):
        SoftQ("Pendulum-v1")
    with pytest.raises(ValueError, match=r"Categorical over the env's 2 actions"):
        SoftQ("CartPole-v1", anchor=FixedAnchor([0.2, 0.3, 0.5]))
    with pytest.raises(TypeError, match="anchor must be a module"):
        SoftQ("CartPole-v1", anchor=3)
    for bad, message in [
        ({"loss": "l1"}, "loss must be 'huber' or 'mse'"),
        ({"tau": 0.0}, "tau must be > 0"),
        ({"target_update_interval": 0}, "target_update_interval must be an int >= 1"),
        ({"target_entropy": float("nan")}, "target_entropy must be None or a finite"),
        ({"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            SoftQ("CartPole-v1", **bad)
    with pytest.raises(TypeError, match="config must be a SoftQConfig"):
        SoftQ("CartPole-v1", config=object())
    with pytest.raises(ValueError, match="temperature must be 'auto' or a float > 0"):
        SoftQ("CartPole-v1", temperature=0.0)
    with pytest.raises(ValueError, match="seed must be an int in"):
        SoftQ("CartPole-v1", seed=-1)
    agent = SoftQ("CartPole-v1", **SMALL)
    with pytest.raises(ValueError, match=r"non-finite observation"):
        agent.predict(np.full(4, np.nan, np.float32), deterministic=True)
    with pytest.raises(ValueError, match=r"SoftQ\.predict: observation must have shape"):
        agent.predict(np.zeros(3, np.float32))
    from ebrl.agents import SAC

    path = SAC("Pendulum-v1", hidden_sizes=(8,)).save(tmp_path / "sac.pt")
    with pytest.raises(ValueError, match="holds a SAC agent"):
        SoftQ.load(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable ebrl checkpoint"):
        SoftQ.load(junk)
    for argv, message in [
        (["train", "--algo", "softq", "--env", "Pendulum-v1", "--steps", "5"], "Discrete"),
        (["train", "--algo", "softq", "--env", "CartPole-v1", "--n-particles", "4"], "not a"),
        (["train", "--algo", "softq", "--env", "CartPole-v1", "--plain-sac"], "--plain-sac"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_cli_anchor_from_discrete_demonstrations(tmp_path, capsys):
    """`--anchor demos.npz` behaviour-clones a CategoricalAnchor for softq; the checkpoint
    rebuilds it, and the anchored policy never leaves the anchor's support."""
    import json

    from ebrl.data.demos import lunar_lander_demos

    pytest.importorskip("Box2D")
    demos = lunar_lander_demos(2, boltzmann_temperature=0.05, seed=0).save(tmp_path / "ll.npz")
    out = tmp_path / "m.pt"
    argv = ["train", "--algo", "softq", "--env", "LunarLander-v3", "--steps", "200"]
    argv += ["--anchor", str(demos), "--out", str(out), "--logdir", str(tmp_path)]
    argv += ["--no-progress", "--eval-episodes", "1", "--hidden-sizes", "16"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["anchor"]["demos"] == str(demos) and result["anchor"]["heldout_nll"] > 0
    agent = SoftQ.load(out)
    assert isinstance(agent.user_anchor, CategoricalAnchor) and not agent.entropy_mode
    obs = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        kl = agent.policy.estimate(obs).kl_to_anchor
    assert torch.isfinite(kl).all() and (kl >= -1e-5).all()  # KL >= 0 up to rounding


def test_presets_apply_and_overrides_win():
    config = SoftQConfig.for_env("LunarLander-v3", batch_size=32)
    assert config.learning_rate == 6.3e-4 and config.target_update_interval == 250
    assert config.batch_size == 32  # the override wins over the preset
    assert SoftQConfig.for_env("NoPreset-v0") == SoftQConfig()
    assert SACConfig.for_env("Pendulum-v1").learning_rate == 1e-3


def test_an_assigned_policy_acts_and_reads_the_agents_temperature():
    from ebrl.policies import AnchoredPolicy

    agent = SoftQ("CartPole-v1", temperature=0.3, **SMALL)
    agent.policy = AnchoredPolicy(FixedAnchor([1.0, 0.0]), agent.nets.q, 5.0)
    torch.testing.assert_close(agent.policy.temperature, agent.temperature)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    assert (agent.predict(obs)[0] == 0).all() and (agent.predict(obs, True)[0] == 0).all()
    with pytest.raises(TypeError, match="must be an AnchoredPolicy"):
        agent.policy = "greedy"


@pytest.mark.parametrize("bias", [math.nan, math.inf])
@pytest.mark.parametrize("deterministic", [False, True])
def test_act_refuses_a_nan_policy(bias, deterministic):
    """A NaN or +inf Q-value makes the policy NaN: act raises (it did not draw an action)."""
    agent = SoftQ("CartPole-v1", **SMALL)
    with torch.no_grad():
        agent.nets.q[-1].bias[0] = bias
    with pytest.raises(ValueError, match=r"SoftQ\.act: the policy is NaN"):
        agent.act(torch.zeros(3, 4), deterministic)


def test_act_refuses_a_state_with_no_allowed_action():
    """An anchor of zero everywhere leaves no action to take: act raises, in both modes."""
    agent = SoftQ("CartPole-v1", anchor=FixedAnchor([0.0, 0.0]), **SMALL)
    for deterministic in (False, True):
        with pytest.raises(ValueError, match="no action of nonzero probability"):
            agent.act(torch.zeros(2, 4), deterministic)
    agent = SoftQ("CartPole-v1", anchor=FixedAnchor([0.0, 1.0]), **SMALL)
    actions, _ = agent.act(torch.zeros(64, 4), False)
    assert (actions == 1).all()  # the action of anchor probability 0 is never drawn
