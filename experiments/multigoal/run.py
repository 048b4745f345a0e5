"""MultiGoal (Haarnoja et al. 2017, Fig. 3): does the energy policy reach every goal where plain
SAC commits to fewer?

Trains two agents with the same budget and seed on ``ebrl/MultiGoal-v0``: the energy policy
(importance sampling from the actor mixed with the uniform anchor, then MALA; its critic backs up
the soft value of that energy policy, ``T log E_q[exp(Q/T) / q]``, as soft Q-learning does) and
the same agent in its plain-SAC configuration (actions and value from the actor alone). Each
is evaluated on 100 stochastic episodes (max-entropy policies are evaluated by sampling them);
the table counts the goal each episode reached.
Writes ``results.md``, ``trajectories.png`` and the checkpoints used by
``experiments/anytime`` (``runs/``, not committed).

Both agents use the automatic temperature started at ``--initial-temperature`` (20): a hot
start keeps early exploration wide enough for the critic to learn all four goals before the
temperature tuner cools the policy toward its entropy target (started at T = 1, both agents
commit to the first goal they find).

Run: ``python experiments/multigoal/run.py [--steps 10000 --seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from ebrl.agents import SAC, SACConfig
from ebrl.envs import GOALS
from ebrl.logging import write_report

HERE = Path(__file__).resolve().parent
ENV = "ebrl/MultiGoal-v0"
# One config for both agents; the energy policy differs only in how it acts.
COMMON = {"learning_starts": 1000, "learning_rate": 3e-4, "hidden_sizes": (128, 128)}
ENERGY = {"n_particles": 64, "anchor_mix": 0.5, "mala_steps": 5, "mala_step_size": 0.01}
# ``--energy-value importance``: the energy agent also backs up the soft value of its energy
# policy, T log E_q[exp(Q/T) / q], as soft Q-learning does (plain SAC backs up its actor's).
IMPORTANCE_VALUE = {"value_target": "importance", "target_particles": 32}


def rollouts(agent: SAC, episodes: int, seed: int) -> tuple[list[int], list[np.ndarray]]:
    """Stochastic episodes: the goal index each reached (-1: none) and the paths."""
    env = gym.make(ENV)
    goals, paths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        path, done, info = [obs], False, {"goal": -1}
        while not done:
            obs, _, terminated, truncated, info = env.step(agent.predict(obs)[0])
            path.append(obs)
            done = terminated or truncated
        goals.append(info["goal"] if terminated else -1)
        paths.append(np.array(path))
    env.close()
    return goals, paths


def train(
    kind: str,
    seed: int,
    steps: int,
    temperature: str | float = "auto",
    initial_temperature: float = 1.0,
    target_entropy: float | None = None,
    energy_value: str = "samples",
    utility: str = "min",
) -> SAC:
    name = f"{kind}_{seed}_{steps}_T{temperature}_T0{initial_temperature}_H{target_entropy}"
    name += f"_V{energy_value}" if kind == "energy" else ""
    name += f"_U{utility}.pt" if kind == "energy" and utility != "min" else ".pt"
    path = HERE / "runs" / name
    common = {
        **COMMON,
        "initial_temperature": initial_temperature,
        "target_entropy": target_entropy,
    }
    energy = {
        **ENERGY,
        **(IMPORTANCE_VALUE if energy_value == "importance" else {}),
        "utility": utility,
    }
    config = SACConfig.plain(**common) if kind == "plain" else SACConfig(**common, **energy)
    if path.exists():
        return SAC.load(path)
    agent = SAC(ENV, temperature=temperature, seed=seed, config=config, device="cpu")
    start = time.perf_counter()
    agent.learn(steps, progress_bar=False)
    print(
        json.dumps({"kind": kind, "seed": seed, "train_s": round(time.perf_counter() - start)}),
        flush=True,
    )
    agent.save(path)
    return agent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--temperature", default="auto", help="'auto' or a fixed T for both")
    parser.add_argument("--kinds", nargs="+", default=["energy", "plain"])
    parser.add_argument(
        "--initial-temperature",
        type=float,
        default=20.0,
        help="starting T of the automatic temperature",
    )
    parser.add_argument(
        "--energy-value",
        choices=["samples", "importance"],
        default="importance",
        help="the energy agent's soft value target",
    )
    parser.add_argument(
        "--target-entropy",
        type=float,
        default=0.5,
        help="entropy target of the automatic temperature, both agents (SAC's usual -dim(A) = -2 "
        "lets the energy policy concentrate on the goals its critic favours: see results.md); "
        "pass nan for -dim(A)",
    )
    parser.add_argument(
        "--utility",
        choices=["min", "mean"],
        default="min",
        help="the energy agent's utility: min or mean of its critics",
    )
    args = parser.parse_args()
    if args.target_entropy is not None and math.isnan(args.target_entropy):
        args.target_entropy = None
    if args.temperature != "auto":
        args.temperature = float(args.temperature)
    torch.set_num_threads(args.threads)
    counts: dict[str, list[list[int]]] = {kind: [] for kind in args.kinds}
    example_paths: dict[str, list[np.ndarray]] = {}
    for seed in args.seeds:
        for kind in counts:
            agent = train(
                kind,
                seed,
                args.steps,
                args.temperature,
                args.initial_temperature,
                args.target_entropy,
                args.energy_value,
                args.utility,
            )
            goals, paths = rollouts(agent, args.episodes, seed=50_000)
            counts[kind].append([goals.count(g) for g in range(4)] + [goals.count(-1)])
            if seed == args.seeds[0]:
                example_paths[kind] = paths

    lines = [
        "# MultiGoal: goal coverage of the energy policy vs plain SAC",
        "",
        f"Command: `python experiments/multigoal/run.py --steps {args.steps} --seeds "
        f"{' '.join(map(str, args.seeds))}`. {args.episodes} stochastic evaluation episodes per "
        f"agent (reset seeds 50000+i). Shared config {COMMON}; energy policy {ENERGY}, value "
        f"target {args.energy_value}, utility {args.utility}; both agents: automatic temperature "
        f"from {args.initial_temperature}, target entropy {args.target_entropy}; plain SAC "
        f"acts with its actor's samples. Machine: {platform.machine()}, {args.threads} torch "
        f"thread(s), CPU, torch {torch.__version__}.",
        "",
        "| agent | seed | goal (5,0) | goal (-5,0) | goal (0,5) | goal (0,-5) | none | "
        "goals >= 15% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, per_seed in counts.items():
        for seed, c in zip(args.seeds, per_seed, strict=True):
            ok = sum(x >= 0.15 * args.episodes for x in c[:4])
            lines.append(f"| {kind} | {seed} | " + " | ".join(map(str, c)) + f" | {ok}/4 |")
    lines += ["", "![trajectories](trajectories.png)"]
    write_report(HERE / "results.md", lines)
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    grid = np.stack(np.meshgrid(np.linspace(-7, 7, 200), np.linspace(-7, 7, 200)), -1)
    cost = np.min(((grid[..., None, :] - GOALS) ** 2).sum(-1), -1)
    for ax, kind in zip(axes, args.kinds, strict=False):
        ax.contourf(grid[..., 0], grid[..., 1], -cost, levels=20, cmap="Greys_r", alpha=0.5)
        for p in example_paths[kind]:
            ax.plot(p[:, 0], p[:, 1], lw=0.8, alpha=0.7)
        ax.scatter(GOALS[:, 0], GOALS[:, 1], c="red", marker="*", s=150, zorder=3)
        c = counts[kind][0]
        ax.set_title(f"{kind} policy, seed {args.seeds[0]}: goals {c[:4]}, none {c[4]}")
        ax.set_aspect("equal")
        ax.set_xlim(-7, 7)
        ax.set_ylim(-7, 7)
    fig.suptitle(
        f"MultiGoal: {args.episodes} stochastic episodes per agent after {args.steps} steps"
    )
    fig.tight_layout()
    fig.savefig(HERE / "trajectories.png", dpi=100)


if __name__ == "__main__":
    main()
