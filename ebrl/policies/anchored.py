"""Anchored (piKL) policies: ``pi(a|s) ∝ anchor(a|s) exp(Q(s, a) / T)``.

The policy maximises ``E_pi[Q] - T KL(pi || anchor)``; its value is the soft value
``V(s) = T log E_anchor[exp(Q(s, a) / T)]``. As ``T -> inf`` it tends to the anchor, as ``T -> 0``
to the argmax of ``Q`` on the anchor's support. Both ``E_pi[Q]`` and ``KL(pi || anchor)`` are
non-increasing in ``T`` (their derivatives are ``-Var_pi(Q) / T^2`` and ``-Var_pi(Q) / T^3``).

- **Discrete actions** (the anchor returns a ``Categorical``; ``utility(obs) -> [B, n]``): exact,
  ``pi = softmax(log anchor + Q / T)`` with ``log anchor = -inf`` where the anchor's probability
  is 0, so masked (illegal) actions are never taken, whatever their utility.
- **Continuous actions** (event shape ``[d]``; ``utility(obs, actions[n, B, d]) -> [n, B]``): the
  policy is the energy ``E(a) = -(log anchor(a|s) + Q(s, a) / T)`` (:meth:`AnchoredPolicy.energy`),
  sampled by the shared sampler (default: importance sampling from the anchor; optionally
  ``Chain(ImportanceSampler, MALA)`` inside the box, see :func:`anchored_sampler`). ``log Z``, the
  soft value, ``log_prob`` and ``KL(pi || anchor)`` are self-normalised importance estimates over
  the sampler's importance stage (``n`` particles, all states in one batched call).
- **Composition** (:meth:`AnchoredPolicy.compose`): user costs enter the log target,
  ``pi'(a|s) ∝ anchor(a|s) exp(Q(s, a) / T - sum_i w_i cost_i(s, a))``, at deploy time, without
  retraining; everything above (exactness, sampler, estimates) carries over to the composed
  policy, and a cost of ``+inf`` removes an action exactly, as a zero of the anchor does.

References:
    Jacob et al. (2022), "Modeling Strong and Human-Like Gameplay with KL-Regularized Search",
    ICML, Sec. 3 (piKL: ``pi ∝ anchor exp(Q / lambda)``); Bakhtin et al. (2023), "Mastering the
    Game of No-Press Diplomacy via Human-Regularized Reinforcement Learning and Planning", ICLR
    (Cicero's piKL); Haarnoja et al. (2017), "Reinforcement Learning with Deep Energy-Based
    Policies", eq. (4)-(6) (the soft value with a uniform anchor).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution

from ebrl.policies.acting import (
    AnchoredEnergy,
    WeightedCost,
    anchored_sampler,
    check_cost,
    check_output,
    check_temperature,
    distribution_centre,
    importance_stage,
    invalid_cost_error,
    mode_search,
    sampler_bounds,
    support_bounds,
)
from ebrl.policies.distributions import categorical_log_probs
from ebrl.samplers import Box, ImportanceSampler, SampleResult, draw
from ebrl.samplers.importance import effective_sample_size, log_normalizer
from ebrl.samplers.proposal import ProposalSampler
from ebrl.validation import check_int

__all__ = ["AnchoredEnergy", "AnchoredPolicy", "PolicyEstimate", "WeightedCost", "anchored_sampler"]

_OWNER = "AnchoredPolicy"
# the mode search's default steps, also what compose gives a policy that takes its start as is
_MODE_STEPS = 10


class PolicyEstimate(NamedTuple):
    """Per-state quantities of the anchored policy, each ``[B]``.

    Exact for discrete actions; for continuous actions self-normalised importance estimates from
    one set of particles (see :meth:`AnchoredPolicy.estimate`). For a composed policy
    (:meth:`AnchoredPolicy.compose`) with total cost ``C(s, a) = sum_i w_i cost_i(s, a)`` every
    quantity is that of ``pi ∝ anchor exp(Q / T - C)``; without costs ``C = 0``.

    Attributes:
        log_normalizer: ``log Z(s) = log E_anchor[exp(Q(s, a) / T - C(s, a))]``.
        soft_value: ``T log Z(s)``.
        kl_to_anchor: ``KL(pi(.|s) || anchor(.|s)) = E_pi[Q] / T - E_pi[C] - log Z``.
        expected_utility: ``E_pi[Q(s, a)]``.
        ess: effective sample size of the importance weights (continuous; ``inf`` for discrete,
            which is exact).
        expected_cost: ``E_pi[C(s, a)]``, the policy's expected total weighted cost (0 without
            costs; finite: actions of infinite cost have probability 0).
    """

    log_normalizer: Tensor
    soft_value: Tensor
    kl_to_anchor: Tensor
    expected_utility: Tensor
    ess: Tensor
    expected_cost: Tensor


class AnchoredPolicy(nn.Module):
    """``pi(a|s) ∝ anchor(a|s) exp(utility(s, a) / temperature)`` (piKL).

    Args:
        anchor: ``obs[B, ...] -> Distribution`` with batch shape ``[B]``: a ``Categorical``
            (discrete actions) or a distribution with event shape ``[d]`` (continuous), e.g. from
            :mod:`ebrl.policies.anchors`.
        utility: discrete: ``utility(obs) -> [B, n_actions]``; continuous:
            ``utility(obs, actions[n, B, d]) -> [n, B]`` (broadcast ``obs`` over the ``n``
            particles yourself, e.g. ``obs.expand(n, *obs.shape)``).
        temperature: ``T > 0``, finite: a float or a one-element tensor (it may require grad, e.g.
            ``log_t.exp()``, and may be reassigned: ``policy.temperature = new_t`` is validated
            too). A tensor temperature modified in place is not re-validated.
        sampler: for continuous actions; default ``ImportanceSampler(256)`` from the anchor. Its
            importance stage (itself or the first stage of a ``Chain``) serves :meth:`estimate`,
            :meth:`soft_value`, :meth:`kl_to_anchor` and :meth:`log_prob`.
        mode_steps: gradient-ascent steps of :meth:`mode` (deterministic continuous actions;
            0: the starting point itself, e.g. an actor's mode).

    Costs are added with :meth:`compose`, which returns a new policy; :attr:`costs` lists them.

    Continuous estimates are importance estimates with ``n`` particles per state: ``log Z`` is
    unbiased in ``Z``; with the anchor as proposal the KL estimate is ``log n - H(w)`` (``w``
    the normalised weights), so it saturates at ``log n`` once ``pi`` is much narrower than the
    anchor; watch ``ess`` (:meth:`estimate`, ``sample(...).stats``).

    Example:
        >>> from gymnasium.spaces import Discrete
        >>> from ebrl.policies import UniformAnchor
        >>> q = lambda obs: torch.tensor([[0.0, 1.0, 2.0]]).expand(obs.shape[0], 3)
        >>> policy = AnchoredPolicy(UniformAnchor(Discrete(3)), q, temperature=1.0)
        >>> policy.distribution(torch.zeros(2, 4)).probs[0]
        tensor([0.0900, 0.2447, 0.6652])
    """

    def __init__(
        self,
        anchor: Callable[[Tensor], Distribution],
        utility: Callable[..., Tensor],
        temperature: float | Tensor,
        sampler: object | None = None,
        mode_steps: int = _MODE_STEPS,
    ):
        super().__init__()
        check_int(_OWNER, "mode_steps", mode_steps, minimum=0)
        self.mode_steps = mode_steps
        if not callable(anchor):
            raise TypeError(
                f"{_OWNER}: anchor must be callable obs -> Distribution, got "
                f"{type(anchor).__name__}"
            )
        if not callable(utility):
            raise TypeError(f"{_OWNER}: utility must be callable, got {type(utility).__name__}")
        if sampler is None:
            sampler = ImportanceSampler(256)
        elif not callable(getattr(sampler, "sample", None)):
            raise TypeError(
                f"{_OWNER}: sampler must have ebrl's .sample(energy, proposal, num_samples, init, "
                f"generator) method, got {type(sampler).__name__}"
            )
        self.anchor = anchor
        self.utility = utility
        self.sampler = sampler
        self.temperature = temperature
        self._costs: tuple[WeightedCost, ...] = ()

    # ------------------------------------------------------------------ temperature

    @property
    def temperature(self) -> float | Tensor:
        """``T``: a float or a 0-dim tensor (validated finite and > 0 on every assignment)."""
        return self.__dict__["_temperature"]

    @temperature.setter
    def temperature(self, value: float | Tensor) -> None:
        self.__dict__["_temperature"] = check_temperature(value)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "temperature":  # the property, also for nn.Parameter values
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def extra_repr(self) -> str:
        t = self.temperature
        t = f"{float(t.detach()):.4g} (tensor)" if isinstance(t, Tensor) else f"{t:.4g}"
        costs = ", ".join(
            f"{term.weight:g}·{getattr(term.cost, '__name__', type(term.cost).__name__)}"
            for term in self._costs
        )
        costs = f", costs=[{costs}]" if costs else ""
        return f"temperature={t}, sampler={self.sampler!r}{costs}"

    # ------------------------------------------------------------------ composition

    @property
    def costs(self) -> tuple[WeightedCost, ...]:
        """The composed costs, ``((cost, weight), ...)`` in the order added (empty by default)."""
        return self._costs

    def compose(self, cost: Callable[..., Tensor], weight: float = 1.0) -> AnchoredPolicy:
        """The policy ``pi'(a|s) ∝ anchor(a|s) exp(Q(s, a) / T - weight · cost(s, a))``.

        Returns a new policy with this one's anchor, utility, temperature (the same object: an
        agent's in-place temperature updates reach both), sampler and ``mode_steps`` (10 where
        this one's is 0: a deterministic action that is its start, e.g. an actor's mode, would
        not see the cost), and its costs plus this one; this policy is unchanged. Costs compose:
        ``p.compose(c1).compose(c2, 3.0)`` is ``∝ anchor exp(Q / T - c1 - 3 c2)``. The composed
        policy maximises ``E_pi[Q - T · weight · cost] - T KL(pi || anchor)``: the cost is in
        units of ``Q / T``, so one weight means the same whatever the scale of ``Q``.

        Everything follows the composed log target ``log anchor + Q / T - sum_i w_i cost_i``:
        discrete actions stay exact (``softmax`` of it), continuous actions come from the same
        sampler on the composed :meth:`energy`, and :meth:`estimate`, :meth:`soft_value`,
        :meth:`kl_to_anchor`, :meth:`log_prob` and :meth:`mode` are those of ``pi'``. An agent
        acts with whatever ``agent.policy`` is, so ``agent.policy = agent.policy.compose(cost)``
        changes ``predict`` and ``evaluate`` without retraining (and not the training losses).
        Checkpoints do not hold costs (they are user code): compose again after loading.

        A cost of ``+inf`` (with ``weight > 0``) removes an action exactly, as a zero of the
        anchor does, whatever ``Q`` is there: probability 0, never sampled, never the argmax
        (continuous: zero density there; the deterministic :meth:`mode` search needs a start of
        finite cost, e.g. the actor's mode, and climbs no gradient out of an infinite region, so
        prefer a large finite cost for soft walls; a composed policy set to ``mode_steps=0``
        afterwards takes the start itself and ignores the cost). NaN and ``-inf`` costs raise
        ``ValueError`` when the policy is used.

        Args:
            cost: discrete actions: ``cost(obs) -> [B, n_actions]``; continuous actions:
                ``cost(obs, actions[n, B, d]) -> [n, B]``, in the policy's action space (for
                :class:`~ebrl.SAC`, the normalised box ``[-1, 1]^d``); values finite or ``+inf``.
            weight: ``w``, a finite real number ``>= 0``. ``0`` is allowed, so that a weight
                sweep can start at the original policy: the cost is still evaluated and
                checked, but contributes nothing (``0 · inf`` counts as 0, not NaN).

        Returns:
            A new :class:`AnchoredPolicy` with :attr:`costs` ``= self.costs + ((cost, weight),)``.

        Raises:
            TypeError: ``cost`` is not callable, or ``weight`` is not a real number.
            ValueError: ``weight`` is negative, NaN or infinite; or this policy's sampler is a
                :class:`~ebrl.samplers.proposal.ProposalSampler` (plain SAC's acting), which
                never evaluates the energy, so the cost would be silently ignored.

        Example:
            >>> from gymnasium.spaces import Discrete
            >>> from ebrl.policies import UniformAnchor
            >>> q = lambda obs: torch.tensor([[0.0, 1.0, 2.0]]).expand(obs.shape[0], 3)
            >>> policy = AnchoredPolicy(UniformAnchor(Discrete(3)), q, temperature=1.0)
            >>> forbid_2 = lambda obs: torch.tensor([[0.0, 0.0, math.inf]]).expand(obs.shape[0], 3)
            >>> policy.compose(forbid_2).distribution(torch.zeros(2, 4)).probs[0]
            tensor([0.2689, 0.7311, 0.0000])
            >>> penalise_1 = lambda obs: torch.tensor([[0.0, 1.0, 0.0]]).expand(obs.shape[0], 3)
            >>> both = policy.compose(forbid_2).compose(penalise_1, 2.0)
            >>> both.distribution(torch.zeros(1, 4)).probs
            tensor([[0.7311, 0.2689, 0.0000]])
        """
        term = check_cost(cost, weight)
        self._refuse_proposal_sampler("compose")
        steps = self.mode_steps or _MODE_STEPS
        composed = AnchoredPolicy(self.anchor, self.utility, self.temperature, self.sampler, steps)
        composed._costs = (*self._costs, term)
        return composed

    def _refuse_proposal_sampler(self, method: str) -> None:
        """A composed cost must never be silently ignored by a sampler that skips the energy."""
        if isinstance(self.sampler, ProposalSampler):
            raise ValueError(
                f"{_OWNER}.{method}: the sampler ProposalSampler draws from the proposal "
                "and never evaluates the energy, so a composed cost would be ignored; give "
                "the policy a sampler that weighs the energy first, e.g. "
                "policy.sampler = ImportanceSampler(64, bounds=(-1.0, 1.0))"
            )

    def _t(self, like: Tensor) -> float | Tensor:
        t = self.temperature
        return t.to(like.device) if isinstance(t, Tensor) else t

    # ------------------------------------------------------------------ shared checks

    def _anchor(self, obs: object) -> tuple[Distribution, bool]:
        """``(anchor(obs), discrete)``, with obs and the distribution's batch shape checked."""
        if not isinstance(obs, Tensor):
            raise TypeError(
                f"{_OWNER}: obs must be a torch.Tensor [B, *obs_shape], got {type(obs).__name__} "
                "(convert with torch.as_tensor)"
            )
        if obs.dim() < 1:
            raise ValueError(
                f"{_OWNER}: obs must have a leading batch dimension [B, *obs_shape], got a scalar"
            )
        if obs.shape[0] == 0:  # torch.distributions cannot reduce an empty batch's events
            raise ValueError(f"{_OWNER}: obs must hold at least one state, got {tuple(obs.shape)}")
        dist = self.anchor(obs)
        if not isinstance(dist, Distribution):
            raise TypeError(
                f"{_OWNER}: anchor(obs) must return a torch.distributions.Distribution, got "
                f"{type(dist).__name__}"
            )
        if tuple(dist.batch_shape) != tuple(obs.shape[:1]):
            raise ValueError(
                f"{_OWNER}: anchor(obs) has batch shape {tuple(dist.batch_shape)} but obs has "
                f"batch [B] = {tuple(obs.shape[:1])} (obs must be [B, *obs_shape] and the anchor "
                "one distribution per state)"
            )
        if isinstance(dist, Categorical):
            return dist, True
        if len(dist.event_shape) != 1:
            raise ValueError(
                f"{_OWNER}: a continuous anchor must have event shape [d], got "
                f"{tuple(dist.event_shape)}"
            )
        return dist, False

    def _proposal(self, proposal: object, dist: Distribution) -> Distribution:
        if proposal is None:
            return dist
        if not isinstance(proposal, Distribution):
            raise TypeError(
                f"{_OWNER}: proposal must be a torch.distributions.Distribution, got "
                f"{type(proposal).__name__}"
            )
        if (
            tuple(proposal.batch_shape) != tuple(dist.batch_shape)
            or proposal.event_shape != dist.event_shape
        ):
            raise ValueError(
                f"{_OWNER}: proposal must have batch shape {tuple(dist.batch_shape)} and event "
                f"shape {tuple(dist.event_shape)} (the anchor's), got "
                f"{tuple(proposal.batch_shape)} and {tuple(proposal.event_shape)}"
            )
        return proposal

    def _stage(self, method: str) -> ImportanceSampler:
        stage = importance_stage(self.sampler)
        if stage is None:
            raise ValueError(
                f"{_OWNER}.{method}: needs an importance stage for continuous actions; use "
                "sampler=ImportanceSampler(n) or Chain(ImportanceSampler(n), MALA(...)), got "
                f"{self.sampler!r}"
            )
        return stage

    # ------------------------------------------------------------------ discrete (exact)

    def _discrete(
        self, dist: Categorical, obs: Tensor, proposal: object
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(log_pi, log_z, log_anchor, q, cost)`` for discrete actions, exact; ``cost`` is the
        total ``sum_i w_i cost_i`` (zeros without costs)."""
        if proposal is not None:
            raise ValueError(f"{_OWNER}: proposal is only used for continuous actions")
        log_anchor = categorical_log_probs(dist)
        q = self.utility(obs)
        discrete = " for discrete actions"
        check_output(_OWNER, "utility(obs)", q, log_anchor.shape, "[B, n_actions]", discrete)
        removed = log_anchor == -math.inf
        total = torch.zeros_like(log_anchor)
        invalid = []
        for i, term in enumerate(self._costs):
            c = term.cost(obs)
            check_output(
                _OWNER, f"cost #{i} (obs)", c, log_anchor.shape, "[B, n_actions]", discrete
            )
            invalid.append(torch.isnan(c) | (c == -math.inf))
            if term.weight > 0:  # weight 0: checked, contributes nothing (0 · inf is 0 here)
                removed = removed | (c == math.inf)
                total = total + term.weight * c.to(total.dtype)
        scaled = torch.where(removed, -math.inf, log_anchor + q / self._t(q) - total)
        for bad in invalid:  # an invalid cost makes log Z NaN: caught by the one check below
            scaled = torch.where(bad, math.nan, scaled)
        log_z = torch.logsumexp(scaled, dim=-1)
        if not bool(torch.isfinite(log_z).all()):
            for i, bad in enumerate(invalid):
                if bool(bad.any()):
                    raise invalid_cost_error(_OWNER, i, self._costs[i])
            if bool((log_anchor == -math.inf).all(-1).any()):
                raise ValueError(f"{_OWNER}: the anchor gives every action probability 0")
            if bool(removed.all(-1).any()):
                raise ValueError(
                    f"{_OWNER}: the composed costs are +inf on every action the anchor allows "
                    "for some state (no action is left)"
                )
            raise ValueError(
                f"{_OWNER}: utility(obs) is NaN or infinite on an action the anchor allows"
            )
        return scaled - log_z.unsqueeze(-1), log_z, log_anchor, q, total

    def distribution(self, obs: Tensor) -> Categorical:
        """The exact policy ``Categorical(logits = log anchor + Q / T)`` (discrete actions only);
        actions the anchor gives probability 0 have logit ``-inf``."""
        dist, discrete = self._anchor(obs)
        if not discrete:
            raise ValueError(
                f"{_OWNER}.distribution: exact only for discrete actions; for continuous actions "
                "use sample, log_prob or energy"
            )
        log_pi = self._discrete(dist, obs, None)[0]
        return Categorical(logits=log_pi, validate_args=False)

    # ------------------------------------------------------------------ continuous

    def energy(self, obs: Tensor) -> AnchoredEnergy:
        """The policy's energy over actions, ``E(a) = -(log anchor(a|s) + Q(s, a) / T - C(s, a))``
        (``C = sum_i w_i cost_i`` the composed costs, :meth:`compose`; 0 by default).

        Maps actions ``[n, B, d] -> [n, B]`` (``+inf`` where the anchor has zero density or a
        cost is ``+inf``), for
        any ebrl sampler: ``sampler.sample(policy.energy(obs), proposal, n)``. Continuous
        actions only.
        """
        dist, discrete = self._anchor(obs)
        if discrete:
            raise ValueError(
                f"{_OWNER}.energy: for continuous actions; discrete policies are exact "
                "(use distribution)"
            )
        return AnchoredEnergy(dist, self.utility, obs, self.temperature, self._costs)

    def _weigh(
        self, obs: Tensor, dist: Distribution, proposal: object, generator, method: str
    ) -> tuple[AnchoredEnergy, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Importance particles from the proposal, with gradients through anchor, Q and T.

        Returns ``(energy, particles [n, B, d], log_weights, log_anchor, q, cost, log_q)``
        (``[n, B]`` each), ``log_weights = log anchor + Q / T - cost - log q`` (``-inf`` outside
        the stage's bounds; ``cost`` the total ``sum_i w_i cost_i``).
        The particles and ``log q`` are detached: the estimates are differentiable in the
        anchor's and the utility's parameters and in ``T`` (the gradient of ``log Z`` is the
        self-normalised ``E_pi[grad (log anchor + Q / T)]``).
        """
        stage = self._stage(method)
        proposal = self._proposal(proposal, dist)
        energy = AnchoredEnergy(dist, self.utility, obs, self.temperature, self._costs)
        particles = draw(proposal, (stage.n_particles,), generator).detach()
        log_q = proposal.log_prob(particles).detach()
        log_target, log_anchor, q, cost = energy.log_target(particles)
        log_w = log_target - log_q
        if stage.bounds is not None:
            inside = Box(f"{_OWNER}.{method}", stage.bounds, particles).contains(particles)
            log_w = log_w.masked_fill(~inside, -math.inf)
        return energy, particles, log_w, log_anchor, q, cost, log_q

    @staticmethod
    def _check_log_z(log_z: Tensor, method: str, energy: AnchoredEnergy) -> None:
        if bool(torch.isfinite(log_z).all()):
            return
        energy.check_costs(f"{_OWNER}.{method}")  # a NaN / -inf cost, named
        if bool((log_z == -math.inf).any()):
            raise ValueError(
                f"{_OWNER}.{method}: every importance particle has zero weight for some state "
                "(zero anchor density, an infinite cost, or outside the bounds); widen the "
                "proposal"
            )
        raise ValueError(
            f"{_OWNER}.{method}: the importance weights are NaN or +inf (utility NaN/inf, or a "
            "NaN anchor/proposal log_prob)"
        )

    # ------------------------------------------------------------------ public API

    def estimate(
        self,
        obs: Tensor,
        *,
        proposal: Distribution | None = None,
        generator: torch.Generator | None = None,
    ) -> PolicyEstimate:
        """``log Z``, soft value, ``KL(pi || anchor)``, ``E_pi[Q]``, the ESS and ``E_pi[C]``,
        each ``[B]`` (:class:`PolicyEstimate`; ``C = sum_i w_i cost_i``, 0 unless composed).

        Discrete: exact. Continuous: from ``n`` importance particles per state drawn from
        ``proposal`` (default: the anchor) with weights ``w = anchor exp(Q / T - C) / q``:
        ``log Z = log mean(w)``, ``E_pi[Q] = sum wbar Q``, ``E_pi[C] = sum wbar C``, and
        ``KL = sum wbar [log(n wbar) + log q - log anchor]`` (``wbar`` the normalised weights),
        which equals ``E_pi[Q] / T - E_pi[C] - log Z`` without its cancellation.
        """
        dist, discrete = self._anchor(obs)
        if discrete:
            log_pi, log_z, log_anchor, q, cost = self._discrete(dist, obs, proposal)
            pi = log_pi.exp()
            support = pi > 0
            kl = torch.where(support, pi * (log_pi - log_anchor), 0.0).sum(-1)
            expected = torch.where(support, pi * q, 0.0).sum(-1)
            expected_cost = torch.where(support, pi * cost, 0.0).sum(-1)
            ess = torch.full_like(log_z, math.inf).detach()
        else:
            energy, _, log_w, log_anchor, q, cost, log_q = self._weigh(
                obs, dist, proposal, generator, "estimate"
            )
            log_z = log_normalizer(log_w)
            self._check_log_z(log_z, "estimate", energy)
            wbar = torch.softmax(log_w, dim=0)
            support = wbar > 0
            expected = torch.where(support, wbar * q, 0.0).sum(0)
            expected_cost = torch.where(support, wbar * cost, 0.0).sum(0)
            n = log_w.shape[0]
            log_ratio = log_w - torch.logsumexp(log_w, 0) + math.log(n) + log_q - log_anchor
            kl = torch.where(support, wbar * log_ratio, 0.0).sum(0)
            ess = effective_sample_size(log_w.detach())
        t = self._t(log_z)
        return PolicyEstimate(log_z, t * log_z, kl, expected, ess, expected_cost)

    def soft_value(
        self,
        obs: Tensor,
        *,
        proposal: Distribution | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``V(s) = T log E_anchor[exp(Q(s, a) / T - C(s, a))]``, ``[B]`` (``C`` the composed
        costs, 0 by default; exact for discrete actions; an importance estimate, unbiased in
        ``exp(V / T)``, for continuous)."""
        return self.estimate(obs, proposal=proposal, generator=generator).soft_value

    def kl_to_anchor(
        self,
        obs: Tensor,
        *,
        proposal: Distribution | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``KL(pi(.|s) || anchor(.|s))``, ``[B]`` (exact for discrete; see :meth:`estimate`)."""
        return self.estimate(obs, proposal=proposal, generator=generator).kl_to_anchor

    def log_prob(
        self,
        obs: Tensor,
        actions: Tensor,
        *,
        proposal: Distribution | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``log pi(a|s)`` for actions ``[B]`` / ``[n, B]`` (discrete) or ``[B, d]`` /
        ``[n, B, d]`` (continuous); returns ``[B]`` / ``[n, B]``.

        Discrete: exact. Continuous: ``log anchor(a|s) + Q(s, a) / T - C(s, a) - log Z(s)``
        (``C`` the composed costs, 0 by default) with the importance estimate of ``log Z``
        (``-inf`` where the anchor has zero density or a cost is ``+inf``).
        """
        dist, discrete = self._anchor(obs)
        if not isinstance(actions, Tensor):
            raise TypeError(f"{_OWNER}.log_prob: actions must be a tensor")
        batch = obs.shape[0]
        if discrete:
            log_pi = self._discrete(dist, obs, proposal)[0]
            n_actions = log_pi.shape[-1]
            if actions.is_floating_point() or actions.is_complex() or actions.dtype == torch.bool:
                raise TypeError(f"{_OWNER}.log_prob: discrete actions must be integers")
            if actions.dim() not in (1, 2) or actions.shape[-1] != batch:
                raise ValueError(
                    f"{_OWNER}.log_prob: discrete actions must be [B] or [n, B] with B={batch}, "
                    f"got {tuple(actions.shape)}"
                )
            if bool(((actions < 0) | (actions >= n_actions)).any()):
                raise ValueError(f"{_OWNER}.log_prob: actions must be in [0, {n_actions})")
            return log_pi[torch.arange(batch, device=log_pi.device), actions.to(log_pi.device)]
        d = dist.event_shape[0]
        if actions.dim() not in (2, 3) or tuple(actions.shape[-2:]) != (batch, d):
            raise ValueError(
                f"{_OWNER}.log_prob: continuous actions must be [B, d] or [n, B, d] with "
                f"B={batch}, d={d}, got {tuple(actions.shape)}"
            )
        energy, _, log_w, _, _, _, _ = self._weigh(obs, dist, proposal, generator, "log_prob")
        log_z = log_normalizer(log_w)
        self._check_log_z(log_z, "log_prob", energy)
        single = actions.dim() == 2
        log_target = energy.log_target(actions.unsqueeze(0) if single else actions)[0]
        if self._costs:  # the costs at the given actions (one host sync, composed only)
            energy.check_costs(f"{_OWNER}.log_prob")
        log_p = log_target - log_z
        return log_p.squeeze(0) if single else log_p

    def sample(
        self,
        obs: Tensor,
        num_samples: int = 1,
        *,
        proposal: Distribution | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Draws ``num_samples`` actions per state: ``samples [num_samples, B]`` (discrete) or
        ``[num_samples, B, d]`` (continuous), detached.

        Continuous: runs the policy's sampler on :meth:`energy` with ``proposal`` (default: the
        anchor; e.g. a learned actor mixed with the anchor), stats from the sampler (``ess``,
        ``log_normalizer``, ``acceptance_rate``, ...). Discrete: exact draws; stats hold the exact
        ``log_normalizer``.
        """
        check_int(f"{_OWNER}.sample", "num_samples", num_samples)
        with torch.no_grad():
            dist, discrete = self._anchor(obs)
            if discrete:
                log_pi, log_z, _, _, _ = self._discrete(dist, obs, proposal)
                index = torch.multinomial(
                    log_pi.exp(), num_samples, replacement=True, generator=generator
                )
                return SampleResult(index.T.contiguous(), {"log_normalizer": log_z})
            proposal = self._proposal(proposal, dist)
            if self._costs:
                self._refuse_proposal_sampler("sample")
            energy = AnchoredEnergy(dist, self.utility, obs, self.temperature, self._costs)
        try:
            return self.sampler.sample(energy, proposal, num_samples, generator=generator)
        except ValueError as err:  # a sampler's check saw a NaN energy: name a bad cost
            if self._costs:
                try:
                    energy.check_costs(f"{_OWNER}.sample")
                except ValueError as cost_err:
                    raise cost_err from err
            raise

    def act(
        self,
        obs: Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        *,
        proposal: Distribution | None = None,
        init: Tensor | None = None,
    ) -> Tensor:
        """One action per state, ``[B]`` (discrete) or ``[B, d]`` (continuous), detached.

        Stochastic: one draw of :meth:`sample`. Deterministic: a function of ``obs`` alone (the
        same action on every call, whatever the generator): discrete, the argmax of the exact
        logits; continuous, :meth:`mode`, started at ``init`` (default: the centre of
        ``proposal``, else of the anchor).
        """
        if not deterministic:
            return self.sample(obs, 1, proposal=proposal, generator=generator).samples[0]
        with torch.no_grad():
            dist, discrete = self._anchor(obs)
            if discrete:
                return self._discrete(dist, obs, proposal)[0].argmax(-1)
        return self.mode(obs, init=init, proposal=proposal)

    def mode(
        self, obs: Tensor, *, init: Tensor | None = None, proposal: Distribution | None = None
    ) -> Tensor:
        """A local mode of the continuous policy density, ``[B, d]``, deterministic in ``obs``.

        Starts at ``init`` (e.g. an actor's mode; default: the centre, median or mean, of
        ``proposal``, else of the anchor) and takes ``mode_steps`` noise-free gradient-ascent
        steps on ``log anchor(a|s) + Q(s, a) / T - C(s, a)`` (``C`` the composed costs, 0 by
        default): normalised gradient direction, a step of
        0.1 half-widths of the sampler's bounds, else of the anchor's support box (1 without
        either), that grows by 1.5 after an improving step and halves after a failed one (a
        failed step is not taken, so the density never decreases); steps stay in that box.
        Raises ``ValueError`` when the density is NaN or zero at the result (a NaN utility, an
        anchor of zero density there).
        """
        dist, discrete = self._anchor(obs)
        if discrete:
            raise ValueError(f"{_OWNER}.mode: for continuous actions (discrete: distribution)")
        if init is None:
            init = distribution_centre(self._proposal(proposal, dist))
        d = dist.event_shape[0]
        if not isinstance(init, Tensor) or tuple(init.shape) != (obs.shape[0], d):
            raise ValueError(
                f"{_OWNER}.mode: init must be a tensor [B, d] = [{obs.shape[0]}, {d}], got "
                f"{tuple(init.shape) if isinstance(init, Tensor) else type(init).__name__}"
            )
        energy = AnchoredEnergy(dist, self.utility, obs, self.temperature, self._costs)
        # the sampler's box, else the anchor's support: a step must never leave the box (the
        # anchor's log_prob tolerates a few ulps outside it, for rounding in callers' maps)
        bounds = sampler_bounds(self.sampler) or support_bounds(dist)
        try:
            return mode_search(energy, init, bounds, self.mode_steps)
        except ValueError as err:  # NaN or -inf density at the result: name a bad cost
            if self._costs:
                try:
                    energy.check_costs(f"{_OWNER}.mode")
                except ValueError as cost_err:
                    raise cost_err from err
            raise

    def forward(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """``act(obs, deterministic)``."""
        return self.act(obs, deterministic)
