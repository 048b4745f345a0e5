"""The hyperparameters every off-policy agent shares; each agent's config extends them."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

__all__ = ["OffPolicyConfig"]


@dataclass(frozen=True)
class OffPolicyConfig:
    """What every off-policy agent shares (field docs become ``ebrl train --help``)."""

    learning_rate: float = 3e-4
    """Adam learning rate of every network and of the temperature."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity (transitions)."""
    learning_starts: int = 100
    """Env steps (all envs together) of anchor-sampled actions before the first update."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 1
    """Vector-env steps between updates."""
    gradient_steps: int = 1
    """Gradient steps per update."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden widths of the networks."""
    initial_temperature: float = 1.0
    """Starting temperature T (the entropy / KL coefficient alpha)."""
    temperature_bounds: tuple[float, float] = (1e-4, 1e3)
    """The automatic temperature is clamped to this range so it cannot run away."""
    target_entropy: float | None = None
    """Entropy target of the automatic temperature without an anchor (default per agent)."""
    target_kl: float | None = None
    """KL-to-anchor target of the automatic temperature with an anchor (default per agent)."""
    log_interval: int = 1000
    """Env steps between TensorBoard writes."""
    compile: bool | None = None
    """torch.compile the acting step and the update's losses (CUDA graphs on CUDA): True, False
    or None (auto; `auto` on the command line): on where it was measured to pay in 10k-step
    runs, compile time counted (SAC on CUDA), off elsewhere (docs/performance.md); auto falls
    back to eager, with a warning, where compiling fails."""

    # (name, kind) for __post_init__: "int>=1", "int>=0", "float>0", "[0,1]"
    _checks: ClassVar[tuple[tuple[str, str], ...]] = (
        ("learning_rate", "float>0"),
        ("buffer_size", "int>=1"),
        ("learning_starts", "int>=0"),
        ("batch_size", "int>=1"),
        ("gamma", "[0,1]"),
        ("train_freq", "int>=1"),
        ("gradient_steps", "int>=1"),
        ("initial_temperature", "float>0"),
        ("log_interval", "int>=1"),
    )

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name, kind in self._checks:
            value = getattr(self, name)
            # numpy scalars become Python numbers (plain data for checkpoints)
            if isinstance(value, np.integer):
                value = int(value)
            elif isinstance(value, np.floating) and not kind.startswith("int"):
                value = float(value)
            object.__setattr__(self, name, value)
            if kind.startswith("int"):
                minimum = int(kind[-1])
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                    raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
            elif kind == "float>0" and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{owner}: {name} must be finite and > 0, got {value!r}")
            elif kind == "[0,1]" and not 0.0 <= value <= 1.0:
                raise ValueError(f"{owner}: {name} must be in [0, 1], got {value!r}")
        if self.compile is not None:
            if not isinstance(self.compile, bool | np.bool_):
                raise TypeError(f"{owner}: compile must be a bool or None, got {self.compile!r}")
            object.__setattr__(self, "compile", bool(self.compile))
        for name in ("target_entropy", "target_kl"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{owner}: {name} must be None or a finite number, got {value!r}")
        if self.target_kl is not None and self.target_kl < 0:
            raise ValueError(f"{owner}: target_kl must be >= 0, got {self.target_kl!r}")
        lo, hi = self.temperature_bounds
        if not 0 < lo <= self.initial_temperature <= hi < math.inf:
            raise ValueError(
                f"{owner}: need 0 < temperature_bounds[0] <= initial_temperature <= "
                f"temperature_bounds[1] < inf, got {self.temperature_bounds}, "
                f"{self.initial_temperature}"
            )
        if not self.hidden_sizes or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden_sizes
        ):
            raise ValueError(
                f"{owner}: hidden_sizes must be positive ints, got {self.hidden_sizes!r}"
            )

    @classmethod
    def for_env(cls, env_id: str | None, **overrides) -> OffPolicyConfig:
        """The config with ``env_id``'s preset (:data:`ebrl.agents.presets.PRESETS`, tuned
        values with their sources) applied, then ``overrides``; the defaults for other envs."""
        from ebrl.agents.presets import preset

        if env_id is not None and not isinstance(env_id, str):
            raise TypeError(
                f"{cls.__name__}: env_id must be a gymnasium env id (str) or None, got "
                f"{env_id!r} (hyperparameters are keyword arguments)"
            )
        return cls(**{**preset(cls.__name__, env_id), **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> OffPolicyConfig:
        """The config from :func:`dataclasses.asdict` output (lists back to tuples)."""
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
