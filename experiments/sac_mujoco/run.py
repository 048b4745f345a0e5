"""ebrl's energy policy, ebrl's plain SAC and Stable-Baselines3's SAC on HalfCheetah-v5 and
Hopper-v5 (issue 13): learning curves, final returns, speed, and the energy policy's diagnostics.

Agents, all with RL-Zoo's MuJoCo hyperparameters (``hyperparams/sac.yml``: learning_starts 10k,
SB3's SAC defaults otherwise: lr 3e-4, batch 256, buffer 1e6, 256-256 networks, tau 0.005,
gamma 0.99, one gradient step per env step, automatic temperature):

- ``energy``: ``SAC(env, config=SACConfig.for_env(env))``, the default energy policy (16
  importance particles from the actor mixed 0.1 with the uniform anchor; deterministic actions:
  the preset's, 10 mode-search steps from the actor's mode until 2026-11-30, the actor's mode
  itself since, ``mode_steps=0``; each evaluation also scores the other one);
- ``plain``: the same preset in the plain-SAC configuration (``SACConfig.plain``);
- ``sb3``: ``stable_baselines3.SAC`` with ``learning_starts=10000``.

Same evaluation for all: every ``--eval-every`` env steps and at the end, ``--eval-episodes``
deterministic episodes on a separate env, episode ``i`` reset with seed ``10000 + seed + i``.
Training speed excludes evaluation time. One process, one torch thread, one run:

    python experiments/sac_mujoco/run.py --agent energy --env Hopper-v5 --seed 0
    python experiments/sac_mujoco/run.py --report     # results.md and curves.png from runs/
    python experiments/sac_mujoco/run.py --compare-deterministic runs/ ...  # actor's mode vs search

``queue.sh`` runs all 18 runs, two at a time. Each run writes ``runs/<agent>_<env>_s<seed>.json``
(and, for ebrl, its TensorBoard events under ``runs/tb/``, read back into the JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import ebrl
from ebrl.agents import SAC, SACConfig
from ebrl.agents.presets import preset
from ebrl.logging import write_report

HERE = Path(__file__).resolve().parent
ENVS = ("HalfCheetah-v5", "Hopper-v5")
AGENTS = ("energy", "plain", "sb3", "energy_n4", "energy_mix0")
# hypothesis probes: the energy policy with changed acting options (same preset otherwise)
VARIANTS = {"energy_n4": {"n_particles": 4}, "energy_mix0": {"anchor_mix": 0.0}}
SEEDS = (0, 1, 2)
COLORS = {
    "energy": "C0",
    "plain": "C2",
    "sb3": "C1",
    "actor_mode": "C3",
    "energy_n4": "C4",
    "energy_mix0": "C5",
}
ZOO_LEARNING_STARTS = 10_000  # sac.yml, HalfCheetah-v4 / Hopper-v4 (&mujoco-defaults)


class Evaluator:
    """Evaluates at multiples of ``every`` env steps; keeps its own time out of training time,
    and notes when training passes ``learning_starts`` (to time the update phase alone)."""

    def __init__(self, args, learning_starts: int):
        self.every, self.episodes = args.eval_every, args.eval_episodes
        self.seed = 10_000 + args.seed
        self.learning_starts = learning_starts
        self.curve: list[dict] = []
        self.eval_s, self.next = 0.0, args.eval_every
        self.start = time.perf_counter()
        self.updates_start: tuple[float, float] | None = None  # (time, eval_s) at learning_starts

    def maybe(self, steps: int, evaluate, diagnostics) -> None:
        if self.updates_start is None and steps >= self.learning_starts:
            self.updates_start = (time.perf_counter(), self.eval_s)
        if steps >= self.next:
            self.now(steps, evaluate, diagnostics)
            self.next += self.every

    def now(self, steps: int, evaluate, diagnostics) -> None:
        start = time.perf_counter()
        result = evaluate(self.episodes, self.seed)
        point = {"step": steps, "mean": result["mean_return"], "std": result["std_return"]}
        self.curve.append({**point, "returns": result["returns"], **diagnostics()})
        self.eval_s += time.perf_counter() - start
        print(json.dumps({k: v for k, v in self.curve[-1].items() if k != "returns"}), flush=True)


def evaluate_batched(predict, env_id: str, n_episodes: int, seed: int) -> dict:
    """:func:`ebrl.agents.evaluate_policy`'s episodes (episode ``i`` reset with ``seed + i``,
    deterministic actions), all ``n_episodes`` stepped together so that one ``predict`` call on
    the batch of their observations acts for all: the same returns in a tenth of the calls
    (deterministic ``predict`` is a function of each observation alone)."""
    envs = [gym.make(env_id) for _ in range(n_episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=int)
    active = np.ones(n_episodes, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        actions = predict(obs[idx])
        for i, action in zip(idx, actions, strict=True):
            obs[i], reward, terminated, truncated, _ = envs[i].step(action)
            returns[i] += float(reward)
            lengths[i] += 1
            active[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "returns": returns.tolist(),
        "lengths": lengths.tolist(),
    }


def run_ebrl(args, evaluator: Evaluator, tb_dir: Path) -> dict:
    values = {**preset("SACConfig", args.env), **learning_starts_override(args)}
    values.update(VARIANTS.get(args.agent, {}))
    config = SACConfig.plain(**values) if args.agent == "plain" else SACConfig(**values)
    agent = SAC(args.env, seed=args.seed, config=config, device="cpu", tensorboard_log=tb_dir)

    def evaluate(n, seed):
        return evaluate_batched(
            lambda o: agent.predict(o, deterministic=True)[0], args.env, n, seed
        )

    def diagnostics():
        # the same networks with the other deterministic action: the actor's mode (plain SAC's)
        # where the config searches, the 10-step mode search where it takes the actor's mode
        # (the MuJoCo presets' mode_steps 0 since 2026-11-30); deterministic evaluation draws
        # nothing from the agent's generator, so training is the same either way
        out = {"temperature": float(agent.temperature)}
        if args.agent.startswith("energy"):
            key, steps = ("mode_search", 10) if agent.config.mode_steps == 0 else ("actor_mode", 0)
            agent.policy.mode_steps = steps
            out[key] = evaluate(args.eval_episodes, evaluator.seed)["mean_return"]
            agent.policy.mode_steps = agent.config.mode_steps
        return out

    def callback(a, info):
        evaluator.maybe(a.num_timesteps, evaluate, diagnostics)

    agent.learn(args.steps, progress_bar=False, callback=callback)
    if not evaluator.curve or evaluator.curve[-1]["step"] != agent.num_timesteps:
        evaluator.now(agent.num_timesteps, evaluate, diagnostics)
    agent.save(tb_dir.with_name(f"{tb_dir.name}.pt"), replay_buffer=False)  # for later checks
    return {"config": dataclasses.asdict(agent.config)}


def run_sb3(args, evaluator: Evaluator) -> dict:
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.callbacks import BaseCallback

    model = SB3SAC(
        "MlpPolicy",
        args.env,
        seed=args.seed,
        device="cpu",
        verbose=0,
        **{"learning_starts": ZOO_LEARNING_STARTS, **learning_starts_override(args)},
    )

    def evaluate(n, seed):
        return evaluate_batched(
            lambda o: model.predict(o, deterministic=True)[0], args.env, n, seed
        )

    def diagnostics():
        logged = model.logger.name_to_value  # the last update's values (cleared at each dump)
        return {
            "temperature": float(torch.exp(model.log_ent_coef.detach())),
            "critic_loss": logged.get("train/critic_loss"),
        }

    class Callback(BaseCallback):
        def _on_step(self) -> bool:
            evaluator.maybe(self.num_timesteps, evaluate, diagnostics)
            return True

    model.learn(args.steps, callback=Callback())
    if not evaluator.curve or evaluator.curve[-1]["step"] != model.num_timesteps:
        evaluator.now(model.num_timesteps, evaluate, diagnostics)
    return {"config": {"learning_starts": model.learning_starts, "batch_size": model.batch_size}}


def learning_starts_override(args) -> dict:
    return {} if args.learning_starts is None else {"learning_starts": args.learning_starts}


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def ebrl_source() -> str:
    """The ebrl code a run used: the snapshot's commit (``queue.sh``) or the checkout's."""
    root = Path(ebrl.__file__).resolve().parents[1]
    if (root / "COMMIT").exists():
        return f"{(root / 'COMMIT').read_text().strip()} (snapshot {root})"
    cmd = ["git", "-C", str(root), "describe", "--always", "--dirty"]
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() + f" ({root})"


def run(args) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    out = Path(args.runs_dir)
    name = f"{args.agent}_{args.env}_s{args.seed}"
    learning_starts = args.learning_starts or ZOO_LEARNING_STARTS
    evaluator = Evaluator(args, learning_starts)
    load_start = os.getloadavg()
    if args.agent == "sb3":
        extra = run_sb3(args, evaluator)
    else:
        extra = run_ebrl(args, evaluator, out / "tb" / name)
    end = time.perf_counter()
    train_s = end - evaluator.start - evaluator.eval_s
    t_ls, eval_ls = evaluator.updates_start
    update_s = end - t_ls - (evaluator.eval_s - eval_ls)
    result = {
        "agent": args.agent,
        "env": args.env,
        "seed": args.seed,
        "steps": args.steps,
        "learning_starts": learning_starts,
        "eval_seed": evaluator.seed,
        "curve": evaluator.curve,
        "final_return": evaluator.curve[-1]["mean"],
        "wall_s": end - evaluator.start,
        "eval_s": evaluator.eval_s,
        "train_s": train_s,
        "steps_per_s": args.steps / train_s,
        "update_phase_steps_per_s": (args.steps - learning_starts) / update_s,
        "load_average": [load_start, os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "ebrl_source": ebrl_source(),
        "torch": torch.__version__,
        **extra,
    }
    if args.agent != "sb3":
        result["scalars"] = read_scalars(out / "tb" / name)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, default=str))
    keys = ("final_return", "wall_s", "steps_per_s", "update_phase_steps_per_s")
    print(json.dumps({"run": name, **{k: result[k] for k in keys}}), flush=True)


# ----------------------------------------------------------------------------- report


def last(run: dict, tag: str) -> float:
    return run["scalars"][tag][-1][1] if tag in run.get("scalars", {}) else float("nan")


def after_start(run: dict, tag: str) -> float:
    """Mean of a logged scalar over the update phase (steps > learning_starts)."""
    points = [v for s, v in run.get("scalars", {}).get(tag, []) if s > run["learning_starts"]]
    return float(np.mean(points)) if points else float("nan")


def training_return(run: dict, last_steps: int) -> float:
    """Mean return of the training episodes that ended in the run's last ``last_steps``."""
    points = run.get("scalars", {}).get("rollout/episode_return", [])
    ends = [v for s, v in points if s > run["steps"] - last_steps]
    return float(np.mean(ends)) if ends else float("nan")


