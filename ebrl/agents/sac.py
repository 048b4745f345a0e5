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
from ebrl.agents.updates import frozen, polyak_update, temperature_loss
from ebrl.policies import AnchoredPolicy, GaussianAnchor, UniformAnchor
from ebrl.samplers import MALA, Chain, ImportanceSampler, Mixture, draw, log_normalizer
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
    actions (0: the actor's mode, as SAC)."""
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
    def plain(cls, **overrides) -> SACConfig:
        """The configuration in which the agent is exactly SAC (Haarnoja et al. 2018)."""
        return cls(**{**PLAIN_SAC, **overrides})

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
        return q.mean(0) if self.reduction == "mean" else q.min(0).values

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
) -> tuple[Tensor, dict[str, Tensor]]:
    """Soft Bellman residual, eq. (5): ``1/2 sum_k E(Q_k(s, a) - y)^2``, ``y = r + gamma (1 - d)
    V(s')`` from the target critics (no gradient into the target; only the critics get one).

    ``V(s')``: with no ``value_sampler``, eq. (3) from one actor sample,
    ``min Q'(s', a') - T (log q(a'|s') - log anchor(a'|s'))``; with one, soft Q-learning's
    ``T log E_q[anchor exp(Q'/T) / q]`` by importance sampling (SQL eq. 10).
    """
    with torch.no_grad():
        if value_sampler is None:
            next_a, log_q = nets.actor(batch.next_obs).rsample_and_log_prob(generator=generator)
            reg = log_q - nets.log_anchor(batch.next_obs, next_a)
            value = nets.critic_target(batch.next_obs, next_a).min(0).values - temperature * reg
        else:

            def energy(a: Tensor) -> Tensor:
                q = nets.critic_target(batch.next_obs, a).min(0).values
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
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reverse KL from the actor to the energy policy, eq. (7)/(12),
    ``E_{a~q}[T (log q(a|s) - log anchor(a|s)) - Q(s, a)]`` with ``a`` reparameterised.

    The gradient reaches the critics' *inputs* (the actions), never their parameters (only the
    actor gets one). Terms: ``actor_loss`` and ``entropy`` (uniform anchor) or
    ``kl_to_anchor``, the estimate :func:`temperature_loss` takes.
    """
    actions, log_q = nets.actor(batch.obs).rsample_and_log_prob(generator=generator)
    with frozen(nets.critic, nets.anchor):
        reg = log_q - nets.log_anchor(batch.obs, actions)
        loss = (temperature * reg - nets.utility(batch.obs, actions)).mean()
    if nets.entropy_mode:
        return loss, {"actor_loss": loss, "entropy": -reg.detach().mean()}
    return loss, {"actor_loss": loss, "kl_to_anchor": reg.detach().mean()}


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
        self.policy = AnchoredPolicy(
            self.anchor, self.nets.utility, self.temperature, sampler, mode_steps=cfg.mode_steps
        )
        self.value_sampler = None
        if cfg.value_target == "importance":
            self.value_sampler = ImportanceSampler(cfg.target_particles, bounds=(-1.0, 1.0))

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
        proposal = self.nets.proposal(obs, self.config.anchor_mix)
        result = policy.sample(obs, 1, proposal=proposal, generator=self.generator)
        return result.samples[0], result.stats

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
        temperature = self.temperature
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
        self.critic_optimizer.step()

        loss, terms = actor_loss(self.nets, batch, temperature, generator=self.generator)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
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
