"""The matrix-multiply floor of a piece of torch code: what no implementation of it can beat.

:func:`matmul_floor` runs the code once under a dispatch mode that records every matrix
multiply it reaches (forward and backward: ``mm``, ``addmm``, ``bmm``, ``baddbmm``, ...), with
its shapes, then times those multiplies alone on fresh tensors of the same shapes, in the same
order. Everything else the code does (elementwise ops, reductions, optimiser steps, Python) is
overhead above that floor. Used by ``bench_sac.py`` and ``bench_softq.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
MATMULS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            shapes = [(tuple(a.shape), a.dtype, a.device) for a in args if torch.is_tensor(a)]
            self.calls.append((func, shapes))
        return func(*args, **(kwargs or {}))


def record_matmuls(fn: Callable[[], object]) -> list[tuple]:
    """``fn()`` once; the matrix multiplies it dispatched, as ``(op, [(shape, dtype, device)])``."""
    recorder = _Recorder()
    with recorder:
        fn()
    return recorder.calls


def matmul_floor(fn: Callable[[], object], repeats: int = 200) -> tuple[float, int]:
    """``(seconds, n_matmuls)``: the median time of replaying the matrix multiplies of one
    ``fn()`` call (contiguous random operands of the recorded shapes), and how many there are."""
    calls = record_matmuls(fn)
    replay = [
        (op, [torch.randn(shape, dtype=dtype, device=device) for shape, dtype, device in shapes])
        for op, shapes in calls
    ]

    def run() -> None:
        for op, operands in replay:
            op(*operands)

    return median_time(run, repeats), len(calls)


def floor_row(path: str, seconds: float, floor: tuple[float, int]) -> str:
    """A markdown row ``| path | time | matmul floor (n matmuls) | ratio |``, in ms or us."""
    floor_s, n = floor
    scale, unit, digits = (1e3, "ms", 2) if floor_s >= 1e-3 else (1e6, "us", 0)
    return (
        f"| {path} | {seconds * scale:.{digits}f} {unit} | {floor_s * scale:.{digits}f} {unit} "
        f"({n} matmuls) | {seconds / floor_s:.2f}x |"
    )


def median_time(fn: Callable[[], object], repeats: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean time of ``repeats // rounds`` calls (after a warm-up)."""
    return statistics.median(interleaved_times({"fn": fn}, repeats, rounds)["fn"])


def interleaved_times(
    fns: dict[str, Callable[[], object]], repeats: int, rounds: int = 30
) -> dict[str, list[float]]:
    """Each function's mean time per call in each of ``rounds`` rounds of
    ``repeats // rounds`` calls, the functions taking turns within every round (the first to
    run moves by one each round): a ratio between two of them, taken per round, compares
    calls made within milliseconds of each other, so a shared machine's load drifting between
    rounds cancels out of it (timing each function in a block of its own did not: the acting
    ratio moved by +-0.2 between runs)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    names = list(fns)
    for name in names:  # warm-up
        for _ in range(3):
            fns[name]()
    per_round = max(repeats // rounds, 1)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            sync()
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            sync()
            times[name].append((time.perf_counter() - start) / per_round)
    return times
