"""The critics' ensemble equals separate MLPs, one per member (values and gradients), for the
batch shapes the agents use."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from ebrl.agents.critics import QEnsemble


def member(ensemble: QEnsemble, k: int, obs: torch.Tensor, actions: torch.Tensor):
    """Member ``k`` as a plain ReLU MLP (``F.linear`` per layer) on ``[obs, actions]``."""
    x = torch.cat([obs.expand(*actions.shape[:-1], -1), actions], -1)
    layers = list(ensemble.layers)
    for i, layer in enumerate(layers):
        x = functional.linear(x, layer.weight[k].T, layer.bias[k, 0])
        x = torch.relu(x) if i < len(layers) - 1 else x
    return x[..., 0]


@pytest.mark.parametrize("action_batch", [(5,), (7, 5)], ids=["states", "particles"])
def test_ensemble_equals_separate_mlps(action_batch):
    torch.manual_seed(0)
    ensemble = QEnsemble(3, 2, (16, 8), n_critics=3)
    obs = torch.randn(5, 3)
    actions = torch.randn(*action_batch, 2, requires_grad=True)
    q = ensemble(obs, actions)
    assert q.shape == (3, *action_batch)
    expected = torch.stack([member(ensemble, k, obs, actions) for k in range(3)])
    torch.testing.assert_close(q, expected)
    weights = torch.randn_like(q)
    params = [actions, *ensemble.parameters()]
    got = torch.autograd.grad((q * weights).sum(), params)
    want = torch.autograd.grad((expected * weights).sum(), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
