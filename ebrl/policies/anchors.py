"""Anchors: the prior policies ``anchor(a|s)`` that piKL regularises toward, and behaviour cloning.

Every anchor is a callable ``obs[B, *obs_shape] -> torch.distributions.Distribution`` with batch
shape ``[B]``; :class:`~ebrl.policies.AnchoredPolicy` turns one into
``pi(a|s) ∝ anchor(a|s) exp(Q(s, a) / T)``.

- :class:`UniformAnchor` (``Discrete`` or bounded ``Box``): piKL with a uniform anchor is
  maximum-entropy RL.
- :class:`CategoricalAnchor`: a state-conditioned softmax over ``Discrete`` actions.
- :class:`GaussianAnchor`: a state-conditioned diagonal Gaussian squashed into the ``Box`` by
  ``tanh`` then an affine map, with the exact log-density of the squashed action
  (:class:`SquashedDistribution`); on an unbounded ``Box`` a plain diagonal Gaussian.
- :class:`GaussianMixtureAnchor`: the same with ``K`` components (multimodal demonstrators).
- :func:`fit_behaviour_cloning`: maximum likelihood on demonstrations with a held-out split and
  early stopping; returns a :class:`BCReport` (held-out NLL, top-1 agreement for discrete).

Zero-probability actions are how piKL masks illegal moves: :func:`categorical_log_probs` returns
``log p`` with ``-inf`` for them (``Categorical(probs=)`` alone would clamp zeros to a finite
logit), and :func:`masked_categorical` builds such an anchor from a legal-action mask.

References:
    Jacob et al. (2022), "Modeling Strong and Human-Like Gameplay with KL-Regularized Search",
    ICML (piKL), Sec. 3; Haarnoja et al. (2018), "Soft Actor-Critic", Appendix C (the squashed
    Gaussian and its log-density).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import (
    AffineTransform,
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    TanhTransform,
    TransformedDistribution,
    Uniform,
    constraints,
)

from ebrl.networks import mlp
from ebrl.samplers import draw
from ebrl.validation import check_int, check_obs, check_positive_float, check_unit_interval

__all__ = [
    "BCReport",
    "CategoricalAnchor",
    "ClampedTanhTransform",
    "GaussianAnchor",
    "GaussianMixtureAnchor",
    "SquashedDistribution",
    "UniformAnchor",
    "categorical_log_probs",
    "fit_behaviour_cloning",
    "masked_categorical",
]


# ----------------------------------------------------------------------------- distributions


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
        low = torch.as_tensor(low, dtype=_dtype_of(base), device=_device_of(base))
        high = torch.as_tensor(high, dtype=low.dtype, device=low.device)
        self.low, self.high = low, high
        self.loc, self.scale = (high + low) / 2, (high - low) / 2
        transforms = [
            ClampedTanhTransform(),
            AffineTransform(self.loc, self.scale, event_dim=1),
        ]
        super().__init__(base, transforms, validate_args=False)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def squash(self, u: Tensor) -> Tensor:
        """``loc + scale * tanh(u)``: maps an unconstrained point into the box."""
        return self.loc + self.scale * torch.tanh(u)

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
        log_det = torch.log(self.scale) + 2.0 * (
            math.log(2.0) - u - torch.nn.functional.softplus(-2.0 * u)
        )
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


class _ClosedUniform(Uniform):
    """``Uniform`` on the closed interval ``[low, high]`` (torch's excludes ``high``, so a clipped
    action equal to the upper bound would get ``log_prob = -inf``)."""

    def log_prob(self, value: Tensor) -> Tensor:
        inside = (value >= self.low) & (value <= self.high)
        log_density = -torch.log(self.high - self.low)
        return torch.where(inside, log_density, -math.inf)


def _dtype_of(dist: Distribution) -> torch.dtype:
    for name in ("loc", "low", "logits", "probs"):
        value = getattr(dist, name, None)
        if isinstance(value, Tensor):
            return value.dtype
    base = getattr(dist, "base_dist", None) or getattr(dist, "component_distribution", None)
    return _dtype_of(base) if base is not None else torch.get_default_dtype()


def _device_of(dist: Distribution) -> torch.device:
    for name in ("loc", "low", "logits", "probs"):
        value = getattr(dist, name, None)
        if isinstance(value, Tensor):
            return value.device
    base = getattr(dist, "base_dist", None) or getattr(dist, "component_distribution", None)
    return _device_of(base) if base is not None else torch.device("cpu")


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
    built_from_probs = getattr(dist, "_param", None) is vars(dist).get("probs", object())
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


# ----------------------------------------------------------------------------- anchors


def _box_bounds(owner: str, space: spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{owner}: action_space must be a 1-D gymnasium.spaces.Box, got {space!r}")
    return np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)


class UniformAnchor(nn.Module):
    """The uniform anchor over a ``Discrete`` or a bounded ``Box`` action space.

    ``forward(obs[B, ...])`` returns ``Categorical`` (uniform logits ``[B, n]``) or
    ``Independent(Uniform(low, high), 1)`` with batch shape ``[B]`` (the closed box: actions on
    the boundary have the uniform density). The distribution's dtype follows floating ``obs``
    and its device follows ``obs``. With this anchor, ``pi ∝ exp(Q/T)`` is maximum-entropy RL.
    """

    def __init__(self, space: spaces.Space):
        super().__init__()
        if isinstance(space, spaces.Discrete):
            if int(space.start) != 0:
                raise ValueError(
                    f"UniformAnchor: Discrete spaces must start at 0, got start={space.start}"
                )
            self.n_actions: int | None = int(space.n)
            low = high = torch.zeros(0)
        elif isinstance(space, spaces.Box):
            low_np, high_np = _box_bounds("UniformAnchor", space)
            if not (np.isfinite(low_np).all() and np.isfinite(high_np).all()):
                raise ValueError(
                    "UniformAnchor: the Box must be bounded (finite low and high) for a uniform "
                    f"anchor, got low={low_np}, high={high_np}"
                )
            self.n_actions = None
            low, high = torch.from_numpy(low_np), torch.from_numpy(high_np)
        else:
            raise ValueError(
                "UniformAnchor: space must be a gymnasium Discrete or Box, got "
                f"{type(space).__name__}"
            )
        self.space = space
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)

    def forward(self, obs: Tensor) -> Distribution:
        if not isinstance(obs, Tensor) or obs.dim() < 1:
            raise TypeError(
                "UniformAnchor: obs must be a tensor [B, *obs_shape] (a leading batch dim), got "
                f"{getattr(obs, 'shape', type(obs).__name__)}"
            )
        dtype = obs.dtype if obs.is_floating_point() else torch.get_default_dtype()
        batch = obs.shape[0]
        if self.n_actions is not None:
            logits = torch.zeros(batch, self.n_actions, dtype=dtype, device=obs.device)
            return Categorical(logits=logits, validate_args=False)
        low = self.low.to(device=obs.device, dtype=dtype).expand(batch, -1)
        high = self.high.to(device=obs.device, dtype=dtype).expand(batch, -1)
        return Independent(_ClosedUniform(low, high, validate_args=False), 1, validate_args=False)


class CategoricalAnchor(nn.Module):
    """A state-conditioned softmax ``anchor(a|s) = softmax(f_theta(s))`` over ``Discrete`` actions.

    Args:
        obs_dim: dimension of the (flat) observation.
        action_space: a ``gymnasium.spaces.Discrete`` (starting at 0) or the number of actions.
        hidden_sizes: widths of the MLP's hidden layers (``()``: a linear model).
        activation: one of ``relu, silu, elu, tanh, softplus, gelu``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: spaces.Discrete | int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
    ):
        super().__init__()
        owner = "CategoricalAnchor"
        self.obs_dim = check_int(owner, "obs_dim", obs_dim)
        if isinstance(action_space, spaces.Discrete):
            if int(action_space.start) != 0:
                raise ValueError(f"{owner}: Discrete spaces must start at 0")
            n = int(action_space.n)
        else:
            n = check_int(owner, "action_space (number of actions)", action_space)
        self.n_actions = n
        self.net = mlp(self.obs_dim, hidden_sizes, n, activation, owner=owner)

    def forward(self, obs: Tensor) -> Categorical:
        obs = check_obs("CategoricalAnchor", obs, self.obs_dim, self.net[0].weight)
        return Categorical(logits=self.net(obs), validate_args=False)


