"""Generative trainers: score matching (exact, denoising, sliced) and contrastive divergence
(CD-k, PCD), each a loss ``objective.loss(energy, x, *, generator) -> (loss, terms)``, trained by
the one loop :func:`fit`."""

from ebrl.trainers.contrastive import (
    ContrastiveDivergence,
    SampleBuffer,
    contrastive_divergence_loss,
)
from ebrl.trainers.fit import FitResult, Objective, fit
from ebrl.trainers.score_matching import (
    DenoisingScoreMatching,
    ExactScoreMatching,
    SlicedScoreMatching,
    denoising_score_matching_loss,
    exact_score_matching_loss,
    sliced_score_matching_loss,
)

__all__ = [
    "ContrastiveDivergence",
    "DenoisingScoreMatching",
    "ExactScoreMatching",
    "FitResult",
    "Objective",
    "SampleBuffer",
    "SlicedScoreMatching",
    "contrastive_divergence_loss",
    "denoising_score_matching_loss",
    "exact_score_matching_loss",
    "fit",
    "sliced_score_matching_loss",
]
