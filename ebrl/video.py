"""Videos of an agent's evaluation episodes.

The episodes are those of :meth:`~ebrl.agents.OffPolicyAgent.evaluate` (same env, same seeds,
same actions), played on a copy of the evaluation env built from its gymnasium spec with
``render_mode="rgb_array"`` and recorded by gymnasium's ``RecordVideo``: one MP4 per episode.
Recording needs moviepy (and pygame for the classic-control and Box2D envs), the ``video``
extra: ``pip install 'ebrl[video]'``.

Example:
    >>> from ebrl.agents import load_agent                               # doctest: +SKIP
    >>> agent = load_agent("runs/Pendulum-v1_sac_0/model.pt")            # doctest: +SKIP
    >>> record_video(agent, "videos", n_episodes=2)["videos"]            # doctest: +SKIP
    [PosixPath('videos/sac-Pendulum-v1-episode-0.mp4'), PosixPath('videos/sac-...-1.mp4')]
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordVideo

__all__ = ["record_video", "require_video_dependency"]

INSTALL_HINT = "install with: pip install 'ebrl[video]'"


def require_video_dependency() -> None:
    """Raises ``ImportError`` (one line, with the install command) where moviepy, which
    gymnasium's ``RecordVideo`` writes videos with, is not installed."""
    if importlib.util.find_spec("moviepy") is None:
        raise ImportError(f"recording videos needs moviepy, which is not installed; {INSTALL_HINT}")


def record_video(
    agent,
    directory: str | Path,
    n_episodes: int = 1,
    *,
    deterministic: bool = True,
    seed: int | None = None,
    name_prefix: str | None = None,
) -> dict:
    """Evaluates ``agent`` as :meth:`~ebrl.agents.OffPolicyAgent.evaluate` does and records
    each episode to ``directory/NAME_PREFIX-episode-I.mp4``.

    Args:
        agent: an ebrl agent (``SAC``, ``SoftQ``, e.g. from :func:`~ebrl.agents.load_agent`).
        directory: where the videos go (created; videos of the same name are overwritten).
        n_episodes: episodes to play and record, each one video.
        deterministic: act with the policy's mode (else sample actions).
        seed: episode ``i`` is reset with ``seed + i``; default the agent's seed + 10000, as
            ``evaluate``, so the returns are those ``evaluate`` reports.
        name_prefix: start of the file names; default ``ALGO-ENV`` (e.g. ``sac-Pendulum-v1``).

    Returns:
        ``evaluate``'s dict (``mean_return``, ``std_return``, ``returns``, ``lengths``) and
        ``videos``: the paths of the MP4 files, one per episode, in order.

    Raises:
        ImportError: moviepy is missing, or the env needs a renderer that is (pygame).
        ValueError: bad arguments, or an env that cannot render RGB frames.
    """
    name = "record_video"
    if not callable(getattr(agent, "evaluate_on", None)):
        raise TypeError(f"{name}: agent must be an ebrl agent (SAC, SoftQ), got {agent!r}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int | np.integer):
        raise ValueError(f"{name}: n_episodes must be an int >= 1, got {n_episodes!r}")
    if n_episodes < 1:
        raise ValueError(f"{name}: n_episodes must be an int >= 1, got {n_episodes!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ValueError(f"{name}: seed must be an int or None, got {seed!r}")
    if not isinstance(directory, str | Path) or str(directory) == "":
        raise ValueError(f"{name}: directory must be a path, got {directory!r}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{name}: {directory} exists and is not a directory")
    require_video_dependency()
    prefix = name_prefix or f"{type(agent).__name__.lower()}-{agent.env_id or 'env'}"
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix)  # env ids may hold '/' (ebrl/MultiGoal-v0)
    seed = agent.seed + 10_000 if seed is None else int(seed)

    env = _rendering_env(agent)
    with warnings.catch_warnings():
        # gymnasium warns whenever the folder exists, whether or not a video is overwritten
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
        recorder = RecordVideo(
            env,
            video_folder=str(directory),
            episode_trigger=lambda episode: True,
            name_prefix=prefix,
            disable_logger=True,
        )
    try:  # evaluate_on puts the agent's random stream back: recording never changes training
        result = agent.evaluate_on(recorder, int(n_episodes), deterministic, seed)
    except gym.error.DependencyNotInstalled as err:  # e.g. pygame for classic control
        raise ImportError(f"{name}: {agent.env_id} cannot render frames: {err}") from err
    finally:
        recorder.close()  # writes the last episode's video
    videos = [directory / f"{prefix}-episode-{i}.mp4" for i in range(n_episodes)]
    missing = [str(path) for path in videos if not path.is_file()]
    if missing:
        raise ValueError(f"{name}: no video was written for {missing} (did the env render?)")
    return {**result, "videos": videos}


def _rendering_env(agent) -> gym.Env:
    """The agent's evaluation env rebuilt from its gymnasium spec with
    ``render_mode="rgb_array"`` (kwargs and wrappers as in the spec)."""
    name = "record_video"
    env, own = agent.make_eval_env()
    spec, modes = env.spec, list(env.metadata.get("render_modes", []))
    if own:
        env.close()
    if spec is None:
        raise ValueError(
            f"{name}: the evaluation env has no gymnasium spec (not made by gym.make), so it "
            "cannot be rebuilt with render_mode='rgb_array'"
        )
    if "rgb_array" not in modes:
        raise ValueError(f"{name}: {spec.id} cannot render RGB frames (its render modes: {modes})")
    try:
        return gym.make(spec, render_mode="rgb_array")
    except (gym.error.Error, TypeError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"{name}: cannot build {spec.id} with render_mode='rgb_array': {first}"
        ) from err
