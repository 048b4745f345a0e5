"""The ``ebrl`` console script.

Each subcommand is one ``_add_<name>`` function registering its parser and one ``_run_<name>``
function; results are printed as one JSON line so that scripts can parse them.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import difflib
import inspect
import itertools
import json
import os
import re
import shlex
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


# ----------------------------------------------------------------------------- sample-demo


def _add_sample_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-demo",
        help="sample a two-mode 2-D mixture with importance sampling -> MALA and plot it",
        description="Samples a 0.3/0.7 two-mode Gaussian mixture with the shared sampler "
        "(importance sampling from a broad Gaussian, then MALA), prints the recovered mode "
        "weights against the truth as JSON and writes a PNG.",
    )
    p.add_argument("--samples", type=int, default=20000, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--out", type=Path, default=Path("runs/sample_demo.png"), help="PNG path")
    p.set_defaults(run=_run_sample_demo)


def _run_sample_demo(args: argparse.Namespace) -> dict:
    import torch

    from ebrl.energy import GaussianMixtureEnergy
    from ebrl.samplers import MALA, Chain, ImportanceSampler

    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    start = time.perf_counter()
    target = GaussianMixtureEnergy(
        torch.tensor([0.3, 0.7]), torch.tensor([[-3.0, 0.0], [3.0, 1.0]]), torch.tensor(0.5)
    )
    batch = 64
    per = -(-args.samples // batch)
    proposal = torch.distributions.MultivariateNormal(torch.zeros(batch, 2), 9 * torch.eye(2))
    sampler = Chain(ImportanceSampler(1024), MALA(0.1, 20, warmup_steps=10))
    generator = torch.Generator().manual_seed(args.seed)
    result = sampler.sample(target, proposal, num_samples=per, generator=generator)
    x = result.samples.reshape(-1, 2)[: args.samples]
    left = float((x[:, 0] < 0).float().mean())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid = torch.stack(
        torch.meshgrid(torch.linspace(-6, 6, 200), torch.linspace(-4, 5, 150), indexing="xy"),
        dim=-1,
    )
    density = torch.exp(-target(grid))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True, sharey=True)
    axes[0].contourf(grid[..., 0], grid[..., 1], density, levels=30)
    axes[0].set_title("target density (0.3 / 0.7)")
    axes[1].hist2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=(120, 90), range=((-6, 6), (-4, 5)))
    axes[1].set_title(f"IS -> MALA samples: left mode {left:.3f}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    return {
        "left_mode_weight": round(left, 4),
        "true_left_mode_weight": 0.3,
        "ess_mean": round(float(result.stats["ess"].mean()), 1),
        "acceptance_rate": round(float(result.stats["acceptance_rate"].mean()), 3),
        "png": str(args.out),
        "wall_s": round(time.perf_counter() - start, 2),
    }


# ----------------------------------------------------------------------------- train


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields, the class's own over its bases' (they
    become ``--help`` texts)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        for node, after in itertools.pairwise(tree.body[0].body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _bool_or_auto(text: str) -> bool | None:
    """A ``bool | None`` field: true, false, or auto (None)."""
    if text.lower() == "auto":
        return None
    try:
        return _bool(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected true, false or auto, got {text!r}") from None


def _add_config_arguments(
    parser: argparse.ArgumentParser, classes: dict[str, type], env: str
) -> None:
    """One ``--field-name`` option per field of the config dataclasses of ``classes`` (algo ->
    config class), typed from its default; fields shared by every algo in one group. The
    defaults shown are ``env``'s (its preset, where it has one)."""
    docs = {algo: field_docs(cls) for algo, cls in classes.items()}
    resolved = {algo: cls.for_env(env) for algo, cls in classes.items()}
    owners: dict[str, list[str]] = {}
    for algo, cls in classes.items():
        for f in dataclasses.fields(cls):
            owners.setdefault(f.name, []).append(algo)
    groups = {
        "shared": parser.add_argument_group("hyperparameters of every agent"),
        **{a: parser.add_argument_group(f"{a} only") for a in classes},
    }
    for name, algos in owners.items():
        values = {a: getattr(resolved[a], name) for a in algos}
        default = values[algos[0]]
        if len(set(map(repr, values.values()))) == 1:
            shown = f"default: {default}"
        else:
            shown = "defaults: " + ", ".join(f"{a} {v}" for a, v in values.items())
        doc = docs[algos[0]].get(name, "")
        # a None default is explained by the field's doc ("default -dim(A)"): say it once
        none = all(v is None for v in values.values())
        help_text = doc if none and "default" in doc else f"{doc} ({shown})"
        group = groups["shared" if len(algos) == len(classes) else algos[0]]
        annotation = str(classes[algos[0]].__dataclass_fields__[name].type)
        kind = type(default[0]) if isinstance(default, tuple) else type(default)
        kind = {bool: _bool, type(None): float}.get(kind, kind)
        if annotation == "bool | None":
            kind = _bool_or_auto
            help_text = help_text.replace("default: None", "default: auto")
        nargs = None
        if isinstance(default, tuple):  # tuple[int, ...]: any length; tuple[float, float]: 2
            nargs = "+" if "..." in annotation else len(default)
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            nargs=nargs,
            default=argparse.SUPPRESS,
            help=help_text,
        )


