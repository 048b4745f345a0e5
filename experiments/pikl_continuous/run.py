"""Continuous piKL on LunarLanderContinuous-v3: SAC anchored to a behaviour-cloned human.

The "human" is gymnasium's continuous LunarLander heuristic with Gaussian throttle noise
(``ebrl.data.demos.lunar_lander_demos(continuous=True, noise_std=0.5)``). Per seed:

1. record ``--demo-episodes`` human episodes (demo seed = the seed) and fit a ``GaussianAnchor``
   to them by behaviour cloning (``fit_behaviour_cloning``, library defaults): the BC agent;
2. train unanchored SAC and SAC anchored to that BC anchor at each ``--kl-targets`` value
   (``SACConfig.target_kl``, the automatic temperature's KL target), all with the env's preset
   and the same ``--steps``;
3. measure every agent the same way: the return of its sampled policy over ``--eval-episodes``
   episodes with fixed reset seeds (and its deterministic return when
   ``--deterministic-episodes`` > 0); the log-likelihood of held-out human actions under the
   policy (``agent.policy.log_prob``, the policy's own importance estimate of ``log Z`` from
   its acting sampler's particles drawn from its acting proposal; also with 256 particles on the
   first 2000 held-out states as a check); ``KL(pi || anchor)`` on the held-out human states
   (``agent.policy.kl_to_anchor``: to the BC anchor for anchored agents, to the uniform for
   unanchored SAC) and ``KL(pi || BC)`` for every agent by Monte Carlo (draws of the policy,
   ``log pi - log BC`` at them).

The held-out human data are ``--heldout-episodes`` episodes recorded with demo seed 1000 (the
same for every seed). Human actions are clipped to the box; like the BC fit, the
log-likelihoods are of the actions pulled 1e-3 (of the half-width) inside it (see
``fit_behaviour_cloning``'s ``boundary_margin``): at the bound itself a squashed density has a
spike worth ~16 nats that would swamp every comparison.

Each (agent, seed) writes ``runs/<agent>_seed<seed>.json`` and is skipped when that file
exists, so a killed study continues. ``--report`` (no training) writes the table to stdout
and the PNG. The issue's budget is ``--steps 100000``::

    nice -n 5 python experiments/pikl_continuous/run.py --steps 20000 --seeds 0 1 2 --kl-targets 1
    python experiments/pikl_continuous/run.py --report
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ENV_ID = "LunarLanderContinuous-v3"
EVAL_SEED = 10_000
HELDOUT_DEMO_SEED = 1000
MARGIN = 1e-3  # fit_behaviour_cloning's default boundary_margin
CHECK_STATES = 2000  # held-out states of the 256-particle log-likelihood check


def human_demos(n_episodes: int, noise_std: float, seed: int):
    from ebrl.data.demos import lunar_lander_demos

    return lunar_lander_demos(n_episodes, continuous=True, noise_std=noise_std, seed=seed)


def pulled_inside(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    pad = MARGIN * (high - low) / 2
    return np.clip(actions, low + pad, high - pad)


def fit_bc(demos, seed: int, family: str = "squashed"):
    import gymnasium as gym

    from ebrl.policies import GaussianAnchor, TruncatedGaussianAnchor, fit_behaviour_cloning

    env = gym.make(ENV_ID)
    torch.manual_seed(seed)
    cls = {"squashed": GaussianAnchor, "truncated": TruncatedGaussianAnchor}[family]
    anchor = cls(env.observation_space.shape[0], env.action_space)
    env.close()
    report = fit_behaviour_cloning(anchor, demos.observations, demos.actions, seed=seed)
    return anchor, report


def run_act(act, episodes: int) -> dict:
    from ebrl.agents import evaluate_policy

    out = evaluate_policy(act, ENV_ID, episodes, EVAL_SEED)
    return {"mean": out["mean_return"], "std": out["std_return"], "returns": out["returns"]}


def measure_agent(agent, bc_anchor, heldout, generator_seed: int) -> dict:
    """Human log-likelihood and KLs on the held-out human states, all in the normalised box."""
    from ebrl.samplers import ImportanceSampler

    obs = torch.as_tensor(heldout["obs"], device=agent.device)
    low, high = agent.action_space.low, agent.action_space.high
    acts = pulled_inside(heldout["actions"], low, high)
    center, half = (high + low) / 2, (high - low) / 2
    norm = torch.as_tensor((acts - center) / half, dtype=torch.float32, device=agent.device)
    log_half = float(np.log(half).sum())  # env-unit density = box density - log|half width|
    policy = agent.policy
    own_sampler = policy.sampler
    n_own = getattr(own_sampler, "n_particles", None)
    out = {"n_particles_own": n_own}
    with torch.no_grad():
        proposal = agent.nets.proposal(obs, agent.config.anchor_mix)
        g = torch.Generator().manual_seed(generator_seed)
        lp = policy.log_prob(obs, norm, proposal=proposal, generator=g) - log_half
        out["human_loglik"] = float(lp.mean())
        kl = policy.kl_to_anchor(obs, proposal=proposal, generator=g)
        out["kl_to_own_anchor"] = float(kl.mean())
        # KL(pi || BC) by Monte Carlo: draws of the policy, log pi - log BC at them
        draws = policy.sample(obs, 8, proposal=proposal, generator=g).samples  # [8, B, d]
        log_pi = policy.log_prob(obs, draws, proposal=proposal, generator=g)
        env_draws = torch.as_tensor(center, dtype=torch.float32) + draws * torch.as_tensor(
            half, dtype=torch.float32
        )
        lo = torch.as_tensor(low + MARGIN * half, dtype=torch.float32)
        hi = torch.as_tensor(high - MARGIN * half, dtype=torch.float32)
        log_bc = bc_anchor(obs).log_prob(torch.minimum(torch.maximum(env_draws, lo), hi))
        out["kl_to_bc_mc"] = float((log_pi - log_half - log_bc).mean())
        try:  # the check on the first CHECK_STATES states only (CPU time)
            policy.sampler = ImportanceSampler(256, bounds=(-1.0, 1.0))
            g = torch.Generator().manual_seed(generator_seed)
            k = CHECK_STATES
            sub = agent.nets.proposal(obs[:k], agent.config.anchor_mix)
            lp256 = policy.log_prob(obs[:k], norm[:k], proposal=sub, generator=g) - log_half
            out["human_loglik_own_same_states"] = float(lp[:k].mean())
            out["human_loglik_256"] = float(lp256.mean())
        finally:
            policy.sampler = own_sampler
    return out


def bc_measures(anchor, heldout) -> dict:
    import gymnasium as gym

    env = gym.make(ENV_ID)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    acts = pulled_inside(heldout["actions"], low, high)
    with torch.no_grad():
        lp = anchor(torch.as_tensor(heldout["obs"])).log_prob(torch.as_tensor(acts))
    return {"human_loglik": float(lp.mean()), "kl_to_bc_mc": 0.0}


def anchor_actor(anchor, mode: bool, seed: int):
    g = torch.Generator().manual_seed(seed)

    def act(obs):
        obs_t = torch.as_tensor(obs, dtype=torch.float32)[None]
        with torch.no_grad():
            dist = anchor(obs_t)
            if mode:
                return dist.median[0].numpy()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**62, (), generator=g)))
                return dist.sample()[0].numpy()

    return act


def run_seed(seed: int, args, heldout, runs: Path) -> None:
    from ebrl import SAC
    from ebrl.agents import SACConfig
    from ebrl.data.demos import lunar_lander_heuristic

    todo = [*([] if args.skip_sac else ["sac"]), *(f"kl{t:g}" for t in args.kl_targets)]
    names = ["human", "bc", *todo]
    if all((runs / f"{n}_seed{seed}.json").is_file() for n in names):
        return
    start = time.perf_counter()
    demos = human_demos(args.demo_episodes, args.noise_std, seed)
    anchor, report = fit_bc(demos, seed, args.anchor_family)
    bc_s = time.perf_counter() - start
    common = {"seed": seed, "steps": args.steps, "eval_episodes": args.eval_episodes}
    if not (runs / f"human_seed{seed}.json").is_file():
        rng = np.random.default_rng(seed + 50_000)

        def human(obs):
            a = lunar_lander_heuristic(obs, continuous=True) + args.noise_std * rng.normal(size=2)
            return np.clip(a, -1.0, 1.0).astype(np.float32)

        record = {
            "agent": "human",
            **common,
            "steps": 0,
            "demo_returns_recorded": demos.returns.tolist(),
            "sampled": run_act(human, args.eval_episodes),
        }
        (runs / f"human_seed{seed}.json").write_text(json.dumps(record, indent=1))
    if not (runs / f"bc_seed{seed}.json").is_file():
        record = {
            "agent": "bc",
            **common,
            "steps": 0,
            "demo_episodes": args.demo_episodes,
            "anchor_family": args.anchor_family,
            "demo_steps": len(demos),
            "bc_heldout_nll": report.heldout_nll,
            "bc_epochs": report.epochs_run,
            "bc_wall_s": round(bc_s, 1),
            "sampled": run_act(anchor_actor(anchor, False, seed), args.eval_episodes),
            "deterministic": run_act(anchor_actor(anchor, True, seed), args.eval_episodes),
            **bc_measures(anchor, heldout),
        }
        (runs / f"bc_seed{seed}.json").write_text(json.dumps(record, indent=1))
    for name in todo:
        path = runs / f"{name}_seed{seed}.json"
        if path.is_file():
            continue
        target = None if name == "sac" else float(name[2:])
        config = SACConfig.for_env(ENV_ID, target_kl=target)
        start = time.perf_counter()
        agent = SAC(
            ENV_ID,
            anchor=None if target is None else copy.deepcopy(anchor),
            seed=seed,
            device="cpu",
            config=config,
        )
        agent.learn(args.steps, progress_bar=False)
        train_s = time.perf_counter() - start
        record = {
            "agent": name,
            **common,
            "target_kl": target,
            "temperature": float(agent.temperature),
            "train_wall_s": round(train_s, 1),
            "sampled": agent.evaluate(args.eval_episodes, deterministic=False, seed=EVAL_SEED),
        }
        if args.deterministic_episodes > 0:
            record["deterministic"] = agent.evaluate(
                args.deterministic_episodes, deterministic=True, seed=EVAL_SEED
            )
        record.update(measure_agent(agent, anchor, heldout, seed))
        record["wall_s"] = round(time.perf_counter() - start, 1)
        for key in ("sampled", "deterministic"):
            if key in record:
                r = record[key]
                record[key] = {
                    "mean": r["mean_return"],
                    "std": r["std_return"],
                    "returns": r.get("returns"),
                }
        path.write_text(json.dumps(record, indent=1))
        print(json.dumps({k: record[k] for k in ("agent", "seed", "wall_s")}), flush=True)


# ----------------------------------------------------------------------------- report


def png_path(runs: Path) -> Path:
    """The figure beside this script: ``return_vs_human_loglik.png`` for the default runs
    directory, ``return_vs_human_loglik_<dir>.png`` for another (another budget's study)."""
    if runs.resolve() == (HERE / "runs").resolve():
        return HERE / "return_vs_human_loglik.png"
    return HERE / f"return_vs_human_loglik_{runs.name}.png"


def report(runs: Path, png: Path) -> None:
    records = [json.loads(p.read_text()) for p in sorted(runs.glob("*_seed*.json"))]
    if not records:
        raise SystemExit(f"no runs in {runs}")
    agents: dict[str, list[dict]] = {}
    for r in records:
        agents.setdefault(r["agent"], []).append(r)
    order = sorted(agents, key=lambda a: {"human": 0, "bc": 1, "sac": 2}.get(a, 3))

    def fmt(xs):
        xs = [x for x in xs if x is not None]
        if not xs:
            return "-"
        return f"{np.mean(xs):.1f} ± {np.std(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"

    lines = [
        "| agent | seeds | episodes | return (sampled), mean ± sd over seeds | per seed | "
        "deterministic | human log-lik per seed: own sampler, all held-out states (own / 256 "
        "particles on the first 2000) | KL(pi‖own anchor) | KL(pi‖BC) MC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in order:
        rs = sorted(agents[a], key=lambda r: r["seed"])
        ret = [r["sampled"]["mean"] for r in rs]
        det = [r["deterministic"]["mean"] for r in rs if "deterministic" in r]
        ll = [r.get("human_loglik") for r in rs]
        ll256 = [r.get("human_loglik_256") for r in rs]
        ll_same = [r.get("human_loglik_own_same_states") for r in rs]
        kl = [r.get("kl_to_own_anchor") for r in rs]
        klbc = [r.get("kl_to_bc_mc") for r in rs]
        per = ", ".join(f"{r['seed']}: {x:.1f}" for r, x in zip(rs, ret, strict=True))
        ll_s = "-" if ll[0] is None else ", ".join(f"{x:.2f}" for x in ll)
        if ll256[0] is not None:
            pairs = [
                f"{x:.2f}" if y is None else f"{y:.2f} / {x:.2f}"
                for x, y in zip(ll256, ll_same, strict=True)
            ]
            ll_s += " (" + ", ".join(pairs) + ")"
        kl_s = "-" if kl[0] is None else ", ".join(f"{x:.2f}" for x in kl)
        klbc_s = "-" if klbc[0] is None else ", ".join(f"{x:.2f}" for x in klbc)
        episodes = "/".join(sorted({str(r["eval_episodes"]) for r in rs}))
        lines.append(
            f"| {a} | {len(rs)} | {episodes} | {fmt(ret)} | {per} | {fmt(det)} | {ll_s} | {kl_s} "
            f"| {klbc_s} |"
        )
    print("\n".join(lines))

    # the bar, per seed: an anchored agent beats human and unanchored SAC, log-lik within 0.5
    by_seed: dict[int, dict[str, dict]] = {}
    for r in records:
        by_seed.setdefault(r["seed"], {})[r["agent"]] = r
    print()
    for seed, rs in sorted(by_seed.items()):
        if not {"human", "bc", "sac"} <= set(rs):
            continue
        ok = []
        for a, r in rs.items():
            if not a.startswith("kl"):
                continue
            beats = (
                r["sampled"]["mean"] > rs["human"]["sampled"]["mean"]
                and r["sampled"]["mean"] > rs["sac"]["sampled"]["mean"]
            )
            close = r["human_loglik"] >= rs["bc"]["human_loglik"] - 0.5
            ok.append(f"{a}: beats both {beats}, log-lik within 0.5 of BC {close}")
        print(f"seed {seed}: " + "; ".join(ok))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(a: str) -> str:
        if a.startswith("kl"):
            return f"SAC + BC anchor, target KL {a[2:]}"
        return {"bc": "BC anchor (sampled)", "sac": "SAC, unanchored"}.get(a, a)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    markers = {"seed": ["o", "s", "^", "D", "v"]}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, a in enumerate(order):
        if a == "human":
            continue
        for r in agents[a]:
            ax.scatter(
                r["human_loglik"],
                r["sampled"]["mean"],
                color=colours[i % len(colours)],
                marker=markers["seed"][r["seed"] % 5],
                label=label(a) if r is agents[a][0] else None,
                s=40,
            )
    for r in agents.get("human", []):
        ax.axhline(r["sampled"]["mean"], color="grey", lw=0.8, ls="--")
    if "bc" in agents:
        bar = np.mean([r["human_loglik"] for r in agents["bc"]]) - 0.5
        ax.axvline(bar, color="grey", lw=0.8, ls=":", label="BC's log-likelihood - 0.5 nats")
    ax.plot([], [], color="grey", lw=0.8, ls="--", label="human (noisy heuristic), per seed")
    ax.set_xscale("symlog", linthresh=1.0)  # unanchored SAC sits tens of nats lower
    ax.set_xlabel("held-out human actions: mean log-likelihood under the policy (nats, symlog)")
    counts = {a: agents[a][0]["eval_episodes"] for a in order}
    main_count = max(set(counts.values()), key=list(counts.values()).count)
    others = "".join(f"; {a}: {n}" for a, n in counts.items() if n != main_count)
    # others: e.g. unanchored SAC's runs reused from a study evaluated on fewer episodes
    ax.set_ylabel(f"return (sampled policy, {main_count} episodes{others})")
    steps = max(r["steps"] for r in records)
    family = agents["bc"][0].get("anchor_family", "squashed") if "bc" in agents else "no"
    ax.set_title(
        f"{ENV_ID}, {steps // 1000}k env steps, {family} BC anchor; marker = seed", fontsize=10
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"\nwrote {png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100_000, help="env steps per agent")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--kl-targets", type=float, nargs="*", default=[1.0])
    p.add_argument(
        "--skip-sac", action="store_true", help="no unanchored SAC (e.g. another process runs it)"
    )
    p.add_argument("--noise-std", type=float, default=0.5)
    p.add_argument("--demo-episodes", type=int, default=50)
    p.add_argument("--heldout-episodes", type=int, default=10)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--deterministic-episodes", type=int, default=0)
    p.add_argument(
        "--anchor-family",
        choices=["squashed", "truncated"],
        default="squashed",
        help="the cloned anchor: GaussianAnchor (tanh-squashed) or TruncatedGaussianAnchor",
    )
    p.add_argument("--runs", type=Path, default=HERE / "runs")
    p.add_argument("--report", action="store_true", help="only write the table and the PNG")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.report:
        report(args.runs, png_path(args.runs))
        return
    args.runs.mkdir(parents=True, exist_ok=True)
    held = human_demos(args.heldout_episodes, args.noise_std, HELDOUT_DEMO_SEED)
    heldout = {"obs": held.observations, "actions": held.actions}
    import gymnasium

    import ebrl

    (args.runs / "machine.json").write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "gymnasium": gymnasium.__version__,
                "ebrl": getattr(ebrl, "__version__", None),
                "cpu": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads(),
                "heldout_steps": len(held),
                "heldout_returns": held.returns.tolist(),
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            indent=1,
        )
    )
    for seed in args.seeds:
        run_seed(seed, args, heldout, args.runs)
    report(args.runs, png_path(args.runs))


if __name__ == "__main__":
    main()
