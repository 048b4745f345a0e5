"""The docs in docs/ stay true to the code.

- Every ```python block of docs/*.md compiles, and runs unless its first line is
  ``# docs: skip`` (long training shown for reading). The blocks of one page run in order in one
  namespace, like a doctest, in a temporary working directory (files they write land there).
- Every ``ebrl`` command and every flag it takes (and those of ``python -m ebrl.data.demos``)
  appears in docs/cli.md.
- Every TensorBoard scalar ebrl logs appears in docs/tensorboard.md: the tag literals in the
  source (``"train/..."``, ``"rollout/..."``, ``"eval/..."``, ``"time/..."``), and the tags that
  tiny training runs of every agent and objective actually write (the names built at run time,
  ``f"train/{k}"`` from the losses' and samplers' dicts, and ``fit``'s bare names).
- Every public name (the ``__all__`` of ebrl's packages) appears in docs/api.md.
- Every relative link between the pages points at a file, and heading, that exists.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
SKIP = "# docs: skip"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
TAG_LITERAL = re.compile(r"""["']((?:rollout|train|eval|time)/[a-z_0-9]+)["']""")


def _read(name: str) -> str:
    return (DOCS / name).read_text()


def _blocks(page: Path) -> list[tuple[int, str]]:
    """The page's ```python blocks as (line number of the fence, code)."""
    text = page.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _mentioned(text: str, name: str) -> bool:
    """``name`` appears in ``text`` as a whole token inside a code span (`` `...` ``)."""
    token = re.compile(r"(?<![\w/-])" + re.escape(name) + r"(?![\w/-])")
    return any(token.search(span) for span in CODE_SPAN.findall(text))


def test_docs_exist():
    names = {p.name for p in PAGES}
    expected = {
        "index.md",
        "energy.md",
        "samplers.md",
        "anchored-policies.md",
        "agents.md",
        "generative.md",
        "cli.md",
        "tensorboard.md",
        "recipes.md",
        "api.md",
    }
    assert expected <= names, f"missing pages: {sorted(expected - names)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for line, code in _blocks(page):
        compiled = compile(code, f"{page.relative_to(ROOT)}:{line}", "exec")
        if code.startswith(SKIP):
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compiled, namespace)


def test_skipped_blocks_are_few():
    """Skipping is for long training only: most of the docs' code must really run."""
    blocks = [code for page in PAGES for _, code in _blocks(page)]
    skipped = [code for code in blocks if code.startswith(SKIP)]
    assert len(blocks) >= 20
    assert len(skipped) <= len(blocks) // 3, f"{len(skipped)} of {len(blocks)} blocks skipped"


# ----------------------------------------------------------------------------- the CLI


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from ebrl.cli import build_parser

    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {
        s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"
    }


def test_every_command_and_flag_is_documented():
    cli = _read("cli.md")
    commands = _subcommands()
    assert {"train", "evaluate", "fit-density", "sample-demo"} <= set(commands)
    missing = [f"ebrl {name}" for name in commands if f"## `ebrl {name}`" not in cli]
    assert not missing, f"docs/cli.md has no section for: {missing}"
    sections = re.findall(r"^## `ebrl ([a-z-]+)`", cli, re.MULTILINE)
    assert not sorted(set(sections) - set(commands)), "docs/cli.md describes no such command"
    from ebrl.cli import build_parser

    assert not sorted(f for f in _flags(build_parser()) if not _mentioned(cli, f))
    undocumented = sorted(
        f"ebrl {name} {flag}"
        for name, parser in commands.items()
        for flag in _flags(parser)
        if not _mentioned(cli, flag)
    )
    assert not undocumented, f"flags missing from docs/cli.md: {undocumented}"


def test_demos_flags_are_documented():
    from ebrl.data import demos

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        demos.main(["--help"])
    flags = set(re.findall(r"(--[a-z][a-z-]*)", out.getvalue())) - {"--help"}
    cli = _read("cli.md")
    assert flags and "python -m ebrl.data.demos" in cli
    assert not sorted(f for f in flags if not _mentioned(cli, f))


# ----------------------------------------------------------------------------- TensorBoard


def test_tag_literals_in_the_source_are_documented():
    found = {
        tag
        for path in (ROOT / "ebrl").rglob("*.py")
        for tag in TAG_LITERAL.findall(path.read_text())
    }
    assert "rollout/episode_return" in found
    page = _read("tensorboard.md")
    assert not sorted(t for t in found if not _mentioned(page, t))


@pytest.fixture
def logged_tags(monkeypatch):
    """The tags of every ``SummaryWriter.add_scalar`` call, recorded instead of written."""
    from torch.utils.tensorboard import SummaryWriter

    tags: set[str] = set()
    monkeypatch.setattr(SummaryWriter, "add_scalar", lambda self, tag, *a, **k: tags.add(tag))
    return tags


