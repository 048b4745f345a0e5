"""Composition of samplers: `Chain(first, then)` starts `then` from `first`'s samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebrl.samplers.base import EnergyFn, SampleResult, check_generator_type

__all__ = ["Chain", "Sampler"]


class Sampler(Protocol):
    """Anything with ebrl's sampler method."""

    def sample(
        self,
        energy: EnergyFn,
        proposal: Distribution,
        num_samples: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult: ...


@dataclass(frozen=True)
class Chain:
    """Runs ``first``, then ``then`` initialised at ``first``'s samples.

    The usual pairing is ``Chain(ImportanceSampler(n), MALA(eps, k, bounds=...))``: importance
    sampling puts the particles in the right modes with the right weights (and estimates
    ``log Z``), MALA then moves each particle locally, diversifying resampled duplicates.
    Stats are the union of both (``ess``, ``log_normalizer``, ``acceptance_rate``,
    ``step_size``, ``stuck_fraction``, ``at_bounds_fraction``); where both report the same name,
    ``then``'s value is kept. Each stage runs its own end-of-call check (its ``check`` flag).
    """

    first: Sampler
    then: Sampler

    def __post_init__(self) -> None:
        for name in ("first", "then"):
            if not callable(getattr(getattr(self, name), "sample", None)):
                raise TypeError(f"Chain: {name} must be a sampler with a .sample method")

    def sample(
        self,
        energy: EnergyFn,
        proposal: Distribution,
        num_samples: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        check_generator_type("Chain", generator)
        start = self.first.sample(energy, proposal, num_samples, init=init, generator=generator)
        end = self.then.sample(
            energy, proposal, num_samples, init=start.samples, generator=generator
        )
        return SampleResult(end.samples, {**start.stats, **end.stats})
