"""Anchored (piKL) policies ``pi(a|s) ∝ anchor(a|s) exp(Q(s, a) / T)``, their anchors, and
behaviour cloning of anchors from demonstrations."""

from ebrl.policies.anchored import AnchoredEnergy, AnchoredPolicy, PolicyEstimate, anchored_sampler
from ebrl.policies.anchors import (
    CategoricalAnchor,
    GaussianAnchor,
    GaussianMixtureAnchor,
    TruncatedGaussianAnchor,
    UniformAnchor,
)
from ebrl.policies.behaviour_cloning import BCReport, fit_behaviour_cloning
from ebrl.policies.distributions import (
    ClampedTanhTransform,
    SquashedDistribution,
    TruncatedNormal,
    categorical_log_probs,
    masked_categorical,
)

__all__ = [
    "AnchoredEnergy",
    "AnchoredPolicy",
    "BCReport",
    "CategoricalAnchor",
    "ClampedTanhTransform",
    "GaussianAnchor",
    "GaussianMixtureAnchor",
    "PolicyEstimate",
    "SquashedDistribution",
    "TruncatedGaussianAnchor",
    "TruncatedNormal",
    "UniformAnchor",
    "anchored_sampler",
    "categorical_log_probs",
    "fit_behaviour_cloning",
    "masked_categorical",
]
