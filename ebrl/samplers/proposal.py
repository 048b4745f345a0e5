"""The sampler that draws from the proposal and ignores the energy (plain SAC's acting)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebrl.samplers.base import (
    SampleResult,
    check_bool,
    check_generator_type,
    check_proposal,
    draw_proposal,
)
from ebrl.validation import check_int

__all__ = ["ProposalSampler"]


@dataclass(frozen=True)
class ProposalSampler:
    """Draws ``num_samples`` from the proposal itself; the energy is not evaluated.

    Exact only when the proposal equals the target: this is how a soft actor-critic acts with
    its amortised actor (``SACConfig.plain()``: the actor's sample is the action). With any
    other sampler the energy corrects the proposal (importance weights, MCMC). No stats.

    Args:
        check: end each call with one host sync that raises ``ValueError`` on non-finite draws
            (e.g. a proposal with NaN parameters); ``False`` skips it, for hot loops.
    """

    check: bool = True

    def __post_init__(self) -> None:
        check_bool("ProposalSampler", "check", self.check)

    def sample(
        self,
        energy,
        proposal: Distribution,
        num_samples: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        name = "ProposalSampler"
        check_int(name, "num_samples", num_samples)
        if init is not None:
            raise ValueError(f"{name}: init is not used (draws come from the proposal)")
        proposal = check_proposal(name, proposal)
        check_generator_type(name, generator)
        samples = draw_proposal(name, proposal, (num_samples,), generator)
        if self.check and not bool(torch.isfinite(samples).all()):  # the one host sync
            raise ValueError(
                f"{name}: the proposal's draws contain NaN or inf (are its parameters finite?)"
            )
        return SampleResult(samples, {})
