"""Soft-Q training speed: env steps per second of ebrl's SoftQ against Stable-Baselines3's DQN
on CartPole-v1, same update schedule, same machine.

SB3 DQN runs with RL-Zoo's tuned CartPole-v1 hyperparameters (``ZOO_DQN`` below, from rl_zoo3
2.9.2 ``hyperparams/dqn.yml``: train_freq 256, gradient_steps 128, batch 64, 256-256 network,
learning_starts 1000, ...); SoftQ runs with its default CartPole configuration,
``SoftQConfig.for_env("CartPole-v1")``, which is meant to share that schedule: the script checks
the fields it can find by the same names and prints what matches, differs or has no such field
(hidden_sizes against SB3's net_arch).
Each repeat trains every agent for ``--steps`` env steps, interleaved, and times ``learn``
(construction excluded; compiled agents compile inside ``learn``, so compile time counts);
the table reports medians over repeats and the ratio to SB3, then one gradient step and one
acting step against their matrix-multiply floor (``scripts/floor.py``).

Run: ``python scripts/bench_softq.py`` (needs ``stable-baselines3``, the ``bench`` extra, and
``ebrl.agents.SoftQ``). ``--agents sb3`` times SB3 alone. Writes
``scripts/results/bench_softq.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from ebrl.logging import write_report

ENV = "CartPole-v1"
DEVICE = "cpu"  # --device
SB3_NAME = "stable-baselines3 DQN (RL-Zoo CartPole-v1)"
EBRL_NAME = 'ebrl SoftQ, SoftQConfig.for_env("CartPole-v1")'

# rl_zoo3 2.9.2, hyperparams/dqn.yml, CartPole-v1 ("# Almost Tuned"; n_timesteps 5e4).
ZOO_DQN = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
    "policy_kwargs": {"net_arch": [256, 256]},
}
# SoftQConfig field -> SB3's value, for the schedule check.
SCHEDULE = {
    "train_freq": ZOO_DQN["train_freq"],
    "gradient_steps": ZOO_DQN["gradient_steps"],
    "batch_size": ZOO_DQN["batch_size"],
    "learning_starts": ZOO_DQN["learning_starts"],
    "hidden_sizes": tuple(ZOO_DQN["policy_kwargs"]["net_arch"]),
}


def softq_config():
    try:
        from ebrl.agents import SoftQ, SoftQConfig
    except ImportError as err:
        sys.exit(
            f"bench_softq: ebrl.agents.SoftQ / SoftQConfig not importable ({err}); "
            "run with --agents sb3 to time SB3 alone"
        )
    return SoftQ, SoftQConfig.for_env(ENV)


def schedule_check(config) -> str:
    """Which of SB3's schedule fields SoftQ's config has with the same value, by field name."""
    same, differ, missing = [], [], []
    for key, sb3 in SCHEDULE.items():
        ours = getattr(config, key, None)
        ours = tuple(ours) if isinstance(ours, list) else ours
        if not hasattr(config, key):
            missing.append(key)
        elif ours == sb3:
            same.append(f"{key} {sb3}")
        else:
            differ.append(f"{key}: SoftQ {ours!r} vs SB3 {sb3!r}")
    parts = [f"same {', '.join(same)}" if same else "none the same"]
    if differ:
        parts.append(f"DIFFERENT {'; '.join(differ)}")
    if missing:
        parts.append(f"no field named {', '.join(missing)} (check by hand)")
    return "; ".join(parts)


def ebrl_run(steps: int, seed: int, compiled: bool = False) -> float:
    SoftQ, config = softq_config()
    torch._dynamo.reset()  # every compiled run pays its own compile (the on-disk cache stays)
    agent = SoftQ(ENV, seed=seed, device=DEVICE, config=replace(config, compile=compiled))
    start = time.perf_counter()
    agent.learn(steps, progress_bar=False)
    return agent.num_timesteps / (time.perf_counter() - start)


def per_call_rows() -> list[str]:
    """One gradient step and one acting step of SoftQ (eager, compiled) and SB3 DQN's gradient
    step against their matrix-multiply floor (scripts/floor.py)."""
    from floor import floor_row, matmul_floor, median_time

    SoftQ, config = softq_config()
    rows, floors = [], {}
    for compiled in (False, True):
        torch._dynamo.reset()
        agent = SoftQ(ENV, seed=0, device=DEVICE, config=replace(config, compile=compiled))
        agent.learn(1300, progress_bar=False)  # past learning_starts: compiled
        batch = agent.buffer.sample(config.batch_size, agent.generator)
        obs = agent.obs_tensor(agent._last_obs)
        tag = ", compiled" if compiled else ""
        # the floor is the eager code's matmuls (a dispatch mode cannot record compiled code)
        if not compiled:
            floors["update"] = matmul_floor(lambda a=agent, b=batch: a.update(b))
            with torch.no_grad():
                floors["act"] = matmul_floor(lambda a=agent, o=obs: a.act(o, False))
        t = median_time(lambda a=agent, b=batch: a.update(b), 500)
        step = f"SoftQ{tag}: gradient step (batch {config.batch_size})"
        rows.append(floor_row(step, t, floors["update"]))
        with torch.no_grad():
            t = median_time(lambda a=agent, o=obs: a.act(o, False), 3000)
        rows.append(floor_row(f"SoftQ{tag}: acting step (1 state)", t, floors["act"]))
    try:
        from stable_baselines3 import DQN
    except ImportError:
        return rows
    model = DQN("MlpPolicy", ENV, seed=0, device=DEVICE, verbose=0, **ZOO_DQN)
    model.learn(1300)
    floor = matmul_floor(lambda: model.train(gradient_steps=1, batch_size=64))
    t = median_time(lambda: model.train(gradient_steps=1, batch_size=64), 500)
    rows.append(floor_row("SB3 DQN: gradient step (`model.train(1)`, batch 64)", t, floor))
    return rows


def sb3_run(steps: int, seed: int) -> float:
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", ENV, seed=seed, device=DEVICE, verbose=0, **ZOO_DQN)
    start = time.perf_counter()
    model.learn(steps)
    # the steps it took: SB3 collects whole rollouts of train_freq steps, so DQN's
    # learn(10_000) takes 10_240 env steps (37 rounds of 128 gradient steps to SoftQ's 36)
    return model.num_timesteps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--agents", nargs="+", choices=["softq", "sb3"], default=["softq", "sb3"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    args.out = args.out or Path(f"scripts/results/bench_softq{suffix}.md")
    torch.set_num_threads(args.threads)
    check = None
    if "softq" in args.agents:
        check = schedule_check(softq_config()[1])  # fails here, before any run, without SoftQ
        print(f"schedule check: {check}", flush=True)
    runs = {}
    if "softq" in args.agents:
        runs[EBRL_NAME] = lambda s: ebrl_run(args.steps, s)
        runs[EBRL_NAME + ", compile=True"] = lambda s: ebrl_run(args.steps, s, compiled=True)
    if "sb3" in args.agents:
        runs[SB3_NAME] = lambda s: sb3_run(args.steps, s)
    speeds: dict[str, list[float]] = {k: [] for k in runs}
    load_start = os.getloadavg()[0]
    for repeat in range(args.repeats):
        for name, run in runs.items():
            speeds[name].append(run(repeat))
            print(f"{name}: {speeds[name][-1]:.1f} steps/s", flush=True)
    sb3 = statistics.median(speeds[SB3_NAME]) if SB3_NAME in speeds else None
    lines = [
        "# Soft-Q training speed on CartPole-v1",
        "",
        f"Command: `python scripts/bench_softq.py --steps {args.steps} --repeats {args.repeats} "
        f"--threads {args.threads} --device {args.device}`; env steps per second of "
        f"`learn({args.steps})` (the steps each took: SB3 collects whole rollouts of "
        f"train_freq steps, so its run is rounded up to a multiple of 256), median of "
        f"{args.repeats} interleaved repeats. SB3 DQN with RL-Zoo's CartPole-v1 hyperparameters "
        f"(train_freq 256, gradient_steps 128, batch 64, 256-256 network, learning_starts 1000, "
        f"target_update_interval 10); SoftQ with its default CartPole config. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
        f"device {args.device}, "
        f"torch {torch.__version__}; 1-min load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine shows here).",
        "",
    ]
    if check is not None:
        lines += [f"Update schedule of SoftQ's config against SB3's: {check}.", ""]
    lines += [
        "| agent | env steps/s (median) | runs | vs SB3 |",
        "|---|---|---|---|",
    ]
    for name, values in speeds.items():
        med = statistics.median(values)
        ratio = f"{med / sb3:.2f}x" if sb3 else "-"
        lines.append(f"| {name} | {med:.1f} | {', '.join(f'{v:.0f}' for v in values)} | {ratio} |")
    if "softq" in args.agents:
        lines += [
            "",
            "Per call, against the matrix-multiply floor (the same matmuls alone):",
            "",
            "| path | time (median) | matmul floor | ratio |",
            "|---|---|---|---|",
            *per_call_rows(),
        ]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(args.out, lines)  # keeps a hand-written reading of the previous run


if __name__ == "__main__":
    main()
