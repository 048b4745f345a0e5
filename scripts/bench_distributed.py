"""Issue 14's bars: data-parallel ``fit-density`` and ``train`` under ``torchrun`` against one
process, and async against sync env stepping.

1. ``fit-density --dataset 8gaussians --objective dsm``: one process and
   ``torchrun --nproc_per_node=2`` at the same global batch and steps; bar: test NLL within
   0.02 nats.
2. ``train --env Pendulum-v1 --steps 10000``: one process over ``--seeds`` (the seed spread),
   ``torchrun --nproc_per_node=2`` at seed 0 (10k env steps in total, 5k per rank); bar: the
   2-rank return inside the one-process range, in less wall time.
3. ``train --env HalfCheetah-v5 --num-envs 2`` with ``learning_starts`` beyond the run (no
   update: collection only), ``--vectorization sync`` against ``async``, interleaved repeats;
   bar: async collects >= 1.5x the env steps per second (``env_steps_per_s`` of the JSON).
   Needs MuJoCo (``pip install mujoco``); ``--collect-envs`` picks the envs (default also
   Humanoid-v5, whose step costs several times HalfCheetah's). ``env_steps_per_s`` counts
   from the start of ``ebrl train``'s training call (agent construction included), so the
   runs are long enough (``--collect-steps``) for that to be small.

Every run is a subprocess (``python -m ebrl ...`` or ``torchrun ... -m ebrl ...``) timed from
outside (process wall time, start-up included) and read from its JSON line. Writes
``scripts/results/distributed.md`` (``--out``). Run: ``nice -n 5 python
scripts/bench_distributed.py`` (about 30 min on a busy 2-core machine); ``--bars 1 3`` runs
some of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ebrl.logging import write_report

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], ranks: int) -> tuple[dict, float]:
    """Runs ``ebrl CMD`` in one process (``ranks`` 1) or under torchrun; returns its JSON line
    and the process wall time."""
    if ranks == 1:
        argv = [sys.executable, "-m", "ebrl", *cmd]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        argv = [str(torchrun), "--standalone", f"--nproc_per_node={ranks}", "-m", "ebrl", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    # run in an empty directory: a directory named ebrl/ in the cwd would shadow the package
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    print(f"  {' '.join(argv[1:] if ranks == 1 else argv)}: {wall:.1f} s", file=sys.stderr)
    return json.loads(line), wall


def bar_fit(tmp: Path, steps: int | None, seeds: list[int]) -> list[str]:
    cmd = ["fit-density", "--dataset", "8gaussians", "--objective", "dsm", "--threads", "1"]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    rows = []
    for seed in seeds:
        for ranks in (1, 2):
            out = tmp / f"fit{ranks}_{seed}.png"
            result, wall = run([*cmd, "--seed", str(seed), "--out", str(out)], ranks)
            rows.append((seed, ranks, result, wall))
    nll = {(seed, ranks): result["test_nll"] for seed, ranks, result, _ in rows}
    gaps = [abs(nll[(s, 2)] - nll[(s, 1)]) for s in seeds]
    lines = [
        "## 1. fit-density, 8gaussians, dsm: 2 ranks against 1 at the same global batch",
        "",
        f"Command: `[torchrun --standalone --nproc_per_node=2] -m ebrl {' '.join(cmd)} --seed S` "
        f"(steps {rows[0][2]['steps']}, global batch 256). The 2 ranks draw the same global "
        "batch and DSM noise as the one process (each keeps its half of the rows) and average "
        "their gradients: the same trajectory up to floating-point reduction order.",
        "",
        "| seed | ranks | test NLL (nats) | true NLL | fit wall_s (JSON) | process wall s |",
        "|---|---|---|---|---|---|",
    ]
    for seed, ranks, result, wall in rows:
        lines.append(
            f"| {seed} | {ranks} | {result['test_nll']:.4f} | {result['true_nll']} | "
            f"{result['wall_s']} | {wall:.1f} |"
        )
    one = [nll[(s, 1)] for s in seeds]
    two = [nll[(s, 2)] for s in seeds]
    lines += [
        "",
        f"|NLL(2 ranks) - NLL(1)| per seed: {', '.join(f'{g:.4f}' for g in gaps)} nats; bar "
        f"0.02: **{'met' if max(gaps) <= 0.02 else 'not met'}** at "
        f"{sum(g <= 0.02 for g in gaps)} of {len(seeds)} seeds.",
    ]
    if len(seeds) > 1:
        lines += [
            f"One-process seed spread: [{min(one):.4f}, {max(one):.4f}] (std "
            f"{statistics.stdev(one):.4f}); 2 ranks: [{min(two):.4f}, {max(two):.4f}] (mean "
            f"{statistics.mean(two):.4f} against {statistics.mean(one):.4f}).",
        ]
    lines.append("")
    return lines


def bar_train(seeds: list[int], steps: int) -> list[str]:
    def cmd(seed: int, logdir: Path) -> list[str]:
        return ["train", "--env", "Pendulum-v1", "--steps", str(steps), "--seed", str(seed),
                "--no-progress", "--logdir", str(logdir)]  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        single = [run(cmd(s, Path(tmp) / "one"), 1) for s in seeds]
        double = run(cmd(seeds[0], Path(tmp) / "two"), 2)
    returns = [r["mean_return"] for r, _ in single]
    lo, hi = min(returns), max(returns)
    ret2, wall2 = double[0]["mean_return"], double[1]
    wall1 = statistics.median(w for _, w in single)
    inside = lo <= ret2 <= hi or ret2 > hi
    lines = [
        f"## 2. train Pendulum-v1, {steps} env steps: 2 ranks against 1",
        "",
        f"Command: `[torchrun --standalone --nproc_per_node=2] -m ebrl train --env Pendulum-v1 "
        f"--steps {steps} --seed S` (2 ranks: {steps // 2} env steps each).",
        "",
        "| ranks | seed | mean return (10 eval episodes) | env steps/s (JSON) | process wall s |",
        "|---|---|---|---|---|",
    ]
    for seed, (result, wall) in zip(seeds, single, strict=True):
        lines.append(
            f"| 1 | {seed} | {result['mean_return']} | {result['env_steps_per_s']} | {wall:.1f} |"
        )
    lines.append(f"| 2 | {seeds[0]} | {ret2} | {double[0]['env_steps_per_s']} | {wall2:.1f} |")
    lines += [
        "",
        f"One-process return range over seeds {seeds}: [{lo}, {hi}]; 2 ranks: {ret2} "
        f"({'inside or above' if inside else 'below'} the range). Wall time: 2 ranks "
        f"{wall2:.1f} s against the one-process median {wall1:.1f} s: speed-up "
        f"**{wall1 / wall2:.2f}x**.",
        "",
    ]
    return lines


def gymnasium_rate(env: str, mode: str, steps: int) -> float:
    """Env steps/s of gymnasium's own 2-env vector env (``sync`` or ``async``) stepping a fixed
    action, nothing else: the ceiling of any agent's collection loop on it."""
    import gymnasium as gym
    import numpy as np

    envs = gym.make_vec(env, num_envs=2, vectorization_mode=mode)
    envs.reset(seed=0)
    actions = np.stack([envs.single_action_space.sample() for _ in range(2)])
    for _ in range(100):  # warm-up (worker start, first resets)
        envs.step(actions)
    start = time.perf_counter()
    for _ in range(steps // 2):
        envs.step(actions)
    rate = 2 * (steps // 2) / (time.perf_counter() - start)
    envs.close()
    return rate


def bar_async(env: str, steps: int, repeats: int) -> list[str]:
    rates: dict[str, list[float]] = {"sync": [], "async": []}
    raw: dict[str, list[float]] = {"sync": [], "async": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for mode in ("sync", "async"):
                cmd = ["train", "--env", env, "--num-envs", "2", "--vectorization", mode,
                       "--steps", str(steps), "--learning-starts", str(10 * steps),
                       "--eval-episodes", "1", "--no-progress", "--logdir", tmp]  # fmt: skip
                result, _ = run(cmd, 1)
                rates[mode].append(result["env_steps_per_s"])
                raw[mode].append(gymnasium_rate(env, mode, steps))
    sync, asyn = statistics.median(rates["sync"]), statistics.median(rates["async"])
    raw_sync, raw_async = statistics.median(raw["sync"]), statistics.median(raw["async"])
    ratio = asyn / sync
    # per 2-env step: gymnasium's own time and what ebrl's loop adds to it (sync)
    step_ms, loop_ms = 2e3 / raw_sync, 2e3 / sync - 2e3 / raw_sync
    return [
        f"## 3. {env}, 2 envs, collection only: async against sync",
        "",
        f"Command: `ebrl train --env {env} --num-envs 2 --vectorization sync|async --steps "
        f"{steps} --learning-starts {10 * steps} --eval-episodes 1` ({repeats} interleaved "
        "repeats; `env_steps_per_s` of the JSON, training only).",
        "",
        "| vectorization | env steps/s (each repeat) | median |",
        "|---|---|---|",
        f"| sync | {', '.join(f'{r:.0f}' for r in rates['sync'])} | {sync:.0f} |",
        f"| async | {', '.join(f'{r:.0f}' for r in rates['async'])} | {asyn:.0f} |",
        f"| gymnasium alone, sync | {', '.join(f'{r:.0f}' for r in raw['sync'])} | "
        f"{raw_sync:.0f} |",
        f"| gymnasium alone, async | {', '.join(f'{r:.0f}' for r in raw['async'])} | "
        f"{raw_async:.0f} |",
        "",
        f"async / sync = **{ratio:.2f}x**; bar 1.5x: **{'met' if ratio >= 1.5 else 'not met'}**. "
        f"Gymnasium alone (a fixed action, no agent): async / sync = {raw_async / raw_sync:.2f}x. "
        f"Per 2-env step (sync): the envs {step_ms:.3f} ms, ebrl's loop around them "
        f"{loop_ms:.3f} ms (random warm-up actions, buffer, bookkeeping), which async cannot "
        "run in parallel.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    parser.add_argument("--fit-steps", type=int, default=None, help="(default: dsm's 20000)")
    parser.add_argument("--fit-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--collect-envs", nargs="+", default=["HalfCheetah-v5", "Humanoid-v5"])
    parser.add_argument("--collect-steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "scripts/results/distributed.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    lines = [
        "# Scaling beyond one process (issue 14): measured bars",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} at the start (shared with other work: timings are noisy); "
        f"Python {platform.python_version()}. Generated by `python scripts/bench_distributed.py "
        f"{' '.join(sys.argv[1:])}`.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if 1 in args.bars:
            lines += bar_fit(Path(tmp), args.fit_steps, args.fit_seeds)
    if 2 in args.bars:
        lines += bar_train(args.seeds, args.train_steps)
    if 3 in args.bars:
        for env in args.collect_envs:
            lines += bar_async(env, args.collect_steps, args.repeats)
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(args.out, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
