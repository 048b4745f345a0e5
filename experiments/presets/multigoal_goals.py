"""Goal coverage of a trained ``ebrl/MultiGoal-v0`` agent: which goal each of N stochastic
episodes reaches, counted as in ``experiments/multigoal/run.py`` (the goal of a terminated
episode; -1: truncated after 30 steps without reaching one; reset seeds 50000 + i).

The issue's bar: every goal reached in >= 15% of 100 stochastic episodes.

Run: ``python experiments/presets/multigoal_goals.py RUN_DIR/model.pt [--episodes 100]``.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import torch

import ebrl.envs  # noqa: F401  (registers ebrl/MultiGoal-v0)
from ebrl.agents import load_agent
from ebrl.envs import GOALS

ENV = "ebrl/MultiGoal-v0"
RESET_SEED = 50_000  # as experiments/multigoal/run.py
BAR = 0.15


def goal_counts(agent, episodes: int) -> list[int]:
    """Episodes per goal (in the order of ``GOALS``), then episodes that reached none."""
    env = gym.make(ENV)
    reached = []
    for i in range(episodes):
        obs, _ = env.reset(seed=RESET_SEED + i)
        while True:
            obs, _, terminated, truncated, info = env.step(agent.predict(obs)[0])
            if terminated or truncated:
                break
        reached.append(info["goal"] if terminated else -1)
    env.close()
    return [reached.count(g) for g in range(len(GOALS))] + [reached.count(-1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="model.pt of an ebrl train run")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # env= because the checkpoint cannot record how to rebuild ebrl/MultiGoal-v0: it is
    # registered with a class, not a "module:Class" string, as its entry point, and gymnasium's
    # EnvSpec.to_json refuses callables (without env=, load_agent raises "does not record how
    # to rebuild its env").
    agent = load_agent(args.checkpoint, env=ENV, device="cpu")
    counts = goal_counts(agent, args.episodes)
    per_goal = dict(zip([str(tuple(int(x) for x in g)) for g in GOALS], counts, strict=False))
    met = sum(c >= BAR * args.episodes for c in counts[: len(GOALS)])
    print(
        json.dumps(
            {
                "checkpoint": str(args.checkpoint),
                "episodes": args.episodes,
                "goals": per_goal,
                "none": counts[-1],
                "goals_at_least_15pct": f"{met}/{len(GOALS)}",
                "bar_met": met == len(GOALS),
            }
        )
    )


if __name__ == "__main__":
    main()