def _config_overrides(args: argparse.Namespace, cls: type) -> dict:
    """The config fields given as flags (tuples from lists); flags of another algo's config are
    an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in vars(args).items()
        if k in _ALL_CONFIG_FIELDS
    }
    foreign = sorted(set(given) - names)
    if foreign:
        flags = ", ".join("--" + f.replace("_", "-") for f in foreign)
        raise ValueError(f"{flags}: not a {cls.__name__} field (--algo {args.algo})")
    return given


def _configs() -> dict[str, type]:
    from ebrl.agents import SACConfig, SoftQConfig

    return {"sac": SACConfig, "softq": SoftQConfig}


_ALL_CONFIG_FIELDS: set[str] = set()


def _add_train(sub: argparse._SubParsersAction, env: str) -> None:
    configs = _configs()
    _ALL_CONFIG_FIELDS.update(f.name for cls in configs.values() for f in dataclasses.fields(cls))
    p = sub.add_parser(
        "train",
        help="train an energy-based agent (default: SAC on Pendulum-v1)",
        description="Trains an energy-based agent whose policy is "
        "pi(a|s) ∝ anchor(a|s) exp(Q(s,a)/T): SAC (continuous actions; acted by importance "
        "sampling from a learned actor mixed with the anchor, and optional MALA) or SoftQ "
        "(discrete actions; the exact softmax). Prints one JSON line with the final "
        "evaluation and writes a checkpoint. Per-env presets (RL-Zoo's tuned values where "
        "they exist, ebrl.agents.presets) apply to every hyperparameter not given as a flag; "
        f"the defaults shown below are {env}'s (`ebrl train --env ID --help` shows ID's).",
    )
    p.add_argument("--env", default="Pendulum-v1", help="gymnasium env id (default: %(default)s)")
    p.add_argument(
        "--algo",
        default="sac",
        choices=sorted(configs),
        help="sac (continuous actions) or softq (discrete actions) (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_TRAIN_STEPS,
        help="env steps in total; under torchrun, of all ranks together (each of N ranks "
        "steps 1/N of them) (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of networks, sampler and envs")
    p.add_argument(
        "--num-envs",
        type=int,
        default=1,
        help="parallel envs (one sampler call for all; per rank under torchrun)",
    )
    p.add_argument(
        "--vectorization",
        default="sync",
        choices=("sync", "async"),
        help="sync: the envs step one after another in this process; async: each in its own "
        "worker process (gymnasium's AsyncVectorEnv; worth it for MuJoCo/Box2D envs with "
        "--num-envs > 1, not for classic control); the same run either way "
        "(default: %(default)s)",
    )
    p.add_argument("--temperature", default="auto", help="'auto' or a fixed float > 0")
    p.add_argument(
        "--anchor",
        type=Path,
        default=None,
        metavar="DEMOS.npz",
        help="behaviour-clone an anchor (GaussianAnchor for sac, CategoricalAnchor for softq) "
        "on these demonstrations (ebrl.data.demos, e.g. `python -m ebrl.data.demos pendulum "
        "--out demos.npz`) and regularise the policy toward it by KL (default: uniform anchor, "
        "i.e. max-entropy RL); the run's anchor.json compares the anchor's return, sampled and "
        "by its mode, with the demonstrator's",
    )
    p.add_argument(
        "--anchor-family",
        choices=["squashed", "truncated"],
        default=None,
        help="sac with --anchor: the cloned anchor's family: 'squashed' (GaussianAnchor, a "
        "tanh-squashed Gaussian) or 'truncated' (TruncatedGaussianAnchor, a Gaussian in action "
        "space truncated to the box: for demonstrators that add wide noise and clip) "
        "(default: squashed)",
    )
    p.add_argument(
        "--plain-sac",
        action="store_true",
        help="sac only: the plain-SAC configuration (1 particle, no MALA, no anchor mixing)",
    )
    p.add_argument(
        "--logdir",
        type=Path,
        default=Path("runs"),
        help="runs go to a new directory LOGDIR/<env>_<algo>_<seed>[_N] (never reused): "
        "TensorBoard events, run.json (the command, resolved config and versions), "
        "checkpoints, model.pt and result.json (default: runs)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="path of the final model (default: RUN_DIR/model.pt)",
    )
    p.add_argument(
        "--eval-episodes",
        type=int,
        default=10,
        help="episodes of the final evaluation and of each --eval-every evaluation",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="save the whole training state to RUN_DIR/checkpoint.pt every N env steps "
        "(continue a killed run with --resume RUN_DIR; under torchrun each rank r > 0 also "
        "writes its own buffer, envs and generator to RUN_DIR/checkpoint.rank{r}.pt) "
        "(default: only at the end, or on Ctrl-C)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=None,
        metavar="N",
        help="evaluate every N env steps: eval/mean_return and eval/std_return in TensorBoard, "
        "the best agent in RUN_DIR/best_model.pt (default: only at the end)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (killed, interrupted, or finished) from its last "
        "checkpoint to its original --steps, with its recorded flags; on the CPU the result "
        "is the same, bit for bit, as a run never stopped (only --no-progress, --threads and "
        "--device may be given with it)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (small networks run fastest, and steadiest on a busy "
        "machine, on one)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_arguments(p, configs, env)
    p.set_defaults(run=_run_train)


DEFAULT_TRAIN_STEPS = 10_000


def _behaviour_cloned_anchor(path: Path, env_id: str, seed: int, family: str = "squashed"):
    """An anchor fitted to the demonstrations in ``path`` (which must be for ``env_id``): a
    ``CategoricalAnchor`` for discrete actions, for a Box a ``GaussianAnchor`` (``family``
    ``"squashed"``) or a ``TruncatedGaussianAnchor`` (``"truncated"``)."""
    import gymnasium as gym
    import numpy as np
    import torch

    from ebrl.agents import make_env
    from ebrl.data.demos import Demonstrations
    from ebrl.policies import (
        CategoricalAnchor,
        GaussianAnchor,
        TruncatedGaussianAnchor,
        fit_behaviour_cloning,
    )

    demos = Demonstrations.load(path)
    if demos.metadata.get("env_id") != env_id:
        raise ValueError(
            f"--anchor: {path} holds demonstrations for {demos.metadata.get('env_id')!r}, "
            f"not for --env {env_id!r}"
        )
    env = make_env(env_id)
    obs_dim = int(np.prod(env.observation_space.shape))
    # the network's initial weights from the run's seed, not from the process's global stream
    # (which made the cloned anchor differ between two runs of the same --seed)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        if isinstance(env.action_space, gym.spaces.Discrete):
            anchor = CategoricalAnchor(obs_dim, env.action_space)
        elif family == "truncated":
            anchor = TruncatedGaussianAnchor(obs_dim, env.action_space)
        else:
            anchor = GaussianAnchor(obs_dim, env.action_space)
    env.close()
    report = fit_behaviour_cloning(
        anchor, demos.observations.reshape(len(demos), -1), demos.actions, seed=seed
    )
    bc = {
        "class": type(anchor).__name__,
        "heldout_nll": round(report.heldout_nll, 4),
        "epochs": report.epochs_run,
        "demo_episodes": len(demos.returns),
        "demo_steps": len(demos),
        "demo_mean_return": round(float(np.mean(demos.returns)), 2),
    }
    return anchor, bc


RUN_RECORD = "run.json"
RESUME_FLAGS = {"resume", "no_progress", "threads", "device", "run", "command"}


def _run_train(args: argparse.Namespace) -> dict:
    if args.resume is not None:
        return _resume_train(args)
    from ebrl import distributed

    _check_train_args(args)
    config = _train_config(args)
    run_dir = None
    if distributed.is_main():  # rank 0 makes the run directory; the others learn its name
        stem = f"{args.env.replace('/', '_')}_{args.algo}_{args.seed}"
        run_dir = _new_run_dir(args.logdir, stem)
        record = {
            "format": "ebrl.run/1",
            "command": shlex.join(["ebrl", *sys.argv[1:]]),
            "args": _plain_args(args),
            "world_size": distributed.world_size(),
            "config": dataclasses.asdict(config),
            "versions": _versions(),
        }
        _write_json(run_dir / RUN_RECORD, record)
        print(f"ebrl train: run directory {run_dir}", file=sys.stderr)
    run_dir = Path(distributed.broadcast_object(None if run_dir is None else str(run_dir)))
    return _train(args, config, run_dir, agent=None)


def _check_train_args(args: argparse.Namespace) -> None:
    """Every flag, checked before anything is trained (a late error must not lose a run)."""
    import gymnasium as gym
    import torch

    from ebrl.agents import make_env

    for flag in ("steps", "threads", "eval_episodes", "num_envs"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    from ebrl import distributed

    per_collect = args.num_envs * distributed.world_size()  # env steps of one collect, all ranks
    for flag in ("checkpoint_every", "eval_every"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
        if value is not None and distributed.is_distributed() and value % per_collect:
            raise ValueError(
                f"--{flag.replace('_', '-')} must be a multiple of --num-envs x ranks "
                f"({per_collect}) under torchrun, got {value}"
            )
    if not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be >= 0 and < 2**63, got {args.seed}")
    if args.plain_sac and args.algo != "sac":
        raise ValueError("--plain-sac: only for --algo sac")
    if args.anchor_family is not None and (args.anchor is None or args.algo != "sac"):
        raise ValueError("--anchor-family: only for --algo sac with --anchor")
    if args.temperature != "auto":
        try:
            args.temperature = float(args.temperature)
        except ValueError:
            args.temperature = None
        if args.temperature is None or not 0 < args.temperature < float("inf"):
            raise ValueError("--temperature must be 'auto' or a float > 0")
    if args.device != "auto":
        try:
            device = torch.device(args.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(
                f"--device must be auto, cpu, cuda or cuda:N; got {args.device!r}"
            ) from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available in this torch build")
    env = make_env(args.env)
    space = env.action_space
    env.close()
    want = gym.spaces.Discrete if args.algo == "softq" else gym.spaces.Box
    if not isinstance(space, want):
        raise ValueError(
            f"--algo {args.algo} needs a {want.__name__} action space; {args.env} has {space} "
            f"(use --algo {'sac' if args.algo == 'softq' else 'softq'})"
        )
    if args.anchor is not None and not args.anchor.is_file():
        raise ValueError(f"--anchor: no demonstrations file at {args.anchor}")
    if args.out is not None:
        _check_writable(args.out, "--out")
    _check_writable(args.logdir / ".ebrl-write-check", "--logdir")


def _check_writable(path: Path, flag: str) -> None:
    """Fails now, not after training, when ``path`` cannot be written."""
    if path.is_dir():
        raise ValueError(f"{flag}: {path} is a directory; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.{os.getpid()}.probe"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{flag}: cannot write to {path.parent} ({err.strerror})") from err


def _train_config(args: argparse.Namespace):
    cls = _configs()[args.algo]
    overrides = _config_overrides(args, cls)
    if args.plain_sac:
        from ebrl.agents.sac import PLAIN_SAC

        overrides = {**PLAIN_SAC, **overrides}
    return cls.for_env(args.env, **overrides)


def _new_run_dir(logdir: Path, stem: str) -> Path:
    """``logdir/stem``, or ``stem_2``, ``stem_3``, ... : a directory no run has used."""
    for n in itertools.count(1):
        run_dir = logdir / (stem if n == 1 else f"{stem}_{n}")
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError as err:
            raise ValueError(f"--logdir: cannot create {run_dir} ({err.strerror})") from err
        return run_dir
    raise AssertionError("unreachable")


def _train(args: argparse.Namespace, config, run_dir: Path, agent) -> dict:
    """Builds the agent (unless resumed), trains it to ``--steps`` with the periodic callbacks,
    saves it, evaluates it, and returns the result JSON (also written to ``result.json``)."""
    import torch

    from ebrl import distributed
    from ebrl.agents import SAC, CheckpointCallback, EvalCallback, SoftQ

    main = distributed.is_main()  # under torchrun only rank 0 evaluates and writes results
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    report_path = run_dir / "anchor.json"
    if agent is None:
        bc = None
        if args.anchor is not None:
            anchor, bc = _behaviour_cloned_anchor(
                args.anchor, args.env, args.seed, args.anchor_family or "squashed"
            )
            if main:
                _write_json(report_path, bc)
        agent = {"sac": SAC, "softq": SoftQ}[args.algo](
            args.env,
            anchor=None if args.anchor is None else anchor,
            temperature=args.temperature,
            seed=args.seed,
            device=args.device,
            tensorboard_log=run_dir,
            num_envs=args.num_envs,
            config=config,
            vectorization=args.vectorization,
        )
    bc = json.loads(report_path.read_text()) if report_path.is_file() else None
    # under torchrun, rank r > 0 keeps its own buffer, envs, generator in checkpoint.rank{r}.pt
    checkpoint = distributed.rank_path(run_dir / "checkpoint.pt")
    callbacks = []
    if args.checkpoint_every is not None:
        callbacks.append(CheckpointCallback(args.checkpoint_every, checkpoint))
    if args.eval_every is not None and main:
        callbacks.append(
            EvalCallback(
                args.eval_every, args.eval_episodes, best_model_path=run_dir / "best_model.pt"
            )
        )
    first = agent.num_timesteps
    remaining = args.steps - agent.num_timesteps
    if remaining > 0:
        try:
            agent.learn(
                remaining,
                progress_bar=not args.no_progress,
                callback=callbacks,
                reset_num_timesteps=False,
            )
        except KeyboardInterrupt:
            agent.save(checkpoint)
            raise _Interrupted(
                f"interrupted at step {agent.num_timesteps}; the training state is in "
                f"{checkpoint}; continue with: ebrl train --resume {run_dir}"
            ) from None
    train_s = time.perf_counter() - start
    if distributed.is_distributed():
        agent.save(checkpoint)  # every rank's final state: what --resume restores
    if not main:
        return None
    out = agent.save(args.out or run_dir / "model.pt")  # saved before evaluating: never lost
    evaluation = agent.evaluate(args.eval_episodes)
    if bc is not None:
        bc = {**bc, **_anchor_report(agent, args.eval_episodes)}
    result = {
        "env": args.env,
        "algo": args.algo,
        "steps": agent.num_timesteps,
        "seed": args.seed,
        "mean_return": round(evaluation["mean_return"], 2),
        "std_return": round(evaluation["std_return"], 2),
        "eval_episodes": args.eval_episodes,
        "env_steps_per_s": round((agent.num_timesteps - first) / max(train_s, 1e-9), 1),
        "anchor": None if bc is None else {"demos": str(args.anchor), **bc},
        "checkpoint": str(out),
        "logdir": str(run_dir),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    _write_json(run_dir / "result.json", result)
    return result


def _anchor_report(agent, episodes: int) -> dict:
    """What judges an anchored run: the cloned anchor's own return acting by sampling its
    distribution (as the noisy demonstrator whose ``demo_mean_return`` it is compared with
    did), and acting by its mode (its most likely action: the argmax, or ``squash(mu)`` for a
    squashed Gaussian; ``None`` for an anchor without one), both on the same episode seeds as the
    agent's evaluation; and the agent's KL to it on the last 1000 states it trained on (exact
    for discrete actions, the sampler's estimate for continuous ones). A sampled return far
    below the demonstrator's with a mode return near it says the anchor is too wide; both far
    below, that it did not learn the demonstrator (too few demonstrations: issue 12)."""
    import torch
    from torch.distributions import Categorical, Independent, Normal

    from ebrl.agents import evaluate_policy
    from ebrl.policies.distributions import SquashedDistribution

    # the anchor's own episodes run on a CPU copy (one state at a time: the same numbers on a
    # machine with or without a GPU)
    anchor = copy.deepcopy(agent.user_anchor).cpu()
    generator = torch.Generator().manual_seed(agent.seed)
    start = getattr(agent, "action_start", 0)

    def sampled(dist):
        with torch.random.fork_rng(devices=[]):  # the CPU's global stream, given back after
            seed = int(torch.randint(2**62, (), generator=generator))
            torch.random.default_generator.manual_seed(seed)
            return dist.sample()

    def mode(dist):
        if isinstance(dist, Categorical):
            return dist.probs.argmax(-1)
        return dist.median  # NotImplementedError for a mixture base

    def policy(choose):
        def act(obs):
            obs_t = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
            with torch.no_grad():
                action = choose(anchor(obs_t))[0].numpy()
            return action + start if action.ndim == 0 else action

        return act

    with torch.no_grad():
        probe = anchor(agent.buffer.obs[:1].float().flatten(1).cpu())
    has_mode = isinstance(probe, Categorical) or (
        isinstance(probe, SquashedDistribution)
        and isinstance(probe.base_dist, Independent)
        and isinstance(probe.base_dist.base_dist, Normal)
    )
    env, own = agent.make_eval_env()
    try:
        anchor_eval = evaluate_policy(policy(sampled), env, episodes, agent.seed + 10_000)
        mode_eval = (
            evaluate_policy(policy(mode), env, episodes, agent.seed + 10_000) if has_mode else None
        )
    finally:
        if own:
            env.close()
    n = len(agent.buffer)
    obs = agent.buffer.obs[max(n - 1000, 0) : n]
    with torch.no_grad():
        on_device = torch.Generator(agent.device).manual_seed(agent.seed)
        kl = agent.policy.kl_to_anchor(obs, generator=on_device)
    return {
        "anchor_mean_return": round(anchor_eval["mean_return"], 2),
        "anchor_std_return": round(anchor_eval["std_return"], 2),
        "anchor_mode_mean_return": None
        if mode_eval is None
        else round(mode_eval["mean_return"], 2),
        "final_kl_to_anchor": round(float(kl.mean()), 4),
    }


def _resume_train(args: argparse.Namespace) -> dict:
    """``--resume RUN_DIR``: the recorded flags, and the agent from the final model (a
    finished run: evaluated again), the last checkpoint, or nothing (killed before its first
    checkpoint: trained from the start, with the same seed, so the same result)."""
    from ebrl import distributed
    from ebrl.agents import load_agent
    from ebrl.agents.checkpoint import read_checkpoint

    given = sorted(
        k
        for k, v in vars(args).items()
        if k not in RESUME_FLAGS and v != _TRAIN_DEFAULTS.get(k, argparse.SUPPRESS)
    )
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"--resume continues a run with its recorded flags; drop {flags}")
    run_dir = args.resume
    record_path = run_dir / RUN_RECORD
    if not record_path.is_file():
        raise ValueError(
            f"--resume: {run_dir} has no {RUN_RECORD}: not an ebrl train run directory"
        )
    try:
        record = json.loads(record_path.read_text())
        recorded = record["args"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"--resume: {record_path} is not readable ({err})") from err
    saved = argparse.Namespace(**{**vars(args), **recorded})
    for key in ("no_progress", "threads", "device"):
        setattr(saved, key, getattr(args, key))
    for key in ("anchor", "out", "logdir"):
        if getattr(saved, key) is not None:
            setattr(saved, key, Path(getattr(saved, key)))
    saved.resume = None
    _check_train_args(saved)
    config = _train_config(saved)
    world, ranks = record.get("world_size", 1), distributed.world_size()
    if world != ranks:
        how = "without torchrun" if world == 1 else f"with torchrun --nproc_per_node={world}"
        raise ValueError(
            f"--resume: {run_dir} was trained on {world} rank(s), this is {ranks}; "
            f"resume it {how} (each rank restores its own buffer and envs)"
        )
    agent = None
    paths = (saved.out or run_dir / "model.pt", run_dir / "checkpoint.pt")
    if ranks > 1:  # each rank its own file, all written at the same step
        paths = (distributed.rank_path(run_dir / "checkpoint.pt"),)
    for path in paths:
        if path.is_file():
            read_checkpoint(path, "--resume")  # one clear line if it is not a checkpoint
            agent = load_agent(path, device=saved.device, vectorization=saved.vectorization)
            agent.tensorboard_log = run_dir
            break
    start = "the start" if agent is None else f"step {agent.num_timesteps}"
    if distributed.is_main():
        print(f"ebrl train: resuming {run_dir} from {start}", file=sys.stderr)
    return _train(saved, config, run_dir, agent)


class _Interrupted(Exception):
    """Ctrl-C during training: the state was saved; the message says where."""


def _plain_args(args: argparse.Namespace) -> dict:
    """The parsed flags as JSON values (paths as strings; the handler dropped)."""
    out = {}
    for key, value in vars(args).items():
        if key in ("run", "command", "resume"):
            continue
        out[key] = str(value) if isinstance(value, Path) else value
    return out


def _versions() -> dict:
    import platform

    import gymnasium
    import numpy
    import torch

    from ebrl import __version__

    return {
        "ebrl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": numpy.__version__,
    }


def _write_json(path: Path, value: dict) -> None:
    """Written to a temporary file, then renamed: never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- evaluate


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved agent (optionally recording videos)",
        description="Loads a checkpoint written by `ebrl train` (SAC or SoftQ) and prints the "
        "mean and std of the return over fresh episodes as JSON. --video DIR records the "
        "episodes, one MP4 each; --n-particles and --mala-steps change a SAC agent's acting "
        "budget (with --stochastic: deterministic actions are the policy's mode, found by "
        "gradient ascent, not by the sampler).",
    )
    p.add_argument("checkpoint", type=Path, help="path to model.pt")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes")
    p.add_argument("--seed", type=int, default=None, help="seed of the first episode")
    p.add_argument("--stochastic", action="store_true", help="sample actions (default: mode)")
    p.add_argument(
        "--video",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the evaluation episodes to DIR/<algo>-<env>-episode-<i>.mp4 (same "
        "returns as without; needs moviepy: pip install 'ebrl[video]')",
    )
    p.add_argument(
        "--n-particles",
        type=int,
        default=None,
        metavar="K",
        help="sac, with --stochastic: importance particles per state when acting (>= 1; "
        "default: the checkpoint's)",
    )
    p.add_argument(
        "--mala-steps",
        type=int,
        default=None,
        metavar="M",
        help="sac, with --stochastic: MALA steps after importance sampling when acting (>= 0; "
        "default: the checkpoint's)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: %(default)s, fastest for these small networks)",
    )
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> dict:
    import torch

    from ebrl.agents import SAC, load_agent

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    budget = _acting_budget(args)
    if args.video is not None:
        from ebrl.video import require_video_dependency

        try:
            require_video_dependency()  # before loading anything
        except ImportError as err:
            raise ValueError(f"--video: {err}") from err
    start = time.perf_counter()
    # eager: a few evaluation episodes never repay a compile (SAC's automatic one on CUDA)
    agent = load_agent(args.checkpoint, compile=False, **budget)
    deterministic = not args.stochastic
    videos = None
    if args.video is None:
        result = agent.evaluate(args.episodes, deterministic=deterministic, seed=args.seed)
    else:
        from ebrl.video import record_video

        try:
            result = record_video(
                agent, args.video, args.episodes, deterministic=deterministic, seed=args.seed
            )
        except ImportError as err:  # a renderer the env needs (pygame)
            raise ValueError(f"--video: {err}") from err
        videos = [str(path) for path in result["videos"]]
    sampler = repr(agent.policy.sampler) if isinstance(agent, SAC) else None  # SoftQ: exact
    return {
        "env": agent.env_id,
        "algo": type(agent).__name__.lower(),
        "checkpoint": str(args.checkpoint),
        "episodes": args.episodes,
        "deterministic": deterministic,
        "mean_return": round(result["mean_return"], 2),
        "std_return": round(result["std_return"], 2),
        "sampler": sampler,
        "videos": videos,
        "wall_s": round(time.perf_counter() - start, 1),
    }


def _acting_budget(args: argparse.Namespace) -> dict:
    """--n-particles / --mala-steps as SAC config overrides: the loaded agent builds its
    sampler from them as SAC always does (``agent.policy.sampler``)."""
    from ebrl.agents.checkpoint import read_checkpoint

    budget = {}
    if args.n_particles is not None:
        if args.n_particles < 1:
            raise ValueError(f"--n-particles must be >= 1, got {args.n_particles}")
        budget["n_particles"] = args.n_particles
    if args.mala_steps is not None:
        if args.mala_steps < 0:
            raise ValueError(f"--mala-steps must be >= 0, got {args.mala_steps}")
        budget["mala_steps"] = args.mala_steps
    if not budget:
        return budget
    flags = " and ".join(f"--{name.replace('_', '-')}" for name in budget)
    algo = read_checkpoint(args.checkpoint, "load_agent")["algo"]
    if algo != "SAC":
        raise ValueError(
            f"{flags}: only SAC acts through a sampler; {args.checkpoint} holds a {algo} "
            "agent, whose policy is exact (a softmax over its discrete actions)"
        )
    if not args.stochastic:
        raise ValueError(
            f"{flags}: the sampler draws SAC's actions only with --stochastic (deterministic "
            "actions are the policy's mode, found by gradient ascent without it); add --stochastic"
        )
    return budget


# ----------------------------------------------------------------------------- plot


def _add_plot(sub: argparse._SubParsersAction) -> None:
    from ebrl.plotting import DEFAULT_TAG

    p = sub.add_parser(
        "plot",
        help="draw learning curves from run dirs' TensorBoard logs",
        description="Reads one TensorBoard scalar from the event files of each run dir of "
        "`ebrl train` and draws it against env steps: one curve per run and, for several "
        "runs (e.g. seeds), their mean and min-max band on the steps all runs cover. Prints "
        "{png, tag, points} as JSON (points: the values read per run).",
    )
    p.add_argument(
        "run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run directories to draw"
    )
    p.add_argument(
        "--tag",
        default=DEFAULT_TAG,
        help="the scalar to draw, e.g. eval/mean_return (ebrl train --eval-every) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("plot.png"),
        help="image path; the format follows its suffix (default: %(default)s)",
    )
    p.add_argument("--title", default=None, help="plot title (default: the tag)")
    p.set_defaults(run=_run_plot)


def _run_plot(args: argparse.Namespace) -> dict:
    from ebrl.plotting import plot_runs

    curves = plot_runs(args.run_dirs, args.out, tag=args.tag, title=args.title)
    return {"png": str(curves.png), "tag": curves.tag, "points": curves.points}


# ----------------------------------------------------------------------------- fit-density

# how each DensityConfig field type is read from the command line: (type, nargs)
_FIELD_TYPES = {
    "str": (str, None),
    "int": (int, None),
    "float": (float, None),
    "int | None": (int, None),
    "float | None": (float, None),
    "tuple[int, ...]": (int, "+"),
    "tuple[float, ...]": (float, "+"),
}


def _add_fit_density(sub: argparse._SubParsersAction) -> None:
    from ebrl.data import toy2d
    from ebrl.trainers.density import (
        DEFAULT_ENERGY_REG,
        DEFAULT_STEP_SIZE,
        DEFAULT_STEPS,
        OBJECTIVES,
        SAMPLERS,
        DensityConfig,
        config_fields,
    )

    p = sub.add_parser(
        "fit-density",
        help="train an energy on a 2-D toy density (score matching or CD) and report its NLL",
        description="Trains an MLP energy on a 2-D toy density with one objective, prints "
        "{dataset, objective, test_nll, true_nll, wall_s} as one JSON line (test NLL in nats "
        "by grid normalisation; true_nll: the exact NLL of the same test set, null where the "
        "toy has no closed form) and writes a PNG: data | learned density | samples.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    choices = {"dataset": toy2d.DATASETS, "objective": OBJECTIVES, "sampler": SAMPLERS}
    docs = field_docs(DensityConfig)
    for f in config_fields():
        kind, nargs = _FIELD_TYPES[str(f.type)]
        help_text = docs.get(f.name, "")
        if f.name == "steps":
            help_text += f": {DEFAULT_STEPS}"
        if f.name == "step_size":
            help_text += f": {DEFAULT_STEP_SIZE}"
        if f.name == "energy_reg":
            help_text += f": {DEFAULT_ENERGY_REG}"
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=kind,
            nargs=nargs,
            default=f.default,
            choices=choices.get(f.name),
            help=help_text,
        )
    p.add_argument("--logdir", default=None, help="TensorBoard directory (default: none)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG path (default: runs/fit_density/DATASET_OBJECTIVE_sSEED.png)",
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's; 1 is fastest for these small networks on a "
        "busy machine)",
    )
    p.set_defaults(run=_run_fit_density)


def _run_fit_density(args: argparse.Namespace) -> dict:
    import torch

    from ebrl import distributed
    from ebrl.trainers.density import DensityConfig, config_fields, fit_density, plot_density

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    values = {f.name: getattr(args, f.name) for f in config_fields()}
    for name in ("hidden_sizes", "sigma"):
        values[name] = tuple(values[name])
    config = DensityConfig(**values)
    result = fit_density(config, logdir=args.logdir, progress_bar=args.progress)
    if not distributed.is_main():  # under torchrun rank 0 reports and plots
        return None
    out = args.out or Path(
        f"runs/fit_density/{config.dataset}_{config.objective}_s{config.seed}.png"
    )
    plot_density(result, out)
    return {**result.summary(), "png": str(out)}


# ----------------------------------------------------------------------------- entry point


_TRAIN_DEFAULTS: dict = {}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block: ``--help`` has it) and, for an unknown
    flag, the closest known ones."""

    def error(self, message: str):
        unknown = re.findall(r"(--[\w-]+)", message) if "unrecognized" in message else []
        known = sorted(_option_strings(self))
        hints = [m for u in unknown for m in difflib.get_close_matches(u, known, n=1)]
        if hints:
            message += f" (did you mean {', '.join(hints)}?)"
        self.exit(2, f"{self.prog}: error: {message}\n")


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--flag`` of ``parser`` and of its subcommands."""
    out = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _option_strings(sub)
    return out


