"""The shared update pieces: ``adam_step`` equals ``clip_grad_norm_`` then ``Adam.step``."""

from __future__ import annotations

import copy

import pytest
import torch

from ebrl.agents import updates
from ebrl.agents.updates import adam_step
from ebrl.networks import mlp


def _pair(**adam):
    torch.manual_seed(0)
    net = mlp(3, (8, 8), 2)
    twin = copy.deepcopy(net)
    return (
        (net, torch.optim.Adam(net.parameters(), 1e-2, **adam)),
        (twin, torch.optim.Adam(twin.parameters(), 1e-2, **adam)),
    )


def _set_grads(net, step: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(step)
    for p in net.parameters():
        p.grad = scale * torch.randn(p.shape, generator=gen, dtype=p.dtype)


def _same(a, b) -> None:
    for p, q in zip(a[0].parameters(), b[0].parameters(), strict=True):
        assert torch.equal(p, q)
    for sa, sb in zip(a[1].state.values(), b[1].state.values(), strict=True):
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_norm", [None, 1.0])
def test_adam_step_equals_clip_then_step_bit_for_bit(max_norm, dtype, monkeypatch):
    """Over steps with gradients above and below the clip norm, changes of every
    hyperparameter (lr, betas, eps, weight decay) and a state-dict round trip, the fast path
    gives the library's numbers exactly; and it is the path taken after the first step."""
    taken = []
    group_of = updates._fused_adam_group
    monkeypatch.setattr(
        updates, "_fused_adam_group", lambda opt: taken.append(group_of(opt)) or taken[-1]
    )
    ref, fast = _pair(fused=True)
    for net, _ in (ref, fast):
        net.to(dtype)
    for step in range(8):
        scale = 10.0 if step % 2 else 0.01  # norms far above, then far below 1
        changes = {
            3: {"lr": 3e-3},
            4: {"betas": (0.5, 0.9), "eps": 1e-3},
            5: {"weight_decay": 0.1},
        }
        for opt in (ref[1], fast[1]):
            opt.param_groups[0].update(changes.get(step, {}))
        if step == 6:  # resume: new state tensors under the same parameters
            fast[1].load_state_dict(copy.deepcopy(fast[1].state_dict()))
        for net in (ref[0], fast[0]):
            _set_grads(net, step, scale)
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(ref[0].parameters(), max_norm, foreach=True)
        ref[1].step()
        adam_step(fast[1], max_norm)
        _same(ref, fast)
    assert taken[0] is None and all(t is not None for t in taken[1:])  # the first step: state


@pytest.mark.parametrize("max_norm", [1e-7, 2e-6, 10.0])
def test_adam_step_equals_clip_then_step_near_and_below_the_bound(max_norm):
    """Norms at 0.01-2x the bound, with bounds near the clip's 1e-6 epsilon: where the CPU
    path skips the multiply by 1 and where it must not."""
    ref, fast = _pair(fused=True)
    for step in range(12):
        for net in (ref[0], fast[0]):
            _set_grads(net, step, 1.0)
        norm = torch.linalg.vector_norm(torch.cat([p.grad.ravel() for p in ref[0].parameters()]))
        scale = max_norm * [0.01, 0.3, 0.49, 0.51, 0.9, 2.0][step % 6] / float(norm)
        for net in (ref[0], fast[0]):
            for p in net.parameters():
                p.grad.mul_(scale)
        torch.nn.utils.clip_grad_norm_(ref[0].parameters(), max_norm, foreach=True)
        ref[1].step()
        adam_step(fast[1], max_norm)
        _same(ref, fast)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_adam_step_takes_torchs_path_for_a_non_finite_norm(bad):
    ref, fast = _pair(fused=True)
    for step in range(2):
        for net in (ref[0], fast[0]):
            _set_grads(net, step, 0.01)
            if step == 1:
                next(net.parameters()).grad[0, 0] = bad
        torch.nn.utils.clip_grad_norm_(ref[0].parameters(), 10.0, foreach=True)
        ref[1].step()
        adam_step(fast[1], 10.0)
    # torch's clip scales every gradient by NaN (a NaN norm) or 0 (an infinite one): a skipped
    # multiply would leave the other gradients as they were, and the parameters elsewhere
    for p, q in zip(ref[0].parameters(), fast[0].parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0, equal_nan=True)


def test_adam_step_clips_to_the_norm():
    (net, opt), _ = _pair(fused=True)
    _set_grads(net, 0, 100.0)
    opt.step()  # creates the state
    _set_grads(net, 1, 100.0)
    grads = [p.grad for p in net.parameters()]
    adam_step(opt, 0.5)
    total = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    assert total == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize(
    "adam", [{"fused": False}, {"foreach": True}, {"fused": True, "amsgrad": True}]
)
def test_adam_step_falls_back_to_step_for_other_optimisers(adam):
    ref, fast = _pair(**adam)
    for step in range(3):
        for net in (ref[0], fast[0]):
            _set_grads(net, step, 5.0)
        torch.nn.utils.clip_grad_norm_(ref[0].parameters(), 1.0, foreach=True)
        ref[1].step()
        adam_step(fast[1], 1.0)
        _same(ref, fast)


def test_adam_step_runs_step_hooks():
    """A step pre-hook (torchrun's gradient averaging is one) still runs: the hooked optimiser
    steps through ``Adam.step``."""
    (net, opt), _ = _pair(fused=True)
    calls = []
    opt.register_step_pre_hook(lambda *args: calls.append(1))
    for step in range(3):
        _set_grads(net, step, 1.0)
        adam_step(opt, 1.0)
    assert len(calls) == 3


def test_adam_step_rejects_bad_input():
    (net, opt), _ = _pair(fused=True)
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"):
        adam_step(net)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_grad_norm must be finite and > 0"):
            adam_step(opt, bad)
    with pytest.raises(TypeError, match="max_grad_norm must be a float"):
        adam_step(opt, "1.0")
