"""Shared samplers: one call samples every batch element (every state of every env).

``sampler.sample(energy, proposal, num_samples=1, init=None, generator=None)`` returns a
:class:`SampleResult` with ``samples [num_samples, *batch, d]`` and ``stats`` (tensors).
"""

from ebrl.samplers.base import Box, SampleResult, draw, energy_and_grad
from ebrl.samplers.chain import Chain, Sampler
from ebrl.samplers.importance import ImportanceSampler, effective_sample_size, log_normalizer
from ebrl.samplers.langevin import (
    MALA,
    Langevin,
    MCMCInfo,
    MCMCState,
    init_state,
    langevin_step,
    mala_step,
)
from ebrl.samplers.mixture import Mixture

__all__ = [
    "MALA",
    "Box",
    "Chain",
    "ImportanceSampler",
    "Langevin",
    "MCMCInfo",
    "MCMCState",
    "Mixture",
    "SampleResult",
    "Sampler",
    "draw",
    "effective_sample_size",
    "energy_and_grad",
    "init_state",
    "langevin_step",
    "log_normalizer",
    "mala_step",
]
