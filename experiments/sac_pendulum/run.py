"""ebrl SAC vs Stable-Baselines3 SAC on Pendulum-v1: learning curves, final returns, speed.

Same protocol for every agent: RL-Zoo's Pendulum hyperparameters (lr 1e-3, everything else SB3's
SAC defaults: buffer 1e6, batch 256, learning_starts 100, tau 0.005, gamma 0.99, one gradient
step per env step, 256-256 networks, automatic entropy temperature), evaluation every
``--eval-every`` steps on ``--eval-episodes`` deterministic episodes with the same reset seeds,
and env steps per second of training alone (evaluation time excluded). Runs are interleaved
(seed 0 of every agent, then seed 1, ...) so that machine load hits every agent alike.

Agents: ``ebrl`` (the default energy policy: 16 importance particles from the actor mixed with
the uniform anchor), ``ebrl-plain`` (the plain-SAC configuration), ``sb3`` (needs
``pip install stable-baselines3``, the ``bench`` extra).

Run: ``python experiments/sac_pendulum/run.py`` (resumable: finished runs are cached as JSON
in ``experiments/sac_pendulum/runs/``), then it writes ``results.md`` and ``curves.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ebrl.agents import SAC, SACConfig, evaluate_policy
from ebrl.logging import write_report

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
ZOO = {"learning_rate": 1e-3}  # RL-Zoo hyperparams/sac.yml, Pendulum-v1


class Evaluator:
    """Evaluates at fixed step counts and keeps the time it spends out of the training time."""

    def __init__(self, every: int, episodes: int, seed: int):
        self.every, self.episodes, self.seed = every, episodes, seed
        self.curve: list[tuple[int, float]] = []
        self.eval_s = 0.0
        self.next = every

    def maybe(self, steps: int, predict) -> None:
        if steps >= self.next:
            start = time.perf_counter()
            result = evaluate_policy(predict, ENV, self.episodes, seed=10_000 + self.seed)
            self.curve.append((steps, result["mean_return"]))
            self.eval_s += time.perf_counter() - start
            self.next += self.every


def run_ebrl(seed: int, steps: int, evaluator: Evaluator, plain: bool) -> dict:
    config = SACConfig.plain(**ZOO) if plain else SACConfig(**ZOO)
    agent = SAC(ENV, seed=seed, config=config, device="cpu")

    def callback(a, info):
        evaluator.maybe(a.num_timesteps, lambda o: a.predict(o, deterministic=True)[0])

    start = time.perf_counter()
    agent.learn(steps, progress_bar=False, callback=callback)
    return {"train_s": time.perf_counter() - start - evaluator.eval_s}


def run_sb3(seed: int, steps: int, evaluator: Evaluator) -> dict:
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.callbacks import BaseCallback

    class Callback(BaseCallback):
        def _on_step(self) -> bool:
            evaluator.maybe(
                self.num_timesteps, lambda o: self.model.predict(o, deterministic=True)[0]
            )
            return True

    model = SB3SAC("MlpPolicy", ENV, seed=seed, device="cpu", verbose=0, **ZOO)
    start = time.perf_counter()
    model.learn(steps, callback=Callback())
    return {"train_s": time.perf_counter() - start - evaluator.eval_s}


def run_one(algo: str, seed: int, args) -> dict:
    cache = HERE / "runs" / f"{algo}_{seed}_{args.steps}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    torch.manual_seed(seed)
    evaluator = Evaluator(args.eval_every, args.eval_episodes, seed)
    if algo == "sb3":
        timing = run_sb3(seed, args.steps, evaluator)
    else:
        timing = run_ebrl(seed, args.steps, evaluator, plain=algo == "ebrl-plain")
    result = {
        "algo": algo,
        "seed": seed,
        "steps": args.steps,
        "curve": evaluator.curve,
        "final_return": evaluator.curve[-1][1],
        "train_s": timing["train_s"],
        "steps_per_s": args.steps / timing["train_s"],
    }
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(json.dumps(result))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}), flush=True)
    return result


def report(results: list[dict], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = [a for a in args.algos if any(r["algo"] == a for r in results)]
    lines = [
        "# SAC on Pendulum-v1: ebrl vs Stable-Baselines3",
        "",
        f"Command: `python experiments/sac_pendulum/run.py --seeds {' '.join(map(str, args.seeds))}"
        f" --steps {args.steps}`. Seeds {args.seeds}; evaluation every {args.eval_every} steps, "
        f"{args.eval_episodes} deterministic episodes (reset seeds 10000+seed+i, the same for "
        f"every agent). Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"CPU only, torch {torch.__version__}; runs interleaved by seed.",
        "",
        "| agent | final return (mean ± std over seeds) | per seed | seeds >= -200 | "
        "env steps/s (mean) | per seed | speed vs sb3 |",
        "|---|---|---|---|---|---|---|",
    ]
    sps = {a: np.mean([r["steps_per_s"] for r in results if r["algo"] == a]) for a in algos}
    for algo in algos:
        rs = [r for r in results if r["algo"] == algo]
        finals = np.array([r["final_return"] for r in rs])
        ratio = f"{sps[algo] / sps['sb3']:.2f}x" if "sb3" in sps else "-"
        per_seed_sps = ", ".join(f"{r['steps_per_s']:.0f}" for r in rs)
        lines.append(
            f"| {algo} | {finals.mean():.1f} ± {finals.std():.1f} | "
            f"{', '.join(f'{f:.0f}' for f in finals)} | {(finals >= -200).sum()}/{len(finals)} | "
            f"{sps[algo]:.1f} | {per_seed_sps} | {ratio} |"
        )
    lines += ["", "![curves](curves.png)"]
    write_report(HERE / "results.md", lines)
    print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for algo in algos:
        curves = np.array([[v for _, v in r["curve"]] for r in results if r["algo"] == algo])
        xs = [s for s, _ in next(r for r in results if r["algo"] == algo)["curve"]]
        m, s = curves.mean(0), curves.std(0)
        ax.plot(xs, m, label=f"{algo} ({len(curves)} seeds)")
        ax.fill_between(xs, m - s, m + s, alpha=0.2)
    ax.axhline(-200, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return (mean ± std over seeds)")
    ax.set_title("Pendulum-v1")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--algos", nargs="+", default=["ebrl", "ebrl-plain", "sb3"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [run_one(algo, seed, args) for seed in args.seeds for algo in args.algos]
    report(results, args)


if __name__ == "__main__":
    main()
