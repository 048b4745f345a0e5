"""A replay buffer that lives on the agent's device, filled one vector-env step at a time."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["ReplayBuffer", "Transitions"]


class Transitions(NamedTuple):
    obs: Tensor  # [B, obs_dim]
    actions: Tensor  # [B, act_dim]
    rewards: Tensor  # [B]
    next_obs: Tensor  # [B, obs_dim]
    terminated: Tensor  # [B] float: 1 where the episode ended in a terminal state (no bootstrap)


class ReplayBuffer:
    """A ring buffer of transitions, preallocated on ``device``.

    ``terminated`` is stored, not ``done``: a time-limit truncation still bootstraps from the
    next state (Pardo et al. 2018, "Time Limits in Reinforcement Learning").
    """

    def __init__(
        self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"
    ):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity must be an int >= 1, got {capacity!r}")
        self.capacity, self.device = capacity, torch.device(device)
        f32 = {"dtype": torch.float32, "device": self.device}
        self.obs = torch.zeros(capacity, obs_dim, **f32)
        self.actions = torch.zeros(capacity, act_dim, **f32)
        self.rewards = torch.zeros(capacity, **f32)
        self.next_obs = torch.zeros(capacity, obs_dim, **f32)
        self.terminated = torch.zeros(capacity, **f32)
        self.position, self.size = 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Adds ``n`` transitions (one per env); arrays or tensors with a leading ``[n]``."""
        items = [
            torch.as_tensor(v, dtype=torch.float32, device=self.device)
            for v in (obs, actions, rewards, next_obs, terminated)
        ]
        n = items[0].shape[0]
        if n > self.capacity:
            raise ValueError(
                f"ReplayBuffer: cannot add {n} transitions to capacity {self.capacity}"
            )
        index = (self.position + torch.arange(n, device=self.device)) % self.capacity
        for store, value in zip(
            (self.obs, self.actions, self.rewards, self.next_obs, self.terminated),
            items,
            strict=True,
        ):
            store[index] = value.reshape(n, *store.shape[1:])
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Transitions:
        """Uniform sample with replacement (as SB3 and CleanRL)."""
        if self.size == 0:
            raise ValueError("ReplayBuffer: cannot sample from an empty buffer")
        index = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
        return Transitions(
            self.obs[index],
            self.actions[index],
            self.rewards[index],
            self.next_obs[index],
            self.terminated[index],
        )

    def state_dict(self) -> dict:
        n = self.size
        return {
            "obs": self.obs[:n].cpu(),
            "actions": self.actions[:n].cpu(),
            "rewards": self.rewards[:n].cpu(),
            "next_obs": self.next_obs[:n].cpu(),
            "terminated": self.terminated[:n].cpu(),
            "position": self.position,
        }
