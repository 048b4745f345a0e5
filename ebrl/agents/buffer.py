"""A replay buffer that lives on the agent's device, filled one vector-env step at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["ReplayBuffer", "Transitions"]


class Transitions(NamedTuple):
    obs: Tensor  # [B, obs_dim]
    actions: Tensor  # [B, *action_shape]: float (continuous) or int64 (discrete)
    rewards: Tensor  # [B]
    next_obs: Tensor  # [B, obs_dim]
    terminated: Tensor  # [B] float: 1 where the episode ended in a terminal state (no bootstrap)


class ReplayBuffer:
    """A ring buffer of transitions on ``device``.

    Actions are stored with ``action_shape`` and ``action_dtype``: ``(d,)`` and float32 for a
    ``Box``, ``()`` and int64 for ``Discrete``. ``terminated`` is stored, not ``done``: a
    time-limit truncation still bootstraps from the next state (Pardo et al. 2018, "Time Limits
    in Reinforcement Learning").

    Storage is reserved with ``torch.empty`` and never written before it is used, so the
    operating system commits memory only as the buffer fills (as numpy's ``zeros`` does for
    Stable-Baselines3): a 1M-transition buffer for a large observation costs nothing until used.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_shape: int | Sequence[int] = (),
        action_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity must be an int >= 1, got {capacity!r}")
        if isinstance(action_shape, int):
            action_shape = (action_shape,)
        if action_dtype not in (torch.float32, torch.int64):
            raise ValueError(
                f"ReplayBuffer: action_dtype must be torch.float32 or torch.int64, got "
                f"{action_dtype}"
            )
        self.capacity, self.device = capacity, torch.device(device)
        f32 = {"dtype": torch.float32, "device": self.device}
        self.obs = torch.empty(capacity, obs_dim, **f32)
        self.actions = torch.empty(capacity, *action_shape, dtype=action_dtype, device=self.device)
        self.rewards = torch.empty(capacity, **f32)
        self.next_obs = torch.empty(capacity, obs_dim, **f32)
        self.terminated = torch.empty(capacity, **f32)
        self.position, self.size = 0, 0
        # On the CPU, writes go through numpy views of the same memory: one small copy per
        # array instead of a tensor conversion and an indexed torch copy (~5x less per step).
        self._views = [t.numpy() for t in self._stores()] if self.device.type == "cpu" else None

    def __len__(self) -> int:
        return self.size

    def _stores(self) -> tuple[Tensor, ...]:
        return (self.obs, self.actions, self.rewards, self.next_obs, self.terminated)

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Adds ``n`` transitions (one per env); arrays or tensors with a leading ``[n]``."""
        values = (obs, actions, rewards, next_obs, terminated)
        n = len(rewards)
        if n > self.capacity:
            raise ValueError(
                f"ReplayBuffer: cannot add {n} transitions to capacity {self.capacity}"
            )
        end = self.position + n
        if end <= self.capacity:  # one contiguous slice (the usual case): no index tensor
            index = slice(self.position, end)
        else:
            index = torch.arange(self.position, end, device=self.device) % self.capacity
        if self._views is not None:
            for view, value in zip(self._views, values, strict=True):
                if isinstance(value, Tensor):
                    value = value.detach().cpu().numpy()
                view[index] = np.asarray(value).reshape(n, *view.shape[1:])
        else:
            for store, value in zip(self._stores(), values, strict=True):
                value = torch.as_tensor(value, dtype=store.dtype, device=self.device)
                store[index] = value.reshape(n, *store.shape[1:])
        self.position = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Transitions:
        """Uniform sample with replacement (as SB3 and CleanRL)."""
        if self.size == 0:
            raise ValueError("ReplayBuffer: cannot sample from an empty buffer")
        index = torch.randint(0, self.size, (batch_size,), generator=generator, device=self.device)
        return Transitions(*(store[index] for store in self._stores()))

    def state_dict(self) -> dict:
        """The filled part, in the stored dtypes, on the CPU."""
        n = self.size
        names = ("obs", "actions", "rewards", "next_obs", "terminated")
        out = {k: store[:n].cpu() for k, store in zip(names, self._stores(), strict=True)}
        return {**out, "position": self.position}
