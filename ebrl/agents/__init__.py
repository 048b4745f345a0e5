"""Agents on one off-policy core: energy-based soft actor-critic (continuous actions) and soft
Q-learning (discrete actions), with their buffer and evaluation helpers."""

from ebrl.agents.buffer import ReplayBuffer, Transitions
from ebrl.agents.core import OffPolicyAgent, OffPolicyConfig, polyak_update
from ebrl.agents.evaluation import evaluate_policy, make_env, make_vector_env
from ebrl.agents.sac import SAC, SACConfig

__all__ = [
    "SAC",
    "OffPolicyAgent",
    "OffPolicyConfig",
    "ReplayBuffer",
    "SACConfig",
    "Transitions",
    "evaluate_policy",
    "make_env",
    "make_vector_env",
    "polyak_update",
]
