"""Find a classifier's output layer by the model's structure, not by tensor order."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gradinvert.runtime.errors import InvalidInputError


@dataclass
class LastLayer:
    """The ``nn.Linear`` module whose output is the model's output (the logits)."""

    module: str
    weight: str
    bias: str | None
    num_classes: int
    num_features: int
    nonnegative_features: bool = False


def find_last_linear(model: nn.Module, input_shape: tuple[int, ...]) -> LastLayer:
    """Run a dummy forward pass and return the ``nn.Linear`` layer that produces the output.

    Also records whether the layer's input features came out non-negative on the random probe
    (ReLU, average pooling, sigmoid before the head), which the presence test relies on.

    Raises ``InvalidInputError`` when the model has no linear layer or its output is not the
    output of one (e.g. a softmax or a convolution after the last linear layer).
    """
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    if not linears:
        raise InvalidInputError(
            "the model has no nn.Linear layer: a linear classifier head is needed"
        )
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(name: str, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        outputs[name] = (args[0], out)

    handles = [
        module.register_forward_hook(lambda _m, args, out, name=name: record(name, args, out))
        for name, module in linears.items()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            generator = torch.Generator().manual_seed(0)
            probe = torch.randn((4, *input_shape), generator=generator).to(device)
            result = model(probe)
    except Exception as exc:  # a user model that cannot run on its declared input
        raise InvalidInputError(
            f"the model does not run on its declared input shape {tuple(input_shape)} "
            f"({type(exc).__name__}: {exc})"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not isinstance(result, torch.Tensor) or result.ndim != 2:
        raise InvalidInputError("the model's output is not a batch of logits (N × classes)")
    for name, (features, out) in reversed(list(outputs.items())):
        same = out is result or (
            out.data_ptr() == result.data_ptr() and out.numel() == result.numel()
        )
        if same:
            module = linears[name]
            return LastLayer(
                module=name,
                weight=f"{name}.weight",
                bias=f"{name}.bias" if module.bias is not None else None,
                num_classes=module.out_features,
                num_features=module.in_features,
                nonnegative_features=bool((features >= 0).all()),
            )
    raise InvalidInputError(
        "no linear layer produces the model's output (linear layers: "
        f"{', '.join(sorted(linears))}); logits from an nn.Linear are needed"
    )
