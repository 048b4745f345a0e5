"""The agents' hot paths.

- The fused acting steps give exactly the general sampler's actions and stats (the same generator
  draws in the same order), for every proposal mix, action dimension and the plain-SAC sampler.
- ``config.compile`` captures the acting steps (one graph each, no graph break) and the losses,
  trains to the same parameters as eager code, and does not recompile when the states, the
  batches or the temperature change: the graph counts are stated here, so a change that adds a
  recompilation or a graph break fails.

Compiled tests use the ``aot_eager`` backend (the same graphs, guards and autograd as the
default ``inductor``, without generating code), except one that runs inductor itself.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

import ebrl.agents.core as core
from ebrl.agents import SAC, SACConfig, SoftQ, SoftQConfig
from ebrl.agents.sac import critic_loss, importance_step
from ebrl.agents.softq import q_loss
from ebrl.policies import AnchoredPolicy, CategoricalAnchor
from ebrl.samplers import ImportanceSampler


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(core, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


def general_policy(agent: SAC) -> AnchoredPolicy:
    """An equal policy that is not the agent's own object: the agent acts through the general
    sampler path with it."""
    own = agent.policy
    return AnchoredPolicy(own.anchor, own.utility, agent.temperature, own.sampler)


def fused_calls(agent: SAC) -> list[str]:
    """Records which fused step each later ``agent.act`` call runs (a spy on the agent's)."""
    calls: list[str] = []
    for name in ("_importance_step", "_actor_sample"):
        step = getattr(agent, name)
        setattr(agent, name, lambda *a, s=step, n=name: calls.append(n) or s(*a))
    return calls


def act_twice(agent: SAC, obs: torch.Tensor):
    """The agent's stochastic actions on ``obs`` from its own policy (which must take a fused
    step) and from the general path, from the same generator state."""
    calls = fused_calls(agent)
    state = agent.generator.get_state()
    fused = agent.act(obs, deterministic=False)
    assert len(calls) == 1, "the agent's own policy did not act through a fused step"
    agent.generator.set_state(state)
    own, agent.policy = agent.policy, general_policy(agent)
    general = agent.act(obs, deterministic=False)
    assert len(calls) == 1, "an equal policy that is not the agent's took the fused step"
    agent.policy = own
    return fused, general


@pytest.mark.parametrize(
    ("env_id", "config"),
    [
        ("Pendulum-v1", SACConfig(learning_starts=100)),  # the default: 16 particles, mix 0.1
        ("Pendulum-v1", SACConfig(learning_starts=100, n_particles=5, anchor_mix=0.0)),
        ("Pendulum-v1", SACConfig(learning_starts=100, n_particles=5, anchor_mix=1.0)),
        ("ebrl/MultiGoal-v0", SACConfig(learning_starts=100, anchor_mix=0.3)),  # 2-D actions
        ("Pendulum-v1", SACConfig.plain(learning_starts=100)),
    ],
    ids=["default", "actor-only", "anchor-only", "2d", "plain"],
)
def test_fused_acting_equals_the_general_sampler(env_id, config):
    agent = SAC(env_id, seed=3, config=config, device="cpu", num_envs=4)
    agent.learn(200, progress_bar=False)  # trained a little: the critic is not flat
    obs = agent.obs_tensor(agent._last_obs)
    assert agent.policy.sampler is not None
    with torch.no_grad():
        (fused, fused_stats), (general, general_stats) = act_twice(agent, obs)
    assert fused.shape == (4, agent.act_dim)
    assert torch.equal(fused, general)
    assert fused_stats.keys() == general_stats.keys()
    for name, value in fused_stats.items():
        torch.testing.assert_close(value, general_stats[name], rtol=1e-5, atol=1e-5)
    if not config.is_plain:  # importance weights that are not all equal
        assert (fused_stats["ess"] < config.n_particles - 1e-3).any()


@pytest.mark.parametrize("plain", [False, True])
def test_fused_acting_builds_no_graph_where_grad_is_on(plain):
    """``act`` outside ``no_grad`` (a user's call): the same actions and stats as inside it,
    none of them with a graph, and the grad mode is left on."""
    config = SACConfig.plain(learning_starts=0) if plain else SACConfig(learning_starts=0)
    agent = SAC("Pendulum-v1", seed=0, config=config)
    obs = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    state = agent.generator.get_state()
    with torch.no_grad():
        want, want_stats = agent.act(obs, deterministic=False)
    agent.generator.set_state(state)
    assert torch.is_grad_enabled()
    got, stats = agent.act(obs, deterministic=False)
    assert torch.is_grad_enabled()
    assert torch.equal(got, want) and not got.requires_grad
    for name, value in stats.items():
        assert torch.equal(value, want_stats[name]) and not value.requires_grad


def test_fused_acting_only_for_the_agents_own_unchanged_policy():
    """A changed temperature, utility, cost or sampler acts through the general path (and the
    change is honoured); the same sampler built again, or bounds=None, stays fused."""
    agent = SAC("ebrl/MultiGoal-v0", seed=0, config=SACConfig(learning_starts=0), device="cpu")
    obs = torch.zeros(1, 2)
    calls = fused_calls(agent)
    with torch.no_grad():
        agent.act(obs, False)
        assert calls == ["_importance_step"]
        agent.policy.sampler = ImportanceSampler(16, bounds=(-1, 1))
        agent.act(obs, False)
        agent.policy.sampler = ImportanceSampler(16)
        agent.act(obs, False)
        assert len(calls) == 3
        per_dim = (-torch.ones(2), torch.ones(2))  # per-dimension bounds: general path
        agent.policy.sampler = ImportanceSampler(16, bounds=per_dim)
        agent.act(obs, False)
        agent.policy.sampler = ImportanceSampler(16, bounds=(-1.0, 1.0))
        agent.policy.temperature = 1e-3
        agent.act(obs, False)
        agent.policy = agent.policy  # the setter gives it the agent's temperature back
        agent.act(obs, False)
        assert len(calls) == 4
        agent.policy.utility = lambda o, a: -1e4 * (a**2).sum(-1)  # peaked at 0
        actions = torch.cat([agent.act(torch.zeros(4, 2), False)[0] for _ in range(10)])
        assert len(calls) == 4
        # the best of 16 particles under the new utility (the critic's policy at the preset's
        # temperature of 20 is nearly uniform: mean |a| about 0.5)
        assert actions.abs().mean() < 0.3
        agent.policy = agent.policy.compose(lambda o, a: a[..., 0])
        agent.act(obs, False)
        assert len(calls) == 4


def test_compile_flag_is_validated():
    assert SACConfig(compile=np.bool_(True)).compile is True
    for bad in (1, "true", "auto"):
        with pytest.raises(TypeError, match="compile must be a bool or None"):
            SACConfig(compile=bad)
    assert SoftQConfig.from_dict({"compile": True}).compile is True
    assert SACConfig().compile is None and SoftQConfig.from_dict({"compile": None}).compile is None


def test_automatic_compile_follows_the_device():
    """``compile=None`` compiles SAC on CUDA only (where it was measured to pay) and SoftQ
    nowhere; on a CPU both run the eager functions themselves."""
    assert SAC.compile_pays_on == {"cuda"} and SoftQ.compile_pays_on == frozenset()
    sac = SAC("Pendulum-v1", seed=0, device="cpu")
    softq = SoftQ("CartPole-v1", seed=0, device="cpu")
    assert not sac.compiled and not softq.compiled
    assert sac._critic_loss is critic_loss and softq._q_loss is q_loss
    assert SAC("Pendulum-v1", seed=0, device="cpu", config=SACConfig(compile=True)).compiled


def _broken_backend(gm, example_inputs):
    raise RuntimeError("no working compiler here")


def test_automatic_compile_falls_back_to_eager_where_compiling_fails(monkeypatch):
    """Where compiling is automatic and fails (here a backend that raises, as inductor does
    without a C compiler or Triton), the agent warns once per hot path and trains exactly as
    eager; ``compile=True`` raises instead."""
    monkeypatch.setattr(core, "COMPILE_BACKEND", _broken_backend)
    monkeypatch.setattr(SAC, "compile_pays_on", frozenset({"cpu"}))
    torch._dynamo.reset()
    config = {"learning_starts": 32, "batch_size": 16}
    auto = SAC("Pendulum-v1", seed=3, device="cpu", config=SACConfig(**config))
    eager = SAC("Pendulum-v1", seed=3, device="cpu", config=SACConfig(**config, compile=False))
    assert auto.compiled
    with pytest.warns(RuntimeWarning, match="no working compiler here") as caught:
        auto.learn(64, progress_bar=False)
    eager.learn(64, progress_bar=False)
    assert len([w for w in caught if "torch.compile failed" in str(w.message)]) == 3
    for name, module in eager.modules().items():
        for p, q in zip(module.parameters(), auto.modules()[name].parameters(), strict=True):
            assert torch.equal(p, q), name
    explicit = SAC("Pendulum-v1", seed=3, device="cpu", config=SACConfig(**config, compile=True))
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="no working compiler"):
        explicit.learn(64, progress_bar=False)
    torch._dynamo.reset()


