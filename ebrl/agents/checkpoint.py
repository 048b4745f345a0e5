"""The one checkpoint format of every agent: config, env id and spaces, named modules, named
optimisers, temperature, generator and counters, as tensors and plain data. Written atomically
(a temporary file, then ``os.replace``) and read with ``weights_only=True``, so loading a file
never runs code from it."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ebrl.agents.core import OffPolicyAgent

__all__ = ["CHECKPOINT_FORMAT", "load_agent", "read_checkpoint", "save_atomically", "state_dict"]

CHECKPOINT_FORMAT = "ebrl.agent/1"


def state_dict(agent: OffPolicyAgent) -> dict:
    """Everything :func:`load` needs, as tensors and plain data (``weights_only`` safe)."""
    modules = agent.modules()
    if agent.user_anchor is not None:
        modules = {**modules, "anchor": agent.user_anchor}
    anchor = agent.user_anchor
    return {
        "format": CHECKPOINT_FORMAT,
        "algo": type(agent).__name__,
        "config": asdict(agent.config),
        "env_id": agent.env_id,
        "observation_shape": list(agent.observation_space.shape),
        "action_space": space_summary(agent.action_space),
        "auto_temperature": agent.auto_temperature,
        "seed": agent.seed,
        "num_timesteps": agent.num_timesteps,
        "log_temperature": agent.log_temperature.detach().cpu(),
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in _optimizers(agent).items()},
        "generator": agent.generator.get_state(),
        "anchor": {
            "present": anchor is not None,
            "class": None if anchor is None else type(anchor).__name__,
            "spec": getattr(anchor, "spec", None),
        },
        "extra": agent.extra_state(),
    }


def save_atomically(state: dict, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``: a reader sees
    the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
        or state.get("format") != CHECKPOINT_FORMAT
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
    env = state["env_id"] if env is None else env
    if env is None:
        raise ValueError(f"{owner}: the checkpoint has no env id; pass env=")
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
    restore(agent, state)
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
    if agent.generator.device.type == "cpu":  # the same random stream as the saved agent
        agent.generator.set_state(state["generator"])
    agent.num_timesteps = int(state["num_timesteps"])
    agent.load_extra_state(state["extra"])


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
