"""Pieces of an update that every agent shares: target-network averaging, the temperature's dual
loss, and freezing a module's parameters while another module's loss is built."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["frozen", "polyak_update", "temperature_loss"]


@torch.no_grad()
def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source``, in place (one fused op per tensor list)."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def temperature_loss(
    log_temperature: Tensor, regularizer: Tensor, bound: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Dual of the constraint ``E[log pi - log anchor] <= bound`` (Haarnoja et al. 2018b,
    eq. 18): ``-log T (E[log pi - log anchor] - bound)``; SAC's entropy constraint
    ``-E[log pi] >= H`` is ``bound = -H``. ``regularizer`` is the detached estimate of
    ``E[log pi - log anchor]``; only ``log T`` gets a gradient."""
    loss = -(log_temperature * (regularizer.detach() - bound))
    return loss, {"temperature_loss": loss}


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` take no gradient inside the block (the graph built there does
    not reach them), and get their ``requires_grad`` back after it: a loss computed inside puts
    gradients only on its owner's parameters."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
