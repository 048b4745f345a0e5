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

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from ebrl.agents.buffer import ReplayBuffer, Transitions
from ebrl.agents.evaluation import evaluate_policy, make_vector_env
from ebrl.logging import RunLogger

__all__ = ["OffPolicyAgent", "OffPolicyConfig", "frozen", "polyak_update"]

CHECKPOINT_FORMAT = "ebrl.agent/1"


@dataclass(frozen=True)
class OffPolicyConfig:
    """What every off-policy agent shares (field docs become ``ebrl train --help``)."""

    learning_rate: float = 3e-4
    """Adam learning rate of every network and of the temperature."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity (transitions)."""
    learning_starts: int = 100
    """Env steps (all envs together) of anchor-sampled actions before the first update."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 1
    """Vector-env steps between updates."""
    gradient_steps: int = 1
    """Gradient steps per update."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden widths of the networks."""
    initial_temperature: float = 1.0
    """Starting temperature T (the entropy / KL coefficient alpha)."""
    temperature_bounds: tuple[float, float] = (1e-4, 1e3)
    """The automatic temperature is clamped to this range so it cannot run away."""
    target_entropy: float | None = None
    """Entropy target of the automatic temperature without an anchor (default per agent)."""
    target_kl: float | None = None
    """KL-to-anchor target of the automatic temperature with an anchor (default per agent)."""
    log_interval: int = 1000
    """Env steps between TensorBoard writes."""

    # (name, kind) for __post_init__: "int>=1", "int>=0", "float>0", "[0,1]"
    _checks: ClassVar[tuple[tuple[str, str], ...]] = (
        ("learning_rate", "float>0"),
        ("buffer_size", "int>=1"),
        ("learning_starts", "int>=0"),
        ("batch_size", "int>=1"),
        ("gamma", "[0,1]"),
        ("train_freq", "int>=1"),
        ("gradient_steps", "int>=1"),
        ("initial_temperature", "float>0"),
        ("log_interval", "int>=1"),
    )

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name, kind in self._checks:
            value = getattr(self, name)
            if kind.startswith("int"):
                minimum = int(kind[-1])
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                    raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
            elif kind == "float>0" and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{owner}: {name} must be finite and > 0, got {value!r}")
            elif kind == "[0,1]" and not 0.0 <= value <= 1.0:
                raise ValueError(f"{owner}: {name} must be in [0, 1], got {value!r}")
        for name in ("target_entropy", "target_kl"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{owner}: {name} must be None or a finite number, got {value!r}")
        if self.target_kl is not None and self.target_kl < 0:
            raise ValueError(f"{owner}: target_kl must be >= 0, got {self.target_kl!r}")
        lo, hi = self.temperature_bounds
        if not 0 < lo <= self.initial_temperature <= hi < math.inf:
            raise ValueError(
                f"{owner}: need 0 < temperature_bounds[0] <= initial_temperature <= "
                f"temperature_bounds[1] < inf, got {self.temperature_bounds}, "
                f"{self.initial_temperature}"
            )
        if not self.hidden_sizes or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden_sizes
        ):
            raise ValueError(
                f"{owner}: hidden_sizes must be positive ints, got {self.hidden_sizes!r}"
            )

    @classmethod
    def from_dict(cls, values: dict) -> OffPolicyConfig:
        """The config from :func:`dataclasses.asdict` output (lists back to tuples)."""
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@torch.no_grad()
def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source``, in place (one fused op per tensor list)."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` take no gradient inside the block (the graph built there does
    not reach them), and get their ``requires_grad`` back after it: a loss computed inside puts
    gradients only on its owner's parameters."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@dataclass
class _Stats:
    """Running means of tensors between two log writes (no host sync until written)."""

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


