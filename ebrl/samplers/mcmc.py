"""The MCMC machinery every chain sampler shares: state, randomness, one loop, warm-up, start
and finish (BlackJAX's design: pure steps over a small state, one loop that owns iteration).

- :class:`MCMCState` caches ``position, energy, grad``, so a step costs one gradient.
- A *step* ``step(state, energy, *randomness, step_size=...) -> (state, MCMCInfo)`` is pure: its
  random numbers come in as tensors, accept/reject is ``torch.where`` (no Python branch on a
  tensor, no host sync), and it compiles with ``torch.compile(fullgraph=True)``.
- A *kernel* ``kernel(state, energy, step_size, generator) -> (state, MCMCInfo)`` draws that
  randomness from the generator (:func:`gaussian_noise`, :func:`mh_log_uniform`) and calls the
  step.
- :func:`run_chain` owns iteration: ``warmup_steps`` that adapt one step size per batch element
  toward a target acceptance rate, then ``n_steps`` kept steps at the adapted step size;
  acceptance and validity accumulate as tensors; diagnostics come back in a :class:`ChainInfo`.
- :func:`sample_chain` is a whole ``sampler.sample`` call: start (from ``init`` or the proposal,
  in logit space when there are ``bounds``), :func:`run_chain`, the map back into the box, then
  the one host sync: the check that raises on invalid energies and warns
  (:class:`~ebrl.samplers.SamplerWarning`) about chains that never moved or ended on the bounds.

A new sampler is a step function plus a thin frozen dataclass; HMC, for example::

    def hmc_step(state, energy, momentum, log_u, *, step_size, n_leapfrog):
        # leapfrog from (state.position, momentum) reusing state.grad; MH on the total energy
        # E(x) + |p|^2 / 2 with torch.where; return the new state and
        # MCMCInfo(acceptance_prob, invalid_energy(proposed_energy) | isnan(log_alpha))
        ...

    @dataclass(frozen=True)
    class HMC:
        step_size: float | Tensor
        n_steps: int
        n_leapfrog: int = 10
        bounds: tuple | None = None
        warmup_steps: int = 0
        target_acceptance: float = 0.65
        check: bool = True

        def _kernel(self, state, energy, step_size, generator):
            momentum = gaussian_noise(state.position, generator)
            log_u = mh_log_uniform(state.position, generator)
            return hmc_step(
                state, energy, momentum, log_u, step_size=step_size, n_leapfrog=self.n_leapfrog
            )

        def sample(self, energy, proposal, num_samples=1, init=None, generator=None):
            return sample_chain(
                "HMC", self._kernel, energy, proposal, num_samples, init, generator,
                bounds=self.bounds, n_steps=self.n_steps, step_size=self.step_size,
                warmup_steps=self.warmup_steps, target_acceptance=self.target_acceptance,
                check=self.check,
            )

Box bounds, init and proposal checks, warm-up, the acceptance statistics and the end-of-call
check then come for free, and the step compiles like :func:`~ebrl.samplers.langevin.mala_step` does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebrl.samplers.base import (
    Box,
    EnergyFn,
    SampleResult,
    SamplerWarning,
    call_energy,
    check_generator_type,
    check_proposal,
    draw_proposal,
    energy_and_grad,
)
from ebrl.validation import check_energy_output, check_generator, check_int

__all__ = [
    "ChainInfo",
    "Kernel",
    "MCMCInfo",
    "MCMCState",
    "gaussian_noise",
    "init_state",
    "invalid_energy",
    "mh_log_uniform",
    "run_chain",
    "sample_chain",
]


class MCMCState(NamedTuple):
    """A chain's position with its energy and energy gradient cached (one gradient per step)."""

    position: Tensor  # [n, *batch, d]
    energy: Tensor  # [n, *batch]
    grad: Tensor  # [n, *batch, d], grad of the energy (not of log p)


class MCMCInfo(NamedTuple):
    """What one step reports."""

    acceptance_prob: Tensor  # [n, *batch], the Metropolis-Hastings probability (ULA: a 0-d 1)
    invalid: Tensor  # [n, *batch] bool: NaN or -inf energy (MALA: or NaN gradient) at the proposal


class ChainInfo(NamedTuple):
    """What :func:`run_chain` reports (tensors: no host sync)."""

    acceptance_rate: Tensor  # [*batch], mean acceptance probability over kept steps and chains
    step_size: Tensor  # [*batch], after warm-up
    invalid: Tensor  # [n, *batch] bool: any step of that chain met an invalid energy
    stuck_fraction: Tensor  # [*batch], chains whose every kept proposal had acceptance prob 0


Kernel = Callable[[MCMCState, EnergyFn, Tensor, torch.Generator | None], tuple[MCMCState, MCMCInfo]]


def init_state(energy: EnergyFn, position: Tensor, owner: str = "init_state") -> MCMCState:
    """Evaluates energy and gradient at ``position``, checking the energy's output shape once."""
    e, grad = call_energy(owner, lambda x: energy_and_grad(energy, x), position)
    check_energy_output(owner, e, position)
    return MCMCState(position, e, grad)


