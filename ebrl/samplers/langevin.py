"""Langevin samplers: the unadjusted Langevin algorithm (ULA) and Metropolis-adjusted Langevin
(MALA), written as pure steps over a small state plus one loop that owns iteration.

Both use the textbook convention for ``p ∝ exp(-E)``::

    x' = x - eps * grad E(x) + sqrt(2 eps) * xi,    xi ~ N(0, I)

MALA accepts ``x'`` with probability ``min(1, exp(-E(x')) q(x | x') / (exp(-E(x)) q(x' | x)))``,
so it samples ``p`` exactly; ULA does not correct, and for a Gaussian target with precision
``P`` its stationary covariance is ``P^-1 (I - eps P / 2)^-1`` instead of ``P^-1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebrl.samplers.base import (
    Box,
    EnergyFn,
    SampleResult,
    call_energy,
    check_proposal,
    draw,
    energy_and_grad,
)
from ebrl.validation import (
    check_energy_output,
    check_generator,
    check_int,
    check_positive,
    check_positive_float,
    check_unit_interval,
)

__all__ = [
    "MALA",
    "Langevin",
    "MCMCInfo",
    "MCMCState",
    "init_state",
    "langevin_step",
    "mala_step",
]


class MCMCState(NamedTuple):
    """A chain's position with its energy and energy gradient cached (one gradient per step)."""

    position: Tensor  # [n, *batch, d]
    energy: Tensor  # [n, *batch]
    grad: Tensor  # [n, *batch, d], grad of the energy (not of log p)


class MCMCInfo(NamedTuple):
    acceptance_prob: Tensor  # [n, *batch], the Metropolis-Hastings probability (ULA: a 0-d 1)
    invalid: Tensor  # [n, *batch] bool: NaN or -inf energy (MALA: or NaN gradient) at the proposal


def init_state(energy: EnergyFn, position: Tensor, owner: str = "init_state") -> MCMCState:
    """Evaluates energy and gradient at ``position``, checking the energy's output shape once."""
    e, grad = call_energy(owner, lambda x: energy_and_grad(energy, x), position)
    check_energy_output(owner, e, position)
    return MCMCState(position, e, grad)


def _invalid(energy: Tensor) -> Tensor:
    """NaN or -inf energy (``+inf`` is a valid zero density); one comparison catches both."""
    return ~(energy > -math.inf)


def langevin_step(
    state: MCMCState, energy: EnergyFn, noise: Tensor, *, step_size: Tensor | float
) -> tuple[MCMCState, MCMCInfo]:
    """One ULA step ``x' = x - eps grad E(x) + sqrt(2 eps) noise``.

    Pure: the randomness comes in as ``noise ~ N(0, I)`` of the position's shape, so the step
    compiles with ``torch.compile(fullgraph=True)``. ``step_size`` is a float or a tensor
    broadcastable to the energy's shape ``[n, *batch]`` (e.g. one step size per state).
    """
    eps = torch.as_tensor(step_size, dtype=state.position.dtype, device=state.position.device)
    eps = eps.unsqueeze(-1)
    position = state.position - eps * state.grad + torch.sqrt(2 * eps) * noise
    e, grad = energy_and_grad(energy, position)
    # A NaN gradient makes the next position, hence the next energy, NaN: caught there.
    info = MCMCInfo(e.new_ones(()), _invalid(e))  # ULA accepts every move
    return MCMCState(position, e, grad), info


