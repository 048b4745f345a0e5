"""The sampler that draws from the proposal and ignores the energy (plain SAC's acting)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebrl.samplers.base import SampleResult, check_proposal, draw
from ebrl.validation import check_int

__all__ = ["ProposalSampler"]


@dataclass(frozen=True)
class ProposalSampler:
    """Draws ``num_samples`` from the proposal itself; the energy is not evaluated.

    Exact only when the proposal equals the target: this is how a soft actor-critic acts with
    its amortised actor (``SACConfig.plain()``: the actor's sample is the action). With any
    other sampler the energy corrects the proposal (importance weights, MCMC). No stats.
    """

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
        return SampleResult(draw(proposal, (num_samples,), generator), {})
