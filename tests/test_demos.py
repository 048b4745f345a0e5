"""Demonstrators: the vectorised controllers equal gymnasium's heuristic, they solve their tasks,
datasets are reproducible and round-trip through .npz with their metadata."""

from types import SimpleNamespace

import numpy as np
import pytest

from ebrl.data.demos import (
    Demonstrations,
    lunar_lander_demos,
    lunar_lander_heuristic,
    lunar_lander_preferences,
    pendulum_demos,
    pendulum_swing_up,
)


def random_lander_states(n, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 8)) * np.array([0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 1, 1])
    s[:, 6:] = rng.random((n, 2)) < 0.2  # leg contacts
    return s.astype(np.float32)


@pytest.mark.parametrize("continuous", [False, True])
def test_vectorised_lander_heuristic_equals_gymnasiums(continuous):
    pytest.importorskip("Box2D")
    from gymnasium.envs.box2d.lunar_lander import heuristic

    env = SimpleNamespace(unwrapped=SimpleNamespace(continuous=continuous))
    states = random_lander_states(2000)
    ours = lunar_lander_heuristic(states, continuous=continuous)
    theirs = np.array([heuristic(env, s) for s in states])
    if continuous:
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    else:
        assert (ours == theirs).mean() > 0.999  # exact up to measure-zero ties
        assert set(np.unique(theirs)) == {0, 1, 2, 3}  # every branch exercised
    assert (np.argmax(lunar_lander_preferences(states), -1) == lunar_lander_heuristic(states)).all()


def test_pendulum_swing_up_solves_the_task():
    """Noise-free returns well above random (~ -1200) from the bottom: it swings up and holds."""
    demos = pendulum_demos(4, noise_std=0.0, seed=3)
    assert len(demos) == 4 * 200 and demos.returns.shape == (4,)
    assert demos.returns.mean() > -300, demos.returns
    # ends balanced upright: cos(theta) ~ 1 and small velocity on the final steps of each episode
    last = demos.observations[demos.truncated]
    assert (last[:, 0] > 0.99).all() and (np.abs(last[:, 2]) < 0.5).all()
    u = pendulum_swing_up(np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    assert u.shape == (2, 1) and u[0, 0] == 0.0 and abs(u[1, 0]) == 2.0


def test_lander_demos_noise_levels_and_metadata():
    pytest.importorskip("Box2D")
    clean = lunar_lander_demos(3, seed=0)
    noisy = lunar_lander_demos(3, boltzmann_temperature=0.05, epsilon=0.1, seed=0)
    assert clean.returns.mean() > 200, clean.returns  # the heuristic lands
    assert noisy.returns.mean() < clean.returns.mean()
    assert clean.actions.dtype == np.int64 and clean.observations.shape[1] == 8
    meta = noisy.metadata
    assert meta["env_id"] == "LunarLander-v3" and meta["epsilon"] == 0.1
    assert meta["boltzmann_temperature"] == 0.05 and meta["seed"] == 0
    assert meta["returns"] == [round(float(r), 4) for r in noisy.returns]
    # Boltzmann-rational: the noisy demonstrator disagrees with the heuristic on some steps
    agree = (lunar_lander_heuristic(noisy.observations) == noisy.actions).mean()
    assert 0.5 < agree < 0.99
    cont = lunar_lander_demos(2, continuous=True, noise_std=0.2, seed=1)
    assert cont.actions.shape[1] == 2 and np.abs(cont.actions).max() <= 1.0
    assert cont.returns.mean() > 100


def test_same_seed_same_dataset_and_npz_round_trip(tmp_path):
    a = pendulum_demos(2, noise_std=0.3, epsilon=0.1, seed=7)
    b = pendulum_demos(2, noise_std=0.3, epsilon=0.1, seed=7)
    c = pendulum_demos(2, noise_std=0.3, epsilon=0.1, seed=8)
    assert np.array_equal(a.actions, b.actions) and not np.array_equal(a.actions, c.actions)
    path = a.save(tmp_path / "sub" / "pendulum.npz")
    back = Demonstrations.load(path)
    for name in ("observations", "actions", "rewards", "next_observations", "terminated"):
        assert np.array_equal(getattr(a, name), getattr(back, name)), name
    assert back.metadata == a.metadata
    assert back.metadata["env_id"] == "Pendulum-v1" and back.metadata["noise_std"] == 0.3
    assert back.metadata["mean_return"] == pytest.approx(a.returns.mean())
    # consistency: the next observation of a step is the observation of the following one
    same_episode = a.episode[1:] == a.episode[:-1]
    assert np.array_equal(a.next_observations[:-1][same_episode], a.observations[1:][same_episode])


def test_demo_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="noise_std"):
        pendulum_demos(1, noise_std=-0.1)
    with pytest.raises(ValueError, match="epsilon"):
        pendulum_demos(1, epsilon=1.5)
    with pytest.raises(ValueError, match="n_episodes"):
        pendulum_demos(0)
    with pytest.raises(ValueError, match="boltzmann_temperature is for the discrete"):
        lunar_lander_demos(1, continuous=True, boltzmann_temperature=0.1)
    with pytest.raises(ValueError, match="noise_std is for the continuous"):
        lunar_lander_demos(1, noise_std=0.1)
    with pytest.raises(ValueError, match=r"\.npz"):
        pendulum_demos(1).save(tmp_path / "x.csv")
    with pytest.raises(ValueError, match=r"\[\.\.\., 8\]"):
        lunar_lander_preferences(np.zeros(3))


def test_missing_box2d_is_a_clear_import_error(monkeypatch):
    import gymnasium as gym

    def make(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("Box2D is not installed")

    monkeypatch.setattr(gym, "make", make)
    with pytest.raises(ImportError, match=r"pip install 'ebrl\[box2d\]'"):
        lunar_lander_demos(1)
