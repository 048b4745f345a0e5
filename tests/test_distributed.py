"""Data-parallel training on 2 CPU ranks (gloo): ``fit`` follows the one-process run, agents keep
identical parameters on every rank and resume every rank's state, and only rank 0 writes.

One spawn of two processes runs every multi-rank scenario (process start-up, importing torch,
is most of the cost); the tests below check what it wrote.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ebrl import distributed

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)

WORLD = 2
SMALL = {"hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 64, "buffer_size": 2000}
FIT = {"steps": 25, "batch_size": 64, "lr": 3e-3, "log_every": 1, "progress_bar": False}


def _fit_problem():
    from ebrl.energy import MLPEnergy

    torch.manual_seed(0)  # the MLP's initialisation only
    data = torch.randn(400, 2, generator=torch.Generator().manual_seed(1)) * 0.7
    return MLPEnergy(2, (16, 16)), data


def _flat(modules) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    """One rank: every scenario, results written under ``out`` (rank-suffixed)."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    out = Path(out)
    from ebrl.agents import SAC
    from ebrl.samplers import Langevin
    from ebrl.trainers import ContrastiveDivergence, DenoisingScoreMatching, ExactScoreMatching, fit

    # fit: exact score matching (no noise), the same global batch as the one-process run
    energy, data = _fit_problem()
    result = fit(energy, data, ExactScoreMatching(), logdir=str(out / "fit_tb"), **FIT)
    torch.save({"loss": result.history["loss"], "params": _flat([energy])}, out / f"fit{rank}.pt")
    # a noisy objective drawing for the global batch: the one-process trajectory again
    energy, data = _fit_problem()
    result = fit(energy, data, DenoisingScoreMatching((0.2, 0.4)), **FIT)
    torch.save({"loss": result.history["loss"], "params": _flat([energy])}, out / f"dsm{rank}.pt")
    # persistent CD: per-rank chains and noise, but identical parameters on every rank
    energy, data = _fit_problem()
    cd = ContrastiveDivergence(Langevin(0.01, 5), buffer_size=256)
    fit(energy, data, cd, **{**FIT, "steps": 10})
    torch.save(_flat([energy]), out / f"pcd{rank}.pt")

    # an agent: 2 x 160 env steps, a checkpoint per rank at 160, then on to 320
    agent = SAC("Pendulum-v1", seed=3, tensorboard_log=out / "sac_tb", **SMALL)
    agent.learn(160, progress_bar=False)
    agent.save(distributed.rank_path(out / "checkpoint.pt"))
    agent.tensorboard_log = None  # one event file for the first learn()
    agent.learn(160, progress_bar=False, reset_num_timesteps=False)
    torch.save(
        {
            "params": _flat(agent.modules().values()),
            "temperature": agent.log_temperature.detach().clone(),
            "buffer_obs": agent.buffer.state_dict()["obs"],
            "steps": agent.num_timesteps,
        },
        out / f"sac{rank}.pt",
    )
    # resume: every rank from its own file, on to the same 320 steps
    resumed = SAC.load(distributed.rank_path(out / "checkpoint.pt"))
    resumed.learn(160, progress_bar=False, reset_num_timesteps=False)
    torch.save(_flat(resumed.modules().values()), out / f"resumed{rank}.pt")

    # the CLI (as under torchrun, whose process group already exists): a run, then --resume
    from ebrl.cli import main

    flags = ["--hidden-sizes", "32", "32", "--batch-size", "32", "--learning-starts", "64"]
    train = ["train", "--env", "Pendulum-v1", "--steps", "256", "--checkpoint-every", "128"]
    common = ["--no-progress", "--eval-episodes", "1", "--logdir", str(out / "cli"), *flags]
    assert main([*train, *common]) == 0
    run_dir = out / "cli" / "Pendulum-v1_sac_0"
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    init_file = out / "rendezvous"
    env = {"OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        torch.multiprocessing.start_processes(
            _worker,
            args=(WORLD, str(init_file), str(out)),
            nprocs=WORLD,
            start_method="spawn",
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out


@pytest.mark.parametrize("name", ["fit", "dsm"])
def test_fit_on_two_ranks_follows_the_one_process_run(runs, name):
    from ebrl.trainers import DenoisingScoreMatching, ExactScoreMatching, fit

    objective = ExactScoreMatching() if name == "fit" else DenoisingScoreMatching((0.2, 0.4))
    energy, data = _fit_problem()
    single = fit(energy, data, objective, **FIT)
    ranks = [torch.load(runs / f"{name}{r}.pt") for r in range(WORLD)]
    # The same global batch (and, for DSM, the same noise row for row), split in two halves
    # whose gradients are averaged: the same loss trajectory up to float32 reduction order
    # (measured: 3e-7 relative for ESM; 1e-4 allowed).
    for rank in ranks:
        np.testing.assert_allclose(rank["loss"], single.history["loss"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(rank["params"], _flat([energy]), rtol=1e-4, atol=1e-5)
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])  # identical on every rank


def test_fit_ranks_keep_identical_parameters_with_per_rank_chains(runs):
    a, b = (torch.load(runs / f"pcd{r}.pt") for r in range(WORLD))
    assert torch.equal(a, b)


def test_agent_ranks_keep_identical_parameters_and_collect_their_own_data(runs):
    a, b = (torch.load(runs / f"sac{r}.pt") for r in range(WORLD))
    assert a["steps"] == b["steps"] == 320  # global steps: 160 per rank
    assert torch.equal(a["params"], b["params"])
    assert torch.equal(a["temperature"], b["temperature"])
    # each rank's own envs (episode seeds numbered by rank) fill its own buffer
    assert a["buffer_obs"].shape == b["buffer_obs"].shape == (160, 3)
    assert not torch.equal(a["buffer_obs"], b["buffer_obs"])


def test_agent_resumes_every_rank_exactly(runs):
    for rank in range(WORLD):
        resumed = torch.load(runs / f"resumed{rank}.pt")
        assert torch.equal(resumed, torch.load(runs / f"sac{rank}.pt")["params"])


def test_only_rank_zero_writes_events_and_checkpoints_name_their_rank(runs):
    for tb in ("fit_tb", "sac_tb"):
        events = list((runs / tb).rglob("events.out.tfevents.*"))
        assert len(events) == 1, events
    assert (runs / "checkpoint.pt").is_file() and (runs / "checkpoint.rank1.pt").is_file()


def test_cli_run_rank_zero_writes_results_every_rank_its_checkpoint(runs):
    runs_dir = runs / "cli"
    assert [p.name for p in runs_dir.iterdir()] == ["Pendulum-v1_sac_0"]  # one run directory
    run_dir = runs_dir / "Pendulum-v1_sac_0"
    assert json.loads((run_dir / "run.json").read_text())["world_size"] == WORLD
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 256
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    names = sorted(p.name for p in run_dir.glob("*.pt"))
    assert names == ["checkpoint.pt", "checkpoint.rank1.pt", "model.pt"]
    from ebrl.agents.checkpoint import read_checkpoint

    saved = [read_checkpoint(run_dir / n, "test") for n in ("checkpoint.pt", "checkpoint.rank1.pt")]
    assert saved[0]["num_timesteps"] == saved[1]["num_timesteps"] == 256
    for key, params in saved[0]["modules"].items():
        for name, value in params.items():
            assert torch.equal(value, saved[1]["modules"][key][name]), (key, name)
    assert not torch.equal(saved[0]["buffer"]["obs"], saved[1]["buffer"]["obs"])


def test_one_process_is_untouched():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.rank_seed(5) == 5
    assert distributed.any_rank([True, False]) == [True, False]
    assert distributed.rank_path("a/checkpoint.pt") == Path("a/checkpoint.pt")
    assert distributed.rank_path("a/checkpoint.pt", 1) == Path("a/checkpoint.rank1.pt")
    assert len({distributed.rank_seed(5, r) for r in range(4)}) == 4
    json.dumps(distributed.rank_seed(5, 1))  # a plain int


def test_async_envs_give_the_sync_run_and_resume_in_their_workers(tmp_path):
    import gymnasium as gym

    from ebrl import SAC

    sync = SAC("Pendulum-v1", seed=1, num_envs=2, **SMALL)
    sync.learn(160, progress_bar=False)
    run = SAC("Pendulum-v1", seed=1, num_envs=2, vectorization="async", **SMALL)
    assert isinstance(run.envs.unwrapped, gym.vector.AsyncVectorEnv)
    run.learn(80, progress_bar=False)  # mid-episode: the checkpoint replays it in the workers
    run.save(tmp_path / "run.pt")
    run.envs.close()
    resumed = SAC.load(tmp_path / "run.pt", vectorization="async")
    try:
        resumed.learn(80, progress_bar=False, reset_num_timesteps=False)
        assert isinstance(resumed.envs.unwrapped, gym.vector.AsyncVectorEnv)
        assert torch.equal(_flat(resumed.modules().values()), _flat(sync.modules().values()))
    finally:
        resumed.envs.close()


def test_bad_vectorization_is_named():
    from ebrl import SAC

    with pytest.raises(ValueError, match="vectorization"):
        SAC("Pendulum-v1", vectorization="threads")
    with pytest.raises(ValueError, match="vectorization='async'"):
        SAC(gym_env(), vectorization="async")


def gym_env():
    import gymnasium as gym

    return gym.make("Pendulum-v1")


def test_scaling_page_commands_use_real_flags():
    """Every ``ebrl`` command line on docs/scaling.md names a real command and real flags (the
    ones after ``-m ebrl``; those before are torchrun's)."""
    import re

    from tests.test_docs import _flags, _subcommands

    text = (Path(__file__).resolve().parent.parent / "docs" / "scaling.md").read_text()
    commands = _subcommands()
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    found = 0
    for line in lines:
        match = re.search(r"(?:-m ebrl|^ebrl) ([a-z-]+)(.*)", line.split("#")[0].strip())
        if not match:
            continue
        found += 1
        name, rest = match.groups()
        assert name in commands, line
        unknown = set(re.findall(r"--[\w-]+", rest)) - _flags(commands[name])
        assert not unknown, (line, unknown)
    assert found >= 5
