"""Composition at deploy time: a trained energy policy takes a new cost without retraining.

``agent.policy = agent.policy.compose(cost, weight)`` makes the agent act with
``pi'(a|s) ∝ anchor(a|s) exp(Q(s, a) / T - weight · cost(s, a))`` (issue 12, part 3). Two tasks:

- ``multigoal``: SAC energy policies on ``ebrl/MultiGoal-v0`` (goals (5,0), (-5,0), (0,5), (0,-5))
  with a cost on the velocity component toward one goal, ``cost = relu(a · u_k(s))`` (``u_k``
  the unit vector from the position to goal ``k``). Goal shares over 100 stochastic episodes
  (reset seeds 50000+i, as ``experiments/multigoal/run.py``) for a sweep of weights. Plain SAC
  (its Gaussian actor acts alone) is shown as it is, plus a naive fix: rejection of the actor's
  samples (up to 16 draws per step, the first of zero cost, else the cheapest).
- ``pendulum``: a SAC energy policy on ``Pendulum-v1`` with a torque limit ``|torque| <= 1`` (of
  max 2) as a hinge cost in the agent's normalised actions, ``cost = relu(|a| - 0.5) / 0.5``
  (0 inside the limit, 1 at full torque), and a hard variant (``+inf`` beyond the limit).
  Violation rate (share of steps with ``|torque| > 1``) and mean return over 20 episodes per
  weight, stochastic (the sampled policy) and deterministic (its mode search). The plain
  alternative: the same checkpoint's Gaussian actor acting alone (as plain SAC acts), as is and
  with its action clipped to ``[-1, 1]``.

Without ``--model`` each task first trains its preset (``SAC(env, seed=s).learn(steps)``: about
10-15 minutes each on one CPU thread). Writes ``runs/<task>.json`` (not committed) and, with
``plot``, ``multigoal.png`` and ``pendulum.png``.

Run::

    python experiments/compose/run.py multigoal --model E0.pt E1.pt E2.pt --plain P0.pt P1.pt P2.pt
    python experiments/compose/run.py pendulum --model runs/Pendulum-v1_sac_0/model.pt
    python experiments/compose/run.py plot
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

import ebrl.envs  # noqa: F401  (registers ebrl/MultiGoal-v0)
from ebrl import SAC
from ebrl.agents import load_agent
from ebrl.envs import GOALS
from ebrl.policies import AnchoredPolicy
from ebrl.samplers import ImportanceSampler, draw

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
MULTIGOAL = "ebrl/MultiGoal-v0"
RESET_SEED = 50_000  # as experiments/multigoal/run.py and experiments/presets/multigoal_goals.py
PENDULUM_RESET_SEED = 60_000
GOAL_TENSOR = torch.as_tensor(GOALS)


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "python": platform.python_version(),
    }


def load_or_train(path: str | None, env: str, steps: int, seed: int) -> SAC:
    if path is not None:
        return load_agent(path, env=env, device="cpu")
    print(f"training SAC({env!r}, seed={seed}) for {steps} steps (no --model given)", flush=True)
    agent = SAC(env, seed=seed, device="cpu")
    agent.learn(steps, progress_bar=False)
    RUNS.mkdir(exist_ok=True)
    agent.save(RUNS / f"{env.replace('/', '_')}_sac_{seed}.pt")
    return agent


# ---------------------------------------------------------------------------------- multigoal


def heading_cost(goal: int, cone_deg: float = 45.0):
    """``cost(obs, a[n, B, 2]) = |a| relu(cos(a, u) - cos(cone)) / (1 - cos(cone))``, ``u`` the
    direction from ``obs`` to the goal: 0 unless the action heads within ``cone_deg`` of the
    goal, up to ``|a|`` (<= sqrt 2) when it heads straight at it. ``cone_deg=90`` is
    ``relu(a · u)``, the whole speed toward the goal."""
    floor = math.cos(math.radians(cone_deg))

    def toward_goal(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        direction = GOAL_TENSOR[goal].to(obs) - obs  # [B, 2]
        unit = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        speed = actions.norm(dim=-1)
        cos = (actions * unit).sum(-1) / speed.clamp_min(1e-6)
        return speed * torch.relu(cos - floor) / (1 - floor)

    toward_goal.__name__ = f"toward_goal_{goal}"
    return toward_goal


def goal_counts(act, episodes: int) -> list[int]:
    """Episodes per goal (``GOALS`` order), then episodes that reached none (truncated)."""
    env = gym.make(MULTIGOAL)
    reached = []
    for i in range(episodes):
        obs, _ = env.reset(seed=RESET_SEED + i)
        while True:
            obs, _, terminated, truncated, info = env.step(act(obs))
            if terminated or truncated:
                break
        reached.append(info["goal"] if terminated else -1)
    env.close()
    return [reached.count(g) for g in range(len(GOALS))] + [reached.count(-1)]


def rejection_actor(agent: SAC, cost, k: int, generator: torch.Generator):
    """Plain SAC's naive fix: up to ``k`` draws of its actor per step, the first of zero cost,
    else the cheapest (the actor never learned the cost; this only filters its samples)."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            o = agent.obs_tensor(obs)
            a = draw(agent.actor(o), (k,), generator)  # [k, 1, d] in [-1, 1]
            c = cost(o, a)[:, 0]  # [k]
            free = c <= 0
            index = int(free.float().argmax()) if bool(free.any()) else int(c.argmin())
            return agent.to_env(a[index])[0]

    return act


