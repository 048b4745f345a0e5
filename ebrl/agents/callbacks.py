"""Callbacks for ``learn(..., callback=[...])``: periodic checkpoints and periodic evaluation.

A callback is any callable ``callback(agent, info) -> bool | None`` called after every
vector-env step (``info``: the envs' ``infos``, and the ``episode_returns`` and
``episode_lengths`` of the episodes that ended at this step); returning ``False`` stops
training. These
two are what Stable-Baselines3's ``CheckpointCallback`` and ``EvalCallback`` do.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ebrl.validation import check_int

if TYPE_CHECKING:
    from ebrl.agents.core import OffPolicyAgent

__all__ = ["CheckpointCallback", "EvalCallback"]


def _due(agent: OffPolicyAgent, every: int) -> bool:
    """True on the step that crosses a multiple of ``every`` env steps (stateless, so a resumed
    run saves and evaluates at the same steps as an uninterrupted one)."""
    return agent.num_timesteps % every < agent.envs.num_envs


class CheckpointCallback:
    """Saves the whole training state (:meth:`~ebrl.agents.OffPolicyAgent.save`) to ``path``
    every ``every`` env steps, atomically, replacing the previous one; with ``keep=True`` to
    ``path`` with ``_STEP`` before its suffix instead (one file per checkpoint)."""

    def __init__(self, every: int, path: str | Path, keep: bool = False):
        self.every = check_int("CheckpointCallback", "every", every)
        self.path, self.keep = Path(path), bool(keep)
        self.last_saved: Path | None = None

    def __call__(self, agent: OffPolicyAgent, info: dict) -> None:
        if not _due(agent, self.every):
            return
        path = self.path
        if self.keep:
            path = path.with_name(f"{path.stem}_{agent.num_timesteps}{path.suffix}")
        self.last_saved = agent.save(path)


class EvalCallback:
    """Every ``every`` env steps, evaluates the agent on ``n_episodes`` fresh episodes (the same
    seeds each time, so the curve compares like with like), logs ``eval/mean_return`` and
    ``eval/std_return`` to the run's TensorBoard, keeps the history in ``self.evaluations``
    (``(step, mean, std)``), and saves the best agent so far to ``best_model_path`` if given."""

    def __init__(
        self,
        every: int,
        n_episodes: int = 5,
        deterministic: bool = True,
        best_model_path: str | Path | None = None,
    ):
        self.every = check_int("EvalCallback", "every", every)
        self.n_episodes = check_int("EvalCallback", "n_episodes", n_episodes)
        self.deterministic = bool(deterministic)
        self.best_model_path = None if best_model_path is None else Path(best_model_path)
        self.best_mean_return = -math.inf
        self.evaluations: list[tuple[int, float, float]] = []

    def __call__(self, agent: OffPolicyAgent, info: dict) -> None:
        if not _due(agent, self.every):
            return
        result = agent.evaluate(self.n_episodes, deterministic=self.deterministic)
        mean, std = result["mean_return"], result["std_return"]
        self.evaluations.append((agent.num_timesteps, mean, std))
        if agent.logger is not None:
            agent.logger.scalars(
                agent.num_timesteps, {"eval/mean_return": mean, "eval/std_return": std}
            )
        if mean > self.best_mean_return:
            self.best_mean_return = mean
            if self.best_model_path is not None:
                agent.save(self.best_model_path, replay_buffer=False)
