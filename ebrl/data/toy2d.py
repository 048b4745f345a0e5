"""Eight 2-D toy densities, drawn i.i.d. through an explicit generator, most with exact log-density.

The shapes and scales follow the toy datasets of FFJORD (Grathwohl et al. 2019,
``lib/toy_data.py``), which most 2-D density-estimation figures use, with one change: every
random quantity (angle, position along a curve, mixture label) is drawn i.i.d. instead of on a
``linspace`` or in equal counts, so that a sample really is i.i.d. from a density and a test NLL
means something. All datasets live well inside ``BOUNDS = ((-5, 5), (-5, 5))`` (the box used for
grid NLLs; the mass outside it is below 1e-6 for every dataset).

=============  ==================================================================  =============
name           generative process (all noise Gaussian, std given *after* scaling)   exact log p
=============  ==================================================================  =============
8gaussians     8 equal-weight N(mu_k, 0.354^2 I), mu_k on the circle of radius       closed form
               2.83 at angles k pi/4 (FFJORD: scale 4, std 0.5, all divided by 1.414)
2spirals       two opposite spirals: n = 3 pi sqrt(u), point +-((-n cos n, n sin n)    quadrature
               + U[0, 0.5]^2) / 3 + N(0, 0.1^2 I)                                     (1-D, n)
checkerboard   uniform on the 8 black squares (side 2) of a 4x4 board on [-4, 4]^2    closed form
                                                                                      (-log 32)
rings          4 equal-weight rings of radius 3, 2.25, 1.5, 0.75, uniform angle,      closed form
               + N(0, 0.08^2 I)                                                       (Bessel I0)
pinwheel       5 arms: f ~ N((1, 0), diag(0.3^2, 0.1^2)), rotated by                  none
               2 pi k / 5 + 0.25 exp(f_0), times 2
moons          two interleaved half circles of radius 2 (sklearn ``make_moons``       quadrature
               times 2, shifted by (-1, -0.2)), + N(0, 0.2^2 I)                       (1-D, angle)
swissroll      (t cos t, t sin t) / 5, t ~ U[1.5 pi, 4.5 pi], + N(0, 0.2^2 I)         quadrature
               (sklearn ``make_swiss_roll(noise=1)``, coordinates (0, 2), over 5)     (1-D, t)
circles        2 equal-weight circles of radius 3 and 1.5, uniform angle,             closed form
               + N(0, 0.24^2 I) (sklearn ``make_circles(factor=.5, noise=.08)`` x 3)  (Bessel I0)
=============  ==================================================================  =============

"Quadrature" log-densities integrate the Gaussian noise over the 1-D latent (angle, position
along the curve) with a midpoint rule of 1024 nodes, spaced along the curve at a tenth of the
noise scale or less: the error is O(h^2), below 0.01 nats pointwise (largest at the curves' ends)
and below 1e-5 nats in a mean over samples, i.e. in an NLL. Only ``pinwheel``, a nonlinear warp
of a Gaussian, has no tractable density here.

Example:
    >>> from ebrl.data import toy2d
    >>> x = toy2d.sample("8gaussians", 1000, seed=0)
    >>> x.shape, x.dtype
    (torch.Size([1000, 2]), torch.float32)
    >>> nll = -toy2d.log_prob("8gaussians", x).mean()   # about 2.84 nats
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["BOUNDS", "DATASETS", "has_log_prob", "log_prob", "sample"]

BOUNDS: tuple[tuple[float, float], tuple[float, float]] = ((-5.0, 5.0), (-5.0, 5.0))

_QUADRATURE_NODES = 1024
_SQRT2 = math.sqrt(2.0)


def _gen(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator()
    if seed is None:
        g.seed()  # fresh, nondeterministic: never the global RNG
    else:
        g.manual_seed(seed)
    return g


def _rand(n: int, g: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(n, *shape, generator=g, dtype=torch.float64)


def _randn(n: int, g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(n, *shape, generator=g, dtype=torch.float64)


def _sign(n: int, g: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (n, 1), generator=g, dtype=torch.float64) * 2 - 1


# ----------------------------------------------------------------------------- 8gaussians

_8G_RADIUS, _8G_STD = 4.0 / 1.414, 0.5 / 1.414


def _8g_means() -> Tensor:
    angle = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    return _8G_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], -1)


def _sample_8gaussians(n: int, g: torch.Generator) -> Tensor:
    k = torch.randint(0, 8, (n,), generator=g)
    return _8g_means()[k] + _8G_STD * _randn(n, g, 2)


def _log_prob_8gaussians(x: Tensor) -> Tensor:
    diff = x.unsqueeze(-2) - _8g_means()  # [n, 8, 2]
    log_n = -0.5 * diff.pow(2).sum(-1) / _8G_STD**2 - math.log(2 * math.pi * _8G_STD**2)
    return torch.logsumexp(log_n, -1) - math.log(8)


# ----------------------------------------------------------------------------- checkerboard


def _sample_checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = _rand(n, g) * 4 - 2
    x2 = _rand(n, g) - torch.randint(0, 2, (n,), generator=g, dtype=torch.float64) * 2
    x2 = x2 + torch.floor(x1) % 2
    return 2 * torch.stack([x1, x2], -1)


def _log_prob_checkerboard(x: Tensor) -> Tensor:
    inside = (x.abs() <= 4).all(-1)
    cell = torch.floor(x / 2)
    black = (cell[..., 0] + cell[..., 1]) % 2 == 0
    log_p = torch.full(x.shape[:-1], -math.log(32.0), dtype=x.dtype)
    return torch.where(inside & black, log_p, torch.full_like(log_p, -math.inf))


# ----------------------------------------------------------------------------- rings, circles


def _ring_sampler(radii: tuple[float, ...], std: float) -> Callable[[int, torch.Generator], Tensor]:
    def sample(n: int, g: torch.Generator) -> Tensor:
        r = torch.tensor(radii, dtype=torch.float64)[
            torch.randint(0, len(radii), (n,), generator=g)
        ]
        angle = 2 * math.pi * _rand(n, g)
        ring = r.unsqueeze(-1) * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
        return ring + std * _randn(n, g, 2)

    return sample


def _ring_log_prob(radii: tuple[float, ...], std: float) -> Callable[[Tensor], Tensor]:
    """Uniform angle on a circle of radius r plus N(0, s^2 I) noise has the density
    ``exp(-(|x|^2 + r^2) / 2s^2) I0(|x| r / s^2) / (2 pi s^2)`` (a Rice law in the radius)."""

    def log_prob(x: Tensor) -> Tensor:
        rho = x.norm(dim=-1, keepdim=True)
        r = torch.tensor(radii, dtype=torch.float64)
        z = rho * r / std**2
        # log I0(z) = log i0e(z) + z, so the exponent is -(rho - r)^2 / 2s^2 (stable for large z)
        log_k = (
            -((rho - r) ** 2) / (2 * std**2)
            + torch.log(torch.special.i0e(z))
            - math.log(2 * math.pi * std**2)
        )
        return torch.logsumexp(log_k, -1) - math.log(len(radii))

    return log_prob


_RINGS, _RINGS_STD = (3.0, 2.25, 1.5, 0.75), 0.08
_CIRCLES, _CIRCLES_STD = (3.0, 1.5), 0.24


# ----------------------------------------------------------------------------- curves + noise


def _curve_log_prob(
    curve: Callable[[Tensor], Tensor], std: float, chunk: int = 2048
) -> Callable[[Tensor], Tensor]:
    """``log ∫_0^1 N(x; curve(u), std^2 I) du`` by the midpoint rule over ``u``.

    ``curve(u[m]) -> [m, 2]`` maps the uniform latent to a point on the curve.
    """

    def log_prob(x: Tensor) -> Tensor:
        u = (torch.arange(_QUADRATURE_NODES, dtype=torch.float64) + 0.5) / _QUADRATURE_NODES
        nodes = curve(u)  # [m, 2]
        out = []
        for xs in x.split(chunk):
            sq = (xs.unsqueeze(-2) - nodes).pow(2).sum(-1)  # [chunk, m]
            out.append(torch.logsumexp(-0.5 * sq / std**2, -1))
        log_mean = torch.cat(out) - math.log(_QUADRATURE_NODES)
        return log_mean - math.log(2 * math.pi * std**2)

    return log_prob


def _moon(u: Tensor, upper: bool) -> Tensor:
    t = math.pi * u
    if upper:
        return torch.stack([2 * torch.cos(t) - 1, 2 * torch.sin(t) - 0.2], -1)
    return torch.stack([1 - 2 * torch.cos(t), 0.8 - 2 * torch.sin(t)], -1)


_MOONS_STD = 0.2


def _sample_moons(n: int, g: torch.Generator) -> Tensor:
    u = _rand(n, g)
    upper = torch.randint(0, 2, (n, 1), generator=g).bool()
    points = torch.where(upper, _moon(u, True), _moon(u, False))
    return points + _MOONS_STD * _randn(n, g, 2)


def _log_prob_moons(x: Tensor) -> Tensor:
    upper = _curve_log_prob(lambda u: _moon(u, True), _MOONS_STD)(x)
    lower = _curve_log_prob(lambda u: _moon(u, False), _MOONS_STD)(x)
    return torch.logaddexp(upper, lower) - math.log(2)


def _swiss(u: Tensor) -> Tensor:
    t = 1.5 * math.pi * (1 + 2 * u)
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) / 5


_SWISS_STD = 0.2


def _sample_swissroll(n: int, g: torch.Generator) -> Tensor:
    return _swiss(_rand(n, g)) + _SWISS_STD * _randn(n, g, 2)


# 2spirals: n = 3 pi sqrt(u); the U[0, 0.5]^2 jitter (before the /3) is integrated in closed form
# (a uniform square convolved with N(0, s^2 I) is a product of normal-CDF differences).
_SPIRAL_STD, _SPIRAL_JITTER = 0.1, 0.5 / 3


def _spiral_centre(u: Tensor) -> Tensor:
    n = 3 * math.pi * torch.sqrt(u)
    return torch.stack([-torch.cos(n) * n, torch.sin(n) * n], -1) / 3


def _sample_2spirals(n: int, g: torch.Generator) -> Tensor:
    base = _spiral_centre(_rand(n, g)) + _SPIRAL_JITTER * _rand(n, g, 2)
    return _sign(n, g) * base + _SPIRAL_STD * _randn(n, g, 2)


def _log_box_conv(x: Tensor, low: Tensor, width: float, std: float) -> Tensor:
    """``log ∫ U(y; [low, low + width]) N(x; y, std^2) dy`` per coordinate, summed (stable)."""
    a = (x - low) / std
    b = a - width / std
    # Phi(a) - Phi(b) = Phi(-b) - Phi(-a): take the pair in the lower tail (well conditioned)
    lower_tail = a + b < 0
    p, q = torch.where(lower_tail, a, -b), torch.where(lower_tail, b, -a)
    log_p = torch.special.log_ndtr(p)
    log_diff = log_p + torch.log1p(-torch.exp(torch.special.log_ndtr(q) - log_p))
    return (log_diff - math.log(width)).sum(-1)


def _log_prob_2spirals(x: Tensor, chunk: int = 1024) -> Tensor:
    # quadrature in n (not u = (n / 3 pi)^2, whose curve speed diverges at the centre): midpoint
    # nodes in [0, 3 pi] weighted by the density of n, 2 n / (3 pi)^2 (linear: exact weights)
    m = _QUADRATURE_NODES
    dn = 3 * math.pi / m
    n = dn * (torch.arange(m, dtype=torch.float64) + 0.5)
    log_w = torch.log(2 * n / (3 * math.pi) ** 2 * dn)
    low = torch.stack([-torch.cos(n) * n, torch.sin(n) * n], -1) / 3  # jitter square's corner
    out = []
    for xs in x.split(chunk):
        xs = xs.unsqueeze(-2)  # [c, 1, 2]
        # sign -1: x = -(c + j) + noise  <=>  -x = c + j - noise (the noise is symmetric)
        pos = _log_box_conv(xs, low, _SPIRAL_JITTER, _SPIRAL_STD)
        neg = _log_box_conv(-xs, low, _SPIRAL_JITTER, _SPIRAL_STD)
        both = torch.logaddexp(pos, neg) - math.log(2)
        out.append(torch.logsumexp(both + log_w, -1))
    return torch.cat(out)


# ----------------------------------------------------------------------------- pinwheel


def _sample_pinwheel(n: int, g: torch.Generator) -> Tensor:
    k = torch.randint(0, 5, (n,), generator=g, dtype=torch.float64)
    f = _randn(n, g, 2) * torch.tensor([0.3, 0.1], dtype=torch.float64)
    f[:, 0] += 1.0
    angle = 2 * math.pi * k / 5 + 0.25 * torch.exp(f[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    # FFJORD's einsum("ti,tij->tj", f, [[c, -s], [s, c]])
    return 2 * torch.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], -1)


# ----------------------------------------------------------------------------- registry

_SAMPLERS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "8gaussians": _sample_8gaussians,
    "2spirals": _sample_2spirals,
    "checkerboard": _sample_checkerboard,
    "rings": _ring_sampler(_RINGS, _RINGS_STD),
    "pinwheel": _sample_pinwheel,
    "moons": _sample_moons,
    "swissroll": _sample_swissroll,
    "circles": _ring_sampler(_CIRCLES, _CIRCLES_STD),
}

_LOG_PROBS: dict[str, Callable[[Tensor], Tensor]] = {
    "8gaussians": _log_prob_8gaussians,
    "2spirals": _log_prob_2spirals,
    "checkerboard": _log_prob_checkerboard,
    "rings": _ring_log_prob(_RINGS, _RINGS_STD),
    "moons": _log_prob_moons,
    "swissroll": _curve_log_prob(_swiss, _SWISS_STD),
    "circles": _ring_log_prob(_CIRCLES, _CIRCLES_STD),
}

DATASETS: tuple[str, ...] = tuple(_SAMPLERS)


def _check_name(owner: str, name: object) -> str:
    if name not in _SAMPLERS:
        raise ValueError(f"{owner}: unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return name  # type: ignore[return-value]


def sample(
    name: str,
    n: int,
    seed: int | None = None,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` i.i.d. points ``[n, 2]`` from the toy density ``name``.

    Args:
        name: one of :data:`DATASETS`.
        n: number of points (>= 1).
        seed: seeds a fresh CPU generator (same seed, same points); ``None`` with no
            ``generator``: a nondeterministic seed (never the global RNG).
        generator: a CPU ``torch.Generator`` to draw from instead of ``seed``.
        dtype: floating dtype of the result (points are drawn in float64).
        device: device of the result.
    """
    owner = "toy2d.sample"
    _check_name(owner, name)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{owner}: n must be an int >= 1, got {n!r}")
    if seed is not None and generator is not None:
        raise ValueError(f"{owner}: pass seed or generator, not both")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"{owner}: seed must be an int >= 0, got {seed!r}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"{owner}: generator must be a CPU generator, got {generator.device}")
    if not dtype.is_floating_point:
        raise TypeError(f"{owner}: dtype must be a floating dtype, got {dtype}")
    x = _SAMPLERS[name](n, _gen(generator, seed))
    return x.to(dtype=dtype, device=device)