class _SquashedHead(nn.Module):
    """Shared pieces of the Gaussian anchors: the box (or none), log-std range, distribution."""

    def _init_box(self, owner: str, action_space: spaces.Box, log_std_bounds: tuple) -> None:
        low, high = _box_bounds(owner, action_space)
        finite_low, finite_high = np.isfinite(low), np.isfinite(high)
        if finite_low.all() and finite_high.all():
            if not (low < high).all():
                raise ValueError(f"{owner}: the Box needs low < high, got {low}, {high}")
            self.bounded = True
        elif not (finite_low.any() or finite_high.any()):
            self.bounded = False
        else:
            raise ValueError(
                f"{owner}: the Box must be bounded on every side (squashed Gaussian) or unbounded "
                f"on every side (plain Gaussian), got low={low}, high={high}"
            )
        self.action_dim = int(action_space.shape[0])
        lo, hi = log_std_bounds
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"{owner}: log_std_bounds must be finite with min < max, got {log_std_bounds!r}"
            )
        self.log_std_bounds = (float(lo), float(hi))
        dtype = torch.get_default_dtype()
        self.register_buffer("low", torch.as_tensor(low if self.bounded else 0.0, dtype=dtype))
        self.register_buffer("high", torch.as_tensor(high if self.bounded else 0.0, dtype=dtype))

    def _init_log_std_rows(self, rows: Tensor) -> None:
        """Zero the weights of the output rows that give ``log sigma`` and set their bias so
        that ``sigma = 1`` (clamped into the range) for every state at initialisation: a random
        linear head can start at ``sigma = e^-5`` for some states, whose huge NLL gradients
        would then stall Adam (its second-moment estimate remembers them)."""
        lo, hi = self.log_std_bounds
        target = min(max(0.0, lo + 0.05 * (hi - lo)), hi - 0.05 * (hi - lo))
        raw = math.atanh(2 * (target - lo) / (hi - lo) - 1)
        last = self.net[-1]
        with torch.no_grad():
            last.weight[rows] = 0.0
            last.bias[rows] = raw

    def _log_std(self, raw: Tensor) -> Tensor:
        # a smooth clamp (tanh rescaled into [lo, hi]): gradients never vanish at the limits
        lo, hi = self.log_std_bounds
        return lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1)

    def _squash(self, base: Distribution) -> Distribution:
        if not self.bounded:
            return base
        return SquashedDistribution(base, self.low, self.high)


