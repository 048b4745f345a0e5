"""Small environments, registered with gymnasium when ``ebrl`` is imported."""

import gymnasium as gym

from ebrl.envs.multigoal import GOALS, MultiGoalEnv

__all__ = ["GOALS", "MultiGoalEnv", "register_envs"]


def register_envs() -> None:
    """Registers ``ebrl/MultiGoal-v0`` (idempotent)."""
    if "ebrl/MultiGoal-v0" not in gym.registry:
        # a "module:Class" string, not the class: a spec with it is JSON, so checkpoints can
        # record how to rebuild the env
        gym.register(
            "ebrl/MultiGoal-v0",
            entry_point="ebrl.envs.multigoal:MultiGoalEnv",
            max_episode_steps=30,
        )


register_envs()
