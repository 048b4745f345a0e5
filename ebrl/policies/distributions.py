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
    "TruncatedNormal",
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


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_normal_mass(alpha: Tensor, beta: Tensor) -> Tensor:
    """``log(Phi(beta) - Phi(alpha))`` for ``alpha < beta`` (``Phi`` the standard normal CDF),
    from ``log_ndtr`` of the tail on the interval's side of 0, so it stays finite far in either
    tail (where ``Phi(beta) - Phi(alpha)`` rounds to 0 or both terms to 1)."""
    upper = alpha > 0  # the interval lies in the upper tail: use Phi(-alpha) - Phi(-beta)
    hi = torch.where(upper, -alpha, beta)
    lo = torch.where(upper, -beta, alpha)
    log_hi = torch.special.log_ndtr(hi)
    return log_hi + _log1mexp(torch.special.log_ndtr(lo) - log_hi)


class TruncatedNormal(Distribution):
    """``Normal(loc, scale)`` restricted to ``[low, high]`` and renormalised, elementwise (batch
    shape the broadcast of the four parameters, event shape ``()``; wrap it in
    ``Independent(..., 1)`` for a diagonal distribution on a box).

    A Gaussian *in action space* that lives on the box: unlike the squashed Gaussian, its density
    near a bound is the Gaussian's, so demonstrations with Gaussian noise clipped at the bounds
    are fitted without the ``atanh`` tails that widen a squashed fit (issue 12's lunar lander:
    the squashed clone fired its side engine 60% of the time against the human's 34%).

    ``log_prob(x) = log N(x; loc, scale) - log(Phi(beta) - Phi(alpha))`` inside ``[low, high]``
    (closed), ``-inf`` outside; ``alpha, beta = (low - loc) / scale, (high - loc) / scale``.
    Draws are the inverse CDF of uniforms (:meth:`icdf`), reparameterised; the CDF arithmetic is
    in float64 and, for an interval in the upper tail, on the mirrored side, so a box many
    ``scale`` away from ``loc`` still gives draws inside it (at the near bound once it is more
    than about 37 ``scale`` away, where the mass sits within ``scale / 37`` of it anyway).

    Args:
        loc, scale: the untruncated Gaussian's mean and standard deviation (``scale > 0``).
        low, high: finite bounds, ``low < high``.
        validate_args: check the parameters (one host sync; ``ValueError`` naming the bad
            one); anchors that hold them valid by construction pass ``False``.

    References:
        Johnson, Kotz and Balakrishnan (1994), *Continuous Univariate Distributions*, vol. 1,
        Sec. 10.1 (the truncated normal, its moments).
    """

    arg_constraints: dict = {}  # noqa: RUF012 - torch's own convention
    has_rsample = True

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor,
        low: Tensor | float,
        high: Tensor | float,
        validate_args: bool = True,
    ):
        for name, value in (("loc", loc), ("scale", scale), ("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, Tensor | int | float):
                raise TypeError(
                    f"TruncatedNormal: {name} must be a real tensor or number, got "
                    f"{type(value).__name__}"
                )
            if isinstance(value, Tensor) and (value.is_complex() or value.dtype == torch.bool):
                raise TypeError(f"TruncatedNormal: {name} must be real, got {value.dtype}")
        loc = torch.as_tensor(loc)
        dtype = loc.dtype if loc.is_floating_point() else torch.get_default_dtype()
        loc = loc.to(dtype)
        scale = torch.as_tensor(scale, dtype=dtype, device=loc.device)
        low = torch.as_tensor(low, dtype=dtype, device=loc.device)
        high = torch.as_tensor(high, dtype=dtype, device=loc.device)
        try:
            self.loc, self.scale, self.low, self.high = torch.broadcast_tensors(
                loc, scale, low, high
            )
        except RuntimeError as err:
            raise ValueError(
                f"TruncatedNormal: loc {tuple(loc.shape)}, scale {tuple(scale.shape)}, low "
                f"{tuple(low.shape)} and high {tuple(high.shape)} do not broadcast"
            ) from err
        if validate_args:
            if not bool(torch.isfinite(self.loc).all()):
                raise ValueError("TruncatedNormal: loc must be finite")
            if not bool(((self.scale > 0) & torch.isfinite(self.scale)).all()):
                raise ValueError("TruncatedNormal: scale must be finite and > 0")
            finite = torch.isfinite(self.low) & torch.isfinite(self.high)
            if not bool((finite & (self.low < self.high)).all()):
                raise ValueError("TruncatedNormal: low and high must be finite with low < high")
        # standardised bounds and the log-mass in float64: in float32 a narrow interval (a wide
        # scale) cancels, and the far tails lose their digits
        loc64, scale64 = self.loc.double(), self.scale.double()
        self._alpha = (self.low.double() - loc64) / scale64
        self._beta = (self.high.double() - loc64) / scale64
        self._log_mass = log_normal_mass(self._alpha, self._beta)
        super().__init__(self.loc.shape, validate_args=False)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def log_prob(self, value: Tensor) -> Tensor:
        # rounding in callers' affine maps (e.g. SAC's unit box to env units) can land a few ulps
        # outside the closed box: those values count as on the bound (as SquashedDistribution)
        tol = 8 * torch.finfo(value.dtype).eps * (self.low.abs() + self.high.abs() + 1)
        inside = (value >= self.low - tol) & (value <= self.high + tol)
        value = torch.minimum(torch.maximum(value, self.low), self.high)
        z = (value.double() - self.loc.double()) / self.scale.double()
        log_density = -0.5 * z.square() - 0.5 * math.log(2 * math.pi) - self.scale.double().log()
        log_p = (log_density - self._log_mass).to(torch.promote_types(value.dtype, self.loc.dtype))
        return log_p.masked_fill(~inside, -math.inf)

    def icdf(self, value: Tensor) -> Tensor:
        """The ``value``-quantile (``value`` in ``[0, 1]``), clamped into ``[low, high]``."""
        alpha, beta = self._alpha, self._beta
        u = value.double()
        upper = alpha > 0  # mirror an upper-tail interval so the CDF values stay away from 1
        a = torch.where(upper, -beta, alpha)
        b = torch.where(upper, -alpha, beta)
        # exp(log_ndtr): torch's ndtr rounds to 0 below about -8 even in float64
        cdf_a, cdf_b = torch.special.log_ndtr(a).exp(), torch.special.log_ndtr(b).exp()
        p = torch.where(upper, cdf_b - u * (cdf_b - cdf_a), cdf_a + u * (cdf_b - cdf_a))
        tiny = torch.finfo(torch.float64).tiny
        z = torch.special.ndtri(p.clamp(tiny, 1 - torch.finfo(torch.float64).eps))
        z = torch.where(upper, -z, z)
        z = torch.minimum(torch.maximum(z, alpha), beta)
        x = (self.loc.double() + self.scale.double() * z).to(self.loc.dtype)
        return torch.minimum(torch.maximum(x, self.low), self.high)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        return self.icdf(torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device))

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def _phi_ratios(self) -> tuple[Tensor, Tensor]:
        """``phi(alpha) / Z`` and ``phi(beta) / Z`` in float64, in log space."""
        log_norm = 0.5 * math.log(2 * math.pi)
        pa = torch.exp(-0.5 * self._alpha.square() - log_norm - self._log_mass)
        pb = torch.exp(-0.5 * self._beta.square() - log_norm - self._log_mass)
        return pa, pb

    @property
    def mean(self) -> Tensor:
        """``loc + scale (phi(alpha) - phi(beta)) / Z``, ``Z = Phi(beta) - Phi(alpha)``, in float64
        and clamped into ``[low, high]`` (far in a tail the two terms nearly cancel)."""
        pa, pb = self._phi_ratios()
        mean = (self.loc.double() + self.scale.double() * (pa - pb)).to(self.loc.dtype)
        return torch.minimum(torch.maximum(mean, self.low), self.high)

    @property
    def variance(self) -> Tensor:
        """``scale^2 (1 + (alpha phi(alpha) - beta phi(beta)) / Z - ((phi(alpha) - phi(beta)) /
        Z)^2)`` in float64; for an interval narrow against ``scale`` (``beta - alpha < 1e-3``,
        where that cancels) the uniform's ``(high - low)^2 / 12``. At most ``(high - low)^2 / 4``
        and at least 0 (cancellation far in a tail)."""
        pa, pb = self._phi_ratios()
        a, b = self._alpha, self._beta
        var = self.scale.double().square() * (1 + a * pa - b * pb - (pa - pb).square())
        width2 = (self.high.double() - self.low.double()).square()
        var = torch.where(b - a < 1e-3, width2 / 12, var)
        return torch.minimum(var.clamp_min(0), width2 / 4).to(self.loc.dtype)

    @property
    def mode(self) -> Tensor:
        """``loc`` clamped into ``[low, high]``."""
        return torch.minimum(torch.maximum(self.loc, self.low), self.high)

    @property
    def median(self) -> Tensor:
        return self.icdf(torch.full_like(self.loc, 0.5))


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