def mean_of(values) -> str:
    """The mean of the finite values, or "-" if none."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "-"
    mean = float(np.mean(values))
    return f"{mean:.0f}" if abs(mean) >= 100 else f"{mean:.3g}"


def mean_sd(xs) -> str:
    xs = np.asarray(xs, dtype=float)
    return f"{xs.mean():.0f} ± {xs.std(ddof=1):.0f}" if len(xs) > 1 else f"{xs.mean():.0f}"


def with_actor_mode(run_: dict) -> dict:
    """``run_`` with every evaluation's ``actor_mode`` return: runs whose deterministic action
    is the actor's mode (``mode_steps`` 0, the MuJoCo presets since 2026-11-30) have it as their
    ``mean`` and score the mode search as ``mode_search``."""
    for point in run_["curve"]:
        if "mode_search" in point:
            point["actor_mode"] = point["mean"]
    return run_


def report(args) -> None:
    paths = sorted(Path(args.runs_dir).glob("*.json"))
    runs = [with_actor_mode(json.loads(p.read_text())) for p in paths]
    runs = [r for r in runs if r["steps"] == args.steps]
    by: dict[tuple[str, str], list[dict]] = {}  # (agent, env) -> its runs by seed
    for r in sorted(runs, key=lambda r: r["seed"]):
        by.setdefault((r["agent"], r["env"]), []).append(r)
    loads = [r["load_average"][0][0] for r in runs] + [r["load_average"][1][0] for r in runs]
    lines = [
        "# SAC on MuJoCo: ebrl's energy policy, ebrl's plain SAC, Stable-Baselines3 (issue 13)",
        "",
        f"{args.steps // 1000}k env steps per run; RL-Zoo's MuJoCo hyperparameters for every "
        "agent (learning_starts 10k, SB3's SAC defaults otherwise). Evaluation every "
        f"{args.eval_every} steps and at the end: {args.eval_episodes} deterministic episodes, "
        "episode i reset with seed 10000 + seed + i, the same for every agent. Final return = "
        "mean of the last evaluation; mean ± sd over seeds (sd with ddof 1); env steps/s of "
        "training alone (evaluation excluded), whole run and update phase (after learning_starts).",
        "",
        "Commands (one process per run, `torch.set_num_threads(1)`, two runs at a time, "
        "`nice -n 10`, on a snapshot of ebrl's committed code): `bash "
        "experiments/sac_mujoco/queue.sh`, i.e. for each seed in 0 1 2, env in HalfCheetah-v5 "
        "Hopper-v5, agent in energy plain sb3: `python experiments/sac_mujoco/run.py --agent "
        "AGENT --env ENV --seed SEED`; then `python experiments/sac_mujoco/run.py --report`.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other work), no "
        f"GPU; torch {torch.__version__}; load average (1 min) at run starts and ends "
        f"{min(loads):.1f} to {max(loads):.1f}. ebrl: {runs[0]['ebrl_source'] if runs else '-'}.",
        "",
    ]
    bar = []
    for env in ENVS:
        if not any(by.get((agent, env)) for agent in AGENTS):
            continue
        sb3 = {r["seed"]: r["final_return"] for r in by.get(("sb3", env), [])}
        lines += [
            f"## {env}",
            "",
            "| agent | final return per seed | mean ± sd | / SB3 (same seeds) | last 3 evals "
            f"({(args.steps - 2 * args.eval_every) // 1000}k-{args.steps // 1000}k) | "
            "env steps/s | update-phase steps/s | wall min/run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for agent in AGENTS:
            rs = by.get((agent, env), [])
            if not rs:
                continue
            finals = [r["final_return"] for r in rs]
            seeds = ", ".join(f"s{r['seed']}: {r['final_return']:.0f}" for r in rs)
            common = [r for r in rs if r["seed"] in sb3]  # ratio over the seeds both have
            ours = np.mean([r["final_return"] for r in common]) if common else None
            ratio = ours / np.mean([sb3[r["seed"]] for r in common]) if common else None
            ratio_text = "-" if ratio is None else f"{ratio:.2f}"
            lines.append(
                f"| {agent} | {seeds} | {mean_sd(finals)} | {ratio_text} | "
                f"{mean_sd([np.mean([p['mean'] for p in r['curve'][-3:]]) for r in rs])} | "
                f"{np.mean([r['steps_per_s'] for r in rs]):.0f} | "
                f"{np.mean([r['update_phase_steps_per_s'] for r in rs]):.0f} | "
                f"{np.mean([r['wall_s'] for r in rs]) / 60:.1f} |"
            )
            if agent == "energy" and common:
                bar.append((env, ratio, [r["seed"] for r in common]))
        lines.append("")
    if bar:
        lines += [
            "**Bar** (energy mean final return >= 0.95x SB3's on both envs, >= SB3's on one):"
        ]
        for env, ratio, seeds in bar:
            lines.append(f"- {env}: {ratio:.2f}x (seeds {seeds})")
        both = len(bar) == len(ENVS) and all(r >= 0.95 for _, r, _ in bar)
        one = any(r >= 1.0 for _, r, _ in bar)
        lines += [
            f"- >= 0.95x on both: {'met' if both else 'not met'}; >= 1x on one: "
            f"{'met' if one else 'not met'}",
            "",
        ]
    lines += [diagnostics_table(by), *probe_table(by, Path(args.runs_dir)), ""]
    lines += ["![diagnostics](diagnostics.png)", "", "![curves](curves.png)"]
    write_report(HERE / "results.md", lines)
    print("\n".join(lines))
    plot(by)


def saved_agent_and_states(run: dict, runs_dir: Path) -> tuple[SAC, torch.Tensor] | None:
    """A run's saved final agent (``runs/tb/<run>.pt``, written by the ebrl code the run used:
    put it on PYTHONPATH) and the observations ``[T, o]`` of one evaluation episode (the run's
    evaluation seed) acted by its actor's mode; ``None`` when the networks were not kept."""
    path = runs_dir / "tb" / f"{run['agent']}_{run['env']}_s{run['seed']}.pt"
    if not path.exists():
        return None
    agent = SAC.load(path, device="cpu")
    env = gym.make(run["env"])
    obs, states, done = env.reset(seed=run["eval_seed"])[0], [], False
    with torch.no_grad():
        while not done:
            states.append(obs)
            action = agent.actor(agent.obs_tensor(obs)).median
            obs, _, terminated, truncated, _ = env.step(agent.to_env(action)[0])
            done = terminated or truncated
    return agent, agent.obs_tensor(np.stack(states))


