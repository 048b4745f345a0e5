"""The 2-D multi-goal point mass of Haarnoja et al. (2017), Section 6.1 ("Didactic example").

A point starts at the origin; actions are velocities in ``[-1, 1]^2``; four goals sit at
``(±5, 0)`` and ``(0, ±5)``. The reward is ``-(30 |a|^2 + min_g |x' - g|^2)`` plus 10 on reaching a
goal (distance < 1), which ends the episode; episodes are truncated after 30 steps. All four
goals are equally good, so a maximum-entropy policy should reach each of them; a unimodal
Gaussian policy commits to one or two.

References:
    Haarnoja, Tang, Abbeel & Levine (2017), "Reinforcement Learning with Deep Energy-Based
    Policies", ICML, Sec. 6.1 and Fig. 3 (costs as in their released ``multigoal.py``:
    actuation cost 30, distance cost 1, goal reward 10, goal radius 1, positions clipped to
    ``[-7, 7]^2``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

__all__ = ["GOALS", "MultiGoalEnv"]

GOALS = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]], dtype=np.float32)


class MultiGoalEnv(gym.Env):
    """``ebrl/MultiGoal-v0``. ``info["goal"]`` is the index of the goal reached (-1 if none)."""

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        goal_reward: float = 10.0,
        action_cost: float = 30.0,
        distance_cost: float = 1.0,
        goal_radius: float = 1.0,
        init_sigma: float = 0.0,
    ):
        for name, value in [
            ("goal_reward", goal_reward),
            ("action_cost", action_cost),
            ("distance_cost", distance_cost),
            ("init_sigma", init_sigma),
        ]:
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"MultiGoalEnv: {name} must be finite and >= 0, got {value!r}")
        if not goal_radius > 0:
            raise ValueError(f"MultiGoalEnv: goal_radius must be > 0, got {goal_radius!r}")
        self.goal_reward, self.action_cost = goal_reward, action_cost
        self.distance_cost, self.goal_radius, self.init_sigma = (
            distance_cost,
            goal_radius,
            init_sigma,
        )
        self.observation_space = gym.spaces.Box(-7.0, 7.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.position = np.zeros(2, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        noise = self.np_random.normal(size=2) * self.init_sigma
        self.position = np.clip(noise, -7.0, 7.0).astype(np.float32)
        return self.position.copy(), {}

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (2,) or not np.isfinite(action).all():
            raise ValueError(f"MultiGoalEnv: action must be 2 finite numbers, got {action!r}")
        action = np.clip(action, -1.0, 1.0)
        self.position = np.clip(self.position + action, -7.0, 7.0).astype(np.float32)
        distances = np.linalg.norm(GOALS - self.position, axis=1)
        nearest = int(np.argmin(distances))
        reward = -(
            self.action_cost * float(action @ action)
            + self.distance_cost * float(distances[nearest] ** 2)
        )
        terminated = bool(distances[nearest] < self.goal_radius)
        if terminated:
            reward += self.goal_reward
        info = {"goal": nearest if terminated else -1}
        return self.position.copy(), reward, terminated, False, info