class GaussianAnchor(_SquashedHead):
    """A state-conditioned diagonal Gaussian squashed into the ``Box``: ``a = loc + scale tanh(u)``,
    ``u ~ N(mu_theta(s), diag(sigma_theta(s)^2))``.

    ``forward(obs[B, obs_dim])`` returns a :class:`SquashedDistribution` (batch ``[B]``, event
    ``[d]``) with a reparameterised ``rsample``, the exact ``log_prob`` of the squashed action,
    and ``rsample_and_log_prob()`` (draw and exact log-density from the pre-squash sample, for
    reverse-KL actor losses); ``dist.median`` is the usual deterministic action ``squash(mu)``.
    On a Box unbounded on every side it returns the plain ``Independent(Normal(mu, sigma), 1)``.

    ``log sigma`` is squashed smoothly into ``log_std_bounds`` (default ``[-5, 2]``) so that
    neither behaviour cloning on clipped actions nor a reverse-KL actor loss can collapse or blow
    up the scale.

    Args:
        obs_dim: dimension of the (flat) observation.
        action_space: a 1-D ``gymnasium.spaces.Box``.
        hidden_sizes: widths of the MLP's hidden layers (``()``: ``mu`` and ``log sigma`` linear
            in ``s``).
        activation: one of ``relu, silu, elu, tanh, softplus, gelu``.
        log_std_bounds: ``(min, max)`` of ``log sigma``.

    Example:
        >>> from gymnasium.spaces import Box
        >>> anchor = GaussianAnchor(3, Box(-2.0, 2.0, (1,)), hidden_sizes=(64, 64))
        >>> dist = anchor(torch.zeros(5, 3))
        >>> a = dist.rsample()
        >>> a.shape, dist.log_prob(a).shape
        (torch.Size([5, 1]), torch.Size([5]))

    References:
        Haarnoja et al. (2018), "Soft Actor-Critic", Appendix C, eq. (21).
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: spaces.Box,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
    ):
        super().__init__()
        owner = "GaussianAnchor"
        self.obs_dim = check_int(owner, "obs_dim", obs_dim)
        self._init_box(owner, action_space, log_std_bounds)
        # the constructor's arguments, so a checkpoint can rebuild the module (plain data only)
        self.spec = {
            "obs_dim": self.obs_dim,
            "low": np.asarray(action_space.low, dtype=np.float64).tolist(),
            "high": np.asarray(action_space.high, dtype=np.float64).tolist(),
            "hidden_sizes": list(hidden_sizes),
            "activation": activation,
            "log_std_bounds": list(self.log_std_bounds),
        }
        d = self.action_dim
        self.net = mlp(self.obs_dim, hidden_sizes, 2 * d, activation, owner=owner)
        self._init_log_std_rows(torch.arange(d, 2 * d))

    @classmethod
    def from_spec(cls, spec: dict) -> GaussianAnchor:
        """Rebuilds an (untrained) anchor from ``anchor.spec``; load its state dict after."""
        low = np.asarray(spec["low"], dtype=np.float32)
        box = spaces.Box(low, np.asarray(spec["high"], dtype=np.float32), dtype=np.float32)
        return cls(
            spec["obs_dim"],
            box,
            tuple(spec["hidden_sizes"]),
            spec["activation"],
            tuple(spec["log_std_bounds"]),
        )

    def forward(self, obs: Tensor) -> Distribution:
        obs = check_obs("GaussianAnchor", obs, self.obs_dim, self.net[0].weight)
        mean, raw = self.net(obs).chunk(2, dim=-1)
        std = self._log_std(raw).exp()
        base = Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)
        return self._squash(base)


class GaussianMixtureAnchor(_SquashedHead):
    """A state-conditioned mixture of ``K`` diagonal Gaussians, squashed into the ``Box``.

    ``a = loc + scale tanh(u)``, ``u ~ sum_k w_k(s) N(mu_k(s), diag(sigma_k(s)^2))`` (a mixture
    density network): multimodal demonstrators, where one Gaussian would average the modes into an
    action nobody takes. ``log_prob`` is exact; sampling works (``ebrl.samplers.draw`` with a
    generator), ``rsample`` does not (the component choice is discrete).

    Args:
        obs_dim, action_space, hidden_sizes, activation, log_std_bounds: as :class:`GaussianAnchor`.
        n_components: ``K``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: spaces.Box,
        n_components: int = 5,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
    ):
        super().__init__()
        owner = "GaussianMixtureAnchor"
        self.obs_dim = check_int(owner, "obs_dim", obs_dim)
        self.n_components = check_int(owner, "n_components", n_components)
        self._init_box(owner, action_space, log_std_bounds)
        k, d = self.n_components, self.action_dim
        self.net = mlp(self.obs_dim, hidden_sizes, k * (1 + 2 * d), activation, owner=owner)
        # outputs: k mixture logits, then per component [mean (d), raw log-std (d)]
        per_component = torch.arange(k * 2 * d).reshape(k, 2 * d)
        self._init_log_std_rows(k + per_component[:, d:].flatten())

    def forward(self, obs: Tensor) -> Distribution:
        obs = check_obs("GaussianMixtureAnchor", obs, self.obs_dim, self.net[0].weight)
        k, d = self.n_components, self.action_dim
        out = self.net(obs)
        logits = out[..., :k]
        mean, raw = out[..., k:].unflatten(-1, (k, 2 * d)).chunk(2, dim=-1)
        std = self._log_std(raw).exp()
        components = Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)
        mixture = Categorical(logits=logits, validate_args=False)
        base = MixtureSameFamily(mixture, components, validate_args=False)
        return self._squash(base)


