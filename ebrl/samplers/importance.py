"""Self-normalised importance sampling with resampling (sampling-importance-resampling)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebrl.samplers.base import (
    Box,
    EnergyFn,
    SampleResult,
    categorical_draw,
    check_bool,
    check_generator_type,
    check_proposal,
    draw_proposal,
    evaluate_energy,
)
from ebrl.validation import check_int

__all__ = ["ImportanceSampler", "effective_sample_size", "log_normalizer"]

_NAME = "ImportanceSampler"
_INVALID = (
    f"{_NAME}: energy or proposal log_prob is NaN (or the energy is -inf, or the proposal's "
    "log_prob -inf at its own draws) for some particles; the energy must be finite or +inf "
    "(zero density)"
)


def _invalid(log_weights: Tensor) -> Tensor:
    """NaN, or +inf: an energy of -inf, or a proposal density of zero at its own draw."""
    return torch.isnan(log_weights) | (log_weights == math.inf)


def log_normalizer(log_weights: Tensor, dim: int = 0) -> Tensor:
    """``log (1/n sum_i w_i)``: the importance estimate of ``log Z`` (log-space, stable)."""
    return torch.logsumexp(log_weights, dim) - math.log(log_weights.shape[dim])


def normalized_weights(log_weights: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    """``(softmax(log w), log_normalizer(log w))`` along ``dim`` from one exp: the
    resampling probabilities and the ``log Z`` estimate together (``torch.logsumexp`` then
    ``torch.softmax`` cost ~10 us more per call on a CPU, where an agent calls this once per
    env step). An element whose weights are all zero gets ``log Z = -inf`` (and NaN
    probabilities), as with ``logsumexp`` and ``softmax``."""
    # along the first dimension the reductions broadcast back without keepdim (one op fewer)
    keep = dim not in (0, -log_weights.dim())
    top = torch.nan_to_num(log_weights.amax(dim, keepdim=keep), neginf=0.0)
    weights = torch.exp(log_weights - top)
    total = weights.sum(dim, keepdim=keep)
    log_z = total.log() + top - math.log(log_weights.shape[dim])
    return weights / total, log_z.squeeze(dim) if keep else log_z


def effective_sample_size(log_weights: Tensor, dim: int = 0) -> Tensor:
    """Kish's ``(sum w)^2 / sum w^2`` in log space: between 1 and the number of particles."""
    return torch.exp(2 * torch.logsumexp(log_weights, dim) - torch.logsumexp(2 * log_weights, dim))


