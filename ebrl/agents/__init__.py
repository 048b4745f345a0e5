"""Agents: energy-based soft actor-critic, with its buffer and evaluation helpers."""

from ebrl.agents.buffer import ReplayBuffer, Transitions
from ebrl.agents.evaluation import evaluate_policy, make_env, make_vector_env
from ebrl.agents.sac import SAC, SACConfig, polyak_update

__all__ = [
    "SAC",
    "ReplayBuffer",
    "SACConfig",
    "Transitions",
    "evaluate_policy",
    "make_env",
    "make_vector_env",
    "polyak_update",
]
