"""Contrastive divergence: maximum likelihood with negatives drawn by the shared samplers.

The log-likelihood gradient of ``p_theta ∝ exp(-E_theta)`` is
``-E_data[grad E] + E_p_theta[grad E]``, so the loss ``E(x+) - E(x-)`` with ``x+`` from the data
and ``x-`` from (an approximation of) the model gives that gradient. The negatives come from any
ebrl sampler (:class:`~ebrl.samplers.Langevin`, :class:`~ebrl.samplers.MALA`, ...) started at:

- the data batch: CD-k (Hinton 2002), ``persistent=False``;
- a buffer of persistent chains: PCD (Tieleman 2008), with each chain restarted from the
  noise proposal with probability ``reinit_prob`` per use (:class:`SampleBuffer`, the replay
  buffer of Du & Mordatch 2019). ``reinit_prob=1`` gives short-run chains from noise (Nijkamp
  et al. 2019).

The samplers use the textbook Langevin convention ``x' = x - eps grad E + sqrt(2 eps) xi``,
i.e. they sample ``exp(-E)`` itself. With ``temperature=T`` the negatives target
``exp(-E / T)`` instead (the sampler runs on the composed energy ``(1 / T) * E``): the common
"small noise" recipe (gradient step ``lambda``, noise ``sigma`` with ``sigma^2 != 2 lambda``)
is this with ``eps = sigma^2 / 2`` and ``T = sigma^2 / (2 lambda)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Uniform

from ebrl.energy import as_energy
from ebrl.samplers import Sampler, SampleResult, draw
from ebrl.validation import (
    check_batch,
    check_energy_output,
    check_generator,
    check_int,
    check_nonnegative_float,
    check_positive_float,
    check_unit_interval,
)

__all__ = ["ContrastiveDivergence", "SampleBuffer", "contrastive_divergence_loss"]

EnergyFn = Callable[[Tensor], Tensor]
Terms = dict[str, Tensor]


def contrastive_divergence_loss(
    energy: EnergyFn, positive: Tensor, negative: Tensor, *, energy_reg: float = 0.0
) -> tuple[Tensor, Terms]:
    """``mean E(x+) - mean E(x-) + energy_reg * mean(E(x+)^2 + E(x-)^2)``.

    The regulariser keeps energies near zero (Du & Mordatch 2019, Sec. 3.3): without it, the
    loss is invariant to a constant shift of ``E`` and energies may drift. Negatives are
    detached (no gradient flows through the sampler).

    Args:
        energy: callable ``[n, d] -> [n]``.
        positive: data ``[n, d]``.
        negative: model samples ``[m, d]``.
        energy_reg: weight of the energy-magnitude regulariser (>= 0).

    Returns:
        ``(loss, {"energy_pos", "energy_neg", "energy_gap" (= energy_neg - energy_pos, > 0 when
        the data sit lower than the negatives), "energy_reg"})``.

    References:
        Hinton (2002), "Training products of experts by minimizing contrastive divergence";
        Du & Mordatch (2019), "Implicit generation and generalization in energy-based models",
        eq. (2) and Sec. 3.3.
    """
    owner = "contrastive_divergence_loss"
    positive = check_batch(owner, positive)
    negative = check_batch(owner, negative).detach()
    if negative.shape[1] != positive.shape[1]:
        raise ValueError(
            f"{owner}: negative has dimension {negative.shape[1]}, positive {positive.shape[1]}"
        )
    check_nonnegative_float(owner, "energy_reg", energy_reg)
    e_pos = check_energy_output(owner, energy(positive), positive)
    e_neg = check_energy_output(owner, energy(negative), negative)
    reg = e_pos.pow(2).mean() + e_neg.pow(2).mean()
    loss = e_pos.mean() - e_neg.mean() + energy_reg * reg
    terms = {
        "energy_pos": e_pos.mean().detach(),
        "energy_neg": e_neg.mean().detach(),
        "energy_gap": (e_neg.mean() - e_pos.mean()).detach(),
        "energy_reg": reg.detach(),
    }
    return loss, terms


class SampleBuffer:
    """The PCD sample buffer: a fixed pool of ``size`` persistent chains (the "replay buffer" of
    Du & Mordatch 2019, Sec. 3.1; not the transition buffer of the agents).

    Filled from the noise proposal on first use. Each :meth:`draw` picks ``batch_size`` distinct
    chains uniformly at random and restarts each of them, independently with probability
    ``reinit_prob``, from a fresh proposal draw; :meth:`update` writes the sampler's output back
    at the same places. Chains not drawn are left untouched.

    Attributes:
        chains: ``[size, d]`` positions (``None`` until the first draw).
    """

    def __init__(self, size: int, reinit_prob: float):
        self.size = check_int("SampleBuffer", "size", size)
        self.reinit_prob = check_unit_interval("SampleBuffer", "reinit_prob", reinit_prob)
        self.chains: Tensor | None = None

    def draw(
        self, batch_size: int, proposal: Distribution, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(index [batch_size], init [batch_size, d], reinit [batch_size] bool)``."""
        check_int("SampleBuffer", "batch_size", batch_size)
        if batch_size > self.size:
            raise ValueError(
                f"SampleBuffer: batch_size {batch_size} exceeds the buffer size {self.size}; "
                "use buffer_size >= batch_size"
            )
        if self.chains is None:
            self.chains = draw(proposal, (self.size,), generator)
        device = self.chains.device
        index = torch.randperm(self.size, generator=generator, device=device)[:batch_size]
        u = torch.rand(batch_size, generator=generator, device=device, dtype=self.chains.dtype)
        reinit = u < self.reinit_prob
        fresh = draw(proposal, (batch_size,), generator)
        init = torch.where(reinit.unsqueeze(-1), fresh, self.chains[index])
        return index, init, reinit

    def update(self, index: Tensor, samples: Tensor) -> None:
        """Writes ``samples [len(index), d]`` back into the chains at ``index``."""
        if self.chains is None:
            raise RuntimeError("SampleBuffer: update before the first draw")
        self.chains[index] = samples.detach().to(self.chains.dtype)


