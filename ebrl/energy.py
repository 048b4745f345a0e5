"""Energies: the one function type the whole library is built on.

An energy maps points ``x`` of shape ``[*batch, d]`` to scalars ``[*batch]`` and defines the
density ``p(x) = exp(-E(x)) / Z``. Samplers and trainers accept any callable with that contract;
:class:`Energy` is the ``nn.Module`` base that adds the score, composition and conditioning:

- ``E1 + E2`` is the product of experts ``p ∝ exp(-E1 - E2)``;
- ``c * E`` tempers (``c = 1 / T``);
- ``E.condition(context)`` turns a conditional energy ``E(x, context)`` (e.g. over actions given
  observations, the form every policy uses) into an energy over ``x`` alone, broadcasting
  ``context[*batch, c]`` over any leading sample dimensions of ``x[*sample, *batch, d]``.

:class:`GaussianEnergy` and :class:`GaussianMixtureEnergy` are analytic: exact ``log_prob``,
``sample`` and ``log_normalizer``, for tests and toy problems.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ebrl.networks import mlp
from ebrl.validation import check_int

__all__ = [
    "ConditionedEnergy",
    "Energy",
    "FunctionEnergy",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "MLPEnergy",
    "ScaledEnergy",
    "SumEnergy",
    "as_energy",
]


class Energy(nn.Module):
    """Base class: ``forward(x[*batch, d]) -> [*batch]``, ``log p(x) = -E(x) - log Z``.

    Subclasses implement :meth:`forward` (optionally taking a ``context`` keyword argument for
    conditional energies). Energies compose: ``E1 + E2`` (product of experts), ``c * E``
    (tempering), ``E.condition(context)``.
    """

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x) -> [*batch]")

    def score(self, x: Tensor, *args, **kwargs) -> Tensor:
        """The score ``grad_x log p(x) = -grad_x E(x)``, shape ``[*batch, d]``.

        Differentiable (``create_graph`` follows grad mode) so that score-matching losses can
        backpropagate through it.
        """
        with torch.enable_grad():
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            energy = self(x, *args, **kwargs)
            (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=torch.is_grad_enabled())
        return -grad

    def condition(self, context: Tensor) -> ConditionedEnergy:
        """Bind ``context[*batch, c]``: returns the energy ``x -> E(x, context)``."""
        return ConditionedEnergy(self, context)

    def __add__(self, other: Callable[[Tensor], Tensor]) -> SumEnergy:
        if not callable(other):
            return NotImplemented
        return SumEnergy(self, as_energy(other))

    def __radd__(self, other: Callable[[Tensor], Tensor]) -> SumEnergy:
        if not callable(other):
            return NotImplemented
        return SumEnergy(as_energy(other), self)

    def __mul__(self, scale: float | Tensor) -> ScaledEnergy:
        if callable(scale):
            return NotImplemented
        return ScaledEnergy(self, scale)

    __rmul__ = __mul__


class FunctionEnergy(Energy):
    """Wraps a plain callable ``fn(x) -> [*batch]`` as an :class:`Energy`."""

    def __init__(self, fn: Callable[[Tensor], Tensor]):
        super().__init__()
        if not callable(fn):
            raise TypeError(f"FunctionEnergy: fn must be callable, got {type(fn).__name__}")
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def as_energy(fn: Callable[[Tensor], Tensor]) -> Energy:
    """Returns ``fn`` if it is an :class:`Energy`, else wraps it in :class:`FunctionEnergy`."""
    return fn if isinstance(fn, Energy) else FunctionEnergy(fn)


class SumEnergy(Energy):
    """``E(x) = sum_i E_i(x)``: the product of experts ``p ∝ prod_i exp(-E_i)``."""

    def __init__(self, *terms: Energy):
        super().__init__()
        flat: list[Energy] = []
        for term in terms:
            flat.extend(term.terms if isinstance(term, SumEnergy) else [term])
        self.terms = nn.ModuleList(flat)

    def forward(self, x: Tensor) -> Tensor:
        total = self.terms[0](x)
        for term in self.terms[1:]:
            total = total + term(x)
        return total


class ScaledEnergy(Energy):
    """``E(x) = scale * E0(x)``: tempering, ``p ∝ p0^scale`` (``scale = 1 / temperature``)."""

    def __init__(self, energy: Energy, scale: float | Tensor):
        super().__init__()
        scale_t = torch.as_tensor(scale)
        if scale_t.numel() != 1 or not torch.isfinite(scale_t).all():
            raise ValueError(f"ScaledEnergy: scale must be a finite scalar, got {scale!r}")
        self.energy = energy
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.energy(x)


class ConditionedEnergy(Energy):
    """``x -> E(x, context)`` with ``context[*batch, c]`` broadcast over ``x[*sample, *batch, d]``.

    The conditional energy receives ``context`` expanded to ``x.shape[:-1] + (c,)``, so it can
    be written for a flat batch and is evaluated for all sample particles of all states in one
    call (no loop over states).
    """

    def __init__(self, energy: Callable[..., Tensor], context: Tensor):
        super().__init__()
        if not isinstance(context, Tensor) or context.dim() < 1:
            raise ValueError(
                "condition: context must be a tensor of shape [*batch, c], got "
                f"{getattr(context, 'shape', type(context).__name__)}"
            )
        self.energy = energy
        self.context = context

    def forward(self, x: Tensor) -> Tensor:
        batch = self.context.shape[:-1]
        if x.shape[x.dim() - 1 - len(batch) : -1] != batch:
            raise ValueError(
                f"ConditionedEnergy: x of shape {tuple(x.shape)} does not end in the context's "
                f"batch shape {tuple(batch)} (expected [*sample, {', '.join(map(str, batch))}, d])"
            )
        context = self.context.expand(*x.shape[:-1], self.context.shape[-1])
        return self.energy(x, context)


class MLPEnergy(Energy):
    """A multilayer perceptron energy ``E(x) = f_theta(x)`` (or ``f_theta(x, context)``).

    Args:
        dim: dimension ``d`` of ``x``.
        hidden_sizes: widths of the hidden layers.
        activation: one of ``silu, relu, elu, tanh, softplus, gelu`` (smooth ones suit samplers
            and score matching, which differentiate the energy).
        context_dim: dimension of an optional conditioning input (0: unconditional).

    Example:
        >>> energy = MLPEnergy(2, hidden_sizes=(128, 128))
        >>> energy(torch.zeros(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        dim: int,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "silu",
        context_dim: int = 0,
    ):
        super().__init__()
        dim = check_int("MLPEnergy", "dim", dim)
        context_dim = check_int("MLPEnergy", "context_dim", context_dim, minimum=0)
        self.dim, self.context_dim = dim, context_dim
        self.net = mlp(dim + context_dim, hidden_sizes, 1, activation, owner="MLPEnergy")

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"MLPEnergy: x must have last dimension {self.dim}, got {tuple(x.shape)}"
            )
        if self.context_dim:
            if context is None or context.shape[-1] != self.context_dim:
                raise ValueError(
                    f"MLPEnergy: context of shape [..., {self.context_dim}] is required, got "
                    f"{None if context is None else tuple(context.shape)}"
                )
            x = torch.cat([x, context.expand(*x.shape[:-1], self.context_dim)], dim=-1)
        elif context is not None:
            raise ValueError("MLPEnergy: context given but context_dim=0")
        return self.net(x).squeeze(-1)


