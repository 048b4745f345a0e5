"""Env construction and policy evaluation shared by the agents."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np

import ebrl.envs  # noqa: F401  (registers ebrl/ envs)
from ebrl.agents.episodes import ReplayableEpisodes

__all__ = ["evaluate_policy", "make_env", "make_vector_env"]


def make_env(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` with a clear error for an unknown id."""
    if not isinstance(env_id, str):
        raise TypeError(f"env must be a gymnasium id string, got {type(env_id).__name__}")
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"unknown or unavailable env id {env_id!r}: {err}") from err


def make_vector_env(
    env: str | gym.Env | gym.vector.VectorEnv, num_envs: int = 1, seed: int = 0
) -> tuple[gym.vector.VectorEnv, str | None]:
    """A vector env and the env id, if known.

    ``env`` may be an id (``num_envs`` copies in a same-step-autoreset ``SyncVectorEnv``), an
    env instance (one copy), or a vector env (used as is, in either autoreset mode). The envs
    ebrl builds seed every episode from ``seed`` and record its actions
    (:class:`~ebrl.agents.episodes.ReplayableEpisodes`), so a checkpoint can restore them.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    if isinstance(env, str):
        make_env(env).close()  # fail early with a clear error for a bad id
        env_id = env
        factories = [partial(_replayable_env, env, seed, i) for i in range(num_envs)]
        return gym.vector.SyncVectorEnv(factories, **same_step), env_id
    if isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode")
        modes = (gym.vector.AutoresetMode.SAME_STEP, gym.vector.AutoresetMode.NEXT_STEP, None)
        if mode not in modes:
            raise ValueError(
                f"vector envs must autoreset (AutoresetMode.SAME_STEP or NEXT_STEP), got {mode}"
            )
        return env, None
    if isinstance(env, gym.Env):
        wrapped = ReplayableEpisodes(env, seed, 0)
        env_id = env.spec.id if env.spec is not None else None
        return gym.vector.SyncVectorEnv([lambda: wrapped], **same_step), env_id
    raise TypeError(f"env must be a gymnasium id, Env or VectorEnv, got {type(env).__name__}")


def _replayable_env(env_id: str, seed: int, index: int) -> gym.Env:
    return ReplayableEpisodes(make_env(env_id), seed, index)


def evaluate_policy(
    act: Callable[[np.ndarray], np.ndarray],
    env: str | gym.Env,
    n_episodes: int = 10,
    seed: int = 0,
) -> dict:
    """Runs ``n_episodes`` full episodes of ``act(obs) -> action`` on one env.

    Episode ``i`` is reset with ``seed + i``, so two policies evaluated with the same seed face
    the same initial states. Returns ``mean_return``, ``std_return``, ``returns``, ``lengths``.
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"evaluate: n_episodes must be an int >= 1, got {n_episodes!r}")
    own = isinstance(env, str)
    env = make_env(env) if own else env
    returns, lengths = [], []
    try:
        for i in range(n_episodes):
            obs, _ = env.reset(seed=seed + i)
            done, total, length = False, 0.0, 0
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs))
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        if own:
            env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "lengths": lengths,
    }
