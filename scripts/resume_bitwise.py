"""The Python resume bar: learn(n), save, load, learn(n, reset_num_timesteps=False) against
learn(2n), default configs, CPU, one thread. Prints the max abs parameter difference (want 0).

    python scripts/resume_bitwise.py            # SAC on Pendulum-v1 and SoftQ on CartPole-v1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from ebrl import SAC, SoftQ


def parameters(agent) -> list[torch.Tensor]:
    tensors = [t for m in agent.modules().values() for t in m.state_dict().values()]
    optim = [
        v
        for o in agent.optimizers().values()
        for s in o.state_dict()["state"].values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    ]
    return [*tensors, *optim, agent.log_temperature.detach()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="n (each half)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for cls, env in ((SAC, "Pendulum-v1"), (SoftQ, "CartPole-v1")):
        straight = cls(env, seed=0).learn(2 * args.steps, progress_bar=False)
        half = cls(env, seed=0).learn(args.steps, progress_bar=False)
        with tempfile.TemporaryDirectory() as tmp:
            path = half.save(Path(tmp) / "half.pt")
            resumed = cls.load(path)
        resumed.learn(args.steps, progress_bar=False, reset_num_timesteps=False)
        diff = max(
            float((a.double() - b.double()).abs().max())
            for a, b in zip(parameters(straight), parameters(resumed), strict=True)
        )
        a, b = straight.evaluate(5), resumed.evaluate(5)
        print(
            f"{cls.__name__} {env}: learn({2 * args.steps}) vs learn({args.steps}) + save + "
            f"load + learn({args.steps}, reset_num_timesteps=False): max abs difference of "
            f"parameters and optimiser state {diff:g}; evaluation {a['mean_return']:.2f} vs "
            f"{b['mean_return']:.2f}; buffer {len(straight.buffer)} vs {len(resumed.buffer)}"
        )


if __name__ == "__main__":
    main()