def has_log_prob(name: str) -> bool:
    """Whether :func:`log_prob` knows the exact log-density of ``name``."""
    return _check_name("toy2d.has_log_prob", name) in _LOG_PROBS


def log_prob(name: str, x: Tensor) -> Tensor:
    """Exact log-density (nats) of the toy density ``name`` at ``x[..., 2]``, shape ``[...]``.

    Computed in float64 and returned in ``x``'s dtype and device. ``-inf`` outside the support
    (checkerboard). Raises ``ValueError`` for ``pinwheel`` (see :func:`has_log_prob`).
    """
    owner = "toy2d.log_prob"
    _check_name(owner, name)
    if name not in _LOG_PROBS:
        raise ValueError(
            f"{owner}: no exact log-density for {name!r}; available for: {', '.join(_LOG_PROBS)}"
        )
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{owner}: x must be a floating-point tensor [..., 2]")
    if x.dim() < 1 or x.shape[-1] != 2:
        raise ValueError(f"{owner}: x must have shape [..., 2], got {tuple(x.shape)}")
    flat = x.detach().reshape(-1, 2).to(device="cpu", dtype=torch.float64)
    out = _LOG_PROBS[name](flat)
    return out.reshape(x.shape[:-1]).to(dtype=x.dtype, device=x.device)
