"""Sampler benchmark: ebrl's ULA / MALA against the bare autograd loop (the floor) and torchebm.

Cases (medians of ``--repeats`` interleaved repeats, so that machine load hits every method
alike):
- ``mlp``: an MLP energy 2->128->128->1 (SiLU), 4096 points, 100 steps;
- ``conditioned``: 64 states x 256 particles x 6-D actions, an MLP energy conditioned on the
  states, 100 steps;
- ``acting``: 1 and 16 states x 64 particles x 1-D and 6-D actions in [-1, 1]: importance
  sampling from a uniform proposal then 10 MALA steps inside the bounds, the per-env-step cost
  of an energy policy; the floor is the same work written inline (IS + 10 plain Langevin steps).

Run: ``python scripts/bench_samplers.py`` (add ``--device cuda`` on a GPU machine). Writes
``scripts/results/bench_samplers.md`` (or ``--out``). torchebm is timed when it is installed
(``pip install torchebm``, the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.distributions import Independent, Uniform

from ebrl.energy import MLPEnergy
from ebrl.logging import write_report
from ebrl.samplers import MALA, Chain, ImportanceSampler, Langevin

EPS = 0.01


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_langevin(energy: Callable, x: torch.Tensor, n_steps: int, eps: float = EPS):
    """The floor: the textbook loop written inline."""
    for _ in range(n_steps):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x)
        x = x - eps * grad + math.sqrt(2 * eps) * torch.randn_like(x)
    return x.detach()


def bare_acting(energy: Callable, low, high, n_states, n_particles, d, device):
    """Inline IS from a uniform proposal + 10 unconstrained Langevin steps, clamped to the box."""
    x = low + (high - low) * torch.rand(n_particles, n_states, d, device=device)
    with torch.no_grad():
        log_w = -energy(x)
    idx = torch.multinomial(torch.softmax(log_w, 0).T, n_particles, replacement=True)
    x = x[idx.T, torch.arange(n_states, device=device)]
    x = bare_langevin(energy, x, 10)
    return x.clamp(low, high)


def median_times(fns: dict[str, Callable[[], object]], repeats: int, device) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def torchebm_langevin(energy: torch.nn.Module, device):
    """torchebm's LangevinDynamics on the same energy (needs its BaseModel subclass)."""
    try:
        from torchebm.core import BaseModel
        from torchebm.samplers import LangevinDynamics
    except ImportError:
        return None

    class Wrapped(BaseModel):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    sampler = LangevinDynamics(Wrapped(energy).to(device), step_size=EPS, noise_scale=1.0)
    return lambda x, n_steps: sampler.sample(x=x, n_steps=n_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("scripts/results/bench_samplers.md"))
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 (medians of at least 5 runs)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    rows: list[tuple[str, str, float, float | None]] = []  # case, method, seconds, ratio

    # ---- mlp: 4096 x 2-D, 100 steps
    energy = MLPEnergy(2, (128, 128)).to(device)
    for p in energy.parameters():
        p.requires_grad_(False)
    x0 = torch.randn(4096, 2, device=device)
    proposal = Independent(torch.distributions.Normal(torch.zeros(2, device=device), 1.0), 1)
    ula, mala = Langevin(EPS, 100), MALA(EPS, 100)
    fns = {
        "bare loop (floor)": lambda: bare_langevin(energy, x0, 100),
        "ebrl Langevin (ULA)": lambda: ula.sample(energy, proposal, 4096, init=x0, generator=gen),
        "ebrl MALA": lambda: mala.sample(energy, proposal, 4096, init=x0, generator=gen),
    }
    tebm = torchebm_langevin(energy, device)
    if tebm is not None:
        fns["torchebm LangevinDynamics"] = lambda: tebm(x0.clone(), 100)
    t = median_times(fns, args.repeats, device)
    for name, sec in t.items():
        rows.append(("mlp 4096x2-D, 100 steps", name, sec, sec / t["bare loop (floor)"]))

    # ---- conditioned: 64 states x 256 particles x 6-D, 100 steps
    cond = MLPEnergy(6, (128, 128), context_dim=3).to(device)
    for p in cond.parameters():
        p.requires_grad_(False)
    states = torch.randn(64, 3, device=device)
    energy_c = cond.condition(states)
    x0 = torch.randn(256, 64, 6, device=device)
    proposal_c = Independent(torch.distributions.Normal(torch.zeros(64, 6, device=device), 1.0), 1)
    fns = {
        "bare loop (floor)": lambda: bare_langevin(energy_c, x0, 100),
        "ebrl Langevin (ULA)": lambda: ula.sample(
            energy_c, proposal_c, 256, init=x0, generator=gen
        ),
        "ebrl MALA": lambda: mala.sample(energy_c, proposal_c, 256, init=x0, generator=gen),
    }
    t = median_times(fns, args.repeats, device)
    for name, sec in t.items():
        rows.append(("conditioned 64x256x6-D, 100 steps", name, sec, sec / t["bare loop (floor)"]))

    # ---- acting: IS(64) -> 10 MALA steps in [-1, 1]^d
    for d in (1, 6):
        net = MLPEnergy(d, (256, 256), context_dim=3).to(device)
        for p in net.parameters():
            p.requires_grad_(False)
        for n_states in (1, 16):
            obs = torch.randn(n_states, 3, device=device)
            e_act = net.condition(obs)
            ones = torch.ones(n_states, d, device=device)
            prop = Independent(Uniform(-ones, ones), 1)
            sampler = Chain(
                ImportanceSampler(64, bounds=(-1.0, 1.0)), MALA(EPS, 10, bounds=(-1.0, 1.0))
            )
            fns = {
                "bare IS + 10 Langevin (floor)": lambda e=e_act, n=n_states, d=d: bare_acting(
                    e, -1.0, 1.0, n, 64, d, device
                ),
                "ebrl IS -> 10 MALA": lambda e=e_act, s=sampler, q=prop: s.sample(
                    e, q, 64, generator=gen
                ),
            }
            t = median_times(fns, max(args.repeats, 50), device)
            case = f"acting {n_states} state(s) x 64 x {d}-D"
            for name, sec in t.items():
                rows.append((case, name, sec, sec / t["bare IS + 10 Langevin (floor)"]))

    # ---- report
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", torch {torch.__version__}"
    )
    lines = [
        "# Sampler benchmark",
        "",
        f"Command: `python scripts/bench_samplers.py --device {args.device}"
        + (f" --threads {args.threads}" if args.threads else "")
        + f"`; medians of {args.repeats} interleaved repeats (50 for the acting cases). "
        f"Machine: {machine}.",
        "",
        "| case | method | median time | ratio to floor |",
        "|---|---|---|---|",
    ]
    for case, name, sec, ratio in rows:
        shown = f"{sec * 1e3:.1f} ms" if sec > 1e-2 else f"{sec * 1e6:.0f} us"
        lines.append(f"| {case} | {name} | {shown} | {ratio:.3f}x |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(args.out, lines)  # keeps a hand-written reading of the previous run


if __name__ == "__main__":
    main()