def run_multigoal(args: argparse.Namespace) -> None:
    models = args.model or [None] * len(args.seeds)
    rows = []
    cost = heading_cost(args.avoid, args.cone)
    for seed, path in zip(args.seeds, models, strict=True):
        agent = load_or_train(path, MULTIGOAL, args.train_steps, seed)
        base = agent.policy
        for weight in args.weights:
            agent.policy = base.compose(cost, weight)
            agent.generator.manual_seed(seed)
            t0 = time.perf_counter()
            counts = goal_counts(lambda o, a=agent: a.predict(o)[0], args.episodes)
            rows.append(
                {
                    "agent": "energy",
                    "seed": seed,
                    "model": path,
                    "weight": weight,
                    "counts": counts,
                    "wall_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        agent.policy = base
    for seed, path in zip(args.seeds, args.plain or [], strict=False):
        agent = load_agent(path, env=MULTIGOAL, device="cpu")
        agent.generator.manual_seed(seed)
        try:  # a plain-SAC policy acts with ProposalSampler: compose refuses (it ignores costs)
            agent.policy.compose(cost, 1.0)
            refused = None
        except ValueError as err:
            refused = str(err)
        variants = {
            "plain actor (cost unused)": lambda o, a=agent: a.predict(o)[0],
            "plain actor + rejection (16 draws)": rejection_actor(
                agent, cost, 16, torch.Generator().manual_seed(seed)
            ),
        }
        for name, act in variants.items():
            t0 = time.perf_counter()
            rows.append(
                {
                    "agent": name,
                    "seed": seed,
                    "model": path,
                    "weight": None,
                    "counts": goal_counts(act, args.episodes),
                    "wall_s": round(time.perf_counter() - t0, 1),
                    "compose_refused": refused,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    out = {
        "task": "multigoal",
        "avoid": args.avoid,
        "avoid_goal": [float(x) for x in GOALS[args.avoid]],
        "cone_deg": args.cone,
        "episodes": args.episodes,
        "rows": rows,
        "machine": machine(),
    }
    RUNS.mkdir(exist_ok=True)
    (RUNS / "multigoal.json").write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------------------------- pendulum

LIMIT = 0.5  # |torque| <= 1 of max 2, in the agent's normalised actions


def torque_cost(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``relu(|a| - 0.5) / 0.5`` summed over the action: 0 within ``|torque| <= 1``."""
    return (torch.relu(actions.abs() - LIMIT) / LIMIT).sum(-1)


def torque_wall(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``+inf`` beyond ``|torque| = 1``, else 0: the hard constraint."""
    outside = (actions.abs() > LIMIT).any(-1)
    return torch.where(outside, math.inf, 0.0).to(actions)


def pendulum_episodes(act, episodes: int) -> dict:
    env = gym.make("Pendulum-v1")
    returns, steps, violations = [], 0, 0
    for i in range(episodes):
        obs, _ = env.reset(seed=PENDULUM_RESET_SEED + i)
        total, done = 0.0, False
        while not done:
            action = act(obs)
            violations += int(np.abs(action).max() > 1.0 + 1e-6)
            steps += 1
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return {
        "violation_rate": violations / steps,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
    }


def run_pendulum(args: argparse.Namespace) -> None:
    agent = load_or_train(args.model, "Pendulum-v1", args.train_steps, args.seeds[0])
    trained = agent.policy
    rows = []

    def record(name: str, weight, deterministic: bool, act, particles=None) -> None:
        agent.generator.manual_seed(args.seeds[0])
        t0 = time.perf_counter()
        try:
            result = pendulum_episodes(act, args.episodes)
        except ValueError as err:  # e.g. every importance particle beyond a wall
            result = {"error": str(err)}
        rows.append(
            {
                "agent": name,
                "weight": weight,
                "deterministic": deterministic,
                "particles": particles,
                **result,
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "returns"}), flush=True)

    def sampled(o):
        return agent.predict(o, deterministic=False)[0]

    # stochastic: the trained sampler (importance particles from the actor mixed with the
    # anchor), then a bigger deploy-time budget (the proposal is unchanged: SAC's act passes it)
    for particles in args.particles:
        base = AnchoredPolicy(
            trained.anchor,
            trained.utility,
            trained.temperature,
            ImportanceSampler(particles, bounds=(-1.0, 1.0)),
            trained.mode_steps,
        )
        for weight in args.weights:
            agent.policy = base.compose(torque_cost, weight)
            record("energy + hinge cost", weight, False, sampled, particles)
        agent.policy = base.compose(torque_wall)
        record("energy + wall (+inf)", "inf", False, sampled, particles)
    # deterministic: the mode search from the actor's mode (sampler-independent)
    for weight in args.weights:
        agent.policy = trained.compose(torque_cost, weight)
        record(
            "energy + hinge cost", weight, True, lambda o: agent.predict(o, deterministic=True)[0]
        )
    agent.policy = trained

    def actor(o, d, clip=None):
        with torch.no_grad():
            dist = agent.actor(agent.obs_tensor(o))
            a = dist.median if d else draw(dist, (1,), agent.generator)[0]
        env_a = agent.to_env(a)[0]
        return env_a if clip is None else np.clip(env_a, -clip, clip)

    reject = rejection_actor(agent, torque_cost, 16, agent.generator)
    record("actor + rejection (16 draws)", None, False, reject)
    for deterministic in (False, True):
        record(
            "actor alone (plain SAC acting)",
            None,
            deterministic,
            lambda o, d=deterministic: actor(o, d),
        )
        record(
            "actor, clipped to [-1, 1]",
            None,
            deterministic,
            lambda o, d=deterministic: actor(o, d, 1.0),
        )
    out = {
        "task": "pendulum",
        "model": args.model,
        "episodes": args.episodes,
        "reset_seeds": f"{PENDULUM_RESET_SEED}+i",
        "temperature": float(agent.temperature),
        "trained_sampler": repr(trained.sampler),
        "anchor_mix": agent.config.anchor_mix,
        "rows": rows,
        "machine": machine(),
    }
    RUNS.mkdir(exist_ok=True)
    (RUNS / "pendulum.json").write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------------------------- plots


def multigoal_table(data: dict) -> str:
    names = [str(tuple(int(v) for v in g)) for g in GOALS]
    avoid = data["avoid"]
    head = ["agent", "seed", "weight"] + [
        n + (" **avoided**" if i == avoid else "") for i, n in enumerate(names)
    ]
    lines = ["| " + " | ".join([*head, "none", "bar met"]) + " |", "|" + "---|" * (len(head) + 2)]
    for r in data["rows"]:
        c = r["counts"]
        n = data["episodes"]
        others = [c[g] for g in range(len(GOALS)) if g != avoid]
        met = c[avoid] <= 0.02 * n and min(others) >= 0.15 * n
        weight = "-" if r["weight"] is None else f"{r['weight']:g}"
        lines.append(
            "| "
            + " | ".join([r["agent"], str(r["seed"]), weight, *map(str, c), "yes" if met else "no"])
            + " |"
        )
    return "\n".join(lines)


def pendulum_table(data: dict) -> str:
    lines = [
        "| acting | sampler | weight | steps with \\|torque\\| > 1 | mean return | std |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        mode = "mode (deterministic)" if r["deterministic"] else "sampled"
        sampler = f"IS {r['particles']}" if r.get("particles") else "-"
        weight = "-" if r["weight"] is None else str(r["weight"])
        if "error" in r:
            lines.append(
                f"| {r['agent']}, {mode} | {sampler} | {weight} | error: {r['error'][:80]} | | |"
            )
            continue
        lines.append(
            f"| {r['agent']}, {mode} | {sampler} | {weight} | {100 * r['violation_rate']:.1f}% | "
            f"{r['mean_return']:.1f} | {r['std_return']:.1f} |"
        )
    return "\n".join(lines)


def plot(args: argparse.Namespace) -> None:
    """Writes the PNGs and prints the markdown tables of results.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = RUNS / "multigoal.json"
    if path.exists():
        data = json.loads(path.read_text())
        print(multigoal_table(data), "\n")
        rows = [r for r in data["rows"] if r["agent"] == "energy"]
        weights = sorted({r["weight"] for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        fig, ax = plt.subplots(figsize=(7, 4.2))
        x = np.arange(len(weights))
        names = [f"goal {tuple(int(v) for v in g)}" for g in GOALS] + ["none"]
        for g, name in enumerate(names):
            share = np.array(
                [[r["counts"][g] for r in rows if r["weight"] == w] for w in weights]
            )  # [weights, seeds]
            style = "-o" if g == data["avoid"] else "--."
            ax.errorbar(
                x + 0.04 * (g - 2),
                share.mean(1),
                yerr=[share.mean(1) - share.min(1), share.max(1) - share.mean(1)],
                fmt=style,
                capsize=3,
                label=name + (" (avoided)" if g == data["avoid"] else ""),
            )
        ax.axhline(2, color="k", lw=0.6, ls=":")
        ax.axhline(15, color="gray", lw=0.6, ls=":")
        ax.set_xticks(x, [f"{w:g}" for w in weights])
        ax.set_xlabel("cost weight w (cost: speed toward goal (5, 0) within a 45° cone)")
        ax.set_ylabel(f"episodes of {data['episodes']}\n(mean, min-max over {len(seeds)} seeds)")
        ax.set_title("MultiGoal, trained energy SAC, composed at deploy time (bars: 2 and 15)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(HERE / "multigoal.png", dpi=120)
    path = RUNS / "pendulum.json"
    if path.exists():
        data = json.loads(path.read_text())
        print(pendulum_table(data))
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        hinge = [r for r in data["rows"] if r["agent"] == "energy + hinge cost"]
        curves = [
            (f"energy, sampled, IS {p}", False, p)
            for p in sorted({r["particles"] for r in hinge if r["particles"]})
        ] + [("energy, mode", True, None)]
        for i, (label, deterministic, particles) in enumerate(curves):
            rows = [
                r
                for r in hinge
                if r["deterministic"] == deterministic and r["particles"] == particles
            ]
            w = np.array([r["weight"] for r in rows], dtype=float)
            xs = np.where(w > 0, w, 1.0)
            axes[0].plot(
                xs, [100 * r["violation_rate"] for r in rows], "-o", color=f"C{i}", label=label
            )
            axes[1].plot(xs, [r["mean_return"] for r in rows], "-o", color=f"C{i}", label=label)
        others = [
            r for r in data["rows"] if r["agent"] != "energy + hinge cost" and "error" not in r
        ]
        for j, r in enumerate(others):
            name = r["agent"] + (", mode" if r["deterministic"] else ", sampled")
            if r.get("particles"):
                name += f", IS {r['particles']}"
            style = dict(color=f"C{j + len(curves)}", lw=1, ls=["--", ":", "-."][j % 3], label=name)
            axes[0].axhline(100 * r["violation_rate"], **style)
            axes[1].axhline(r["mean_return"], **style)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("cost weight w (w = 0 drawn at 1)")
        axes[0].set_ylabel("steps with |torque| > 1 (%)")
        axes[1].set_ylabel(f"mean return ({data['episodes']} episodes)")
        axes[1].legend(fontsize=6.5, loc="lower left")
        fig.suptitle(
            "Pendulum-v1, trained energy SAC: a torque limit |torque| <= 1 composed at deploy time"
        )
        fig.tight_layout()
        fig.savefig(HERE / "pendulum.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["multigoal", "pendulum", "plot"])
    parser.add_argument("--model", nargs="+", help="energy-SAC checkpoints (one per seed)")
    parser.add_argument("--plain", nargs="+", help="plain-SAC checkpoints (multigoal)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weights", type=float, nargs="+")
    parser.add_argument("--episodes", type=int)
    parser.add_argument("--avoid", type=int, default=0, help="index of the goal to avoid")
    parser.add_argument("--cone", type=float, default=45.0, help="multigoal cost's cone (deg)")
    parser.add_argument("--train-steps", type=int)
    parser.add_argument(
        "--particles", type=int, nargs="+", default=[16, 256], help="pendulum: importance budgets"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.task == "multigoal":
        args.weights = args.weights or [0.0, 1.0, 3.0, 10.0, 30.0]
        args.episodes = args.episodes or 100
        args.train_steps = args.train_steps or 10_000
        if args.model:
            args.seeds = args.seeds[: len(args.model)]
        run_multigoal(args)
    elif args.task == "pendulum":
        args.weights = args.weights or [0.0, 10.0, 100.0, 1e3, 1e4, 1e5]
        args.episodes = args.episodes or 20
        args.train_steps = args.train_steps or 20_000
        args.model = args.model[0] if args.model else None
        run_pendulum(args)
    else:
        plot(args)


if __name__ == "__main__":
    main()