def _env_in(argv: Sequence[str]) -> str:
    """The ``--env`` value in ``argv`` (default Pendulum-v1): ``--help`` shows its presets."""
    argv = list(argv)
    for i, token in enumerate(argv):
        if token == "--env" and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith("--env="):
            return token.split("=", 1)[1]
    return "Pendulum-v1"


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    from ebrl import __version__

    parser = _Parser(
        prog="ebrl", description="Energy-based reinforcement learning and generative EBMs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub, _env_in(argv))
    if not _TRAIN_DEFAULTS:
        train = sub.choices["train"]
        _TRAIN_DEFAULTS.update({a.dest: a.default for a in train._actions})
    _add_evaluate(sub)
    _add_plot(sub)
    _add_sample_demo(sub)
    _add_fit_density(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from ebrl import distributed

    joined = distributed.init_from_environment()  # under torchrun: join (create) the group
    # train and fit-density run on every rank; the other commands have nothing to share out
    parallel = args.command in ("train", "fit-density")
    try:
        result = args.run(args) if parallel or distributed.is_main() else None
    except _Interrupted as err:
        parser.exit(130, f"ebrl {args.command}: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"ebrl {args.command}: interrupted\n")
    # What a user can cause: bad flags and files (ValueError, TypeError), files and disks
    # (OSError), a missing optional dependency (ImportError), too big a model or batch (out of
    # memory). Anything else is a bug in ebrl and keeps its traceback.
    except (
        ValueError,
        TypeError,
        OSError,
        ImportError,
        MemoryError,
        torch.OutOfMemoryError,
    ) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        parser.exit(2, f"ebrl {args.command}: error: {message}\n")
    if distributed.is_main():
        print(json.dumps(result))
    if joined:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