def invalid_energy(energy: Tensor) -> Tensor:
    """NaN or -inf energy (``+inf`` is a valid zero density); one comparison catches both."""
    return ~(energy > -math.inf)


def gaussian_noise(position: Tensor, generator: torch.Generator | None) -> Tensor:
    """``N(0, I)`` noise shaped like ``position`` (``[n, *batch, d]``)."""
    return torch.randn(
        position.shape, generator=generator, dtype=position.dtype, device=position.device
    )


def mh_log_uniform(position: Tensor, generator: torch.Generator | None) -> Tensor:
    """``log U(0, 1)``, one per chain (``[n, *batch]``), for a Metropolis-Hastings test."""
    shape = position.shape[:-1]
    u = torch.rand(shape, generator=generator, dtype=position.dtype, device=position.device)
    return u.log()


def run_chain(
    kernel: Kernel,
    energy: EnergyFn,
    state: MCMCState,
    *,
    n_steps: int,
    step_size: float | Tensor,
    generator: torch.Generator | None = None,
    warmup_steps: int = 0,
    target_acceptance: float = 0.574,
    adapt_rate: float = 1.0,
) -> tuple[MCMCState, ChainInfo]:
    """``warmup_steps`` adaptive steps, then ``n_steps`` kept ones, of ``kernel`` from ``state``.

    The warm-up adapts one step size per batch element by Robbins-Monro on ``log eps``:
    ``log eps += adapt_rate (a - target_acceptance)``, with ``a`` the mean acceptance probability
    over that element's chains; the kept steps then run at the adapted, fixed step size, so they
    form a valid MCMC chain. No host sync: the caller checks ``ChainInfo.invalid`` afterwards.

    A chain is *stuck* when every one of its ``n_steps`` kept proposals had acceptance
    probability exactly 0 (the Metropolis-Hastings ratio underflowed): it cannot have moved.
    ULA accepts every move, so its chains are never stuck.

    Args:
        kernel: ``(state, energy, step_size [*batch], generator) -> (state, MCMCInfo)``.
        energy: the energy the kernel moves on.
        state: the start, from :func:`init_state`.
        n_steps: kept steps.
        step_size: initial ``eps``, a float or a tensor broadcastable to the batch shape.
        generator: passed to the kernel for its random numbers.
        warmup_steps, target_acceptance, adapt_rate: the step-size adaptation.

    Returns:
        ``(final state, ChainInfo)``.
    """
    x = state.position
    step_size = torch.as_tensor(step_size, dtype=x.dtype, device=x.device)
    step_size = step_size.expand(x.shape[1:-1]).clone()
    invalid = invalid_energy(state.energy)
    for _ in range(warmup_steps):
        state, info = kernel(state, energy, step_size, generator)
        invalid = invalid | info.invalid
        step_size = step_size * torch.exp(
            adapt_rate * (info.acceptance_prob.mean(0) - target_acceptance)
        )
    accepted = torch.zeros_like(state.energy)
    for _ in range(n_steps):
        state, info = kernel(state, energy, step_size, generator)
        invalid = invalid | info.invalid
        accepted = accepted + info.acceptance_prob
    stuck_fraction = (accepted == 0).to(accepted.dtype).mean(0)
    return state, ChainInfo(accepted.mean(0) / n_steps, step_size, invalid, stuck_fraction)


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


class _Start(NamedTuple):
    state: MCMCState  # in u space with a box
    energy: EnergyFn  # the energy the chain moves on (in u space with a box)
    box: Box | None
    finite: Tensor  # 0-d bool: every initial coordinate is finite
    on_bound: Tensor | None  # [n, *batch, d] bool: initial coordinates on a bound (with a box)


def _start(
    owner: str,
    energy: EnergyFn,
    proposal: Distribution,
    num_samples: int,
    init: Tensor | None,
    generator: torch.Generator | None,
    bounds: tuple | None,
) -> _Start:
    """Initial positions (from ``init`` or the proposal), mapped into ``u`` space for a box.

    Points outside the box are reflected back in (:meth:`Box.reflect`): clamped, they would
    enter ``u`` space at ``logit(1e-6) = -13.8``, hundreds of steps from the bulk of the target.
    """
    check_int(owner, "num_samples", num_samples)
    proposal = check_proposal(owner, proposal)
    check_generator_type(owner, generator)
    expected = (num_samples, *proposal.batch_shape, *proposal.event_shape)
    if init is None:
        position = draw_proposal(owner, proposal, (num_samples,), generator)
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
    finite = torch.isfinite(position).all()  # checked after the loop, in the one host sync
    box = on_bound = None
    if bounds is not None:
        box = Box(owner, bounds, position)
        energy = box.energy_in_u(energy)
        position = box.reflect(position)
        on_bound = box.on_bound(position)
        position = box.to_u(position)
    return _Start(init_state(energy, position, owner), energy, box, finite, on_bound)


