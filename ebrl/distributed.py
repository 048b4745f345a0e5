"""Data-parallel training with ``torch.distributed``, as launched by ``torchrun``.

ebrl scales with PyTorch's own engine, never a home-made process pool: ``torchrun`` starts one
process per core or GPU (a *rank*), each runs the same ``fit`` or agent, and the ranks stay in
step by averaging their gradients (one flattened ``all_reduce`` per optimiser step: the same
reduction ``DistributedDataParallel`` does, without its module wrapper, which supports neither
the double backward of score matching nor the samplers' ``autograd.grad`` calls). Gloo runs on
the CPU, NCCL on GPUs.

Everything here is a no-op in one process (no process group, or a group of one): the
single-process library is untouched.

Example:
    >>> from ebrl import distributed
    >>> distributed.world_size(), distributed.rank(), distributed.is_main()
    (1, 0, True)
    >>> distributed.rank_seed(7)  # one process: the seed itself
    7
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "all_reduce_mean",
    "any_rank",
    "average_gradients",
    "barrier",
    "broadcast_object",
    "broadcast_parameters",
    "init_from_environment",
    "install_gradient_averaging",
    "is_distributed",
    "is_main",
    "rank",
    "rank_path",
    "rank_seed",
    "same_on_all_ranks",
    "world_size",
]


def _group_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    return torch.distributed.get_world_size() if _group_ready() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if _group_ready() else 0


def is_distributed() -> bool:
    """Whether a process group of more than one rank exists (then gradients are averaged)."""
    return world_size() > 1


def is_main() -> bool:
    """Whether this process logs, evaluates and saves: rank 0 (or the only process)."""
    return rank() == 0


def rank_seed(seed: int, rank_: int | None = None) -> int:
    """This rank's seed: ``seed`` itself in one process, else a 63-bit seed drawn from numpy's
    ``SeedSequence((seed, rank))`` (independent streams, none equal to another run's seed)."""
    rank_ = rank() if rank_ is None else rank_
    if world_size() == 1 and rank_ == 0:
        return int(seed)
    state = np.random.SeedSequence([int(seed), int(rank_)]).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def rank_path(path: str | Path, rank_: int | None = None) -> Path:
    """``path`` for rank 0; ``NAME.rank{r}.SUFFIX`` beside it for rank ``r`` > 0 (the file of
    that rank's own state, e.g. its replay buffer in a checkpoint)."""
    path, rank_ = Path(path), rank() if rank_ is None else rank_
    return path if rank_ == 0 else path.with_name(f"{path.stem}.rank{rank_}{path.suffix}")


def init_from_environment() -> bool:
    """Joins the process group that ``torchrun`` describes (``WORLD_SIZE``, ``RANK``,
    ``MASTER_ADDR``... in the environment): gloo on the CPU, NCCL where CUDA is available (each
    rank on GPU ``LOCAL_RANK``). Returns whether it created the group (then the caller
    destroys it when done); a no-op outside ``torchrun`` or when a group already exists."""
    if _group_ready() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not torch.distributed.is_available():
        raise RuntimeError("torchrun: this torch build has no torch.distributed")
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "nccl"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend)
    return True


def _device(like: Tensor | None = None) -> torch.device:
    """Where a collective's tensor lives: NCCL needs CUDA, gloo takes CPU tensors."""
    if torch.distributed.get_backend() == "nccl":
        return like.device if like is not None and like.is_cuda else torch.device("cuda")
    return torch.device("cpu")


def average_gradients(params: Iterable[Tensor]) -> None:
    """Replaces each parameter's ``.grad`` by its mean over the ranks, in one flattened
    ``all_reduce`` per device and dtype. Parameters without a gradient are skipped (the same on
    every rank: they run the same code)."""
    if not is_distributed():
        return
    groups: dict[tuple, list[Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    n = world_size()
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        device = _device(flat)
        reduced = flat.to(device)
        torch.distributed.all_reduce(reduced)
        reduced = reduced.to(flat.device).div_(n)
        offset = 0
        for g in grads:
            g.copy_(reduced[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def install_gradient_averaging(optimizer: torch.optim.Optimizer):
    """Averages the gradients of ``optimizer``'s parameters over the ranks before each of its
    steps (``register_step_pre_hook``), so that every rank takes the same step; returns the
    hook's handle (``.remove()`` undoes it)."""

    def hook(opt, args, kwargs) -> None:
        average_gradients(p for group in opt.param_groups for p in group["params"])

    return optimizer.register_step_pre_hook(hook)


def broadcast_parameters(tensors: Iterable[Tensor]) -> None:
    """Copies rank 0's values of ``tensors`` (parameters, buffers) into every rank's, so that
    all ranks start identical."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in tensors:
            buf = t.detach().to(_device(t))
            torch.distributed.broadcast(buf, src=0)
            if buf is not t:
                t.copy_(buf.to(t.device))


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over the ranks (a new tensor; ``tensor`` itself in one process)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().to(_device(tensor), copy=True)
    torch.distributed.all_reduce(out)
    return out.div_(world_size()).to(tensor.device)


def any_rank(flags: list[bool]) -> list[bool]:
    """For each flag, whether it is true on any rank (one ``all_reduce`` for all), e.g. a
    callback asking to stop, so that all ranks leave a loop together."""
    if not is_distributed():
        return [bool(f) for f in flags]
    t = torch.tensor([int(bool(f)) for f in flags], device=_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def same_on_all_ranks(value: int) -> bool:
    """Whether the integer ``value`` (e.g. a step counter) is the same on every rank."""
    if not is_distributed():
        return True
    t = torch.tensor([value, -value], dtype=torch.int64, device=_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.tolist() == [value, -value]


def broadcast_object(obj):
    """Rank 0's ``obj`` (picklable) on every rank (e.g. a run directory rank 0 created)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0, device=_device())
    return box[0]


def barrier() -> None:
    """Waits for every rank (no-op in one process)."""
    if is_distributed():
        torch.distributed.barrier()
