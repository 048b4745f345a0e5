"""Per-env hyperparameter presets, one table for the Python API (``SACConfig.for_env``,
``SoftQConfig.for_env``) and the CLI (``ebrl train`` applies them unless a flag says otherwise).

Sources: RL-Zoo (rl-baselines3-zoo, ``hyperparams/sac.yml`` and ``hyperparams/dqn.yml`` at
commit 22e3ff2, April 2026), the tuned values Stable-Baselines3 users start from, and ebrl's
own studies where RL-Zoo has no entry or ebrl's agent needs something SB3's does not. Every
entry says where its numbers come from. Only fields ebrl's configs have are taken; what is left
out, and why:

- RL-Zoo's ``lin_X`` learning rates decay linearly from X to 0 over its ``n_timesteps``; ebrl's
  learning rates are constant, so the preset holds the initial value X.
- ``use_sde`` / ``log_std_init`` (generalised state-dependent exploration) have no counterpart:
  ebrl's actor is a plain squashed Gaussian.
- A fixed ``ent_coef`` is a fixed temperature, which is not a config field but the agent's
  ``temperature=`` argument (``--temperature`` in the CLI); the presets keep the automatic
  temperature. ``ent_coef: 'auto'`` is ebrl's default.
- DQN's epsilon-greedy schedule (``exploration_*``) has no counterpart: SoftQ explores by
  sampling its Boltzmann policy, tuned toward an entropy target.
- ``n_timesteps`` is a training budget, not a config field (``--steps``).

RL-Zoo lists the MuJoCo tasks with v4 ids; the v5 tasks have the same observations, actions,
rewards and dynamics up to bug fixes (gymnasium's v5 changelog), so the values carry over.
Where RL-Zoo lists nothing for a task its ``default`` entry applies, which is SB3's defaults,
which are :class:`~ebrl.agents.SACConfig`'s; those tasks have an empty entry here, to say so.
"""

from __future__ import annotations

__all__ = ["PRESETS", "preset"]

# sac.yml's shared MuJoCo values (&mujoco-defaults: HalfCheetah, Ant, Hopper, Walker2d,
# Humanoid, Swimmer -v4): SB3's defaults, which are SACConfig's, with a 10k-step warm-up.
# And ebrl's own: deterministic actions are the actor's mode (mode_steps 0, as SAC's), not a
# search on the critic from there. In ebrl's MuJoCo study (experiments/sac_mujoco/results.md,
# "Deterministic action": 18 energy runs x 10 evaluations, each scored both ways) the search
# scored below the actor's mode on HalfCheetah in 53 of 60 paired evaluations (by 315 on
# average) and on Hopper in 81 of 120 (by 15), and drove half of HalfCheetah's action
# coordinates to the box's bounds, where the critic extrapolates.
_SAC_MUJOCO = {"learning_starts": 10_000, "mode_steps": 0}

# dqn.yml LunarLander-v3 and Acrobot-v1 (the same values): target_update_interval 250 env
# steps at one gradient step per env step (train_freq 4, gradient_steps -1 = 4) is 250
# gradient steps.
_DQN_LUNARLANDER = {
    "learning_rate": 6.3e-4,
    "batch_size": 128,
    "buffer_size": 50_000,
    "learning_starts": 0,
    "gamma": 0.99,
    "train_freq": 4,
    "gradient_steps": 4,
    "target_update_interval": 250,
    "hidden_sizes": (256, 256),
}

