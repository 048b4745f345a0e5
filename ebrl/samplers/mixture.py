"""A finite mixture of arbitrary proposals, e.g. a learned actor mixed with an anchor.

``torch.distributions.MixtureSameFamily`` needs components of one family; defensive importance
sampling mixes different ones (a squashed Gaussian actor and a uniform anchor), so that no mode
of the target is out of the proposal's reach (Hesterberg 1995).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

__all__ = ["Mixture"]


class Mixture(Distribution):
    """``q(x) = sum_k w_k q_k(x)`` over components with equal batch and event shapes.

    Args:
        components: distributions with the same ``batch_shape`` and ``event_shape``.
        weights: ``[K]`` non-negative mixture weights (normalised here), the same for every
            batch element.

    Sampling draws each component for every sample and picks one per sample, so it costs
    ``K`` draws; ``ebrl.samplers.draw`` samples it with an explicit generator.
    """

    arg_constraints: dict = {}  # noqa: RUF012
    has_rsample = False

    def __init__(self, components: Sequence[Distribution], weights: Sequence[float] | Tensor):
        components = list(components)
        if not components or not all(isinstance(c, Distribution) for c in components):
            raise TypeError("Mixture: components must be a non-empty list of Distributions")
        first = components[0]
        for c in components[1:]:
            if c.batch_shape != first.batch_shape or c.event_shape != first.event_shape:
                raise ValueError(
                    "Mixture: components must share batch and event shapes, got "
                    f"{[(tuple(c.batch_shape), tuple(c.event_shape)) for c in components]}"
                )
        # checked and normalised in float64, before rounding: a tiny positive weight must not
        # underflow to 0, nor a tiny negative one pass as -0
        weights = torch.as_tensor(weights, dtype=torch.float64)
        valid = torch.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0
        if weights.shape != (len(components),) or not valid:
            raise ValueError(
                f"Mixture: weights must be {len(components)} finite non-negative numbers, not all "
                f"zero; got {weights.tolist()}"
            )
        self.components = components
        self.log_weights = (weights / weights.sum()).log().to(torch.get_default_dtype())
        super().__init__(first.batch_shape, first.event_shape, validate_args=False)

    @property
    def support(self):  # the union of the components' supports; not checked
        return constraints.real_vector

    def log_prob(self, value: Tensor) -> Tensor:
        parts = [c.log_prob(value) for c in self.components]
        log_w = self.log_weights.to(device=parts[0].device, dtype=parts[0].dtype)
        return torch.logsumexp(torch.stack(parts, dim=-1) + log_w, dim=-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        from ebrl.samplers.base import draw

        return draw(self, tuple(sample_shape), None)

    def _select(self, draws: list[Tensor], uniform: Tensor) -> Tensor:
        """Picks component ``k`` per sample where ``uniform`` falls in its weight interval."""
        cdf = self.log_weights.to(uniform.device, uniform.dtype).exp().cumsum(0)
        index = torch.searchsorted(cdf[:-1].contiguous(), uniform.contiguous(), right=True)
        stacked = torch.stack(draws, dim=0)  # [K, *sample, *batch, *event]
        index = index.reshape(1, *index.shape, *([1] * len(self.event_shape)))
        index = index.expand(1, *stacked.shape[1:])
        return torch.gather(stacked, 0, index).squeeze(0)
