"""ebrl SoftQ vs Stable-Baselines3 DQN on LunarLander-v3: learning curves, final returns, speed.

Agents (one ``--agent`` and one ``--seed`` per process, so that each run is its own invocation):

- ``sb3``: Stable-Baselines3 DQN with RL-Zoo's tuned LunarLander hyperparameters (``ZOO_DQN``
  below, copied from rl_zoo3 2.9.2 ``hyperparams/dqn.yml``, entry ``LunarLander-v3``);
- ``softq``: ``ebrl.agents.SoftQ`` with ``SoftQConfig.for_env("LunarLander-v3")``.

Protocol, the same for both: ``--steps`` env steps (100k, RL-Zoo's ``n_timesteps``); every
``--eval-every`` env steps ``--eval-episodes`` deterministic episodes, and after training
``--final-episodes`` of them; episode ``i`` of every evaluation starts from ``reset(seed=10_000
+ i)`` of a fresh ``LunarLander-v3`` env, so every agent and seed faces the same initial states.
Training speed is env steps per second of ``learn`` with the evaluation time taken out; the
wall time includes it. One torch thread by default.

Each run writes ``runs/<agent>_s<seed>.json``; ``--report`` reads them all and writes
``results.md`` (through ``ebrl.logging.write_report``, which keeps the hand-written reading)
and ``curves.png`` beside ``runs/`` (``--runs DIR`` moves both, e.g. for a smoke test).

Usage (from the repository root; stable-baselines3 is in the ``bench`` extra)::

    nice -n 10 python experiments/softq_lunarlander/run.py --agent sb3 --seed 0   # one run
    nice -n 10 python experiments/softq_lunarlander/run.py --agent softq  # seeds 0 1 2 in turn
    python experiments/softq_lunarlander/run.py --report
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from ebrl.logging import write_report

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
ENV = "LunarLander-v3"
EVAL_SEED = 10_000
AGENTS = ("sb3", "softq")

# rl_zoo3 2.9.2, hyperparams/dqn.yml, LunarLander-v3 ("# Tuned"; n_timesteps 1e5, MlpPolicy).
ZOO_DQN = {
    "learning_rate": 6.3e-4,
    "batch_size": 128,
    "buffer_size": 50_000,
    "learning_starts": 0,
    "gamma": 0.99,
    "target_update_interval": 250,
    "train_freq": 4,
    "gradient_steps": -1,
    "exploration_fraction": 0.12,
    "exploration_final_eps": 0.1,
    "policy_kwargs": {"net_arch": [256, 256]},
}


def evaluate(act: Callable[[np.ndarray], np.ndarray | int], n_episodes: int) -> dict:
    """Deterministic returns of ``act`` on a fresh env; episode ``i`` resets with ``EVAL_SEED +
    i``. Written out here (not borrowed from either library) so that the SB3 arm does not depend
    on ebrl's evaluation; SoftQ's ``evaluate(seed=EVAL_SEED)`` is documented to do the same."""
    env = gym.make(ENV)
    returns = []
    try:
        for i in range(n_episodes):
            obs, _ = env.reset(seed=EVAL_SEED + i)
            done, total = False, 0.0
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
    }


class Evaluator:
    """Evaluates at every multiple of ``every`` below the training budget (the end gets the
    final, longer evaluation) and keeps its own time, to take out of the training time."""

    def __init__(self, every: int, episodes: int, total: int, run: Callable[[int], dict]):
        self.every, self.episodes, self.total, self.run = every, episodes, total, run
        self.curve: list[dict] = []
        self.eval_s = 0.0
        self.next = every

    def on_step(self, steps: int) -> None:
        if self.next <= steps < self.total:
            self.record(steps, self.episodes)
            while self.next <= steps:
                self.next += self.every

    def record(self, steps: int, episodes: int) -> dict:
        start = time.perf_counter()
        result = self.run(episodes)
        self.eval_s += time.perf_counter() - start
        self.curve.append({"steps": steps, "episodes": episodes, **result})
        return result


# Each arm returns (hyperparameters, learn(steps, on_step) -> env steps done, evaluate(n)).


def sb3_arm(seed: int):
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    model = DQN("MlpPolicy", ENV, seed=seed, device="cpu", verbose=0, **ZOO_DQN)

    class Callback(BaseCallback):
        def __init__(self, on_step: Callable[[int], None]):
            super().__init__()
            self.hook = on_step

        def _on_step(self) -> bool:
            self.hook(self.num_timesteps)
            return True

    def learn(steps: int, on_step: Callable[[int], None]) -> int:
        model.learn(steps, callback=Callback(on_step), progress_bar=False)
        return model.num_timesteps

    def run_eval(n: int) -> dict:
        return evaluate(lambda obs: model.predict(obs, deterministic=True)[0], n)

    hyper = {"library": "stable-baselines3 DQN", "source": "rl_zoo3 2.9.2 dqn.yml", **ZOO_DQN}
    return hyper, learn, run_eval


def softq_arm(seed: int, overrides: dict | None = None):
    try:
        from ebrl.agents import SoftQ, SoftQConfig
    except ImportError as err:
        sys.exit(f"--agent softq needs ebrl.agents.SoftQ and SoftQConfig, not importable: {err}")

    config = SoftQConfig.for_env(ENV, **(overrides or {}))
    agent = SoftQ(ENV, seed=seed, device="cpu", config=config)

    def learn(steps: int, on_step: Callable[[int], None]) -> int:
        agent.learn(steps, progress_bar=False, callback=lambda a, info: on_step(a.num_timesteps))
        return agent.num_timesteps

    def run_eval(n: int) -> dict:
        result = agent.evaluate(n, deterministic=True, seed=EVAL_SEED)
        keys = ("mean_return", "std_return", "returns")
        return {
            k: [float(x) for x in result[k]] if k == "returns" else float(result[k]) for k in keys
        }

    fields = (
        dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {"config": repr(config)}
    )
    source = f'SoftQConfig.for_env("LunarLander-v3", **{overrides or {}})'
    hyper = {"library": "ebrl SoftQ", "source": source, **fields}
    return hyper, learn, run_eval


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _parse_set(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` (a Python literal) of a SoftQConfig override."""
    key, _, value = item.partition("=")
    return key, ast.literal_eval(value)