@dataclass(frozen=True)
class ImportanceSampler:
    """Sampling-importance-resampling from an energy with a proposal ``q``.

    Draws ``n_particles`` per batch element from ``q``, weights them by
    ``w = exp(-E(x)) / q(x)`` (``w = 0`` outside ``bounds``: the target is ``p`` restricted to the
    box), and resamples ``num_samples`` of them with probabilities ``w / sum w``.

    Stats (shape ``[*batch]``): ``ess`` (Kish effective sample size of the weights, in particles)
    and ``log_normalizer``, the unbiased-in-``Z`` estimate ``log 1/n sum_i w_i`` of
    ``log Z = log ∫ exp(-E)``.

    Args:
        n_particles: proposals per batch element.
        bounds: optional ``(low, high)`` box, broadcastable to the event shape ``[d]``.
        check: end each call with one host sync that raises ``ValueError`` on NaN (or
            ``-inf``) energies or proposal log-densities, and on a batch element whose particles
            all have zero weight; ``False`` skips it, for hot loops: bad weights then surface
            only as NaN or infinite stats, with arbitrary samples (for ``num_samples > 1`` also
            as ``torch.multinomial``'s own error).

    Example:
        >>> from ebrl.energy import GaussianEnergy
        >>> target = GaussianEnergy(torch.zeros(2), torch.eye(2))
        >>> proposal = torch.distributions.MultivariateNormal(torch.zeros(2), 4 * torch.eye(2))
        >>> g = torch.Generator().manual_seed(0)
        >>> result = ImportanceSampler(1024).sample(target, proposal, 8, generator=g)
        >>> result.samples.shape, result.stats["ess"].shape
        (torch.Size([8, 2]), torch.Size([]))

    References:
        Rubin (1988), "Using the SIR algorithm to simulate posterior distributions";
        Kong (1992) for the effective sample size.
    """

    n_particles: int = 256
    bounds: tuple | None = None
    check: bool = True

    def __post_init__(self) -> None:
        check_int("ImportanceSampler", "n_particles", self.n_particles)
        check_bool("ImportanceSampler", "check", self.check)

    def weigh(
        self,
        energy: EnergyFn,
        proposal: Distribution,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draws the particles and their log-weights.

        Returns:
            ``(particles [n_particles, *batch, d], log_weights [n_particles, *batch])`` with
            ``log_weights = -E(x) - log q(x)`` (``-inf`` outside the bounds).
        """
        particles, log_weights = self._weigh(energy, proposal, generator)
        if self.check and bool(_invalid(log_weights).any()):  # the one host sync
            raise ValueError(_INVALID)
        return particles, log_weights

    def _weigh(
        self, energy: EnergyFn, proposal: Distribution, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """``weigh`` without its check."""
        proposal = check_proposal(_NAME, proposal)
        check_generator_type(_NAME, generator)
        with torch.no_grad():
            particles = draw_proposal(_NAME, proposal, (self.n_particles,), generator)
            energies = evaluate_energy(_NAME, energy, particles)
            log_weights = -energies - proposal.log_prob(particles)
        if self.bounds is not None:
            box = Box(_NAME, self.bounds, particles)
            log_weights = log_weights.masked_fill(~box.contains(particles), -math.inf)
        return particles, log_weights

    def sample(
        self,
        energy: EnergyFn,
        proposal: Distribution,
        num_samples: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        check_int(_NAME, "num_samples", num_samples)
        if init is not None:
            raise ValueError(f"{_NAME}: init is not used by importance sampling; pass init=None")
        proposal = check_proposal(_NAME, proposal)
        if 0 in proposal.batch_shape:  # no states: nothing to weigh ([num_samples, 0, d], as MCMC)
            check_generator_type(_NAME, generator)
            empty = draw_proposal(_NAME, proposal, (num_samples,), generator)
            zeros = empty.new_zeros(proposal.batch_shape)
            return SampleResult(empty, {"ess": zeros, "log_normalizer": zeros.clone()})
        particles, log_weights = self._weigh(energy, proposal, generator)
        probs, log_z = normalized_weights(log_weights)
        # log Z is NaN or +inf iff some weight is invalid, -inf iff all weights of an element
        # are zero: one test of log Z covers both (the one host sync).
        if self.check and not bool(torch.isfinite(log_z).all()):
            if bool(_invalid(log_weights).any()):
                raise ValueError(_INVALID)
            raise ValueError(
                f"{_NAME}: every particle has zero weight for some batch element (all "
                "energies +inf or all particles outside the bounds); widen the proposal"
            )
        batch_shape, d = particles.shape[1:-1], particles.shape[-1]
        b = math.prod(batch_shape)  # explicit, not -1: an empty batch has no inferable size
        probs = probs.reshape(self.n_particles, b).T  # [B, n]
        if num_samples == 1:  # torch.multinomial's draw without its input check's host syncs
            index = categorical_draw(probs, generator).unsqueeze(1)
        else:
            index = torch.multinomial(probs, num_samples, replacement=True, generator=generator)
        flat = particles.reshape(self.n_particles, b, d)  # [n, B, d]
        chosen = flat[index.T, torch.arange(flat.shape[1], device=flat.device)]  # [m, B, d]
        stats = {"ess": effective_sample_size(log_weights), "log_normalizer": log_z}
        return SampleResult(chosen.reshape(num_samples, *batch_shape, d), stats)
