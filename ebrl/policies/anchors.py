"""Anchors: the prior policies ``anchor(a|s)`` that piKL regularises toward.

Every anchor is a callable ``obs[B, *obs_shape] -> torch.distributions.Distribution`` with batch
shape ``[B]``; :class:`~ebrl.policies.AnchoredPolicy` turns one into
``pi(a|s) ∝ anchor(a|s) exp(Q(s, a) / T)``.

- :class:`UniformAnchor` (``Discrete`` or bounded ``Box``): piKL with a uniform anchor is
  maximum-entropy RL.
- :class:`CategoricalAnchor`: a state-conditioned softmax over ``Discrete`` actions.
- :class:`GaussianAnchor`: a state-conditioned diagonal Gaussian squashed into the ``Box`` by
  ``tanh`` then an affine map, with the exact log-density of the squashed action
  (:class:`~ebrl.policies.SquashedDistribution`); on an unbounded ``Box`` a plain diagonal
  Gaussian.
- :class:`GaussianMixtureAnchor`: the same with ``K`` components (multimodal demonstrators).
- :class:`TruncatedGaussianAnchor`: a diagonal Gaussian in action space truncated to the
  ``Box`` (no squashing): the anchor for demonstrators that add Gaussian noise and clip.

The distributions live in :mod:`ebrl.policies.distributions`; fitting an anchor to
demonstrations in :mod:`ebrl.policies.behaviour_cloning`.

References:
    Jacob et al. (2022), "Modeling Strong and Human-Like Gameplay with KL-Regularized Search",
    ICML (piKL), Sec. 3; Haarnoja et al. (2018), "Soft Actor-Critic", Appendix C (the squashed
    Gaussian and its log-density).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
)

from ebrl.networks import mlp
from ebrl.policies.distributions import ClosedUniform, SquashedDistribution, TruncatedNormal
from ebrl.validation import check_int, check_obs

__all__ = [
    "CategoricalAnchor",
    "GaussianAnchor",
    "GaussianMixtureAnchor",
    "TruncatedGaussianAnchor",
    "UniformAnchor",
]


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
        self._categorical: tuple | None = None
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
            # The same distribution for every batch of one size, dtype and device: built once
            # (acting calls this at every env step; a Categorical normalises its logits).
            key = (batch, dtype, obs.device)
            if self._categorical is None or self._categorical[0] != key:
                logits = torch.full((batch, self.n_actions), -math.log(self.n_actions))
                dist = Categorical(logits=logits.to(dtype=dtype, device=obs.device))
                self._categorical = (key, dist)
            return self._categorical[1]
        low = self.low.to(device=obs.device, dtype=dtype).expand(batch, -1)
        high = self.high.to(device=obs.device, dtype=dtype).expand(batch, -1)
        return Independent(ClosedUniform(low, high, validate_args=False), 1, validate_args=False)


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
        # the constructor's arguments, so a checkpoint can rebuild the module (plain data only)
        self.spec = {
            "obs_dim": self.obs_dim,
            "n_actions": n,
            "hidden_sizes": list(hidden_sizes),
            "activation": activation,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> CategoricalAnchor:
        """Rebuilds an (untrained) anchor from ``anchor.spec``; load its state dict after."""
        return cls(
            spec["obs_dim"], spec["n_actions"], tuple(spec["hidden_sizes"]), spec["activation"]
        )

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

    def _init_diagonal(
        self,
        owner: str,
        obs_dim: int,
        action_space: spaces.Box,
        hidden_sizes: Sequence[int],
        activation: str,
        log_std_bounds: tuple,
    ) -> None:
        """The box, ``spec`` and MLP ``obs -> (mean [d], raw log-std [d])`` of a diagonal anchor."""
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
        # (lo + half) + half tanh(raw) = lo + half (tanh(raw) + 1): 3 ops instead of 4
        lo, hi = self.log_std_bounds
        half = 0.5 * (hi - lo)
        return torch.tanh(raw).mul(half).add_(lo + half)

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
        self._init_diagonal(
            "GaussianAnchor", obs_dim, action_space, hidden_sizes, activation, log_std_bounds
        )

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
        mean, std = self.gaussian(obs)
        base = Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)
        return self._squash(base)

    def gaussian(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, sigma)`` of the pre-squash Gaussian, ``[B, d]`` each, for ``obs[B, obs_dim]``:
        :meth:`forward` without building a distribution (for hot paths such as
        :class:`~ebrl.SAC`'s update and acting step)."""
        mean, log_std = self.mean_log_std(obs)
        return mean, log_std.exp()

    def mean_log_std(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log sigma)``: :meth:`gaussian` with the log scale (for log-densities)."""
        obs = check_obs("GaussianAnchor", obs, self.obs_dim, self.net[0].weight)
        mean, raw = self.net(obs).chunk(2, dim=-1)
        return mean, self._log_std(raw)


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


class _DiagonalTruncatedNormal(Independent):
    """``Independent(TruncatedNormal, 1)`` with the coordinatewise ``median`` (the deterministic
    action, as :class:`SquashedDistribution`'s)."""

    @property
    def median(self) -> Tensor:
        return self.base_dist.median


class TruncatedGaussianAnchor(_SquashedHead):
    """A state-conditioned diagonal Gaussian in action space, truncated to the ``Box``:
    ``anchor(a|s) = N(a; mu_theta(s), diag(sigma_theta(s)^2)) / Z_theta(s)`` on ``[low, high]``.

    The anchor for demonstrators who act ``clip(controller(s) + noise)``: near a bound its
    density is the Gaussian's, where a squashed Gaussian (:class:`GaussianAnchor`) has the heavy
    ``atanh`` tails that widen a maximum-likelihood fit. On LunarLanderContinuous-v3 with a human
    adding N(0, 0.5^2) noise, the squashed clone fired its side engine in 60% of held-out states
    against the human's 34% and, sampled, returned 130 against the human's 168; see
    ``experiments/pikl_continuous/``.

    ``forward(obs[B, obs_dim])`` returns ``Independent(TruncatedNormal, 1)`` (batch ``[B]``,
    event ``[d]``) with a reparameterised ``rsample`` (inverse CDF), the exact ``log_prob`` and
    ``median``. ``mu`` is kept within one half-width of the box (``loc + 2 scale tanh(raw / 2)``,
    with the box's ``loc`` and half-width ``scale``): far enough out to put almost all the mass
    on a bound, near enough that the density stays finite on clipped demonstrations.
    ``log sigma`` is squashed into ``log_std_bounds`` as in :class:`GaussianAnchor`. Unlike
    :class:`GaussianAnchor`, ``SAC`` cannot use it as its actor (no ``gaussian``).

    Args:
        obs_dim, action_space, hidden_sizes, activation, log_std_bounds: as
            :class:`GaussianAnchor`; the Box must be bounded on every side.

    Example:
        >>> from gymnasium.spaces import Box
        >>> anchor = TruncatedGaussianAnchor(3, Box(-2.0, 2.0, (1,)), hidden_sizes=(64,))
        >>> dist = anchor(torch.zeros(5, 3))
        >>> a = dist.rsample()
        >>> bool(((a >= -2) & (a <= 2)).all()), dist.log_prob(a).shape
        (True, torch.Size([5]))
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
        owner = "TruncatedGaussianAnchor"
        self._init_diagonal(owner, obs_dim, action_space, hidden_sizes, activation, log_std_bounds)
        if not self.bounded:
            raise ValueError(f"{owner}: the Box must be bounded on every side to truncate to it")

    from_spec = classmethod(GaussianAnchor.from_spec.__func__)

    def forward(self, obs: Tensor) -> Distribution:
        obs = check_obs("TruncatedGaussianAnchor", obs, self.obs_dim, self.net[0].weight)
        raw_mean, raw_std = self.net(obs).chunk(2, dim=-1)
        loc, scale = (self.high + self.low) / 2, (self.high - self.low) / 2
        mean = loc + 2 * scale * torch.tanh(raw_mean / 2)
        std = self._log_std(raw_std).exp()
        # valid by construction: std > 0 (bounded log-std), the box checked in __init__
        base = TruncatedNormal(mean, std, self.low, self.high, validate_args=False)
        return _DiagonalTruncatedNormal(base, 1, validate_args=False)
