"""SAC training speed: env steps per second of ebrl (default energy policy and plain-SAC
configuration) against Stable-Baselines3's SAC, same hyperparameters, same machine.

Each repeat trains every agent for ``--steps`` env steps on Pendulum-v1 (RL-Zoo settings: lr
1e-3, batch 256, 256-256 networks, one gradient step per env step, learning_starts 100),
interleaved, and times ``learn``; the table reports medians over repeats and the ratio to SB3.

Run: ``python scripts/bench_sac.py`` (needs ``stable-baselines3``, the ``bench`` extra).
Writes ``scripts/results/bench_sac.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from ebrl.agents import SAC, SACConfig
from ebrl.logging import write_report

ENV = "Pendulum-v1"


def ebrl_run(steps: int, seed: int, plain: bool) -> float:
    config = SACConfig.plain(learning_rate=1e-3) if plain else SACConfig(learning_rate=1e-3)
    agent = SAC(ENV, seed=seed, config=config, device="cpu")
    start = time.perf_counter()
    agent.learn(steps, progress_bar=False)
    return steps / (time.perf_counter() - start)


def sb3_run(steps: int, seed: int) -> float:
    from stable_baselines3 import SAC as SB3SAC

    model = SB3SAC("MlpPolicy", ENV, learning_rate=1e-3, seed=seed, device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("scripts/results/bench_sac.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = {
        "ebrl SAC, default energy policy (16 particles, anchor mix 0.1)": lambda s: ebrl_run(
            args.steps, s, plain=False
        ),
        "ebrl SAC, plain-SAC configuration": lambda s: ebrl_run(args.steps, s, plain=True),
        "stable-baselines3 SAC": lambda s: sb3_run(args.steps, s),
    }
    speeds: dict[str, list[float]] = {k: [] for k in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            speeds[name].append(run(repeat))
            print(f"{name}: {speeds[name][-1]:.1f} steps/s", flush=True)
    sb3 = statistics.median(speeds["stable-baselines3 SAC"])
    lines = [
        "# SAC training speed on Pendulum-v1",
        "",
        f"Command: `python scripts/bench_sac.py --steps {args.steps} --repeats {args.repeats} "
        f"--threads {args.threads}`; env steps per second of `learn({args.steps})` (updates "
        f"from step 100), median of {args.repeats} interleaved repeats. Machine: "
        f"{platform.machine()}, {args.threads} torch thread(s), CPU, torch {torch.__version__}.",
        "",
        "| agent | env steps/s (median) | runs | vs SB3 |",
        "|---|---|---|---|",
    ]
    for name, values in speeds.items():
        med = statistics.median(values)
        lines.append(
            f"| {name} | {med:.1f} | {', '.join(f'{v:.0f}' for v in values)} | {med / sb3:.2f}x |"
        )
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(args.out, lines)  # keeps a hand-written reading of the previous run


if __name__ == "__main__":
    main()
