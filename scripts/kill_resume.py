"""kill -9 at random moments during `ebrl train`, then `ebrl train --resume RUN_DIR`: does every
resumed run finish with the uninterrupted run's final JSON and parameters (CPU)?

    python scripts/kill_resume.py                       # SAC on Pendulum-v1, 10 kills
    python scripts/kill_resume.py --algo softq --env CartPole-v1 --kills 10

Each kill lands at a uniform random time between the run directory's appearance and the end
of the uninterrupted run's wall time (before the run directory exists there is nothing to
resume; a kill after the end finds the run finished, and resuming it evaluates it again).
Writes a table to scripts/results/kill_resume_<algo>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TIMING = ("wall_s", "env_steps_per_s", "checkpoint", "logdir")


def _pythonpath() -> str:
    """The repository first, then the caller's own PYTHONPATH (where packages may live)."""
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)


def train(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ebrl", "train", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
    )


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ebrl train failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def parameters(path: Path) -> dict:
    state = torch.load(path, weights_only=True)
    tensors = {(k, n): t for k, m in state["modules"].items() for n, t in m.items()}
    return {**tensors, ("log_temperature", ""): state["log_temperature"]}


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="sac")
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    args = parser.parse_args()
    flags = ["--algo", args.algo, "--env", args.env, "--steps", str(args.steps),
             "--checkpoint-every", str(args.checkpoint_every), "--no-progress"]  # fmt: skip
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill_resume_"))
    start = time.perf_counter()
    want = finish(train([*flags, "--logdir", "straight"], work))
    run_s = time.perf_counter() - start
    run_name = f"{args.env.replace('/', '_')}_{args.algo}_0"
    reference = parameters(work / "straight" / run_name / "model.pt")
    rows = []
    for i in range(args.kills):
        proc = train([*flags, "--logdir", f"k{i}"], work)
        run_dir = work / f"k{i}" / run_name
        t0 = time.perf_counter()
        while not (run_dir / "run.json").exists() and proc.poll() is None:
            time.sleep(0.01)
        appeared = time.perf_counter() - t0
        delay = rng.uniform(0, max(run_s - appeared, 0.1))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        checkpoints = [p.name for p in sorted(run_dir.iterdir()) if p.suffix == ".pt"]
        at = 0
        if (run_dir / "checkpoint.pt").exists():
            at = torch.load(run_dir / "checkpoint.pt", weights_only=True)["num_timesteps"]
        got = finish(train(["--resume", str(run_dir.relative_to(work)), "--no-progress"], work))
        same_json = {k: v for k, v in got.items() if k not in TIMING} == {
            k: v for k, v in want.items() if k not in TIMING
        }
        diff = max_difference(reference, parameters(run_dir / "model.pt"))
        rows.append((i, appeared + delay, at, ", ".join(checkpoints), same_json, diff))
        print(rows[-1], flush=True)
    lines = [
        f"# kill -9 then --resume: `ebrl train {' '.join(flags)}`",
        "",
        f"Command: `python scripts/kill_resume.py --algo {args.algo} --env {args.env} "
        f"--kills {args.kills} --seed {args.seed}`; machine: {platform.processor() or 'CPU'}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, CPU, 1 torch thread (the CLI's "
        f"default). Uninterrupted run: {run_s:.1f} s, final mean return {want['mean_return']}.",
        "",
        "| kill | killed at (s after start) | resumed from step | files at the kill | "
        "final JSON equal | max abs parameter difference |",
        "|---|---|---|---|---|---|",
        *(
            f"| {i} | {t:.1f} | {at} | {files or '-'} | {'yes' if same else 'NO'} | {d:g} |"
            for i, t, at, files, same, d in rows
        ),
        "",
        f"**{sum(r[4] and r[5] == 0 for r in rows)}/{len(rows)}** resumed runs equal the "
        "uninterrupted one (JSON without its timing fields, and every parameter).",
    ]
    out = Path(__file__).parent / "results" / f"kill_resume_{args.algo}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
