"""The agents on a CUDA device, eager and compiled (``config.compile``: CUDA graphs there).

Skipped where CUDA is absent (as in CI); ``scripts/bench_gpu.sh`` runs them first on a GPU.
They check what only a device can break: every tensor on the device, generators on the device,
the fused acting step equal to the general sampler there, and compiled training (CUDA graphs
replaying static buffers) acting as the eager functions do.
"""

from __future__ import annotations

import pytest
import torch

from ebrl.agents import SAC, SACConfig, SoftQ, SoftQConfig, Transitions
from ebrl.agents.sac import actor_sample, importance_step
from ebrl.agents.softq import q_loss, q_loss_with_gradients
from tests.test_compile import act_twice

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("plain", [False, True], ids=["energy", "plain"])
def test_sac_on_cuda_eager_and_compiled(plain):
    make = SACConfig.plain if plain else SACConfig
    agents = {
        flag: SAC(
            "Pendulum-v1",
            seed=0,
            device="cuda",
            num_envs=2,
            config=make(learning_starts=100, batch_size=64, compile=flag),
        )
        for flag in (False, True)
    }
    for agent in agents.values():
        agent.learn(300, progress_bar=False)
        assert all(p.device.type == "cuda" for p in agent.critic.parameters())
        assert agent.generator.device.type == "cuda"
        obs = agent.obs_tensor(agent._last_obs)
        actions, stats = agent.act(obs, deterministic=False)
        assert actions.device.type == "cuda" and actions.shape == (2, 1)
        assert all(v.device.type == "cuda" for v in stats.values())
        assert torch.isfinite(torch.as_tensor(agent.evaluate(2)["mean_return"]))
    # the compiled acting step (a CUDA graph) against the eager function on the same inputs
    compiled = agents[True]
    obs = compiled.obs_tensor(compiled._last_obs)
    state = compiled.generator.get_state()
    with torch.no_grad():
        want, _ = compiled.act(obs, deterministic=False)
        compiled.generator.set_state(state)
        compiled._importance_step, compiled._actor_sample = importance_step, actor_sample
        got, _ = compiled.act(obs, deterministic=False)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_fused_acting_equals_the_general_sampler_on_cuda():
    # eager (SAC's automatic compile would take CUDA graphs here: the first test covers those)
    config = SACConfig(learning_starts=50, compile=False)
    agent = SAC("Pendulum-v1", seed=1, device="cuda", num_envs=4, config=config)
    agent.learn(120, progress_bar=False)
    with torch.no_grad():
        (fused, stats), (general, general_stats) = act_twice(
            agent, agent.obs_tensor(agent._last_obs)
        )
    assert torch.equal(fused, general)
    torch.testing.assert_close(stats["ess"], general_stats["ess"], rtol=1e-5, atol=1e-5)


def test_softq_on_cuda_eager_and_compiled():
    config = {"learning_starts": 64, "batch_size": 32, "train_freq": 4, "gradient_steps": 2}
    agents = {
        flag: SoftQ(
            "CartPole-v1", seed=0, device="cuda", config=SoftQConfig(**config, compile=flag)
        )
        for flag in (False, True)
    }
    for agent in agents.values():
        agent.learn(300, progress_bar=False)
        actions, _ = agent.act(agent.obs_tensor(agent._last_obs), deterministic=False)
        assert actions.device.type == "cuda"
        assert all(torch.isfinite(p).all() for p in agent.nets.q.parameters())


def test_softq_gradients_by_hand_equal_autograds_on_cuda():
    agent = SoftQ("CartPole-v1", seed=0, device="cuda", config=SoftQConfig(compile=False))
    assert agent._gradients_by_hand
    g = torch.Generator(device="cuda").manual_seed(0)
    batch = Transitions(
        obs=torch.randn(64, 4, generator=g, device="cuda"),
        actions=torch.randint(0, 2, (64,), generator=g, device="cuda"),
        rewards=3 * torch.randn(64, generator=g, device="cuda"),
        next_obs=torch.randn(64, 4, generator=g, device="cuda"),
        terminated=(torch.rand(64, generator=g, device="cuda") < 0.2).float(),
    )
    options = {"gamma": 0.99, "loss": "huber", "double_q": True}
    value, _ = q_loss(agent.nets, batch, agent.temperature, **options)
    value.backward()
    expected = [p.grad.clone() for p in agent.nets.q.parameters()]
    q_loss_with_gradients(agent.nets, batch, agent.temperature, **options)
    for p, e in zip(agent.nets.q.parameters(), expected, strict=True):
        assert p.grad.device.type == "cuda"
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cls", [SAC, SoftQ])
def test_save_load_learn_on_cuda_continues_the_generator(cls, tmp_path):
    """The CUDA generator's state comes back on load (it did not before 2026-11-30: a resumed
    run drew a fresh stream), so a resumed eager run on the GPU is the uninterrupted one; bit for
    bit where CUDA's kernels repeat themselves, which this checks on the machine it runs on."""
    env = "Pendulum-v1" if cls is SAC else "CartPole-v1"
    small = {"learning_starts": 100, "batch_size": 32, "hidden_sizes": (32, 32), "compile": False}
    straight = cls(env, seed=3, device="cuda", **small).learn(500, progress_bar=False)
    first = cls(env, seed=3, device="cuda", **small).learn(250, progress_bar=False)
    state = first.generator.get_state()
    first.save(tmp_path / "half.pt")
    resumed = cls.load(tmp_path / "half.pt", device="cuda")
    assert torch.equal(resumed.generator.get_state(), state)
    resumed.learn(250, progress_bar=False, reset_num_timesteps=False)
    for a, b in zip(resumed.modules().values(), straight.modules().values(), strict=True):
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y)


def test_a_buffer_larger_than_the_gpu_is_refused():
    from ebrl.agents.buffer import ReplayBuffer

    with pytest.raises(ValueError, match=r"buffer_size .* cuda"):
        ReplayBuffer(10**10, 3, (1,), device="cuda")


def test_cli_anchored_training_reports_its_anchor_on_cuda(tmp_path, capsys):
    """The anchor report (the anchor's own episodes, the agent's KL to it) on a GPU agent: it
    gave the anchor CPU observations and the KL a CPU generator before 2026-11-30."""
    from ebrl.data.demos import pendulum_demos
    from tests.test_cli import TINY, run

    demos = pendulum_demos(2, noise_std=0.2, seed=0).save(tmp_path / "demos.npz")
    argv = ["train", "--steps", "300", "--eval-episodes", "2", "--no-progress", "--device"]
    argv += ["cuda", "--compile", "false", "--anchor", str(demos), "--logdir", str(tmp_path)]
    report = run(capsys, *argv, *TINY)["anchor"]
    assert report["final_kl_to_anchor"] >= 0
    assert -3000 < report["anchor_mean_return"] <= 0
