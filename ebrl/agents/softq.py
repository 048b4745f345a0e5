"""Soft Q-learning for discrete actions: ``pi(a|s) = softmax(log anchor(a|s) + Q(s, a) / T)``,
exact.

Top to bottom: config -> networks -> losses -> one update -> the agent. Collection, scheduling,
logging, evaluation and checkpoints live in the off-policy core (:mod:`ebrl.agents.core`).

- ``anchor=None``: the uniform anchor, i.e. soft (maximum-entropy) DQN. As in SAC the entropy,
  not the KL to the uniform (they differ by ``log n``), is the regulariser, so the soft value
  is ``V(s) = T log sum_a exp(Q(s, a) / T)``.
- a given anchor (e.g. a behaviour-cloned :class:`~ebrl.policies.CategoricalAnchor`): piKL,
  ``V(s) = T log sum_a anchor(a|s) exp(Q(s, a) / T)``; actions of anchor probability 0 are
  never taken, whatever their Q (their logit is ``-inf``, not a clamped finite number).

The critic regresses ``Q(s, a)`` on ``r + gamma (1 - terminated) V'(s')`` with the exact soft
value of a target network ``Q'`` (Haarnoja et al. 2017, eq. 2-3; the discrete case of soft
Q-learning), Huber loss and gradient-norm clipping as DQN (Mnih et al. 2015). The temperature
is fixed or tuned toward a target entropy / KL (Haarnoja et al. 2018b eq. 18, exact here: the
policy's entropy is a sum over actions). Hyperparameter presets for the classic tasks come from
RL-Zoo's tuned DQN values (:mod:`ebrl.agents.presets`).

References:
    Haarnoja et al. (2017), "Reinforcement Learning with Deep Energy-Based Policies", ICML;
    Mnih et al. (2015), "Human-level control through deep reinforcement learning", Nature;
    van Hasselt et al. (2016), "Deep Reinforcement Learning with Double Q-learning" (the
    ``double_q`` option); Jacob et al. (2022), "Modeling Strong and Human-Like Gameplay with
    KL-Regularized Search" (piKL).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from ebrl.agents.buffer import Transitions
from ebrl.agents.config import OffPolicyConfig
from ebrl.agents.core import OffPolicyAgent
from ebrl.agents.evaluation import EnvLike
from ebrl.agents.updates import adam_step, polyak_update
from ebrl.networks import MLP, mlp
from ebrl.policies import AnchoredPolicy, UniformAnchor, categorical_log_probs
from ebrl.samplers import categorical_draw

__all__ = ["SoftQ", "SoftQConfig", "SoftQNetworks", "q_loss", "q_loss_with_gradients"]


@dataclass(frozen=True)
class SoftQConfig(OffPolicyConfig):
    """Hyperparameters of :class:`SoftQ` (field docs become ``ebrl train --algo softq --help``).

    The defaults are RL-Zoo's DQN values for CartPole-v1 (hyperparams/dqn.yml);
    :meth:`for_env` applies the tuned values of other tasks.
    """

    learning_rate: float = 2.3e-3
    """Adam learning rate of the Q-network and the temperature."""
    buffer_size: int = 100_000
    """Replay buffer capacity (transitions)."""
    learning_starts: int = 1000
    """Env steps (all envs together) of anchor-sampled actions before the first update."""
    batch_size: int = 64
    """Transitions per gradient step."""
    train_freq: int = 256
    """Vector-env steps between updates."""
    gradient_steps: int = 128
    """Gradient steps per update."""
    target_entropy: float | None = None
    """Entropy target (nats) of the automatic temperature without an anchor (default
    0.2 log(n_actions), about the entropy of DQN's final epsilon-greedy policy)."""
    target_kl: float | None = None
    """KL-to-anchor target (nats) with an anchor (default 0.05 log(n_actions): the agent stays
    about as predictive of the demonstrator's moves as the anchor cloned from them)."""
    target_update_interval: int = 128
    """Gradient steps between target-network updates."""
    tau: float = 1.0
    """Target update coefficient (1: copy, as DQN; < 1: Polyak averaging)."""
    loss: str = "huber"
    """Bellman regression loss: "huber" (smooth L1, as DQN) or "mse"."""
    double_q: bool = True
    """Weigh the target network's Q by the online network's policy in the soft value
    (double Q-learning's decoupling) instead of the target network's own soft value (on
    CartPole-v1 at 50k steps 4 of 5 seeds ended >= 475 with it, 2 of 5 without)."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip of the Q-network (as SB3's DQN)."""

    _checks = (
        *OffPolicyConfig._checks,
        ("target_update_interval", "int>=1"),
        ("tau", "[0,1]"),
        ("max_grad_norm", "float>0"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in ("huber", "mse"):
            raise ValueError(f"SoftQConfig: loss must be 'huber' or 'mse', got {self.loss!r}")
        if not isinstance(self.double_q, bool):
            raise TypeError(f"SoftQConfig: double_q must be a bool, got {self.double_q!r}")
        if self.tau == 0:
            raise ValueError("SoftQConfig: tau must be > 0 (0 never updates the target network)")


# ----------------------------------------------------------------------------- networks


class SoftQNetworks(nn.Module):
    """The Q-network ``obs -> [n_actions]``, its target copy, and the anchor."""

    def __init__(
        self, obs_dim: int, n_actions: int, config: SoftQConfig, anchor: nn.Module | None = None
    ):
        super().__init__()
        self.q = mlp(obs_dim, config.hidden_sizes, n_actions, "relu")
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.entropy_mode = anchor is None
        self.anchor = UniformAnchor(gym.spaces.Discrete(n_actions)) if anchor is None else anchor

    def log_anchor(self, obs: Tensor) -> Tensor | None:
        """``log anchor(.|s)``, ``[B, n]`` (``-inf`` where 0); ``None`` in entropy mode (the
        counting measure: 0 for every action)."""
        if self.entropy_mode:
            return None
        with torch.no_grad():
            return categorical_log_probs(self.anchor(obs))

    def log_policy(
        self, obs: Tensor, q: Tensor, temperature: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """``(log pi, log anchor)``: ``log_softmax(log anchor + Q / T)``, ``[B, n]``."""
        log_anchor = self.log_anchor(obs)
        return torch.log_softmax(_scaled(log_anchor, q, temperature), -1), log_anchor


def _scaled(log_anchor: Tensor | None, q: Tensor, temperature: Tensor) -> Tensor:
    """``log anchor + Q / T``, exactly ``-inf`` where the anchor's probability is 0."""
    if log_anchor is None:
        return q / temperature
    return torch.where(log_anchor == -math.inf, -math.inf, log_anchor + q / temperature)


def _regulariser(log_pi: Tensor, log_anchor: Tensor | None, pi: Tensor | None = None) -> Tensor:
    """``sum_a pi (log pi - log anchor)`` per state (0 terms where pi = 0): the KL to the anchor,
    or minus the entropy in entropy mode (``pi``: ``log_pi.exp()`` where the caller has it)."""
    pi = log_pi.exp() if pi is None else pi
    if log_anchor is None:
        return -torch.special.entr(pi).sum(-1)
    return torch.where(pi > 0, pi * (log_pi - log_anchor), 0.0).sum(-1)


def policy_probs(nets: SoftQNetworks, obs: Tensor, temperature: Tensor) -> Tensor:
    """``pi(.|s) = softmax(log anchor + Q / T)``, ``[B, n]``, for ``obs[B, o]``: the acting
    step (a function of tensors only, so that it compiles once)."""
    return torch.softmax(_scaled(nets.log_anchor(obs), nets.q(obs), temperature), -1)


# ----------------------------------------------------------------------------- losses


def q_loss(
    nets: SoftQNetworks,
    batch: Transitions,
    temperature: Tensor,
    *,
    gamma: float,
    loss: str = "huber",
    double_q: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Soft Bellman regression of ``Q(s, a)`` on ``y = r + gamma (1 - d) V'(s')`` (no gradient
    into the target; only the Q-network gets one). Terms include the exact mean ``entropy`` (or
    ``kl_to_anchor``) of the current policy over the batch's states (``next_obs`` with
    ``double_q``, which computes that policy anyway; ``obs`` otherwise), the estimate
    :func:`~ebrl.agents.updates.temperature_loss` takes.

    ``V'(s') = T log sum_a anchor(a|s') exp(Q'(s', a) / T)`` (exact, target network), or with
    ``double_q`` ``sum_a pi(a|s') [Q'(s', a) - T log(pi(a|s') / anchor(a|s'))]`` with ``pi`` the
    online network's policy.
    """
    _check_loss("q_loss", loss, batch)
    target, reg = _soft_target(nets, batch, temperature, gamma, double_q)
    q_all = nets.q(batch.obs)
    q = q_all.gather(1, batch.actions.unsqueeze(1)).squeeze(1)
    value_loss = _regression(q, target, loss)
    return value_loss, _terms(nets, batch, temperature, value_loss, q_all.detach(), q, target, reg)


def q_loss_with_gradients(
    nets: SoftQNetworks,
    batch: Transitions,
    temperature: Tensor,
    *,
    gamma: float,
    loss: str = "huber",
    double_q: bool = False,
    check: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`q_loss`, with the Q-network's gradient of it set in its parameters' ``.grad``
    (as ``zero_grad(set_to_none=True)`` then ``loss.backward()`` would) by hand: the loss's
    derivative in ``Q(s, a)`` in closed form, then
    :meth:`~ebrl.networks.MLP.backward_parameters`, the ops autograd would run, without its
    engine, whose cost per node is much of a small network's step (a CartPole gradient step
    took ~10-15% less time alone on a CPU, and training ran 1.06x faster end to end).

    The same numbers as :func:`q_loss` + ``backward`` up to rounding: with ``double_q``,
    ``Q(s, .)`` and ``Q(s', .)`` come from one pass over ``[s; s']``, and a BLAS may round a
    row of that larger product differently (bit for bit equal at batch 64 on the CPUs
    measured, not at batch 1-3). Plain ReLU Q-networks only
    (:attr:`~ebrl.networks.MLP.is_relu_mlp`: SoftQ's own, without hooks, frozen or shared
    parameters); ``check=False`` skips that check, for a caller that made it (~5 us).
    """
    _check_loss("q_loss_with_gradients", loss, batch)
    if check and not (isinstance(nets.q, MLP) and nets.q.is_relu_mlp):
        raise ValueError(
            "q_loss_with_gradients: nets.q must be a plain ReLU MLP (ebrl.networks.mlp(..., "
            "'relu') without hooks, frozen or shared parameters: MLP.is_relu_mlp); use q_loss "
            "and backward() for other networks"
        )
    with torch.no_grad():
        if double_q:  # Q(s, .) and Q(s', .) in one pass (fewer ops; see the docstring)
            n = len(batch.obs)
            both = torch.cat([batch.obs, batch.next_obs])
            q_both, inputs_both = nets.q.forward_keeping_inputs(both, check=False)
            q_all, q_online_next = q_both[:n], q_both[n:]
            inputs = [x[:n] for x in inputs_both]
        else:
            q_all, inputs = nets.q.forward_keeping_inputs(batch.obs, check=False)
            q_online_next = None
        target, reg = _soft_target(nets, batch, temperature, gamma, double_q, q_online_next)
        actions = batch.actions.unsqueeze(1)
        q = q_all.gather(1, actions).squeeze(1)
        value_loss = _regression(q, target, loss)
        # d loss / d Q(s, a), as ATen's backward of the mean-reduced losses computes it:
        # smooth L1 (beta 1) 1/B clamp(q - y, -1, 1), MSE 2/B (q - y); 0 for the other actions
        error = q - target
        if loss == "huber":
            grad_q = error.clamp_(-1.0, 1.0).mul_(1.0 / len(q))
        else:
            grad_q = error.mul_(2.0 / len(q))
        grad = torch.zeros_like(q_all).scatter_(1, actions, grad_q.unsqueeze(1))
        nets.q.backward_parameters(inputs, grad, check=False)  # checked above, built here
    return value_loss, _terms(nets, batch, temperature, value_loss, q_all, q, target, reg)


def _check_loss(where: str, loss: str, batch: Transitions) -> None:
    if loss not in ("huber", "mse"):
        raise ValueError(f"{where}: loss must be 'huber' or 'mse', got {loss!r}")
    if len(batch.obs) == 0:
        raise ValueError(f"{where}: the batch is empty")


def _soft_target(
    nets: SoftQNetworks,
    batch: Transitions,
    temperature: Tensor,
    gamma: float,
    double_q: bool,
    q_online_next: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``(y, reg)``: the regression target ``y = r + gamma (1 - d) V'(s')`` (see
    :func:`q_loss`), and with ``double_q`` the policy's regulariser at ``s'`` (it computes that
    policy), else ``None``. ``q_online_next``: the online ``Q(s', .)`` where the caller has it
    (double-Q's policy needs it)."""
    with torch.no_grad():
        q_next = nets.q_target(batch.next_obs)
        reg = None
        if double_q:
            if q_online_next is None:
                q_online_next = nets.q(batch.next_obs)
            log_pi, log_anchor = nets.log_policy(batch.next_obs, q_online_next, temperature)
            pi = log_pi.exp()
            reg = _regulariser(log_pi, log_anchor, pi)
            value = (pi * q_next).sum(-1) - temperature * reg
        else:
            scaled = _scaled(nets.log_anchor(batch.next_obs), q_next, temperature)
            value = temperature * torch.logsumexp(scaled, -1)
        target = torch.addcmul(batch.rewards, 1 - batch.terminated, value, value=gamma)
    return target, reg


def _regression(q: Tensor, target: Tensor, loss: str) -> Tensor:
    if loss == "huber":
        return nn.functional.smooth_l1_loss(q, target)
    return nn.functional.mse_loss(q, target)


def _terms(
    nets: SoftQNetworks,
    batch: Transitions,
    temperature: Tensor,
    value_loss: Tensor,
    q_all: Tensor,
    q: Tensor,
    target: Tensor,
    reg: Tensor | None,
) -> dict[str, Tensor]:
    """The loss's logged terms; the regulariser on the batch's states where the target did not
    compute it at ``s'`` (``q_all``: the detached ``Q(s, .)``)."""
    if reg is None:
        with torch.no_grad():
            reg = _regulariser(*nets.log_policy(batch.obs, q_all, temperature))
    reg = reg.mean()
    name, value = ("entropy", -reg) if nets.entropy_mode else ("kl_to_anchor", reg)
    # q and target are logged as vectors: the core averages them at its log writes
    return {"q_loss": value_loss, "q_mean": q.detach(), "target_mean": target, name: value}


# ----------------------------------------------------------------------------- the agent


class SoftQ(OffPolicyAgent):
    """Soft Q-learning (discrete actions) with an anchor, Stable-Baselines3-shaped.

    Args:
        env: a gymnasium env id, env, factory ``() -> Env``, or vector env (either autoreset
            mode) (``Discrete`` actions, Box observations).
            Evaluation runs on an env built the same way.
        anchor: ``None`` (uniform: soft DQN) or a module ``obs[B, o] -> Categorical`` over the
            ``n`` actions (e.g. a behaviour-cloned :class:`~ebrl.policies.CategoricalAnchor`):
            the policy is regularised toward it (piKL).
        temperature: ``"auto"`` (tuned toward the entropy / KL target) or a fixed float > 0.
        seed: seeds the networks, the sampling generator, and the envs.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        tensorboard_log: directory for TensorBoard scalars (``None``: no logging).
        num_envs: parallel envs when ``env`` is an id or a factory.
        config: a :class:`SoftQConfig`; default: the env's preset
            (``SoftQConfig.for_env(env_id)``, the CLI's defaults too); ``**hyperparameters``
            override its fields.
        eval_env: the env (or factory) :meth:`evaluate` uses; default: one built like ``env``.

    Example:
        >>> agent = SoftQ("CartPole-v1", seed=0)                        # doctest: +SKIP
        >>> agent.learn(50_000)                                         # doctest: +SKIP
        >>> agent.evaluate(10)["mean_return"]                           # doctest: +SKIP
    """

    config_class = SoftQConfig
    action_dtype = torch.int64

    def __init__(
        self,
        env: EnvLike,
        anchor: nn.Module | None = None,
        temperature: str | float = "auto",
        seed: int = 0,
        device: str | torch.device = "auto",
        tensorboard_log: str | Path | None = None,
        num_envs: int = 1,
        config: SoftQConfig | None = None,
        eval_env: EnvLike | None = None,
        **hyperparameters,
    ):
        super().__init__(
            env,
            anchor,
            temperature,
            seed,
            device,
            tensorboard_log,
            num_envs,
            config,
            hyperparameters,
            eval_env,
        )
        cfg = self.config
        self.n_actions = n = int(self.action_space.n)
        self.action_start = int(self.action_space.start)
        if anchor is not None:
            _check_anchor(anchor, self.obs_dim, n)
        self.nets = self.seeded(lambda: SoftQNetworks(self.obs_dim, n, cfg, anchor))
        # 0.2 log n: about the entropy of DQN's final epsilon-greedy policy. 0.05 log n with an
        # anchor: close enough that the agent still predicts the demonstrator's moves about as
        # well as its clone does (experiments/pikl_lunarlander/: 0.8 log n, the KL to the
        # uniform that the entropy target amounts to, lost a fifth of the clone's top-1
        # agreement, and 0.1 log n still 7-8%)
        self.set_target(0.2 * math.log(n), 0.05 * math.log(n))
        self.q_optimizer = torch.optim.Adam(self.nets.q.parameters(), cfg.learning_rate, fused=True)
        self.policy = self._own_policy = AnchoredPolicy(
            self.nets.anchor, self.nets.q, self.temperature
        )
        self.gradient_steps_done = 0
        # The hot paths: eager functions, or compiled ones (config.compile): the policy's
        # probabilities in one graph, the loss's forward (its backward and the optimiser step
        # stay eager).
        self._policy_probs = self._hot_path(policy_probs, fullgraph=True)
        self._q_loss = self._hot_path(q_loss, fullgraph=False)
        # Eager, the Q-network's gradient is computed by hand (q_loss_with_gradients: the same
        # numbers up to rounding, ~10-15% less time) while the Q-network is a plain ReLU MLP (a
        # hook or a frozen layer, added at any time, sends the update through autograd);
        # compiled, the compiler sees q_loss and its autograd backward.
        self._gradients_by_hand = not self.compiled

    @staticmethod
    def _check_action_space(space: gym.Space) -> gym.spaces.Discrete:
        if not isinstance(space, gym.spaces.Discrete):
            raise ValueError(f"SoftQ: supports Discrete action spaces; got {space} (use SAC)")
        return space

    # ------------------------------------------------------------------ acting

    def act(self, obs: Tensor, deterministic: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Action indices ``[B]``: a draw of the exact policy, or its argmax.

        With the agent's own policy the logits come from :meth:`SoftQNetworks.log_policy` (the
        loss's computation, a few tensor ops per env step); a policy assigned to
        ``agent.policy`` (another anchor, a composed cost) acts through its own ``act``.
        """
        if self.policy is not self._own_policy:
            return self.policy.act(obs, deterministic, self.generator), {}
        probs = self._policy_probs(self.nets, obs, self._policy_temperature)
        # softmax's rows are NaN, never inf, for a NaN Q, a +inf Q of an allowed action, and
        # a state where no action is allowed (anchor 0 or Q -inf everywhere): one test, the
        # call's one host sync
        if bool(probs.isnan().any()):
            raise ValueError(
                "SoftQ.act: the policy is NaN or has no action of nonzero probability for some "
                "state (a NaN or +inf Q-value, a NaN observation, or an anchor of zero "
                "everywhere)"
            )
        if deterministic:
            return probs.argmax(-1), {}
        return categorical_draw(probs, self.generator), {}

    def explore(self, obs: Tensor) -> Tensor:
        probs = categorical_log_probs(self.nets.anchor(obs)).exp()
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.cpu().numpy() + self.action_start

    # ------------------------------------------------------------------ one update

    def update(self, batch: Transitions) -> dict[str, Tensor]:
        """One gradient step on the Q-network (clipped), then the temperature; the target
        network every ``target_update_interval`` steps."""
        cfg = self.config
        options = {"gamma": cfg.gamma, "loss": cfg.loss, "double_q": cfg.double_q}
        temperature = self._policy_temperature  # exp(log T), kept in sync (two ops fewer)
        q = self.nets.q
        if self._gradients_by_hand and isinstance(q, MLP) and q.is_relu_mlp:  # checked here
            _, metrics = q_loss_with_gradients(
                self.nets, batch, temperature, **options, check=False
            )
        else:
            loss, metrics = self._q_loss(self.nets, batch, temperature, **options)
            self.q_optimizer.zero_grad(set_to_none=True)
            loss.backward()
        adam_step(self.q_optimizer, cfg.max_grad_norm)

        reg = -metrics["entropy"] if self.entropy_mode else metrics["kl_to_anchor"]
        metrics.update(self.step_temperature(reg))

        self.gradient_steps_done += 1
        if self.gradient_steps_done % cfg.target_update_interval == 0:
            polyak_update(self.nets.q, self.nets.q_target, cfg.tau)
        return metrics

    # ------------------------------------------------------------------ checkpoints

    def modules(self) -> dict[str, nn.Module]:
        return {"q": self.nets.q, "q_target": self.nets.q_target}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q": self.q_optimizer}

    def extra_state(self) -> dict:
        return {"gradient_steps_done": self.gradient_steps_done}

    def load_extra_state(self, extra: dict) -> None:
        self.gradient_steps_done = int(extra["gradient_steps_done"])


def _check_anchor(anchor: object, obs_dim: int, n_actions: int) -> None:
    """The anchor must map ``obs[B, obs_dim]`` to a ``Categorical`` over ``n_actions``."""
    if not callable(anchor):
        raise TypeError(f"SoftQ: anchor must be a module obs -> Categorical, got {anchor!r}")
    params = list(getattr(anchor, "parameters", list)())
    like = params[0] if params else torch.zeros(())
    with torch.no_grad():
        dist = anchor(torch.zeros(2, obs_dim, dtype=like.dtype, device=like.device))
    if not isinstance(dist, Categorical) or tuple(dist.probs.shape) != (2, n_actions):
        got = tuple(dist.probs.shape) if isinstance(dist, Categorical) else type(dist).__name__
        raise ValueError(
            f"SoftQ: anchor(obs[B, {obs_dim}]) must return a Categorical over the env's "
            f"{n_actions} actions (probs [B, {n_actions}]), got {got}"
        )
