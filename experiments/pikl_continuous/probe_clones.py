"""Why the squashed clone plays worse than its human (issue 12): for one seed, the human's and
the two clones' (``GaussianAnchor``, tanh-squashed; ``TruncatedGaussianAnchor``) sampled return
over 100 episodes, return by the mode over 20, and how often each fires its engines on the
held-out human states (64 draws per state).

    python experiments/pikl_continuous/probe_clones.py --seed 0     # prints one JSON line

The clones are fitted exactly as ``run.py`` fits its BC anchor (50 demonstration episodes,
``fit_behaviour_cloning`` defaults); the held-out states are ``run.py``'s.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from run import ENV_ID, EVAL_SEED, HELDOUT_DEMO_SEED, anchor_actor, fit_bc, human_demos


def firing(actions: np.ndarray) -> dict:
    """Main engine on (``a0 > 0``) and side engine firing (``|a1| > 0.5``), as LunarLander reads
    its continuous throttles."""
    return {
        "main_on": float((actions[..., 0] > 0).mean()),
        "side_firing": float((np.abs(actions[..., 1]) > 0.5).mean()),
    }


def main() -> None:
    from ebrl.agents import evaluate_policy
    from ebrl.data.demos import lunar_lander_heuristic

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-std", type=float, default=0.5)
    args = p.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    def human(obs):
        a = lunar_lander_heuristic(obs, continuous=True) + args.noise_std * rng.normal(size=2)
        return np.clip(a, -1.0, 1.0)

    held = human_demos(10, args.noise_std, HELDOUT_DEMO_SEED)
    clean = np.stack([lunar_lander_heuristic(o, continuous=True) for o in held.observations])
    noise = np.random.default_rng(0).normal(size=(64, *clean.shape))
    out = {
        "seed": args.seed,
        "human": {
            "sampled_100": evaluate_policy(human, ENV_ID, 100, EVAL_SEED)["mean_return"],
            "noise_free_20": evaluate_policy(
                lambda o: np.clip(lunar_lander_heuristic(o, continuous=True), -1, 1),
                ENV_ID,
                20,
                EVAL_SEED,
            )["mean_return"],
            **firing(np.clip(clean + args.noise_std * noise, -1, 1)),
        },
    }
    demos = human_demos(50, args.noise_std, args.seed)
    obs = torch.as_tensor(held.observations)
    for family in ("squashed", "truncated"):
        anchor, _ = fit_bc(demos, args.seed, family)
        with torch.no_grad():
            draws = anchor(obs).sample((64,)).numpy()
        out[family] = {
            "sampled_100": evaluate_policy(
                anchor_actor(anchor, False, args.seed), ENV_ID, 100, EVAL_SEED
            )["mean_return"],
            "mode_20": evaluate_policy(
                anchor_actor(anchor, True, args.seed), ENV_ID, 20, EVAL_SEED
            )["mean_return"],
            **firing(draws),
        }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
