"""Shared samplers: one call samples every batch element (every state of every env).

``sampler.sample(energy, proposal, num_samples=1, init=None, generator=None)`` returns a
:class:`SampleResult` with ``samples [num_samples, *batch, d]`` and ``stats`` (tensors).
MCMC samplers are pure steps over :class:`MCMCState` driven by one loop, :func:`run_chain`
(:mod:`ebrl.samplers.mcmc` says how a new one plugs in).
"""

from ebrl.samplers.base import (
    Box,
    SampleResult,
    SamplerWarning,
    categorical_draw,
    draw,
    energy_and_grad,
)
from ebrl.samplers.box import sample_energy
from ebrl.samplers.chain import Chain, Sampler
from ebrl.samplers.importance import ImportanceSampler, effective_sample_size, log_normalizer
from ebrl.samplers.langevin import MALA, Langevin, langevin_step, mala_step
from ebrl.samplers.mcmc import (
    ChainInfo,
    MCMCInfo,
    MCMCState,
    init_state,
    run_chain,
    sample_chain,
)
from ebrl.samplers.mixture import Mixture

__all__ = [
    "MALA",
    "Box",
    "Chain",
    "ChainInfo",
    "ImportanceSampler",
    "Langevin",
    "MCMCInfo",
    "MCMCState",
    "Mixture",
    "SampleResult",
    "Sampler",
    "SamplerWarning",
    "categorical_draw",
    "draw",
    "effective_sample_size",
    "energy_and_grad",
    "init_state",
    "langevin_step",
    "log_normalizer",
    "mala_step",
    "run_chain",
    "sample_chain",
    "sample_energy",
]