def test_automatic_compile_runs_eagerly_where_torch_compile_refuses(monkeypatch):
    """``torch.compile`` itself raising (as it does on a Python it does not support): the
    automatic choice warns and keeps the eager functions; ``compile=True`` raises."""

    def refuse(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refuse)
    monkeypatch.setattr(SoftQ, "compile_pays_on", frozenset({"cpu"}))
    with pytest.warns(RuntimeWarning, match="RuntimeError: torch.compile is not supported"):
        agent = SoftQ("CartPole-v1", seed=0, device="cpu")
    assert agent.compiled and agent._q_loss is q_loss
    with pytest.raises(RuntimeError, match="not supported on this Python"):
        SoftQ("CartPole-v1", seed=0, device="cpu", config=SoftQConfig(compile=True))


@pytest.mark.parametrize("flag", [None, True], ids=["auto", "on"])
def test_a_bad_input_to_a_compiled_agent_raises_its_own_error_and_stays_compiled(
    aot_eager, monkeypatch, flag
):
    """A wrong observation shape fails inside the compiled acting step (a TorchDynamo error):
    the call is rerun eagerly, which raises the input's own ValueError, and the compiled
    function stays in use (a user's mistake is not a compiler failure)."""
    monkeypatch.setattr(SAC, "compile_pays_on", frozenset({"cpu"}))
    config = SACConfig(learning_starts=0, compile=flag)
    agent = SAC("Pendulum-v1", seed=0, device="cpu", config=config)
    with torch.no_grad():
        agent.act(torch.zeros(2, 3), deterministic=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "torch.compile failed" warning
            with pytest.raises(ValueError, match=r"obs must have shape \[B, 3\]"):
                agent.act(torch.zeros(2, 5), deterministic=False)
    assert agent._importance_step.fn is not importance_step


@pytest.mark.parametrize("flag", [None, True], ids=["auto", "on"])
def test_more_batch_sizes_than_the_recompile_limit_run_eagerly(aot_eager, monkeypatch, flag):
    """Past TorchDynamo's recompile limit (lowered to 2 here) a fullgraph acting step raises
    inside Dynamo; the agent acts on eagerly for those calls, with one warning, and the same
    draws as the eager function."""
    monkeypatch.setattr(SAC, "compile_pays_on", frozenset({"cpu"}))
    agents = [
        SAC("Pendulum-v1", seed=0, device="cpu", config=SACConfig(learning_starts=0, compile=c))
        for c in (flag, False)
    ]
    limit = torch._dynamo.config.patch(recompile_limit=2)
    with limit, torch.no_grad(), pytest.warns(RuntimeWarning, match="recompile limit") as caught:
        for batch in range(1, 6):
            obs = torch.randn(batch, 3, generator=torch.Generator().manual_seed(batch))
            got, want = (agent.act(obs, deterministic=False)[0] for agent in agents)
            torch.testing.assert_close(got, want)
    assert len([w for w in caught if "recompile limit" in str(w.message)]) == 1
    # a shape past the limit goes straight to the eager function from then on (no new compile)
    guarded = agents[0]._importance_step
    guarded.fn = lambda *a, **k: pytest.fail("retried the compiled function past the limit")
    with torch.no_grad():
        agents[0].act(torch.randn(5, 3), deterministic=False)


def test_fused_acting_refuses_nan_weights():
    agent = SAC("Pendulum-v1", seed=0, config=SACConfig(learning_starts=0), device="cpu")
    with torch.no_grad():
        agent.critic.layers[-1].bias.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"SAC\.act: the acting sampler's weights are NaN"):
        agent.act(torch.zeros(1, 3), deterministic=False)


