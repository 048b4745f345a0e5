"""Score matching: fit ``s_theta(x) = -grad_x E_theta(x)`` to the data score without ``Z``.

Three objectives, each a pure loss function (randomness comes in as a tensor, so a plain-loop
reference can check it on the same draws) and a thin frozen dataclass that draws that randomness
from an explicit generator:

- :func:`exact_score_matching_loss` / :class:`ExactScoreMatching` (Hyvärinen 2005): the exact
  Hessian trace by ``d`` backward passes, for low dimensions;
- :func:`denoising_score_matching_loss` / :class:`DenoisingScoreMatching` (Vincent 2011),
  optionally over several noise levels;
- :func:`sliced_score_matching_loss` / :class:`SlicedScoreMatching` (Song et al. 2019), with the
  variance-reduced form (SSM-VR) by default.

Every loss returns ``(loss, terms)``: a scalar that backpropagates into the energy's parameters
and a dict of detached scalar tensors (no host sync) for logging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ebrl.validation import (
    check_batch,
    check_energy_output,
    check_generator,
    check_int,
    check_positive_float,
)

__all__ = [
    "DenoisingScoreMatching",
    "ExactScoreMatching",
    "SlicedScoreMatching",
    "denoising_score_matching_loss",
    "exact_score_matching_loss",
    "sliced_score_matching_loss",
]

EnergyFn = Callable[[Tensor], Tensor]
Terms = dict[str, Tensor]


def _score(owner: str, energy: EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(s(x) = -grad_x E(x), x_leaf)`` with a graph for second derivatives and the parameters.

    Always builds the graph (``create_graph=True``), also under ``no_grad``, because the losses
    differentiate the score once more with respect to ``x``.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = check_energy_output(owner, energy(x), x)
        (grad,) = torch.autograd.grad(e.sum(), x, create_graph=True)
        score = -grad  # inside enable_grad: keeps its graph under an outer no_grad
    return score, x


def exact_score_matching_loss(energy: EnergyFn, x: Tensor) -> tuple[Tensor, Terms]:
    """Hyvärinen's explicit score-matching objective with the exact Hessian trace.

    ``J(theta) = E_x[ 1/2 |s(x)|^2 + tr grad_x s(x) ]``, ``s = grad_x log p_theta = -grad_x E``,
    which equals the Fisher divergence ``1/2 E|s(x) - grad log p_data(x)|^2`` up to a constant
    independent of theta. In ``d`` dimensions the cross term is integrated by parts coordinate
    by coordinate:

        ``E[s_i d_i log p_data] = ∫ s_i d_i p_data dx = [s_i p_data]_boundary - ∫ p_data d_i s_i``

    which needs the boundary term to vanish: ``p_data(x) s(x) -> 0`` as ``|x| -> inf`` (or on the
    boundary of the support), with ``p_data`` differentiable and both second moments finite
    (Hyvärinen 2005, Theorem 1). The trace costs ``d`` extra backward passes (a loop over
    dimensions, not over the batch), so use it for low ``d``; use sliced or denoising score
    matching beyond.

    Args:
        energy: callable ``[n, d] -> [n]`` (differentiable twice).
        x: data ``[n, d]``.

    Returns:
        ``(loss, {"score_norm": mean 1/2 |s|^2, "divergence": mean tr grad s})``.

    References:
        Hyvärinen (2005), "Estimation of non-normalized statistical models by score matching",
        JMLR 6, eq. (3)-(4) and Theorem 1.
    """
    owner = "exact_score_matching_loss"
    x = check_batch(owner, x)
    s, x_leaf = _score(owner, energy, x)
    create = torch.is_grad_enabled()
    divergence = torch.zeros(x.shape[0], dtype=s.dtype, device=s.device)
    with torch.enable_grad():
        for i in range(x.shape[1]):
            (row,) = torch.autograd.grad(
                s[:, i].sum(),
                x_leaf,
                create_graph=create,
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,  # a score constant in x has zero divergence
            )
            divergence = divergence + row[:, i]
    score_norm = 0.5 * s.pow(2).sum(-1)
    loss = (score_norm + divergence).mean()
    if not create:
        loss = loss.detach()
    terms = {"score_norm": score_norm.mean().detach(), "divergence": divergence.mean().detach()}
    return loss, terms


def denoising_score_matching_loss(
    energy: EnergyFn, x: Tensor, noise: Tensor, sigma: float | Tensor
) -> tuple[Tensor, Terms]:
    """Denoising score matching with noise scale(s) ``sigma``, weighted by ``sigma^2``.

    With ``x~ = x + sigma * noise`` the score of ``q(x~ | x) = N(x, sigma^2 I)`` is
    ``-noise / sigma``, and

        ``loss = mean_i 1/2 sigma_i^2 |s(x~_i) + noise_i / sigma_i|^2
               = mean_i 1/2 |sigma_i s(x~_i) + noise_i|^2``

    whose minimiser is the score of the noised data ``p_data * N(0, sigma^2 I)`` (Vincent 2011).
    With one ``sigma`` this is ``sigma^2`` times Vincent's objective; with one ``sigma_i`` per
    point (several levels) the ``sigma^2`` weighting puts all levels on one scale (Song & Ermon
    2019, eq. (2)). An unconditional energy then learns a single score that blends the levels,
    close to the smallest level where data are dense and to the larger ones in between (useful
    to fill the gaps between far-apart modes).

    Args:
        energy: callable ``[n, d] -> [n]``.
        x: data ``[n, d]``.
        noise: standard normal draws ``[n, d]``.
        sigma: a float or a tensor ``[n]`` of per-point noise scales (all > 0).

    Returns:
        ``(loss, {"score_norm": mean 1/2 |s(x~)|^2 at the noised points})``.

    References:
        Vincent (2011), "A connection between score matching and denoising autoencoders",
        Neural Computation 23(7), eq. (11).
    """
    owner = "denoising_score_matching_loss"
    x = check_batch(owner, x)
    if not isinstance(noise, Tensor) or noise.shape != x.shape:
        raise ValueError(
            f"{owner}: noise must be a tensor of x's shape {tuple(x.shape)}, got "
            f"{tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__}"
        )
    sigma_t = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma_t.dim() == 0:
        sigma_t = sigma_t.expand(x.shape[0])
    if sigma_t.shape != x.shape[:1]:
        raise ValueError(
            f"{owner}: sigma must be a float or a tensor [n] = [{x.shape[0]}], got "
            f"{tuple(sigma_t.shape)}"
        )
    sigma_x = sigma_t.unsqueeze(-1)
    s, _ = _score(owner, energy, x + sigma_x * noise)
    residual = 0.5 * (sigma_x * s + noise).pow(2).sum(-1)
    loss = residual.mean()
    if not torch.is_grad_enabled():
        loss = loss.detach()
    return loss, {"score_norm": 0.5 * s.pow(2).sum(-1).mean().detach()}


def sliced_score_matching_loss(
    energy: EnergyFn, x: Tensor, projections: Tensor, variance_reduction: bool = True
) -> tuple[Tensor, Terms]:
    """Sliced score matching: Hyvärinen's objective along random directions ``v``.

    ``J = E_x E_v[ v^T grad_x s(x) v + 1/2 (v^T s(x))^2 ]``; for ``E[v v^T] = I`` the second term
    averages to ``1/2 |s(x)|^2``, which the variance-reduced form (SSM-VR) uses exactly. Each
    ``v^T grad s v`` costs one Hessian-vector product, whatever ``d``.

    Args:
        energy: callable ``[n, d] -> [n]``.
        x: data ``[n, d]``.
        projections: directions ``[m, n, d]`` (``m`` per point) with ``E[v v^T] = I``
            (standard normal or Rademacher).
        variance_reduction: use ``1/2 |s|^2`` instead of ``1/2 (v^T s)^2``.

    Returns:
        ``(loss, {"score_norm": mean 1/2 |s|^2, "divergence": mean v^T grad s v})``.

    References:
        Song, Garg, Shi & Ermon (2019), "Sliced score matching: a scalable approach to density
        and score estimation", UAI, eq. (7)-(8) (SSM and SSM-VR).
    """
    owner = "sliced_score_matching_loss"
    x = check_batch(owner, x)
    if not isinstance(projections, Tensor) or (
        projections.dim() != 3 or projections.shape[1:] != x.shape
    ):
        raise ValueError(
            f"{owner}: projections must have shape [m, n, d] = [m, {x.shape[0]}, {x.shape[1]}], "
            f"got {tuple(projections.shape) if isinstance(projections, Tensor) else projections}"
        )
    m = projections.shape[0]
    # evaluate at m copies of x so that one backward pass gives all m Hessian-vector products
    s, x_leaf = _score(owner, energy, x.unsqueeze(0).repeat(m, 1, 1))
    create = torch.is_grad_enabled()
    with torch.enable_grad():
        (hvp,) = torch.autograd.grad(
            (s * projections).sum(),
            x_leaf,
            create_graph=create,
            allow_unused=True,
            materialize_grads=True,  # a score constant in x has zero Hessian
        )
    divergence = (hvp * projections).sum(-1)  # [m, n]
    if variance_reduction:
        norm = 0.5 * s.pow(2).sum(-1)
    else:
        norm = 0.5 * (s * projections).sum(-1).pow(2)
    loss = (divergence + norm).mean()
    if not create:
        loss = loss.detach()
    terms = {
        "score_norm": 0.5 * s.pow(2).sum(-1).mean().detach(),
        "divergence": divergence.mean().detach(),
    }
    return loss, terms


# ----------------------------------------------------------------------------- objectives


def _shard_rows(owner: str, shard: object, n: int) -> tuple[int, slice]:
    """``(global_n, rows)`` for a batch of ``n`` rows that is shard ``rank`` of ``n_ranks`` equal
    shards (``shard = (rank, n_ranks)``): the objective draws its noise for all ``global_n`` rows
    from the generator and keeps ``rows``, so that the ranks together draw, row for row, what one
    process draws for the whole batch (data-parallel :func:`~ebrl.trainers.fit`)."""
    ok = (
        isinstance(shard, tuple)
        and len(shard) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
        and shard[1] >= 1
        and 0 <= shard[0] < shard[1]
    )
    if not ok:
        raise ValueError(
            f"{owner}: shard must be a tuple (rank, n_ranks) of ints with 0 <= rank < n_ranks, "
            f"got {shard!r}"
        )
    rank, n_ranks = shard
    return n * n_ranks, slice(rank * n, (rank + 1) * n)


@dataclass(frozen=True)
class ExactScoreMatching:
    """Hyvärinen (2005) score matching with the exact Hessian trace (low ``d``): see
    :func:`exact_score_matching_loss`.

    Example:
        >>> from ebrl.energy import MLPEnergy
        >>> loss, terms = ExactScoreMatching().loss(MLPEnergy(2), torch.randn(64, 2))
        >>> sorted(terms)
        ['divergence', 'score_norm']
    """

    def loss(
        self,
        energy: EnergyFn,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> tuple[Tensor, Terms]:
        """``(loss, terms)`` on the batch ``x[n, d]`` (``generator`` and ``shard`` are unused:
        no randomness)."""
        x = check_batch("ExactScoreMatching", x)
        check_generator("ExactScoreMatching", generator, x)
        _shard_rows("ExactScoreMatching", shard, x.shape[0])
        return exact_score_matching_loss(energy, x)


@dataclass(frozen=True)
class DenoisingScoreMatching:
    """Denoising score matching (Vincent 2011): see :func:`denoising_score_matching_loss`.

    Args:
        sigma: the noise scale, or several (each point draws one uniformly at random; the loss
            weights them by ``sigma^2``).
    """

    sigma: float | Sequence[float] = 0.1

    def __post_init__(self) -> None:
        levels = tuple(self.sigma) if isinstance(self.sigma, Sequence) else (self.sigma,)
        if isinstance(self.sigma, str) or len(levels) == 0:
            raise ValueError(
                f"DenoisingScoreMatching: sigma must be a float or a non-empty sequence of floats, "
                f"got {self.sigma!r}"
            )
        for level in levels:
            check_positive_float("DenoisingScoreMatching", "sigma", level)
        if isinstance(self.sigma, Sequence):
            object.__setattr__(self, "sigma", tuple(float(v) for v in levels))  # hashable

    @property
    def levels(self) -> tuple[float, ...]:
        """The noise scales as a tuple (one element for a single ``sigma``)."""
        return tuple(self.sigma) if isinstance(self.sigma, Sequence) else (float(self.sigma),)

    def loss(
        self,
        energy: EnergyFn,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> tuple[Tensor, Terms]:
        """``(loss, terms)`` on the batch ``x[n, d]``; with ``shard = (rank, n_ranks)``, ``x`` is
        that rank's rows of a global batch of ``n * n_ranks`` and the noise is drawn for the
        global batch (the same numbers, row for row, as one process drawing for all of it)."""
        owner = "DenoisingScoreMatching"
        x = check_batch(owner, x)
        check_generator(owner, generator, x)
        n, rows = _shard_rows(owner, shard, x.shape[0])
        shape = (n, *x.shape[1:])
        noise = torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)[rows]
        levels = self.levels
        if len(levels) == 1:
            sigma: float | Tensor = levels[0]
        else:
            pick = torch.randint(0, len(levels), (n,), generator=generator, device=x.device)
            sigma = torch.tensor(levels, dtype=x.dtype, device=x.device)[pick[rows]]
        return denoising_score_matching_loss(energy, x, noise, sigma)


@dataclass(frozen=True)
class SlicedScoreMatching:
    """Sliced score matching (Song et al. 2019): see :func:`sliced_score_matching_loss`.

    Args:
        n_projections: random directions per data point.
        variance_reduction: SSM-VR (default) or plain SSM.
        projection: ``"gaussian"`` or ``"rademacher"`` directions.
    """

    n_projections: int = 1
    variance_reduction: bool = True
    projection: str = "gaussian"

    def __post_init__(self) -> None:
        check_int("SlicedScoreMatching", "n_projections", self.n_projections)
        if self.projection not in ("gaussian", "rademacher"):
            raise ValueError(
                "SlicedScoreMatching: projection must be 'gaussian' or 'rademacher', got "
                f"{self.projection!r}"
            )

    def loss(
        self,
        energy: EnergyFn,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> tuple[Tensor, Terms]:
        """``(loss, terms)`` on the batch ``x[n, d]``; ``shard`` as for
        :meth:`DenoisingScoreMatching.loss` (the directions are drawn for the global batch)."""
        owner = "SlicedScoreMatching"
        x = check_batch(owner, x)
        check_generator(owner, generator, x)
        n, rows = _shard_rows(owner, shard, x.shape[0])
        shape = (self.n_projections, n, *x.shape[1:])
        if self.projection == "gaussian":
            v = torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
        else:
            v = torch.randint(0, 2, shape, generator=generator, device=x.device).to(x.dtype)
            v = 2 * v - 1
        v = v[:, rows]
        return sliced_score_matching_loss(energy, x, v, self.variance_reduction)
