"""Learning curves from the TensorBoard event files that ``ebrl train`` writes in its run dirs.

One curve per run; with several runs also their mean and min-max band on a common step grid
(every step any run logged inside the range that all runs cover, each run linearly
interpolated there), so seeds that log at different steps (episode ends) still average.

Example:
    >>> curves = plot_runs(["runs/Pendulum-v1_sac_0", "runs/Pendulum-v1_sac_1"],   # doctest: +SKIP
    ...                    "plot.png", tag="eval/mean_return")
    >>> curves.points                                                            # doctest: +SKIP
    {'runs/Pendulum-v1_sac_0': 10, 'runs/Pendulum-v1_sac_1': 10}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_TAG", "Curve", "LearningCurves", "plot_runs", "read_curve"]

DEFAULT_TAG = "rollout/episode_return"
_EVENTS = "events.out.tfevents*"


@dataclass(frozen=True)
class Curve:
    """One run's scalar ``tag``: ``values[i]`` logged at env step ``steps[i]`` (steps sorted)."""

    run_dir: Path
    tag: str
    steps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class LearningCurves:
    """What :func:`plot_runs` drew.

    ``curves``: one per run, in the order given. ``grid``: the common steps of the mean and
    band (empty for one run, or for runs whose step ranges do not overlap); ``mean``, ``low``,
    ``high``: the mean, min and max over runs there."""

    png: Path
    tag: str
    curves: list[Curve]
    grid: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def points(self) -> dict[str, int]:
        """Points per run (keyed by the run dir as given)."""
        return {str(c.run_dir): len(c.steps) for c in self.curves}


def read_curve(run_dir: str | Path, tag: str = DEFAULT_TAG) -> Curve:
    """Every logged value of ``tag`` in the event files of ``run_dir`` (TensorBoard's own
    reader, no down-sampling). A resumed run's several files read as one; a step logged
    twice (a run resumed from a checkpoint older than its last logs) keeps its last value.

    Raises:
        ValueError: ``run_dir`` is not a directory, holds no event files, or has no ``tag``
            (the message lists the tags it has).
    """
    from tensorboard.backend.event_processing import event_accumulator as ea

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a directory (give ebrl train's run dirs)")
    if not any(run_dir.glob(_EVENTS)):
        below = sorted({str(p.parent) for p in run_dir.glob(f"*/{_EVENTS}")})
        hint = f"; its subdirectories have some: {' '.join(below[:5])}" if below else ""
        raise ValueError(f"no TensorBoard event files in {run_dir}{hint}")
    # size 0: keep every scalar (the default keeps a random 10,000); nothing else is loaded
    guidance = {ea.SCALARS: 0, ea.TENSORS: 1, ea.HISTOGRAMS: 1, ea.IMAGES: 1, ea.AUDIO: 1}
    accumulator = ea.EventAccumulator(str(run_dir), size_guidance=guidance)
    accumulator.Reload()
    tags = sorted(accumulator.Tags()["scalars"])
    if tag not in tags:
        raise ValueError(f"{run_dir} has no scalar {tag!r}; its tags: {', '.join(tags) or 'none'}")
    events = accumulator.Scalars(tag)
    steps = np.array([e.step for e in events], dtype=np.int64)
    values = np.array([e.value for e in events], dtype=np.float64)
    order = np.argsort(steps, kind="stable")  # files, then events, in the order written
    steps, values = steps[order], values[order]
    last = np.append(steps[1:] != steps[:-1], True)  # the last value written at each step
    return Curve(run_dir, tag, steps[last], values[last])


def plot_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    tag: str = DEFAULT_TAG,
    title: str | None = None,
) -> LearningCurves:
    """Draws ``tag`` against env steps for each run dir, and with several runs their mean and
    min-max band, into ``out`` (PNG, or any format matplotlib writes, by its suffix).

    Args:
        run_dirs: run directories of ``ebrl train`` (``LOGDIR/<env>_<algo>_<seed>``), each
            holding TensorBoard event files; e.g. several seeds of one configuration.
        out: the image path (parent directories are created).
        tag: the scalar to draw, e.g. ``rollout/episode_return`` (training episodes) or
            ``eval/mean_return`` (``ebrl train --eval-every``).
        title: the plot's title (default: the tag).

    Returns:
        :class:`LearningCurves`: the curves read, the common grid and its mean and band.
    """
    if isinstance(run_dirs, str | Path) or not isinstance(run_dirs, Sequence) or not run_dirs:
        raise ValueError(f"plot_runs: run_dirs must be a non-empty list of dirs, got {run_dirs!r}")
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"plot_runs: tag must be a non-empty string, got {tag!r}")
    run_dirs = [Path(d) for d in run_dirs]
    resolved = [d.resolve() for d in run_dirs]
    repeated = sorted(
        {str(d) for d, r in zip(run_dirs, resolved, strict=True) if resolved.count(r) > 1}
    )
    if repeated:
        raise ValueError(f"plot_runs: run dirs given twice: {', '.join(repeated)}")
    curves = [read_curve(d, tag) for d in run_dirs]
    grid, mean, low, high = _spread(curves)
    png = _draw(curves, grid, mean, low, high, Path(out), title or tag)
    return LearningCurves(png, tag, curves, grid, mean, low, high)


def _spread(curves: list[Curve]) -> tuple[np.ndarray, ...]:
    """The common grid (every logged step inside the range all runs cover) and the mean, min
    and max over runs of their linear interpolations there."""
    empty = np.empty(0)
    if len(curves) < 2:
        return empty, empty, empty, empty
    start = max(int(c.steps[0]) for c in curves)
    stop = min(int(c.steps[-1]) for c in curves)
    steps = np.unique(np.concatenate([c.steps for c in curves]))
    grid = steps[(steps >= start) & (steps <= stop)]
    if grid.size == 0:
        return empty, empty, empty, empty
    values = np.stack([np.interp(grid, c.steps, c.values) for c in curves])
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def _draw(curves, grid, mean, low, high, out: Path, title: str) -> Path:
    # A Figure of its own, drawn by the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [c.run_dir.name for c in curves]
    if len(set(names)) < len(names):  # e.g. a/Pendulum-v1_sac_0 and b/Pendulum-v1_sac_0
        names = [str(c.run_dir) for c in curves]
    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    several = len(curves) > 1
    for curve, name in zip(curves, names, strict=True):
        marker = "o" if len(curve.steps) < 30 else None
        ax.plot(
            curve.steps,
            curve.values,
            marker=marker,
            lw=1,
            alpha=0.5 if several else 1.0,
            label=name,
        )
    if grid.size:
        ax.fill_between(grid, low, high, color="k", alpha=0.12, lw=0, label="min-max")
        ax.plot(grid, mean, color="k", lw=2, label=f"mean of {len(curves)} runs")
    ax.set_xlabel("env steps")
    ax.set_ylabel(title.rsplit("/", 1)[-1].replace("_", " "))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