def probe_mode_search(run: dict, runs_dir: Path) -> dict | None:
    """What the 10-step mode search does to the energy agent's final actions, on the states of
    one evaluation episode acted by the actor's mode: the RMS shift per action coordinate, the
    fraction of coordinates at the box's bounds (|a| > 0.99) with and without it, and the
    critic's predicted gain ``min Q(s, a_mode) - min Q(s, a_actor)``. Needs the saved networks
    (``runs/tb/<run>.pt``, written by the ebrl code the run used: put it on PYTHONPATH)."""
    loaded = saved_agent_and_states({**run, "agent": "energy"}, runs_dir)
    if loaded is None:
        return None
    agent, obs_t = loaded
    with torch.no_grad():
        actor = agent.actor(obs_t).median
    agent.policy.mode_steps = 10  # the search, whatever the run's preset acted with
    mode = agent.act(obs_t, deterministic=True)[0]
    with torch.no_grad():
        gain = agent.nets.utility(obs_t, mode[None])[0] - agent.nets.utility(obs_t, actor[None])[0]
    return {
        "shift": float((mode - actor).pow(2).mean().sqrt()),
        "bounds_mode": float((mode.abs() > 0.99).float().mean()),
        "bounds_actor": float((actor.abs() > 0.99).float().mean()),
        "q_gain": float(gain.mean()),
    }


