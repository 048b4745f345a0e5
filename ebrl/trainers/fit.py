"""The one training loop for generative energies: minibatch -> objective loss -> Adam step -> log.

Every objective (score matching, contrastive divergence) plugs in through one method,
``objective.loss(energy, x, *, generator) -> (loss, terms)``; the loop owns everything else:
minibatches drawn with an explicit generator, the optimiser and learning-rate schedule,
gradient clipping, logging (tqdm progress bar, TensorBoard scalars) and the non-finite-loss
check, which raises with the step and the last finite values instead of masking the problem.

Data-parallel (``torchrun``; :mod:`ebrl.distributed`): when a process group of N ranks exists,
every rank draws the same global batch indices (a generator seeded with ``seed``), computes the
loss on its own 1/N slice of the batch, and the ranks average their gradients (one flattened
``all_reduce``) before clipping and the Adam step, so all ranks keep identical parameters.
Objectives whose ``loss`` takes ``shard=(rank, n_ranks)`` (the score-matching ones) draw their
noise for the whole global batch from that shared generator and keep their rows, so with the
same global ``batch_size`` N ranks follow the one-process loss trajectory, up to floating-point
reduction order. Other objectives (contrastive divergence, whose persistent chains are per
rank) draw from the rank's own generator, seeded from ``(seed, rank)``: the same expected
update, not the same numbers. Logged values are means over the ranks; only rank 0 writes
TensorBoard and shows the progress bar.

Logged scalars (TensorBoard tags, and keys of :attr:`FitResult.history`):

- ``loss``: the objective's loss; ``grad_norm``: the parameters' gradient norm before
  clipping; ``lr``: the learning rate;
- the objective's named terms: ``score_norm`` / ``divergence`` (score matching: the two halves
  of Hyvärinen's objective), ``energy_pos`` / ``energy_neg`` / ``energy_gap`` / ``energy_reg``
  (CD: mean energies of data and negatives, their gap, the magnitude regulariser), and the
  sampler's diagnostics (``acceptance_rate``, ``step_size``, ``stuck_fraction``,
  ``at_bounds_fraction``, ``ess``, ``reinit_fraction``).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from ebrl import distributed
from ebrl.validation import check_batch, check_int, check_positive_float, check_trainable

__all__ = ["FitResult", "Objective", "fit"]

LR_SCHEDULES = ("constant", "cosine")
_REMEDY = "Lower lr, set grad_clip, or add energy_reg (CD) / raise sigma (DSM)"


class Objective(Protocol):
    """Anything with the trainers' loss method. It may also take ``shard=(rank, n_ranks)``
    (``x`` is that rank's equal share of the global batch; the noise is drawn for the global
    batch): :func:`fit` then keeps data-parallel runs on the one-process trajectory."""

    def loss(
        self,
        energy: Callable[[Tensor], Tensor],
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]: ...


@dataclass
class FitResult:
    """What :func:`fit` returns (the energy itself is trained in place).

    Attributes:
        steps: optimisation steps taken.
        wall_s: wall-clock seconds.
        history: scalar name -> values at the logged steps ``history_steps``.
        history_steps: the steps at which ``history`` was recorded.
    """

    steps: int
    wall_s: float
    history: dict[str, list[float]] = field(default_factory=dict)
    history_steps: list[int] = field(default_factory=list)


def _check_data(owner: str, data: object, like: Tensor) -> Tensor:
    """Finite floating-point ``data [n, d]``, cast to the dtype of the parameters ``like``."""
    data = check_batch(owner, data, name="data").to(like.dtype)
    if not bool(torch.isfinite(data).all()):
        raise ValueError(f"{owner}: data contains NaN or infinite values (in {like.dtype})")
    return data


def _lr_lambda(schedule: str, steps: int) -> Callable[[int], float]:
    if schedule == "constant":
        return lambda step: 1.0
    return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def _diverged(energy: nn.Module, params: list[Tensor], x: Tensor) -> bool:
    """Whether the parameters, or the energy on a data batch, are no longer finite."""
    if not all(bool(torch.isfinite(p).all()) for p in params):
        return True
    with torch.no_grad():
        return not bool(torch.isfinite(energy(x)).all())


def _format(values: dict[str, Tensor] | None) -> str:
    if values is None:
        return "none (the first step already failed)"
    return ", ".join(f"{k}={float(v):.6g}" for k, v in values.items())


def fit(
    energy: nn.Module,
    data: Tensor,
    objective: Objective,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    logdir: str | None = None,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    lr_schedule: str = "cosine",
    grad_clip: float | None = None,
    log_every: int = 50,
    progress_bar: bool = True,
) -> FitResult:
    """Trains ``energy`` in place on ``data`` by minimising ``objective.loss`` with Adam.

    Each step draws ``batch_size`` rows of ``data`` uniformly with replacement from a generator
    seeded with ``seed`` (the same generator drives the objective's noise and sampler), so the
    same seed gives the same run on CPU.

    Args:
        energy: an ``nn.Module`` energy ``[n, d] -> [n]`` with trainable parameters.
        data: training data ``[n, d]`` (floating point, finite), on the energy's device; cast
            to the dtype of the energy's parameters (float64 data trains a float32 energy).
        objective: e.g. ``DenoisingScoreMatching(0.1)`` or ``ContrastiveDivergence(MALA(...))``.
        steps: optimisation steps (>= 1).
        batch_size: rows per step (>= 1), over all ranks together (a multiple of the number
            of ranks under ``torchrun``).
        lr: Adam's learning rate (> 0); ``lr_schedule="cosine"`` decays it to 0 over ``steps``.
        seed: seeds the loop's generator.
        logdir: TensorBoard directory (``None``: no TensorBoard).
        betas, weight_decay: Adam's.
        lr_schedule: ``"constant"`` or ``"cosine"``.
        grad_clip: clip the gradient norm to this (``None``: no clipping; the norm is logged).
        log_every: record scalars (host sync) every this many steps, and at the last step.
        progress_bar: show a tqdm bar.

    Returns:
        A :class:`FitResult` with the logged history.

    Raises:
        ValueError: the loss or the gradient norm became NaN or infinite, or the energy itself
            did (checked at every step, before the parameters are updated); the message names
            what, the step, the last finite values and what to try.

    Example:
        >>> from ebrl.energy import MLPEnergy
        >>> from ebrl.trainers import DenoisingScoreMatching
        >>> energy = MLPEnergy(2)
        >>> data = torch.randn(1000, 2)
        >>> result = fit(energy, data, DenoisingScoreMatching(0.1), steps=20, progress_bar=False)
        >>> result.steps
        20
    """
    owner = "fit"
    params = check_trainable(owner, "energy", energy)
    if not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
        raise ValueError(f"{owner}: the energy's parameters contain NaN or inf before training")
    data = _check_data(owner, data, params[0])
    if not callable(getattr(objective, "loss", None)):
        raise TypeError(f"{owner}: objective must have a .loss(energy, x, generator=) method")
    check_int(owner, "steps", steps)
    check_int(owner, "batch_size", batch_size)
    check_positive_float(owner, "lr", lr)
    check_int(owner, "seed", seed, minimum=0)
    check_int(owner, "log_every", log_every)
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"{owner}: unknown lr_schedule {lr_schedule!r}; valid names: {', '.join(LR_SCHEDULES)}"
        )
    if grad_clip is not None:
        check_positive_float(owner, "grad_clip", grad_clip)
    if params[0].device != data.device:
        raise ValueError(
            f"{owner}: data is on {data.device} but the energy's parameters are on "
            f"{params[0].device}"
        )

    n_ranks, rank = distributed.world_size(), distributed.rank()
    if batch_size % n_ranks:
        raise ValueError(
            f"{owner}: batch_size {batch_size} (the global batch) must be a multiple of the "
            f"number of ranks {n_ranks}"
        )
    shard = slice(rank * (batch_size // n_ranks), (rank + 1) * (batch_size // n_ranks))
    main = distributed.is_main()
    progress_bar = progress_bar and main

    from tqdm.auto import tqdm

    writer = None
    if logdir is not None and main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(logdir)
    generator = torch.Generator(device=data.device).manual_seed(seed)
    # One process: one generator for the batches and the objective (as ever). N ranks: the
    # batches from the shared seed (the same global batch everywhere); the objective's noise
    # from it too when the objective can draw for the global batch and keep its shard, else
    # from the rank's own seed.
    noise, sharded = generator, {}
    if n_ranks > 1:
        if "shard" in inspect.signature(objective.loss).parameters:
            sharded = {"shard": (rank, n_ranks)}
        else:
            noise = torch.Generator(device=data.device).manual_seed(distributed.rank_seed(seed))
        distributed.broadcast_parameters(params)
    optimizer = torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(lr_schedule, steps))
    result = FitResult(steps=0, wall_s=0.0)
    last_finite: dict[str, Tensor] | None = None
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="fit", disable=not progress_bar, dynamic_ncols=True)
    try:
        for step in bar:
            index = torch.randint(
                0, data.shape[0], (batch_size,), generator=generator, device=data.device
            )[shard]
            try:
                loss, terms = objective.loss(energy, data[index], generator=noise, **sharded)
            except ValueError as err:  # e.g. a sampler meeting NaN energies: diverged weights?
                if _diverged(energy, params, data[index]):
                    raise ValueError(
                        f"{owner}: the energy is no longer finite at step {step} ({err}); last "
                        f"finite values: {_format(last_finite)}. {_REMEDY}"
                    ) from err
                if hasattr(err, "add_note"):  # Python >= 3.11
                    err.add_note(
                        f"{owner}: raised at step {step}; last values: {_format(last_finite)}"
                    )
                raise
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(params)
            grad_norm = nn.utils.clip_grad_norm_(
                params, grad_clip if grad_clip is not None else math.inf
            )
            if not bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):  # one sync per step
                values = {"loss": float(loss.detach()), "grad_norm": float(grad_norm)}
                what = "loss" if not math.isfinite(values["loss"]) else "grad_norm"
                raise ValueError(
                    f"{owner}: non-finite {what} at step {step} (loss={values['loss']}, "
                    f"grad_norm={values['grad_norm']}, lr={optimizer.param_groups[0]['lr']:.3g})"
                    f"; last finite values: {_format(last_finite)}. {_REMEDY}"
                )
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            optimizer.step()
            scheduler.step()
            last_finite = {
                "step": torch.tensor(step),
                "loss": loss.detach(),
                **terms,
                "grad_norm": grad_norm.detach(),
            }
            if step % log_every == 0 or step == steps - 1:
                scalars = {
                    k: float(distributed.all_reduce_mean(v.float()))
                    for k, v in last_finite.items()
                    if k != "step"
                }
                scalars["lr"] = lr
                result.history_steps.append(step)
                for key, value in scalars.items():
                    result.history.setdefault(key, []).append(value)
                    if writer is not None:
                        writer.add_scalar(key, value, step)
                bar.set_postfix(loss=f"{scalars['loss']:.4g}", refresh=False)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    result.steps = steps
    result.wall_s = time.perf_counter() - start
    return result
