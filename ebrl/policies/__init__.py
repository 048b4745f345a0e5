"""Anchored (piKL) policies ``pi(a|s) ∝ anchor(a|s) exp(Q(s, a) / T)``, their anchors, and
behaviour cloning of anchors from demonstrations."""

from ebrl.policies.anchored import AnchoredEnergy, AnchoredPolicy, PolicyEstimate, anchored_sampler
from ebrl.policies.anchors import (
    BCReport,
    CategoricalAnchor,
    ClampedTanhTransform,
    GaussianAnchor,
    GaussianMixtureAnchor,
    SquashedDistribution,
    UniformAnchor,
    categorical_log_probs,
    fit_behaviour_cloning,
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
    "UniformAnchor",
    "anchored_sampler",
    "categorical_log_probs",
    "fit_behaviour_cloning",
    "masked_categorical",
]
