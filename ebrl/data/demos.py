"""Demonstrators: "human-like" (good but noisy) demonstration datasets to clone anchors from.

- LunarLander (discrete and continuous): gymnasium's built-in heuristic controller
  (``gymnasium.envs.box2d.lunar_lander.heuristic``), vectorised here. The discrete demonstrator is
  Boltzmann-rational over the heuristic's own action preferences
  ``[0.05, angle_todo, hover_todo, -angle_todo]`` (whose argmax is exactly the heuristic's
  choice), plus epsilon-uniform; the continuous one adds Gaussian noise to the heuristic's
  throttles before clipping, plus epsilon-uniform.
- Pendulum-v1: an energy-shaping swing-up (pump the pendulum's energy toward that of the upright
  rest, then a PD controller near the top), with Gaussian torque noise and epsilon-uniform.

Each returns a :class:`Demonstrations` (observations, actions, rewards, ...; per-episode returns;
metadata with the env id, noise, seed and returns) that saves to and loads from ``.npz``::

    python -m ebrl.data.demos lunarlander --episodes 20 --boltzmann-temperature 0.05 --out ll.npz

LunarLander needs Box2D: ``pip install "ebrl[box2d]"``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

__all__ = [
    "Demonstrations",
    "collect",
    "lunar_lander_demos",
    "lunar_lander_heuristic",
    "lunar_lander_preferences",
    "pendulum_demos",
    "pendulum_swing_up",
]

LUNAR_LANDER_ID = "LunarLander-v3"
PENDULUM_ID = "Pendulum-v1"

_ARRAYS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminated",
    "truncated",
    "episode",
    "returns",
)


@dataclass
class Demonstrations:
    """Transitions from a demonstrator, flat over episodes (``N`` steps, ``E`` episodes).

    Attributes:
        observations: ``[N, obs_dim]`` float32.
        actions: ``[N]`` int64 (discrete) or ``[N, d]`` float32, as sent to the env.
        rewards: ``[N]`` float32.
        next_observations: ``[N, obs_dim]`` float32.
        terminated, truncated: ``[N]`` bool.
        episode: ``[N]`` int64, the episode each step belongs to.
        returns: ``[E]`` float64, undiscounted episode returns.
        metadata: ``env_id``, ``demonstrator``, noise settings, ``seed``, ``n_episodes``,
            ``mean_return``, ``std_return``, ``returns`` and library versions.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode: np.ndarray
    returns: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    def save(self, path: str | Path) -> Path:
        """Writes a compressed ``.npz`` (metadata as a JSON string; loads without pickle)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"Demonstrations.save: path must end in .npz, got {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        np.savez_compressed(path, metadata=np.array(json.dumps(self.metadata)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Demonstrations:
        """Reads a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            missing = [n for n in (*_ARRAYS, "metadata") if n not in data.files]
            if missing:
                raise ValueError(f"Demonstrations.load: {path} lacks {missing}")
            arrays = {name: data[name] for name in _ARRAYS}
            metadata = json.loads(str(data["metadata"]))
        return cls(**arrays, metadata=metadata)


# ----------------------------------------------------------------------------- controllers


def _lunar_lander_todo(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hover_todo, angle_todo)`` of gymnasium's heuristic, for observations ``[..., 8]``."""
    s = np.asarray(obs, dtype=np.float64)
    if s.shape[-1] != 8:
        raise ValueError(f"LunarLander observations must be [..., 8], got {s.shape}")
    angle_targ = np.clip(s[..., 0] * 0.5 + s[..., 2] * 1.0, -0.4, 0.4)
    hover_targ = 0.55 * np.abs(s[..., 0])
    angle_todo = (angle_targ - s[..., 4]) * 0.5 - s[..., 5] * 1.0
    hover_todo = (hover_targ - s[..., 1]) * 0.5 - s[..., 3] * 0.5
    contact = (s[..., 6] != 0) | (s[..., 7] != 0)
    angle_todo = np.where(contact, 0.0, angle_todo)
    hover_todo = np.where(contact, -s[..., 3] * 0.5, hover_todo)
    return hover_todo, angle_todo