def train(args) -> None:
    torch.set_num_threads(args.threads)
    arm = sb3_arm if args.agent == "sb3" else softq_arm
    overrides = dict(_parse_set(item) for item in args.set)
    hyper, learn, run_eval = arm(args.seed, overrides) if overrides else arm(args.seed)
    evaluator = Evaluator(args.eval_every, args.eval_episodes, args.steps, run_eval)
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    steps = learn(args.steps, evaluator.on_step)
    train_s = time.perf_counter() - start - evaluator.eval_s
    final = evaluator.record(steps, args.final_episodes)
    wall_s = time.perf_counter() - start
    import stable_baselines3

    result = {
        "agent": args.agent,
        "seed": args.seed,
        "env": ENV,
        "steps": steps,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "final_episodes": args.final_episodes,
        "eval_reset_seeds": f"{EVAL_SEED} + i",
        "final_mean_return": final["mean_return"],
        "final_std_return": final["std_return"],
        "train_s": train_s,
        "eval_s": evaluator.eval_s,
        "wall_s": wall_s,
        "steps_per_s": steps / train_s,
        "threads": torch.get_num_threads(),
        "loadavg_1min": [load_start, os.getloadavg()[0]],
        "command": "python " + " ".join(sys.argv),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
            "stable_baselines3": stable_baselines3.__version__,
        },
        "hyperparameters": hyper,
        "curve": evaluator.curve,
    }
    args.runs.mkdir(parents=True, exist_ok=True)
    out = args.runs / f"{args.agent}_s{args.seed}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    keys = ("agent", "seed", "steps", "final_mean_return", "train_s", "wall_s", "steps_per_s")
    print(json.dumps({k: result[k] for k in keys}), f"-> {out}", flush=True)


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(p.read_text()) for p in sorted(args.runs.glob("*_s*.json"))]
    if not runs:
        sys.exit(f"no runs in {args.runs}; train first (--agent sb3|softq --seed S)")
    protocol = ("steps", "eval_every", "eval_episodes", "final_episodes", "threads")
    if len({tuple(r[k] for k in protocol) for r in runs}) > 1:
        sys.exit(f"runs in {args.runs} differ in {protocol}; report only runs of one protocol")
    by_agent = {
        a: sorted((r for r in runs if r["agent"] == a), key=lambda r: r["seed"]) for a in AGENTS
    }
    by_agent = {a: rs for a, rs in by_agent.items() if rs}
    first = runs[0]
    seeds = sorted({r["seed"] for r in runs})
    lines = [
        "# SoftQ vs SB3 DQN on LunarLander-v3",
        "",
        f"Each (agent, seed) is one process: `nice -n 10 python experiments/softq_lunarlander/"
        f"run.py --agent sb3|softq --seed S --steps {first['steps']} --eval-every "
        f"{first['eval_every']} --eval-episodes {first['eval_episodes']} --final-episodes "
        f"{first['final_episodes']} --threads {first['threads']}`, run one at a time; then "
        "`python experiments/softq_lunarlander/run.py --report`. Per-run JSONs (curve, times, "
        "hyperparameters, versions) are in `runs/`.",
        "",
        f"Seeds: {seeds}. Evaluation: deterministic actions; every {first['eval_every']} env "
        f"steps {first['eval_episodes']} episodes, after training {first['final_episodes']}; "
        f"episode i of every evaluation resets a fresh env with seed 10000 + i (the same initial "
        "states for both agents and every seed). Speed: env steps per second of training with "
        "evaluation time taken out; wall time includes evaluation.",
        "",
        f"Machine: {first['machine']['platform']}, {first['machine']['cpu']}, "
        f"{first['machine']['cpus']} CPUs (shared with other work), {first['threads']} torch "
        f"thread, CPU only; torch {first['versions']['torch']}, gymnasium "
        f"{first['versions']['gymnasium']}, stable-baselines3 "
        f"{first['versions']['stable_baselines3']}.",
        "",
        "| agent | final mean return per seed | mean ± sd over seeds | env steps/s per seed "
        "| env steps/s (mean) | wall time per seed (s) | 1-min load at start/end |",
        "|---|---|---|---|---|---|---|",
    ]
    for agent, rs in by_agent.items():
        finals = np.array([r["final_mean_return"] for r in rs])
        sd = finals.std(ddof=1) if len(finals) > 1 else float("nan")
        sps = [r["steps_per_s"] for r in rs]
        lines.append(
            f"| {agent} | "
            + ", ".join(f"s{r['seed']}: {r['final_mean_return']:.1f}" for r in rs)
            + f" | {finals.mean():.1f} ± {sd:.1f} | "
            + ", ".join(f"{v:.0f}" for v in sps)
            + f" | {np.mean(sps):.0f} | "
            + ", ".join(f"{r['wall_s']:.0f}" for r in rs)
            + " | "
            + ", ".join("{:.1f}/{:.1f}".format(*r["loadavg_1min"]) for r in rs)
            + " |"
        )
    lines += [
        "",
        "sd: sample standard deviation (n - 1) of the per-seed final mean returns. "
        "LunarLander counts as solved at a return of 200.",
        "",
        "Hyperparameters:",
        "",
    ]
    for agent, rs in by_agent.items():
        lines.append(f"- {agent}: `{json.dumps(rs[0]['hyperparameters'])}`")
    lines += ["", "![curves](curves.png)"]
    write_report(args.runs.parent / "results.md", lines)
    print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for color, (agent, rs) in zip(("tab:blue", "tab:orange"), by_agent.items(), strict=False):
        for r in rs:
            xs = [p["steps"] for p in r["curve"]]
            ax.plot(xs, [p["mean_return"] for p in r["curve"]], color=color, lw=0.7, alpha=0.4)
        common = sorted(set.intersection(*({p["steps"] for p in r["curve"]} for r in rs)))
        mean = [
            np.mean([p["mean_return"] for r in rs for p in r["curve"] if p["steps"] == x])
            for x in common
        ]
        ax.plot(common, mean, color=color, lw=2, label=f"{agent} (mean of {len(rs)} seeds)")
    ax.axhline(200, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel("deterministic evaluation return")
    ax.set_title("LunarLander-v3 (thin: single seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.runs.parent / "curves.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=AGENTS, help="train one agent (with --seed)")
    parser.add_argument("--seed", type=int, help="train this one seed in this process")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="without --seed: train these seeds one after another, one process each",
    )
    parser.add_argument("--steps", type=int, default=100_000, help="env steps of training")
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    parser.add_argument("--final-episodes", type=int, default=20, help="episodes at the end")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--runs", type=Path, default=RUNS, help="folder of the run JSONs; the report goes beside it"
    )
    parser.add_argument("--report", action="store_true", help="write results.md and curves.png")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="softq only: SoftQConfig overrides on top of the preset (e.g. tau=0.005)",
    )
    args = parser.parse_args()
    if args.report:
        report(args)
        return
    if args.agent is None:
        parser.error("give --agent sb3|softq (with --seed S or --seeds ...), or --report")
    if args.seed is not None:
        train(args)
        return
    for seed in args.seeds:  # one process per run, one after another
        cmd = [sys.executable, __file__, "--agent", args.agent, "--seed", str(seed)]
        cmd += ["--runs", str(args.runs)]
        for flag in ("steps", "eval_every", "eval_episodes", "final_episodes", "threads"):
            cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
