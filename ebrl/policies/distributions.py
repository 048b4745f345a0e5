"""Distributions over actions that anchors and policies return, and their log-densities.

- :class:`SquashedDistribution`: ``a = loc + scale * tanh(u)`` on a box, with the exact
  log-density of the squashed action (finite on the boundary, via
  :class:`ClampedTanhTransform`) and ``rsample_and_log_prob`` for reverse-KL actor losses.
- :class:`ClosedUniform`: ``Uniform`` on the closed box (clipped actions on the upper bound
  keep their density).
- :func:`categorical_log_probs` and :func:`masked_categorical`: zero-probability actions are how
  piKL masks illegal moves, so ``log p`` is ``-inf`` for them exactly (``Categorical(probs=)``
  alone would clamp zeros to a finite logit).

References:
    Haarnoja et al. (2018), "Soft Actor-Critic", Appendix C (the squashed Gaussian and its
    log-density); Jacob et al. (2022), "Modeling Strong and Human-Like Gameplay with
    KL-Regularized Search", ICML, Sec. 3 (piKL).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import (
    AffineTransform,
    Categorical,
    Distribution,
    Independent,
    Normal,
    TanhTransform,
    TransformedDistribution,
    Uniform,
    constraints,
)

from ebrl.samplers import draw

__all__ = [
    "BoxAffineTransform",
    "ClampedTanhTransform",
    "ClosedUniform",
    "SquashedDistribution",
    "categorical_log_probs",
    "masked_categorical",
]


class ClampedTanhTransform(TanhTransform):
    """``y = tanh(x)`` whose inverse clamps ``y`` into ``[-1 + eps, 1 - eps]`` before ``atanh``.

    So the inverse (and the log-density of a squashed variable) stays finite for actions on the
    boundary of the box (clipped demonstrations, ``tanh`` saturated in finite precision).
    ``log |dy/dx|`` is torch's softplus form ``2 (log 2 - x - softplus(-2x))`` of
    ``log(1 - tanh(x)^2)``, which does not cancel for large ``|x|``.
    """

    def _inverse(self, y: Tensor) -> Tensor:
        eps = torch.finfo(y.dtype).eps
        return torch.atanh(y.clamp(-1 + eps, 1 - eps))


class BoxAffineTransform(AffineTransform):
    """``y = loc + scale * x`` clamped into ``[low, high]``, for ``x`` in ``[-1, 1]``.

    In finite precision ``loc - scale`` can round one ulp below ``low`` (``loc + scale`` above
    ``high``), which would put a saturated ``tanh`` draw just outside the box; the clamp changes
    nothing else (the inverse and the Jacobian are the affine map's).
    """

    def __init__(self, low: Tensor, high: Tensor):
        super().__init__((high + low) / 2, (high - low) / 2, event_dim=1)
        self.low, self.high = low, high

    def _call(self, x: Tensor) -> Tensor:
        return torch.minimum(torch.maximum(super()._call(x), self.low), self.high)


class SquashedDistribution(TransformedDistribution):
    """``a = loc + scale * tanh(u)``, ``u ~ base``: a distribution on the box ``[low, high]``.

    ``loc = (high + low) / 2`` and ``scale = (high - low) / 2``. The exact log-density by change of
    variables is::

        log p(a) = log base(u) - sum_i [log scale_i + log(1 - tanh(u_i)^2)],
        u = atanh((a - loc) / scale),

    with ``(a - loc) / scale`` clamped inside ``(-1, 1)`` (finite on the boundary) and
    ``log(1 - tanh^2)`` in its softplus form. Actions outside the closed box have density 0
    (``log_prob = -inf``). :meth:`rsample_and_log_prob` returns a reparameterised draw with the
    log-density computed from its exact pre-image ``u`` (no ``atanh`` round trip, exact even where
    ``tanh`` saturates): the form a reverse-KL (SAC) actor loss needs. The transforms do not
    cache (a cache is a side effect that would stop ``torch.compile`` from capturing sampler
    steps over energies built on this distribution).

    Args:
        base: a distribution over ``u`` with event shape ``[d]`` (``Independent(Normal)``, or a
            ``MixtureSameFamily`` of them for :class:`GaussianMixtureAnchor`).
        low, high: finite bounds broadcastable to ``[d]``, ``low < high``.
    """

    arg_constraints: dict = {}  # noqa: RUF012 - torch's own convention

    def __init__(self, base: Distribution, low: Tensor, high: Tensor):
        like = _parameter_of(base)
        dtype = torch.get_default_dtype() if like is None else like.dtype
        low = torch.as_tensor(low, dtype=dtype, device=None if like is None else like.device)
        high = torch.as_tensor(high, dtype=low.dtype, device=low.device)
        self.low, self.high = low, high
        self.loc, self.scale = (high + low) / 2, (high - low) / 2
        transforms = [
            ClampedTanhTransform(),
            BoxAffineTransform(low, high),
        ]
        super().__init__(base, transforms, validate_args=False)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def squash(self, u: Tensor) -> Tensor:
        """``loc + scale * tanh(u)``: maps an unconstrained point into the (closed) box."""
        return self.transforms[-1](torch.tanh(u))

    def rsample_and_log_prob(
        self, sample_shape: torch.Size | tuple = (), generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """A reparameterised draw ``a = squash(u)``, ``u ~ base``, and its exact ``log p(a)``.

        ``log p(a) = log base(u) - sum_i [log scale_i + 2 (log 2 - u_i - softplus(-2 u_i))]``,
        computed from ``u`` itself, so it is exact (and finite) even when ``tanh(u)`` rounds to
        ``+-1``. Gradients flow to the base's parameters through both outputs. ``generator``
        drives the draw (``ebrl.samplers.draw``).
        """
        u = draw(self.base_dist, tuple(sample_shape), generator, reparameterized=True)
        log_det = torch.log(self.scale) + tanh_log_det(u)
        return self.squash(u), self.base_dist.log_prob(u) - log_det.sum(-1)

    @property
    def median(self) -> Tensor:
        """Coordinatewise median ``squash(base mean)`` (exact for a Gaussian base: the squash is
        monotone in each coordinate); the usual deterministic action of a squashed Gaussian."""
        base = self.base_dist
        if not (isinstance(base, Independent) and isinstance(base.base_dist, Normal)):
            raise NotImplementedError("median is defined for a diagonal Gaussian base only")
        return self.squash(base.base_dist.loc)

    def log_prob(self, value: Tensor) -> Tensor:
        y = (value - self.loc) / self.scale
        # rounding in loc + scale * tanh(u) may land a few ulps outside the closed box
        eps = torch.finfo(y.dtype).eps
        tol = 8 * eps * (1 + self.loc.abs() / self.scale)
        inside = (y.abs() <= 1 + tol).all(-1)
        return super().log_prob(value).masked_fill(~inside, -math.inf)


def tanh_log_det(u: Tensor) -> Tensor:
    """``log |d tanh(u) / du| = log(1 - tanh(u)^2)``, elementwise, in the softplus form
    ``2 (log 2 - u - softplus(-2u))`` that stays exact where ``tanh(u)`` rounds to ``+-1``."""
    return 2.0 * (math.log(2.0) - u - torch.nn.functional.softplus(-2.0 * u))


class ClosedUniform(Uniform):
    """``Uniform`` on the closed interval ``[low, high]`` (torch's excludes ``high``, so a clipped
    action equal to the upper bound would get ``log_prob = -inf``)."""

    def log_prob(self, value: Tensor) -> Tensor:
        inside = (value >= self.low) & (value <= self.high)
        log_density = -torch.log(self.high - self.low)
        return torch.where(inside, log_density, -math.inf)


def _parameter_of(dist: Distribution) -> Tensor | None:
    """A parameter tensor of ``dist`` (or of its base or component distribution), whose dtype and
    device the distribution has; ``None`` for a distribution without tensor parameters."""
    for name in ("loc", "low", "logits", "probs"):
        value = getattr(dist, name, None)
        if isinstance(value, Tensor):
            return value
    base = getattr(dist, "base_dist", None) or getattr(dist, "component_distribution", None)
    return _parameter_of(base) if base is not None else None


def categorical_log_probs(dist: Categorical) -> Tensor:
    """``log p(a)`` for every action, ``[*batch, n]``, with ``-inf`` exactly where ``p(a) = 0``.

    ``Categorical(probs=p)`` stores ``logits = log(clamp(p, eps))``: a zero probability becomes a
    finite logit (about -16 in float32) that a large enough utility would overcome. For a
    distribution built from ``probs`` this returns ``log p`` (``log 0 = -inf``, tiny
    probabilities exact); for one built from ``logits`` it returns the normalised logits
    (``-inf`` logits stay ``-inf``; large negative ones are not rounded to zero probability).
    """
    if not isinstance(dist, Categorical):
        raise TypeError(
            f"categorical_log_probs: expected a torch.distributions.Categorical, got "
            f"{type(dist).__name__}"
        )
    param = getattr(dist, "_param", None)
    built_from_probs = param is not None and param is dist.__dict__.get("probs")
    return dist.probs.log() if built_from_probs else dist.logits


def masked_categorical(dist: Categorical, legal: Tensor) -> Categorical:
    """The anchor ``dist`` restricted to ``legal`` actions (``[*batch, n]`` bool) and renormalised.

    Illegal actions get logit ``-inf``: probability exactly 0, so an
    :class:`~ebrl.policies.AnchoredPolicy` never takes them, whatever their utility.
    """
    log_p = categorical_log_probs(dist)
    if not isinstance(legal, Tensor) or legal.dtype != torch.bool:
        raise TypeError("masked_categorical: legal must be a bool tensor [*batch, n_actions]")
    if legal.shape != log_p.shape:
        raise ValueError(
            f"masked_categorical: legal has shape {tuple(legal.shape)}, expected "
            f"{tuple(log_p.shape)} = [*batch, n_actions]"
        )
    masked = log_p.masked_fill(~legal.to(log_p.device), -math.inf)
    if (masked == -math.inf).all(-1).any():
        raise ValueError(
            "masked_categorical: some state has no legal action with nonzero anchor probability"
        )
    return Categorical(logits=masked, validate_args=False)
