"""PCD with Langevin on scikit-learn's 8x8 digits: do samples of the learned energy look like
digits? Measured by MMD to held-out digits, beside the floor MMD(train, held-out) and the
ceiling MMD(uniform noise, held-out).

Model: ``MLPEnergy(64, (256, 256))`` on pixels in [0, 1]. Objective: persistent contrastive
divergence (``ebrl.trainers.ContrastiveDivergence``) with a sample buffer of 10 000 chains
(5% restarted from uniform noise per use, Du & Mordatch 2019), negatives from the shared
``ebrl.samplers.Langevin`` (ULA, textbook ``sqrt(2 eps)`` noise) at temperature ``T``: the
chains target ``exp(-E / T)``, which is the model. Trained by ``ebrl.trainers.fit``.

Samples scored (all with the shared sampler, ``n`` = number of training images, so that every
MMD has the same sample sizes and therefore the same finite-sample floor):

- ``buffer``: ``n`` persistent chains from the sample buffer at the end of training;
- ``fresh``: ``n`` new chains started from uniform noise and run ``5 k`` Langevin steps on the
  final energy (no buffer involved); ``fresh_4x``: the same chains continued to ``20 k`` steps.

MMD: Gaussian kernel, one bandwidth for every pair (the median pairwise distance of train and
held-out pooled), biased (V-statistic) estimate, so identical laws give a small positive floor.

Usage (from the repository root)::

    nice -n 10 python experiments/digits_pcd/run.py --seeds 0 1 2   # ~3 CPU minutes a seed
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.distributions import Independent, Uniform

from ebrl.data import digits
from ebrl.energy import MLPEnergy
from ebrl.metrics import median_bandwidth, mmd
from ebrl.samplers import Langevin
from ebrl.trainers import ContrastiveDivergence, fit

HERE = Path(__file__).resolve().parent
RUNS = HERE.parents[1] / "runs" / "digits_pcd"  # trained energies (not committed)


@dataclass(frozen=True)
class DigitsConfig:
    seed: int = 0
    """split, initialisation and training seed"""
    steps: int = 4000
    """optimisation steps"""
    batch_size: int = 128
    lr: float = 1e-4
    """Adam learning rate (constant; betas (0, 0.999) as in Du & Mordatch 2019)"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    step_size: float = 0.001
    """Langevin eps (noise sqrt(2 eps))"""
    sampler_steps: int = 60
    """Langevin steps per training step"""
    temperature: float = 0.1
    """the chains target exp(-E / T)"""
    buffer_size: int = 10000
    reinit_prob: float = 0.05
    energy_reg: float = 0.1
    """weight of mean(E+^2 + E-^2)"""


def run(config: DigitsConfig, logdir: str | None = None) -> dict:
    start, start_cpu = time.perf_counter(), time.process_time()
    train, held_out = digits.load(seed=config.seed)
    torch.manual_seed(config.seed)  # the MLP's initialisation
    energy = MLPEnergy(64, config.hidden_sizes)
    noise = Independent(Uniform(torch.zeros(64), torch.ones(64)), 1)
    sampler = Langevin(config.step_size, config.sampler_steps)
    objective = ContrastiveDivergence(
        sampler,
        persistent=True,
        buffer_size=config.buffer_size,
        reinit_prob=config.reinit_prob,
        energy_reg=config.energy_reg,
        temperature=config.temperature,
        proposal=noise,
    )
    history = fit(
        energy,
        train,
        objective,
        config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        logdir=logdir,
        betas=(0.0, 0.999),
        lr_schedule="constant",
        log_every=100,
        progress_bar=False,
    )
    train_s = time.perf_counter() - start

    n = len(train)
    g = torch.Generator().manual_seed(config.seed + 1)
    chains = objective.buffer.chains
    buffer = chains[torch.randperm(len(chains), generator=g)[:n]]
    model = (1.0 / config.temperature) * energy
    short_run = Langevin(config.step_size, 5 * config.sampler_steps)
    fresh = short_run.sample(model, noise, n, generator=g).samples
    # the same chains, 4x longer: does the model hold its samples or drift away from digits?
    longer = short_run.sample(model, noise, n, init=fresh, generator=g).samples
    for _ in range(2):
        longer = short_run.sample(model, noise, n, init=longer, generator=g).samples
    uniform = torch.rand(n, 64, generator=g)
    h = median_bandwidth(train, held_out)
    scores = {
        "train": float(mmd(train, held_out, h)),
        "buffer": float(mmd(buffer, held_out, h)),
        "fresh": float(mmd(fresh, held_out, h)),
        "fresh_4x": float(mmd(longer, held_out, h)),
        "noise": float(mmd(uniform, held_out, h)),
    }
    RUNS.mkdir(parents=True, exist_ok=True)
    torch.save(energy.state_dict(), RUNS / f"energy_s{config.seed}.pt")
    record = {
        "config": asdict(config),
        "n_train": n,
        "n_held_out": len(held_out),
        "bandwidth": float(h),
        "mmd": {k: round(v, 4) for k, v in scores.items()},
        "ratio_to_floor": {
            k: round(v / scores["train"], 2) for k, v in scores.items() if k != "train"
        },
        "final": {k: round(v[-1], 4) for k, v in history.history.items()},
        "train_wall_s": round(train_s, 1),
        "cpu_s": round(time.process_time() - start_cpu, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)",
    }
    if config.seed == 0:
        _plot(train, buffer, fresh, HERE / "samples.png", record)
    return record


def _plot(train, buffer, fresh, path: Path, record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        ("train", "training images", train),
        ("buffer", "PCD buffer (persistent chains)", buffer),
        (
            "fresh",
            f"fresh chains from noise ({5 * record['config']['sampler_steps']} steps)",
            fresh,
        ),
    ]
    fig = plt.figure(figsize=(10, 5.4), layout="constrained")
    for subfig, (key, name, x) in zip(fig.subfigures(len(rows), 1), rows, strict=True):
        subfig.suptitle(
            f"{name}: MMD to held-out {record['mmd'][key]}", fontsize=9, x=0.01, ha="left"
        )
        axes = subfig.subplots(3, 20)
        for i, ax in enumerate(axes.flat):
            ax.imshow(x[i].reshape(8, 8).clamp(0, 1).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=DigitsConfig.steps)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--logdir", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        record = run(DigitsConfig(seed=seed, steps=args.steps), logdir=args.logdir)
        (HERE / f"results_s{seed}.json").write_text(json.dumps(record, indent=1))
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
