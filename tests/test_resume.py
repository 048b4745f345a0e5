"""Training runs that lose nothing: whole-state checkpoints, exact resume, clear refusals of bad
checkpoint files, no memory for a buffer nobody uses, and the CLI's resume, Ctrl-C and early
flag checks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from ebrl import SAC, SoftQ
from ebrl.agents import CheckpointCallback, EvalCallback
from ebrl.agents.episodes import ReplayableEpisodes, episode_seed
from ebrl.cli import main

SMALL = {"hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 100}
TINY = ["--hidden-sizes", "32", "32", "--batch-size", "32", "--learning-starts", "100"]
AGENTS = [(SAC, "Pendulum-v1"), (SoftQ, "CartPole-v1")]


def parameters(agent) -> list[torch.Tensor]:
    tensors = [t for m in agent.modules().values() for t in m.state_dict().values()]
    return [*tensors, agent.log_temperature.detach()]


def assert_identical(a, b) -> None:
    for x, y in zip(parameters(a), parameters(b), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize(("cls", "env"), AGENTS)
def test_save_load_learn_equals_learning_straight_through(cls, env, tmp_path):
    """learn(a), save, load, learn(b, reset_num_timesteps=False) is learn(a + b), bit for bit:
    buffer, generator, optimisers, counters and the episodes in flight all come back."""
    straight = cls(env, seed=3, **SMALL).learn(500, progress_bar=False)
    first = cls(env, seed=3, **SMALL).learn(250, progress_bar=False)
    first.save(tmp_path / "half.pt")
    resumed = cls.load(tmp_path / "half.pt")
    assert len(resumed.buffer) == 250 and resumed.num_timesteps == 250
    np.testing.assert_array_equal(resumed._last_obs, first._last_obs)
    resumed.learn(250, progress_bar=False, reset_num_timesteps=False)
    assert resumed.num_timesteps == 500
    assert_identical(resumed, straight)


def test_a_generator_state_of_another_device_kind_leaves_the_seeded_stream(tmp_path):
    """A CUDA generator's 16-byte state in a checkpoint loaded on the CPU (or the CPU's 5056
    bytes on a GPU) cannot continue that stream: the loaded agent keeps its own seeded one and
    loads everything else. Before 2026-11-30 a GPU-trained checkpoint was refused as corrupt on
    the CPU, and a GPU agent never got its generator back."""
    agent = SAC("Pendulum-v1", seed=3, **SMALL).learn(150, progress_bar=False)
    fresh = SAC("Pendulum-v1", seed=3, **SMALL)
    assert agent.state_dict()["generator_device"] == "cpu"
    cuda_state = torch.zeros(16, dtype=torch.uint8)  # what a CUDA generator's state looks like
    for name, extra in [("named", {"generator_device": "cuda"}), ("older", {})]:
        state = {k: v for k, v in agent.state_dict().items() if k != "generator_device"}
        torch.save({**state, "generator": cuda_state, **extra}, tmp_path / f"{name}.pt")
        loaded = SAC.load(tmp_path / f"{name}.pt")  # older checkpoints: known by the size
        assert torch.equal(loaded.generator.get_state(), fresh.generator.get_state())
        assert loaded.num_timesteps == 150
        assert_identical(loaded, agent)
    # an older checkpoint's state of no known size (an MPS generator's, say) is not continued
    state = {k: v for k, v in agent.state_dict().items() if k != "generator_device"}
    torch.save({**state, "generator": cuda_state[:15]}, tmp_path / "odd.pt")
    loaded = SAC.load(tmp_path / "odd.pt")
    assert torch.equal(loaded.generator.get_state(), fresh.generator.get_state())
    # a state of the kind named but of the wrong size is corrupt
    cut = {**state, "generator": cuda_state[:15], "generator_device": "cpu"}
    torch.save(cut, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="corrupt ebrl checkpoint"):
        SAC.load(tmp_path / "c.pt")


def test_reset_num_timesteps_true_counts_from_zero_and_starts_new_episodes():
    agent = SAC("Pendulum-v1", seed=0, **SMALL).learn(150, progress_bar=False)
    envs = agent.envs.unwrapped.envs
    assert [e.episode for e in envs] == [0]
    agent.learn(60, progress_bar=False)  # SB3's default: a new count, new episodes
    assert agent.num_timesteps == 60 and [e.episode for e in envs] == [1]
    assert len(agent.buffer) == 210  # the buffer is kept
    agent.learn(40, progress_bar=False, reset_num_timesteps=False)
    assert agent.num_timesteps == 100 and [e.episode for e in envs] == [1]


def test_episodes_are_seeded_from_the_run_seed_and_replayed_exactly():
    env = ReplayableEpisodes(gym.make("Pendulum-v1"), seed=5, index=1)
    env.reset()
    assert env.reset_seed == episode_seed(5, 1, 0) != episode_seed(5, 1, 1)
    rng = np.random.default_rng(0)
    for _ in range(37):
        obs, *_ = env.step(rng.uniform(-2, 2, size=(1,)).astype(np.float32))
    actions = np.array(env.actions)
    other = ReplayableEpisodes(gym.make("Pendulum-v1"), seed=5, index=1)
    np.testing.assert_array_equal(other.replay(0, env.reset_seed, actions), obs)
    assert other.episode == 0 and len(other.actions) == 37


def test_checkpoint_holds_only_the_filled_part_of_the_buffer(tmp_path):
    agent = SAC("Pendulum-v1", seed=0, buffer_size=1_000_000, **SMALL)
    agent.learn(120, progress_bar=False)
    path = agent.save(tmp_path / "a.pt")
    # 120 transitions of (3 + 1 + 1 + 3 + 1) floats are ~4 kB; a 1M buffer would be 36 MB
    assert path.stat().st_size < 2_000_000
    small = agent.save(tmp_path / "b.pt", replay_buffer=False)
    assert small.stat().st_size < path.stat().st_size
    assert len(SAC.load(small).buffer) == 0


def test_checkpoint_files_get_the_usual_permissions_and_orphans_are_removed(tmp_path):
    agent = SAC("Pendulum-v1", seed=0, **SMALL)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".m.pt.{dead.pid}.tmp"  # left by a process killed while saving
    orphan.write_bytes(b"half a checkpoint")
    path = agent.save(tmp_path / "m.pt")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert not orphan.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("kind", ["pickle", "truncated", "empty", "random", "json"])
def test_bad_checkpoint_files_are_refused_with_one_line(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = SAC("Pendulum-v1", seed=0, **SMALL).learn(120, progress_bar=False).save("good.pt")
    path = tmp_path / f"{kind}.pt"
    if kind == "pickle":
        torch.save({"format": "ebrl.agent/2", "payload": _Boom()}, path)
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        path.write_text(json.dumps({"format": "ebrl.agent/2"}))
    with pytest.raises(ValueError, match=r"not a readable ebrl checkpoint|not an ebrl agent"):
        SAC.load(path)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()  # nothing from the file was executed


def test_corrupt_contents_of_an_ebrl_checkpoint_are_one_error(tmp_path):
    agent = SAC("Pendulum-v1", seed=0, **SMALL).learn(120, progress_bar=False)
    state = agent.state_dict()
    del state["modules"]["critic"]
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="corrupt ebrl checkpoint"):
        SAC.load(tmp_path / "c.pt")
    state = agent.state_dict()
    state["config"]["buffer_size"] = 10**10  # a crafted config: refused before allocating
    torch.save(state, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="buffer_size"):
        SAC.load(tmp_path / "d.pt")


class _Humanoid(gym.Env):
    """Humanoid's observation size (376) and a 17-dim action, without MuJoCo."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (376,), np.float64)
    action_space = gym.spaces.Box(-0.4, 0.4, (17,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(376), {}

    def step(self, action):
        return np.zeros(376), 0.0, False, False, {}


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_a_large_unused_buffer_costs_no_memory(tmp_path):
    before = _rss_bytes()
    agent = SAC(_Humanoid(), buffer_size=1_000_000, hidden_sizes=(64, 64))
    path = agent.save(tmp_path / "h.pt")
    loaded = SAC.load(path, env=_Humanoid())
    loaded.predict(np.zeros(376))
    grown = _rss_bytes() - before
    # a filled 1M x 376 buffer is ~3 GB; the bar is < 200 MB
    assert grown < 200 * 2**20, f"RSS grew by {grown / 2**20:.0f} MB"


def test_next_step_autoreset_stores_no_transition_across_episodes():
    """gymnasium's default vector env (next-step autoreset): the step after an episode's end
    only resets that env; no (last obs -> first obs) transition may reach the buffer."""

    class Clock(gym.Env):  # obs = (episode, t); episodes of 5 steps
        observation_space = gym.spaces.Box(0, 1e6, (2,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.episode = getattr(self, "episode", -1) + 1
            self.t = 0
            return np.array([self.episode, 0], np.float32), {}

        def step(self, action):
            self.t += 1
            obs = np.array([self.episode, self.t], np.float32)
            return obs, 1.0, self.t == 5, False, {}

    envs = gym.vector.SyncVectorEnv([Clock, Clock])  # default: next-step autoreset
    agent = SoftQ(envs, learning_starts=1000, hidden_sizes=(16,))
    info_returns = []
    agent.learn(
        40, progress_bar=False, callback=lambda a, i: info_returns.extend(i["episode_returns"])
    )
    n = len(agent.buffer)
    obs, next_obs = agent.buffer.obs[:n], agent.buffer.next_obs[:n]
    assert n == 40 - 2 * 3  # 20 vector steps: 3 reset-only steps per env
    assert torch.equal(next_obs[:, 0], obs[:, 0])  # same episode
    assert torch.equal(next_obs[:, 1], obs[:, 1] + 1)  # one step later
    assert torch.equal(agent.buffer.terminated[:n] == 1, next_obs[:, 1] == 5)
    assert info_returns == [5.0] * 6  # 3 finished episodes per env, 5 steps each


class _Countdown(gym.Env):
    """obs = (episode, t); episode ``k`` lasts ``lengths[k % len(lengths)]`` steps, ending by
    termination on even episodes and by truncation on odd ones; reward 1 per step."""

    observation_space = gym.spaces.Box(0, 1e6, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, lengths):
        self.lengths, self.episode = lengths, -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return np.array([self.episode, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        end = self.t == self.lengths[self.episode % len(self.lengths)]
        obs = np.array([self.episode, self.t], np.float32)
        return obs, 1.0, end and self.episode % 2 == 0, end and self.episode % 2 == 1, {}


class _ToTorch(gym.vector.VectorWrapper):
    """A user's vector env returning tensors (as gymnasium's ``NumpyToTorch``)."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return torch.as_tensor(obs), info

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(np.asarray(actions))
        as_t = torch.as_tensor
        return as_t(obs), as_t(rewards), as_t(terminated), as_t(truncated), info


@pytest.mark.parametrize("tensors", [False, True])
@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_episode_bookkeeping_with_episodes_out_of_step(mode, tensors):
    """Envs whose episodes end at different steps (by termination or truncation), in both
    autoreset modes, from numpy or from tensors: every episode's return and length reach the
    callbacks once (float64 / int64 arrays, empty at steps where none ended), and no transition
    crosses an episode's end."""
    lengths = [(3, 5), (4,), (2, 6, 3)]
    autoreset = getattr(gym.vector.AutoresetMode, mode.upper())
    envs = gym.vector.SyncVectorEnv(
        [lambda ls=ls: _Countdown(ls) for ls in lengths], autoreset_mode=autoreset
    )
    if tensors:
        envs = _ToTorch(envs)
    agent = SoftQ(envs, learning_starts=1000, hidden_sizes=(16,))
    ended = []

    def record(a, info):
        returns, lengths_ = info["episode_returns"], info["episode_lengths"]
        assert returns.dtype == np.float64 and lengths_.dtype == np.int64
        assert returns.shape == lengths_.shape == (len(returns),)
        ended.extend(zip(returns.tolist(), lengths_.tolist(), strict=True))

    agent.learn(3 * 40, progress_bar=False, callback=record)  # 40 vector steps
    n = len(agent.buffer)
    obs, next_obs = agent.buffer.obs[:n], agent.buffer.next_obs[:n]
    assert torch.equal(next_obs[:, 0], obs[:, 0])  # never across episodes
    assert torch.equal(next_obs[:, 1], obs[:, 1] + 1)
    finished, transitions = [], 0
    for ls in lengths:  # each env's 40 steps: with next-step autoreset, one reset-only step
        t, k, resetting = 0, 0, False  # after each episode, which stores no transition
        for _ in range(40):
            if resetting:
                resetting = False
                continue
            transitions, t = transitions + 1, t + 1
            if t == ls[k % len(ls)]:
                finished.append(t)
                t, k, resetting = 0, k + 1, mode == "next_step"
    assert n == transitions
    assert sorted(length for _, length in ended) == sorted(finished)
    assert all(ret == length for ret, length in ended)


def test_callbacks_list_checkpoints_and_evaluates(tmp_path):
    agent = SAC("Pendulum-v1", seed=0, tensorboard_log=tmp_path, **SMALL)
    ckpt = CheckpointCallback(100, tmp_path / "ckpt.pt", keep=True)
    evaluation = EvalCallback(150, n_episodes=1, best_model_path=tmp_path / "best.pt")
    seen = []
    agent.learn(300, progress_bar=False, callback=[ckpt, evaluation, lambda a, i: seen.append(1)])
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == [
        "ckpt_100.pt",
        "ckpt_200.pt",
        "ckpt_300.pt",
    ]
    assert [step for step, _, _ in evaluation.evaluations] == [150, 300]
    assert (tmp_path / "best.pt").is_file() and len(seen) == 300
    with pytest.raises(TypeError, match="callback"):
        agent.learn(10, progress_bar=False, callback=[ckpt, "not callable"])


def test_evaluation_does_not_change_training():
    plain = SAC("Pendulum-v1", seed=1, **SMALL).learn(300, progress_bar=False)
    evaluated = SAC("Pendulum-v1", seed=1, **SMALL)
    evaluated.learn(
        300, progress_bar=False, callback=EvalCallback(100, n_episodes=1, deterministic=False)
    )
    assert_identical(plain, evaluated)


def test_an_unreachable_entropy_target_warns_that_the_temperature_is_pinned():
    agent = SAC(
        "Pendulum-v1",
        seed=0,
        target_entropy=50.0,
        temperature_bounds=(1e-3, 0.3),
        initial_temperature=0.29,
        log_interval=50,
        **SMALL,
    )
    with pytest.warns(RuntimeWarning, match="pinned at its upper bound"):
        agent.learn(400, progress_bar=False)


def test_huge_finite_action_bounds_map_to_finite_actions():
    class Wide(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        action_space = gym.spaces.Box(-3e38, 3e38, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(2, np.float32), {}

        def step(self, action):
            assert np.isfinite(action).all()
            return np.zeros(2, np.float32), 0.0, False, False, {}

    agent = SAC(Wide(), **SMALL)
    action = agent.predict(np.zeros(2, np.float32))[0]
    assert np.isfinite(action).all() and abs(action[0]) <= 3e38
    agent.learn(20, progress_bar=False)


# ----------------------------------------------------------------------------- the CLI


def _pythonpath() -> str:
    """The repository first, then the caller's own PYTHONPATH (where packages may live)."""
    root = str(Path(__file__).parents[1])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)


def _cli(*argv: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ebrl", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
    )


def _model_params(path: Path) -> dict:
    state = torch.load(path, weights_only=True)
    return {(k, n): t for k, m in state["modules"].items() for n, t in m.items()}


TIMING = ("wall_s", "env_steps_per_s", "checkpoint", "logdir")


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)


def test_kill_9_then_resume_gives_the_uninterrupted_run(tmp_path):
    argv = [
        "train",
        "--steps",
        "600",
        "--checkpoint-every",
        "200",
        "--eval-episodes",
        "1",
        "--no-progress",
        *TINY,
    ]
    straight = _cli(*argv, "--logdir", "a", cwd=tmp_path)
    killed = _cli(*argv, "--logdir", "b", cwd=tmp_path)
    run_b = tmp_path / "b" / "Pendulum-v1_sac_0"
    _wait_for(run_b / "checkpoint.pt")
    time.sleep(0.3)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    out, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err
    want = json.loads(out.strip().splitlines()[-1])
    resumed = _cli("train", "--resume", str(run_b), "--no-progress", cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming" in err
    got = json.loads(out.strip().splitlines()[-1])
    assert {k: v for k, v in got.items() if k not in TIMING} == {
        k: v for k, v in want.items() if k not in TIMING
    }
    a = _model_params(tmp_path / "a" / "Pendulum-v1_sac_0" / "model.pt")
    b = _model_params(run_b / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((run_b / "run.json").read_text())
    assert record["args"]["steps"] == 600 and "torch" in record["versions"]


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = _cli("train", "--steps", "100000", "--no-progress", *TINY, "--logdir", "r", cwd=tmp_path)
    run_dir = tmp_path / "r" / "Pendulum-v1_sac_0"
    # the event file appears when learn() starts (a fixed sleep after run.json could fire before
    # it on a loaded machine, while the agent is still being built)
    deadline = time.time() + 120
    while not list(run_dir.glob("events.out.tfevents*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(2)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130
    assert f"--resume {Path('r') / 'Pendulum-v1_sac_0'}" in err and "Traceback" not in err
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["num_timesteps"] > 0 and state["buffer"]["size"] == state["num_timesteps"]


def test_run_directories_are_never_reused(tmp_path, capsys):
    argv = [
        "train",
        "--steps",
        "120",
        "--eval-episodes",
        "1",
        "--no-progress",
        *TINY,
        "--logdir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["logdir"].endswith("Pendulum-v1_sac_0_2")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Pendulum-v1_sac_0",
        "Pendulum-v1_sac_0_2",
    ]
    for run in tmp_path.iterdir():
        assert len(list(run.glob("events.out.tfevents*"))) == 1
        assert {"run.json", "model.pt", "result.json"} <= {p.name for p in run.iterdir()}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--eval-episodes", "0"], "--eval-episodes must be >= 1"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
        (
            ["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "nope"],
            "--device",
        ),
        (["--algo", "softq"], "--algo softq needs a Discrete action space"),
        (["--temperature", "nan"], "--temperature must be"),
        (["--out", "/proc/model.pt"], "--out: cannot write"),
    ],
)
def test_bad_flags_fail_before_training_with_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--steps", "100000", "--logdir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*/model.pt"))


def test_resume_refuses_other_flags_and_non_run_directories(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(tmp_path), "--steps", "5"])
    assert "drop --steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(tmp_path)])
    assert "no run.json" in capsys.readouterr().err


def test_a_diverged_loss_is_named_with_its_step():
    agent = SAC("Pendulum-v1", seed=0, log_interval=50, **SMALL)
    with torch.no_grad():
        for p in agent.critic.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"non-finite .*train/critic_loss.* at step 1\d\d"):
        agent.learn(300, progress_bar=False)


def test_an_episode_too_long_to_record_restarts_with_a_warning(tmp_path, monkeypatch):
    from ebrl.agents import episodes

    monkeypatch.setattr(episodes, "MAX_RECORDED_STEPS", 50)
    agent = SAC("Pendulum-v1", seed=0, **SMALL).learn(120, progress_bar=False)
    path = agent.save(tmp_path / "long.pt")
    with pytest.warns(RuntimeWarning, match="episodes in flight cannot be restored"):
        loaded = SAC.load(path)
    assert len(loaded.buffer) == 120 and loaded._last_obs is None
    loaded.learn(10, progress_bar=False, reset_num_timesteps=False)  # new episodes
    assert loaded.num_timesteps == 130


def test_stable_baselines3_style_callback_objects_are_called():
    class BaseCallback:  # the interface of SB3's BaseCallback, without SB3
        def __init__(self):
            self.n_calls, self.num_timesteps, self.model, self.locals = 0, 0, None, {}

        def on_step(self) -> bool:
            self.n_calls += 1
            self.num_timesteps = self.model.num_timesteps
            return self._on_step()

    class StopAt(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < 30

    stop = StopAt()
    agent = SoftQ("CartPole-v1", learning_starts=1000, hidden_sizes=(16,))
    agent.learn(100, progress_bar=False, callback=stop)
    assert stop.n_calls == 30 and agent.num_timesteps == 30 and "infos" in stop.locals


def test_no_progress_bar_flood_when_stderr_is_not_a_terminal(tmp_path):
    run = _cli("train", "--steps", "150", "--eval-episodes", "1", *TINY, "--logdir", "p",
               cwd=tmp_path)  # fmt: skip
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert "\r" not in err and "step/s" not in err  # tqdm hides its bar off a terminal


def test_callbacks_buffer_state_and_evaluate_on_reject_bad_input():
    with pytest.raises(TypeError, match="every"):
        CheckpointCallback(1.5, "x.pt")
    with pytest.raises(ValueError, match="every"):
        CheckpointCallback(0, "x.pt")
    with pytest.raises(ValueError, match="n_episodes"):
        EvalCallback(100, n_episodes=0)
    agent = SAC("Pendulum-v1", seed=0, **SMALL).learn(120, progress_bar=False)
    state = agent.buffer.state_dict()
    with pytest.raises(ValueError, match="size"):
        agent.buffer.load_state_dict({**state, "position": 7})  # not where 120 would end
    with pytest.raises(ValueError, match=r"obs must be a torch\.float32 tensor"):
        agent.buffer.load_state_dict({**state, "obs": state["obs"][:5]})
    with pytest.raises(TypeError, match="evaluate_on: env must be a gymnasium Env"):
        agent.evaluate_on("Pendulum-v1", 1)
    result = agent.evaluate_on(gym.make("Pendulum-v1", max_episode_steps=20), 2)
    assert result["lengths"] == [20, 20]


def test_the_progress_bar_shows_on_a_terminal_and_hides_in_a_log(monkeypatch):
    import io

    from ebrl.logging import RunLogger

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, hidden in ((Terminal(), False), (io.StringIO(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        log = RunLogger(None, 10, progress_bar=True)
        assert log.bar.disable is hidden
        log.close()
    assert RunLogger(None, 10, progress_bar=False).bar.disable is True
