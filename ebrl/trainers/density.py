"""Fit an energy to a 2-D toy density and score it: the recipe behind ``ebrl fit-density`` and the
``experiments/toy2d_density`` study.

One :class:`DensityConfig` (frozen dataclass; its field docstrings are the CLI's ``--help``)
builds an :class:`~ebrl.energy.MLPEnergy`, the objective (:func:`make_objective`) and the data;
:func:`fit_density` trains with :func:`~ebrl.trainers.fit` and returns the test NLL by grid
normalisation (:func:`~ebrl.metrics.grid_nll`) beside the exact NLL of the test set where the
toy has a closed-form density. :func:`plot_density` draws data | learned density | samples
from the shared sampler (importance sampling over the box, then MALA).

Protocol: ``n_train`` training points drawn with ``seed``; one fixed test set of ``n_test``
points (seed :data:`TEST_SEED`, the same for every run, so runs differ only in training);
NLLs in nats on the box :data:`~ebrl.data.toy2d.BOUNDS`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.distributions import Independent, Uniform

from ebrl.data import toy2d
from ebrl.energy import MLPEnergy
from ebrl.metrics import grid_log_normalizer, grid_nll, grid_points
from ebrl.samplers import MALA, Langevin, sample_energy
from ebrl.trainers.contrastive import ContrastiveDivergence
from ebrl.trainers.fit import FitResult, fit
from ebrl.trainers.score_matching import (
    DenoisingScoreMatching,
    ExactScoreMatching,
    SlicedScoreMatching,
)
from ebrl.validation import (
    check_int,
    check_nonnegative_float,
    check_positive_float,
    check_unit_interval,
)

__all__ = [
    "DEFAULT_ENERGY_REG",
    "DEFAULT_STEPS",
    "DEFAULT_STEP_SIZE",
    "OBJECTIVES",
    "TEST_SEED",
    "DensityConfig",
    "DensityResult",
    "fit_density",
    "make_objective",
    "plot_density",
]

OBJECTIVES: tuple[str, ...] = ("dsm", "ssm", "esm", "cd", "pcd")
SAMPLERS: tuple[str, ...] = ("mala", "langevin")
# Optimisation steps per objective when ``steps`` is not given: each default run takes under
# 60 s on one CPU core (CD pays for its sampler steps; DSM's small sigma needs many cheap steps).
DEFAULT_STEPS: dict[str, int] = {"dsm": 20000, "ssm": 3000, "esm": 3000, "cd": 5000, "pcd": 4000}
# Sampler step size per CD variant when ``step_size`` is not given: CD-k from the data wants
# short, local moves; persistent chains must keep up with a changing model, so larger ones.
DEFAULT_STEP_SIZE: dict[str, float] = {"cd": 0.01, "pcd": 0.05}
# Energy regulariser per CD variant when ``energy_reg`` is not given: persistent chains let the
# model dig narrow wells that no chain visits (NLL blow-ups on moons and 2spirals at 1e-3).
DEFAULT_ENERGY_REG: dict[str, float] = {"cd": 0.001, "pcd": 0.1}
TEST_SEED = 2**32 + 7  # outside the range of training seeds [0, 2**32)


@dataclass(frozen=True)
class DensityConfig:
    """Settings of one ``ebrl fit-density`` run."""

    dataset: str = "8gaussians"
    """toy density, one of ebrl.data.toy2d.DATASETS"""
    objective: str = "esm"
    """training objective: dsm, ssm, esm, cd (CD-k from data) or pcd (persistent CD)"""
    steps: int | None = None
    """optimisation steps (default: per objective, see DEFAULT_STEPS)"""
    seed: int = 0
    """seed of the training data, the initialisation and the training loop"""
    batch_size: int = 256
    """data points per step"""
    lr: float = 1e-3
    """Adam learning rate, decayed to 0 by a cosine schedule"""
    hidden_sizes: tuple[int, ...] = (128, 128, 128)
    """widths of the MLP energy's hidden layers"""
    activation: str = "silu"
    """MLP activation (smooth: score matching differentiates the energy twice)"""
    n_train: int = 50000
    """training points"""
    n_test: int = 20000
    """test points (one fixed set, seed TEST_SEED)"""
    sigma: tuple[float, ...] = (0.03,)
    """DSM noise scale(s) (the model learns the data blurred by this noise: small for thin
    densities such as rings, at the price of a noisier loss and more steps)"""
    n_projections: int = 1
    """SSM random projections per point"""
    sampler: str = "mala"
    """CD/PCD negative sampler: mala or langevin (ULA)"""
    step_size: float | None = None
    """CD/PCD Langevin step size eps, noise sqrt(2 eps) (default: per objective, see
    DEFAULT_STEP_SIZE)"""
    sampler_steps: int = 10
    """CD/PCD sampler steps per training step (the k of CD-k)"""
    buffer_size: int = 1024
    """PCD: persistent chains (each step advances batch_size of them)"""
    reinit_prob: float = 0.05
    """PCD: probability that a drawn chain restarts from uniform noise on the box"""
    energy_reg: float | None = None
    """CD/PCD: weight of the energy-magnitude regulariser mean(E+^2 + E-^2) (default: per
    objective, see DEFAULT_ENERGY_REG)"""
    resolution: int = 512
    """grid cells per axis for the NLL's log-normaliser"""

    def __post_init__(self) -> None:
        owner = "DensityConfig"
        if self.dataset not in toy2d.DATASETS:
            raise ValueError(
                f"{owner}: unknown dataset {self.dataset!r}; valid names: "
                f"{', '.join(toy2d.DATASETS)}"
            )
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"{owner}: unknown objective {self.objective!r}; valid names: "
                f"{', '.join(OBJECTIVES)}"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"{owner}: unknown sampler {self.sampler!r}; valid names: {', '.join(SAMPLERS)}"
            )
        ints = {
            "steps": (self.steps, 1),
            "batch_size": (self.batch_size, 1),
            "n_train": (self.n_train, 1),
            "n_test": (self.n_test, 1),
            "n_projections": (self.n_projections, 1),
            "sampler_steps": (self.sampler_steps, 1),
            "buffer_size": (self.buffer_size, 1),
            "resolution": (self.resolution, 2),
            "seed": (self.seed, 0),
        }
        for name, (value, minimum) in ints.items():
            if value is not None or name != "steps":
                check_int(owner, name, value, minimum)
        if self.seed >= 2**32:
            raise ValueError(f"{owner}: seed must be < 2**32, got {self.seed}")
        floats = {"lr": self.lr}
        if self.step_size is not None:
            floats["step_size"] = self.step_size
        floats.update({f"sigma[{i}]": s for i, s in enumerate(self.sigma)})
        for name, value in floats.items():
            check_positive_float(owner, name, value)
        if not self.sigma:
            raise ValueError(f"{owner}: sigma must hold at least one noise scale")
        check_unit_interval(owner, "reinit_prob", self.reinit_prob)
        if self.energy_reg is not None:
            check_nonnegative_float(owner, "energy_reg", self.energy_reg)
        if self.objective == "pcd" and self.buffer_size < self.batch_size:
            raise ValueError(
                f"{owner}: buffer_size ({self.buffer_size}) must be >= batch_size "
                f"({self.batch_size}) for pcd"
            )

    @property
    def total_steps(self) -> int:
        """``steps``, or the objective's default."""
        return self.steps if self.steps is not None else DEFAULT_STEPS[self.objective]

    @property
    def sampler_step_size(self) -> float:
        """``step_size``, or the CD variant's default."""
        if self.step_size is not None:
            return self.step_size
        return DEFAULT_STEP_SIZE.get(self.objective, DEFAULT_STEP_SIZE["cd"])

    @property
    def cd_energy_reg(self) -> float:
        """``energy_reg``, or the CD variant's default."""
        if self.energy_reg is not None:
            return self.energy_reg
        return DEFAULT_ENERGY_REG.get(self.objective, DEFAULT_ENERGY_REG["cd"])


