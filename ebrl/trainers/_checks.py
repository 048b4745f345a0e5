"""Input checks shared by the trainers (private)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_batch(owner: str, x: object) -> Tensor:
    """A floating-point data batch ``[n, d]`` with ``n >= 1`` (shape and dtype only: no sync)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: x must be a tensor [n, d], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: x must be floating point, got dtype {x.dtype}")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{owner}: x must have shape [n, d] with n, d >= 1, got {tuple(x.shape)}")
    return x


def check_energy_output(owner: str, e: object, x: Tensor) -> Tensor:
    if not isinstance(e, Tensor) or e.shape != x.shape[:-1]:
        got = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
        raise ValueError(
            f"{owner}: energy must map x of shape {tuple(x.shape)} to {tuple(x.shape[:-1])}, "
            f"got {got}"
        )
    return e


def check_positive_float(owner: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}: {name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be finite and > 0, got {value!r}")
    return float(value)


def check_int(owner: str, name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return value


def check_generator(owner: str, generator: object, like: Tensor) -> torch.Generator | None:
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be a torch.Generator or None")
    if generator.device.type != like.device.type:
        raise ValueError(
            f"{owner}: generator is on {generator.device} but x is on {like.device}; pass "
            "torch.Generator(device=x.device)"
        )
    return generator
