"""The one MLP builder every module uses (energies, anchors, actors, critics, Q-networks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

__all__ = ["ACTIVATIONS", "mlp"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
}


def mlp(
    in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str = "relu"
) -> nn.Sequential:
    """``Linear -> activation`` for each hidden width, then a final ``Linear`` to ``out_dim``.

    Layers are ``nn.Sequential`` children ``0, 1, 2, ...`` (state-dict keys ``0.weight``,
    ``2.weight``, ...), initialised as ``nn.Linear`` does.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"mlp: {name} must be an int >= 1, got {value!r}")
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden_sizes):
        raise ValueError(f"mlp: hidden_sizes must be positive ints, got {tuple(hidden_sizes)}")
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
