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

Parallelism, with PyTorch's and gymnasium's own engines:

- ``vectorization="async"`` (a keyword of every agent) steps the ``num_envs`` envs in worker
  processes (gymnasium's ``AsyncVectorEnv``); acting stays one batched call for all envs.
- Under ``torchrun`` (a ``torch.distributed`` process group of N ranks; :mod:`ebrl.distributed`)
  the agent trains decentralised data-parallel, as DD-PPO (Wijmans et al. 2020): every rank
  steps its own envs (episode seeds numbered after the lower ranks') into its own replay
  buffer, with its own generator (seeded from ``(seed, rank)``), and every optimiser step
  (networks and temperature) first averages the gradients over the ranks, after rank 0's
  initial parameters were copied to all: every rank keeps identical parameters, and N ranks
  collect N times the experience per update. Step counts are global: ``num_timesteps``,
  ``learn(total_timesteps)``, ``learning_starts`` and ``log_interval`` count the env steps of
  all ranks together (each rank does 1/N of them); ``train_freq`` counts vector-env steps, and
  ``batch_size`` is per rank (the averaged gradient is that of N x ``batch_size``
  transitions). Only rank 0 writes TensorBoard and shows the progress bar.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map_only

from ebrl import distributed
from ebrl.agents import checkpoint
from ebrl.agents.buffer import ReplayBuffer, Transitions
from ebrl.agents.config import OffPolicyConfig
from ebrl.agents.episodes import replayable
from ebrl.agents.evaluation import EnvLike, build_envs, evaluate_policy, make_env
from ebrl.agents.updates import adam_step
from ebrl.logging import RunLogger
from ebrl.policies import AnchoredPolicy
from ebrl.validation import check_int

__all__ = ["Callback", "OffPolicyAgent"]

Callback = Callable[["OffPolicyAgent", dict], "bool | None"]


def auto_device() -> str:
    """What ``device="auto"`` means: ``"cuda"`` where CUDA is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class _Stats:
    """The tensors logged between two writes, kept as they come (no op, no host sync per
    update); averaged once per write."""

    values: dict[str, list[Tensor]] = field(default_factory=dict)

    def add(self, values: dict[str, Tensor]) -> None:
        for key, value in values.items():
            # detach only what has a graph (a detach is an op, ~1 us, and most terms have none)
            self.values.setdefault(key, []).append(value.detach() if value.requires_grad else value)

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
    # the device types where ``config.compile=None`` (auto) compiles: where compiling was
    # measured to pay in 10k-step runs, compile time counted (docs/performance.md)
    compile_pays_on: ClassVar[frozenset[str]] = frozenset()

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
        eval_env: EnvLike | None = None,
    ):
        name = type(self).__name__
        hyperparameters = dict(hyperparameters)
        # How the envs step, not a training hyperparameter (the run is the same either way).
        vectorization = hyperparameters.pop("vectorization", "sync")
        valid = sorted(f.name for f in fields(self.config_class))
        unknown = set(hyperparameters) - set(valid)
        if unknown:
            raise TypeError(f"{name}: unknown hyperparameters {sorted(unknown)}; valid: {valid}")
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(
                f"{name}: config must be a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        if temperature != "auto" and not (
            isinstance(temperature, int | float | np.integer | np.floating)
            and not isinstance(temperature, bool)
            and math.isfinite(temperature)
            and temperature > 0
        ):
            raise ValueError(
                f"{name}: temperature must be 'auto' or a float > 0, got {temperature!r}"
            )
        temperature = temperature if temperature == "auto" else float(temperature)
        if (
            isinstance(seed, bool)
            or not isinstance(seed, int | np.integer)
            or not 0 <= seed < 2**63  # torch's generators take 64-bit seeds
        ):
            raise ValueError(f"{name}: seed must be an int in [0, 2**63), got {seed!r}")
        seed = int(seed)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        first = self.rank * num_envs if isinstance(num_envs, int | np.integer) else 0
        built = build_envs(env, num_envs, seed, vectorization=vectorization, first_index=int(first))
        self.vectorization = vectorization
        self.envs, self.env_id, self.env_recipe = built.envs, built.env_id, built.recipe
        # next-step autoreset: the step after an episode's end only resets that env (read once
        # here: looking it up costs ~1 us at every env step)
        mode = self.envs.metadata.get("autoreset_mode")
        self._next_step_autoreset = mode == gym.vector.AutoresetMode.NEXT_STEP
        self._make_eval_env = None if built.make_eval_env is None else _closing(built.make_eval_env)
        self._why_no_eval_env = built.why_not
        if eval_env is not None:
            self._make_eval_env = _eval_env_maker(eval_env, name)
        # No config: the env's preset (ebrl.agents.presets), as the CLI uses, then the
        # keyword hyperparameters. Checked here, before anything is allocated.
        base = config or self.config_class.for_env(self.env_id)
        self.config = replace(base, **hyperparameters)
        if device == "auto":
            device = auto_device()
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
        self.action_space = self._check_action_space(self.envs.single_action_space)
        space = self.envs.single_observation_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"{name}: supports Box observation spaces; got {space}")
        self.observation_space = space
        self.obs_dim = int(np.prod(space.shape))
        self.generator = torch.Generator(device=self.device).manual_seed(
            distributed.rank_seed(seed)
        )
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
        self._replayable = replayable(self.envs)
        self._reset_before = False
        self._warned_pinned = False
        self.logger: RunLogger | None = None  # the run's logger while learn() runs
        self.learn_wall_s = 0.0
        self._ranks_joined = False

    @property
    def compiled(self) -> bool:
        """Whether compiling the hot paths was chosen: ``config.compile``, or with ``None``
        (auto) whether this agent's device type is one where compiling pays
        (``compile_pays_on``). A path that fell back to eager (with a warning) still counts."""
        flag = self.config.compile
        return self.device.type in self.compile_pays_on if flag is None else flag

    def _hot_path(self, fn: Callable, *, fullgraph: bool) -> Callable:
        """``fn`` itself, or compiled (:func:`compile_hot_path`) when :attr:`compiled`; the
        automatic choice falls back to eager where compiling fails."""
        if not self.compiled:
            return fn
        fallback = self.config.compile is None
        return compile_hot_path(fn, self.device, fullgraph=fullgraph, fallback=fallback)

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
            torch.exp(self.log_temperature, out=self._policy_temperature)

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
        # temperature_loss, -log T (regularizer - bound), is linear in log T: its gradient
        # bound - regularizer is set directly, and the loss (logged) is log T times it, rather
        # than an autograd graph for one scalar (two ops instead of ~10; the same numbers,
        # tested, as IEEE negation is exact).
        gap = (self.bound - regularizer.detach()).to(self.log_temperature.dtype)
        terms = {"temperature_loss": self.log_temperature.detach() * gap}
        if not self.auto_temperature:
            return terms
        self.log_temperature.grad = gap
        adam_step(self.temperature_optimizer)
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
        """``obs`` as a float32 ``[B, obs_dim]`` tensor on the agent's device."""
        if (
            type(obs) is np.ndarray
            and obs.dtype == np.float32
            and obs.shape[1:] == (self.obs_dim,)
            and obs.flags.c_contiguous
            and self.device.type == "cpu"
        ):  # the vector env's own batch (the usual case): a view, as as_tensor's, ~1.4 us sooner
            return torch.from_numpy(obs)
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(
            -1, self.obs_dim
        )

    def _check_finite(self, what: str, values: np.ndarray, where: str) -> None:
        values = np.asarray(values)
        # integers and booleans are always finite
        if values.dtype.kind not in "iub" and not np.isfinite(values).all():
            raise ValueError(
                f"{type(self).__name__}.{where}: non-finite {what} "
                f"({values.ravel()[~np.isfinite(values.ravel())][:3]}); "
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
        callback: Callback | Sequence[Callback] | None = None,
        reset_num_timesteps: bool = True,
    ) -> OffPolicyAgent:
        """Collect -> update -> log for ``total_timesteps`` env steps (all envs together, and
        under ``torchrun`` all ranks together).

        ``callback``: a callable ``callback(agent, info)`` or a list of them (e.g.
        :class:`~ebrl.agents.CheckpointCallback`, :class:`~ebrl.agents.EvalCallback`), called
        after every vector-env step; one returning ``False`` stops training. ``info`` holds the
        envs' ``infos`` and the ``episode_returns`` and ``episode_lengths`` (arrays) of the
        episodes that ended at this step.

        ``reset_num_timesteps`` (Stable-Baselines3's meaning): ``True`` counts from 0 and
        starts new episodes; ``False`` continues the step count and the episodes in flight, so
        ``learn(a)`` then ``learn(b, reset_num_timesteps=False)`` is ``learn(a + b)``, also
        across :meth:`save` and :meth:`load`.

        Ctrl-C (SIGINT) stops training after the step in progress, so that the agent is left in
        a consistent state (save it and continue later), then raises ``KeyboardInterrupt``.
        """
        name = type(self).__name__
        check_int(f"{name}.learn", "total_timesteps", total_timesteps)
        callbacks = _callbacks(callback, f"{name}.learn")
        if reset_num_timesteps:
            self.num_timesteps = 0
        if reset_num_timesteps or self._last_obs is None:
            self._start_episodes()
        cfg, per_collect = self.config, self.envs.num_envs * self.world_size
        self._join_ranks()
        main = self.rank == 0
        stats = _Stats()
        start, first, last_log = time.perf_counter(), self.num_timesteps, self.num_timesteps
        end = self.num_timesteps + total_timesteps
        purge = None if reset_num_timesteps else self.num_timesteps
        try:
            with (
                RunLogger(
                    self.tensorboard_log if main else None,
                    total_timesteps,
                    progress_bar and main,
                    name,
                    purge,
                ) as log,
                _DeferredInterrupt() as interrupt,
            ):
                self.logger = log
                while self.num_timesteps < end and not interrupt.requested:
                    info = self._collect(log, stats)
                    if (
                        self.num_timesteps >= cfg.learning_starts
                        and (self.num_timesteps // per_collect) % cfg.train_freq == 0
                    ):
                        batches = self.buffer.sample_batches(
                            cfg.gradient_steps, cfg.batch_size, self.generator
                        )
                        for batch in batches:
                            stats.add(self.update(batch))

                    if (
                        self.num_timesteps - last_log >= cfg.log_interval
                        or self.num_timesteps >= end
                    ):
                        self._write_logs(log, stats, (self.num_timesteps - first), start)
                        last_log = self.num_timesteps
                    stop = any([cb(self, info) is False for cb in callbacks])
                    if self.world_size > 1:  # all ranks stop together
                        stop, interrupted = distributed.any_rank([stop, interrupt.requested])
                        interrupt.requested = interrupted
                    if stop:
                        break
        finally:
            self.logger = None  # the run's logger exists only while learn() runs
        self.learn_wall_s = time.perf_counter() - start
        if interrupt.requested:
            raise KeyboardInterrupt(f"{name}.learn: interrupted at step {self.num_timesteps}")
        return self

    def _join_ranks(self) -> None:
        """Under ``torchrun``, once: copies rank 0's networks and temperature to every rank and
        makes every optimiser average its gradients over the ranks before each step; checks that
        the ranks are at the same step (e.g. resumed from the same checkpoint)."""
        if self.world_size == 1:
            return
        if not distributed.same_on_all_ranks(self.num_timesteps):
            raise ValueError(
                f"{type(self).__name__}.learn: the ranks are at different steps (this rank: "
                f"{self.num_timesteps}); resume every rank from the same checkpoint"
            )
        if self._ranks_joined:
            return
        modules = self.modules()
        if self.user_anchor is not None:
            modules = {**modules, "anchor": self.user_anchor}
        tensors = [t for m in modules.values() for t in m.state_dict().values()]
        distributed.broadcast_parameters([*tensors, self.log_temperature])
        self.sync_temperature()
        for optimizer in [*self.optimizers().values(), self.temperature_optimizer]:
            distributed.install_gradient_averaging(optimizer)
        self._ranks_joined = True

    def _start_episodes(self) -> None:
        """Resets every env: new episodes (seeded: see :mod:`ebrl.agents.episodes`)."""
        n = self.envs.num_envs
        # ebrl's envs seed each episode themselves; a user's vector env is seeded once.
        seed = None if self._replayable or self._reset_before else distributed.rank_seed(self.seed)
        self._last_obs = self.envs.reset(seed=seed)[0]
        self._reset_before = True
        self._episode_returns = np.zeros(n)
        self._episode_lengths = np.zeros(n, dtype=np.int64)
        self._recent_returns = []
        # Next-step autoreset: the step after an episode's end only resets that env (its
        # action is ignored and its reward is 0): not a transition.
        self._resetting = np.zeros(n, dtype=bool)

    def _collect(self, log: RunLogger, stats: _Stats) -> dict:
        """One vector-env step: act, step, store the transitions, count the episodes. Returns
        the callbacks' ``info``: the envs' ``infos``, and the return and length of each episode
        that ended at this step (``episode_returns``, ``episode_lengths``: arrays)."""
        cfg, obs = self.config, self._last_obs
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
        next_obs, rewards, terminated, truncated, infos = self.envs.step(env_actions)
        self._check_finite("reward", rewards, "learn")
        real_next = next_obs
        if "final_obs" in infos:  # same-step autoreset: the true last observation
            # asarray, then copy: np.array(copy=True) warns on a tensor (NumPy 2's copy keyword)
            real_next = np.asarray(next_obs).copy()
            for i in np.flatnonzero(infos["_final_obs"]):
                real_next[i] = infos["final_obs"][i]
        # The bookkeeping below runs at every env step (~40 us of CartPole's ~700): its usual
        # case (no env resetting, no episode ended) takes the short paths.
        resetting = self._next_step_autoreset and bool(self._resetting.any())
        if not resetting:
            self.buffer.add(obs, actions, rewards, real_next, terminated)
        else:  # next-step autoreset: drop the envs that only reset
            valid = ~self._resetting
            keep = torch.as_tensor(valid, device=actions.device)
            self.buffer.add(
                obs[valid], actions[keep], rewards[valid], real_next[valid], terminated[valid]
            )
        self._last_obs = next_obs
        self.num_timesteps += self.envs.num_envs * self.world_size  # all ranks together
        log.advance(self.envs.num_envs * self.world_size)
        # np.asarray: a vector env may return tensors (gymnasium's NumpyToTorch)
        ended = np.logical_or(np.asarray(terminated), np.asarray(truncated))
        if not resetting:
            self._episode_returns += np.asarray(rewards)
            self._episode_lengths += 1
        else:
            self._episode_returns += np.where(valid, rewards, 0.0)
            self._episode_lengths += valid
            ended &= valid
        if not ended.any():
            finished = {"episode_returns": np.zeros(0), "episode_lengths": np.zeros(0, np.int64)}
        else:
            finished = {
                "episode_returns": self._episode_returns[ended].copy(),
                "episode_lengths": self._episode_lengths[ended].copy(),
            }
            for i in np.flatnonzero(ended):
                self._recent_returns = [*self._recent_returns[-9:], float(self._episode_returns[i])]
                log.scalars(
                    self.num_timesteps,
                    {
                        "rollout/episode_return": self._episode_returns[i],
                        "rollout/episode_length": self._episode_lengths[i],
                    },
                )
                self._episode_returns[i], self._episode_lengths[i] = 0.0, 0
        if self._next_step_autoreset:
            self._resetting = ended
        return {"infos": infos, **finished}

    def _write_logs(self, log: RunLogger, stats: _Stats, steps: int, start: float) -> None:
        values = {f"train/{k}": v for k, v in stats.pop().items()}
        values["train/temperature"] = self.temperature
        values["time/env_steps_per_second"] = steps / max(time.perf_counter() - start, 1e-9)
        floats = log.scalars(self.num_timesteps, values)
        bad = sorted(k for k, v in floats.items() if not math.isfinite(v))
        if bad:  # checked here, where the values reach the host anyway: no sync per update
            raise ValueError(
                f"{type(self).__name__}.learn: non-finite {', '.join(bad)} at step "
                f"{self.num_timesteps}: training diverged; lower learning_rate, check the "
                "rewards' scale, or the temperature bounds"
            )
        recent = self._recent_returns
        postfix = {"return": float(np.mean(recent))} if recent else {}
        postfix["T"] = floats["train/temperature"]
        postfix["sps"] = floats["time/env_steps_per_second"]
        log.advance(0, postfix)
        if self.auto_temperature and not self._warned_pinned and self.rank == 0:
            lo, hi = self.config.temperature_bounds
            t = floats["train/temperature"]
            if self.num_timesteps > self.config.learning_starts and (
                t <= lo * (1 + 1e-4) or t >= hi * (1 - 1e-4)
            ):
                self._warned_pinned = True
                warnings.warn(
                    f"{type(self).__name__}: the temperature is pinned at its "
                    f"{'lower' if t <= lo * (1 + 1e-4) else 'upper'} bound {t:.3g} "
                    f"(temperature_bounds {self.config.temperature_bounds}) at step "
                    f"{self.num_timesteps}: the {'entropy' if self.entropy_mode else 'KL'} "
                    f"target {self.target} is out of reach; change the target or the bounds",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def evaluate(
        self, n_episodes: int = 10, deterministic: bool = True, seed: int | None = None
    ) -> dict:
        """Mean and std of the undiscounted return over ``n_episodes`` fresh episodes (episode
        ``i`` reset with ``seed + i``; default ``seed``: the agent's seed + 10000), on an env
        built as the training env was (:meth:`make_eval_env`); never on another env."""
        env, own = self.make_eval_env()
        try:
            return self.evaluate_on(env, n_episodes, deterministic, seed)
        finally:
            if own:
                env.close()

    def make_eval_env(self) -> tuple[gym.Env, bool]:
        """A fresh env built as the training env was (its gymnasium spec with kwargs and
        wrappers, the user's factory, or the ``eval_env`` given to the agent), and whether the
        caller should close it; a clear error where no such env can be built."""
        if self._make_eval_env is None:
            raise ValueError(
                f"{type(self).__name__}: cannot build an env like the training env: "
                f"{self._why_no_eval_env}; pass eval_env= (an env or a factory () -> Env) "
                "to the agent, or make the env with gym.make"
            )
        return self._make_eval_env()

    def evaluate_on(
        self,
        env: gym.Env,
        n_episodes: int = 10,
        deterministic: bool = True,
        seed: int | None = None,
    ) -> dict:
        """:meth:`evaluate` on a given ``env`` (e.g. one wrapped to record video). Evaluating
        never changes training: the agent's random stream is put back after."""
        if not isinstance(env, gym.Env):
            raise TypeError(
                f"{type(self).__name__}.evaluate_on: env must be a gymnasium Env, got "
                f"{type(env).__name__}"
            )
        seed = self.seed + 10_000 if seed is None else seed
        state = self.generator.get_state()
        try:
            return evaluate_policy(
                lambda o: self.predict(o, deterministic=deterministic)[0], env, n_episodes, seed
            )
        finally:
            self.generator.set_state(state)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self, replay_buffer: bool = True) -> dict:
        """The whole training state (:mod:`ebrl.agents.checkpoint`) as tensors and plain data;
        ``replay_buffer=False`` leaves out the buffer's contents (a smaller file for acting)."""
        return checkpoint.state_dict(self, replay_buffer)

    def save(self, path: str | Path, replay_buffer: bool = True) -> Path:
        """Writes :meth:`state_dict` atomically (a temporary file, then ``os.replace``):
        ``Agent.load(path).learn(n, reset_num_timesteps=False)`` then continues exactly."""
        return checkpoint.save_atomically(self.state_dict(replay_buffer), path)

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


# torch.compile's backend for ``config.compile``; tests set "aot_eager" (the same graphs, guards
# and autograd, without generating code)
COMPILE_BACKEND = "inductor"


def compile_hot_path(
    fn: Callable, device: torch.device, *, fullgraph: bool, fallback: bool = False
) -> Callable:
    """``torch.compile(fn)`` for an agent's acting step or loss: static shapes (an agent's batch
    sizes are fixed, so one graph each), and on CUDA ``mode="reduce-overhead"`` (CUDA graphs:
    one launch per step instead of one per op). ``fullgraph`` for the acting steps, which are
    pure tensor functions; the losses may break the graph (e.g. around a user anchor).

    A call that meets TorchDynamo's recompile limit (a ninth batch size for ``predict``, a
    ninth agent setting in one process) runs eagerly, with a warning the first time, and so do
    later calls with the same argument shapes; the graphs compiled before stay in use. With
    ``torch._dynamo.config.fail_on_recompile_limit_hit`` set the limit raises instead.

    A call that fails inside TorchDynamo otherwise is rerun eagerly: if the eager call raises
    too (a bad input), that error propagates and the compiled function stays. If it succeeds,
    with ``fallback`` (the agents' automatic ``compile=None``) the function runs eagerly from
    then on, with one warning (no working C compiler or Triton, say); without it
    (``compile=True``) Dynamo's error propagates. Parts of a loss that a user anchor
    splits into several graphs may have run before the failing one: their side effects then
    happen twice, once. A failure compiling the backward (lazily, at the first
    ``backward()``) is not caught.
    """
    options: dict = {"dynamic": False, "fullgraph": fullgraph, "backend": COMPILE_BACKEND}
    try:
        if not (device.type == "cuda" and COMPILE_BACKEND == "inductor"):
            compiled = torch.compile(fn, **options)
        else:
            graphs = torch.compile(fn, mode="reduce-overhead", **options)

            def compiled(*args, **kwargs):
                # A CUDA graph's outputs live in buffers its next replay overwrites, and the
                # agents keep metrics until the next log write: hand out copies (a few small
                # tensors per step).
                return tree_map_only(Tensor, torch.clone, graphs(*args, **kwargs))
    except RuntimeError as error:  # torch.compile itself refuses (e.g. an unsupported Python)
        if not fallback:
            raise
        _warn_eager(fn, error)
        return fn
    return _Guarded(fn, compiled, fallback)


def _is_recompile_limit(error: Exception) -> bool:
    """Whether ``error`` is TorchDynamo meeting a function's recompile limit: a plain Exception
    (``FailOnRecompileLimitHit``) for a fullgraph function in torch >= 2.6, an ``Unsupported``
    naming ``cache_size_limit`` before. Looked up here, not at import: importing
    ``torch._dynamo`` costs ~1 s."""
    exc = torch._dynamo.exc
    if isinstance(error, getattr(exc, "FailOnRecompileLimitHit", ())):
        return True
    message = str(error)
    return isinstance(error, exc.Unsupported) and (
        "cache_size_limit" in message or "recompile_limit" in message
    )


def _warn_eager(fn: Callable, error: Exception) -> None:
    # a backend's failure wraps the real cause (e.g. TritonMissing); name that one
    cause = getattr(error, "inner_exception", None) or error
    text = str(cause).strip()
    reason = f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__
    warnings.warn(
        f"torch.compile failed for {fn.__name__} ({reason}); running it eagerly. Pass "
        "compile=False to skip compiling, or compile=True to see the error.",
        RuntimeWarning,
        stacklevel=3,
    )


def _signature(args: tuple, kwargs: dict) -> tuple:
    """What TorchDynamo guards on in a hot path's arguments, roughly: tensors' shapes, dtypes
    and devices, and plain numbers and strings (modules are the agent's own, always the same;
    other objects count by type)."""

    def one(x):
        if isinstance(x, Tensor):
            return (tuple(x.shape), x.dtype, x.device)
        return x if isinstance(x, int | float | str | None) else type(x)

    return (*map(one, args), *((name, one(x)) for name, x in kwargs.items()))


class _Guarded:
    """A compiled hot path with the ways out to ``eager`` that :func:`compile_hot_path`
    describes. A ``try`` costs nothing in the hot path until something raises; argument
    signatures that met the recompile limit go straight to ``eager`` afterwards (retrying the
    compile would cost a failed compile per call)."""

    def __init__(self, eager: Callable, compiled: Callable, fallback: bool):
        self.eager, self.fn, self.fallback = eager, compiled, fallback
        self.eager_signatures: set[tuple] = set()

    def __call__(self, *args, **kwargs):
        if self.eager_signatures and _signature(args, kwargs) in self.eager_signatures:
            return self.eager(*args, **kwargs)
        try:
            return self.fn(*args, **kwargs)
        except Exception as error:
            dynamo = torch._dynamo
            if _is_recompile_limit(error) and not dynamo.config.fail_on_recompile_limit_hit:
                if not self.eager_signatures:
                    warnings.warn(
                        f"torch.compile's recompile limit reached for {self.eager.__name__} (a "
                        "new batch size or setting): calls with such arguments run eagerly",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                self.eager_signatures.add(_signature(args, kwargs))
                return self.eager(*args, **kwargs)
            if self.fn is self.eager or not isinstance(error, dynamo.exc.TorchDynamoException):
                raise
            try:  # a bad input fails inside Dynamo too: the eager call names it
                out = self.eager(*args, **kwargs)
            except Exception as eager_error:
                raise eager_error from None
            if not self.fallback:
                raise
            _warn_eager(self.eager, error)
            self.fn = self.eager
            return out


def _callbacks(callback, owner: str) -> list[Callback]:
    """``callback`` (None, one callback, or a list of them) as a list of callables. A callback
    is a callable ``callback(agent, info)``, or a Stable-Baselines3-style object (one with
    ``on_step()`` and ``_on_step()``, such as a ``BaseCallback`` subclass): its ``model`` is the
    agent, its ``locals`` the step's ``info``, and ``on_step()`` is called after every step."""
    if callback is None:
        return []
    items = list(callback) if isinstance(callback, list | tuple) else [callback]
    out = []
    for item in items:
        if hasattr(item, "on_step") and hasattr(item, "_on_step"):
            out.append(partial(_call_sb3_style, item))
        elif callable(item):
            out.append(item)
        else:
            raise TypeError(
                f"{owner}: callback must be a callable callback(agent, info), an object with "
                f"on_step() (as Stable-Baselines3's BaseCallback), or a list of them; got {item!r}"
            )
    return out


def _call_sb3_style(callback, agent: OffPolicyAgent, info: dict) -> bool | None:
    callback.model, callback.locals = agent, info
    return callback.on_step()


class _DeferredInterrupt:
    """Turns the first Ctrl-C (SIGINT) into a flag that the training loop reads after each
    step, so a run stops in a consistent state; a second Ctrl-C interrupts at once. A no-op
    outside the main thread (where Python cannot install signal handlers)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _eval_env_maker(eval_env: EnvLike, owner: str) -> Callable[[], tuple[gym.Env, bool]]:
    """``eval_env`` (an env, used as is, or a factory / id, built per evaluation) as a
    function returning ``(env, whether to close it after)``."""
    if isinstance(eval_env, gym.vector.VectorEnv):
        raise TypeError(f"{owner}: eval_env must be one env (or a factory), not a vector env")
    if isinstance(eval_env, gym.Env):
        return lambda: (eval_env, False)
    if isinstance(eval_env, str) or callable(eval_env):
        factory = partial(make_env, eval_env) if isinstance(eval_env, str) else eval_env
        return lambda: (factory(), True)
    raise TypeError(
        f"{owner}: eval_env must be a gymnasium Env, id or factory, got {type(eval_env).__name__}"
    )


def _closing(factory: Callable[[], gym.Env]) -> Callable[[], tuple[gym.Env, bool]]:
    return lambda: (factory(), True)
