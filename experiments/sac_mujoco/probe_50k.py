"""Stable-Baselines3's SAC on Hopper-v5 evaluated at many steps around 50k (the bar's final
evaluation), the same way run.py evaluates (10 deterministic episodes, reset seeds 10000 + seed
+ i, RL-Zoo's 10k-step warm-up), to see whether a run's 50k evaluation is where its policy stays
or a passing phase. SB3 trains the same, bit for bit, whatever the evaluation schedule: its 45k,
49k, 50k and 51k evaluations here equal those of run.py's runs of the same seed.

Usage: python experiments/sac_mujoco/probe_50k.py SEED   (prints (step, mean return) pairs)
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the evaluation of every run in this study

STEPS = (45000, 49000, 49500, 49800, 49900, 49950, 49990, 49999, 50000, 50001, 50010, 50050)
STEPS += (50100, 50200, 50500, 51000)


def main() -> None:
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.callbacks import BaseCallback

    parser = argparse.ArgumentParser(
        description="Evaluates SB3's SAC on Hopper-v5 at 16 steps between 45k and 51k."
    )
    parser.add_argument("seed", type=int, help="the SB3 run's seed, as in run.py")
    seed = parser.parse_args().seed
    torch.set_num_threads(1)
    torch.manual_seed(seed)  # as run.py
    model = SB3SAC("MlpPolicy", "Hopper-v5", seed=seed, device="cpu", verbose=0,
                   learning_starts=run.ZOO_LEARNING_STARTS)  # fmt: skip

    class Probe(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in STEPS:
                predict = lambda o: model.predict(o, deterministic=True)[0]  # noqa: E731
                result = run.evaluate_batched(predict, "Hopper-v5", 10, 10_000 + seed)
                print((self.num_timesteps, round(result["mean_return"], 2)), flush=True)
            return True

    model.learn(max(STEPS), callback=Probe())


if __name__ == "__main__":
    main()