PRESETS: dict[str, dict[str, dict]] = {
    "SACConfig": {
        # --- classic control
        # sac.yml Pendulum-v1: learning_rate 1e-3 (other fields are SB3's defaults).
        "Pendulum-v1": {"learning_rate": 1e-3},
        # sac.yml MountainCarContinuous-v0, without ent_coef 0.1 (a fixed temperature: pass
        # temperature=0.1 / --temperature 0.1) and use_sde with log_std_init -3.67 (no
        # counterpart); RL-Zoo's result relies on both.
        "MountainCarContinuous-v0": {
            "learning_rate": 3e-4,
            "buffer_size": 50_000,
            "batch_size": 512,
            "gamma": 0.9999,
            "tau": 0.01,
            "train_freq": 32,
            "gradient_steps": 32,
            "learning_starts": 0,
            "hidden_sizes": (64, 64),
        },
        # --- Box2D
        # sac.yml LunarLanderContinuous-v3: learning_rate lin_7.3e-4 (decays to 0 over 500k
        # steps in RL-Zoo; here the constant initial value).
        "LunarLanderContinuous-v3": {
            "learning_rate": 7.3e-4,
            "buffer_size": 1_000_000,
            "batch_size": 256,
            "gamma": 0.99,
            "tau": 0.01,
            "train_freq": 1,
            "gradient_steps": 1,
            "learning_starts": 10_000,
            "hidden_sizes": (400, 300),
        },
        # sac.yml BipedalWalker-v3, without use_sde and log_std_init -3 (no counterpart).
        "BipedalWalker-v3": {
            "learning_rate": 7.3e-4,
            "buffer_size": 300_000,
            "batch_size": 256,
            "gamma": 0.98,
            "tau": 0.02,
            "train_freq": 64,
            "gradient_steps": 64,
            "learning_starts": 10_000,
            "hidden_sizes": (400, 300),
        },
        # --- MuJoCo v5 (sac.yml lists v4 ids; the values carry over, see the module doc)
        "HalfCheetah-v5": _SAC_MUJOCO,
        "Hopper-v5": _SAC_MUJOCO,
        "Walker2d-v5": _SAC_MUJOCO,
        "Ant-v5": _SAC_MUJOCO,
        # sac.yml Humanoid-v4: the shared MuJoCo values (its longer 2M-step budget is not a
        # config field).
        "Humanoid-v5": _SAC_MUJOCO,
        # sac.yml Swimmer-v4: the shared MuJoCo values with gamma 0.999 (RL-Zoo PR #447).
        "Swimmer-v5": {**_SAC_MUJOCO, "gamma": 0.999},
        # No sac.yml entry for these MuJoCo tasks (only for their PyBullet cousins, which are
        # other envs): RL-Zoo's `default` entry, i.e. SB3's defaults, which are SACConfig's.
        "InvertedPendulum-v5": {},
        "InvertedDoublePendulum-v5": {},
        "Reacher-v5": {},
        # --- ebrl's own envs
        # No RL-Zoo entry: the configuration of ebrl's MultiGoal study
        # (experiments/multigoal/run.py and results.md), whose energy policy reached every goal
        # in >= 15% of 100 stochastic episodes in 3 of 3 seeds after 10k steps: a hot-started
        # automatic temperature (T0 = 20) tuned toward entropy 0.5 nats (at SAC's usual
        # -dim(A) = -2 the policy concentrates on the goals its critic favours), the soft value
        # of the energy policy as the Bellman target, 64 particles half from the uniform anchor
        # followed by 5 MALA steps.
        "ebrl/MultiGoal-v0": {
            "learning_starts": 1000,
            "learning_rate": 3e-4,
            "hidden_sizes": (128, 128),
            "initial_temperature": 20.0,
            "target_entropy": 0.5,
            "n_particles": 64,
            "anchor_mix": 0.5,
            "mala_steps": 5,
            "mala_step_size": 0.01,
            "value_target": "importance",
            "target_particles": 32,
        },
    },
    "SoftQConfig": {
        # dqn.yml CartPole-v1 (SoftQConfig's defaults are these values; its
        # target_update_interval of 10 env steps falls inside each 256-step collection, so the
        # target is copied once per 128 gradient steps: SoftQConfig's 128), and an entropy
        # target tuned by ebrl: 0.2773 (0.4 log 2) ended 5 of 5 seeds at 500 after 50k steps
        # (4 of 5 with the previous code revision) where the default 0.2 log 2 ended 1 of 5
        # >= 475 (experiments/softq_cartpole/results.md).
        "CartPole-v1": {
            "target_entropy": 0.2773,
            "learning_rate": 2.3e-3,
            "batch_size": 64,
            "buffer_size": 100_000,
            "learning_starts": 1000,
            "gamma": 0.99,
            "train_freq": 256,
            "gradient_steps": 128,
            "hidden_sizes": (256, 256),
        },
        "LunarLander-v3": _DQN_LUNARLANDER,
        "Acrobot-v1": _DQN_LUNARLANDER,
        # dqn.yml MountainCar-v0: target_update_interval 600 env steps at 8 gradient steps per
        # 16 env steps is 300 gradient steps.
        "MountainCar-v0": {
            "learning_rate": 4e-3,
            "batch_size": 128,
            "buffer_size": 10_000,
            "learning_starts": 1000,
            "gamma": 0.98,
            "train_freq": 16,
            "gradient_steps": 8,
            "target_update_interval": 300,
            "hidden_sizes": (256, 256),
        },
    },
}


def preset(config_name: str, env_id: str | None) -> dict:
    """The preset overrides of ``config_name`` (e.g. ``"SoftQConfig"``) for ``env_id`` ({} if
    none)."""
    return dict(PRESETS.get(config_name, {}).get(env_id, {}))