def lunar_lander_preferences(obs: np.ndarray) -> np.ndarray:
    """The heuristic's preference for each discrete action, ``[..., 4]``.

    ``[0.05, angle_todo, hover_todo, -angle_todo]`` for (noop, left engine, main engine, right
    engine): its argmax is the action gymnasium's heuristic picks (the heuristic's thresholds
    are exactly these comparisons), so ``softmax(preferences / tau)`` is a Boltzmann-rational
    version of it.
    """
    hover, angle = _lunar_lander_todo(obs)
    return np.stack([np.full_like(hover, 0.05), angle, hover, -angle], axis=-1)


def lunar_lander_heuristic(obs: np.ndarray, continuous: bool = False) -> np.ndarray:
    """Gymnasium's LunarLander heuristic, vectorised over observations ``[..., 8]``.

    Returns actions ``[...]`` (int64) or, for ``continuous``, throttles ``[..., 2]`` in
    ``[-1, 1]``: ``clip([20 hover_todo - 1, -20 angle_todo])``.
    """
    if continuous:
        hover, angle = _lunar_lander_todo(obs)
        return np.clip(np.stack([hover * 20 - 1, -angle * 20], axis=-1), -1, 1)
    return np.argmax(lunar_lander_preferences(obs), axis=-1)


def pendulum_swing_up(
    obs: np.ndarray, *, pump_gain: float = 0.5, kp: float = 10.0, kd: float = 2.0
) -> np.ndarray:
    """Energy-shaping swing-up for Pendulum-v1, vectorised over observations ``[..., 3]``.

    With ``theta`` from upright, Pendulum-v1's dynamics ``theta'' = 15 sin(theta) + 3 u`` conserve
    ``E = theta'^2 / 2 + 15 cos(theta)`` when ``u = 0``, and ``dE/dt = 3 u theta'``. Far from the
    top the controller pumps ``E`` toward ``E_top = 15`` with ``u = pump_gain (E_top - E)
    theta'``; within 0.6 rad of upright it balances with ``u = -kp theta - kd theta'``. Torques
    are clipped to ``[-2, 2]``; returns ``[..., 1]``.

    References:
        Astrom & Furuta (2000), "Swinging up a pendulum by energy control", Automatica 36(2).
    """
    s = np.asarray(obs, dtype=np.float64)
    if s.shape[-1] != 3:
        raise ValueError(f"Pendulum observations must be [..., 3], got {s.shape}")
    cos, sin, theta_dot = s[..., 0], s[..., 1], s[..., 2]
    theta = np.arctan2(sin, cos)
    energy = 0.5 * theta_dot**2 + 15.0 * cos
    pump = pump_gain * (15.0 - energy) * theta_dot
    # at rest at the bottom theta' = 0 and the pump is silent: kick in the direction of sin
    pump = np.where(np.abs(theta_dot) < 1e-3, 2.0 * np.sign(sin + 1e-12), pump)
    balance = -kp * theta - kd * theta_dot
    u = np.where(cos > math.cos(0.6), balance, pump)
    return np.clip(u, -2.0, 2.0)[..., None]


# ----------------------------------------------------------------------------- collection


