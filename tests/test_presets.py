"""The per-env presets (ebrl.agents.presets): every entry is a valid config for an env of the
right kind, and a flag or keyword argument wins over it."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import pytest

import ebrl.envs  # noqa: F401  (registers ebrl/MultiGoal-v0)
from ebrl.agents import SACConfig, SoftQConfig, make_env
from ebrl.agents.presets import PRESETS, preset
from ebrl.cli import main

CONFIGS = {"SACConfig": SACConfig, "SoftQConfig": SoftQConfig}
ACTION_SPACES = {"SACConfig": gym.spaces.Box, "SoftQConfig": gym.spaces.Discrete}
ENTRIES = [(name, env_id) for name, table in PRESETS.items() for env_id in table]

# The module each env family needs (gymnasium[mujoco], gymnasium[box2d]); skipped without it.
MUJOCO_IDS = {
    "HalfCheetah-v5",
    "Hopper-v5",
    "Walker2d-v5",
    "Ant-v5",
    "Humanoid-v5",
    "Swimmer-v5",
    "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
    "Reacher-v5",
}
BOX2D_IDS = {"LunarLanderContinuous-v3", "BipedalWalker-v3", "LunarLander-v3"}


def _required_module(env_id: str) -> str | None:
    if env_id in MUJOCO_IDS:
        return "mujoco"
    if env_id in BOX2D_IDS:
        return "Box2D"
    return None


def test_the_table_covers_the_issues_envs():
    sac = {
        "Pendulum-v1",
        "MountainCarContinuous-v0",
        "LunarLanderContinuous-v3",
        "BipedalWalker-v3",
        "ebrl/MultiGoal-v0",
        *MUJOCO_IDS,
    }
    softq = {"CartPole-v1", "LunarLander-v3", "Acrobot-v1", "MountainCar-v0"}
    assert set(PRESETS) == set(CONFIGS)
    assert set(PRESETS["SACConfig"]) == sac
    assert set(PRESETS["SoftQConfig"]) == softq


@pytest.mark.parametrize(("config_name", "env_id"), ENTRIES)
def test_every_preset_is_a_valid_config_of_its_fields(config_name, env_id):
    cls = CONFIGS[config_name]
    values = PRESETS[config_name][env_id]
    names = {f.name for f in dataclasses.fields(cls)}
    assert set(values) <= names, f"{env_id}: not {config_name} fields: {set(values) - names}"
    config = cls.for_env(env_id)  # __post_init__ validates every field
    assert {k: getattr(config, k) for k in values} == values
    # the rest are the config's defaults
    assert dataclasses.replace(config, **{k: getattr(cls(), k) for k in values}) == cls()


@pytest.mark.parametrize(("config_name", "env_id"), ENTRIES)
def test_every_preset_is_for_an_env_of_its_action_space(config_name, env_id):
    module = _required_module(env_id)
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{env_id} needs {module} (gymnasium[{module.lower()}]), not installed")
    env = make_env(env_id)
    space = env.action_space
    env.close()
    assert isinstance(space, ACTION_SPACES[config_name]), f"{env_id}: {space}"


def test_preset_returns_a_copy_and_nothing_for_unknown_envs():
    got = preset("SACConfig", "Hopper-v5")
    got["learning_starts"] = 1
    assert PRESETS["SACConfig"]["Hopper-v5"]["learning_starts"] == 10_000
    assert PRESETS["SACConfig"]["Walker2d-v5"]["learning_starts"] == 10_000  # shared values
    assert preset("SACConfig", "NoPreset-v0") == {} and preset("SACConfig", None) == {}
    assert SACConfig.for_env("NoPreset-v0") == SACConfig()


def test_mujoco_presets_act_deterministically_by_the_actors_mode():
    """The MuJoCo tasks take RL-Zoo's warm-up and ebrl's mode_steps 0 (the study in
    experiments/sac_mujoco found the mode search on the critic worse there); the other tasks
    keep the default search."""
    mujoco = [e for e in PRESETS["SACConfig"] if e.endswith("-v5") and PRESETS["SACConfig"][e]]
    assert len(mujoco) == 6
    for env in mujoco:
        assert SACConfig.for_env(env).mode_steps == 0, env
    assert SACConfig.for_env("Pendulum-v1").mode_steps == SACConfig().mode_steps == 10


def test_a_keyword_argument_overrides_a_preset():
    config = SACConfig.for_env("LunarLanderContinuous-v3", tau=0.005, hidden_sizes=(64,))
    assert config.tau == 0.005 and config.hidden_sizes == (64,)
    assert config.learning_rate == 7.3e-4 and config.learning_starts == 10_000  # the rest stays


def test_the_cli_applies_a_preset_and_a_flag_overrides_it(tmp_path, capsys):
    argv = ["train", "--env", "ebrl/MultiGoal-v0", "--steps", "1", "--eval-episodes", "1"]
    argv += ["--no-progress", "--logdir", str(tmp_path), "--target-entropy", "-1.5"]
    assert main(argv) == 0
    run_dir = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["logdir"])
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert config["target_entropy"] == -1.5  # the flag wins
    expected = dataclasses.asdict(SACConfig.for_env("ebrl/MultiGoal-v0", target_entropy=-1.5))
    assert config == json.loads(json.dumps(expected))  # the rest of the preset applies


def test_plain_config_takes_the_env_preset():
    """SACConfig.plain(env_id) is the preset with plain SAC's sampler fields (a user's
    SACConfig.plain() for a MuJoCo task would otherwise drop RL-Zoo's 10k-step warm-up)."""
    from ebrl.agents.sac import PLAIN_SAC

    config = SACConfig.plain("Hopper-v5")
    assert config.is_plain and config.learning_starts == 10_000
    assert SACConfig.plain("Hopper-v5", learning_starts=5).learning_starts == 5
    assert SACConfig.plain().learning_starts == SACConfig().learning_starts
    assert SACConfig.plain("Pendulum-v1") == SACConfig.for_env("Pendulum-v1", **PLAIN_SAC)


def test_a_preset_env_id_must_be_a_string():
    """A hyperparameter passed by position (SACConfig.plain(1e-3)) would otherwise be taken as an
    env id without a preset and silently ignored."""
    from ebrl.agents.sac import PLAIN_SAC

    for call in (lambda: SACConfig.plain(1e-3), lambda: SoftQConfig.for_env(["CartPole-v1"])):
        with pytest.raises(TypeError, match="env_id must be a gymnasium env id"):
            call()
    assert SACConfig.plain(None) == SACConfig(**PLAIN_SAC)