def box_proposal(bounds=toy2d.BOUNDS, batch_shape: tuple[int, ...] = ()) -> Independent:
    """Uniform noise on the 2-D box (the proposal for chains and importance sampling)."""
    low = torch.tensor([b[0] for b in bounds]).expand(*batch_shape, 2)
    high = torch.tensor([b[1] for b in bounds]).expand(*batch_shape, 2)
    return Independent(Uniform(low, high), 1)


def make_objective(config: DensityConfig):
    """The objective named by ``config.objective`` with the config's settings.

    CD/PCD negatives come from the shared :class:`~ebrl.samplers.MALA` or
    :class:`~ebrl.samplers.Langevin` (no bounds: the learned energy itself must confine the
    chains), PCD chains start and restart from uniform noise on the box.
    """
    if config.objective == "esm":
        return ExactScoreMatching()
    if config.objective == "ssm":
        return SlicedScoreMatching(config.n_projections)
    if config.objective == "dsm":
        sigma = config.sigma[0] if len(config.sigma) == 1 else config.sigma
        return DenoisingScoreMatching(sigma)
    if config.sampler == "mala":
        sampler = MALA(config.sampler_step_size, config.sampler_steps)
    else:
        sampler = Langevin(config.sampler_step_size, config.sampler_steps)
    return ContrastiveDivergence(
        sampler,
        persistent=config.objective == "pcd",
        buffer_size=config.buffer_size,
        reinit_prob=config.reinit_prob,
        energy_reg=config.cd_energy_reg,
        proposal=box_proposal(),
    )


