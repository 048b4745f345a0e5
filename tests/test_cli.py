"""The `ebrl` console script: train -> checkpoint -> evaluate, JSON output, clear errors."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from ebrl.agents import SACConfig, SoftQConfig
from ebrl.cli import _bool_or_auto, field_docs, main

TINY = ["--hidden-sizes", "32", "32", "--batch-size", "32", "--learning-starts", "100"]


def run(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_then_evaluate(tmp_path, capsys):
    out = run(
        capsys,
        "train",
        "--steps",
        "300",
        "--eval-episodes",
        "2",
        "--no-progress",
        "--logdir",
        str(tmp_path),
        *TINY,
    )
    for key in ["env", "algo", "steps", "seed", "mean_return", "std_return", "wall_s"]:
        assert key in out
    assert out["env"] == "Pendulum-v1" and out["steps"] == 300 and out["algo"] == "sac"
    assert -2000 < out["mean_return"] <= 0  # Pendulum's returns are negative
    ckpt = tmp_path / "Pendulum-v1_sac_0" / "model.pt"
    assert ckpt.is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in ckpt.parent.iterdir())
    again = run(capsys, "evaluate", str(ckpt), "--episodes", "1")
    assert again["env"] == "Pendulum-v1" and again["episodes"] == 1


def test_the_cloned_anchor_is_a_function_of_the_seed(tmp_path):
    """--anchor's behaviour cloning starts from weights drawn from --seed, not from the
    process's global stream (which differed between two runs of the same seed before)."""
    from ebrl.cli import _behaviour_cloned_anchor
    from ebrl.data.demos import pendulum_demos

    demos = pendulum_demos(2, noise_std=0.2, seed=0).save(tmp_path / "demos.npz")
    anchors = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        anchors.append(_behaviour_cloned_anchor(demos, "Pendulum-v1", seed=0)[0].state_dict())
    for key, value in anchors[0].items():
        assert torch.equal(value, anchors[1][key]), key


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--steps", "0"], "--steps must be >= 1"),
        (["train", "--env", "NoSuchEnv-v0", "--steps", "5"], "unknown or unavailable env id"),
        (["train", "--steps", "5", "--n-particles", "0"], "SACConfig: n_particles"),
        (["train", "--steps", "5", "--anchor", "missing.npz"], "no demonstrations file"),
        (["train", "--steps", "5", "--anchor-family", "truncated"], "only for --algo sac with"),
        (["train", "--steps", "5", "--anchor-family", "squashed"], "only for --algo sac with"),
        (["train", "--steps", "5", "--anchor-family", "tanh"], "invalid choice"),
        (["evaluate", "missing.pt"], "no checkpoint"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("config", [SACConfig, SoftQConfig])
def test_every_config_field_has_help(config):
    docs = field_docs(config)
    missing = [f.name for f in dataclasses.fields(config) if f.name not in docs]
    assert not missing


@pytest.mark.parametrize(
    ("family", "cls"), [("squashed", "GaussianAnchor"), ("truncated", "TruncatedGaussianAnchor")]
)
def test_anchored_training_reports_demonstrator_anchor_agent_and_kl(tmp_path, capsys, family, cls):
    from ebrl.data.demos import pendulum_demos

    demos = pendulum_demos(2, noise_std=0.2, seed=0).save(tmp_path / "demos.npz")
    argv = ["train", "--steps", "300", "--eval-episodes", "2", "--no-progress"]
    argv += ["--anchor", str(demos), "--anchor-family", family]
    out = run(capsys, *argv, "--logdir", str(tmp_path), *TINY)
    report = out["anchor"]
    assert report["class"] == cls
    assert report["demo_mean_return"] > -400  # the swing-up controller balances
    for key in ("heldout_nll", "anchor_mean_return", "anchor_std_return", "final_kl_to_anchor"):
        assert np.isfinite(report[key]), key
    assert report["final_kl_to_anchor"] >= 0
    assert -3000 < report["anchor_mean_return"] <= 0  # Pendulum's returns are negative


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--learnig-rate", "1e-3"], "did you mean --learning-rate?"),
        (["train", "--learning-rate", "abc"], "argument --learning-rate: invalid float"),
        (["train", "--temperature-bounds", "1"], "--temperature-bounds: expected 2 arguments"),
        (["train", "--compile", "maybe"], "--compile: expected true, false or auto, got 'maybe'"),
    ],
)
def test_parse_errors_are_one_line_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_help_shows_the_presets_of_the_env_given(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--env", "CartPole-v1", "--help"])
    pendulum_lr = SACConfig.for_env("Pendulum-v1").learning_rate
    cartpole = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"softq {SoftQConfig.for_env('CartPole-v1').learning_rate}" in cartpole
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert f"sac {pendulum_lr}" in " ".join(capsys.readouterr().out.split())


def test_compile_flag_takes_true_false_or_auto(capsys):
    assert [_bool_or_auto(t) for t in ("auto", "True", "false", "1")] == [None, True, False, True]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--compile COMPILE torch.compile the acting step" in help_text
    assert "compiling fails. (default: auto)" in help_text