def mala_step(
    state: MCMCState,
    energy: EnergyFn,
    noise: Tensor,
    log_uniform: Tensor,
    *,
    step_size: Tensor | float,
) -> tuple[MCMCState, MCMCInfo]:
    """One MALA step: a Langevin proposal, then a Metropolis-Hastings accept/reject.

    Pure (randomness as inputs: ``noise ~ N(0, I)`` like the position and
    ``log_uniform = log U(0, 1)`` like the energy); accept/reject with ``torch.where``, no host
    sync, compiles with ``torch.compile(fullgraph=True)``.

    References:
        Roberts & Tweedie (1996), "Exponential convergence of Langevin distributions and their
        discrete approximations", Bernoulli 2(4), eq. (2.5)-(2.6).
    """
    x, e, g = state
    eps = torch.as_tensor(step_size, dtype=x.dtype, device=x.device).unsqueeze(-1)
    scale = torch.sqrt(2 * eps)
    y = x - eps * g + scale * noise
    e_y, g_y = energy_and_grad(energy, y)
    # log q(x|y) - log q(y|x) = (|noise|^2 - |x - y + eps grad E(y)|^2 / (2 eps)) / 2
    #                         = c . (noise - c / 2),  c = sqrt(eps / 2) (grad E(x) + grad E(y)),
    # since x - y + eps grad E(y) = sqrt(2 eps) (c - noise).
    c = (0.5 * scale) * (g + g_y)
    log_alpha = (e - e_y) + (c * (noise - 0.5 * c)).sum(-1)
    accept = log_uniform < log_alpha  # False for NaN: never accepted, and flagged below
    new = MCMCState(
        torch.where(accept.unsqueeze(-1), y, x),
        torch.where(accept, e_y, e),
        torch.where(accept.unsqueeze(-1), g_y, g),
    )
    # NaN log_alpha: a NaN gradient at y, or a chain at zero density proposing zero density.
    invalid = _invalid(e_y) | torch.isnan(log_alpha)
    return new, MCMCInfo(torch.exp(log_alpha.clamp(max=0.0)), invalid)


def _start(
    owner: str,
    bounds: tuple | None,
    energy: EnergyFn,
    proposal: Distribution,
    num_samples: int,
    init: Tensor | None,
    generator: torch.Generator | None,
) -> tuple[MCMCState, EnergyFn, Box | None]:
    """Initial positions (from ``init`` or the proposal), mapped into ``u`` space for a box."""
    check_int(owner, "num_samples", num_samples)
    proposal = check_proposal(owner, proposal)
    expected = (num_samples, *proposal.batch_shape, *proposal.event_shape)
    if init is None:
        position = draw(proposal, (num_samples,), generator)
    else:
        if not isinstance(init, Tensor) or not init.is_floating_point():
            raise TypeError(f"{owner}: init must be a floating-point tensor of shape {expected}")
        if tuple(init.shape) != expected:
            raise ValueError(
                f"{owner}: init must have shape [num_samples, *batch, d] = {expected}, "
                f"got {tuple(init.shape)}"
            )
        position = init.detach()
    check_generator(owner, generator, position, what="the samples")
    box = None
    if bounds is not None:
        box = Box(owner, bounds, position)
        energy = box.energy_in_u(energy)
        position = box.to_u(position)
    return init_state(energy, position, owner), energy, box


def _finish(owner: str, state: MCMCState, box: Box | None, invalid: Tensor) -> Tensor:
    if invalid.any():  # the one host sync, after the loop
        raise ValueError(
            f"{owner}: the energy (or its gradient) was NaN, or -inf, at some proposed points (or "
            "a chain sat where the density is zero); energies must be finite, or +inf for zero "
            "density"
        )
    position = state.position if box is None else box.to_x(state.position)
    return position.detach()


