"""Energy-based soft actor-critic: ``pi(a|s) ∝ anchor(a|s) exp(Q(s, a) / T)``, acted by the shared
sampler.

One file, top to bottom: config -> agent (networks, policy, sampler) -> acting -> losses ->
update -> learn loop -> evaluation and checkpoints.

The policy is an :class:`~ebrl.policies.AnchoredPolicy` whose utility is ``min(Q1, Q2)``:

- ``anchor=None``: the uniform anchor on the action box, i.e. maximum-entropy RL. The entropy
  (not the KL to the uniform, which differs by the constant ``d log 2`` in ``[-1, 1]^d``) is
  used, so values and losses are exactly SAC's.
- a given anchor (e.g. behaviour-cloned): the entropy bonus becomes a KL-to-anchor penalty.

Actions come from one batched sampler call for all envs: importance sampling of
``n_particles`` from the proposal ``(1 - anchor_mix) q_phi + anchor_mix anchor`` (``q_phi`` a
learned squashed-Gaussian actor, trained toward the energy policy by reverse KL as in SAC;
mixing in the anchor keeps every mode of the energy reachable: defensive importance sampling),
then ``mala_steps`` of MALA inside the bounds. With ``n_particles=1, mala_steps=0,
anchor_mix=0`` the action is a sample of ``q_phi`` and the agent is exactly SAC
(:meth:`SACConfig.plain`).

Everything runs in the normalised action box ``[-1, 1]^d`` (as SB3's SAC); actions are mapped
to the env's ``[low, high]`` only when stepping it, and a given anchor (defined on env actions)
is mapped into the box with its Jacobian.

References:
    Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905
    (critic loss eq. 5, soft value eq. 3, actor loss eq. 7 / 12, temperature loss eq. 18).
    Haarnoja et al. (2017), "Reinforcement Learning with Deep Energy-Based Policies" (the soft
    value by importance sampling, eq. 10). Jacob et al. (2022), "Modeling Strong and Human-Like
    Gameplay with KL-Regularized Search" (piKL: the anchored policy).
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor
from torch.distributions import AffineTransform, Distribution, TransformedDistribution

from ebrl.agents.buffer import ReplayBuffer, Transitions
from ebrl.agents.critics import QEnsemble
from ebrl.agents.evaluation import evaluate_policy, make_vector_env
from ebrl.logging import RunLogger
from ebrl.policies import AnchoredPolicy, GaussianAnchor, UniformAnchor
from ebrl.samplers import MALA, Chain, ImportanceSampler, Mixture, draw, log_normalizer

__all__ = ["SAC", "SACConfig"]


@dataclass(frozen=True)
class SACConfig:
    """Hyperparameters of :class:`SAC` (field docs become ``ebrl train --help``)."""

    learning_rate: float = 3e-4
    """Adam learning rate of actor, critics and temperature (SB3's default; `ebrl train` uses
    RL-Zoo's 1e-3 on Pendulum-v1)."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity (transitions)."""
    learning_starts: int = 100
    """Env steps (all envs together) of anchor-sampled actions before the first update."""
    batch_size: int = 256
    """Transitions per gradient step."""
    tau: float = 0.005
    """Polyak coefficient of the target critics."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 1
    """Vector-env steps between updates."""
    gradient_steps: int = 1
    """Gradient steps per update."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden widths of actor and critics."""
    n_critics: int = 2
    """Number of critics; the utility is their minimum (clipped double Q)."""
    initial_temperature: float = 1.0
    """Starting temperature T (the entropy / KL coefficient alpha)."""
    temperature_bounds: tuple[float, float] = (1e-4, 1e3)
    """The automatic temperature is clamped to this range so it cannot run away."""
    target_entropy: float | None = None
    """Entropy target without an anchor (default -dim(A))."""
    target_kl: float | None = None
    """KL-to-anchor target with an anchor (default dim(A) (1 + log 2), the KL to the uniform
    that SAC's default entropy target amounts to)."""
    n_particles: int = 16
    """Importance particles per state when acting (1 with no MALA and no mixing: plain SAC)."""
    anchor_mix: float = 0.1
    """Weight of the anchor in the defensive importance proposal."""
    mala_steps: int = 0
    """MALA steps after importance sampling when acting (in the action box)."""
    mala_step_size: float = 0.01
    """Initial MALA step size (adapted during 5 warm-up steps when mala_steps > 0)."""
    value_target: str = "samples"
    """Soft Bellman target from actor samples ("samples", as SAC) or from the importance
    estimate T log E_q[anchor exp(Q/T) / q] ("importance", as soft Q-learning)."""
    target_particles: int = 16
    """Particles per next state for the "importance" value target."""
    utility: str = "min"
    """How the critic ensemble makes the policy's utility (the energy acted on and the actor's
    loss): "min" of the critics (SAC's pessimism) or their "mean". Bellman targets always use
    the min of the target critics."""
    log_interval: int = 1000
    """Env steps between TensorBoard writes."""

    def __post_init__(self) -> None:
        positive_ints = [
            "buffer_size",
            "batch_size",
            "train_freq",
            "gradient_steps",
            "n_critics",
            "n_particles",
            "target_particles",
            "log_interval",
        ]
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SACConfig: {name} must be an int >= 1, got {value!r}")
        for name in ["learning_starts", "mala_steps"]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"SACConfig: {name} must be an int >= 0, got {value!r}")
        for name in ["learning_rate", "initial_temperature", "mala_step_size"]:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"SACConfig: {name} must be finite and > 0, got {value!r}")
        for name, low, high in [("tau", 0.0, 1.0), ("gamma", 0.0, 1.0), ("anchor_mix", 0.0, 1.0)]:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"SACConfig: {name} must be in [{low}, {high}], got {value!r}")
        lo, hi = self.temperature_bounds
        if not 0 < lo <= self.initial_temperature <= hi < math.inf:
            raise ValueError(
                "SACConfig: need 0 < temperature_bounds[0] <= initial_temperature <= "
                f"temperature_bounds[1] < inf, got {self.temperature_bounds}, "
                f"{self.initial_temperature}"
            )
        if self.utility not in ("min", "mean"):
            raise ValueError(f"SACConfig: utility must be 'min' or 'mean', got {self.utility!r}")
        if self.value_target not in ("samples", "importance"):
            raise ValueError(
                f"SACConfig: value_target must be 'samples' or 'importance', "
                f"got {self.value_target!r}"
            )
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"SACConfig: hidden_sizes must be positive, got {self.hidden_sizes}")

    @classmethod
    def plain(cls, **overrides) -> SACConfig:
        """The configuration in which the agent is exactly SAC (Haarnoja et al. 2018)."""
        return cls(**{"n_particles": 1, "anchor_mix": 0.0, "mala_steps": 0, **overrides})

    @property
    def is_plain(self) -> bool:
        return self.n_particles == 1 and self.mala_steps == 0 and self.anchor_mix == 0.0