@dataclass
class DensityResult:
    """The trained energy and its scores (NLLs in nats on the test set)."""

    config: DensityConfig
    energy: MLPEnergy
    train: Tensor
    test: Tensor
    test_nll: float
    true_nll: float | None
    wall_s: float
    cpu_s: float
    fit: FitResult = field(repr=False)

    def summary(self) -> dict:
        """The one-line JSON record of ``ebrl fit-density``."""
        return {
            "dataset": self.config.dataset,
            "objective": self.config.objective,
            "seed": self.config.seed,
            "steps": self.config.total_steps,
            "test_nll": round(self.test_nll, 4),
            "true_nll": None if self.true_nll is None else round(self.true_nll, 4),
            "wall_s": round(self.wall_s, 2),
            "cpu_s": round(self.cpu_s, 2),
        }


def fit_density(
    config: DensityConfig, *, logdir: str | None = None, progress_bar: bool = False
) -> DensityResult:
    """Trains an MLP energy on ``config.dataset`` with ``config.objective`` and scores it.

    ``wall_s`` covers data generation, training and the grid NLL; ``cpu_s`` is the CPU time
    of the process over the same span (equal to ``wall_s`` on an idle core with one torch
    thread; on a shared machine the fairer measure of cost).
    """
    if not isinstance(config, DensityConfig):
        raise TypeError(f"fit_density: config must be a DensityConfig, got {type(config)}")
    start, start_cpu = time.perf_counter(), time.process_time()
    train = toy2d.sample(config.dataset, config.n_train, seed=config.seed)
    test = toy2d.sample(config.dataset, config.n_test, seed=TEST_SEED)
    # The MLP's default initialisation draws from the global RNG: seed it in a fork, so that the
    # caller's global RNG state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(config.seed)
        energy = MLPEnergy(2, config.hidden_sizes, config.activation)
    result = fit(
        energy,
        train,
        make_objective(config),
        config.total_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        logdir=logdir,
        progress_bar=progress_bar,
    )
    nll = float(grid_nll(energy, test, toy2d.BOUNDS, config.resolution))
    true_nll = None
    if toy2d.has_log_prob(config.dataset):
        true_nll = float(-toy2d.log_prob(config.dataset, test.double()).mean())
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return DensityResult(config, energy, train, test, nll, true_nll, wall, cpu, result)


def model_samples(energy, n: int, seed: int = 0) -> Tensor:
    """``n`` samples of ``exp(-E)`` on the toy box (:func:`ebrl.samplers.sample_energy`)."""
    box = tuple(tuple(b[i] for b in toy2d.BOUNDS) for i in (0, 1))  # ((x0, y0), (x1, y1))
    return sample_energy(energy, n, box, seed=seed)


def plot_density(result: DensityResult, path: str | Path, n_samples: int = 20000) -> Path:
    """Writes a PNG: data | learned density (grid-normalised) | samples from the shared sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    energy = result.energy
    resolution = 256
    points, _ = grid_points(toy2d.BOUNDS, resolution)
    with torch.no_grad():
        log_z = grid_log_normalizer(energy, toy2d.BOUNDS, resolution)
        density = torch.exp(-energy(points.reshape(-1, 2)) - log_z).reshape(resolution, resolution)
    samples = model_samples(energy, n_samples, seed=result.config.seed)
    (x0, x1), (y0, y1) = toy2d.BOUNDS
    extent = (x0, x1, y0, y1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), sharex=True, sharey=True)
    hist_kw = {"bins": 200, "range": ((x0, x1), (y0, y1)), "cmap": "viridis"}
    data = result.train[:n_samples]
    axes[0].hist2d(data[:, 0].numpy(), data[:, 1].numpy(), **hist_kw)
    axes[0].set_title(f"data: {result.config.dataset}")
    axes[1].imshow(density.numpy(), origin="lower", extent=extent, cmap="viridis")
    axes[1].set_title(f"{result.config.objective}: test NLL {result.test_nll:.3f}")
    axes[2].hist2d(samples[:, 0].numpy(), samples[:, 1].numpy(), **hist_kw)
    axes[2].set_title("samples: IS -> MALA")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def config_fields() -> list[dataclasses.Field]:
    """The config's fields (for building a command line from the dataclass)."""
    return list(dataclasses.fields(DensityConfig))
