"""Metrics for energies and samples: grid log-normaliser and NLL in 2-D, MMD, a KDE baseline.

- :func:`grid_log_normalizer` / :func:`grid_nll`: ``log Z = log ∫_box exp(-E)`` by the midpoint
  rule on a ``resolution x resolution`` grid, in log space (``logsumexp``), so the NLL of a 2-D
  energy is exact up to the grid's quadrature error and to the mass outside the box (the density
  evaluated is the model restricted to the box, which is what a sampler with ``bounds`` draws).
- :func:`mmd`: maximum mean discrepancy with a Gaussian kernel, median-heuristic bandwidth.
- :func:`kde_log_prob` / :func:`select_kde_bandwidth`: an isotropic Gaussian kernel density
  estimate with a cross-validated bandwidth, the baseline an EBM must beat on 2-D toys.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ebrl.validation import check_unit_interval

__all__ = [
    "grid_log_normalizer",
    "grid_nll",
    "grid_points",
    "kde_log_prob",
    "median_bandwidth",
    "mmd",
    "select_kde_bandwidth",
]

Bounds2D = tuple[tuple[float, float], tuple[float, float]]


def _check_bounds(owner: str, bounds: object) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        (x0, x1), (y0, y1) = bounds  # type: ignore[misc]
        vals = [float(v) for v in (x0, x1, y0, y1)]
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{owner}: bounds must be ((xmin, xmax), (ymin, ymax)), got {bounds!r}"
        ) from err
    if not all(math.isfinite(v) for v in vals) or not (vals[0] < vals[1] and vals[2] < vals[3]):
        raise ValueError(f"{owner}: bounds must be finite with min < max, got {bounds!r}")
    return (vals[0], vals[1]), (vals[2], vals[3])


def _check_resolution(owner: str, resolution: object) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"{owner}: resolution must be an int >= 2, got {resolution!r}")
    return resolution


def grid_points(
    bounds: Bounds2D,
    resolution: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, float]:
    """Midpoints of a ``resolution x resolution`` grid over the box, and the cell area.

    Returns:
        ``(points [resolution, resolution, 2], cell_area)``; ``points[i, j] = (x_j, y_i)``
        (rows follow y, as an image), so ``points[..., 0]`` / ``[..., 1]`` suit ``contourf``
        and ``imshow(origin="lower")``.
    """
    (x0, x1), (y0, y1) = _check_bounds("grid_points", bounds)
    resolution = _check_resolution("grid_points", resolution)
    dx, dy = (x1 - x0) / resolution, (y1 - y0) / resolution
    xs = x0 + dx * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    ys = y0 + dy * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    points = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)
    return points.to(dtype=dtype, device=device), dx * dy


def _energy_on(energy: Callable[[Tensor], Tensor], x: Tensor, chunk: int) -> Tensor:
    with torch.no_grad():
        out = [energy(xs) for xs in x.split(chunk)]
    e = torch.cat(out)
    if e.shape != x.shape[:-1]:
        raise ValueError(
            f"energy must map [n, 2] to [n], got {tuple(e.shape)} for {tuple(x.shape)}"
        )
    return e


def _like(
    energy: Callable[[Tensor], Tensor], x: Tensor | None = None
) -> tuple[torch.dtype, torch.device]:
    """The dtype and device to evaluate ``energy`` in: its parameters' or buffers', else ``x``'s."""
    if isinstance(energy, torch.nn.Module):
        for tensor in itertools.chain(energy.parameters(), energy.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype, tensor.device
    if x is not None and x.is_floating_point():
        return x.dtype, x.device
    return torch.get_default_dtype(), torch.device("cpu")


def grid_log_normalizer(
    energy: Callable[[Tensor], Tensor],
    bounds: Bounds2D,
    resolution: int = 512,
    *,
    chunk: int = 65536,
) -> Tensor:
    """``log Z = log ∫_box exp(-E(x)) dx`` by the midpoint rule, in log space.

    ``log Z ≈ logsumexp_ij(-E(g_ij)) + log(cell area)``. The error is the midpoint rule's,
    ``O(h^2)`` in the cell side ``h`` for smooth energies; pick ``resolution`` so that ``h`` is
    well below the density's smallest length scale. Evaluated without gradients, in chunks.

    Args:
        energy: callable ``[n, 2] -> [n]`` (an :class:`~ebrl.energy.Energy` or any function).
        bounds: ``((xmin, xmax), (ymin, ymax))``.
        resolution: grid cells per axis (>= 2).

    Returns:
        A scalar tensor in the energy's dtype.
    """
    if not callable(energy):
        raise TypeError(f"grid_log_normalizer: energy must be callable, got {type(energy)}")
    bounds = _check_bounds("grid_log_normalizer", bounds)
    resolution = _check_resolution("grid_log_normalizer", resolution)
    dtype, device = _like(energy)
    return _grid_log_normalizer(energy, bounds, resolution, chunk, dtype, device)


def _grid_log_normalizer(energy, bounds, resolution, chunk, dtype, device) -> Tensor:
    points, area = grid_points(bounds, resolution, dtype=dtype, device=device)
    e = _energy_on(energy, points.reshape(-1, 2), chunk)
    if torch.isnan(e).any() or (e == -math.inf).any():
        raise ValueError("grid_log_normalizer: the energy is NaN or -inf on the grid")
    return torch.logsumexp(-e, 0) + math.log(area)


def grid_nll(
    energy: Callable[[Tensor], Tensor],
    x: Tensor,
    bounds: Bounds2D,
    resolution: int = 512,
    *,
    max_outside: float = 0.01,
    chunk: int = 65536,
) -> Tensor:
    """Mean negative log-likelihood (nats) of ``x[n, 2]`` under ``p = exp(-E) / Z_box``.

    ``NLL = mean_i E(x_i) + log Z`` with ``log Z`` from :func:`grid_log_normalizer`. The model is
    normalised over the box, so a test set that lies partly outside it is an error.

    Args:
        energy: callable ``[n, 2] -> [n]``.
        x: test points ``[n, 2]``, floating point.
        bounds: ``((xmin, xmax), (ymin, ymax))``.
        resolution: grid cells per axis.
        max_outside: largest allowed fraction of ``x`` outside the box (``ValueError`` above it,
            naming the fraction); points outside still count with their energy.

    Example:
        >>> from ebrl.energy import GaussianEnergy
        >>> gauss = GaussianEnergy(torch.zeros(2), torch.eye(2))
        >>> x = gauss.sample((1000,), generator=torch.Generator().manual_seed(0))
        >>> nll = grid_nll(gauss, x, ((-8, 8), (-8, 8)))  # = mean(-gauss.log_prob(x)) to 1e-5
    """
    owner = "grid_nll"
    if not callable(energy):
        raise TypeError(f"{owner}: energy must be callable, got {type(energy).__name__}")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{owner}: x must be a floating-point tensor [n, 2]")
    if x.dim() != 2 or x.shape[-1] != 2 or x.shape[0] < 1:
        raise ValueError(f"{owner}: x must have shape [n, 2] with n >= 1, got {tuple(x.shape)}")
    (x0, x1), (y0, y1) = _check_bounds(owner, bounds)
    check_unit_interval(owner, "max_outside", max_outside)
    inside = (x[:, 0] >= x0) & (x[:, 0] <= x1) & (x[:, 1] >= y0) & (x[:, 1] <= y1)
    outside = 1.0 - float(inside.double().mean())
    if outside > max_outside:
        raise ValueError(
            f"{owner}: {outside:.1%} of x lies outside bounds {bounds!r} (max_outside="
            f"{max_outside:.1%}); the grid would miss that mass: widen the bounds"
        )
    dtype, device = _like(energy, x)
    log_z = _grid_log_normalizer(energy, bounds, resolution, chunk, dtype, device)
    e = _energy_on(energy, x.to(dtype=dtype, device=device), chunk)
    return e.mean() + log_z


def _sq_dists(x: Tensor, y: Tensor) -> Tensor:
    return (x.pow(2).sum(-1)[:, None] + y.pow(2).sum(-1)[None, :] - 2 * x @ y.T).clamp_min(0.0)


def _check_samples(owner: str, x: object, y: object) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{owner}: {name} must be a floating-point tensor [n, d]")
        if t.dim() != 2 or t.shape[0] < 1:
            raise ValueError(f"{owner}: {name} must have shape [n, d], got {tuple(t.shape)}")
    if x.shape[1] != y.shape[1]:  # type: ignore[union-attr]
        raise ValueError(
            f"{owner}: x and y differ in dimension: {x.shape[1]} vs {y.shape[1]}"  # type: ignore[union-attr]
        )


def median_bandwidth(x: Tensor, y: Tensor, max_points: int = 2000) -> Tensor:
    """The median heuristic: the median pairwise distance in the pooled sample (at most
    ``max_points`` of each set, the first ones, so the result is deterministic)."""
    _check_samples("median_bandwidth", x, y)
    z = torch.cat([x[:max_points], y[:max_points]])
    d = _sq_dists(z, z)
    iu = torch.triu_indices(len(z), len(z), 1, device=z.device)
    return d[iu[0], iu[1]].median().sqrt()


def mmd(x: Tensor, y: Tensor, bandwidth: float | Tensor | None = None) -> Tensor:
    """Maximum mean discrepancy between samples ``x[n, d]`` and ``y[m, d]`` (not squared).

    ``MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)`` with the Gaussian kernel
    ``k(a, b) = exp(-|a - b|^2 / (2 h^2))``, all pairs included (the biased V-statistic, which is
    never negative): two samples of the same law give a small positive floor of order
    ``1/sqrt(n)``, so compare against that floor (e.g. MMD(train, test)) computed with the same
    sizes and bandwidth. ``h`` defaults to the median pairwise distance of the pooled sample
    (:func:`median_bandwidth`); pass a fixed ``bandwidth`` to compare several pairs on one scale.

    References:
        Gretton et al. (2012), "A kernel two-sample test", JMLR 13, eq. (5) (biased estimate).
    """
    owner = "mmd"
    _check_samples(owner, x, y)
    x, y = x.double(), y.to(device=x.device).double()
    h = median_bandwidth(x, y) if bandwidth is None else torch.as_tensor(bandwidth).double()
    if not bool(torch.isfinite(h)) or float(h) <= 0:
        raise ValueError(f"{owner}: bandwidth must be finite and > 0, got {float(h)!r}")
    gamma = 1.0 / (2 * h**2)
    kxx = torch.exp(-gamma * _sq_dists(x, x)).mean()
    kyy = torch.exp(-gamma * _sq_dists(y, y)).mean()
    kxy = torch.exp(-gamma * _sq_dists(x, y)).mean()
    return (kxx + kyy - 2 * kxy).clamp_min(0.0).sqrt()


def kde_log_prob(x: Tensor, data: Tensor, bandwidth: float, *, chunk: int = 1024) -> Tensor:
    """Log-density of the isotropic Gaussian KDE ``(1/n) sum_i N(x; data_i, h^2 I)`` at
    ``x[m, d]``, shape ``[m]`` (log space, chunked over ``x``)."""
    owner = "kde_log_prob"
    if not (isinstance(bandwidth, int | float) and math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"{owner}: bandwidth must be a finite float > 0, got {bandwidth!r}")
    for name, t in (("x", x), ("data", data)):
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() != 2:
            raise ValueError(f"{owner}: {name} must be a floating-point tensor [n, d]")
    if x.shape[1] != data.shape[1]:
        raise ValueError(f"{owner}: x and data differ in dimension")
    d, n = data.shape[1], data.shape[0]
    const = math.log(n) + 0.5 * d * math.log(2 * math.pi * bandwidth**2)
    out = [
        torch.logsumexp(-0.5 * _sq_dists(xs, data) / bandwidth**2, -1) - const
        for xs in x.split(chunk)
    ]
    return torch.cat(out)


def select_kde_bandwidth(
    data: Tensor,
    candidates: Sequence[float],
    *,
    n_folds: int = 5,
    folds_used: int | None = None,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """Cross-validated bandwidth: the candidate with the best mean held-out log-likelihood.

    ``data`` is shuffled with ``seed`` and split into ``n_folds`` folds; each fold is scored by
    the KDE of the other folds. ``folds_used`` scores only the first so many folds (e.g.
    ``n_folds=10, folds_used=1``: one 10% hold-out split, for large data).

    Returns:
        ``(best bandwidth, {bandwidth: mean held-out log-likelihood})``.
    """
    owner = "select_kde_bandwidth"
    if not isinstance(data, Tensor) or data.dim() != 2 or not data.is_floating_point():
        raise ValueError(f"{owner}: data must be a floating-point tensor [n, d]")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= len(data):
        raise ValueError(f"{owner}: n_folds must be an int in [2, n], got {n_folds!r}")
    if len(candidates) == 0:
        raise ValueError(f"{owner}: candidates must not be empty")
    used = n_folds if folds_used is None else folds_used
    if isinstance(used, bool) or not isinstance(used, int) or not 1 <= used <= n_folds:
        raise ValueError(f"{owner}: folds_used must be an int in [1, n_folds], got {used!r}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=g).to(data.device)
    folds = perm.chunk(n_folds)[:used]
    scores: dict[float, float] = {}
    for h in candidates:
        total, count = 0.0, 0
        for held in folds:
            rest = perm[~torch.isin(perm, held)]
            total += float(kde_log_prob(data[held], data[rest], float(h)).sum())
            count += len(held)
        scores[float(h)] = total / count
    best = max(scores, key=scores.__getitem__)
    return best, scores