def _check_int(owner: str, name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class OffPolicyAgent:
    """The shared part of every off-policy agent (see the module docstring).

    Subclasses set ``config_class`` and implement ``_check_action_space``, ``act``, ``explore``,
    ``update``, ``modules``, ``optimizers`` and ``to_env``; they may add to ``extra_state``.
    """

    config_class: ClassVar[type[OffPolicyConfig]] = OffPolicyConfig
    action_dtype: ClassVar[torch.dtype] = torch.float32

    def __init__(
        self,
        env: str | gym.Env | gym.vector.VectorEnv,
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
        """Plain data the checkpoint needs besides modules and optimisers: whether the agent
        has an anchor, and how to rebuild it (its class and ``spec``, where it has one)."""
        anchor = getattr(self, "user_anchor", None)
        return {
            "has_anchor": anchor is not None,
            "anchor_class": None if anchor is None else type(anchor).__name__,
            "anchor_spec": getattr(anchor, "spec", None),
        }

    # ------------------------------------------------------------------ shared

    @property
    def temperature(self) -> Tensor:
        """``T`` (0-d, detached): the agent's current temperature."""
        return self.log_temperature.detach().exp()

    def clamp_temperature(self) -> None:
        with torch.no_grad():
            lo, hi = self.config.temperature_bounds
            self.log_temperature.clamp_(math.log(lo), math.log(hi))

    def obs_tensor(self, obs: np.ndarray) -> Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(
            -1, self.obs_dim
        )

    def _check_finite(self, what: str, values: np.ndarray, where: str) -> None:
        if not np.isfinite(values).all():
            raise ValueError(
                f"{type(self).__name__}.{where}: non-finite {what} "
                f"({np.asarray(values).ravel()[~np.isfinite(np.asarray(values).ravel())][:3]}); "
                "check the env or its wrappers"
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
        _check_int(f"{name}.learn", "total_timesteps", total_timesteps)
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
                next_obs, rewards, terminated, _, infos = self.envs.step(self.to_env(actions))
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
        """Everything :meth:`load` needs, as tensors and plain data (``weights_only`` safe)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "algo": type(self).__name__,
            "config": asdict(self.config),
            "env_id": self.env_id,
            "observation_shape": list(self.observation_space.shape),
            "action_space": _space_summary(self.action_space),
            "auto_temperature": self.auto_temperature,
            "seed": self.seed,
            "num_timesteps": self.num_timesteps,
            "log_temperature": self.log_temperature.detach().cpu(),
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "generator": self.generator.get_state(),
            "extra": self.extra_state(),
        }

    def save(self, path: str | Path) -> Path:
        """Writes :meth:`state_dict` atomically (a temporary file, then ``os.replace``)."""
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
    def read_checkpoint(cls, path: str | Path) -> dict:
        """The checkpoint's state dict (``weights_only=True``), checked to be this agent's."""
        name = cls.__name__
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{name}.load: no checkpoint at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle payloads, truncated or random files
            raise ValueError(
                f"{name}.load: {path} is not a readable ebrl checkpoint "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from err
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{name}.load: {path} is not an ebrl agent checkpoint")
        if state.get("algo") != name:
            raise ValueError(
                f"{name}.load: {path} holds a {state.get('algo')} agent; use "
                f"ebrl.{state.get('algo')}.load"
            )
        return state

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
        name = cls.__name__
        state = cls.read_checkpoint(path)
        extra = state["extra"]
        if extra["has_anchor"] and anchor is None:
            anchor = _rebuild_anchor(extra["anchor_class"], extra["anchor_spec"])
            if anchor is None:
                raise ValueError(
                    f"{name}.load: this agent was trained with an anchor; pass anchor= "
                    "(a module of the same architecture)"
                )
        env = state["env_id"] if env is None else env
        if env is None:
            raise ValueError(f"{name}.load: the checkpoint has no env id; pass env=")
        config = cls.config_class.from_dict(state["config"])
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
        agent.load_state_dict(state)
        return agent

    def load_state_dict(self, state: dict) -> None:
        """Restores networks, optimisers, temperature, generator and counters from ``state``
        (the spaces must match this agent's)."""
        name = type(self).__name__
        got = (list(self.observation_space.shape), _space_summary(self.action_space))
        want = (state["observation_shape"], state["action_space"])
        if got != want:
            raise ValueError(
                f"{name}.load: env spaces (obs shape, action space) {got} do not match the "
                f"checkpoint's {want} (a checkpoint from another env?)"
            )
        for key, module in self.modules().items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][key])
        with torch.no_grad():
            self.log_temperature.copy_(state["log_temperature"])
        if self.generator.device.type == "cpu":  # the same random stream as the saved agent
            self.generator.set_state(state["generator"])
        self.num_timesteps = int(state["num_timesteps"])


def _rebuild_anchor(class_name: str | None, spec: dict | None) -> nn.Module | None:
    """An untrained ebrl anchor of the saved architecture (its weights load after), or None."""
    from ebrl import policies

    cls = getattr(policies, class_name or "", None)
    if spec is None or not hasattr(cls, "from_spec"):
        return None
    return cls.from_spec(spec)


def _space_summary(space: gym.Space) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    return {
        "type": type(space).__name__,
        "low": np.asarray(space.low).tolist(),
        "high": np.asarray(space.high).tolist(),
    }
