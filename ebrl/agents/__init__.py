"""Agents on one off-policy core: energy-based soft actor-critic (continuous actions) and soft
Q-learning (discrete actions), with their buffer and evaluation helpers."""

from ebrl.agents.buffer import ReplayBuffer, Transitions
from ebrl.agents.callbacks import CheckpointCallback, EvalCallback
from ebrl.agents.checkpoint import load_agent
from ebrl.agents.config import OffPolicyConfig
from ebrl.agents.core import OffPolicyAgent
from ebrl.agents.evaluation import evaluate_policy, make_env, make_vector_env
from ebrl.agents.sac import SAC, SACConfig
from ebrl.agents.softq import SoftQ, SoftQConfig
from ebrl.agents.updates import polyak_update

__all__ = [
    "SAC",
    "CheckpointCallback",
    "EvalCallback",
    "OffPolicyAgent",
    "OffPolicyConfig",
    "ReplayBuffer",
    "SACConfig",
    "SoftQ",
    "SoftQConfig",
    "Transitions",
    "evaluate_policy",
    "load_agent",
    "make_env",
    "make_vector_env",
    "polyak_update",
]