# ----------------------------------------------------------------------------- behaviour cloning


@dataclass(frozen=True)
class BCReport:
    """What :func:`fit_behaviour_cloning` measured.

    Attributes:
        heldout_nll: mean ``-log anchor(a|s)`` over the held-out split, at the best epoch (the
            weights the anchor is left with). Nats per action; for continuous actions a density,
            so it can be negative.
        heldout_top1: fraction of held-out states where the anchor's most likely action is the
            demonstrated one (discrete anchors only, else ``None``).
        train_nll: mean ``-log anchor(a|s)`` over the training split at the best epoch.
        best_epoch: the epoch (1-based) with the lowest held-out NLL.
        epochs_run: epochs trained before early stopping or ``max_epochs``.
        n_train, n_heldout: split sizes.
        history: ``(train_nll, heldout_nll)`` after each epoch.
    """

    heldout_nll: float
    heldout_top1: float | None
    train_nll: float
    best_epoch: int
    epochs_run: int
    n_train: int
    n_heldout: int
    history: tuple[tuple[float, float], ...]


def _nll(anchor: nn.Module, obs: Tensor, actions: Tensor, chunk: int = 65536) -> Tensor:
    """Per-sample ``-log anchor(a|s)``, evaluated in chunks (no grad)."""
    with torch.no_grad():
        parts = [
            -anchor(obs[i : i + chunk]).log_prob(actions[i : i + chunk])
            for i in range(0, obs.shape[0], chunk)
        ]
    return torch.cat(parts)


