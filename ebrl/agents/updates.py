"""Pieces of an update that every agent shares: target-network averaging, the temperature's dual
loss, freezing a module's parameters while another module's loss is built, and the Adam step
(with gradient-norm clipping) that every optimiser takes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.optim.optimizer as _torch_optimizer
from torch import Tensor, nn

from ebrl.validation import check_positive_float

__all__ = ["adam_step", "frozen", "polyak_update", "temperature_loss"]


@torch.no_grad()
def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source``, in place (one fused op per tensor list)."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def adam_step(optimizer: torch.optim.Optimizer, max_grad_norm: float | None = None) -> None:
    """``optimizer.step()``, after scaling the gradients to total norm ``max_grad_norm`` when
    they exceed it (``torch.nn.utils.clip_grad_norm_``'s arithmetic); the same numbers.

    A fused ``torch.optim.Adam`` whose state exists (after its first step), with no step hooks,
    steps by calling torch's own fused Adam kernel directly, as ``Adam.step`` ends up doing:
    its Python wrapper (grouping, profiler records, hook checks) costs ~40 us per call on a
    CPU, a tenth of a CartPole gradient step, and agents step two or three optimisers per
    update. Anything else (other optimisers, hooks such as ``torchrun``'s gradient averaging,
    the first step) goes through ``optimizer.step()``. Tested equal, bit for bit, to
    ``clip_grad_norm_`` then ``step()``.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"adam_step: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if max_grad_norm is not None:
        max_grad_norm = check_positive_float("adam_step", "max_grad_norm", max_grad_norm)
    fast = _fused_adam_group(optimizer)
    if fast is None:
        if max_grad_norm is not None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
        optimizer.step()
        return
    group, params, grads, states = fast
    with torch.no_grad():
        if max_grad_norm is not None:  # clip_grad_norm_'s ops, without its Python wrapper
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            # Its factor min(bound / (norm + 1e-6), 1) is exactly 1 (a multiply that changes
            # nothing) when norm + 1e-6 is well below the bound. On a CPU reading the norm
            # costs no sync: then the three ops are skipped; otherwise (a NaN norm too), and on
            # other devices (no sync), they run as torch's.
            if total.device.type != "cpu" or not float(total) + 1e-6 <= 0.5 * max_grad_norm:
                torch._foreach_mul_(grads, torch.clamp(max_grad_norm / (total + 1e-6), max=1.0))
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_(
            params,
            grads,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )


def _fused_adam_group(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict, list[Tensor], list[Tensor], list[dict]] | None:
    """``(group, params, grads, states)`` when ``optimizer`` can step through the fused kernel
    directly: a fused, non-AMSGrad, non-maximising ``Adam`` (not AdamW) with one group of
    float parameters on one device that all have gradients and state, and no step hooks."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return None
    if (
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or _torch_optimizer._global_optimizer_pre_hooks
        or _torch_optimizer._global_optimizer_post_hooks
        or not hasattr(torch, "_fused_adam_")
    ):
        return None
    group = optimizer.param_groups[0]
    if (
        not group.get("fused")
        or group["amsgrad"]
        or group["maximize"]
        or group.get("decoupled_weight_decay", False)
        or isinstance(group["lr"], Tensor)
    ):
        return None
    params = group["params"]
    grads = [p.grad for p in params]
    states = [optimizer.state.get(p) for p in params]
    if any(g is None for g in grads) or any(not s for s in states):
        return None
    device = params[0].device
    if any(p.device != device or p.dtype != params[0].dtype for p in params):
        return None
    return group, params, grads, states


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
