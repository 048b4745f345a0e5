"""Agents keep the env they were given: evaluation, save/load and `ebrl evaluate` use an env
built the same way (spec with kwargs and wrappers, the user's factory, or eval_env), and say so
clearly where that is impossible; the Python API uses the CLI's per-env presets."""

import gymnasium as gym
import numpy as np
import pytest

from ebrl import SAC, SACConfig, SoftQ
from ebrl.cli import main

SMALL = {"hidden_sizes": (16,), "batch_size": 16, "learning_starts": 50}


def test_episode_limit_given_to_make_is_kept_for_evaluation():
    agent = SAC(gym.make("Pendulum-v1", max_episode_steps=100), **SMALL)
    assert agent.evaluate(2)["lengths"] == [100, 100]


def test_observation_wrappers_are_kept_through_evaluate_save_and_load(tmp_path, capsys):
    env = gym.wrappers.FlattenObservation(
        gym.wrappers.FrameStackObservation(gym.make("Pendulum-v1", max_episode_steps=30), 3)
    )
    agent = SAC(env, **SMALL).learn(60, progress_bar=False)
    assert agent.observation_space.shape == (9,)
    assert agent.evaluate(1)["lengths"] == [30]
    path = agent.save(tmp_path / "stacked.pt")
    loaded = SAC.load(path)  # rebuilt from the recorded spec: wrappers and kwargs
    assert loaded.observation_space.shape == (9,) and loaded.evaluate(1)["lengths"] == [30]
    assert main(["evaluate", str(path), "--episodes", "1"]) == 0
    assert '"mean_return"' in capsys.readouterr().out


def test_a_transformed_env_is_evaluated_transformed_and_load_asks_for_it(tmp_path):
    scaled = gym.wrappers.TransformObservation(
        gym.make("Pendulum-v1"), lambda o: 100 * o, gym.spaces.Box(-800, 800, (3,), np.float32)
    )
    agent = SAC(scaled, **SMALL)
    seen = []
    predict = agent.predict
    agent.predict = lambda o, **kw: (seen.append(np.abs(o).max()), predict(o, **kw))[1]
    agent.evaluate(1)
    assert max(seen) > 10  # the raw env's observations are within [-8, 8]
    path = agent.save(tmp_path / "scaled.pt")
    with pytest.raises(ValueError, match="does not record how to rebuild its env"):
        SAC.load(path)
    assert SAC.load(path, env=scaled).observation_space.shape == (3,)


class _NoSpec(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), -float(action[0] ** 2), False, self.t == 7, {}


def test_an_env_without_spec_needs_eval_env_or_a_factory():
    with pytest.raises(ValueError, match="pass eval_env="):
        SAC(_NoSpec(), **SMALL).evaluate(1)
    assert SAC(_NoSpec(), eval_env=_NoSpec(), **SMALL).evaluate(2)["lengths"] == [7, 7]
    agent = SAC(_NoSpec, num_envs=2, **SMALL)  # a factory: 2 copies, evaluated on a third
    assert agent.envs.num_envs == 2 and agent.evaluate(1)["lengths"] == [7]


def test_gymnasium_make_vec_in_its_default_mode_trains_and_evaluates():
    envs = gym.make_vec("Pendulum-v1", 2, vectorization_mode="sync")
    agent = SAC(envs, **SMALL).learn(80, progress_bar=False)
    assert len(agent.buffer) == 80 and agent.evaluate(1)["lengths"] == [200]
    cart = SoftQ(gym.make_vec("CartPole-v1", 2, vectorization_mode="sync"), learning_starts=20)
    cart.learn(60, progress_bar=False)
    assert cart.evaluate(1)["lengths"][0] >= 8


def test_the_python_api_uses_the_env_preset_as_the_cli_does():
    assert SAC("Pendulum-v1").config == SACConfig.for_env("Pendulum-v1")
    assert SAC("Pendulum-v1").config.learning_rate == 1e-3  # RL-Zoo's, not the default 3e-4
    assert SAC("Pendulum-v1", learning_rate=5e-4).config.learning_rate == 5e-4
    assert SAC("Pendulum-v1", config=SACConfig()).config.learning_rate == SACConfig().learning_rate


def test_a_checkpoint_without_a_recorded_spec_falls_back_to_its_env_id(tmp_path):
    """Checkpoints written before env specs were recorded (no ``env_spec`` key) load from
    their env id; ebrl's own MultiGoal env has a JSON spec."""
    import torch

    agent = SAC("ebrl/MultiGoal-v0", **SMALL)
    assert agent.env_recipe is not None
    state = agent.state_dict()
    del state["env_spec"]
    torch.save(state, tmp_path / "old.pt")
    assert SAC.load(tmp_path / "old.pt").env_id == "ebrl/MultiGoal-v0"
