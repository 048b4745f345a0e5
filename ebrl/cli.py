"""The ``ebrl`` console script.

Each subcommand is one ``_add_<name>`` function registering its parser and one ``_run_<name>``
function; results are printed as one JSON line so that scripts can parse them.
"""

from __future__ import annotations

import argparse
import json
import sys
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
        field_docs,
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
    out = args.out or Path(
        f"runs/fit_density/{config.dataset}_{config.objective}_s{config.seed}.png"
    )
    plot_density(result, out)
    return {**result.summary(), "png": str(out)}


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ebrl", description="Energy-based reinforcement learning and generative EBMs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_sample_demo(sub)
    _add_fit_density(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except (ValueError, TypeError, FloatingPointError) as err:
        parser.exit(2, f"ebrl {args.command}: error: {err}\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