def probe_acting_spread(run: dict, runs_dir: Path, repeats: int = 64) -> dict | None:
    """How the energy agent's stochastic actions spread compared with its actor's own draws, on
    its final networks and the states of one evaluation episode acted by the actor's mode:
    the standard deviation of the taken action per coordinate (over ``repeats`` acting calls
    per state, averaged over states and coordinates) and the critic's mean ``min Q`` of the
    taken actions, for the agent's acting step and for the actor alone (plain SAC's acting);
    and the probability that the acting step takes one of the proposal's uniform particles
    (the ``anchor_mix`` share of the 16: its resampling weight summed over them)."""
    from ebrl.agents.sac import importance_step

    loaded = saved_agent_and_states(run, runs_dir)
    if loaded is None:
        return None
    agent, obs_t = loaded
    torch.manual_seed(0)
    n, mix = agent.config.n_particles, agent.config.anchor_mix
    with torch.no_grad():
        taken = torch.stack([agent.act(obs_t, deterministic=False)[0] for _ in range(repeats)])
        mean, std = agent.nets.actor.gaussian(obs_t)
        actor = torch.tanh(mean + std * torch.randn(repeats, *mean.shape))
        q_taken = agent.nets.utility(obs_t, taken).mean()
        q_actor = agent.nets.utility(obs_t, actor).mean()
        uniform_taken = []
        for _ in range(16):
            shape = (n, obs_t.shape[0], agent.act_dim)
            pick = torch.rand(*shape[:2], 1)
            _, log_w = importance_step(
                agent.nets, obs_t, agent.temperature, torch.randn(shape),
                2 * torch.rand(shape) - 1, pick, mix, agent._pick_threshold,
            )  # fmt: skip
            from_uniform = (pick[..., 0] >= agent._pick_threshold) if mix > 0 else 0 * pick[..., 0]
            uniform_taken.append((torch.softmax(log_w, 0) * from_uniform).sum(0).mean())
    return {
        "sd_taken": float(taken.std(0).mean()),
        "sd_actor": float(actor.std(0).mean()),
        "q_taken_minus_actor": float(q_taken - q_actor),
        "uniform_taken": float(torch.stack(uniform_taken).mean()),
    }


