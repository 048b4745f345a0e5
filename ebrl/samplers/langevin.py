"""Langevin samplers: the unadjusted Langevin algorithm (ULA) and Metropolis-adjusted Langevin
(MALA), each a pure step (:func:`langevin_step`, :func:`mala_step`) and a thin class over the
shared chain loop of :mod:`ebrl.samplers.mcmc`.

Both use the textbook convention for ``p ∝ exp(-E)``::

    x' = x - eps * grad E(x) + sqrt(2 eps) * xi,    xi ~ N(0, I)

MALA accepts ``x'`` with probability ``min(1, exp(-E(x')) q(x | x') / (exp(-E(x)) q(x' | x)))``,
so it samples ``p`` exactly; ULA does not correct, and for a Gaussian target with precision
``P`` its stationary covariance is ``P^-1 (I - eps P / 2)^-1`` instead of ``P^-1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebrl.samplers.base import EnergyFn, SampleResult, check_bool, energy_and_grad
from ebrl.samplers.mcmc import (
    MCMCInfo,
    MCMCState,
    gaussian_noise,
    invalid_energy,
    mh_log_uniform,
    sample_chain,
)
from ebrl.validation import check_int, check_positive, check_positive_float, check_unit_interval

__all__ = ["MALA", "Langevin", "langevin_step", "mala_step"]


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
    info = MCMCInfo(e.new_ones(()), invalid_energy(e))  # ULA accepts every move
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
    invalid = invalid_energy(e_y) | torch.isnan(log_alpha)
    return new, MCMCInfo(torch.exp(log_alpha.clamp(max=0.0)), invalid)


def _langevin_kernel(
    state: MCMCState, energy: EnergyFn, step_size: Tensor, generator: torch.Generator | None
) -> tuple[MCMCState, MCMCInfo]:
    return langevin_step(
        state, energy, gaussian_noise(state.position, generator), step_size=step_size
    )


def _mala_kernel(
    state: MCMCState, energy: EnergyFn, step_size: Tensor, generator: torch.Generator | None
) -> tuple[MCMCState, MCMCInfo]:
    noise = gaussian_noise(state.position, generator)
    log_u = mh_log_uniform(state.position, generator)
    return mala_step(state, energy, noise, log_u, step_size=step_size)


@dataclass(frozen=True)
class Langevin:
    """The unadjusted Langevin algorithm (ULA): ``n_steps`` of :func:`langevin_step`.

    Fast and biased: the chain's stationary law is ``p`` only as ``step_size -> 0``. With
    ``bounds`` the chain runs on ``u = logit((x - low) / (high - low))`` with the Jacobian in the
    energy, so samples never leave the box and the target is ``p`` restricted to it.

    Initial points outside the box are reflected back in (:meth:`~ebrl.samplers.Box.reflect`).

    Stats (``[*batch]``): ``acceptance_rate`` (always 1: ULA accepts every move), ``step_size``,
    ``stuck_fraction`` (always 0) and ``at_bounds_fraction`` (sample coordinates on a bound,
    within floating-point resolution: too large a step throws ULA's chains there).

    With ``check=True`` each call ends with one host sync that raises ``ValueError`` on NaN
    or ``-inf`` energies and warns (:class:`~ebrl.samplers.SamplerWarning`) when more than half
    the coordinates that started off the bounds ended on them; ``check=False`` skips it (see
    :func:`~ebrl.samplers.sample_chain`).

    References:
        Roberts & Tweedie (1996); Welling & Teh (2011) for its use with learned energies.
    """

    step_size: float | Tensor
    n_steps: int
    bounds: tuple | None = None
    check: bool = True

    def __post_init__(self) -> None:
        check_positive("Langevin", "step_size", self.step_size)
        check_int("Langevin", "n_steps", self.n_steps)
        check_bool("Langevin", "check", self.check)

    def sample(
        self,
        energy: EnergyFn,
        proposal: Distribution,
        num_samples: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        return sample_chain(
            "Langevin",
            _langevin_kernel,
            energy,
            proposal,
            num_samples,
            init,
            generator,
            bounds=self.bounds,
            n_steps=self.n_steps,
            step_size=self.step_size,
            check=self.check,
        )


@dataclass(frozen=True)
class MALA:
    """The Metropolis-adjusted Langevin algorithm: exact for ``p ∝ exp(-E)`` at any step size.

    Runs ``warmup_steps`` steps that adapt one step size per batch element toward
    ``target_acceptance`` (Robbins-Monro on ``log eps``: ``log eps += adapt_rate (a - target)``
    with ``a`` the mean acceptance probability over that element's chains), then ``n_steps``
    steps at the adapted, fixed step size (so the kept chain is a valid MCMC chain).

    Stats (``[*batch]``): ``acceptance_rate`` (mean MH acceptance probability over the
    ``n_steps`` non-warm-up steps and all chains), ``step_size`` (after warm-up),
    ``stuck_fraction`` (chains whose every kept proposal had acceptance probability 0: they
    cannot have moved) and ``at_bounds_fraction`` (sample coordinates on a bound, within
    floating-point resolution; 0 without bounds).

    Args:
        step_size: initial (or fixed, without warm-up) ``eps``; float or tensor broadcastable to
            the batch shape.
        n_steps: steps kept after warm-up.
        bounds: optional box ``(low, high)``: chains run in logit space, initial points outside
            it are reflected back in (see :class:`Langevin`).
        warmup_steps: adaptation steps before the kept ones (0: no adaptation).
        target_acceptance: the acceptance rate the warm-up aims for (0.574 is optimal for MALA
            in high dimension, Roberts & Rosenthal 1998).
        adapt_rate: gain of the warm-up update of ``log eps``.
        check: end each call with one host sync that raises ``ValueError`` on NaN or ``-inf``
            energies and warns (:class:`~ebrl.samplers.SamplerWarning`) when every chain of a
            batch element is stuck or the chains were thrown onto the bounds; ``False`` skips
            it, for hot loops that read the stats instead (see
            :func:`~ebrl.samplers.sample_chain`).
    """

    step_size: float | Tensor
    n_steps: int
    bounds: tuple | None = None
    warmup_steps: int = 0
    target_acceptance: float = 0.574
    adapt_rate: float = 1.0
    check: bool = True

    def __post_init__(self) -> None:
        check_positive("MALA", "step_size", self.step_size)
        check_int("MALA", "n_steps", self.n_steps)
        check_int("MALA", "warmup_steps", self.warmup_steps, minimum=0)
        check_unit_interval("MALA", "target_acceptance", self.target_acceptance, closed=False)
        check_positive_float("MALA", "adapt_rate", self.adapt_rate)
        check_bool("MALA", "check", self.check)

    def sample(
        self,
        energy: EnergyFn,
        proposal: Distribution,
        num_samples: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        return sample_chain(
            "MALA",
            _mala_kernel,
            energy,
            proposal,
            num_samples,
            init,
            generator,
            bounds=self.bounds,
            n_steps=self.n_steps,
            step_size=self.step_size,
            warmup_steps=self.warmup_steps,
            target_acceptance=self.target_acceptance,
            adapt_rate=self.adapt_rate,
            check=self.check,
        )
