"""ebrl: energy-based reinforcement learning on one energy core.

Policies are energies, ``pi(a|s) ∝ anchor(a|s) exp(Q(s, a) / T)``; the same energies and samplers
train generative EBMs.
"""

from ebrl.agents import SAC, SACConfig, SoftQ, SoftQConfig
from ebrl.energy import (
    Energy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    MLPEnergy,
)
from ebrl.policies import AnchoredPolicy
from ebrl.samplers import MALA, Chain, ImportanceSampler, Langevin, SampleResult, SamplerWarning

__version__ = "0.1.0"

__all__ = [
    "MALA",
    "SAC",
    "AnchoredPolicy",
    "Chain",
    "Energy",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "ImportanceSampler",
    "Langevin",
    "MLPEnergy",
    "SACConfig",
    "SampleResult",
    "SamplerWarning",
    "SoftQ",
    "SoftQConfig",
    "__version__",
]
