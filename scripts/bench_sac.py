"""SAC speed: ebrl's energy policy and plain-SAC configuration (eager and compiled) against
Stable-Baselines3's SAC on Pendulum-v1, and each hot path against its floor.

1. Training: env steps per second of ``learn(--steps)`` (default 10k, RL-Zoo's Pendulum settings:
   lr 1e-3, batch 256, 256-256 networks, one gradient step per env step, learning_starts 100).
   Compiled agents compile inside ``learn`` (on their first calls), so compile time is counted.
   Repeats are interleaved; the table reports medians and the ratio to SB3.
2. Per call: one update and one acting step (1 state) against their matrix-multiply floor (the
   same matrix multiplies alone, ``scripts/floor.py``); SB3's update (``model.train(1)``) too.
3. The acting sampler call (1 state, 16 importance particles, 1-D and 6-D actions) against its
   inline floor: the same work written inline, with no library code. The implementations take
   turns in 30 rounds of 100 calls; the ratio is the median of the per-round ratios.

Run: ``python scripts/bench_sac.py`` (needs ``stable-baselines3``, the ``bench`` extra);
``--device cuda`` on a GPU (``scripts/bench_gpu.sh``). Writes ``scripts/results/bench_sac.md``
(``bench_sac_cuda.md`` on CUDA).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from floor import floor_row, interleaved_times, matmul_floor, median_time

from ebrl.agents import SAC, SACConfig
from ebrl.logging import write_report

ENV = "Pendulum-v1"
PENDULUM = {"learning_rate": 1e-3}  # RL-Zoo's sac.yml Pendulum-v1 (the rest: SB3's defaults)
AGENTS = {
    "ebrl SAC, default energy policy (16 particles, anchor mix 0.1)": (False, False),
    "ebrl SAC, default energy policy, compile=True": (False, True),
    "ebrl SAC, plain-SAC configuration": (True, False),
    "ebrl SAC, plain-SAC configuration, compile=True": (True, True),
}
SB3_NAME = "stable-baselines3 SAC"


def config(plain: bool, compiled: bool, **overrides) -> SACConfig:
    make = SACConfig.plain if plain else SACConfig
    return make(**PENDULUM, compile=compiled, **overrides)


def ebrl_run(steps: int, seed: int, plain: bool, compiled: bool, device: str) -> float:
    torch._dynamo.reset()  # every compiled run pays its own compile (the on-disk cache stays)
    agent = SAC(ENV, seed=seed, config=config(plain, compiled), device=device)
    start = time.perf_counter()
    agent.learn(steps, progress_bar=False)
    return agent.num_timesteps / (time.perf_counter() - start)


def sb3_model(seed: int, device: str):
    from stable_baselines3 import SAC as SB3SAC

    return SB3SAC("MlpPolicy", ENV, seed=seed, device=device, verbose=0, **PENDULUM)


def sb3_run(steps: int, seed: int, device: str) -> float:
    model = sb3_model(seed, device)
    start = time.perf_counter()
    model.learn(steps)
    # the steps it took (SB3 collects whole rollouts of train_freq steps; with SAC's
    # train_freq 1 that is exactly `steps`)
    return model.num_timesteps / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- per call


def per_call_rows(device: str) -> list[str]:
    """One update and one acting step of each configuration against the matmul floor."""
    rows = []
    for plain in (False, True):
        agents = {}
        for compiled in (False, True):
            torch._dynamo.reset()
            agent = SAC(ENV, seed=0, config=config(plain, compiled), device=device)
            agent.learn(400, progress_bar=False)  # fills the buffer, compiles
            agents[compiled] = agent
        eager = agents[False]
        batch = eager.buffer.sample(256, eager.generator)
        obs = eager.obs_tensor(eager._last_obs)[:1]
        name = "plain SAC" if plain else "energy policy"
        update_floor = matmul_floor(lambda a=eager, b=batch: a.update(b))
        with torch.no_grad():
            act_floor = matmul_floor(lambda a=eager, o=obs: a.act(o, False))
        for compiled, agent in agents.items():
            tag = ", compiled" if compiled else ""
            t = median_time(lambda a=agent, b=batch: a.update(b), 200)
            rows.append(floor_row(f"{name}{tag}: update (batch 256)", t, update_floor))
            with torch.no_grad():
                t = median_time(lambda a=agent, o=obs: a.act(o, False), 2000)
            rows.append(floor_row(f"{name}{tag}: acting step (1 state)", t, act_floor))
    try:
        model = sb3_model(0, device)
    except ImportError:
        return rows
    model.learn(400)
    floor = matmul_floor(lambda: model.train(gradient_steps=1, batch_size=256))
    t = median_time(lambda: model.train(gradient_steps=1, batch_size=256), 200)
    rows.append(floor_row("SB3 SAC: update (`model.train(1)`, batch 256)", t, floor))
    return rows


# ----------------------------------------------------------------------------- acting bar


class _Shapes(gym.Env):
    """An env with only spaces (``obs_dim``-D observations, ``act_dim``-D actions in [-1, 1]):
    the acting call's cost depends on nothing else."""

    def __init__(self, obs_dim: int, act_dim: int):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, False, {}


