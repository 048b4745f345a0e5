"""The MLP builder's hand-written backward (what SoftQ's update uses) against autograd."""

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from ebrl.networks import MLP, mlp


@pytest.mark.parametrize("hidden", [(), (16,), (16, 8, 12)])
def test_backward_parameters_equals_autograd(hidden):
    torch.manual_seed(0)
    net = mlp(5, hidden, 3, "relu")
    x, grad_out = torch.randn(32, 5), torch.randn(32, 3)
    (net(x) * grad_out).sum().backward()
    expected = [p.grad.clone() for p in net.parameters()]
    for p in net.parameters():  # set, not accumulated: stale grads must not count
        p.grad = torch.full_like(p, 7.0)
    out, inputs = net.forward_keeping_inputs(x)
    torch.testing.assert_close(out, net(x), rtol=0, atol=0)
    net.backward_parameters(inputs, grad_out)
    for p, e in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-6, atol=1e-8)
    assert not out.requires_grad


def test_backward_parameters_masks_where_the_relu_was_off():
    net = mlp(1, (2,), 1, "relu")
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[0].bias.zero_()
        net[2].weight.fill_(1.0)
    _, inputs = net.forward_keeping_inputs(torch.tensor([[2.0]]))  # hidden (2, 0)
    net.backward_parameters(inputs, torch.ones(1, 1))
    assert net[0].weight.grad.tolist() == [[2.0], [0.0]]  # the off unit gets nothing
    assert net[2].weight.grad.tolist() == [[2.0, 0.0]]


def test_backward_helpers_reject_what_they_do_not_support():
    with pytest.raises(ValueError, match=r"Linear, ReLU, \.\.\., Linear, got.*SiLU"):
        mlp(2, (4,), 1, "silu").forward_keeping_inputs(torch.zeros(3, 2))
    assert mlp(2, (4,), 1).is_relu_mlp and mlp(2, (), 1).is_relu_mlp
    assert not mlp(2, (4,), 1, "tanh").is_relu_mlp
    # ReLUs alone, but not one between every two Linear layers: its masks would be wrong
    for layers in [(nn.Linear(2, 4), nn.Linear(4, 1)), (nn.ReLU(), nn.Linear(2, 1))]:
        net = MLP(*layers)
        assert not net.is_relu_mlp
        with pytest.raises(ValueError, match=r"Linear, ReLU, \.\.\., Linear"):
            net.backward_parameters([torch.zeros(3, 2)] * 2, torch.zeros(3, 1))

    # a forward that is not MLP's, or hooks these methods would not run
    class Scaled(MLP):
        def forward(self, x):
            return 2 * super().forward(x)

    assert not Scaled(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).is_relu_mlp
    net = mlp(2, (4,), 1)
    handle = net.register_forward_hook(lambda module, args, out: 3 * out)
    assert not net.is_relu_mlp
    with pytest.raises(ValueError, match="forward or backward hooks"):
        net.forward_keeping_inputs(torch.zeros(3, 2))
    handle.remove()
    assert net.is_relu_mlp
    for bad in (torch.zeros(5, 3, 2), torch.zeros(3, 5), torch.zeros(3, 2, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"x must be a batch \[B, 2\] of torch.float32"):
            net.forward_keeping_inputs(bad)
    with pytest.raises(TypeError, match="x must be a tensor"):
        net.forward_keeping_inputs([[0.0, 0.0]])
    _, inputs = net.forward_keeping_inputs(torch.zeros(3, 2))
    for bad in (inputs[:1], [inputs[0], inputs[1][:2]], [inputs[0], inputs[1].double()], None):
        with pytest.raises(ValueError, match="one \\[B, in\\] tensor per Linear layer"):
            net.backward_parameters(bad, torch.zeros(3, 1))
    for bad in (torch.zeros(3, 2), torch.zeros(4, 1), torch.zeros(3, 1, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"grad_output must be \[3, 1\] of torch.float32"):
            net.backward_parameters(inputs, bad)


def _what_changes_the_gradient():
    """(name, setup(net) -> undo) for each thing that makes autograd's gradient (or self(x))
    differ from the hand-written one."""

    def hook(register):
        return lambda net: register(net).remove

    def instance_forward(net):
        net.forward = lambda x: 2 * MLP.forward(net, x)
        return lambda: delattr(net, "forward")

    def frozen(net):
        net[0].requires_grad_(False)
        return lambda: net[0].requires_grad_(True)

    return [
        ("forward pre-hook", hook(lambda n: n.register_forward_pre_hook(lambda m, a: None))),
        ("backward pre-hook", hook(lambda n: n.register_full_backward_pre_hook(lambda m, g: g))),
        ("backward hook", hook(lambda n: n.register_full_backward_hook(lambda m, gi, go: gi))),
        (
            "global forward hook",
            hook(lambda n: module_hooks.register_module_forward_hook(lambda m, a, o: o)),
        ),
        (
            "global backward hook",
            hook(lambda n: module_hooks.register_module_full_backward_hook(lambda m, gi, go: gi)),
        ),
        ("parameter hook", hook(lambda n: n[0].weight.register_hook(lambda g: 0 * g))),
        (
            "post-accumulate hook",
            hook(lambda n: n[0].weight.register_post_accumulate_grad_hook(lambda p: None)),
        ),
        ("instance forward", instance_forward),
        ("frozen layer", frozen),
    ]


@pytest.mark.parametrize("case", _what_changes_the_gradient(), ids=lambda case: case[0])
def test_is_relu_mlp_refuses_what_would_change_the_gradient(case):
    _, setup = case
    net = mlp(2, (4,), 1)
    undo = setup(net)
    try:
        assert not net.is_relu_mlp
        with pytest.raises(ValueError, match="plain ReLU MLPs only"):
            net.forward_keeping_inputs(torch.zeros(3, 2))
    finally:
        undo()
    assert net.is_relu_mlp


def test_is_relu_mlp_refuses_a_layer_used_twice():
    layer = nn.Linear(4, 4)
    net = MLP(nn.Linear(2, 4), nn.ReLU(), layer, nn.ReLU(), layer, nn.ReLU(), nn.Linear(4, 1))
    assert not net.is_relu_mlp  # autograd adds the two uses' gradients; the hand path would not
    tied = mlp(2, (4, 4), 1)
    tied[4].weight = tied[2].weight
    assert not tied.is_relu_mlp
