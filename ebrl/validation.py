"""Argument checks shared by the whole library: one wording for each kind of bad input.

Every check takes the ``owner`` (the class or function a user called) and, for scalars, the
argument's ``name``, so that errors read ``"MALA: n_steps must be an int >= 1, got 0"``. A wrong
type raises ``TypeError``, a value out of range ``ValueError``. Tensor checks look at shapes,
dtypes and devices only (no host sync), except where a docstring says otherwise.

A leaf module: it imports only ``torch`` and ``numpy``, so every layer can use it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_batch",
    "check_energy_output",
    "check_generator",
    "check_int",
    "check_nonnegative_float",
    "check_obs",
    "check_positive",
    "check_positive_float",
    "check_trainable",
    "check_unit_interval",
]


def check_int(owner: str, name: str, value: object, minimum: int = 1) -> int:
    """An int (not a bool; numpy integers too) ``>= minimum``, returned as a Python ``int``."""
    message = f"{owner}: {name} must be an int >= {minimum}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(message)
    if value < minimum:
        raise ValueError(message)
    return int(value)


def _check_real(owner: str, name: str, value: object, kind: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{owner}: {name} must be {kind}, got {type(value).__name__}")
    return float(value)


def check_positive_float(owner: str, name: str, value: object) -> float:
    """A real number, finite and ``> 0``, returned as a Python ``float``."""
    number = _check_real(owner, name, value, "a float")
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{owner}: {name} must be finite and > 0, got {value!r}")
    return number


def check_nonnegative_float(owner: str, name: str, value: object) -> float:
    """A real number, finite and ``>= 0``, returned as a Python ``float``."""
    number = _check_real(owner, name, value, "a float >= 0")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{owner}: {name} must be a finite float >= 0, got {value!r}")
    return number


def check_unit_interval(owner: str, name: str, value: object, *, closed: bool = True) -> float:
    """A real number in ``[0, 1]`` (``closed=True``, e.g. a probability) or ``(0, 1)``."""
    number = _check_real(owner, name, value, "a float")
    inside = 0.0 <= number <= 1.0 if closed else 0.0 < number < 1.0
    if not inside:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return number


def check_positive(owner: str, name: str, value: object) -> float | Tensor:
    """A float, or a floating tensor (e.g. one step size per batch element), finite and ``> 0``
    everywhere. A tensor is returned as is (its check syncs once: call it at construction)."""
    if isinstance(value, Tensor):
        if not value.is_floating_point() or not (torch.isfinite(value) & (value > 0)).all():
            raise ValueError(f"{owner}: {name} must be finite and > 0 everywhere")
        return value
    _check_real(owner, name, value, "a float or tensor")
    return check_positive_float(owner, name, value)


def check_generator(
    owner: str, generator: object, like: Tensor, what: str = "x"
) -> torch.Generator | None:
    """``None``, or a ``torch.Generator`` on the device type of ``like`` (named ``what``)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{owner}: generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    if generator.device.type != like.device.type:
        raise ValueError(
            f"{owner}: generator is on {generator.device} but {what} is on {like.device}; pass "
            f"torch.Generator(device={like.device.type!r})"
        )
    return generator


def check_batch(owner: str, x: object, name: str = "x") -> Tensor:
    """A floating-point data batch ``[n, d]`` with ``n, d >= 1`` (shape and dtype only)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {name} must be a tensor [n, d], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: {name} must be floating point, got dtype {x.dtype}")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(
            f"{owner}: {name} must have shape [n, d] with n, d >= 1, got {tuple(x.shape)}"
        )
    return x


def check_obs(owner: str, obs: object, obs_dim: int, like: Tensor) -> Tensor:
    """Observations ``[B, obs_dim]`` for a network whose parameters are ``like`` (and on their
    device).

    Integer observations are cast to the parameters' dtype; floating ones of another dtype are an
    error (a silent cast would hide a float64 pipeline feeding a float32 network).
    """
    if not isinstance(obs, Tensor):
        raise TypeError(
            f"{owner}: obs must be a torch.Tensor [B, {obs_dim}], got {type(obs).__name__} "
            "(convert with torch.as_tensor)"
        )
    if obs.dim() < 1 or obs.shape[-1] != obs_dim:
        raise ValueError(f"{owner}: obs must have shape [B, {obs_dim}], got {tuple(obs.shape)}")
    if obs.device != like.device:
        raise ValueError(
            f"{owner}: obs is on {obs.device} but the parameters are on {like.device}; move obs "
            f"there with obs.to('{like.device}') (an agent's is agent.device)"
        )
    if obs.dtype != like.dtype:
        if not obs.is_floating_point() and not obs.is_complex():
            return obs.to(like.dtype)
        raise TypeError(
            f"{owner}: obs has dtype {obs.dtype} but the parameters are {like.dtype}; cast obs "
            f"or move the module with .to({like.dtype})"
        )
    return obs


def check_trainable(owner: str, name: str, module: object) -> list[torch.nn.Parameter]:
    """An ``nn.Module`` with parameters to train; returns those that require grad."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{owner}: {name} must be an nn.Module, got {type(module).__name__}")
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{owner}: {name} has no trainable parameters")
    return params


def check_energy_output(owner: str, e: object, x: Tensor) -> Tensor:
    """The energy contract: ``E(x[*batch, d])`` is a tensor of shape ``[*batch]``."""
    if not isinstance(e, Tensor) or e.shape != x.shape[:-1]:
        got = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
        raise ValueError(
            f"{owner}: energy must map x of shape {tuple(x.shape)} = [*batch, d] to [*batch] = "
            f"{tuple(x.shape[:-1])}, got {got}"
        )
    return e