def inline_acting(agent: SAC, obs: torch.Tensor, n: int, mix: float) -> torch.Tensor:
    """The reference: the agent's acting step written inline with its weights, no library code:
    the actor's MLP, the mixture's draws and density (the textbook ``log(1 - tanh^2 + 1e-6)``
    form, not ebrl's exact one), both critics, resampling."""
    layers = [m for m in agent.actor.net if isinstance(m, torch.nn.Linear)]
    h = obs
    for i, layer in enumerate(layers):
        h = torch.nn.functional.linear(h, layer.weight, layer.bias)
        h = torch.relu(h) if i < len(layers) - 1 else h
    mean, raw = h.chunk(2, -1)
    lo, hi = agent.actor.log_std_bounds
    std = (lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1)).exp()
    (batch, d), g, dev = mean.shape, agent.generator, obs.device
    a = torch.tanh(mean + std * torch.randn(n, batch, d, generator=g, device=dev))
    anchor = torch.rand(n, batch, d, generator=g, device=dev) * 2 - 1
    a = torch.where(torch.rand(n, batch, 1, generator=g, device=dev) < mix, anchor, a)
    u = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    log_actor = (
        -0.5 * ((u - mean) / std) ** 2
        - std.log()
        - 0.5 * math.log(2 * math.pi)
        - torch.log1p(-(u.tanh() ** 2) + 1e-6)
    ).sum(-1)
    log_q = torch.logaddexp(
        log_actor + math.log(1 - mix), torch.full_like(log_actor, math.log(mix) - d * math.log(2))
    )
    x = torch.cat([obs.expand(n, batch, -1), a], -1).reshape(1, n * batch, -1).expand(2, -1, -1)
    critic = agent.critic.layers
    for i, layer in enumerate(critic):
        x = torch.baddbmm(layer.bias, x, layer.weight)
        x = torch.relu(x) if i < len(critic) - 1 else x
    log_w = x.min(0).values.reshape(n, batch) / agent.temperature - log_q
    # one draw per state after one check of the weights (one host sync), as the agent does:
    # torch.multinomial(p, 1)'s own algorithm, without its input check
    p = torch.softmax(log_w, 0).T
    if not math.isfinite(float(p.sum())):
        raise ValueError("inline_acting: NaN weights")
    index = (p / torch.empty_like(p).exponential_(generator=g)).argmax(-1)
    return a[index, torch.arange(batch, device=dev)]


def timed_acting(eager: SAC, compiled: SAC, obs: torch.Tensor) -> dict[str, list[float]]:
    """Per-round times of each implementation, all four taking turns in every round."""
    policy, g = eager.policy, eager.generator
    return interleaved_times(
        {
            "inline floor": lambda: inline_acting(eager, obs, 16, 0.1),
            "ebrl `agent.act` (fused step, eager)": lambda: eager.act(obs, False),
            "ebrl `agent.act` (fused step, compiled)": lambda: compiled.act(obs, False),
            "ebrl `policy.sample` (the general sampler path)": lambda: policy.sample(
                obs, 1, proposal=eager.nets.proposal(obs, 0.1), generator=g
            ),
        },
        repeats=3000,
    )