def test_tags_logged_by_the_agents_are_documented(logged_tags, tmp_path):
    import numpy as np

    from ebrl import SAC, SoftQ
    from ebrl.agents import EvalCallback, make_env
    from ebrl.policies import CategoricalAnchor, GaussianAnchor

    tiny = {"learning_starts": 16, "batch_size": 8, "hidden_sizes": (8,), "log_interval": 16}
    pendulum, cartpole = make_env("Pendulum-v1"), make_env("CartPole-v1")
    obs_dims = [int(np.prod(e.observation_space.shape)) for e in (pendulum, cartpole)]
    runs = [
        (SAC, "Pendulum-v1", None, {"mala_steps": 1}),
        (SAC, "Pendulum-v1", GaussianAnchor(obs_dims[0], pendulum.action_space, (8,)), {}),
        (SoftQ, "CartPole-v1", None, {"train_freq": 1, "gradient_steps": 1}),
        (
            SoftQ,
            "CartPole-v1",
            CategoricalAnchor(obs_dims[1], cartpole.action_space, (8,)),
            {"train_freq": 1, "gradient_steps": 1},
        ),
    ]
    pendulum.close()
    cartpole.close()
    for i, (cls, env, anchor, extra) in enumerate(runs):
        agent = cls(env, anchor=anchor, seed=0, tensorboard_log=tmp_path / str(i), **tiny, **extra)
        callback = EvalCallback(200, n_episodes=1) if i == 2 else None
        agent.learn(40 if cls is SAC else 600, progress_bar=False, callback=callback)
    expected = {"train/critic_loss", "train/q_loss", "train/kl_to_anchor", "train/entropy"}
    assert expected | {"rollout/episode_return", "eval/mean_return"} <= logged_tags
    page = _read("tensorboard.md")
    assert not sorted(t for t in logged_tags if not _mentioned(page, t))


def test_tags_logged_by_fit_are_documented(logged_tags, tmp_path):
    from ebrl import MALA, Langevin, MLPEnergy
    from ebrl.trainers import (
        ContrastiveDivergence,
        DenoisingScoreMatching,
        ExactScoreMatching,
        SlicedScoreMatching,
        fit,
    )

    data = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    objectives = [
        ExactScoreMatching(),
        DenoisingScoreMatching(0.1),
        SlicedScoreMatching(1),
        ContrastiveDivergence(MALA(0.05, 2), persistent=False, energy_reg=0.1),
        ContrastiveDivergence(Langevin(0.01, 2), buffer_size=32),
    ]
    for objective in objectives:
        logdir = str(tmp_path)
        fit(
            MLPEnergy(2, (8,)), data, objective, 2, batch_size=16, logdir=logdir, progress_bar=False
        )
    assert {"loss", "grad_norm", "lr", "score_norm", "energy_gap", "reinit_fraction"} <= logged_tags
    page = _read("tensorboard.md")
    assert not sorted(t for t in logged_tags if not _mentioned(page, t))


# ----------------------------------------------------------------------------- API and links


OPTIONAL = ("plotting", "video")  # public modules, documented when present


def test_every_public_name_is_on_the_api_page():
    import importlib

    page = _read("api.md")
    modules = [
        "ebrl",
        "ebrl.energy",
        "ebrl.samplers",
        "ebrl.policies",
        "ebrl.agents",
        "ebrl.trainers",
        "ebrl.metrics",
        "ebrl.data.toy2d",
        "ebrl.data.demos",
        "ebrl.envs",
    ]
    modules += [f"ebrl.{p.stem}" for p in (ROOT / "ebrl").glob("*.py") if p.stem in OPTIONAL]
    missing = []
    for name in modules:
        module = importlib.import_module(name)
        assert _mentioned(page, name), f"docs/api.md does not name the module {name}"
        missing += [f"{name}.{n}" for n in module.__all__ if not _mentioned(page, n)]
    assert not missing, f"public names missing from docs/api.md: {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        text = BLOCK.sub("", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = page if not path else (page.parent / path).resolve()
            if path and not file.exists():
                broken.append(f"{page.name}: {target}")
                continue
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", BLOCK.sub("", file.read_text()), re.MULTILINE)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


@pytest.mark.slow
def test_api_reference_builds(tmp_path):
    """``python scripts/build_docs.py`` writes the HTML reference (needs pdoc)."""
    pytest.importorskip("pdoc")
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_docs.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for page in ("index.html", "ebrl.html", "ebrl/samplers.html", "ebrl/agents/sac.html"):
        assert (tmp_path / page).is_file(), page
    assert "ImportanceSampler" in (tmp_path / "ebrl" / "samplers.html").read_text()