def _default_proposal(x: Tensor) -> Distribution:
    low, high = x.min(0).values, x.max(0).values
    # A zero-width box (constant data) gets width 1e-3 relative to the data's magnitude: an
    # absolute 1e-3 falls below float32 resolution once |x| >= 4096 (low + pad == low).
    magnitude = torch.maximum(low.abs(), high.abs()).clamp_min(1.0)
    pad = 0.1 * torch.maximum(high - low, 1e-3 * magnitude)
    return Independent(Uniform(low - pad, high + pad), 1)


class ContrastiveDivergence:
    """CD-k from the data, or persistent CD with a sample buffer; negatives from a shared sampler.

    Args:
        sampler: any ebrl sampler whose ``sample(energy, proposal, n, init=...)`` starts from
            ``init`` (``Langevin``, ``MALA``, or a ``Chain`` of them).
        persistent: PCD with a :class:`SampleBuffer` (True) or CD-k from the data batch.
        buffer_size: number of persistent chains (PCD).
        reinit_prob: per-use probability that a drawn chain restarts from noise (PCD).
        energy_reg: weight of ``mean(E+^2 + E-^2)`` (see :func:`contrastive_divergence_loss`).
        temperature: negatives target ``exp(-E / temperature)``; ``None``: ``exp(-E)`` (the
            textbook convention, ``sqrt(2 eps)`` noise).
        proposal: the noise distribution (event shape ``[d]``) that fills and restarts the
            chains; ``None``: uniform on the first data batch's bounding box widened by 10% on
            every side (a box of zero width first gets width ``1e-3 max(1, |x|)``), fixed at the
            first call.
        num_negatives: negatives per step; ``None``: as many as the data batch.

    Example:
        >>> from ebrl.energy import MLPEnergy
        >>> from ebrl.samplers import Langevin
        >>> cd = ContrastiveDivergence(Langevin(0.01, 20), buffer_size=1000)
        >>> g = torch.Generator().manual_seed(0)
        >>> loss, terms = cd.loss(MLPEnergy(2), torch.randn(128, 2), generator=g)
        >>> "energy_gap" in terms and "acceptance_rate" in terms
        True
    """

    def __init__(
        self,
        sampler: Sampler,
        persistent: bool = True,
        buffer_size: int = 10000,
        reinit_prob: float = 0.05,
        energy_reg: float = 0.0,
        temperature: float | None = None,
        proposal: Distribution | None = None,
        num_negatives: int | None = None,
    ):
        owner = "ContrastiveDivergence"
        if not callable(getattr(sampler, "sample", None)):
            raise TypeError(f"{owner}: sampler must have a .sample method (an ebrl sampler)")
        if not isinstance(persistent, bool):
            raise TypeError(f"{owner}: persistent must be a bool, got {persistent!r}")
        energy_reg = check_nonnegative_float(owner, "energy_reg", energy_reg)
        if temperature is not None:
            check_positive_float(owner, "temperature", temperature)
        if proposal is not None and (
            not isinstance(proposal, Distribution) or len(proposal.event_shape) != 1
        ):
            raise TypeError(f"{owner}: proposal must be a Distribution with event shape [d]")
        if num_negatives is not None:
            check_int(owner, "num_negatives", num_negatives)
        self.sampler = sampler
        self.persistent = persistent
        self.buffer = SampleBuffer(buffer_size, reinit_prob) if persistent else None
        self.energy_reg = float(energy_reg)
        self.temperature = temperature
        self.proposal = proposal
        self.num_negatives = num_negatives

    def __repr__(self) -> str:
        buffer = (
            f", buffer_size={self.buffer.size}, reinit_prob={self.buffer.reinit_prob}"
            if self.buffer is not None
            else ""
        )
        return (
            f"ContrastiveDivergence(sampler={self.sampler!r}, persistent={self.persistent}"
            f"{buffer}, energy_reg={self.energy_reg}, temperature={self.temperature})"
        )

    def negatives(
        self, energy: EnergyFn, x: Tensor, *, generator: torch.Generator | None = None
    ) -> SampleResult:
        """Draws negatives for the data batch ``x[n, d]`` (and advances the PCD buffer)."""
        owner = "ContrastiveDivergence"
        x = check_batch(owner, x)
        check_generator(owner, generator, x)
        if self.proposal is None:
            self.proposal = _default_proposal(x.detach())
        if self.proposal.event_shape != x.shape[1:]:
            raise ValueError(
                f"{owner}: proposal event shape {tuple(self.proposal.event_shape)} does not match "
                f"the data dimension {x.shape[1]}"
            )
        n = self.num_negatives or x.shape[0]
        target = (
            energy if self.temperature is None else (1.0 / self.temperature) * as_energy(energy)
        )
        if self.buffer is None:
            if n > x.shape[0]:
                raise ValueError(f"{owner}: CD-k needs num_negatives <= batch size, got {n}")
            return self.sampler.sample(
                target, self.proposal, n, init=x[:n].detach(), generator=generator
            )
        index, init, reinit = self.buffer.draw(n, self.proposal, generator)
        result = self.sampler.sample(target, self.proposal, n, init=init, generator=generator)
        self.buffer.update(index, result.samples)
        stats = {**result.stats, "reinit_fraction": reinit.to(init.dtype).mean()}
        return SampleResult(result.samples, stats)

    def loss(
        self, energy: EnergyFn, x: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Terms]:
        """``(loss, terms)``: the CD loss on ``x`` and fresh negatives, with the sampler's stats
        (mean ``acceptance_rate``, ``step_size``, ...) among the terms."""
        result = self.negatives(energy, x, generator=generator)
        loss, terms = contrastive_divergence_loss(
            energy, x, result.samples, energy_reg=self.energy_reg
        )
        for key, value in result.stats.items():
            terms[key] = value.detach().float().mean()
        return loss, terms
