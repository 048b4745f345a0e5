"""Env construction and policy evaluation shared by the agents."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

import ebrl.envs  # noqa: F401  (registers ebrl/ envs)
from ebrl.agents.episodes import ASYNC_MARK, ReplayableEpisodes

__all__ = [
    "AgentEnvs",
    "build_envs",
    "env_from_recipe",
    "evaluate_policy",
    "make_env",
    "make_vector_env",
]

VECTORIZATIONS = ("sync", "async")


def make_env(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` with a clear error for an unknown id."""
    if not isinstance(env_id, str):
        raise TypeError(f"env must be a gymnasium id string, got {type(env_id).__name__}")
    try:
        return gym.make(env_id, **kwargs)
    except (gym.error.Error, ImportError) as err:  # ImportError: "module:Env-v0" ids
        raise ValueError(f"unknown or unavailable env id {env_id!r}: {err}") from err


EnvLike = str | gym.Env | gym.vector.VectorEnv | Callable[[], gym.Env]


@dataclass
class AgentEnvs:
    """What an agent trains on, and how it gets a fresh copy of the same env to evaluate on.

    ``make_eval_env``: builds one env the way the training env was built (its gymnasium spec
    with kwargs and wrappers, or the user's factory), or None where that is impossible
    (``why_not`` says why). ``recipe``: the spec as JSON, for checkpoints (None where it is
    not JSON, e.g. a wrapper holding a function)."""

    envs: gym.vector.VectorEnv
    env_id: str | None
    make_eval_env: Callable[[], gym.Env] | None
    recipe: str | None
    why_not: str = ""


def build_envs(
    env: EnvLike,
    num_envs: int = 1,
    seed: int = 0,
    *,
    vectorization: str = "sync",
    first_index: int = 0,
) -> AgentEnvs:
    """The training vector env for ``env`` and how to rebuild it (:class:`AgentEnvs`).

    ``env`` may be an id (``num_envs`` copies), a factory ``() -> Env`` (``num_envs`` copies),
    an env instance (one copy; rebuilt from its spec for evaluation), or a vector env (used as
    is, in either autoreset mode). The envs ebrl builds seed every episode from ``seed`` and
    record its actions (:class:`~ebrl.agents.episodes.ReplayableEpisodes`), so a checkpoint
    can restore them; their autoreset is same-step.

    ``vectorization``: ``"sync"`` steps the copies one after another in this process
    (``SyncVectorEnv``); ``"async"`` steps each in its own worker process (gymnasium's
    ``AsyncVectorEnv``), worth it when one env step costs more than the inter-process round
    trip (MuJoCo, Box2D; not the classic-control toys). Either way the agent acts for all envs
    in one batched call, and the run is the same, number for number.
    ``first_index``: the index of the first copy (a ``torchrun`` rank's envs are numbered
    after the lower ranks', so that no two envs of a run share an episode seed).
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    num_envs = int(num_envs)
    if vectorization not in VECTORIZATIONS:
        raise ValueError(
            f"vectorization must be one of {', '.join(VECTORIZATIONS)}, got {vectorization!r}"
        )
    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    spec = None
    if vectorization == "async" and not isinstance(env, str) and not _is_factory(env):
        raise ValueError(
            "vectorization='async' builds the envs in worker processes: give an env id or a "
            f"factory () -> Env, not a {type(env).__name__}"
        )
    if isinstance(env, str):
        probe = make_env(env)  # fail early with a clear error for a bad id
        spec = probe.spec
        probe.close()
        factory = partial(make_env, env)
    elif isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode")
        modes = (gym.vector.AutoresetMode.SAME_STEP, gym.vector.AutoresetMode.NEXT_STEP, None)
        if mode not in modes:
            raise ValueError(
                f"vector envs must autoreset (AutoresetMode.SAME_STEP or NEXT_STEP), got {mode}"
            )
        return _described(env, _single_spec(env))
    elif isinstance(env, gym.Env):
        if num_envs != 1:
            raise ValueError(
                f"num_envs={num_envs} needs an env id or a factory () -> Env, not one env instance"
            )
        wrapped = ReplayableEpisodes(env, seed, first_index)
        return _described(gym.vector.SyncVectorEnv([lambda: wrapped], **same_step), env.spec)
    elif callable(env):
        factory = env
    else:
        raise TypeError(
            f"env must be a gymnasium id, Env, VectorEnv or factory () -> Env, got "
            f"{type(env).__name__}"
        )
    makers = [partial(_replayable, factory, seed, first_index + i) for i in range(num_envs)]
    if vectorization == "async":
        if spec is None:  # a factory: its env's spec, read in this process
            probe = _replayable(factory, seed, first_index)
            spec = probe.spec
            probe.close()
        envs = gym.vector.AsyncVectorEnv(makers, **same_step)
        setattr(envs, ASYNC_MARK, True)  # its episodes can be read and replayed
    else:
        envs = gym.vector.SyncVectorEnv(makers, **same_step)
        spec = envs.envs[0].spec
    out = _described(envs, spec)
    if not isinstance(env, str):  # a user's factory is the surest way to the same env
        out.make_eval_env, out.why_not = factory, ""
    return out


def _is_factory(env: object) -> bool:
    return callable(env) and not isinstance(env, gym.Env | gym.vector.VectorEnv)


def make_vector_env(
    env: EnvLike, num_envs: int = 1, seed: int = 0
) -> tuple[gym.vector.VectorEnv, str | None]:
    """The training vector env and the env id, if known (see :func:`build_envs`)."""
    built = build_envs(env, num_envs, seed)
    return built.envs, built.env_id


def _replayable(factory: Callable[[], gym.Env], seed: int, index: int) -> gym.Env:
    env = factory()
    if not isinstance(env, gym.Env):
        raise TypeError(f"the env factory must return a gymnasium Env, got {type(env).__name__}")
    return ReplayableEpisodes(env, seed, index)


def _single_spec(envs: gym.vector.VectorEnv) -> EnvSpec | None:
    """The spec of one of a vector env's sub-envs: ``make_vec``'s spec without its vector
    arguments, or a ``SyncVectorEnv``'s first env's."""
    spec = getattr(envs, "spec", None)
    if spec is not None:
        vector_keys = {"num_envs", "vectorization_mode", "vector_kwargs", "wrappers"}
        if spec.kwargs.get("wrappers"):
            return None  # per-env wrappers given to make_vec are not in the spec
        kwargs = {k: v for k, v in spec.kwargs.items() if k not in vector_keys}
        return dataclasses.replace(spec, kwargs=kwargs)
    subs = getattr(envs.unwrapped, "envs", None)
    return subs[0].spec if subs else None


def _described(envs: gym.vector.VectorEnv, spec: EnvSpec | None) -> AgentEnvs:
    if spec is None:
        return AgentEnvs(
            envs, None, None, None, "the env has no gymnasium spec (not made by gym.make)"
        )
    try:
        recipe = spec.to_json()
    except (TypeError, ValueError) as err:  # e.g. a wrapper holding a lambda
        recipe = None
        why = f"its spec is not JSON ({err}), so a checkpoint cannot rebuild it"
    else:
        why = ""
    return AgentEnvs(envs, spec.id, partial(gym.make, spec), recipe, why)


def env_from_recipe(recipe: str) -> gym.Env:
    """The env a checkpoint's recipe (:attr:`AgentEnvs.recipe`) describes."""
    try:
        return gym.make(EnvSpec.from_json(recipe))
    except (gym.error.Error, ValueError, TypeError, KeyError, ImportError) as err:
        raise ValueError(f"cannot rebuild the checkpoint's env from its spec: {err}") from err


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