def acting_rows(device: str) -> list[str]:
    """One row per implementation and case: its median time, and its ratio to the inline
    floor as the median (and quartiles) of the per-round ratios (side by side in each round)."""
    rows = []
    for obs_dim, act_dim in ((3, 1), (17, 6)):
        agents = {}
        for compiled in (False, True):
            torch._dynamo.reset()
            agents[compiled] = SAC(
                lambda o=obs_dim, a=act_dim: _Shapes(o, a),
                seed=0,
                config=SACConfig(compile=compiled),
                device=device,
            )
        eager, compiled = agents[False], agents[True]
        obs = torch.randn(1, obs_dim, device=device)
        with torch.no_grad():
            times = timed_acting(eager, compiled, obs)
        floor = times["inline floor"]
        for name, ts in times.items():
            ratios = [t / f for t, f in zip(ts, floor, strict=True)]
            q1, med, q3 = statistics.quantiles(ratios, n=4)
            rows.append(
                f"| 1 state x 16 particles, {act_dim}-D | {name} | "
                f"{statistics.median(ts) * 1e6:.0f} us | {med:.2f}x | {q1:.2f}-{q3:.2f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-training", action="store_true", help="parts 2 and 3 only")
    parser.add_argument(
        "--eager-only", action="store_true", help="train without the compiled configurations"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    out = args.out or Path(f"scripts/results/bench_sac{suffix}.md")
    load_start = os.getloadavg()[0]
    speeds: dict[str, list[float]] = {}
    if not args.skip_training:
        runs = {
            name: (lambda s, p=plain, c=compiled: ebrl_run(args.steps, s, p, c, args.device))
            for name, (plain, compiled) in AGENTS.items()
            if not (compiled and args.eager_only)
        }
        runs[SB3_NAME] = lambda s: sb3_run(args.steps, s, args.device)
        speeds = {k: [] for k in runs}
        for repeat in range(args.repeats):
            for name, run in runs.items():
                speeds[name].append(run(repeat))
                print(f"{name}: {speeds[name][-1]:.1f} steps/s", flush=True)
    per_call = per_call_rows(args.device)
    print("\n".join(per_call), flush=True)
    acting = acting_rows(args.device)
    print("\n".join(acting), flush=True)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
        f"device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
        + f", torch {torch.__version__}; 1-min load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    lines = [
        f"# SAC speed on {ENV}",
        "",
        f"Command: `python scripts/bench_sac.py --steps {args.steps} --repeats {args.repeats} "
        f"--threads {args.threads} --device {args.device}"
        f"{' --eager-only' if args.eager_only else ''}`. Machine: {machine}.",
        "",
    ]
    if speeds:
        sb3 = statistics.median(speeds[SB3_NAME])
        lines += [
            f"## Training: env steps/s of `learn({args.steps})`, compile time included",
            "",
            "| agent | env steps/s (median) | runs | vs SB3 | vs SB3, per repeat |",
            "|---|---|---|---|---|",
        ]
        for name, values in speeds.items():
            med = statistics.median(values)
            runs_text = ", ".join(f"{v:.0f}" for v in values)
            paired = ", ".join(
                f"{v / b:.2f}x" for v, b in zip(values, speeds[SB3_NAME], strict=True)
            )
            lines.append(f"| {name} | {med:.1f} | {runs_text} | {med / sb3:.2f}x | {paired} |")
        lines.append("")
    lines += [
        "## Per call, against the matrix-multiply floor (the same matmuls alone)",
        "",
        "| path | time (median) | matmul floor | ratio |",
        "|---|---|---|---|",
        *per_call,
        "",
        "## The acting sampler call against its inline floor (the same work written inline)",
        "",
        "| case | implementation | time (median) | ratio to floor (median of rounds) "
        "| quartiles of the ratio |",
        "|---|---|---|---|---|",
        *acting,
    ]
    print("\n".join(lines))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(out, lines)  # keeps a hand-written reading of the previous run


if __name__ == "__main__":
    main()