@dataclass(frozen=True)
class Langevin:
    """The unadjusted Langevin algorithm (ULA): ``n_steps`` of :func:`langevin_step`.

    Fast and biased: the chain's stationary law is ``p`` only as ``step_size -> 0``. With
    ``bounds`` the chain runs on ``u = logit((x - low) / (high - low))`` with the Jacobian in the
    energy, so samples never leave the box and the target is ``p`` restricted to it.

    Stats: ``acceptance_rate`` (always 1: ULA accepts every move) and ``step_size``, ``[*batch]``.

    References:
        Roberts & Tweedie (1996); Welling & Teh (2011) for its use with learned energies.
    """

    step_size: float | Tensor
    n_steps: int
    bounds: tuple | None = None

    def __post_init__(self) -> None:
        check_positive("Langevin", "step_size", self.step_size)
        check_int("Langevin", "n_steps", self.n_steps)

    def sample(
        self,
        energy: EnergyFn,
        proposal: Distribution,
        num_samples: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        state, energy_u, box = _start(
            "Langevin", self.bounds, energy, proposal, num_samples, init, generator
        )
        x = state.position
        step_size = torch.as_tensor(self.step_size, dtype=x.dtype, device=x.device)
        invalid = _invalid(state.energy)
        for _ in range(self.n_steps):
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            state, info = langevin_step(state, energy_u, noise, step_size=step_size)
            invalid = invalid | info.invalid
        samples = _finish("Langevin", state, box, invalid)
        batch_shape = samples.shape[1:-1]
        stats = {
            "acceptance_rate": torch.ones(batch_shape, dtype=x.dtype, device=x.device),
            "step_size": step_size.expand(batch_shape),
        }
        return SampleResult(samples, stats)


@dataclass(frozen=True)
class MALA:
    """The Metropolis-adjusted Langevin algorithm: exact for ``p ∝ exp(-E)`` at any step size.

    Runs ``warmup_steps`` steps that adapt one step size per batch element toward
    ``target_acceptance`` (Robbins-Monro on ``log eps``: ``log eps += adapt_rate (a - target)``
    with ``a`` the mean acceptance probability over that element's chains), then ``n_steps``
    steps at the adapted, fixed step size (so the kept chain is a valid MCMC chain).

    Stats (``[*batch]``): ``acceptance_rate`` (mean MH acceptance probability over the
    ``n_steps`` non-warm-up steps and all chains) and ``step_size`` (after warm-up).

    Args:
        step_size: initial (or fixed, without warm-up) ``eps``; float or tensor broadcastable to
            the batch shape.
        n_steps: steps kept after warm-up.
        bounds: optional box ``(low, high)``: chains run in logit space (see :class:`Langevin`).
        warmup_steps: adaptation steps before the kept ones (0: no adaptation).
        target_acceptance: the acceptance rate the warm-up aims for (0.574 is optimal for MALA
            in high dimension, Roberts & Rosenthal 1998).
        adapt_rate: gain of the warm-up update of ``log eps``.
    """

    step_size: float | Tensor
    n_steps: int
    bounds: tuple | None = None
    warmup_steps: int = 0
    target_acceptance: float = 0.574
    adapt_rate: float = 1.0

    def __post_init__(self) -> None:
        check_positive("MALA", "step_size", self.step_size)
        check_int("MALA", "n_steps", self.n_steps)
        check_int("MALA", "warmup_steps", self.warmup_steps, minimum=0)
        check_unit_interval("MALA", "target_acceptance", self.target_acceptance, closed=False)
        check_positive_float("MALA", "adapt_rate", self.adapt_rate)

    def sample(
        self,
        energy: EnergyFn,
        proposal: Distribution,
        num_samples: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        state, energy_u, box = _start(
            "MALA", self.bounds, energy, proposal, num_samples, init, generator
        )
        x = state.position
        batch_shape = x.shape[1:-1]
        step_size = torch.as_tensor(self.step_size, dtype=x.dtype, device=x.device)
        step_size = step_size.expand(batch_shape).clone()
        invalid = _invalid(state.energy)
        for _ in range(self.warmup_steps):
            state, info = self._step(state, energy_u, step_size, generator)
            invalid = invalid | info.invalid
            step_size = step_size * torch.exp(
                self.adapt_rate * (info.acceptance_prob.mean(0) - self.target_acceptance)
            )
        accepted = torch.zeros_like(state.energy)
        for _ in range(self.n_steps):
            state, info = self._step(state, energy_u, step_size, generator)
            invalid = invalid | info.invalid
            accepted = accepted + info.acceptance_prob
        samples = _finish("MALA", state, box, invalid)
        stats = {
            "acceptance_rate": accepted.mean(0) / self.n_steps,
            "step_size": step_size,
        }
        return SampleResult(samples, stats)

    @staticmethod
    def _step(
        state: MCMCState,
        energy: EnergyFn,
        step_size: Tensor,
        generator: torch.Generator | None,
    ) -> tuple[MCMCState, MCMCInfo]:
        x = state.position
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        uniform = torch.rand(x.shape[:-1], generator=generator, dtype=x.dtype, device=x.device)
        return mala_step(state, energy, noise, uniform.log(), step_size=step_size)
