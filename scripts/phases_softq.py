"""Where the time of a 10k-step CartPole run goes: ebrl's SoftQ against Stable-Baselines3's DQN
(the schedule of ``scripts/bench_softq.py``), phase by phase.

Each phase (acting, the env step, the buffer, one gradient step...) is timed by wrapping the
method that does it, with ``torch.cuda.synchronize()`` at both ends on a GPU, so that each phase's
time is its own; the syncs make the timed run slower than an untimed one, whose total is printed
first. What no phase covers (the loop itself; the batches' gathers, since ``sample_batches``
only draws the indices) is the difference between the phases' sum and the timed total. On a
GPU it then lists the operations of 512 more steps by count (the profiler).

Usage: python scripts/phases_softq.py [--device cuda] [--steps 10000] [--out phases.json]
Needs the bench extra (stable-baselines3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_softq  # the same env, configs and schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_softq.DEVICE = args.device
    cuda = torch.device(args.device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timed(obj, method: str, key: str) -> None:
        fn = getattr(obj, method)

        def wrapper(*a, **k):
            sync()
            start = time.perf_counter()
            out = fn(*a, **k)
            sync()
            seconds[key] += time.perf_counter() - start
            calls[key] += 1
            return out

        setattr(obj, method, wrapper)

    def row(total: float) -> dict:
        # phase: [seconds, calls, us per call]
        phases = {
            k: [round(v, 3), calls[k], round(1e6 * v / calls[k], 1)] for k, v in seconds.items()
        }
        return {"total_s": round(total, 3), **phases}

    results = {}
    SoftQ, config = bench_softq.softq_config()
    from stable_baselines3 import DQN

    for name in ("softq", "softq_phases", "dqn", "dqn_phases"):
        seconds.clear()
        calls.clear()
        if name.startswith("softq"):
            agent = SoftQ(bench_softq.ENV, seed=0, device=args.device, config=config)
            if name.endswith("phases"):
                for method in ("act", "explore", "update", "to_env", "obs_tensor"):
                    timed(agent, method, method)
                timed(agent.buffer, "add", "buffer_add")
                timed(agent.buffer, "sample_batches", "sample_batches")
                timed(agent.envs, "step", "env_step")
            run, kwargs = agent, {"progress_bar": False}
        else:
            model = DQN(
                "MlpPolicy", bench_softq.ENV, seed=0, device=args.device, verbose=0,
                **bench_softq.ZOO_DQN,
            )  # fmt: skip
            if name.endswith("phases"):
                timed(model, "train", "update_x128")
                timed(model.policy, "predict", "act")
                timed(model.env, "step", "env_step")
                timed(model.replay_buffer, "add", "buffer_add")
            run, kwargs = model, {}
        start = time.perf_counter()
        run.learn(args.steps, **kwargs)
        sync()
        results[name] = row(time.perf_counter() - start)
        print(name, json.dumps(results[name]), flush=True)
        if name == "softq_phases" and cuda:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
            with profile(activities=activities) as prof:
                agent.learn(512, progress_bar=False, reset_num_timesteps=False)
            print(prof.key_averages().table(sort_by="count", row_limit=30), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
