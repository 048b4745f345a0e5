"""The one checkpoint format of every agent: the whole training state as tensors and plain data.

It holds the config, env id and spaces, named modules and optimisers, temperature, generator,
counters, the replay buffer's filled part, and the episodes in flight (each env's reset seed and
actions, replayed on load: :mod:`ebrl.agents.episodes`), so that ``load`` then
``learn(n, reset_num_timesteps=False)`` continues bit for bit. Written atomically (a temporary
file, then ``os.replace``) and read with ``weights_only=True``, so loading a file never runs code
from it; a file that is not an ebrl checkpoint, or is truncated or corrupt, gets one
``ValueError``."""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ebrl.agents.episodes import episodes_state, replayable, restore_episodes
from ebrl.agents.evaluation import env_from_recipe

if TYPE_CHECKING:
    from ebrl.agents.core import OffPolicyAgent

__all__ = ["CHECKPOINT_FORMAT", "load_agent", "read_checkpoint", "save_atomically", "state_dict"]

CHECKPOINT_FORMAT = "ebrl.agent/2"
# /1 (ebrl 0.1 before resume) had no buffer and no episodes: it still loads, and learns anew.
READABLE_FORMATS = ("ebrl.agent/1", CHECKPOINT_FORMAT)


def state_dict(agent: OffPolicyAgent, replay_buffer: bool = True) -> dict:
    """Everything :func:`load` needs, as tensors and plain data (``weights_only`` safe); without
    the buffer's contents when ``replay_buffer`` is False (then training after ``load`` starts
    from an empty buffer)."""
    modules = agent.modules()
    if agent.user_anchor is not None:
        modules = {**modules, "anchor": agent.user_anchor}
    anchor = agent.user_anchor
    return {
        "format": CHECKPOINT_FORMAT,
        "algo": type(agent).__name__,
        "config": asdict(agent.config),
        "env_id": agent.env_id,
        "env_spec": agent.env_recipe,
        "observation_shape": list(agent.observation_space.shape),
        "action_space": space_summary(agent.action_space),
        "auto_temperature": agent.auto_temperature,
        "seed": agent.seed,
        "num_envs": agent.envs.num_envs,
        "num_timesteps": agent.num_timesteps,
        "log_temperature": agent.log_temperature.detach().cpu(),
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in _optimizers(agent).items()},
        "generator": agent.generator.get_state(),
        "generator_device": agent.generator.device.type,
        "anchor": {
            "present": anchor is not None,
            "class": None if anchor is None else type(anchor).__name__,
            "spec": getattr(anchor, "spec", None),
        },
        "extra": agent.extra_state(),
        "buffer": agent.buffer.state_dict() if replay_buffer else None,
        "episodes": _episodes(agent),
    }


def _episodes(agent: OffPolicyAgent) -> dict | None:
    """Where the envs are: the last observation, each episode's running return and length, and
    (for ebrl's envs) what replays them; None before the first ``learn``."""
    if agent._last_obs is None:
        return None
    return {
        "obs": torch.from_numpy(np.array(agent._last_obs)),
        "returns": torch.from_numpy(agent._episode_returns.copy()),
        "lengths": torch.from_numpy(agent._episode_lengths.copy()),
        "resetting": torch.from_numpy(agent._resetting.copy()),
        "recent_returns": list(agent._recent_returns),
        "envs": episodes_state(agent.envs),
    }