def collect(
    env: gym.Env,
    controller: Callable[[np.ndarray, np.random.Generator], np.ndarray | int],
    n_episodes: int,
    *,
    seed: int = 0,
    metadata: dict | None = None,
) -> Demonstrations:
    """Runs ``controller(obs, rng) -> action`` for ``n_episodes`` on ``env`` and records them.

    ``env.reset(seed=seed)`` starts the first episode (later ones continue the env's RNG) and
    ``rng = np.random.default_rng(seed)`` drives the controller's noise: the same seed gives the
    same dataset.
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"collect: n_episodes must be an int >= 1, got {n_episodes!r}")
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    columns: dict[str, list] = {name: [] for name in _ARRAYS if name != "returns"}
    returns = []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed if ep == 0 else None)
        total, done = 0.0, False
        while not done:
            action = controller(obs, rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for name, value in (
                ("observations", obs),
                ("actions", action),
                ("rewards", reward),
                ("next_observations", next_obs),
                ("terminated", terminated),
                ("truncated", truncated),
                ("episode", ep),
            ):
                columns[name].append(value)
            total += float(reward)
            obs, done = next_obs, terminated or truncated
        returns.append(total)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    returns_np = np.asarray(returns, dtype=np.float64)
    meta = {
        "env_id": env.spec.id if env.spec is not None else type(env.unwrapped).__name__,
        "seed": seed,
        "n_episodes": n_episodes,
        "n_steps": len(columns["rewards"]),
        "returns": [round(r, 4) for r in returns],
        "mean_return": float(returns_np.mean()),
        "std_return": float(returns_np.std()),
        "gymnasium_version": gym.__version__,
        **(metadata or {}),
    }
    return Demonstrations(
        observations=np.asarray(columns["observations"], dtype=np.float32),
        actions=np.asarray(columns["actions"], dtype=np.int64 if discrete else np.float32),
        rewards=np.asarray(columns["rewards"], dtype=np.float32),
        next_observations=np.asarray(columns["next_observations"], dtype=np.float32),
        terminated=np.asarray(columns["terminated"], dtype=bool),
        truncated=np.asarray(columns["truncated"], dtype=bool),
        episode=np.asarray(columns["episode"], dtype=np.int64),
        returns=returns_np,
        metadata=meta,
    )


def _check_noise(owner: str, **values: float | None) -> None:
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{owner}: {name} must be a float >= 0, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    if values.get("epsilon") is not None and values["epsilon"] > 1:
        raise ValueError(f"{owner}: epsilon must be in [0, 1], got {values['epsilon']!r}")


def _make_lunar_lander(continuous: bool) -> gym.Env:
    try:
        return gym.make(LUNAR_LANDER_ID, continuous=continuous)
    except gym.error.DependencyNotInstalled as err:
        raise ImportError(
            "LunarLander demonstrators need Box2D: pip install 'ebrl[box2d]' (or "
            "'gymnasium[box2d]'; building it needs swig)"
        ) from err


def lunar_lander_demos(
    n_episodes: int = 10,
    *,
    continuous: bool = False,
    boltzmann_temperature: float = 0.0,
    noise_std: float = 0.0,
    epsilon: float = 0.0,
    seed: int = 0,
) -> Demonstrations:
    """Noisy demonstrations from gymnasium's LunarLander heuristic (``LunarLander-v3``).

    Args:
        n_episodes: episodes to record.
        continuous: the continuous-action lander (throttles in ``[-1, 1]^2``).
        boltzmann_temperature: discrete only: sample ``softmax(preferences / tau)`` over
            :func:`lunar_lander_preferences` (0: the heuristic's argmax).
        noise_std: continuous only: Gaussian noise added to the throttles before clipping.
        epsilon: probability of a uniformly random action at each step.
        seed: env reset seed and noise seed.
    """
    owner = "lunar_lander_demos"
    _check_noise(
        owner, boltzmann_temperature=boltzmann_temperature, noise_std=noise_std, epsilon=epsilon
    )
    if continuous and boltzmann_temperature:
        raise ValueError(f"{owner}: boltzmann_temperature is for the discrete lander")
    if not continuous and noise_std:
        raise ValueError(f"{owner}: noise_std is for the continuous lander")
    env = _make_lunar_lander(continuous)

    def controller(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray | int:
        explore = rng.random() < epsilon
        if continuous:
            if explore:
                return rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
            a = lunar_lander_heuristic(obs, continuous=True) + noise_std * rng.normal(size=2)
            return np.clip(a, -1.0, 1.0).astype(np.float32)
        if explore:
            return int(rng.integers(4))
        prefs = lunar_lander_preferences(obs)
        if boltzmann_temperature == 0:
            return int(np.argmax(prefs))
        logits = prefs / boltzmann_temperature
        p = np.exp(logits - logits.max())
        return int(rng.choice(4, p=p / p.sum()))

    meta = {
        "demonstrator": "lunar_lander_heuristic",
        "continuous": continuous,
        "boltzmann_temperature": boltzmann_temperature,
        "noise_std": noise_std,
        "epsilon": epsilon,
    }
    try:
        return collect(env, controller, n_episodes, seed=seed, metadata=meta)
    finally:
        env.close()


def pendulum_demos(
    n_episodes: int = 100,
    *,
    noise_std: float = 0.2,
    epsilon: float = 0.0,
    seed: int = 0,
) -> Demonstrations:
    """Noisy demonstrations from :func:`pendulum_swing_up` on ``Pendulum-v1`` (200 steps each).

    Most of an episode is balancing at the top; the swing-up that a clone must also learn is the
    first few dozen steps. Ten episodes (the old default) hold about 270 swing-up states, and a
    ``GaussianAnchor`` cloned from them never swung up (its mode returned -1005 against the
    demonstrator's -122 over 20 episodes); from 100 episodes its mode returned -122 (issue 12).

    Args:
        n_episodes: episodes to record (100 by default: 20,000 steps, a few seconds).
        noise_std: Gaussian noise on the torque (N m) before clipping to ``[-2, 2]``.
        epsilon: probability of a uniformly random torque at each step.
        seed: env reset seed and noise seed.
    """
    _check_noise("pendulum_demos", noise_std=noise_std, epsilon=epsilon)
    env = gym.make(PENDULUM_ID)

    def controller(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < epsilon:
            return rng.uniform(-2.0, 2.0, size=1).astype(np.float32)
        u = pendulum_swing_up(obs) + noise_std * rng.normal(size=1)
        return np.clip(u, -2.0, 2.0).astype(np.float32)

    meta = {"demonstrator": "pendulum_swing_up", "noise_std": noise_std, "epsilon": epsilon}
    try:
        return collect(env, controller, n_episodes, seed=seed, metadata=meta)
    finally:
        env.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m ebrl.data.demos {lunarlander,lunarlander-continuous,pendulum} ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m ebrl.data.demos",
        description="Records episodes of a scripted demonstrator with noise (a stand-in for "
        "human play) to an .npz file that `ebrl train --anchor` behaviour-clones. Prints one "
        "JSON line: path, env id, steps, mean and std return.",
    )
    parser.add_argument(
        "env",
        choices=["lunarlander", "lunarlander-continuous", "pendulum"],
        help="LunarLander-v3 (heuristic pilot), LunarLanderContinuous-v3, or Pendulum-v1 "
        "(energy-shaping swing-up controller)",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes to record (default: 100 for pendulum, whose swing-up is a short part of "
        "each episode, 10 for the landers)",
    )
    parser.add_argument(
        "--boltzmann-temperature",
        type=float,
        default=0.0,
        help="lunarlander: sample actions from softmax(heuristic scores / T) (default: 0, greedy)",
    )
    parser.add_argument(
        "--noise-std",
        type=float,
        default=None,
        help="std of Gaussian noise added to continuous actions (default: 0.2 for pendulum, "
        "0 for lunarlander-continuous)",
    )
    parser.add_argument(
        "--epsilon",
        type=float,
        default=0.0,
        help="probability of a uniformly random action at each step (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="env reset and noise seed (default: 0)")
    parser.add_argument("--out", type=Path, required=True, help="path of the .npz file to write")
    args = parser.parse_args(argv)
    if args.env == "pendulum":
        noise = 0.2 if args.noise_std is None else args.noise_std
        episodes = 100 if args.episodes is None else args.episodes
        demos = pendulum_demos(episodes, noise_std=noise, epsilon=args.epsilon, seed=args.seed)
    else:
        continuous = args.env == "lunarlander-continuous"
        demos = lunar_lander_demos(
            10 if args.episodes is None else args.episodes,
            continuous=continuous,
            boltzmann_temperature=args.boltzmann_temperature,
            noise_std=(args.noise_std or 0.0),
            epsilon=args.epsilon,
            seed=args.seed,
        )
    path = demos.save(args.out)
    summary = {k: demos.metadata[k] for k in ("env_id", "n_steps", "mean_return", "std_return")}
    print(json.dumps({"path": str(path), **summary}))


if __name__ == "__main__":
    main()
