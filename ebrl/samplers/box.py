"""Samples of a density ``exp(-E)`` restricted to a box, in one call: what a user wants from a
trained energy (a generative EBM) without building a proposal and a sampler by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.distributions import Independent, Uniform

from ebrl.samplers.chain import Chain, Sampler
from ebrl.samplers.importance import ImportanceSampler
from ebrl.samplers.langevin import MALA
from ebrl.validation import check_int

__all__ = ["sample_energy"]


def sample_energy(
    energy: Callable[[Tensor], Tensor],
    n: int,
    bounds: tuple[float | Sequence[float] | Tensor, float | Sequence[float] | Tensor],
    *,
    dim: int | None = None,
    sampler: Sampler | None = None,
    n_chains: int = 64,
    seed: int = 0,
) -> Tensor:
    """``n`` samples ``[n, d]`` of ``exp(-energy(x))`` on the box ``bounds = (low, high)`` (the
    samplers' spelling: scalars, or one value per dimension).

    ``dim``: the dimension ``d`` (needed when ``low`` and ``high`` are scalars). ``sampler``:
    default importance sampling of 4096 uniform particles per chain, then 20 MALA steps (with
    step-size warm-up), all inside the box; ``n_chains`` chains each give ``n / n_chains``
    samples. Runs on the device of the energy's parameters (CPU for a plain function).
    """
    owner = "sample_energy"
    check_int(owner, "n", n)
    check_int(owner, "n_chains", n_chains)
    if not (isinstance(bounds, tuple | list) and len(bounds) == 2):
        raise ValueError(f"{owner}: bounds must be (low, high), got {bounds!r}")
    params = list(getattr(energy, "parameters", list)())
    like = {"dtype": params[0].dtype, "device": params[0].device} if params else {}
    low, high = (torch.as_tensor(b, **like) for b in bounds)
    if low.dim() > 1 or high.dim() > 1:
        raise ValueError(f"{owner}: low and high must be scalars or 1-D, got {bounds!r}")
    if dim is None:
        dim = max(low.numel() if low.dim() else 0, high.numel() if high.dim() else 0)
        if dim == 0:
            raise ValueError(f"{owner}: pass dim= when low and high are scalars")
    check_int(owner, "dim", dim)
    low, high = low.expand(dim).clone(), high.expand(dim).clone()
    if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (low < high).all()):
        raise ValueError(f"{owner}: bounds must be finite with low < high, got {bounds!r}")
    box = (low, high)
    if sampler is None:
        sampler = Chain(
            ImportanceSampler(4096, bounds=box), MALA(0.01, 20, bounds=box, warmup_steps=10)
        )
    proposal = Independent(Uniform(low.expand(n_chains, dim), high.expand(n_chains, dim)), 1)
    generator = torch.Generator(device=low.device).manual_seed(seed)
    per_chain = -(-n // n_chains)
    result = sampler.sample(energy, proposal, num_samples=per_chain, generator=generator)
    return result.samples.reshape(-1, dim)[:n]