def _top1(anchor: nn.Module, obs: Tensor, actions: Tensor, chunk: int = 65536) -> float:
    with torch.no_grad():
        hits = sum(
            int(
                (
                    categorical_log_probs(anchor(obs[i : i + chunk])).argmax(-1)
                    == actions[i : i + chunk]
                )
                .sum()
                .item()
            )
            for i in range(0, obs.shape[0], chunk)
        )
    return hits / obs.shape[0]


def fit_behaviour_cloning(
    anchor: nn.Module,
    observations: Tensor | np.ndarray,
    actions: Tensor | np.ndarray,
    *,
    heldout_fraction: float = 0.1,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    max_epochs: int = 200,
    patience: int = 10,
    seed: int = 0,
) -> BCReport:
    """Behaviour cloning: maximises ``sum log anchor(a_i | s_i)`` on demonstrations (in place).

    A random ``heldout_fraction`` of the pairs is held out; training (Adam, minibatches) stops
    after ``patience`` epochs without a lower held-out NLL, and the anchor is left with the
    weights of the best epoch.

    Args:
        anchor: an ``nn.Module`` anchor with parameters (e.g. :class:`GaussianAnchor`,
            :class:`CategoricalAnchor`), ``obs -> Distribution``.
        observations: ``[N, *obs_shape]``.
        actions: ``[N]`` integer actions for a ``Categorical`` anchor, else ``[N, d]``, inside the
            anchor's support (within the Box for a squashed anchor; the boundary is allowed).
        heldout_fraction: share of the pairs held out, in ``(0, 1)``.
        batch_size, lr, weight_decay: Adam minibatch settings.
        max_epochs, patience: early stopping.
        seed: seeds the split and the minibatch order (CPU generator; same seed, same run).

    Returns:
        A :class:`BCReport` (held-out NLL, top-1 agreement for discrete, the training history).

    Example:
        >>> from gymnasium.spaces import Discrete
        >>> anchor = CategoricalAnchor(4, Discrete(3), hidden_sizes=(32,))
        >>> obs, acts = torch.randn(500, 4), torch.randint(0, 3, (500,))
        >>> report = fit_behaviour_cloning(anchor, obs, acts, max_epochs=3)
        >>> 0.0 <= report.heldout_top1 <= 1.0
        True
    """
    owner = "fit_behaviour_cloning"
    if not isinstance(anchor, nn.Module):
        raise TypeError(f"{owner}: anchor must be an nn.Module, got {type(anchor).__name__}")
    params = [p for p in anchor.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{owner}: anchor has no trainable parameters (e.g. a UniformAnchor)")
    check_unit_interval(owner, "heldout_fraction", heldout_fraction, closed=False)
    batch_size = check_int(owner, "batch_size", batch_size)
    max_epochs = check_int(owner, "max_epochs", max_epochs)
    patience = check_int(owner, "patience", patience)
    check_positive_float(owner, "lr", lr)
    like = params[0]
    obs = torch.as_tensor(observations)
    obs = obs.to(device=like.device, dtype=like.dtype if obs.is_floating_point() else obs.dtype)
    acts = torch.as_tensor(actions, device=like.device)
    n = obs.shape[0] if obs.dim() >= 1 else 0
    if acts.dim() < 1 or acts.shape[0] != n:
        raise ValueError(
            f"{owner}: observations ({tuple(obs.shape)}) and actions ({tuple(acts.shape)}) must "
            "have the same number of rows N"
        )
    if n < 2:
        raise ValueError(f"{owner}: need at least 2 demonstrations, got {n}")
    probe = anchor(obs[:2])
    discrete = isinstance(probe, Categorical)
    if discrete:
        n_actions = probe.logits.shape[-1]
        if acts.dim() != 1 or (acts.is_floating_point() and not (acts == acts.round()).all()):
            raise ValueError(f"{owner}: discrete actions must be integers of shape [N]")
        acts = acts.long()
        if acts.min() < 0 or acts.max() >= n_actions:
            raise ValueError(
                f"{owner}: discrete actions must be in [0, {n_actions}), got range "
                f"[{int(acts.min())}, {int(acts.max())}]"
            )
    else:
        d = probe.event_shape
        if tuple(acts.shape[1:]) != tuple(d):
            raise ValueError(
                f"{owner}: actions must have shape [N, {', '.join(map(str, d))}] for this anchor, "
                f"got {tuple(acts.shape)}"
            )
        acts = acts.to(like.dtype)

    nll0 = _nll(anchor, obs, acts)
    bad = ~torch.isfinite(nll0)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{owner}: {int(bad.sum())} demonstrations have zero (or NaN) density under the "
            f"anchor, e.g. row {first}: action {acts[first].tolist()} (outside the Box?)"
        )

    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator).to(like.device)
    n_heldout = max(1, round(n * heldout_fraction))
    if n_heldout >= n:
        raise ValueError(f"{owner}: heldout_fraction leaves no training data (N={n})")
    held, train = perm[:n_heldout], perm[n_heldout:]
    obs_h, act_h = obs[held], acts[held]
    obs_t, act_t = obs[train], acts[train]
    n_train = obs_t.shape[0]

    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    best = (math.inf, 0, math.inf)  # (heldout nll, epoch, train nll)
    best_state = copy.deepcopy(anchor.state_dict())
    history: list[tuple[float, float]] = []
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(n_train, generator=generator).to(like.device)
        total = torch.zeros((), dtype=like.dtype, device=like.device)
        for i in range(0, n_train, batch_size):
            idx = order[i : i + batch_size]
            loss = -anchor(obs_t[idx]).log_prob(act_t[idx]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total = total + loss.detach() * idx.numel()
        train_nll = float(total / n_train)
        heldout_nll = float(_nll(anchor, obs_h, act_h).mean())
        if not (math.isfinite(train_nll) and math.isfinite(heldout_nll)):
            raise ValueError(
                f"{owner}: the NLL became non-finite at epoch {epoch} (train {train_nll}, "
                f"held-out {heldout_nll}); lower lr"
            )
        history.append((train_nll, heldout_nll))
        if heldout_nll < best[0]:
            best = (heldout_nll, epoch, train_nll)
            best_state = copy.deepcopy(anchor.state_dict())
        elif epoch - best[1] >= patience:
            break
    anchor.load_state_dict(best_state)
    return BCReport(
        heldout_nll=best[0],
        heldout_top1=_top1(anchor, obs_h, act_h) if discrete else None,
        train_nll=float(_nll(anchor, obs_t, act_t).mean()),
        best_epoch=best[1],
        epochs_run=len(history),
        n_train=n_train,
        n_heldout=n_heldout,
        history=tuple(history),
    )
