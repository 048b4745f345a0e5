"""Run logging: TensorBoard scalars, a progress bar, and a console line, in one small object;
and the results.md writer the studies share."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from tqdm.auto import tqdm

__all__ = ["RunLogger", "write_report"]

READING = "## Reading (written by hand"


class RunLogger:
    """Writes scalars to TensorBoard (when ``logdir`` is given) and drives a tqdm progress bar.

    Values may be floats or 0-d tensors; tensors are converted here, once per logging call, so
    training loops can hand over device tensors without syncing at every step. The bar is shown
    only on a terminal (a redirected log gets no carriage-return flood).
    """

    def __init__(
        self,
        logdir: str | Path | None,
        total: int,
        progress_bar: bool = True,
        desc: str = "ebrl",
        purge_step: int | None = None,
    ):
        self.writer = None
        if logdir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run drops the events a killed run wrote after its
            # checkpoint (TensorBoard would otherwise draw them twice).
            self.writer = SummaryWriter(str(logdir), purge_step=purge_step)
        self.bar = tqdm(
            total=total,
            # hidden when stderr is not a terminal (a log file, CI: no carriage-return flood),
            # shown in a notebook, where tqdm.auto draws a widget (tqdm's own disable=None
            # would hide it there: a kernel's stderr is not a terminal).
            disable=not (progress_bar and (sys.stderr.isatty() or "ipykernel" in sys.modules)),
            desc=desc,
            unit="step",
            dynamic_ncols=True,
            leave=True,
        )

    def scalars(self, step: int, values: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
        """Logs ``values`` at ``step``; returns them as floats."""
        floats = {
            k: float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)
            for k, v in values.items()
        }
        if self.writer is not None:
            for key, value in floats.items():
                self.writer.add_scalar(key, value, step)
        return floats

    def advance(self, n: int, postfix: Mapping[str, float] | None = None) -> None:
        self.bar.update(n)
        if postfix:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_report(path: str | Path, lines: list[str]) -> None:
    """Writes a study's generated ``results.md``, keeping the hand-written ``## Reading (written
    by hand ...)`` section of the file it replaces, so that rerunning a study refreshes its
    numbers without deleting what a person wrote about them."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    keep = old[old.index(READING) :] if READING in old else ""
    path.write_text("\n".join(lines) + "\n" + ("\n" + keep if keep else ""))