def _check_spd(name: str, cov: Tensor) -> Tensor:
    try:
        return torch.linalg.cholesky(cov)
    except RuntimeError as err:
        raise ValueError(f"{name}: covariance must be symmetric positive definite") from err


class GaussianEnergy(Energy):
    """``E(x) = 1/2 (x - mu)^T Sigma^-1 (x - mu)``: an exact Gaussian target.

    ``log_normalizer = d/2 log(2 pi) + 1/2 log det Sigma`` so ``log_prob = -E - log_normalizer``.
    ``mean`` may carry batch dimensions (``[*batch, d]``, covariance ``[*batch, d, d]``).
    """

    def __init__(self, mean: Tensor, covariance: Tensor):
        super().__init__()
        mean = torch.as_tensor(mean)
        covariance = torch.as_tensor(covariance, dtype=mean.dtype)
        if mean.dim() < 1 or covariance.shape[-2:] != (mean.shape[-1], mean.shape[-1]):
            raise ValueError(
                f"GaussianEnergy: expected mean [*batch, d] and covariance [*batch, d, d], got "
                f"{tuple(mean.shape)} and {tuple(covariance.shape)}"
            )
        self.register_buffer("mean", mean)
        self.register_buffer("covariance", covariance)
        self.register_buffer("scale_tril", _check_spd("GaussianEnergy", covariance))

    @property
    def dim(self) -> int:
        return self.mean.shape[-1]

    @property
    def log_normalizer(self) -> Tensor:
        """``log Z = d/2 log 2pi + 1/2 log det Sigma`` (shape: the Gaussian's batch shape)."""
        half_logdet = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return 0.5 * self.dim * math.log(2 * math.pi) + half_logdet

    def forward(self, x: Tensor) -> Tensor:
        diff = (x - self.mean).unsqueeze(-1)
        tril = self.scale_tril.expand(*diff.shape[:-2], self.dim, self.dim)
        z = torch.linalg.solve_triangular(tril, diff, upper=False).squeeze(-1)
        return 0.5 * z.pow(2).sum(-1)

    def log_prob(self, x: Tensor) -> Tensor:
        return -self(x) - self.log_normalizer

    def sample(
        self, sample_shape: Sequence[int] = (), *, generator: torch.Generator | None = None
    ) -> Tensor:
        shape = (*sample_shape, *self.mean.shape)
        eps = torch.randn(
            shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def distribution(self) -> torch.distributions.MultivariateNormal:
        """The same Gaussian as a ``torch.distributions`` object (e.g. as a proposal)."""
        return torch.distributions.MultivariateNormal(self.mean, scale_tril=self.scale_tril)


class GaussianMixtureEnergy(Energy):
    """``E(x) = -log sum_k w_k N(x; mu_k, Sigma_k)``: a normalised mixture (``log Z = 0``).

    Args:
        weights: ``[K]`` non-negative mixture weights (normalised internally).
        means: ``[K, d]``.
        covariances: ``[K, d, d]``, or ``[K]`` / a float for isotropic components.
    """

    def __init__(self, weights: Tensor, means: Tensor, covariances: Tensor | float):
        super().__init__()
        means = torch.as_tensor(means)
        # checked and normalised in float64: a tiny weight must neither pass as 0 (a negative
        # one) nor make the weights "all zero" (a positive one) by underflowing in float32
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if means.dim() != 2 or weights.shape != means.shape[:1]:
            raise ValueError(
                "GaussianMixtureEnergy: expected weights [K] and means [K, d], got "
                f"{tuple(weights.shape)} and {tuple(means.shape)}"
            )
        if not bool(torch.isfinite(weights).all() & (weights >= 0).all()) or weights.sum() <= 0:
            raise ValueError(
                "GaussianMixtureEnergy: weights must be finite and non-negative, not all zero, "
                f"got {weights.tolist()}"
            )
        k, d = means.shape
        cov = torch.as_tensor(covariances, dtype=means.dtype)
        if cov.dim() <= 1:
            cov = cov.reshape(-1, 1, 1).expand(k, 1, 1) * torch.eye(d, dtype=means.dtype)
        if cov.shape != (k, d, d):
            raise ValueError(
                f"GaussianMixtureEnergy: covariances must be [K, d, d] = [{k}, {d}, {d}], "
                f"got {tuple(cov.shape)}"
            )
        self.register_buffer("log_weights", (weights / weights.sum()).log().to(means.dtype))
        self.components = GaussianEnergy(means, cov)

    @property
    def dim(self) -> int:
        return self.components.dim

    @property
    def log_normalizer(self) -> Tensor:
        return torch.zeros((), dtype=self.log_weights.dtype, device=self.log_weights.device)

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log w_k + log N(x; mu_k, Sigma_k)``, shape ``[*batch, K]``."""
        return self.log_weights + self.components.log_prob(x.unsqueeze(-2))

    def forward(self, x: Tensor) -> Tensor:
        return -torch.logsumexp(self.component_log_prob(x), dim=-1)

    def log_prob(self, x: Tensor) -> Tensor:
        return -self(x)

    def sample(
        self, sample_shape: Sequence[int] = (), *, generator: torch.Generator | None = None
    ) -> Tensor:
        n = math.prod(sample_shape)
        idx = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(
            n, self.dim, generator=generator, device=idx.device, dtype=self.log_weights.dtype
        )
        tril = self.components.scale_tril[idx]
        x = self.components.mean[idx] + (tril @ eps.unsqueeze(-1)).squeeze(-1)
        return x.reshape(*sample_shape, self.dim)