def save_atomically(state: dict, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``: a reader sees
    the old file or the new one, never half of one. The file gets the usual permissions (those
    of any file this process creates, not the temporary file's 0600); temporary files left by
    a process killed while saving are removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        torch.save(state, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _remove_orphans(path)
    return path


def _remove_orphans(path: Path) -> None:
    """Deletes ``.NAME.PID.tmp`` files beside ``path`` whose process is gone (killed mid-save)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def read_checkpoint(path: str | Path, owner: str, algo: str | None = None) -> dict:
    """The checkpoint's state dict (``weights_only=True``), checked to be an ebrl agent's (and
    ``algo``'s, when given)."""
    from ebrl.agents.core import OffPolicyAgent

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{owner}: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle payloads, truncated or random files
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"{owner}: {path} is not a readable ebrl checkpoint ({type(err).__name__}: {first})"
        ) from err
    if (
        not isinstance(state, dict)
        or state.get("format") not in READABLE_FORMATS
        or state.get("algo") not in OffPolicyAgent.registry
    ):
        raise ValueError(f"{owner}: {path} is not an ebrl agent checkpoint")
    if algo is not None and state["algo"] != algo:
        raise ValueError(
            f"{owner}: {path} holds a {state['algo']} agent; use ebrl.{state['algo']}.load"
        )
    return state


def load(cls: type[OffPolicyAgent], path, env=None, anchor=None, device="auto", **kwargs):
    """See :meth:`OffPolicyAgent.load`."""
    owner = f"{cls.__name__}.load"
    state = read_checkpoint(path, owner, cls.__name__)
    saved = state["anchor"]
    if saved["present"] and anchor is None:
        anchor = _rebuild_anchor(saved["class"], saved["spec"])
        if anchor is None:
            raise ValueError(
                f"{owner}: this agent was trained with an anchor; pass anchor= "
                "(a module of the same architecture)"
            )
    if env is None:
        # the env as it was built (spec: kwargs and wrappers), else (format /1) its id
        recipe = state.get("env_spec")
        if recipe is not None:
            env = partial(env_from_recipe, recipe)
        else:
            env = state.get("env_id")
            # None with the key present: the spec was not JSON (wrappers holding functions);
            # no key: a checkpoint from before specs were recorded, rebuilt from its id
            if env is not None and "env_spec" in state:
                raise ValueError(
                    f"{owner}: the checkpoint does not record how to rebuild its env "
                    f"{env!r} (wrappers holding functions?); pass env="
                )
        kwargs.setdefault("num_envs", state.get("num_envs", 1))
    if env is None:
        raise ValueError(f"{owner}: the checkpoint has no env id; pass env=")
    try:
        config = cls.config_class.from_dict(state["config"])
        temperature = "auto" if state["auto_temperature"] else float(state["log_temperature"].exp())
        seed = state["seed"]
    except (KeyError, TypeError, AttributeError, RuntimeError) as err:
        raise ValueError(f"{owner}: {path} is a corrupt ebrl checkpoint ({err!r})") from err
    # The config is checked (above) before anything is built or allocated (below).
    agent = cls(
        env,
        anchor=anchor,
        temperature=temperature,
        seed=seed,
        device=device,
        config=config,
        **kwargs,
    )
    try:
        restore(agent, state)
    except (KeyError, TypeError, AttributeError, IndexError, RuntimeError) as err:
        raise ValueError(f"{owner}: {path} is a corrupt ebrl checkpoint ({err!r})") from err
    return agent


def restore(agent: OffPolicyAgent, state: dict) -> None:
    """Loads networks, optimisers, temperature, generator and counters from ``state`` into
    ``agent`` (whose spaces must match the checkpoint's)."""
    got = (list(agent.observation_space.shape), space_summary(agent.action_space))
    want = (state["observation_shape"], state["action_space"])
    if got != want:
        raise ValueError(
            f"{type(agent).__name__}.load: env spaces (obs shape, action space) {got} do not "
            f"match the checkpoint's {want} (a checkpoint from another env?)"
        )
    modules = agent.modules()
    if agent.user_anchor is not None:
        modules = {**modules, "anchor": agent.user_anchor}
    for key, module in modules.items():
        module.load_state_dict(state["modules"][key])
    for key, optimizer in _optimizers(agent).items():
        optimizer.load_state_dict(state["optimizers"][key])
    with torch.no_grad():
        agent.log_temperature.copy_(state["log_temperature"])
    agent.sync_temperature()
    # The same random stream as the saved agent where its generator is of the same kind; a
    # checkpoint moved between a CPU and a GPU continues with the loading agent's seeded stream.
    if _generator_kind(state) == agent.generator.device.type:
        agent.generator.set_state(state["generator"])
    agent.num_timesteps = int(state["num_timesteps"])
    agent.load_extra_state(state["extra"])
    if state.get("buffer") is not None:
        agent.buffer.load_state_dict(state["buffer"])
    if state.get("episodes") is not None:
        _restore_episodes(agent, state["episodes"])


# the size of a generator's state by kind, for checkpoints written before they named the kind
_GENERATOR_STATE_BYTES = {5056: "cpu", 16: "cuda"}


def _generator_kind(state: dict) -> str | None:
    """The device type of the checkpoint's generator (``"cpu"``, ``"cuda"``...); for a
    checkpoint that does not name it, the kind its state's size says, ``None`` if no known one
    (e.g. an MPS generator's): its stream is then not continued."""
    kind = state.get("generator_device")
    if kind is None:
        return _GENERATOR_STATE_BYTES.get(state["generator"].numel())
    if not isinstance(kind, str):
        raise TypeError(f"generator_device must be a device type, got {kind!r}")
    return kind


def _restore_episodes(agent: OffPolicyAgent, saved: dict) -> None:
    """Puts the envs back where they were (:func:`~ebrl.agents.episodes.restore_episodes`);
    a user's vector env, which ebrl cannot replay, starts new episodes instead (with a
    warning)."""
    if saved["envs"] is None or not replayable(agent.envs):
        warnings.warn(
            f"{type(agent).__name__}.load: the episodes in flight cannot be restored into "
            "these envs (a user's vector env, or an episode too long to record); learn() with "
            "reset_num_timesteps=False starts new episodes",
            RuntimeWarning,
            stacklevel=4,
        )
        return
    obs = saved["obs"].numpy()
    restore_episodes(agent.envs, saved["envs"], obs)
    agent._reset_before = True
    agent._last_obs = obs
    agent._episode_returns = saved["returns"].numpy().copy()
    agent._episode_lengths = saved["lengths"].numpy().copy()
    agent._resetting = saved["resetting"].numpy().copy()
    agent._recent_returns = list(saved["recent_returns"])


def _optimizers(agent: OffPolicyAgent) -> dict[str, torch.optim.Optimizer]:
    return {**agent.optimizers(), "temperature": agent.temperature_optimizer}


def load_agent(path: str | Path, **kwargs) -> OffPolicyAgent:
    """Loads a checkpoint of any ebrl agent (the class is read from the checkpoint); ``kwargs``
    go to its ``load`` (``env``, ``anchor``, ``device``)."""
    from ebrl.agents.core import OffPolicyAgent

    state = read_checkpoint(path, "load_agent")
    return OffPolicyAgent.registry[state["algo"]].load(path, **kwargs)


def _rebuild_anchor(class_name: str | None, spec: dict | None) -> nn.Module | None:
    """An untrained ebrl anchor of the saved architecture (its weights load after), or None."""
    from ebrl import policies

    cls = getattr(policies, class_name or "", None)
    if spec is None or not hasattr(cls, "from_spec"):
        return None
    return cls.from_spec(spec)


def space_summary(space: gym.Space) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    return {
        "type": type(space).__name__,
        "low": np.asarray(space.low).tolist(),
        "high": np.asarray(space.high).tolist(),
    }
