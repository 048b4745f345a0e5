"""The one MLP builder every module uses (energies, anchors, actors, critics, Q-networks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch.nn.modules import module as _module_hooks

from ebrl.validation import check_int

__all__ = ["ACTIVATIONS", "MLP", "mlp"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
}

# the same activations as functions, for MLP.forward
_FUNCTIONAL: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.SiLU: functional.silu,
    nn.ReLU: torch.relu,
    nn.ELU: functional.elu,
    nn.Tanh: torch.tanh,
    nn.Softplus: functional.softplus,
    nn.GELU: functional.gelu,
}


class MLP(nn.Sequential):
    """An ``nn.Sequential`` of ``Linear`` and activation layers whose forward calls the layers'
    functions directly (``F.linear``, ``torch.relu``, ...) instead of each submodule: the same
    result, without a module dispatch per layer (about 13 us of a 256-256 MLP's 30 us on one
    state on a CPU, where agents call small networks thousands of times a second). Hooks
    registered on the *layers* therefore do not run; hooks on the MLP itself do."""

    def forward(self, x: Tensor) -> Tensor:
        for layer in self:
            if isinstance(layer, nn.Linear):
                x = functional.linear(x, layer.weight, layer.bias)
            else:
                x = _FUNCTIONAL[type(layer)](x)
        return x

    @property
    def is_relu_mlp(self) -> bool:
        """Whether :meth:`forward_keeping_inputs` and :meth:`backward_parameters` compute this
        MLP's output and autograd's gradient exactly: ``Linear, ReLU, ..., Linear`` (what
        ``mlp(..., "relu")`` builds) with ``MLP``'s own ``forward`` and ``__call__``, no module
        or parameter hooks (its own or global), and no frozen or shared layer or parameter."""
        return self._relu_mlp_problem() is None

    def forward_keeping_inputs(
        self, x: Tensor, *, check: bool = True
    ) -> tuple[Tensor, list[Tensor]]:
        """``(self(x), inputs)``, ``inputs`` being each ``Linear`` layer's input (``x``, then the
        activations), what :meth:`backward_parameters` needs; no autograd graph. ReLU MLPs
        only (:attr:`is_relu_mlp`), on a batch ``x[B, in]``. ``check=False`` skips the checks
        of the network and of ``x`` (a caller that made them once per step)."""
        linears = list(self)[::2]
        if check:
            self._check_relu_mlp("forward_keeping_inputs")
            self._check_batch(x, linears[0].weight)
        inputs = []
        with torch.no_grad():
            for i, layer in enumerate(linears):
                if i > 0:
                    x = torch.relu(x)
                inputs.append(x)
                x = functional.linear(x, layer.weight, layer.bias)
        return x, inputs

    @staticmethod
    def _check_batch(x: Tensor, first: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"MLP.forward_keeping_inputs: x must be a tensor, got {type(x)}")
        if (
            x.dim() != 2
            or x.shape[1] != first.shape[1]
            or x.dtype != first.dtype
            or x.device != first.device
        ):
            raise ValueError(
                f"MLP.forward_keeping_inputs: x must be a batch [B, {first.shape[1]}] of "
                f"{first.dtype} on {first.device}, got {list(x.shape)} of {x.dtype} on {x.device}"
            )

    def backward_parameters(
        self, inputs: list[Tensor], grad_output: Tensor, *, check: bool = True
    ) -> None:
        """Sets every parameter's ``.grad`` to the gradient of ``(self(x) * grad_output).sum()``
        (``inputs`` from :meth:`forward_keeping_inputs`; ``grad_output[B, out]``), as
        ``zero_grad(set_to_none=True)`` then ``backward`` would, by the ops autograd runs for
        ``linear`` and ``relu`` (the same numbers), without the autograd engine, whose cost per
        node is much of a small network's step on a CPU. ReLU MLPs only (:attr:`is_relu_mlp`).

        Each hidden ReLU's input was positive exactly where its output, the next layer's
        input, is: the inputs alone carry the masks (autograd's ``threshold_backward`` on the
        result, as for ``torch.relu``). Hooks on the parameters' gradients do not run (no
        autograd engine runs). ``check=False`` skips the checks of the network and of the
        arguments."""
        linears = list(self)[::2]
        if check:
            self._check_relu_mlp("backward_parameters")
            self._check_backward_arguments(linears, inputs, grad_output)
        grad = grad_output
        with torch.no_grad():
            for i in range(len(linears) - 1, -1, -1):
                weight, bias = linears[i].weight, linears[i].bias
                weight.grad = grad.t() @ inputs[i]
                if bias is not None:
                    bias.grad = grad.sum(0)
                if i > 0:  # the input's gradient, through the ReLU that made it
                    grad = torch.ops.aten.threshold_backward(grad @ weight, inputs[i], 0)

    @staticmethod
    def _check_backward_arguments(
        linears: list[nn.Linear], inputs: list[Tensor], grad_output: Tensor
    ) -> None:
        weight = linears[0].weight
        if (
            not isinstance(inputs, list | tuple)
            or len(inputs) != len(linears)
            or not all(
                isinstance(x, Tensor)
                and x.shape == (inputs[0].shape[0], layer.in_features)
                and x.dtype == weight.dtype
                and x.device == weight.device
                for x, layer in zip(inputs, linears, strict=False)
            )
        ):
            widths = [layer.in_features for layer in linears]
            raise ValueError(
                "MLP.backward_parameters: inputs must be forward_keeping_inputs' list, one "
                f"[B, in] tensor per Linear layer (in = {widths}), of the network's dtype "
                f"{weight.dtype} and device {weight.device}"
            )
        out_features = linears[-1].out_features
        if (
            not isinstance(grad_output, Tensor)
            or grad_output.shape != (inputs[0].shape[0], out_features)
            or grad_output.dtype != inputs[0].dtype
            or grad_output.device != weight.device
        ):
            got = (
                f"{list(grad_output.shape)} of {grad_output.dtype}"
                if isinstance(grad_output, Tensor)
                else type(grad_output).__name__
            )
            raise ValueError(
                f"MLP.backward_parameters: grad_output must be [{inputs[0].shape[0]}, "
                f"{out_features}] of {inputs[0].dtype} (the inputs' batch), got {got}"
            )

    def _check_relu_mlp(self, where: str) -> None:
        problem = self._relu_mlp_problem()
        if problem is not None:
            raise ValueError(f"MLP.{where}: supports plain ReLU MLPs only; {problem}")

    def _relu_mlp_problem(self) -> str | None:
        """Why :attr:`is_relu_mlp` is false, or ``None``: anything that would make
        ``self(x)`` or autograd's gradient differ from the hand-written one."""
        layers = list(self)
        linears = layers[::2]
        if not (
            len(layers) % 2 == 1
            and all(type(layer) is nn.Linear for layer in linears)
            and all(type(layer) is nn.ReLU for layer in layers[1::2])
        ):
            names = [type(layer).__name__ for layer in layers]
            return f"the layers must be Linear, ReLU, ..., Linear, got {names}"
        cls = type(self)
        if (
            cls.forward is not MLP.forward
            or "forward" in self.__dict__
            or cls.__call__ is not nn.Module.__call__
            or cls._call_impl is not nn.Module._call_impl
        ):
            return f"{cls.__name__} changes forward or __call__"
        hooks = _module_hooks
        if (
            self._forward_hooks
            or self._forward_pre_hooks
            or self._backward_hooks
            or self._backward_pre_hooks
            or hooks._global_forward_hooks
            or hooks._global_forward_pre_hooks
            or hooks._global_backward_hooks
            or hooks._global_backward_pre_hooks
        ):
            return "it has forward or backward hooks, which these methods would not run"
        # the layers' parameter dicts, not layer.weight: nn.Module.__getattr__ costs ~0.3 us a
        # name, and SoftQ checks this at every gradient step
        params = [p for layer in linears for p in layer._parameters.values() if p is not None]
        if len({id(layer) for layer in linears}) < len(linears) or len(set(map(id, params))) < len(
            params
        ):
            return "a layer or a parameter is used twice (autograd would add its gradients)"
        if not all(p.requires_grad for p in params):
            return "a parameter is frozen (requires_grad=False: autograd would leave its grad)"
        if any(p._backward_hooks or p._post_accumulate_grad_hooks for p in params):
            return "a parameter has gradient hooks, which these methods would not run"
        return None


def mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int,
    activation: str = "relu",
    *,
    owner: str = "mlp",
) -> MLP:
    """``Linear -> activation`` for each hidden width, then a final ``Linear`` to ``out_dim``.

    Layers are ``nn.Sequential`` children ``0, 1, 2, ...`` (state-dict keys ``0.weight``,
    ``2.weight``, ...), initialised as ``nn.Linear`` does. Errors name ``owner`` (the module
    being built, e.g. ``"MLPEnergy"``).

    Example:
        >>> mlp(4, (32, 32), 2, "silu")[0]
        Linear(in_features=4, out_features=32, bias=True)
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{owner}: unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    in_dim = check_int(owner, "in_dim", in_dim)
    out_dim = check_int(owner, "out_dim", out_dim)
    try:
        sizes = tuple(hidden_sizes)
    except TypeError as err:
        raise TypeError(f"{owner}: hidden_sizes must be a sequence of ints") from err
    sizes = tuple(check_int(owner, "hidden_sizes entries", h) for h in sizes)
    layers: list[nn.Module] = []
    width = in_dim
    for h in sizes:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return MLP(*layers)
