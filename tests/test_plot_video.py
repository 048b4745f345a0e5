"""`ebrl plot` (learning curves from TensorBoard events), `ebrl evaluate --video` and the
acting-budget flags, and `ebrl --version`."""

import importlib.util
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

import ebrl
from ebrl.agents import SAC, SoftQ
from ebrl.cli import main
from ebrl.plotting import plot_runs, read_curve
from ebrl.video import record_video, require_video_dependency

TINY = ["--hidden-sizes", "32", "32", "--batch-size", "32", "--learning-starts", "100"]
CAN_RECORD = all(importlib.util.find_spec(m) for m in ("moviepy", "pygame", "imageio"))
needs_video = pytest.mark.skipif(
    not CAN_RECORD, reason="the video extra (moviepy; pygame renders Pendulum) is not installed"
)


def run(capsys, *argv):
    assert main([str(a) for a in argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def fails(capsys, *argv) -> str:
    """The one-line error of a command that must exit with status 2."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny SAC runs (seeds 0 and 1) of `ebrl train`, past learning_starts, evaluated
    every 150 steps."""
    logdir = tmp_path_factory.mktemp("runs")
    argv = ["train", "--steps", "300", "--eval-every", "150", "--eval-episodes", "1"]
    for seed in (0, 1):
        assert (
            main([*argv, "--seed", str(seed), "--no-progress", "--logdir", str(logdir), *TINY]) == 0
        )
    return [logdir / "Pendulum-v1_sac_0", logdir / "Pendulum-v1_sac_1"]


def write_scalars(run_dir, tag, steps, values):
    with SummaryWriter(str(run_dir)) as writer:
        for step, value in zip(steps, values, strict=True):
            writer.add_scalar(tag, value, step)


# ----------------------------------------------------------------------------- plot


@pytest.mark.parametrize("tag", ["eval/mean_return", "rollout/episode_return"])
def test_plot_of_two_runs_draws_every_logged_point(two_runs, tmp_path, tag):
    out = tmp_path / "curves.png"
    curves = plot_runs(two_runs, out, tag=tag)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    for curve, run_dir in zip(curves.curves, two_runs, strict=True):
        accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        accumulator.Reload()
        events = accumulator.Scalars(tag)
        assert len(events) >= 1
        assert curves.points[str(run_dir)] == len(events) == len(curve.steps)
        np.testing.assert_array_equal(curve.steps, [e.step for e in events])
        np.testing.assert_allclose(curve.values, [e.value for e in events])
    if tag == "eval/mean_return":
        np.testing.assert_array_equal(curves.curves[0].steps, [150, 300])
        np.testing.assert_array_equal(curves.grid, [150, 300])
    assert np.all(curves.low <= curves.mean) and np.all(curves.mean <= curves.high)


def test_plot_cli_prints_png_and_points(two_runs, tmp_path, capsys):
    out = tmp_path / "sub" / "plot.png"
    got = run(capsys, "plot", *two_runs, "--tag", "eval/mean_return", "--out", out)
    assert got == {
        "png": str(out),
        "tag": "eval/mean_return",
        "points": {str(d): 2 for d in two_runs},
    }
    assert out.is_file()


def test_mean_and_band_interpolate_runs_on_the_steps_all_cover(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_scalars(a, "x", [0, 10, 20, 30], [0.0, 1.0, 2.0, 3.0])
    write_scalars(b, "x", [5, 15, 25, 35], [10.0, 20.0, 30.0, 40.0])
    curves = plot_runs([a, b], tmp_path / "p.png", tag="x")
    assert curves.points == {str(a): 4, str(b): 4}
    grid = np.array([5, 10, 15, 20, 25, 30])  # every logged step inside [5, 30]
    np.testing.assert_array_equal(curves.grid, grid)
    run_a = grid / 10  # a's values are step / 10
    run_b = np.where(grid < 15, 10 + (grid - 5), 20 + (grid - 15))  # b's, interpolated
    np.testing.assert_allclose(curves.mean, (run_a + run_b) / 2)
    np.testing.assert_allclose(curves.low, np.minimum(run_a, run_b))
    np.testing.assert_allclose(curves.high, np.maximum(run_a, run_b))


def test_one_run_has_no_band_and_disjoint_runs_no_mean(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_scalars(a, "x", [0, 1], [0.0, 1.0])
    write_scalars(b, "x", [5, 6], [0.0, 1.0])
    assert plot_runs([a], tmp_path / "one.png", tag="x").grid.size == 0
    disjoint = plot_runs([a, b], tmp_path / "two.png", tag="x")
    assert disjoint.grid.size == 0 and disjoint.points == {str(a): 2, str(b): 2}


def test_a_step_logged_twice_keeps_its_last_value(tmp_path):
    # a run resumed from a checkpoint older than its last logs writes those steps again
    write_scalars(tmp_path, "x", [0, 10, 20], [0.0, 1.0, 2.0])
    write_scalars(tmp_path, "x", [10, 20, 30], [5.0, 6.0, 7.0])
    curve = read_curve(tmp_path, "x")
    np.testing.assert_array_equal(curve.steps, [0, 10, 20, 30])
    np.testing.assert_allclose(curve.values, [0.0, 5.0, 6.0, 7.0])


def test_plot_errors_are_one_line(tmp_path, capsys):
    write_scalars(tmp_path / "runs" / "r", "train/loss", [0], [1.0])
    err = fails(capsys, "plot", tmp_path / "runs")
    assert "no TensorBoard event files" in err and str(tmp_path / "runs" / "r") in err
    err = fails(capsys, "plot", tmp_path / "runs" / "r")
    assert "no scalar 'rollout/episode_return'" in err and "its tags: train/loss" in err
    assert "not a directory" in fails(capsys, "plot", tmp_path / "missing")
    assert "given twice" in fails(capsys, "plot", tmp_path / "runs" / "r", tmp_path / "runs/r/")
    with pytest.raises(ValueError, match="non-empty list"):
        plot_runs([], tmp_path / "p.png")


# ----------------------------------------------------------------------------- evaluate


def test_n_particles_and_mala_steps_set_the_acting_sampler(two_runs, capsys):
    model = two_runs[0] / "model.pt"
    argv = ["evaluate", model, "--episodes", "1", "--stochastic"]
    before = run(capsys, *argv)
    assert "n_particles=16" in before["sampler"] and "MALA" not in before["sampler"]
    after = run(capsys, *argv, "--n-particles", "3", "--mala-steps", "2")
    assert after["sampler"].startswith("Chain(first=ImportanceSampler(n_particles=3")
    assert "MALA(" in after["sampler"] and "n_steps=2" in after["sampler"]
    assert np.isfinite(after["mean_return"]) and -2000 < after["mean_return"] <= 0


def test_acting_budget_flags_are_refused_where_they_mean_nothing(two_runs, tmp_path, capsys):
    softq = SoftQ("CartPole-v1", hidden_sizes=(32, 32)).save(tmp_path / "softq.pt")
    err = fails(capsys, "evaluate", softq, "--stochastic", "--n-particles", "4")
    assert "--n-particles" in err and "SoftQ" in err and "exact" in err
    model = two_runs[0] / "model.pt"
    assert "--stochastic" in fails(capsys, "evaluate", model, "--n-particles", "4")
    assert ">= 1" in fails(capsys, "evaluate", model, "--stochastic", "--n-particles", "0")
    assert ">= 0" in fails(capsys, "evaluate", model, "--stochastic", "--mala-steps", "-1")


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ebrl {ebrl.__version__}"


# ----------------------------------------------------------------------------- video


def short_pendulum():
    return gym.make("Pendulum-v1", max_episode_steps=30)


def test_missing_video_dependency_is_a_one_line_error(two_runs, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "moviepy" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install 'ebrl\[video\]'"):
        require_video_dependency()
    err = fails(capsys, "evaluate", two_runs[0] / "model.pt", "--video", tmp_path / "v")
    assert "moviepy" in err and "pip install 'ebrl[video]'" in err
    assert not (tmp_path / "v").exists()


@needs_video
def test_record_video_replays_evaluate_episodes(tmp_path):
    import imageio.v3 as iio

    agent = SAC(short_pendulum, hidden_sizes=(32, 32), batch_size=32, learning_starts=40)
    agent.learn(60, progress_bar=False)  # past learning_starts: 20 gradient steps
    generator = agent.generator.get_state()
    got = record_video(agent, tmp_path / "videos", n_episodes=2, seed=7)
    assert torch.equal(agent.generator.get_state(), generator)  # acting state untouched
    expected = agent.evaluate(2, seed=7)
    assert got["returns"] == expected["returns"] and got["lengths"] == [30, 30]  # the spec's
    assert [p.name for p in got["videos"]] == [
        "sac-Pendulum-v1-episode-0.mp4",
        "sac-Pendulum-v1-episode-1.mp4",
    ]
    frames = iio.imread(got["videos"][0])
    assert frames.ndim == 4 and frames.shape[-1] == 3
    assert 30 <= len(frames) <= 31  # the reset frame and one per step (ffmpeg may drop one)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.1  # the pendulum moved


@needs_video
def test_evaluate_video_prints_the_video_paths(two_runs, tmp_path, capsys):
    model = two_runs[0] / "model.pt"
    plain = run(capsys, "evaluate", model, "--episodes", "1", "--seed", "3")
    got = run(capsys, "evaluate", model, "--episodes", "1", "--seed", "3", "--video", tmp_path)
    assert got["mean_return"] == plain["mean_return"] and plain["videos"] is None
    assert got["videos"] == [str(tmp_path / "sac-Pendulum-v1-episode-0.mp4")]
    assert (tmp_path / "sac-Pendulum-v1-episode-0.mp4").stat().st_size > 10_000


def test_record_video_checks_its_arguments(tmp_path):
    agent = SAC(short_pendulum, hidden_sizes=(32, 32))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_episodes"):
            record_video(agent, tmp_path, n_episodes=bad)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        record_video(agent, tmp_path / "file")
    with pytest.raises(TypeError, match="ebrl agent"):
        record_video(object(), tmp_path)


@needs_video
def test_an_env_without_rgb_frames_is_named(tmp_path):
    agent = SAC("ebrl/MultiGoal-v0", hidden_sizes=(32, 32))
    with pytest.raises(ValueError, match=r"ebrl/MultiGoal-v0 cannot render RGB frames"):
        record_video(agent, tmp_path)
