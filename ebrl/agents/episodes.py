"""Episodes that a checkpoint can bring back exactly.

An env's state after some steps is not something gymnasium can save (a MuJoCo or Box2D
simulator has no portable state dict), but it is a function of the episode's reset seed and the
actions taken since: :class:`ReplayableEpisodes` seeds every reset of the env it wraps from
``(seed, index, episode number)`` and keeps the actions of the episode in flight. A checkpoint
stores that (a few kilobytes), and :func:`restore_episodes` resets each env with the same seed
and replays the actions, so a deterministic env (every gymnasium classic-control, Box2D and
MuJoCo task) lands in the same state, bit for bit, and training continues as if never stopped.

The envs may step in this process (``SyncVectorEnv``) or in worker processes
(``AsyncVectorEnv``, ``vectorization="async"``): there the state is read with ``get_attr`` and
the replay runs inside each worker (``set_attr`` of its request, then ``call``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

__all__ = [
    "ReplayableEpisodes",
    "episode_seed",
    "episodes_state",
    "replayable",
    "restore_episodes",
]

# Episodes longer than this are not recorded (memory): a checkpoint taken during one cannot
# restore it, and training after load starts new episodes instead (with a warning).
MAX_RECORDED_STEPS = 100_000


def episode_seed(seed: int, index: int, episode: int) -> int:
    """The reset seed of env ``index``'s ``episode``-th episode in a run seeded ``seed``:
    independent streams from numpy's ``SeedSequence`` (no two episodes share a seed)."""
    return int(np.random.SeedSequence(seed, spawn_key=(index, episode)).generate_state(1)[0])


class ReplayableEpisodes(gym.Wrapper):
    """Seeds each reset from ``(seed, index, episode)`` (unless a seed is given) and records
    the actions of the episode in flight; see the module docstring."""

    def __init__(self, env: gym.Env, seed: int, index: int):
        super().__init__(env)
        self.base_seed, self.index = seed, index
        self.episode = -1  # the number of the episode in flight
        self.reset_seed: int | None = None
        self.actions: list = []
        self.replay_request: tuple | None = None  # (episode, reset_seed, actions), async envs

    @property
    def spec(self):
        """The wrapped env's spec: this wrapper changes no observation, action or reward, so
        an env rebuilt from the spec (for evaluation) needs no copy of it."""
        return self.env.spec

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.episode += 1
        self.reset_seed = (
            episode_seed(self.base_seed, self.index, self.episode) if seed is None else seed
        )
        self.actions = []
        return self.env.reset(seed=self.reset_seed, options=options)

    def step(self, action):
        if self.actions is not None:
            self.actions.append(np.array(action, copy=True))
            if len(self.actions) > MAX_RECORDED_STEPS:  # an env without a time limit
                self.actions = None
        return self.env.step(action)

    def replay(self, episode: int, reset_seed: int, actions: np.ndarray) -> np.ndarray:
        """Brings the env to the state it had after ``actions`` in episode ``episode`` (reset
        with ``reset_seed``); returns the observation there."""
        self.episode = episode - 1
        obs, _ = self.reset(seed=reset_seed)
        for action in actions:
            obs, _, terminated, truncated, _ = self.step(action)
            if terminated or truncated:
                raise ValueError(
                    f"resume: env {self.index}'s episode ended during the replay of its "
                    f"{len(actions)} recorded actions: the env is not deterministic given its "
                    "seed and actions, so it cannot be restored exactly"
                )
        return obs

    def run_replay_request(self) -> np.ndarray | None:
        """:meth:`replay` of the request set in ``replay_request`` (an ``AsyncVectorEnv``
        worker cannot be given per-env arguments in one ``call``); None without a request."""
        request, self.replay_request = self.replay_request, None
        return None if request is None else self.replay(*request)


# Set on an AsyncVectorEnv whose workers ebrl built (every sub-env a ReplayableEpisodes).
ASYNC_MARK = "ebrl_replayable_episodes"


def replayable(envs: gym.vector.VectorEnv) -> bool:
    """Whether ``envs`` were built by ebrl (:func:`~ebrl.agents.evaluation.build_envs`), so
    that a checkpoint can restore their episodes."""
    return _replayable(envs) is not None


def _replayable(envs: gym.vector.VectorEnv) -> list[ReplayableEpisodes] | str | None:
    """The wrapped sub-envs of a ``SyncVectorEnv`` built by ebrl, ``"async"`` for an
    ``AsyncVectorEnv`` built by ebrl, else None."""
    if getattr(envs.unwrapped, ASYNC_MARK, False):
        return "async"
    subs = getattr(envs.unwrapped, "envs", None)
    if subs is None or not all(isinstance(e, ReplayableEpisodes) for e in subs):
        return None
    return list(subs)


def _records(envs: gym.vector.VectorEnv, subs) -> list[tuple[int, int | None, list | None]]:
    """Per env: ``(episode, reset_seed, actions)``, read in this process or from the workers."""
    if subs == "async":
        envs = envs.unwrapped
        names = ("episode", "reset_seed", "actions")
        return list(zip(*(envs.get_attr(name) for name in names), strict=True))
    return [(env.episode, env.reset_seed, env.actions) for env in subs]


def episodes_state(envs: gym.vector.VectorEnv) -> list[dict] | None:
    """Per env: the episode in flight, its reset seed and its actions so far (tensors), or
    None when the envs were not built by ebrl (a user's vector env) or an episode in flight is
    too long to have been recorded."""
    subs = _replayable(envs)
    if subs is None:
        return None
    records = _records(envs, subs)
    if any(actions is None for _, _, actions in records):
        return None
    out = []
    for episode, reset_seed, actions in records:
        actions = np.asarray(actions) if actions else np.zeros((0,))
        out.append(
            {
                "episode": episode,
                "reset_seed": reset_seed,
                "actions": torch.from_numpy(np.ascontiguousarray(actions)),
            }
        )
    return out


def restore_episodes(envs: gym.vector.VectorEnv, state: list[dict], obs: np.ndarray) -> None:
    """Replays :func:`episodes_state` into ``envs`` and checks that each env's observation is
    ``obs`` (the one saved with it)."""
    subs = _replayable(envs)
    if subs is None or envs.num_envs != len(state):
        raise ValueError(
            f"resume: the checkpoint holds {len(state)} env episodes, but the envs are "
            f"{'not built by ebrl' if subs is None else f'{envs.num_envs}'}"
        )
    requests = [
        None
        if saved["episode"] < 0
        else (saved["episode"], saved["reset_seed"], saved["actions"].numpy())
        for saved in state
    ]
    if subs == "async":
        envs.unwrapped.set_attr("replay_request", requests)
        replayed = envs.unwrapped.call("run_replay_request")
    else:
        replayed = [
            None if request is None else env.replay(*request)
            for env, request in zip(subs, requests, strict=True)
        ]
    for i, got in enumerate(replayed):
        if got is None:
            continue
        if not np.array_equal(np.asarray(got, dtype=obs.dtype), obs[i]):
            raise ValueError(
                f"resume: replaying env {i}'s episode did not reproduce its saved observation: "
                "the env is not deterministic given its seed and actions"
            )
