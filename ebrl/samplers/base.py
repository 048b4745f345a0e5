"""Pieces every sampler shares: the result type, input checks, energy evaluation, box bounds,
and drawing from ``torch.distributions`` proposals with an explicit generator."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor
from torch.distributions import (
    AffineTransform,
    Distribution,
    ExpTransform,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    SigmoidTransform,
    TanhTransform,
    TransformedDistribution,
    Uniform,
)
from torch.distributions.transforms import ComposeTransform

from ebrl.validation import check_energy_output

__all__ = [
    "Box",
    "EnergyFn",
    "SampleResult",
    "SamplerWarning",
    "call_energy",
    "categorical_draw",
    "check_bool",
    "check_generator_type",
    "check_proposal",
    "draw",
    "draw_proposal",
    "energy_and_grad",
    "evaluate_energy",
]

EnergyFn = Callable[[Tensor], Tensor]
T = TypeVar("T")
_BAD_BOUNDS = "{owner}: bounds must be finite with low < high, got {bounds!r}"


class SamplerWarning(RuntimeWarning):
    """A sampler's own check found that its samples are not to be trusted (chains that never
    moved, samples thrown onto the box's bounds); the message names the sampler, the failure
    and the fix. Turn it into an error with ``warnings.simplefilter("error", SamplerWarning)``.
    """


class SampleResult(NamedTuple):
    """What every sampler returns.

    Attributes:
        samples: ``[num_samples, *batch, d]``, detached.
        stats: diagnostics as tensors (no host sync), e.g. ``acceptance_rate`` and ``step_size``
            (MCMC, shape ``[*batch]``), ``ess`` and ``log_normalizer`` (importance sampling,
            shape ``[*batch]``).
    """

    samples: Tensor
    stats: dict[str, Tensor]


def check_bool(owner: str, name: str, value: object) -> bool:
    """A Python ``bool`` (e.g. a sampler's ``check`` flag); ``TypeError`` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, got {value!r}")
    return value


def check_generator_type(owner: str, generator: object) -> None:
    """``None`` or a ``torch.Generator``, checked before any draw hands it to torch (its device
    is checked against the samples by :func:`ebrl.validation.check_generator`)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{owner}: generator must be a torch.Generator or None, got {type(generator).__name__}"
        )


def draw_proposal(
    owner: str, proposal: Distribution, sample_shape: tuple[int, ...], generator
) -> Tensor:
    """:func:`draw` for a sampler named ``owner``: torch's own errors from ``proposal.sample``
    (e.g. ``normal expects all elements of std >= 0.0`` for a NaN scale) become a ``ValueError``
    that names the proposal."""
    try:
        return draw(proposal, sample_shape, generator)
    except RuntimeError as err:
        raise ValueError(
            f"{owner}: drawing from the proposal failed (are its parameters finite?): {err}"
        ) from err


def check_proposal(owner: str, proposal: object) -> Distribution:
    if not isinstance(proposal, Distribution):
        raise TypeError(
            f"{owner}: proposal must be a torch.distributions.Distribution, got "
            f"{type(proposal).__name__}"
        )
    if len(proposal.event_shape) != 1:
        raise ValueError(
            f"{owner}: proposal must have event shape [d], got {tuple(proposal.event_shape)} "
            "(wrap a batch of scalars with Independent(..., 1) or add a trailing dim)"
        )
    return proposal


def call_energy(owner: str, call: Callable[[Tensor], T], x: Tensor) -> T:
    """``call(x)`` (an energy, or :func:`energy_and_grad` of one), re-raising a failure as a
    ``ValueError`` that names ``owner`` and the shape the energy was given."""
    try:
        return call(x)
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(
            f"{owner}: energy failed on x of shape {tuple(x.shape)} = [num_samples, *batch, d] "
            f"(does the energy's batch shape match the proposal's?): {err}"
        ) from err


def evaluate_energy(owner: str, energy: EnergyFn, x: Tensor) -> Tensor:
    """Calls ``energy(x)`` once with a clear error for a failing call or a wrong output shape.

    Used for the first evaluation of a sampler call only: shapes are static, so later calls in a
    loop need no check.
    """
    return check_energy_output(owner, call_energy(owner, energy, x), x)


def energy_and_grad(energy: EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(E(x), grad_x E(x))``, both detached, in one forward and one backward pass.

    Eagerly this is ``torch.autograd.grad`` (the cheapest path); under ``torch.compile`` it is
    ``torch.func.grad``, which traces without a graph break.

    An energy whose output does not depend on ``x`` through autograd (a constant, e.g.
    ``torch.zeros(x.shape[:-1])``) has gradient zero: Langevin is then a random walk and MALA a
    random-walk Metropolis sampler. The same holds for an energy computed under ``no_grad`` or
    detached, so keep the graph to ``x`` when the energy does depend on it.
    """
    if torch.compiler.is_compiling():

        def total(y: Tensor) -> tuple[Tensor, Tensor]:
            e = energy(y)
            return e.sum(), e

        grad, e = torch.func.grad(total, has_aux=True)(x)
        return e, grad
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        e = energy(y)
        if not isinstance(e, Tensor):  # returned as is, for the caller's check (init_state)
            return e, torch.zeros_like(x)
        if not e.requires_grad:  # no graph at all (a constant): autograd.grad would raise
            return e.detach(), torch.zeros_like(x)
        (grad,) = torch.autograd.grad(e.sum(), y, materialize_grads=True)  # unused y: zeros
    return e.detach(), grad


class Box:
    """An axis-aligned box ``[low, high]`` and the bijection ``x = low + (high - low) sigmoid(u)``.

    MCMC inside the box runs on the unconstrained ``u`` with the change-of-variables energy
    ``E_u(u) = E(x(u)) - sum log |dx/du|``, so the chain targets exactly ``p`` restricted to the
    box and samples can never leave it.

    A coordinate is *on a bound* (:meth:`on_bound`) when it lies within ``finfo.eps`` times the
    width of it, where ``x(u)`` saturates: ``|u|`` beyond about 15.9 (float32) or 36.0
    (float64). A target whose density is bounded puts a fraction of order ``finfo.eps`` of its
    mass there.
    """

    def __init__(self, owner: str, bounds: tuple, like: Tensor):
        if not isinstance(bounds, tuple | list) or len(bounds) != 2:
            raise ValueError(f"{owner}: bounds must be a pair (low, high), got {bounds!r}")
        if all(isinstance(b, numbers.Real) for b in bounds):  # checked on the host: no sync
            lo, hi = float(bounds[0]), float(bounds[1])
            finfo = torch.finfo(like.dtype)  # finite in the dtype, and distinct once rounded
            gap = finfo.eps * max(abs(lo), finfo.tiny)
            if not (max(abs(lo), abs(hi)) <= finfo.max and hi - lo > gap):
                raise ValueError(_BAD_BOUNDS.format(owner=owner, bounds=bounds))
            low, high = (torch.full((), b, dtype=like.dtype, device=like.device) for b in (lo, hi))
        else:  # tensors (e.g. per dimension): checked where they live (one host sync per call)
            low, high = (torch.as_tensor(b, dtype=like.dtype, device=like.device) for b in bounds)
            if not (torch.isfinite(low) & torch.isfinite(high) & (low < high)).all():
                raise ValueError(_BAD_BOUNDS.format(owner=owner, bounds=bounds))
            try:
                torch.broadcast_shapes(low.shape, high.shape, like.shape[-1:])
            except RuntimeError as err:
                raise ValueError(
                    f"{owner}: bounds of shapes {tuple(low.shape)}, {tuple(high.shape)} do not "
                    f"broadcast to the event shape [{like.shape[-1]}]"
                ) from err
        self.low, self.high, self.width = low, high, high - low
        # sigmoid saturates in finite precision: keep x strictly inside the box (so that
        # log-densities that blow up on the boundary, like a squashed Gaussian's, stay finite).
        # Initial points on the boundary enter u space at logit(1e-6) = -13.8, not at
        # logit(finfo.eps) = -36 (float64), which a chain would take long to walk back from
        # (points outside are first reflected in: see reflect).
        self.margin = max(torch.finfo(like.dtype).eps, 1e-6)
        self.inner_low = torch.nextafter(low, high)
        self.inner_high = torch.nextafter(high, low)

    def to_x(self, u: Tensor) -> Tensor:
        x = self.low + self.width * torch.sigmoid(u)
        return torch.minimum(torch.maximum(x, self.inner_low), self.inner_high)

    def reflect(self, x: Tensor) -> Tensor:
        """Folds coordinates outside the box back in by reflecting at the bounds (as a reflected
        random walk would; repeatedly for points more than a width outside). Points inside,
        bounds included, are returned unchanged."""
        t = ((x - self.low) / self.width).remainder(2.0)  # in [0, 2)
        folded = self.low + self.width * (1 - (t - 1).abs())
        return torch.where((x >= self.low) & (x <= self.high), x, folded)

    def on_bound(self, x: Tensor) -> Tensor:
        """Coordinatewise: ``x`` within ``finfo.eps`` of a bound relative to the width (or
        beyond it), where ``x(u)`` no longer resolves ``u``."""
        unit = (x - self.low) / self.width
        eps = torch.finfo(x.dtype).eps
        return (unit <= eps) | (unit >= 1 - eps)

    def to_u(self, x: Tensor) -> Tensor:
        unit = ((x - self.low) / self.width).clamp(self.margin, 1 - self.margin)
        return torch.logit(unit)

    def contains(self, x: Tensor) -> Tensor:
        return ((x >= self.low) & (x <= self.high)).all(-1)

    def energy_in_u(self, energy: EnergyFn) -> EnergyFn:
        """``E_u(u) = E(x(u)) - log |dx/du|`` up to the constant ``sum log(high - low)``."""

        def energy_u(u: Tensor) -> Tensor:
            # log dx/du = log(width) + log sigmoid(u) + log sigmoid(-u)
            #           = log(width) - softplus(-u) - softplus(u)
            softplus = torch.nn.functional.softplus
            return energy(self.to_x(u)) + (softplus(u) + softplus(-u)).sum(-1)

        return energy_u


def categorical_draw(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One index per row of ``probs [..., n]`` (nonnegative weights, normalised or not):
    ``torch.multinomial(probs, 1)[..., 0]``, by that function's own algorithm for one draw
    (``argmax_i p_i / e_i`` with ``e_i ~ Exp(1)``, the Gumbel-max trick in exp form), so the same
    draws from the same generator state.

    What it leaves out is ``torch.multinomial``'s check of its input: on a CPU ~10 small ops
    and two reads of results back to the host per call (~9 us in isolation; ~30 us of a
    CartPole agent's ~210 us env step in its training loop, where caches are cold), on a GPU ~10
    kernel launches and a device-side assert that ends the CUDA context on bad input. The
    caller validates instead (the agents once per call, where they read a result back anyway):
    an invalid row (a NaN, an infinite or negative weight, all zeros) gets some index, not an
    error. Its arguments' types and shape are checked (on the host, no sync).
    """
    if not isinstance(probs, Tensor) or not probs.is_floating_point():
        got = probs.dtype if isinstance(probs, Tensor) else type(probs).__name__
        raise TypeError(f"categorical_draw: probs must be a floating-point tensor, got {got}")
    if probs.dim() < 1 or probs.shape[-1] < 1:
        raise ValueError(
            f"categorical_draw: probs must be [..., n] with n >= 1 categories, got shape "
            f"{tuple(probs.shape)}"
        )
    check_generator_type("categorical_draw", generator)
    exponential = torch.empty_like(probs).exponential_(generator=generator)
    return (probs / exponential).argmax(-1)


def draw(
    proposal: Distribution,
    sample_shape: tuple[int, ...],
    generator: torch.Generator | None,
    *,
    reparameterized: bool = False,
) -> Tensor:
    """``proposal.sample(sample_shape)`` using ``generator`` for every random number.

    ``torch.distributions`` draw from the global RNG; this reimplements the draw for the
    families ebrl uses (Normal, Uniform, MultivariateNormal, Independent, MixtureSameFamily and
    TransformedDistribution over them) so that sampling is reproducible from an explicit
    generator. Other families fall back to ``proposal.sample`` inside ``torch.random.fork_rng``
    seeded from ``generator`` (one host sync, outside any sampler loop).

    With ``reparameterized=True`` the draw is ``proposal.rsample`` (gradients flow to the
    distribution's parameters); only the location-scale families and transforms of them
    support it (``TypeError`` otherwise).
    """
    if reparameterized:
        if not proposal.has_rsample:
            raise TypeError(f"draw: {type(proposal).__name__} has no reparameterised sample")
        if generator is None:
            return proposal.rsample(sample_shape)
        return _draw_known(proposal, sample_shape, generator, reparameterized=True)
    from ebrl.samplers.mixture import Mixture  # a proposal type of ours, sampled here

    if isinstance(proposal, Mixture):
        draws = [draw(c, sample_shape, generator) for c in proposal.components]
        shape = (*sample_shape, *proposal.batch_shape)
        uniform = torch.rand(shape, generator=generator, device=draws[0].device)
        return proposal._select(draws, uniform.to(draws[0].dtype))
    if generator is None:
        return proposal.sample(sample_shape)
    with torch.no_grad():
        return _draw_known(proposal, sample_shape, generator, reparameterized=False)


def _draw_known(
    proposal: Distribution,
    sample_shape: tuple[int, ...],
    generator: torch.Generator,
    *,
    reparameterized: bool,
) -> Tensor:
    shape = proposal._extended_shape(sample_shape)
    if isinstance(proposal, Normal):
        eps = torch.randn(
            shape, generator=generator, dtype=proposal.loc.dtype, device=proposal.loc.device
        )
        return proposal.loc + proposal.scale * eps
    if isinstance(proposal, Uniform):
        u = torch.rand(
            shape, generator=generator, dtype=proposal.low.dtype, device=proposal.low.device
        )
        return proposal.low + (proposal.high - proposal.low) * u
    if isinstance(proposal, MultivariateNormal):
        eps = torch.randn(
            shape, generator=generator, dtype=proposal.loc.dtype, device=proposal.loc.device
        )
        return proposal.loc + (proposal.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    if isinstance(proposal, Independent):
        return _draw_known(
            proposal.base_dist, sample_shape, generator, reparameterized=reparameterized
        )
    if isinstance(proposal, TransformedDistribution) and all(
        _known_transform(t) for t in proposal.transforms
    ):
        x = _draw_known(
            proposal.base_dist, sample_shape, generator, reparameterized=reparameterized
        )
        for transform in proposal.transforms:
            x = transform(x)
        return x
    from ebrl.policies.distributions import TruncatedNormal  # a family of ours (lazy: a cycle)

    if isinstance(proposal, TruncatedNormal):
        u = torch.rand(
            shape, generator=generator, dtype=proposal.loc.dtype, device=proposal.loc.device
        )
        return proposal.icdf(u)
    if isinstance(proposal, MixtureSameFamily) and not reparameterized:
        probs = proposal.mixture_distribution.probs  # [*batch, K]
        k = probs.shape[-1]
        flat = probs.reshape(-1, k)
        n = math.prod(sample_shape)
        idx = torch.multinomial(flat, n, replacement=True, generator=generator)  # [B, n]
        idx = idx.T.reshape(*sample_shape, *probs.shape[:-1])
        comps = _draw_known(
            proposal.component_distribution, sample_shape, generator, reparameterized=False
        )
        event = proposal.event_shape
        index = idx.reshape(*idx.shape, 1, *([1] * len(event))).expand(*idx.shape, 1, *event)
        return torch.gather(comps, idx.dim(), index).squeeze(idx.dim())
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    devices = [generator.device] if generator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return proposal.rsample(sample_shape) if reparameterized else proposal.sample(sample_shape)


def _known_transform(transform: object) -> bool:
    if isinstance(transform, ComposeTransform):
        return all(_known_transform(t) for t in transform.parts)
    return isinstance(transform, AffineTransform | TanhTransform | SigmoidTransform | ExpTransform)