def probe_table(by: dict, runs_dir: Path) -> list[str]:
    spread = []
    for env in ENVS:
        for agent in ("energy", "energy_n4", "energy_mix0"):
            probes = [probe_acting_spread(r, runs_dir) for r in by.get((agent, env), [])]
            probes = [p for p in probes if p is not None]
            if probes:
                cells = [mean_of([p[k] for p in probes]) for k in probes[0]]
                spread.append(f"| {env} | {agent} | {len(probes)} | {' | '.join(cells)} |")
    if spread:
        spread = [
            "",
            "How the energy agent's stochastic actions spread (`probe_acting_spread`: its final "
            "networks, the states of one evaluation episode acted by the actor's mode, 64 acting "
            "calls per state; mean over the seeds whose networks were kept): the sd of the taken "
            "action per coordinate, the sd of the actor's own draws (plain SAC's acting) on the "
            "same states, the critic's mean min Q of the taken actions less the actor's, and "
            "how often the acting step takes one of the proposal's uniform particles (10% of "
            "the 16 with the preset's `anchor_mix` 0.1; none with 0):",
            "",
            "| env | agent | seeds | sd, taken | sd, actor alone | Q taken - Q actor | "
            "P(uniform particle taken) |",
            "|---|---|---|---|---|---|---|",
            *spread,
        ]
    rows = []
    for env in ENVS:
        probes = [probe_mode_search(r, runs_dir) for r in by.get(("energy", env), [])]
        probes = [p for p in probes if p is not None]
        if probes:
            cells = [mean_of([p[k] for p in probes]) for k in probes[0]]
            rows.append(f"| {env} | {len(probes)} | {' | '.join(cells)} |")
    if not rows:
        return spread
    return [
        *spread,
        "",
        "The mode search on the energy agent's final networks (`probe_mode_search`: states of "
        "one evaluation episode acted by the actor's mode; mean over the seeds whose networks "
        "were kept):",
        "",
        "| env | seeds | RMS action shift | at bounds, mode search | at bounds, actor's mode | "
        "predicted Q gain |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def diagnostics_table(by: dict) -> str:
    rows = [
        "## What the energy policy changes: diagnostics (mean over seeds)",
        "",
        "ESS: the acting sampler's effective sample size out of 16 (`train/ess`), mean over the "
        "update phase and its last logged value; temperature T, critic loss, `q_mean` and the "
        "actor's entropy at the end (SB3: its `ent_coef` and last critic loss); `actor mode`: the "
        "energy agent's final networks evaluated with the actor's mode as the deterministic "
        "action (plain SAC's), instead of the 10-step mode search; training return: mean "
        "return of the training episodes (the acting policy: the sampler's draws) that ended "
        "in the last 10k steps.",
        "",
        "| env | agent | final return | actor mode | ESS (mean) | ESS (end) | T (end) | "
        "critic loss (end) | q_mean (end) | entropy (end) | training return (last 10k) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    columns = [
        lambda r: r["final_return"],
        lambda r: r["curve"][-1].get("actor_mode"),
        lambda r: after_start(r, "train/ess"),
        lambda r: last(r, "train/ess"),
        lambda r: r["curve"][-1]["temperature"],
        lambda r: r["curve"][-1].get("critic_loss", last(r, "train/critic_loss")),
        lambda r: last(r, "train/q_mean"),
        lambda r: last(r, "train/entropy"),
        lambda r: training_return(r, 10_000),
    ]
    for env in ENVS:
        for agent in AGENTS:
            rs = by.get((agent, env), [])
            cells = [mean_of([f(r) for r in rs]) for f in columns]
            if rs:
                rows.append(f"| {env} | {agent} | {' | '.join(cells)} |")
    return "\n".join(rows)


def band(ax, xs, ys, label: str, **style) -> None:
    """Mean over seeds (rows of ``ys``) with a ± sd band."""
    ys = np.asarray(ys, dtype=float)
    mean = ys.mean(0)
    sd = ys.std(0, ddof=1) if len(ys) > 1 else np.zeros_like(mean)
    ax.plot(xs, mean, label=f"{label} ({len(ys)} runs)", **style)
    ax.fill_between(xs, mean - sd, mean + sd, alpha=0.15, color=ax.lines[-1].get_color())


def curve(rs: list[dict], key: str) -> tuple[list[int], list[list[float]]]:
    """An evaluation-time quantity of every run, over the steps they all reached."""
    n = min(len(r["curve"]) for r in rs)
    return [p["step"] for p in rs[0]["curve"][:n]], [[p[key] for p in r["curve"][:n]] for r in rs]


def plot(by: dict) -> None:
    """curves.png: evaluation return of the three agents; diagnostics.png: the energy agent's
    return by mode search and by the actor's mode beside plain SAC's, the temperature of all
    three, and the acting sampler's ESS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ENVS), figsize=(11, 4))
    diag, daxes = plt.subplots(3, len(ENVS), figsize=(11, 10), sharex=True)
    for i, env in enumerate(ENVS):
        ax, (ret, temp, ess) = axes[i], daxes[:, i]
        for agent in AGENTS:
            rs = by.get((agent, env), [])
            if not rs:
                continue
            style = {"color": COLORS[agent], "marker": "o", "ms": 3}
            band(ax, *curve(rs, "mean"), agent, **style)
            band(temp, *curve(rs, "temperature"), agent, **style)
            if agent != "sb3":
                band(ret, *curve(rs, "mean"), agent, **style)
            if agent == "energy":
                style = {"color": COLORS["actor_mode"], "ls": "--", "marker": "x"}
                band(ret, *curve(rs, "actor_mode"), "energy, actor's mode", **style)
                points = [[v for s, v in r["scalars"].get("train/ess", [])] for r in rs]
                n = min(len(p) for p in points)
                steps = [s for s, _ in rs[0]["scalars"]["train/ess"][:n]]
                band(ess, steps, [p[:n] for p in points], "energy", color=COLORS[agent])
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ret.set_title(env)
        ret.set_ylabel("evaluation return")
        temp.set_ylabel("temperature T (SB3: ent_coef)")
        temp.set_yscale("log")
        ess.set_ylabel("acting ESS (of 16 particles)")
        ess.set_xlabel("env steps")
        for a in (ax, ret, temp, ess):
            a.grid(alpha=0.3)
            if a.lines:
                a.legend(fontsize=8)
    axes[0].set_ylabel("evaluation return (mean ± sd over seeds)")
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=110)
    diag.tight_layout()
    diag.savefig(HERE / "diagnostics.png", dpi=90)


def compare_deterministic(dirs: list[Path]) -> None:
    """Prints, for every energy run in ``dirs``, its evaluations with the actor's mode against
    those with the 10-step mode search (both are in each run's curve: the config's own action as
    ``mean``, the other as ``actor_mode`` or ``mode_search``), per run and per env; and plots
    both, beside SB3's runs in the same folders, in ``deterministic.png``."""
    print("| runs | run | final, search | final, actor's mode | evals where the actor's mode "
          "scored higher | mean difference (actor - search) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    total: dict[str, list[float]] = {}
    energy: dict[str, list[dict]] = {}
    sb3: dict[str, list[dict]] = {}
    for folder in dirs:
        for path in sorted(folder.glob("sb3_*.json")):
            run_ = json.loads(path.read_text())
            sb3.setdefault(run_["env"], []).append(run_)
        for path in sorted(folder.glob("energy_*.json")):
            run_ = with_actor_mode(json.loads(path.read_text()))
            if "mode_search" not in run_["curve"][0] and "actor_mode" not in run_["curve"][0]:
                continue
            for point in run_["curve"]:
                point.setdefault("mode_search", point["mean"])
            pairs = [(p["mode_search"], p["actor_mode"]) for p in run_["curve"]]
            diffs = [actor - search for search, actor in pairs]
            total.setdefault(run_["env"], []).extend(diffs)
            if run_["agent"] == "energy":
                energy.setdefault(run_["env"], []).append(run_)
            wins = f"{sum(d > 0 for d in diffs)} / {len(diffs)}"
            finals = f"{pairs[-1][0]:.0f} | {pairs[-1][1]:.0f}"
            print(f"| {folder.name} | {path.stem} | {finals} | {wins} | {np.mean(diffs):+.0f} |")
    for env, diffs in total.items():
        wins = f"{sum(d > 0 for d in diffs)} / {len(diffs)}"
        print(f"| all | {env} | | | {wins} | {np.mean(diffs):+.0f} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = [env for env in ENVS if env in energy]
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        rs = energy[env]
        band(ax, *curve(rs, "actor_mode"), "energy, actor's mode", color=COLORS["actor_mode"])
        band(ax, *curve(rs, "mode_search"), "energy, 10-step mode search", color=COLORS["energy"])
        if env in sb3:
            band(ax, *curve(sb3[env], "mean"), "SB3 SAC", color=COLORS["sb3"])
        ax.set_title(f"{env}: the same energy runs evaluated both ways")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("deterministic evaluation return (mean ± sd)")
    fig.tight_layout()
    fig.savefig(HERE / "deterministic.png", dpi=100)


def bootstrap_ratio(xs: np.ndarray, ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """95% bootstrap interval of ``mean(xs) / mean(ref)``: seeds resampled within each group,
    10k draws."""
    draws = [
        rng.choice(xs, len(xs)).mean() / rng.choice(ref, len(ref)).mean() for _ in range(10_000)
    ]
    return np.percentile(draws, [2.5, 97.5])


def load_runs(dirs: list[Path], agents: tuple[str, ...]) -> dict[tuple[str, str, int], dict]:
    """The runs of ``agents`` in ``dirs`` by (agent, env, seed) (a seed run in several folders
    counts once: the last folder given wins), each with its ``folder`` name; energy runs scored
    as the MuJoCo presets act deterministically: each evaluation's ``mean`` is its
    ``actor_mode`` return where the run recorded one."""
    runs = {}
    for folder in dirs:
        for path in sorted(folder.glob("*.json")):
            run_ = json.loads(path.read_text())
            if run_.get("agent") not in agents:
                continue
            if run_["agent"].startswith("energy"):
                for point in with_actor_mode(run_)["curve"]:
                    point["mean"] = point.get("actor_mode", point["mean"])
            runs[(run_["agent"], run_["env"], run_["seed"])] = run_ | {"folder": folder.name}
    return runs


def pooled(dirs: list[Path], agents: tuple[str, ...] = ("energy", "plain", "sb3")) -> None:
    """Prints, per env, every seed's final return and mean of the last 3 evaluations for
    ``agents`` over all ``dirs`` (a seed run in several folders counts once: the last folder
    given wins), with the energy runs scored as the MuJoCo presets now act deterministically
    (the actor's mode, recorded in every energy run), the pooled mean ± sd, the ratio to SB3's
    pooled mean with a 95% bootstrap interval (seeds resampled within each agent, 10k draws,
    numpy seed 0), and how many seeds end below 400; plots their curves in ``pooled.png``."""
    runs = {
        key: run_
        for key, run_ in load_runs(dirs, agents).items()
        # energy runs from before the runs recorded the actor's mode are left out
        if key[0] != "energy" or "actor_mode" in run_["curve"][-1]
    }
    rng = np.random.default_rng(0)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ENVS), figsize=(11, 4))
    for ax, env in zip(axes, ENVS, strict=True):
        for agent in agents:
            rs = [r for k, r in runs.items() if k[0] == agent and k[1] == env]
            if rs:
                band(ax, *curve(rs, "mean"), agent, color=COLORS[agent], marker="o", ms=3)
        ax.set_title(f"{env}: every seed run")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("deterministic evaluation return (mean ± sd)")
    fig.tight_layout()
    fig.savefig(HERE / "pooled.png", dpi=100)
    for env in ENVS:
        print(f"\n{env}\n")
        print("| agent | seeds | final return per seed | final, mean ± sd | / SB3 [95% CI] "
              "| below 400 | last 3 evals, mean ± sd | / SB3 |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        table = {}
        for agent in agents:
            mine = sorted((k[2], r) for k, r in runs.items() if k[0] == agent and k[1] == env)
            if mine:
                finals = np.array([r["curve"][-1]["mean"] for _, r in mine])
                last3 = np.array([np.mean([p["mean"] for p in r["curve"][-3:]]) for _, r in mine])
                table[agent] = (mine, finals, last3)
        if "sb3" not in table:
            continue
        _, sb3_finals, sb3_last3 = table["sb3"]
        for agent, (mine, finals, last3) in table.items():
            lo, hi = bootstrap_ratio(finals, sb3_finals, rng)
            per_seed = ", ".join(f"s{seed}: {r['curve'][-1]['mean']:.0f}" for seed, r in mine)
            print(
                f"| {agent} | {len(mine)} | {per_seed} | {mean_sd(finals)} | "
                f"{finals.mean() / sb3_finals.mean():.2f} [{lo:.2f}, {hi:.2f}] | "
                f"{int((finals < 400).sum())} / {len(finals)} | {mean_sd(last3)} | "
                f"{last3.mean() / sb3_last3.mean():.2f} |"
            )


def dense(
    dirs: list[Path], agents: tuple[str, ...] = ("energy", "sb3"), plot: str = "dense.png"
) -> None:
    """For runs evaluated every 1000 steps (``--eval-every 1000``, e.g. to 60k): whether the
    bar's one evaluation at 50k is where a run stays or a passing spike. Prints, per env and
    agent, the 50k evaluation, the mean of each seed's evaluations over 45k-55k and over
    41k-60k (mean ± sd over seeds, and each over SB3's with a 95% bootstrap interval as
    ``pooled``'s), and per seed the 50k evaluation less the mean of its neighbours at 49k and
    51k, its rank among the 20 evaluations 41k-60k and the RMS change from one evaluation to
    the next there (how far one evaluation moves); plots every seed and the mean in
    ``plot`` (next to this script). Energy runs are scored as the presets act (the actor's mode)."""
    runs = {}  # (agent, env, seed) -> {step: return}
    for key, run_ in load_runs(dirs, agents).items():
        by_step = {p["step"]: p["mean"] for p in run_["curve"]}
        if {49_000, 50_000, 51_000} <= set(by_step):
            runs[key] = by_step

    def window(by_step: dict, lo: int, hi: int) -> float:
        return float(np.mean([v for k, v in by_step.items() if lo <= k <= hi]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({k[1] for k in runs})
    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        print(f"\n{env}\n")
        print("| agent | seeds | at 50k | / SB3 [95% CI] | mean 45k-55k | / SB3 [95% CI] "
              "| mean 41k-60k | / SB3 [95% CI] |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        summary, spikes = {}, []
        for agent in agents:
            mine = sorted((k[2], r) for k, r in runs.items() if k[0] == agent and k[1] == env)
            if not mine:
                continue
            at50 = np.array([r[50_000] for _, r in mine])
            mid = np.array([window(r, 45_000, 55_000) for _, r in mine])
            wide = np.array([window(r, 41_000, 60_000) for _, r in mine])
            summary[agent] = (len(mine), at50, mid, wide)
            for seed, r in mine:
                later = [r[k] for k in sorted(r) if 41_000 <= k <= 60_000]
                rank = 1 + sum(v > r[50_000] for v in later)
                jump = r[50_000] - (r[49_000] + r[51_000]) / 2
                rms = np.sqrt(np.mean(np.diff(later) ** 2))
                spikes.append(f"| {agent} | {seed} | {r[50_000]:.0f} | {jump:+.0f} | "
                              f"{rank} of {len(later)} | {rms:.0f} |")  # fmt: skip
            xs = sorted(set.intersection(*(set(r) for _, r in mine)))
            ys = np.array([[r[x] for x in xs] for _, r in mine])
            for row in ys:
                ax.plot(xs, row, color=COLORS[agent], alpha=0.2, lw=0.8)
            band(ax, xs, ys, agent, color=COLORS[agent], lw=2)
        ref, rng = summary.get("sb3"), np.random.default_rng(0)
        for agent, (n, *measures) in summary.items():
            cells = []
            for i, values in enumerate(measures, start=1):
                if ref is None:
                    cells.append(f"{mean_sd(values)} | -")
                    continue
                lo, hi = bootstrap_ratio(values, ref[i], rng)
                ratio = values.mean() / ref[i].mean()
                cells.append(f"{mean_sd(values)} | {ratio:.2f} [{lo:.2f}, {hi:.2f}]")
            print(f"| {agent} | {n} | {' | '.join(cells)} |")
        print("\n| agent | seed | at 50k | 50k less mean(49k, 51k) | rank of 50k in 41k-60k "
              "| RMS change between consecutive evaluations, 41k-60k |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        print("\n".join(spikes))
        ax.axvline(50_000, color="k", ls=":", lw=1)
        ax.set_title(f"{env}: evaluation every 1000 steps (thin: seeds)")
        ax.set_xlabel("env steps")
        ax.set_ylabel("deterministic evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / plot, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=AGENTS)
    parser.add_argument("--env", choices=ENVS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--learning-starts", type=int, default=None,
                        help="override RL-Zoo's 10k (only for timing runs)")  # fmt: skip
    parser.add_argument("--runs-dir", default=str(HERE / "runs"))
    parser.add_argument("--report", action="store_true", help="write results.md and curves.png")
    parser.add_argument("--compare-deterministic", nargs="+", type=Path, metavar="RUNS_DIR",
                        help="print the actor's mode against the mode search, per run")  # fmt: skip
    parser.add_argument("--pooled", nargs="+", type=Path, metavar="RUNS_DIR",
                        help="every seed in these folders pooled, per env and agent")  # fmt: skip
    parser.add_argument("--dense", nargs="+", type=Path, metavar="RUNS_DIR",
                        help="runs evaluated every 1000 steps: is 50k a spike?")  # fmt: skip
    parser.add_argument("--dense-plot", default="dense.png",
                        help="file name of --dense's plot, next to this script")  # fmt: skip
    args = parser.parse_args()
    if args.dense:
        dense(args.dense, plot=args.dense_plot)
    elif args.pooled:
        pooled(args.pooled)
    elif args.compare_deterministic:
        compare_deterministic(args.compare_deterministic)
    elif args.report:
        report(args)
    elif args.agent is None or args.env is None:
        parser.error("--agent and --env are needed (or --report)")
    else:
        run(args)


if __name__ == "__main__":
    main()
