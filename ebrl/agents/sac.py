"""Energy-based soft actor-critic: ``pi(a|s) ∝ anchor(a|s) exp(Q(s, a) / T)``, acted by the shared
sampler. Top to bottom: config -> networks -> losses -> the agent and its update; collection,
logging, evaluation and checkpoints live in the off-policy core (:mod:`ebrl.agents.core`).

The utility is ``min(Q1, Q2)``. ``anchor=None`` is the uniform anchor on the action box, i.e.
maximum-entropy RL, with the entropy (not the KL to the uniform, which differs by ``d log 2``),
so values and losses are exactly SAC's; a given anchor turns the entropy bonus into a KL
penalty toward it.

Actions come from one batched sampler call for all envs: importance sampling of
``n_particles`` from ``(1 - anchor_mix) q_phi + anchor_mix anchor`` (``q_phi`` a squashed
Gaussian actor trained by reverse KL as in SAC; the anchor keeps every mode of the energy
reachable: defensive importance sampling), then ``mala_steps`` of MALA in the box. With one
particle, no MALA and no mixing the sampler is :class:`~ebrl.samplers.ProposalSampler` and the
agent is exactly SAC (:meth:`SACConfig.plain`). Any ebrl sampler can act; deterministic actions
are the policy's mode search (:meth:`~ebrl.policies.AnchoredPolicy.mode`) from the actor's mode.
Everything runs in ``[-1, 1]^d`` (as SB3's SAC): actions are mapped to ``[low, high]`` only
when stepping the env, and a given anchor is mapped into the box with its Jacobian.

References:
    Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905
    (critic loss eq. 5, soft value eq. 3, actor loss eq. 7 / 12, temperature loss eq. 18,
    the update order of Algorithm 1). Haarnoja et al. (2017), "Reinforcement Learning with Deep
    Energy-Based Policies" (the soft value by importance sampling, eq. 10). Jacob et al. (2022),
    "Modeling Strong and Human-Like Gameplay with KL-Regularized Search" (piKL).
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import AffineTransform, Distribution, TransformedDistribution

from ebrl.agents.buffer import Transitions
from ebrl.agents.config import OffPolicyConfig
from ebrl.agents.core import OffPolicyAgent
from ebrl.agents.critics import QEnsemble
from ebrl.agents.evaluation import EnvLike
from ebrl.agents.updates import adam_step, frozen, polyak_update, temperature_loss
from ebrl.policies import AnchoredPolicy, GaussianAnchor, UniformAnchor
from ebrl.samplers import (
    MALA,
    Chain,
    ImportanceSampler,
    Mixture,
    categorical_draw,
    draw,
    log_normalizer,
)
from ebrl.samplers.importance import normalized_weights
from ebrl.samplers.proposal import ProposalSampler

__all__ = ["SAC", "SACConfig", "SACNetworks", "actor_loss", "critic_loss", "temperature_loss"]


# The fields that make the energy policy plain SAC: the actor's own sample and mode.
PLAIN_SAC = {"n_particles": 1, "anchor_mix": 0.0, "mala_steps": 0, "mode_steps": 0}


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """Hyperparameters of :class:`SAC` (field docs become ``ebrl train --help``)."""

    learning_rate: float = 3e-4
    """Adam learning rate of actor, critics and temperature (SB3's default)."""
    target_entropy: float | None = None
    """Entropy target without an anchor (default -dim(A))."""
    target_kl: float | None = None
    """KL-to-anchor target with an anchor (default dim(A) (1 + log 2), the KL to the uniform
    that SAC's default entropy target amounts to)."""
    tau: float = 0.005
    """Polyak coefficient of the target critics."""
    n_critics: int = 2
    """Number of critics; the utility is their minimum (clipped double Q)."""
    n_particles: int = 16
    """Importance particles per state when acting (1 with no MALA and no mixing: plain SAC)."""
    anchor_mix: float = 0.1
    """Weight of the anchor in the defensive importance proposal."""
    mala_steps: int = 0
    """MALA steps after importance sampling when acting (in the action box)."""
    mala_step_size: float = 0.01
    """Initial MALA step size (adapted during 5 warm-up steps when mala_steps > 0)."""
    mode_steps: int = 10
    """Gradient-ascent steps on the policy density from the actor's mode for deterministic
    actions (0: the actor's mode, as SAC; the MuJoCo presets' value)."""
    value_target: str = "samples"
    """Soft Bellman target from actor samples ("samples", as SAC) or from the importance
    estimate T log E_q[anchor exp(Q/T) / q] ("importance", as soft Q-learning)."""
    target_particles: int = 16
    """Particles per next state for the "importance" value target."""
    utility: str = "min"
    """How the critic ensemble makes the policy's utility (the energy acted on and the actor's
    loss): "min" of the critics (SAC's pessimism) or their "mean". Bellman targets always use
    the min of the target critics."""

    _checks = (
        *OffPolicyConfig._checks,
        ("tau", "[0,1]"),
        ("n_critics", "int>=1"),
        ("n_particles", "int>=1"),
        ("anchor_mix", "[0,1]"),
        ("mala_steps", "int>=0"),
        ("mala_step_size", "float>0"),
        ("mode_steps", "int>=0"),
        ("target_particles", "int>=1"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.utility not in ("min", "mean"):
            raise ValueError(f"SACConfig: utility must be 'min' or 'mean', got {self.utility!r}")
        if self.value_target not in ("samples", "importance"):
            raise ValueError(
                f"SACConfig: value_target must be 'samples' or 'importance', "
                f"got {self.value_target!r}"
            )

    @classmethod
    def plain(cls, env_id: str | None = None, **overrides) -> SACConfig:
        """The configuration in which the agent is exactly SAC (Haarnoja et al. 2018), with
        ``env_id``'s preset applied first (as :meth:`for_env`; the defaults without one), then
        ``overrides``: ``SACConfig.plain("Hopper-v5")`` keeps RL-Zoo's 10k-step warm-up."""
        return cls.for_env(env_id, **{**PLAIN_SAC, **overrides})

    @property
    def is_plain(self) -> bool:
        return self.n_particles == 1 and self.mala_steps == 0 and self.anchor_mix == 0.0


class _BoxAnchor(nn.Module):
    """A user's anchor on env actions ``[low, high]`` seen in the normalised box ``[-1, 1]``."""

    def __init__(self, anchor: nn.Module, center: Tensor, half_width: Tensor):
        super().__init__()
        self.anchor = anchor
        self.register_buffer("center", center)
        self.register_buffer("half_width", half_width)

    def forward(self, obs: Tensor) -> Distribution:
        to_unit = AffineTransform(-self.center / self.half_width, 1 / self.half_width, event_dim=1)
        return TransformedDistribution(self.anchor(obs), [to_unit])


# ----------------------------------------------------------------------------- networks


class SACNetworks(nn.Module):
    """Actor ``q_phi`` (a squashed Gaussian in ``[-1, 1]^d``), critics ``Q_k``, their Polyak
    targets, and the anchor in the box; the pieces of the energy ``log anchor + Q / T``."""

    def __init__(
        self, obs_dim: int, act_dim: int, config: SACConfig, anchor: nn.Module | None = None
    ):
        super().__init__()
        self.act_dim = act_dim
        unit_box = gym.spaces.Box(-1.0, 1.0, shape=(act_dim,), dtype=np.float32)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, config.n_critics)
        self.actor = GaussianAnchor(obs_dim, unit_box, hidden_sizes=config.hidden_sizes)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.entropy_mode = anchor is None
        self.anchor = UniformAnchor(unit_box) if anchor is None else anchor
        self.reduction = config.utility

    def utility(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``min_k Q_k(s, a)`` (or the mean): ``obs[B, o]``, ``actions[n, B, d] -> [n, B]``."""
        q = self.critic(obs, actions)
        return q.mean(0) if self.reduction == "mean" else q.amin(0)

    def log_anchor(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``log anchor(a|s)``; in entropy mode the base measure's 0 (``log U + d log 2``) for
        the actions in the box it is only ever called on."""
        if self.entropy_mode:
            return actions.new_zeros(actions.shape[:-1])
        return self.anchor(obs).log_prob(actions)

    def proposal(self, obs: Tensor, anchor_mix: float) -> Distribution:
        """``(1 - anchor_mix) q_phi + anchor_mix anchor`` (the actor alone when 0)."""
        actor = self.actor(obs)
        if anchor_mix == 0.0:
            return actor
        return Mixture([actor, self.anchor(obs)], [1.0 - anchor_mix, anchor_mix])


# ----------------------------------------------------------------------------- losses


def critic_loss(
    nets: SACNetworks,
    batch: Transitions,
    temperature: Tensor,
    *,
    gamma: float,
    generator: torch.Generator | None = None,
    value_sampler: ImportanceSampler | None = None,
    anchor_mix: float = 0.0,
    noise: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Soft Bellman residual, eq. (5): ``1/2 sum_k E(Q_k(s, a) - y)^2``, ``y = r + gamma (1 - d)
    V(s')`` from the target critics (no gradient into the target; only the critics get one).

    ``V(s')``: with no ``value_sampler``, eq. (3) from one actor sample,
    ``min Q'(s', a') - T (log q(a'|s') - log anchor(a'|s'))`` (``noise[B, d]``, standard
    normal, drives that sample when given; else ``generator``); with one, soft Q-learning's
    ``T log E_q[anchor exp(Q'/T) / q]`` by importance sampling (SQL eq. 10).
    """
    with torch.no_grad():
        if value_sampler is None:
            mean, log_std = nets.actor.mean_log_std(batch.next_obs)
            next_a, log_q = squashed_sample(
                mean, log_std, _noise(noise, mean.shape, mean, generator)
            )
            reg = _log_ratio(nets, batch.next_obs, next_a, log_q)
            value = nets.critic_target(batch.next_obs, next_a).amin(0) - temperature * reg
        else:

            def energy(a: Tensor) -> Tensor:
                q = nets.critic_target(batch.next_obs, a).amin(0)
                return -(nets.log_anchor(batch.next_obs, a) + q / temperature)

            proposal = nets.proposal(batch.next_obs, anchor_mix)
            _, log_w = value_sampler.weigh(energy, proposal, generator=generator)
            value = temperature * log_normalizer(log_w)
        target = batch.rewards + gamma * (1 - batch.terminated) * value
    q = nets.critic(batch.obs, batch.actions)  # [n_critics, B]
    loss = 0.5 * ((q - target) ** 2).mean(1).sum()
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}


def actor_loss(
    nets: SACNetworks,
    batch: Transitions,
    temperature: Tensor,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reverse KL from the actor to the energy policy, eq. (7)/(12),
    ``E_{a~q}[T (log q(a|s) - log anchor(a|s)) - Q(s, a)]`` with ``a`` reparameterised
    (``noise[B, d]``, standard normal, drives the draw when given; else ``generator``).

    The gradient reaches the critics' *inputs* (the actions), never their parameters (only the
    actor gets one). Terms: ``actor_loss`` and ``entropy`` (uniform anchor) or
    ``kl_to_anchor``, the estimate :func:`temperature_loss` takes.
    """
    with frozen(nets.critic, nets.anchor):
        noise = _noise(noise, (batch.obs.shape[0], nets.act_dim), batch.obs, generator)
        return _actor_loss(nets, batch, temperature, noise)


def _actor_loss(
    nets: SACNetworks, batch: Transitions, temperature: Tensor, noise: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`actor_loss` with the critics and anchor already frozen (outside a compiled
    graph: ``requires_grad`` cannot change inside one) and the noise drawn."""
    mean, log_std = nets.actor.mean_log_std(batch.obs)
    actions, log_q = squashed_sample(mean, log_std, noise)
    reg = _log_ratio(nets, batch.obs, actions, log_q)
    loss = (temperature * reg - nets.utility(batch.obs, actions)).mean()
    if nets.entropy_mode:
        return loss, {"actor_loss": loss, "entropy": -reg.detach().mean()}
    return loss, {"actor_loss": loss, "kl_to_anchor": reg.detach().mean()}


def _log_ratio(nets: SACNetworks, obs: Tensor, actions: Tensor, log_q: Tensor) -> Tensor:
    """``log q(a|s) - log anchor(a|s)``: ``log q`` itself with the uniform anchor (whose base
    measure's log-density is 0 on the box), without subtracting a tensor of zeros."""
    return log_q if nets.entropy_mode else log_q - nets.log_anchor(obs, actions)


def _noise(
    noise: Tensor | None, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """``noise``, or a standard normal draw of ``shape`` (``like``'s dtype and device) from
    ``generator``."""
    if noise is not None:
        return noise
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


# ----------------------------------------------------------------------------- fused pieces
# The actor's squashed Gaussian in [-1, 1]^d and the default acting sampler written as plain
# tensor functions of their noise: the same numbers as the distribution objects and
# ImportanceSampler (tested), without building those objects at every step, and with only tensor
# inputs, so that torch.compile captures each in one graph that does not recompile per state.

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def squashed_sample(mean: Tensor, log_std: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """``a = tanh(u)``, ``u = mean + exp(log_std) * noise``, and ``log q(a)`` computed from the
    noise and ``u`` (exact where ``tanh`` saturates):
    :meth:`~ebrl.policies.SquashedDistribution.rsample_and_log_prob` of the actor on
    ``[-1, 1]^d`` with its noise given. Shapes ``[*, B, d] -> [*, B, d], [*, B]``.
    """
    u = torch.addcmul(mean, log_std.exp(), noise)
    return torch.tanh(u), _log_prob_of_preimage(u, noise, log_std)


def squashed_log_prob(
    mean: Tensor, log_std: Tensor, actions: Tensor, std: Tensor | None = None
) -> Tensor:
    """``log q(a)`` of the actor's squashed Gaussian at ``actions`` in ``[-1, 1]^d`` (inverted
    through ``atanh`` as :class:`~ebrl.policies.SquashedDistribution` does, the boundary
    clamped inside by one ulp). ``std``: ``exp(log_std)`` where the caller has it."""
    eps = torch.finfo(actions.dtype).eps
    u = torch.atanh(actions.clamp(-1 + eps, 1 - eps))
    std = log_std.exp() if std is None else std
    return _log_prob_of_preimage(u, (u - mean) / std, log_std)


def _log_prob_of_preimage(u: Tensor, z: Tensor, log_std: Tensor) -> Tensor:
    """``log q(tanh(u))`` for the standardised ``z = (u - mean) / sigma``: the diagonal
    Gaussian's ``sum_d [-z^2 / 2 - log sigma - log sqrt(2 pi)]`` less the squash's Jacobian
    ``log(1 - tanh(u)^2) = 2 (log 2 - t)``, ``t = u + softplus(-2u)`` (the form of
    :func:`~ebrl.policies.distributions.tanh_log_det`, exact where ``tanh`` rounds to +-1),
    gathered as ``2 sum_d (t - z^2 / 4)`` less the constants: ``Normal.log_prob`` less
    ``tanh_log_det`` (tested) in 9 ops instead of 17, which the acting step and the actor's
    backward pay at every call."""
    d = u.shape[-1]
    if log_std.shape[-1] != d:  # one scale broadcast over the d coordinates
        log_std = log_std.expand(*log_std.shape[:-1], d)
    t = u + torch.nn.functional.softplus(-2.0 * u)
    half = torch.addcmul(t, z, z, value=-0.25).sum(-1)
    return 2.0 * half - log_std.sum(-1) - d * (_LOG_SQRT_2PI + 2 * math.log(2.0))


def _is_unit_box(bounds: object) -> bool:
    """``bounds`` is the pair of numbers ``(-1, 1)`` (not per-dimension tensors or arrays)."""
    plain = (float, int)
    if type(bounds) is tuple and len(bounds) == 2 and type(bounds[0]) in plain:
        if type(bounds[1]) in plain:  # Python numbers (the default): no ABC checks
            return bounds == (-1.0, 1.0)
    if not (
        isinstance(bounds, tuple)
        and len(bounds) == 2
        and all(isinstance(b, numbers.Real) for b in bounds)
    ):
        return False
    try:
        return (float(bounds[0]), float(bounds[1])) == (-1.0, 1.0)
    except (OverflowError, ValueError):  # e.g. an int too large for a float: not the box
        return False


def actor_sample(nets: SACNetworks, obs: Tensor, normal: Tensor) -> Tensor:
    """The actor's draws ``tanh(mean + std * normal)`` for ``obs[B, o]`` (plain SAC's acting
    step): ``normal[*, B, d] -> [*, B, d]``."""
    mean, std = nets.actor.gaussian(obs)
    return torch.tanh(mean + std * normal)


def importance_step(
    nets: SACNetworks,
    obs: Tensor,
    temperature: Tensor,
    normal: Tensor,
    anchor_draws: Tensor,
    pick: Tensor,
    anchor_mix: float,
    pick_threshold: float,
) -> tuple[Tensor, Tensor]:
    """The default acting sampler's particles ``[n, B, d]`` and log-weights ``[n, B]`` for
    ``obs[B, o]``, the uniform anchor, given its noise: the same numbers as
    :class:`~ebrl.samplers.ImportanceSampler` on the policy's energy with the proposal
    ``(1 - anchor_mix) actor + anchor_mix uniform`` and the same generator draws.

    ``normal[n, B, d]`` drives the actor's draws, ``anchor_draws[n, B, d]`` are the uniform
    anchor's (in ``[-1, 1]``) and ``pick[n, B, 1]`` the mixture's choice (anchor where
    ``pick >= pick_threshold``, the mixture's cumulative weight of the actor); the last two are
    unused when ``anchor_mix`` is 0. Every particle is inside the box, so none is masked.
    """
    mean, log_std = nets.actor.mean_log_std(obs)
    std = log_std.exp()
    particles = torch.tanh(mean + std * normal)  # Normal.rsample's arithmetic
    if anchor_mix > 0:
        particles = torch.where(pick >= pick_threshold, anchor_draws, particles)
    log_q = squashed_log_prob(mean, log_std, particles, std)
    # log(q / anchor), the anchor's log-density -d log 2 folded into the constants
    log_anchor = -normal.shape[-1] * math.log(2.0)
    if anchor_mix > 0:  # log((1 - m) q_actor + m anchor) - log anchor
        log_actor_weight = math.log(1 - anchor_mix) if anchor_mix < 1 else -math.inf
        log_ratio = torch.logaddexp(
            log_q + (log_actor_weight - log_anchor), torch.full_like(log_q, math.log(anchor_mix))
        )
    else:
        log_ratio = log_q - log_anchor
    return particles, nets.utility(obs, particles) / temperature - log_ratio


# ----------------------------------------------------------------------------- the agent


class SAC(OffPolicyAgent):
    """Energy-based soft actor-critic (continuous actions), Stable-Baselines3-shaped.

    Args:
        env: a gymnasium env id, env, factory ``() -> Env``, or vector env (either autoreset
            mode) (bounded 1-D Box actions, Box observations).
            Evaluation runs on an env built the same way.
        anchor: ``None`` (uniform: maximum-entropy RL) or a module ``obs -> Distribution`` over
            env actions (e.g. a behaviour-cloned :class:`~ebrl.policies.GaussianAnchor`): the
            policy is regularised toward it by a KL penalty.
        temperature: ``"auto"`` (tuned toward the entropy / KL target) or a fixed float > 0.
        sampler: the acting sampler, any ebrl sampler (``agent.policy.sampler``); default built
            from the config: ``ProposalSampler()`` in the plain-SAC configuration, else
            ``ImportanceSampler(n_particles)`` chained with ``MALA`` when ``mala_steps > 0``, in
            the box. Assign ``agent.policy.sampler`` to change the acting budget later.
        seed: seeds the networks, the sampler's generator, and the envs.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        tensorboard_log: directory for TensorBoard scalars (``None``: no logging).
        num_envs: parallel envs when ``env`` is an id or a factory.
        config: a :class:`SACConfig`; default: the env's preset (``SACConfig.for_env(env_id)``,
            the CLI's defaults too); ``**hyperparameters`` override its fields.
        eval_env: the env (or factory) :meth:`evaluate` uses; default: one built like ``env``.

    Example:
        >>> agent = SAC("Pendulum-v1", seed=0)                          # doctest: +SKIP
        >>> agent.learn(10_000)                                         # doctest: +SKIP
        >>> agent.evaluate(10)["mean_return"]                           # doctest: +SKIP
    """

    config_class = SACConfig
    # CUDA graphs made 10k-step runs 1.6x faster on an H200, compile counted; a CPU gained nothing
    compile_pays_on = frozenset({"cuda"})

    def __init__(
        self,
        env: EnvLike,
        anchor: nn.Module | None = None,
        temperature: str | float = "auto",
        sampler=None,
        seed: int = 0,
        device: str | torch.device = "auto",
        tensorboard_log: str | Path | None = None,
        num_envs: int = 1,
        config: SACConfig | None = None,
        eval_env: EnvLike | None = None,
        **hyperparameters,
    ):
        super().__init__(
            env,
            anchor,
            temperature,
            seed,
            device,
            tensorboard_log,
            num_envs,
            config,
            hyperparameters,
            eval_env,
        )
        cfg = self.config
        self.act_dim = act_dim = self.action_space.shape[0]
        as_tensor = {"dtype": torch.float32, "device": self.device}
        # low/2 + high/2 and high/2 - low/2, in float64: finite even for a Box(-3e38, 3e38),
        # where high - low overflows float32.
        low = self.action_space.low.astype(np.float64)
        high = self.action_space.high.astype(np.float64)
        self.action_center = torch.as_tensor(low / 2 + high / 2, **as_tensor)
        self.action_half_width = torch.as_tensor(high / 2 - low / 2, **as_tensor)
        box_anchor = None
        if anchor is not None:
            box_anchor = _BoxAnchor(anchor, self.action_center.cpu(), self.action_half_width.cpu())
        self.nets = self.seeded(lambda: SACNetworks(self.obs_dim, act_dim, cfg, box_anchor))
        self.actor, self.critic = self.nets.actor, self.nets.critic
        self.critic_target, self.anchor = self.nets.critic_target, self.nets.anchor
        # SAC's -dim(A); with an anchor the KL to it that this entropy amounts to in the box
        self.set_target(-float(act_dim), act_dim * (1 + math.log(2)))
        # Fused Adam (one kernel per step, CPU and CUDA since torch 2.4): same update, less time.
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), cfg.learning_rate, fused=True
        )
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), cfg.learning_rate, fused=True
        )

        if sampler is None and cfg.is_plain:
            sampler = ProposalSampler()
        elif sampler is None:
            sampler = ImportanceSampler(cfg.n_particles, bounds=(-1.0, 1.0))
            if cfg.mala_steps > 0:
                mala = MALA(cfg.mala_step_size, cfg.mala_steps, bounds=(-1.0, 1.0), warmup_steps=5)
                sampler = Chain(sampler, mala)
        self.policy = self._own_policy = AnchoredPolicy(
            self.anchor, self.nets.utility, self.temperature, sampler, mode_steps=cfg.mode_steps
        )
        self.value_sampler = None
        if cfg.value_target == "importance":
            self.value_sampler = ImportanceSampler(cfg.target_particles, bounds=(-1.0, 1.0))
        # the mixture's cumulative weight of the actor, as Mixture computes it (float32)
        weights = torch.tensor([1.0 - cfg.anchor_mix, cfg.anchor_mix], dtype=torch.float64)
        self._pick_threshold = float(weights.log().float().exp()[0])
        # The hot paths: eager functions, or compiled ones (config.compile). Acting compiles in
        # full (one graph); the losses' backward and the optimiser steps stay eager.
        self._importance_step = self._hot_path(importance_step, fullgraph=True)
        self._actor_sample = self._hot_path(actor_sample, fullgraph=True)
        self._critic_loss = self._hot_path(critic_loss, fullgraph=False)
        self._actor_loss = self._hot_path(_actor_loss, fullgraph=False)

    @staticmethod
    def _check_action_space(space: gym.Space) -> gym.spaces.Box:
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(
                f"SAC: supports 1-D bounded Box action spaces (continuous actions); got {space}"
            )
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise ValueError(
                f"SAC: the action space must be bounded (finite low/high), got {space}"
            )
        return space

    # ------------------------------------------------------------------ acting

    def act(self, obs: Tensor, deterministic: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Normalised actions ``[B, d]`` for ``obs[B, o]``: one sampler call for all states
        (deterministic: the policy's mode search from the actor's mode)."""
        policy = self.policy
        if deterministic:
            init = self.actor(obs).median
            return policy.act(obs, deterministic=True, init=init), {}
        sampler, mix, fused = policy.sampler, self.config.anchor_mix, self._fused(policy)
        # The agent's own policy, unchanged, with its default kind of sampler acts through a
        # fused step (the same draws and numbers as the general path below, tested; no
        # distribution objects built per step); anything else through the general path.
        if fused == "actor":
            with torch.no_grad():
                noise = self._normal((obs.shape[0], self.act_dim))
                actions = self._actor_sample(self.nets, obs, noise)
            if sampler.check and not bool(torch.isfinite(actions).all()):  # the one host sync
                raise ValueError(
                    "SAC.act: the actor's actions are NaN or inf (NaN observations or actor "
                    "parameters?)"
                )
            return actions, {}
        if fused == "importance":
            if torch.is_grad_enabled():  # a no_grad context costs ~1.5 us: only where needed
                with torch.no_grad():
                    return self._act_importance(obs, sampler)
            return self._act_importance(obs, sampler)
        proposal = self.nets.proposal(obs, mix)
        result = policy.sample(obs, 1, proposal=proposal, generator=self.generator)
        return result.samples[0], result.stats

    def _fused(self, policy: AnchoredPolicy) -> str | None:
        """Which fused acting step gives ``policy``'s actions: ``"actor"`` (the proposal is the
        actor and the sampler draws from it: plain SAC), ``"importance"`` (importance sampling
        from the default proposal with the uniform anchor), or ``None`` (the general path)."""
        own = (
            policy is self._own_policy
            and isinstance(policy.temperature, Tensor)  # the agent's (a view of it)
            and policy.temperature.data_ptr() == self._policy_temperature.data_ptr()
            and policy.utility == self.nets.utility
            and policy.anchor is self.anchor
            and not policy.costs
        )
        if not own:
            return None
        sampler = policy.sampler
        if type(sampler) is ProposalSampler and self.config.anchor_mix == 0.0:
            return "actor"
        if (
            type(sampler) is ImportanceSampler
            and self.entropy_mode
            and (sampler.bounds is None or _is_unit_box(sampler.bounds))
        ):
            return "importance"  # every particle is inside [-1, 1]^d: no bounds mask either way
        return None

    def _normal(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def _act_importance(
        self, obs: Tensor, sampler: ImportanceSampler
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """:class:`~ebrl.samplers.ImportanceSampler`'s ``sample`` with the default proposal and
        the uniform anchor, through :func:`importance_step`: the generator's draws in the same
        order (actor, anchor, mixture choice, resampling), so the same actions. The caller
        holds ``torch.no_grad()`` (:meth:`act` does, only where grad is on: ~1.5 us a call)."""
        n, batch, mix = sampler.n_particles, obs.shape[0], self.config.anchor_mix
        normal = self._normal((n, batch, self.act_dim))
        anchor_draws, pick = normal, normal  # unused placeholders without anchor draws
        if mix > 0:  # Uniform(-1, 1).sample's arithmetic, and the mixture's choice
            anchor_draws = torch.rand(
                (n, batch, self.act_dim), generator=self.generator, device=self.device
            )
            anchor_draws = anchor_draws.mul_(2.0).sub_(1.0)
            pick = torch.rand((n, batch, 1), generator=self.generator, device=self.device)
        particles, log_weights = self._importance_step(
            self.nets,
            obs,
            self._policy_temperature,
            normal,
            anchor_draws,
            pick,
            mix,
            self._pick_threshold,
        )
        probs, log_z = normalized_weights(log_weights)  # [n, B], [B]
        # one host sync: the sum is finite iff every log Z is (NaN or infinite weights, or
        # none above zero, make some log Z NaN or infinite)
        if sampler.check and not math.isfinite(float(log_z.sum())):
            raise ValueError(
                "SAC.act: the acting sampler's weights are NaN or infinite for some state "
                "(NaN or infinite Q-values, observations or actor outputs?)"
            )
        index = categorical_draw(probs.T, self.generator)  # checked above (sampler.check)
        actions = particles.gather(0, index.view(1, batch, 1).expand(1, batch, self.act_dim))[0]
        # Kish's ESS from the normalised weights: 1 / sum p^2
        ess = torch.linalg.vecdot(probs, probs, dim=0).reciprocal()
        return actions, {"ess": ess, "log_normalizer": log_z}

    def explore(self, obs: Tensor) -> Tensor:
        return draw(self.anchor(obs), (1,), self.generator)[0].clamp(-1, 1)

    def to_env(self, actions: Tensor) -> np.ndarray:
        scaled = self.action_center + actions * self.action_half_width
        low, high = self.action_space.low, self.action_space.high
        # clip: rounding may step a hair outside [low, high] at the box's edges
        return np.clip(scaled.cpu().numpy(), low, high).astype(self.action_space.dtype)

    # ------------------------------------------------------------------ one update

    def update(self, batch: Transitions) -> dict[str, Tensor]:
        """One SAC iteration (Algorithm 1): critics, actor, temperature, then Polyak."""
        temperature, shape = self.temperature, (batch.obs.shape[0], self.act_dim)
        if self.value_sampler is None:
            loss, metrics = self._critic_loss(
                self.nets, batch, temperature, gamma=self.config.gamma, noise=self._normal(shape)
            )
        else:  # importance-sampled soft value: the sampler draws from the generator (eager)
            loss, metrics = critic_loss(
                self.nets,
                batch,
                temperature,
                gamma=self.config.gamma,
                generator=self.generator,
                value_sampler=self.value_sampler,
                anchor_mix=self.config.anchor_mix,
            )
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        adam_step(self.critic_optimizer)

        noise = self._normal(shape)
        with frozen(self.critic, self.anchor):  # outside any compiled graph
            loss, terms = self._actor_loss(self.nets, batch, temperature, noise)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        adam_step(self.actor_optimizer)
        metrics.update(terms)

        reg = -terms["entropy"] if self.entropy_mode else terms["kl_to_anchor"]
        metrics.update(self.step_temperature(reg))

        polyak_update(self.critic, self.critic_target, self.config.tau)
        return metrics

    # ------------------------------------------------------------------ checkpoints

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}