def _check(
    owner: str, start: _Start, info: ChainInfo, on_bound: Tensor | None, n_steps: int
) -> None:
    """The one host sync of a call: raises on non-finite starts or invalid energies, warns
    (:class:`SamplerWarning`) when every chain of a batch element is stuck or when most
    coordinates that started off the bounds ended on them."""
    all_stuck = info.stuck_fraction == 1  # [*batch]
    landed = left = all_stuck.new_zeros((), dtype=torch.long)
    if on_bound is not None:
        started_off = ~start.on_bound
        landed, left = (started_off & on_bound).sum(), started_off.sum()
    flags = [~start.finite, info.invalid.any(), all_stuck.sum(), landed, left]
    counts = torch.stack([f.to(torch.long) for f in flags]).tolist()
    non_finite_start, invalid, n_stuck, n_landed, n_left = counts
    if non_finite_start:
        raise ValueError(
            f"{owner}: the initial points (init, or the proposal's draws) contain NaN or inf"
        )
    if invalid:
        raise ValueError(
            f"{owner}: the energy (or its gradient) was NaN, or -inf, at some proposed points (or "
            "a chain sat where the density is zero); energies must be finite, or +inf for zero "
            "density"
        )
    if n_stuck:
        warnings.warn(
            f"{owner}: every chain of {n_stuck} of {all_stuck.numel()} batch element(s) stayed "
            f"where it started (all {n_steps} proposals had acceptance probability 0; "
            "stats['stuck_fraction'] == 1): step_size is far too large for this energy; lower "
            "it, or set warmup_steps > 0 to adapt it",
            SamplerWarning,
            stacklevel=4,
        )
    # A bounded density puts a fraction ~finfo.eps of its mass on the bounds: when more than
    # half the coordinates that started off them end there, the chains were thrown there.
    if 2 * n_landed > n_left > 0:
        warnings.warn(
            f"{owner}: {n_landed} of the {n_left} coordinates that started inside the box ended "
            "on its bounds (within floating-point resolution; stats['at_bounds_fraction']): the "
            "steps are too large for the box's logit space (its Jacobian term alone makes ULA "
            "unstable there above step_size ~ 4); lower step_size, or use MALA",
            SamplerWarning,
            stacklevel=4,
        )


def sample_chain(
    owner: str,
    kernel: Kernel,
    energy: EnergyFn,
    proposal: Distribution,
    num_samples: int,
    init: Tensor | None,
    generator: torch.Generator | None,
    *,
    bounds: tuple | None,
    n_steps: int,
    step_size: float | Tensor,
    warmup_steps: int = 0,
    target_acceptance: float = 0.574,
    adapt_rate: float = 1.0,
    check: bool = True,
) -> SampleResult:
    """One ``sampler.sample`` call of an MCMC sampler named ``owner`` built on ``kernel``.

    Starts ``num_samples`` chains per batch element at ``init`` or at proposal draws (in logit
    space with ``bounds``: see :class:`~ebrl.samplers.Box`; initial points outside the box are
    reflected back in), runs :func:`run_chain`, and returns the final positions with the stats
    (``[*batch]``):

    - ``acceptance_rate``, ``step_size``: as in :class:`ChainInfo`;
    - ``stuck_fraction``: the fraction of chains that cannot have moved (every kept proposal
      had acceptance probability 0; always 0 for ULA);
    - ``at_bounds_fraction``: the fraction of sample coordinates on a bound of the box, within
      floating-point resolution (:meth:`~ebrl.samplers.Box.on_bound`; 0 without bounds).

    With ``check=True`` the call ends with one host sync that raises ``ValueError`` on
    non-finite initial points or invalid energies, and warns (:class:`SamplerWarning`) when
    every chain of a batch element is stuck, or when more than half the coordinates that
    started off the bounds ended on them (a bounded target density puts a fraction of order
    ``finfo.eps`` of its mass there). ``check=False`` skips it (no host sync): the stats still
    report stuck chains and samples on the bounds, but invalid energies and non-finite starts
    go unreported (the samples may then hold NaN).
    """
    start = _start(owner, energy, proposal, num_samples, init, generator, bounds)
    batch_shape = start.state.energy.shape[1:]
    if isinstance(step_size, Tensor) and not _broadcasts_to(step_size.shape, batch_shape):
        raise ValueError(
            f"{owner}: step_size of shape {tuple(step_size.shape)} does not broadcast to the "
            f"batch shape {tuple(batch_shape)} (one step size per batch element, or a scalar)"
        )
    state, info = run_chain(
        kernel,
        start.energy,
        start.state,
        n_steps=n_steps,
        step_size=step_size,
        generator=generator,
        warmup_steps=warmup_steps,
        target_acceptance=target_acceptance,
        adapt_rate=adapt_rate,
    )
    box = start.box
    samples = (state.position if box is None else box.to_x(state.position)).detach()
    on_bound = None if box is None else box.on_bound(samples)
    if on_bound is None:
        at_bounds = torch.zeros_like(info.stuck_fraction)
    else:
        at_bounds = on_bound.to(samples.dtype).mean((0, -1))
    stats = {
        "acceptance_rate": info.acceptance_rate,
        "step_size": info.step_size,
        "stuck_fraction": info.stuck_fraction,
        "at_bounds_fraction": at_bounds,
    }
    if check:
        _check(owner, start, info, on_bound, n_steps)
    return SampleResult(samples, stats)
