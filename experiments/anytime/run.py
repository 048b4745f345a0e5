"""Anytime acting: the same trained agents, evaluated with more or less sampler compute.

The policy is an energy, so its quality at acting time is a matter of how well it is sampled:
importance particles (from the actor mixed with the anchor) and MALA steps. Each trained agent
is evaluated, unchanged, with every budget in the grid:

- Pendulum-v1: mean return of stochastic episodes, for an agent trained only briefly
  (``--pendulum-steps``), whose actor is still a poor fit of its energy policy;
- ebrl/MultiGoal-v0: goal coverage (goals reached in >= 15% of episodes) and mean return, for
  the energy agent of ``experiments/multigoal`` (trained here if its checkpoint is missing).

Run: ``python experiments/anytime/run.py``; writes ``results.md`` and ``anytime.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from ebrl.agents import SAC, SACConfig, evaluate_policy
from ebrl.logging import write_report
from ebrl.samplers import MALA, Chain, ImportanceSampler

HERE = Path(__file__).resolve().parent
# The MultiGoal study's training and rollouts, so that both studies use the same agents.
_spec = importlib.util.spec_from_file_location(
    "multigoal_study", HERE.parent / "multigoal" / "run.py"
)
multigoal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(multigoal)

PARTICLES = [1, 4, 16, 64, 256]
MALA_STEPS = [0, 10]


def set_budget(agent: SAC, particles: int, mala_steps: int) -> None:
    sampler = ImportanceSampler(particles, bounds=(-1.0, 1.0))
    if mala_steps:
        mala = MALA(0.01, mala_steps, bounds=(-1.0, 1.0), warmup_steps=5)
        sampler = Chain(sampler, mala)
    agent.policy.sampler = sampler


def pendulum_agent(steps: int, seed: int) -> SAC:
    path = HERE / "runs" / f"pendulum_{seed}_{steps}.pt"
    if path.exists():
        return SAC.load(path)
    agent = SAC("Pendulum-v1", seed=seed, config=SACConfig(learning_rate=1e-3), device="cpu")
    agent.learn(steps, progress_bar=False)
    agent.save(path)
    return agent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pendulum-steps", type=int, default=4000)
    parser.add_argument("--multigoal-steps", type=int, default=10_000)
    parser.add_argument("--multigoal-initial-temperature", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pendulum-episodes", type=int, default=30)
    parser.add_argument("--multigoal-episodes", type=int, default=100)
    parser.add_argument("--multigoal-target-entropy", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    pend = pendulum_agent(args.pendulum_steps, args.seed)
    goal_agent = multigoal.train(
        "energy",
        args.seed,
        args.multigoal_steps,
        "auto",
        args.multigoal_initial_temperature,
        args.multigoal_target_entropy,
        "importance",
    )
    for mala_steps in MALA_STEPS:
        for particles in PARTICLES:
            set_budget(pend, particles, mala_steps)
            start = time.perf_counter()
            result = evaluate_policy(
                lambda o: pend.predict(o)[0], "Pendulum-v1", args.pendulum_episodes, seed=20_000
            )
            act_ms = (time.perf_counter() - start) / sum(result["lengths"]) * 1e3
            set_budget(goal_agent, particles, mala_steps)
            goals, _ = multigoal.rollouts(goal_agent, args.multigoal_episodes, seed=60_000)
            counts = [goals.count(g) for g in range(4)]
            covered = sum(c >= 0.15 * args.multigoal_episodes for c in counts)
            rows.append(
                (
                    particles,
                    mala_steps,
                    result["mean_return"],
                    result["std_return"],
                    act_ms,
                    counts,
                    goals.count(-1),
                    covered,
                )
            )
            print(rows[-1], flush=True)

    lines = [
        "# Anytime acting: evaluation quality against sampler budget",
        "",
        f"Command: `python experiments/anytime/run.py --pendulum-steps {args.pendulum_steps} "
        f"--multigoal-steps {args.multigoal_steps} --seed {args.seed}`. Agents trained once "
        f"(seed {args.seed}: Pendulum for {args.pendulum_steps} steps with the default sampler, "
        f"MultiGoal as in experiments/multigoal) and evaluated unchanged with each budget: "
        f"importance particles from the actor/anchor mixture, then MALA steps (step 0.01, 5 "
        f"warm-up steps). Stochastic episodes: Pendulum {args.pendulum_episodes} (reset seeds "
        f"20000+i), MultiGoal {args.multigoal_episodes} (reset seeds 60000+i). Machine: "
        f"{platform.machine()}, {args.threads} torch thread(s), CPU, torch {torch.__version__}.",
        "",
        "| particles | MALA steps | Pendulum return (mean ± sd) | acting ms/step (Pendulum) | "
        "MultiGoal goals reached [(5,0), (-5,0), (0,5), (0,-5)] | none | goals >= 15% |",
        "|---|---|---|---|---|---|---|",
    ]
    for p, m, mean, std, ms, counts, none, covered in rows:
        lines.append(
            f"| {p} | {m} | {mean:.1f} ± {std:.1f} | {ms:.2f} | {counts} | {none} | {covered}/4 |"
        )
    write_report(HERE / "results.md", lines)
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m in MALA_STEPS:
        sel = [r for r in rows if r[1] == m]
        n = args.pendulum_episodes
        se = [r[3] / n**0.5 for r in sel]
        axes[0].errorbar(
            [r[0] for r in sel],
            [r[2] for r in sel],
            yerr=se,
            marker="o",
            capsize=3,
            label=f"{m} MALA steps",
        )
        least = [100 * min(r[5]) / args.multigoal_episodes for r in sel]
        axes[1].plot([r[0] for r in sel], least, marker="o", label=f"{m} MALA steps")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("importance particles per state")
        ax.legend()
    axes[0].set_ylabel("Pendulum return (stochastic), mean ± s.e.")
    axes[0].set_title(f"Pendulum-v1, agent after {args.pendulum_steps} steps")
    axes[1].set_ylabel("least-reached goal, % of episodes")
    axes[1].axhline(15, color="gray", ls="--", lw=0.8)
    axes[1].axhline(25, color="gray", ls=":", lw=0.8)
    axes[1].set_title("ebrl/MultiGoal-v0, energy agent")
    fig.tight_layout()
    fig.savefig(HERE / "anytime.png", dpi=100)


if __name__ == "__main__":
    gym.logger.min_level = 40
    np.set_printoptions(precision=3)
    main()