@pytest.mark.parametrize("plain", [False, True], ids=["energy", "plain"])
def test_compiled_sac_trains_like_eager_and_never_recompiles(aot_eager, plain):
    make = SACConfig.plain if plain else SACConfig
    agents = {
        flag: SAC(
            "Pendulum-v1", seed=1, config=make(learning_starts=64, batch_size=32, compile=flag)
        )
        for flag in (False, True)
    }
    for agent in agents.values():
        agent.learn(160, progress_bar=False)
    eager, compiled = agents[False], agents[True]
    for name, module in eager.modules().items():
        for p, q in zip(module.parameters(), compiled.modules()[name].parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    # the acting step (one graph); the critic loss; the actor loss (no graph break in either)
    assert graphs() == 3
    assert not counters["graph_break"]
    # new states, batches and temperatures: no new graph
    for seed in range(5):
        obs = torch.randn(1, 3, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            compiled.act(obs, deterministic=False)
    compiled.learn(40, progress_bar=False, reset_num_timesteps=False)
    assert graphs() == 3


def test_compiled_softq_trains_like_eager_and_never_recompiles(aot_eager):
    config = {"learning_starts": 64, "batch_size": 32, "train_freq": 4, "gradient_steps": 2}
    agents = {
        flag: SoftQ("CartPole-v1", seed=2, config=SoftQConfig(**config, compile=flag))
        for flag in (False, True)
    }
    for agent in agents.values():
        agent.learn(200, progress_bar=False)
    for p, q in zip(
        agents[False].nets.q.parameters(), agents[True].nets.q.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert graphs() == 2  # the policy's probabilities; the loss
    assert not counters["graph_break"]
    agents[True].learn(100, progress_bar=False, reset_num_timesteps=False)
    assert graphs() == 2


def test_compiled_softq_with_an_anchor_acts_in_one_graph(aot_eager):
    anchor = CategoricalAnchor(4, 2, hidden_sizes=(16,))
    config = SoftQConfig(learning_starts=32, batch_size=16, train_freq=4, compile=True)
    agent = SoftQ("CartPole-v1", anchor=anchor, seed=0, config=config)
    agent.learn(64, progress_bar=False)
    before = graphs()
    with torch.no_grad():
        for seed in range(3):
            agent.act(torch.randn(1, 4, generator=torch.Generator().manual_seed(seed)), False)
    assert graphs() == before


def test_inductor_compiled_acting_equals_eager():
    """The default backend's generated code: the same actions as the eager step (to float
    rounding: the fused kernels may reorder sums)."""
    torch._dynamo.reset()
    agent = SAC("Pendulum-v1", seed=0, config=SACConfig(learning_starts=0, compile=True))
    obs = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    state = agent.generator.get_state()
    with torch.no_grad():
        compiled, stats = agent.act(obs, deterministic=False)
        agent.generator.set_state(state)
        agent._importance_step = importance_step  # the eager function
        eager, eager_stats = agent.act(obs, deterministic=False)
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(stats["ess"], eager_stats["ess"])
    torch._dynamo.reset()
