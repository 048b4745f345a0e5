"""The anchored policy's energy over actions, the usual sampler for it, and its deterministic
mode search: the pieces :class:`~ebrl.policies.AnchoredPolicy` acts with on continuous actions."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import torch
from gymnasium import spaces
from torch import Tensor
from torch.distributions import Distribution, constraints

from ebrl.energy import Energy
from ebrl.samplers import MALA, Box, Chain, ImportanceSampler, Mixture
from ebrl.validation import check_int

__all__ = [
    "AnchoredEnergy",
    "WeightedCost",
    "anchored_sampler",
    "check_cost",
    "check_temperature",
    "distribution_centre",
    "importance_stage",
    "invalid_cost_error",
    "mode_search",
    "sampler_bounds",
    "support_bounds",
]

_OWNER = "AnchoredPolicy"


def check_temperature(value: object) -> float | Tensor:
    if isinstance(value, Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise ValueError(
                f"{_OWNER}: temperature must be a float or a one-element floating tensor, got "
                f"a {value.dtype} tensor of shape {tuple(value.shape)}"
            )
        if not bool((torch.isfinite(value) & (value > 0)).all()):
            raise ValueError(f"{_OWNER}: temperature must be finite and > 0, got {value.item()!r}")
        return value.reshape(())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{_OWNER}: temperature must be a float or a tensor, got {type(value).__name__}"
        )
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{_OWNER}: temperature must be finite and > 0, got {value!r}")
    return value


class WeightedCost(NamedTuple):
    """One term ``weight · cost`` of a composed policy (:meth:`AnchoredPolicy.compose`)."""

    cost: Callable[..., Tensor]
    weight: float


def check_cost(cost: object, weight: object) -> WeightedCost:
    """``(cost, float(weight))`` after checking that ``cost`` is callable and ``weight`` a finite
    real number >= 0 (a Python number, so that ``weight > 0`` needs no host sync)."""
    owner = f"{_OWNER}.compose"
    if not callable(cost):
        raise TypeError(
            f"{owner}: cost must be callable (obs, actions[n, B, d]) -> [n, B], or obs -> "
            f"[B, n_actions] for discrete actions; got {type(cost).__name__}"
        )
    if isinstance(weight, Tensor) and weight.numel() == 1 and not weight.requires_grad:
        weight = weight.item()
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(
            f"{owner}: weight must be a real number (float), got {type(weight).__name__}"
        )
    weight = float(weight)
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(
            f"{owner}: weight must be finite and >= 0, got {weight!r} (an infinite penalty is a "
            "cost that returns +inf: it removes those actions exactly)"
        )
    return WeightedCost(cost, weight)


def check_output(owner: str, what: str, value: object, shape: tuple, layout: str, note: str = ""):
    """Raises ``ValueError`` unless ``value`` (what a utility or a cost returned) is a tensor of
    ``shape``; the message names ``what`` and the expected ``layout``."""
    if not isinstance(value, Tensor) or tuple(value.shape) != tuple(shape):
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{owner}: {what} must return {layout} = {tuple(shape)}{note}, got {got}")


def invalid_cost_error(owner: str, index: int, term: WeightedCost) -> ValueError:
    """The error for a cost that returned NaN or ``-inf`` (an infinitely likely action)."""
    name = getattr(term.cost, "__name__", type(term.cost).__name__)
    return ValueError(
        f"{owner}: cost #{index} ({name}, weight {term.weight:g}) returned NaN or -inf for some "
        "actions; a cost must be finite or +inf (+inf removes the action; -inf would make it "
        "infinitely likely)"
    )


def sampler_bounds(sampler: object) -> tuple | None:
    """The box the sampler keeps its samples in (any stage's ``bounds``), or ``None``."""
    stages = [sampler]
    while stages:
        stage = stages.pop()
        if isinstance(stage, Chain):
            stages += [stage.then, stage.first]
        elif getattr(stage, "bounds", None) is not None:
            return stage.bounds
    return None


def support_bounds(dist: Distribution) -> tuple | None:
    """``(low, high)`` of ``dist``'s support when it is a box (uniform and squashed anchors),
    else ``None``."""
    support = dist.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if isinstance(support, constraints.interval | constraints.half_open_interval):
        return support.lower_bound, support.upper_bound
    return None


def distribution_centre(dist: Distribution) -> Tensor:
    """A deterministic point of ``dist``: its median where defined (squashed Gaussians), else
    its mean; for a :class:`Mixture`, that of its first component (the learned proposal)."""
    while isinstance(dist, Mixture):
        dist = dist.components[0]
    for name in ("median", "mean"):
        try:
            value = getattr(dist, name)
        except (NotImplementedError, AttributeError):
            continue
        if isinstance(value, Tensor) and bool(torch.isfinite(value).all()):
            return value.detach()
    raise ValueError(
        f"{_OWNER}.mode: the proposal/anchor {type(dist).__name__} has no finite median or mean "
        "to start from; pass init="
    )


def importance_stage(sampler: object) -> ImportanceSampler | None:
    """The sampler's importance stage: itself, or the first stage of a (nested) ``Chain``."""
    while isinstance(sampler, Chain):
        sampler = sampler.first
    return sampler if isinstance(sampler, ImportanceSampler) else None


class AnchoredEnergy(Energy):
    """``E(a) = -(log anchor(a|s) + Q(s, a) / T - sum_i w_i cost_i(s, a))`` over actions
    ``[n, B, d] -> [n, B]``.

    ``+inf`` wherever the anchor has zero density or a cost of weight ``w_i > 0`` is ``+inf``
    (whatever ``Q`` is there). A cost that is NaN or ``-inf`` makes the energy NaN there (so the
    samplers' own checks stop), and is recorded, outside ``torch.compile``, for
    :meth:`check_costs` to name. Built by :meth:`AnchoredPolicy.energy` for a fixed batch of
    observations; any ebrl sampler accepts it.
    """

    def __init__(
        self,
        anchor: Distribution,
        utility: Callable[[Tensor, Tensor], Tensor],
        obs: Tensor,
        temperature: float | Tensor,
        costs: tuple[WeightedCost, ...] = (),
    ):
        super().__init__()
        self.anchor = anchor
        self.utility = utility
        self.obs = obs
        self.temperature = temperature
        self.costs = tuple(costs)
        self.batch = obs.shape[0]
        self.action_dim = anchor.event_shape[0]
        # per cost: a 0-dim bool tensor, "NaN or -inf seen" (no host sync until check_costs)
        self._invalid: list[Tensor | None] = [None] * len(self.costs)

    def log_target(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(log anchor(a) + Q(a) / T - sum_i w_i c_i(a), log anchor(a), Q(a), sum_i w_i
        c_i(a))``, each ``[n, B]`` (the last is zeros without costs)."""
        shape = (self.batch, self.action_dim)
        if not isinstance(actions, Tensor) or actions.dim() != 3 or actions.shape[1:] != shape:
            raise ValueError(
                f"{_OWNER}: actions must have shape [n, B, d] = [n, {shape[0]}, {shape[1]}], got "
                f"{getattr(actions, 'shape', type(actions).__name__)}"
            )
        log_anchor = self.anchor.log_prob(actions)
        q = self.utility(self.obs, actions)
        check_output(_OWNER, "utility(obs, actions[n, B, d])", q, actions.shape[:2], "[n, B]")
        t = self.temperature
        t = t.to(q.device) if isinstance(t, Tensor) else t
        logit = log_anchor + q / t
        removed = log_anchor == -math.inf
        total = torch.zeros_like(logit)
        invalid = None
        for i, term in enumerate(self.costs):
            c = term.cost(self.obs, actions)
            what = f"cost #{i} (obs, actions[n, B, d])"
            check_output(_OWNER, what, c, actions.shape[:2], "[n, B]")
            bad = torch.isnan(c) | (c == -math.inf)
            invalid = bad if invalid is None else invalid | bad
            if not torch.compiler.is_compiling():  # a side effect: eager calls only
                seen = bad.any()
                self._invalid[i] = seen if self._invalid[i] is None else self._invalid[i] | seen
            if term.weight > 0:  # weight 0: evaluated and checked, contributes nothing
                removed = removed | (c == math.inf)
                total = total + term.weight * c.to(logit.dtype)
        log_target = torch.where(removed, -math.inf, logit - total)
        if invalid is not None:
            log_target = torch.where(invalid, math.nan, log_target)
        return log_target, log_anchor, q, total

    def check_costs(self, owner: str = _OWNER) -> None:
        """Raises ``ValueError`` naming the first cost that returned NaN or ``-inf`` in an eager
        call so far (one host sync; nothing without costs)."""
        for i, (term, seen) in enumerate(zip(self.costs, self._invalid, strict=True)):
            if seen is not None and bool(seen):
                raise invalid_cost_error(owner, i, term)

    def forward(self, actions: Tensor) -> Tensor:
        return -self.log_target(actions)[0]


def anchored_sampler(
    action_space: spaces.Box,
    n_particles: int = 256,
    mala_steps: int = 0,
    step_size: float = 0.01,
    warmup_steps: int = 10,
) -> ImportanceSampler | Chain:
    """The usual sampler for an anchored policy on a bounded ``Box``.

    ``ImportanceSampler(n_particles)`` from the anchor, followed (``mala_steps > 0``) by MALA
    inside the box (chains in logit space, never leaving it) with ``warmup_steps`` of step-size
    adaptation: importance sampling finds the modes and ``log Z``, MALA diversifies resampled
    duplicates and climbs narrow peaks at small ``T``.
    """
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(f"anchored_sampler: action_space must be a 1-D Box, got {action_space!r}")
    importance = ImportanceSampler(n_particles)
    check_int("anchored_sampler", "mala_steps", mala_steps, minimum=0)
    if mala_steps == 0:
        return importance
    low, high = action_space.low, action_space.high
    if not (
        torch.isfinite(torch.as_tensor(low)).all() and torch.isfinite(torch.as_tensor(high)).all()
    ):
        return Chain(importance, MALA(step_size, mala_steps, warmup_steps=warmup_steps))
    bounds = (torch.as_tensor(low), torch.as_tensor(high))
    return Chain(importance, MALA(step_size, mala_steps, bounds=bounds, warmup_steps=warmup_steps))


def mode_search(energy: AnchoredEnergy, init: Tensor, bounds: tuple | None, steps: int) -> Tensor:
    """A local maximum of ``log anchor(a|s) + Q(s, a) / T`` near ``init [B, d]``, deterministic.

    ``steps`` noise-free gradient-ascent steps: normalised gradient direction, a step of 0.1
    half-widths of ``bounds`` (1 without bounds) that grows by 1.5 after an improving step and
    halves after a failed one (a failed step is not taken, so the density never decreases).
    Raises ``ValueError`` when the density is NaN or zero at the result.
    """
    x = init.detach()
    if bounds is not None:
        box = Box(f"{_OWNER}.mode", bounds, x)
        low, high = box.inner_low, box.inner_high
        half = box.width / 2
        x = torch.minimum(torch.maximum(x, low), high)
    else:
        low = high = None
        half = torch.ones((), dtype=x.dtype, device=x.device)

    def value_and_grad(a: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            a = a.detach().requires_grad_(True)
            f = energy.log_target(a.unsqueeze(0))[0][0]
            (g,) = torch.autograd.grad(f.sum(), a)
        return f.detach(), g

    f, g = value_and_grad(x)
    step = torch.full_like(f, 0.1).unsqueeze(-1)
    for _ in range(steps):
        direction = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        candidate = x + step * half * torch.nan_to_num(direction)
        if low is not None:
            candidate = torch.minimum(torch.maximum(candidate, low), high)
        f_new, g_new = value_and_grad(candidate)
        better = (f_new > f).unsqueeze(-1)
        x = torch.where(better, candidate, x)
        f = torch.where(better.squeeze(-1), f_new, f)
        g = torch.where(better, g_new, g)
        step = torch.where(better, step * 1.5, step * 0.5)
    if not bool(torch.isfinite(f).all()):
        raise ValueError(
            f"{_OWNER}.mode: the policy's log density is NaN or -inf at the deterministic "
            "action for some state (a non-finite utility or observation, or an anchor of "
            "zero density there)"
        )
    return x
