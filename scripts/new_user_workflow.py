"""A new user's first session with the `ebrl` command, checked end to end:

    ebrl --version
    ebrl train --seed 0 --eval-every N --checkpoint-every M    (and --seed 1)
    ebrl evaluate RUN_DIR/model.pt --video DIR
    ebrl plot RUN_DIR_0 RUN_DIR_1 --tag eval/mean_return --out plot.png

Asserts that each run dir holds what the flags promise (events, checkpoint.pt, best_model.pt,
model.pt), that the videos and the PNG exist and are not trivial (real frames that change,
a drawn image), and that the plot has one point per evaluation. Prints every command and its
JSON. Needs the video extra (pip install 'ebrl[video]'); without it the evaluate step stops
with the one-line install message.

    python scripts/new_user_workflow.py                  # defaults of ebrl train, 1500 steps
    python scripts/new_user_workflow.py --tiny --steps 600 --workdir /tmp/ebrl_demo
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = ["--hidden-sizes", "32", "32", "--batch-size", "32", "--learning-starts", "100"]


def ebrl(*argv: object) -> dict | str:
    """Runs `ebrl ARGV` (this interpreter's), echoes it, returns its JSON (or plain text)."""
    args = [str(a) for a in argv]
    print(f"$ ebrl {shlex.join(args)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ebrl", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"FAILED (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    out = done.stdout.strip().splitlines()[-1]
    print(f"  {out}\n  ({time.perf_counter() - start:.1f} s)", flush=True)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return out


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"CHECK FAILED: {what}")
    print(f"  ok: {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="env steps per training run")
    parser.add_argument("--tiny", action="store_true", help="small networks and batches (fast)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temp dir")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ebrl_workflow_"))
    work.mkdir(parents=True, exist_ok=True)
    eval_every, checkpoint_every = args.steps // 3, args.steps // 2
    extra = TINY if args.tiny else []
    print(f"workdir: {work}")

    version = ebrl("--version")
    check(isinstance(version, str) and version.startswith("ebrl "), "ebrl --version")

    runs = []
    for seed in (0, 1):
        result = ebrl(
            "train", "--seed", seed, "--steps", args.steps, "--eval-every", eval_every,
            "--checkpoint-every", checkpoint_every, "--eval-episodes", 2,
            "--logdir", work / "runs", "--no-progress", *extra,
        )  # fmt: skip
        run_dir = Path(result["logdir"])
        names = {p.name for p in run_dir.iterdir()}
        for name in ("model.pt", "checkpoint.pt", "best_model.pt", "run.json", "result.json"):
            check(name in names, f"{run_dir.name}/{name} written")
        check(any(n.startswith("events.out.tfevents") for n in names), "TensorBoard events")
        runs.append(run_dir)

    videos_dir = work / "videos"
    evaluated = ebrl("evaluate", runs[0] / "model.pt", "--episodes", 2, "--video", videos_dir)
    videos = [Path(v) for v in evaluated["videos"]]
    check(len(videos) == 2 and all(v.is_file() for v in videos), "one video per episode")
    for video in videos:
        check(video.stat().st_size > 10_000, f"{video.name}: {video.stat().st_size} bytes")
        import imageio.v3 as iio
        import numpy as np

        frames = iio.imread(video)
        moved = float(np.abs(frames[0].astype(int) - frames[-1]).mean())
        check(len(frames) > 100 and moved > 0.1, f"{len(frames)} frames that change ({moved:.2f})")

    png = work / "plot.png"
    plotted = ebrl("plot", *runs, "--tag", "eval/mean_return", "--out", png)
    check(png.is_file() and png.stat().st_size > 10_000, f"plot.png: {png.stat().st_size} bytes")
    from matplotlib.image import imread

    pixels = imread(png)
    check(pixels.ndim == 3 and float(pixels.std()) > 0.01, f"a drawn image {pixels.shape[:2]}")
    evaluations = args.steps // eval_every
    check(
        list(plotted["points"].values()) == [evaluations, evaluations],
        f"{evaluations} points per run (one per --eval-every)",
    )
    default_tag = ebrl("plot", *runs, "--out", work / "episode_return.png")
    check(all(n >= 1 for n in default_tag["points"].values()), "rollout/episode_return drawn")
    print(f"workflow ok: {work}")


if __name__ == "__main__":
    main()