def _check_action_space(space: gym.Space) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"SAC: supports 1-D bounded Box action spaces (continuous actions); got {space}"
        )
    if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        raise ValueError(f"SAC: the action space must be bounded (finite low/high), got {space}")
    return space


def _check_obs_space(space: gym.Space) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"SAC: supports Box observation spaces; got {space}")
    return space


class _BoxAnchor(torch.nn.Module):
    """A user's anchor on env actions ``[low, high]`` seen in the normalised box ``[-1, 1]``."""

    def __init__(self, anchor: torch.nn.Module, low: Tensor, high: Tensor):
        super().__init__()
        self.anchor = anchor
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_width", (high - low) / 2)

    def forward(self, obs: Tensor) -> Distribution:
        to_unit = AffineTransform(-self.center / self.half_width, 1 / self.half_width, event_dim=1)
        return TransformedDistribution(self.anchor(obs), [to_unit])


@dataclass
class _Stats:
    """Running sums of tensors between two log writes (no host sync until written)."""

    sums: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, values: dict[str, Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float().mean()
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def pop(self) -> dict[str, Tensor]:
        out = {k: v / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return out


class SAC:
    """Energy-based soft actor-critic (continuous actions), Stable-Baselines3-shaped.

    Args:
        env: a gymnasium env id, env, or vector env (bounded 1-D Box actions, Box observations).
        anchor: ``None`` (uniform: maximum-entropy RL) or a module ``obs -> Distribution`` over
            env actions (e.g. a behaviour-cloned :class:`~ebrl.policies.GaussianAnchor`): the
            policy is regularised toward it by a KL penalty.
        temperature: ``"auto"`` (tuned toward the entropy / KL target) or a fixed float > 0.
        sampler: the acting sampler (``agent.policy.sampler``); default built from the config:
            ``ImportanceSampler(n_particles)``, chained with ``MALA`` when ``mala_steps > 0``,
            in the box. In the plain-SAC configuration (and no sampler given) actions are the
            actor's own samples (``agent.plain``). To change the acting budget later (e.g. at
            evaluation), assign ``agent.policy.sampler`` and set ``agent.plain = False``.
        seed: seeds the networks, the sampler's generator, and the envs.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        tensorboard_log: directory for TensorBoard scalars (``None``: no logging).
        num_envs: parallel envs when ``env`` is an id.
        config: a :class:`SACConfig`; ``**hyperparameters`` override its fields.

    Example:
        >>> agent = SAC("Pendulum-v1", seed=0)                          # doctest: +SKIP
        >>> agent.learn(10_000)                                         # doctest: +SKIP
        >>> agent.evaluate(10)["mean_return"]                           # doctest: +SKIP
    """

    def __init__(
        self,
        env: str | gym.Env | gym.vector.VectorEnv,
        anchor: torch.nn.Module | None = None,
        temperature: str | float = "auto",
        sampler=None,
        seed: int = 0,
        device: str | torch.device = "auto",
        tensorboard_log: str | Path | None = None,
        num_envs: int = 1,
        config: SACConfig | None = None,
        **hyperparameters,
    ):
        unknown = set(hyperparameters) - {f.name for f in fields(SACConfig)}
        if unknown:
            raise TypeError(
                f"SAC: unknown hyperparameters {sorted(unknown)}; valid: "
                f"{sorted(f.name for f in fields(SACConfig))}"
            )
        self.config = replace(config or SACConfig(), **hyperparameters)
        if temperature != "auto" and not (
            isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0
        ):
            raise ValueError(f"SAC: temperature must be 'auto' or a float > 0, got {temperature!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"SAC: seed must be an int, got {seed!r}")
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        self.seed, self.tensorboard_log = seed, tensorboard_log
        self.envs, self.env_id = make_vector_env(env, num_envs, seed)
        self.action_space = _check_action_space(self.envs.single_action_space)
        self.observation_space = _check_obs_space(self.envs.single_observation_space)
        obs_dim = int(np.prod(self.observation_space.shape))
        act_dim = self.action_space.shape[0]
        self.obs_dim, self.act_dim = obs_dim, act_dim
        cfg = self.config

        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        low = torch.as_tensor(self.action_space.low, dtype=torch.float32, device=self.device)
        high = torch.as_tensor(self.action_space.high, dtype=torch.float32, device=self.device)
        self.action_low, self.action_high = low, high
        unit_box = gym.spaces.Box(-1.0, 1.0, shape=(act_dim,), dtype=np.float32)

        # Networks (SAC: twin critics with Polyak-averaged targets, a squashed Gaussian actor).
        # Parameter init draws from the global CPU RNG: seeded in a fork, so the caller's global
        # RNG state is left as it was; every later draw uses self.generator.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, cfg.n_critics)
            self.actor = GaussianAnchor(obs_dim, unit_box, hidden_sizes=cfg.hidden_sizes)
        self.critic = self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = self.actor.to(self.device)
        self.user_anchor = anchor
        self.entropy_mode = anchor is None
        if anchor is None:
            self.anchor = UniformAnchor(unit_box).to(self.device)
        else:
            if not callable(anchor):
                raise TypeError(f"SAC: anchor must be a module obs -> Distribution, got {anchor!r}")
            self.anchor = _BoxAnchor(anchor, low, high).to(self.device)
        # Entropy mode measures the policy against the Lebesgue base measure on the box, not the
        # uniform density (log anchor = 0 instead of -d log 2: see _log_anchor), so soft values
        # and losses are SAC's own. Acting is unaffected: a constant drops out of the energy.

        self.auto_temperature = temperature == "auto"
        t0 = cfg.initial_temperature if self.auto_temperature else float(temperature)
        self.log_temperature = torch.tensor(
            math.log(t0), device=self.device, requires_grad=self.auto_temperature
        )
        if self.entropy_mode:
            self.target = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        else:
            self.target = act_dim * (1 + math.log(2)) if cfg.target_kl is None else cfg.target_kl

        # Fused Adam (one kernel per step, CPU and CUDA since torch 2.4): same update, less time.
        adam = {"lr": cfg.learning_rate, "fused": True}
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), **adam)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), **adam)
        self.temperature_optimizer = torch.optim.Adam([self.log_temperature], **adam)

        # Plain SAC acts with the actor's own samples; otherwise the policy's sampler acts.
        self.plain = sampler is None and cfg.is_plain
        if sampler is None:
            sampler = ImportanceSampler(cfg.n_particles, bounds=(-1.0, 1.0))
            if cfg.mala_steps > 0:
                mala = MALA(cfg.mala_step_size, cfg.mala_steps, bounds=(-1.0, 1.0), warmup_steps=5)
                sampler = Chain(sampler, mala)
        self.policy = AnchoredPolicy(self.anchor, self._utility, self.temperature, sampler)
        self.value_sampler = ImportanceSampler(cfg.target_particles, bounds=(-1.0, 1.0))
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, act_dim, self.device)
        self.num_timesteps = 0
        self._last_obs: np.ndarray | None = None  # where a further learn() call continues

    # ------------------------------------------------------------------ the energy policy

    @property
    def temperature(self) -> Tensor:
        return self.log_temperature.detach().exp()

    def _utility(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``min_k Q_k(s, a)`` (or the mean, per ``config.utility``): ``obs[B, o]``,
        ``actions[n, B, d] -> [n, B]``."""
        q = self.critic(obs, actions)
        return q.mean(0) if self.config.utility == "mean" else q.min(0).values

    def _log_anchor(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``log anchor(a|s)``; in entropy mode the base measure's 0 (``log U + d log 2``) for
        the actions in the box it is only ever called on."""
        if self.entropy_mode:
            return actions.new_zeros(actions.shape[:-1])
        return self.anchor(obs).log_prob(actions)

    def _proposal(self, obs: Tensor) -> Distribution:
        actor = self.actor(obs)
        if self.config.anchor_mix == 0.0:
            return actor
        mix = self.config.anchor_mix
        return Mixture([actor, self.anchor(obs)], [1.0 - mix, mix])

    @torch.no_grad()
    def _act(self, obs: Tensor, deterministic: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Normalised actions ``[B, d]`` for observations ``[B, o]``, one sampler call for all."""
        self.policy.temperature = self.temperature
        if self.plain:  # plain SAC: the actor's sample (or its mode)
            actor = self.actor(obs)
            if deterministic:
                return actor.median, {}
            return draw(actor, (1,), self.generator)[0], {}
        if deterministic:
            return self.policy.act(
                obs, deterministic=True, proposal=self._proposal(obs), generator=self.generator
            ), {}
        result = self.policy.sample(obs, 1, proposal=self._proposal(obs), generator=self.generator)
        return result.samples[0], result.stats

    def _to_env(self, actions: Tensor) -> np.ndarray:
        scaled = self.action_low + (actions + 1) * (self.action_high - self.action_low) / 2
        return scaled.cpu().numpy().astype(self.action_space.dtype)

    def _obs(self, obs: np.ndarray) -> Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(
            -1, self.obs_dim
        )

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """Env actions for ``observation`` (one ``[o]`` or a batch ``[B, o]``), as SB3."""
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.shape == self.observation_space.shape
        if not single and obs.shape[1:] != self.observation_space.shape:
            raise ValueError(
                f"SAC.predict: observation must have shape {self.observation_space.shape} or "
                f"[B, *{self.observation_space.shape}], got {obs.shape}"
            )
        actions, _ = self._act(self._obs(obs), deterministic)
        env_actions = self._to_env(actions)
        return (env_actions[0] if single else env_actions), None

    # ------------------------------------------------------------------ losses

    def critic_loss(self, batch: Transitions) -> tuple[Tensor, dict[str, Tensor]]:
        """Soft Bellman residual, eq. (5): ``1/2 sum_k (Q_k(s, a) - y)^2`` with ``y`` from the
        target critics and the soft value of the next state (no gradient into the target)."""
        temperature = self.temperature
        with torch.no_grad():
            if self.config.value_target == "samples":
                # V(s') = E_{a'~q}[min Q'(s', a') - T (log q(a'|s') - log anchor(a'|s'))], eq. (3)
                next_a, log_q = self.actor(batch.next_obs).rsample_and_log_prob(
                    generator=self.generator
                )
                reg = log_q - self._log_anchor(batch.next_obs, next_a)
                q_next = self.critic_target(batch.next_obs, next_a).min(0).values
                value = q_next - temperature * reg
            else:
                # V(s') = T log E_q[anchor exp(Q'/T) / q] by importance sampling (SQL eq. 10)
                def energy(a: Tensor) -> Tensor:
                    q = self.critic_target(batch.next_obs, a).min(0).values
                    return -(self._log_anchor(batch.next_obs, a) + q / temperature)

                _, log_w = self.value_sampler.weigh(
                    energy, self._proposal(batch.next_obs), generator=self.generator
                )
                value = temperature * log_normalizer(log_w)
            target = batch.rewards + self.config.gamma * (1 - batch.terminated) * value
        q = self.critic(batch.obs, batch.actions)  # [n_critics, B]
        loss = 0.5 * ((q - target) ** 2).mean(1).sum()
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}

    def actor_loss(
        self, batch: Transitions, actions: Tensor, log_q: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Reverse KL from the actor to the energy policy, eq. (7)/(12):
        ``E_{a~q}[T (log q(a|s) - log anchor(a|s)) - min Q(s, a)]`` with ``a`` reparameterised."""
        reg = log_q - self._log_anchor(batch.obs, actions)
        q = self._utility(batch.obs, actions)
        loss = (self.temperature * reg - q).mean()
        name = "entropy" if self.entropy_mode else "kl_to_anchor"
        value = -reg.mean() if self.entropy_mode else reg.mean()
        return loss, {"actor_loss": loss, name: value.detach()}

    def temperature_loss(self, reg: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Dual of the constraint, eq. (18): entropy ``-E[log q] >= target`` or
        ``KL(q || anchor) <= target``; ``reg = log q - log anchor`` (detached)."""
        bound = -self.target if self.entropy_mode else self.target
        loss = -(self.log_temperature * (reg.detach() - bound)).mean()
        return loss, {"temperature_loss": loss}

    # ------------------------------------------------------------------ one update

    def update(self, batch: Transitions) -> dict[str, Tensor]:
        """One gradient step on temperature, critics and actor, then the Polyak update (SB3's
        order)."""
        metrics: dict[str, Tensor] = {}
        actions, log_q = self.actor(batch.obs).rsample_and_log_prob(generator=self.generator)

        if self.auto_temperature:
            reg = log_q - self._log_anchor(batch.obs, actions)
            loss, m = self.temperature_loss(reg)
            self.temperature_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.temperature_optimizer.step()
            with torch.no_grad():
                lo, hi = self.config.temperature_bounds
                self.log_temperature.clamp_(math.log(lo), math.log(hi))
            metrics.update(m)

        loss, m = self.critic_loss(batch)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        metrics.update(m)

        # The actor's gradient flows through the critics to the actions; the critics' own
        # weight gradients are not needed here, so they are not computed.
        self.critic.requires_grad_(False)
        loss, m = self.actor_loss(batch, actions, log_q)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic.requires_grad_(True)
        self.actor_optimizer.step()
        metrics.update(m)

        polyak_update(self.critic, self.critic_target, self.config.tau)
        metrics["temperature"] = self.temperature
        return metrics

    # ------------------------------------------------------------------ learning

    def learn(
        self,
        total_timesteps: int,
        progress_bar: bool = True,
        callback: Callable[[SAC, dict], bool | None] | None = None,
    ) -> SAC:
        """Collect -> update -> log for ``total_timesteps`` env steps (all envs together).

        ``callback(agent, info)`` is called after every vector-env step; returning ``False``
        stops training.
        """
        if (
            isinstance(total_timesteps, bool)
            or not isinstance(total_timesteps, int)
            or (total_timesteps < 1)
        ):
            raise ValueError(
                f"SAC.learn: total_timesteps must be an int >= 1, got {total_timesteps!r}"
            )
        cfg, n_envs = self.config, self.envs.num_envs
        stats = _Stats()
        start, last_log = time.perf_counter(), self.num_timesteps
        end = self.num_timesteps + total_timesteps
        obs = self.envs.reset(seed=self.seed)[0] if self._last_obs is None else self._last_obs
        recent: list[float] = []
        with RunLogger(self.tensorboard_log, total_timesteps, progress_bar, "SAC") as log:
            while self.num_timesteps < end:
                obs_t = self._obs(obs)
                if self.num_timesteps < cfg.learning_starts:  # explore with the anchor
                    with torch.no_grad():
                        actions = draw(self.anchor(obs_t), (1,), self.generator)[0].clamp(-1, 1)
                else:
                    actions, act_stats = self._act(obs_t, deterministic=False)
                    stats.add(act_stats)
                next_obs, rewards, terminated, _truncated, infos = self.envs.step(
                    self._to_env(actions)
                )
                real_next = np.array(next_obs, copy=True)
                if "final_obs" in infos:  # same-step autoreset: the true last observation
                    for i in np.flatnonzero(infos["_final_obs"]):
                        real_next[i] = infos["final_obs"][i]
                self.buffer.add(obs, actions, rewards, real_next, terminated)
                obs = next_obs
                self.num_timesteps += n_envs
                log.advance(n_envs)
                if "episode" in infos:
                    done = infos["_episode"]
                    recent.extend(infos["episode"]["r"][done].tolist())
                    for r, l in zip(
                        infos["episode"]["r"][done], infos["episode"]["l"][done], strict=True
                    ):
                        log.scalars(
                            self.num_timesteps,
                            {"rollout/episode_return": r, "rollout/episode_length": l},
                        )

                if (
                    self.num_timesteps >= cfg.learning_starts
                    and (self.num_timesteps // n_envs) % cfg.train_freq == 0
                ):
                    for _ in range(cfg.gradient_steps):
                        batch = self.buffer.sample(cfg.batch_size, self.generator)
                        stats.add(self.update(batch))

                if self.num_timesteps - last_log >= cfg.log_interval or self.num_timesteps >= end:
                    elapsed = time.perf_counter() - start
                    values = {f"train/{k}": v for k, v in stats.pop().items()}
                    values["time/env_steps_per_second"] = (
                        self.num_timesteps - (end - total_timesteps)
                    ) / max(elapsed, 1e-9)
                    floats = log.scalars(self.num_timesteps, values)
                    postfix = {"return": float(np.mean(recent[-10:]))} if recent else {}
                    postfix["T"] = float(self.temperature)
                    postfix["sps"] = floats["time/env_steps_per_second"]
                    log.advance(0, postfix)
                    last_log = self.num_timesteps
                if callback is not None and callback(self, {"infos": infos}) is False:
                    break
        self._last_obs = obs
        self.learn_wall_s = time.perf_counter() - start
        return self

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self, n_episodes: int = 10, deterministic: bool = True, seed: int | None = None
    ) -> dict:
        """Mean and std of the undiscounted return over ``n_episodes`` fresh episodes."""
        if self.env_id is None:
            raise ValueError(
                "SAC.evaluate: needs an env created from an id; use "
                "ebrl.agents.evaluate_policy(agent.predict, env, n) with your env"
            )
        seed = self.seed + 10_000 if seed is None else seed
        return evaluate_policy(
            lambda o: self.predict(o, deterministic=deterministic)[0], self.env_id, n_episodes, seed
        )

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {
            "format": "ebrl.SAC/1",
            "config": asdict(self.config),
            "env_id": self.env_id,
            "observation_shape": list(self.observation_space.shape),
            "action_low": self.action_space.low.tolist(),
            "action_high": self.action_space.high.tolist(),
            "auto_temperature": self.auto_temperature,
            "has_anchor": not self.entropy_mode,
            "seed": self.seed,
            "num_timesteps": self.num_timesteps,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "anchor": None if self.entropy_mode else self.user_anchor.state_dict(),
            "anchor_spec": getattr(self.user_anchor, "spec", None)
            if isinstance(self.user_anchor, GaussianAnchor)
            else None,
            "log_temperature": self.log_temperature.detach().cpu(),
            "generator": self.generator.get_state(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "temperature_optimizer": self.temperature_optimizer.state_dict(),
        }

    def save(self, path: str | Path) -> Path:
        """Writes the state dicts atomically (temporary file, then ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            torch.save(self.state_dict(), tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        env=None,
        anchor: torch.nn.Module | None = None,
        device: str = "auto",
        **kwargs,
    ) -> SAC:
        """Rebuilds an agent from :meth:`save` (``weights_only=True``: tensors and plain data).

        ``env`` defaults to the checkpoint's env id; its spaces must match the checkpoint's.
        An agent trained with an anchor is rebuilt with it: a :class:`GaussianAnchor` from the
        checkpoint alone, any other anchor module from ``anchor=`` (the same architecture; its
        weights are restored from the checkpoint).
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"SAC.load: no checkpoint at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != "ebrl.SAC/1":
            raise ValueError(f"SAC.load: {path} is not an ebrl SAC checkpoint")
        if state["has_anchor"] and anchor is None and state.get("anchor_spec") is not None:
            anchor = GaussianAnchor.from_spec(state["anchor_spec"])
        if state["has_anchor"] and anchor is None:
            raise ValueError(
                "SAC.load: this agent was trained with an anchor; pass anchor= "
                "(a module of the same architecture)"
            )
        env = state["env_id"] if env is None else env
        if env is None:
            raise ValueError("SAC.load: the checkpoint has no env id; pass env=")
        config = SACConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()}
        )
        temperature = "auto" if state["auto_temperature"] else float(state["log_temperature"].exp())
        agent = cls(
            env,
            anchor=anchor,
            temperature=temperature,
            seed=state["seed"],
            device=device,
            config=config,
            **kwargs,
        )
        got = (
            list(agent.observation_space.shape),
            agent.action_space.low.tolist(),
            agent.action_space.high.tolist(),
        )
        want = (state["observation_shape"], state["action_low"], state["action_high"])
        if got != want:
            raise ValueError(
                f"SAC.load: env spaces (obs shape, action low, high) {got} do not match the "
                f"checkpoint's {want} (a checkpoint from another env?)"
            )
        agent.actor.load_state_dict(state["actor"])
        agent.critic.load_state_dict(state["critic"])
        agent.critic_target.load_state_dict(state["critic_target"])
        if anchor is not None:
            anchor.load_state_dict(state["anchor"])
        with torch.no_grad():
            agent.log_temperature.copy_(state["log_temperature"])
        agent.actor_optimizer.load_state_dict(state["actor_optimizer"])
        agent.critic_optimizer.load_state_dict(state["critic_optimizer"])
        agent.temperature_optimizer.load_state_dict(state["temperature_optimizer"])
        if agent.generator.device.type == "cpu":  # the same random stream as the saved agent
            agent.generator.set_state(state["generator"])
        agent.num_timesteps = state["num_timesteps"]
        return agent


@torch.no_grad()
def polyak_update(source: torch.nn.Module, target: torch.nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source``, in place (one fused op per tensor list)."""
    src, tgt = list(source.parameters()), list(target.parameters())
    torch._foreach_lerp_(tgt, src, tau)
