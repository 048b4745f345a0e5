"""The off-policy core: one collect -> update -> log -> evaluate -> checkpoint loop for every agent.

An agent (:class:`~ebrl.agents.SAC`, :class:`~ebrl.agents.SoftQ`) subclasses
:class:`OffPolicyAgent` and brings only what makes it that algorithm:

- its config (a frozen dataclass extending :class:`OffPolicyConfig`) and action space check;
- its networks and optimisers, named in :meth:`OffPolicyAgent.modules` and
  :meth:`OffPolicyAgent.optimizers` (the checkpoint saves and restores them by name);
- its acting, :meth:`OffPolicyAgent.act` (one batched call for all envs) and
  :meth:`OffPolicyAgent.explore` (before ``learning_starts``);
- its losses and :meth:`OffPolicyAgent.update` (one gradient step on a batch).

The core does the rest, as Stable-Baselines3's ``OffPolicyAlgorithm`` does, without its
inheritance chain: vector-env collection (same-step autoreset; the true last observation of an
episode goes into the buffer, and ``terminated``, not ``truncated``, stops bootstrapping),
update scheduling (``learning_starts``, ``train_freq``, ``gradient_steps``), TensorBoard scalars
and the progress bar, ``predict`` (SB3's signature), ``evaluate``, and one checkpoint format.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from ebrl.agents import checkpoint
from ebrl.agents.buffer import ReplayBuffer, Transitions
from ebrl.agents.config import OffPolicyConfig
from ebrl.agents.evaluation import evaluate_policy, make_vector_env
from ebrl.agents.updates import temperature_loss
from ebrl.logging import RunLogger
from ebrl.policies import AnchoredPolicy
from ebrl.validation import check_int

__all__ = ["OffPolicyAgent"]


@dataclass
class _Stats:
    """The tensors logged between two writes, kept as they come (no op, no host sync per
    update); averaged once per write."""

    values: dict[str, list[Tensor]] = field(default_factory=dict)

    def add(self, values: dict[str, Tensor]) -> None:
        for key, value in values.items():
            self.values.setdefault(key, []).append(value.detach())

    def pop(self) -> dict[str, Tensor]:
        out = {}
        for key, vs in self.values.items():
            if all(v.dim() == 0 for v in vs):
                out[key] = torch.stack(vs).float().mean()
            else:
                out[key] = torch.stack([v.float().mean() for v in vs]).mean()
        self.values = {}
        return out


class OffPolicyAgent:
    """The shared part of every off-policy agent (see the module docstring).

    Subclasses set ``config_class`` and ``policy`` (an :class:`~ebrl.policies.AnchoredPolicy`)
    and implement ``_check_action_space``, ``act``, ``explore``, ``update``, ``modules`` (the
    user's anchor is added to them), ``optimizers`` and ``to_env``; they may add
    ``extra_state`` / ``load_extra_state``.
    """

    config_class: ClassVar[type[OffPolicyConfig]] = OffPolicyConfig
    action_dtype: ClassVar[torch.dtype] = torch.float32
    registry: ClassVar[dict[str, type[OffPolicyAgent]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        OffPolicyAgent.registry[cls.__name__] = cls

    def __init__(
        self,
        env: str | gym.Env | gym.vector.VectorEnv,
        anchor: nn.Module | None,
        temperature: str | float,
        seed: int,
        device: str | torch.device,
        tensorboard_log: str | Path | None,
        num_envs: int,
        config: OffPolicyConfig | None,
        hyperparameters: dict,
    ):
        name = type(self).__name__
        valid = sorted(f.name for f in fields(self.config_class))
        unknown = set(hyperparameters) - set(valid)
        if unknown:
            raise TypeError(f"{name}: unknown hyperparameters {sorted(unknown)}; valid: {valid}")
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(
                f"{name}: config must be a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = replace(config or self.config_class(), **hyperparameters)
        if temperature != "auto" and not (
            isinstance(temperature, int | float)
            and not isinstance(temperature, bool)
            and math.isfinite(temperature)
            and temperature > 0
        ):
            raise ValueError(
                f"{name}: temperature must be 'auto' or a float > 0, got {temperature!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{name}: seed must be an int >= 0, got {seed!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(
                f"{name}: device must be 'auto', 'cpu', 'cuda', ...; got {device!r}"
            ) from err
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{name}: device {device!r} requested but CUDA is not available")
        if anchor is not None and not callable(anchor):
            raise TypeError(f"{name}: anchor must be a module obs -> Distribution, got {anchor!r}")
        self.user_anchor = anchor
        self.entropy_mode = anchor is None
        self.seed, self.tensorboard_log = seed, tensorboard_log
        self.auto_temperature = temperature == "auto"
        self.envs, self.env_id = make_vector_env(env, num_envs, seed)
        self.action_space = self._check_action_space(self.envs.single_action_space)
        space = self.envs.single_observation_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"{name}: supports Box observation spaces; got {space}")
        self.observation_space = space
        self.obs_dim = int(np.prod(space.shape))
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.log_temperature = nn.Parameter(
            torch.tensor(
                math.log(self.config.initial_temperature if self.auto_temperature else temperature),
                device=self.device,
            ),
            requires_grad=self.auto_temperature,
        )
        self._policy_temperature = self.log_temperature.detach().exp().clone()
        self.temperature_optimizer = torch.optim.Adam(
            [self.log_temperature], lr=self.config.learning_rate, fused=True
        )
        action_shape = tuple(self.action_space.shape)
        self.buffer = ReplayBuffer(
            self.config.buffer_size, self.obs_dim, action_shape, self.action_dtype, self.device
        )
        self.num_timesteps = 0
        self._last_obs: np.ndarray | None = None  # where a further learn() call continues
        self.learn_wall_s = 0.0

    # ------------------------------------------------------------------ what an agent brings

    def _check_action_space(self, space: gym.Space) -> gym.Space:
        raise NotImplementedError

    def act(self, obs: Tensor, deterministic: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Actions (the agent's own representation) for ``obs[B, o]``, and acting stats."""
        raise NotImplementedError

    def explore(self, obs: Tensor) -> Tensor:
        """Actions before ``learning_starts`` (the anchor's)."""
        raise NotImplementedError

    def update(self, batch: Transitions) -> dict[str, Tensor]:
        """One gradient step on ``batch``; returns named scalars (tensors) to log."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """The networks a checkpoint holds, by name."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def to_env(self, actions: Tensor) -> np.ndarray:
        """The agent's actions ``[B, ...]`` as env actions."""
        raise NotImplementedError

    def extra_state(self) -> dict:
        """Plain data the checkpoint needs besides modules, optimisers and counters."""
        return {}

    # ------------------------------------------------------------------ shared

    @property
    def policy(self) -> AnchoredPolicy:
        """The energy policy ``anchor · exp(Q / T)`` at the agent's current temperature; assign
        another :class:`~ebrl.policies.AnchoredPolicy` (e.g. with another sampler, or a
        composed cost) and the agent acts with it."""
        return self._policy

    @policy.setter
    def policy(self, policy: AnchoredPolicy) -> None:
        if not isinstance(policy, AnchoredPolicy):
            raise TypeError(
                f"{type(self).__name__}.policy must be an AnchoredPolicy, got "
                f"{type(policy).__name__}"
            )
        # The policy holds the agent's temperature tensor, which the agent updates in place
        # after every temperature step: never a stale copy, and no check per action.
        policy.temperature = self._policy_temperature
        self._policy = policy

    def sync_temperature(self) -> None:
        """Copies ``exp(log T)`` into the tensor the policy reads (after ``log T`` changed)."""
        with torch.no_grad():
            self._policy_temperature.copy_(self.log_temperature.exp())

    @property
    def temperature(self) -> Tensor:
        """``T`` (0-d, detached): the agent's current temperature."""
        return self.log_temperature.detach().exp()

    def set_target(self, default_entropy: float, default_kl: float) -> None:
        """The automatic temperature's target: ``config.target_entropy`` (uniform anchor) or
        ``config.target_kl`` (given anchor), else the agent's default; ``self.bound`` is the
        same constraint on ``E[log pi - log anchor]`` (``-H`` or the KL)."""
        cfg = self.config
        if self.entropy_mode:
            self.target = default_entropy if cfg.target_entropy is None else cfg.target_entropy
            self.bound = -self.target
        else:
            self.target = default_kl if cfg.target_kl is None else cfg.target_kl
            self.bound = self.target

    def step_temperature(self, regularizer: Tensor) -> dict[str, Tensor]:
        """One Adam step on :func:`~ebrl.agents.updates.temperature_loss` (when automatic),
        clamped to ``temperature_bounds``; ``regularizer`` estimates ``E[log pi - log anchor]``.
        Returns the loss term to log."""
        loss, terms = temperature_loss(self.log_temperature, regularizer, self.bound)
        if not self.auto_temperature:
            return terms
        # The loss is linear in log T: its gradient is -(regularizer - bound), set directly
        # rather than through an autograd graph for one scalar (the same number; tested).
        self.log_temperature.grad = (self.bound - regularizer.detach()).to(loss.dtype)
        self.temperature_optimizer.step()
        with torch.no_grad():
            lo, hi = self.config.temperature_bounds
            self.log_temperature.clamp_(math.log(lo), math.log(hi))
        self.sync_temperature()
        return terms

    def seeded(self, build: Callable[[], nn.Module]) -> nn.Module:
        """``build()`` on the agent's device with parameter init seeded by the agent's seed, in
        a forked RNG: the caller's global RNG is left as it was (later draws use
        ``self.generator``)."""
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(self.seed)
            return build().to(self.device)

    def obs_tensor(self, obs: np.ndarray) -> Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(
            -1, self.obs_dim
        )

    def _check_finite(self, what: str, values: np.ndarray, where: str) -> None:
        if not np.isfinite(values).all():
            raise ValueError(
                f"{type(self).__name__}.{where}: non-finite {what} "
                f"({np.asarray(values).ravel()[~np.isfinite(np.asarray(values).ravel())][:3]}); "
                "check the env, its wrappers, and the networks (a diverged network gives NaN)"
            )

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """Env actions for ``observation`` (one ``[*obs_shape]`` or a batch
        ``[B, *obs_shape]``), as Stable-Baselines3's ``predict``: returns ``(action, None)``."""
        name = type(self).__name__
        try:
            obs = np.asarray(observation, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}.predict: observation must be array-like numbers") from err
        shape = tuple(self.observation_space.shape)
        single = obs.shape == shape
        if not single and obs.shape[1:] != shape:
            raise ValueError(
                f"{name}.predict: observation must have shape {shape} or [B, *{shape}], "
                f"got {obs.shape}"
            )
        self._check_finite("observation", obs, "predict")
        with torch.no_grad():
            actions, _ = self.act(self.obs_tensor(obs), bool(deterministic))
        env_actions = self.to_env(actions)
        self._check_finite("action", env_actions, "predict")
        return (env_actions[0] if single else env_actions), None

    def learn(
        self,
        total_timesteps: int,
        progress_bar: bool = True,
        callback: Callable[[OffPolicyAgent, dict], bool | None] | None = None,
    ) -> OffPolicyAgent:
        """Collect -> update -> log for ``total_timesteps`` env steps (all envs together).

        ``callback(agent, info)`` is called after every vector-env step; returning ``False``
        stops training. A further call continues from the last observation.
        """
        name = type(self).__name__
        check_int(f"{name}.learn", "total_timesteps", total_timesteps)
        if callback is not None and not callable(callback):
            raise TypeError(f"{name}.learn: callback must be callable, got {callback!r}")
        cfg, n_envs = self.config, self.envs.num_envs
        stats = _Stats()
        start, first, last_log = time.perf_counter(), self.num_timesteps, self.num_timesteps
        end = self.num_timesteps + total_timesteps
        obs = self.envs.reset(seed=self.seed)[0] if self._last_obs is None else self._last_obs
        recent: list[float] = []
        with RunLogger(self.tensorboard_log, total_timesteps, progress_bar, name) as log:
            while self.num_timesteps < end:
                self._check_finite("observation", obs, "learn")
                obs_t = self.obs_tensor(obs)
                with torch.no_grad():
                    if self.num_timesteps < cfg.learning_starts:
                        actions = self.explore(obs_t)
                    else:
                        actions, act_stats = self.act(obs_t, deterministic=False)
                        stats.add(act_stats)
                env_actions = self.to_env(actions)
                self._check_finite("action", env_actions, "learn")
                next_obs, rewards, terminated, _, infos = self.envs.step(env_actions)
                self._check_finite("reward", rewards, "learn")
                real_next = next_obs
                if "final_obs" in infos:  # same-step autoreset: the true last observation
                    real_next = np.array(next_obs, copy=True)
                    for i in np.flatnonzero(infos["_final_obs"]):
                        real_next[i] = infos["final_obs"][i]
                self.buffer.add(obs, actions, rewards, real_next, terminated)
                obs = next_obs
                self.num_timesteps += n_envs
                log.advance(n_envs)
                if "episode" in infos:
                    done = infos["_episode"]
                    for r, l in zip(
                        infos["episode"]["r"][done], infos["episode"]["l"][done], strict=True
                    ):
                        recent.append(float(r))
                        log.scalars(
                            self.num_timesteps,
                            {"rollout/episode_return": r, "rollout/episode_length": l},
                        )

                if (
                    self.num_timesteps >= cfg.learning_starts
                    and (self.num_timesteps // n_envs) % cfg.train_freq == 0
                ):
                    for _ in range(cfg.gradient_steps):
                        stats.add(self.update(self.buffer.sample(cfg.batch_size, self.generator)))

                if self.num_timesteps - last_log >= cfg.log_interval or self.num_timesteps >= end:
                    values = {f"train/{k}": v for k, v in stats.pop().items()}
                    values["train/temperature"] = self.temperature
                    values["time/env_steps_per_second"] = (self.num_timesteps - first) / max(
                        time.perf_counter() - start, 1e-9
                    )
                    floats = log.scalars(self.num_timesteps, values)
                    postfix = {"return": float(np.mean(recent[-10:]))} if recent else {}
                    postfix["T"] = floats["train/temperature"]
                    postfix["sps"] = floats["time/env_steps_per_second"]
                    log.advance(0, postfix)
                    last_log = self.num_timesteps
                if callback is not None and callback(self, {"infos": infos}) is False:
                    break
        self._last_obs = obs
        self.learn_wall_s = time.perf_counter() - start
        return self

    def evaluate(
        self, n_episodes: int = 10, deterministic: bool = True, seed: int | None = None
    ) -> dict:
        """Mean and std of the undiscounted return over ``n_episodes`` fresh episodes (episode
        ``i`` reset with ``seed + i``; default ``seed``: the agent's seed + 10000)."""
        name = type(self).__name__
        if self.env_id is None:
            raise ValueError(
                f"{name}.evaluate: needs an env created from an id; use "
                "ebrl.agents.evaluate_policy(agent.predict, env, n) with your env"
            )
        seed = self.seed + 10_000 if seed is None else seed
        return evaluate_policy(
            lambda o: self.predict(o, deterministic=deterministic)[0], self.env_id, n_episodes, seed
        )

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """The whole checkpoint (:mod:`ebrl.agents.checkpoint`) as tensors and plain data."""
        return checkpoint.state_dict(self)

    def save(self, path: str | Path) -> Path:
        """Writes :meth:`state_dict` atomically (a temporary file, then ``os.replace``)."""
        return checkpoint.save_atomically(self.state_dict(), path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: str | gym.Env | gym.vector.VectorEnv | None = None,
        anchor: nn.Module | None = None,
        device: str | torch.device = "auto",
        **kwargs,
    ) -> OffPolicyAgent:
        """Rebuilds an agent from :meth:`save` (``weights_only=True``: tensors and plain data).

        ``env`` defaults to the checkpoint's env id; its spaces must match the checkpoint's.
        An agent trained with an anchor is rebuilt with it: ebrl's anchors from the checkpoint
        alone, any other anchor module from ``anchor=`` (the same architecture; its weights are
        restored from the checkpoint).
        """
        return checkpoint.load(cls, path, env, anchor, device, **kwargs)

    def load_extra_state(self, extra: dict) -> None:
        """Restores what :meth:`extra_state` saved."""
