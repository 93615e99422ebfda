"""The leaked model's structure as the units a GIT inverter mirrors, found by tracing one forward.

A *layer unit* is one convolution or linear layer with what follows it up to the next one: an
optional BatchNorm, an activation, pooling or flattening. A *block unit* is a residual block
(torchvision's ``BasicBlock``/``Bottleneck`` convention: a module with ``conv1``, ``conv2`` and
``downsample`` attributes): its main path's layer units plus the shortcut (a downsampling
convolution, or the identity), summed. Units are listed in forward order; the inverter visits
them backwards. Models outside this vocabulary (other skip structures, grouped or dilated
convolutions, parametrized layers of other kinds) are refused with a message pointing to
``--arch mlp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from gradinvert.runtime.errors import UsageError

Shape = tuple[int, ...]
PARAMETER_FREE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.SiLU,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
)


@dataclass
class LayerUnit:
    """A convolution or linear layer (``layer``), its optional BatchNorm, and trailing free ops."""

    layer: str  # parameter prefix, e.g. "body.0" or "layer1.0.conv1"
    kind: str  # conv | linear
    in_shape: Shape  # one sample's input of the layer
    layer_out_shape: Shape  # one sample's output of the layer itself
    out_shape: Shape  # after the BN, activation and pooling that follow
    bn: str | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    bias: bool = False


@dataclass
class BlockUnit:
    """A residual block: ``out = act(main(x) + shortcut(x))``."""

    name: str
    main: list[LayerUnit]
    shortcut: LayerUnit | None  # None: identity
    in_shape: Shape
    body_out_shape: Shape  # the block's own output
    out_shape: Shape  # after the pooling that may follow the block


Unit = LayerUnit | BlockUnit


@dataclass
class ModelTrace:
    """The units of a model in forward order, for one input shape."""

    units: list[Unit] = field(default_factory=list)
    input_shape: Shape = ()


def _is_block(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("conv1", "conv2", "downsample"))


def _unsupported(what: str) -> UsageError:
    return UsageError(f"--arch git cannot mirror this model: {what}; use --arch mlp")


def _layer_unit(name: str, module: nn.Module, in_shape: Shape, out_shape: Shape) -> LayerUnit:
    if isinstance(module, nn.Linear):
        return LayerUnit(
            name, "linear", in_shape, out_shape, out_shape, bias=module.bias is not None
        )
    assert isinstance(module, nn.Conv2d)
    if module.groups != 1 or module.dilation != (1, 1) or isinstance(module.padding, str):
        raise _unsupported(f"{name} is a grouped, dilated or 'same'-padded convolution")
    if module.padding_mode != "zeros":
        raise _unsupported(f"{name} pads with {module.padding_mode!r}")
    return LayerUnit(
        name,
        "conv",
        in_shape,
        out_shape,
        out_shape,
        stride=tuple(module.stride),  # type: ignore[arg-type]
        padding=tuple(module.padding),  # type: ignore[arg-type]
        bias=module.bias is not None,
    )


def trace_model(model: nn.Module, input_shape: Shape) -> ModelTrace:
    """The model's units for one sample of ``input_shape`` (C, H, W); see the module docstring."""
    blocks = {name: m for name, m in model.named_modules() if name and _is_block(m)}
    calls: list[tuple[str, nn.Module, Shape, Shape]] = []

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            calls.append((name, module, tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))

        return hook

    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    handles = [m.register_forward_hook(record(n)) for n, m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    trace = ModelTrace(input_shape=tuple(input_shape))
    index = 0
    while index < len(calls):
        name, module, in_shape, out_shape = calls[index]
        block = next((b for b in blocks if name.startswith(b + ".")), None)
        if block is not None:
            end = index
            while end < len(calls) and calls[end][0].startswith(block + "."):
                end += 1
            trace.units.append(_block_unit(block, blocks[block], calls[index:end]))
            index = end
            continue
        current = trace.units[-1] if trace.units else None
        if isinstance(module, nn.Conv2d | nn.Linear):
            trace.units.append(_layer_unit(name, module, in_shape, out_shape))
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            if not isinstance(current, LayerUnit) or current.bn is not None:
                raise _unsupported(f"BatchNorm {name} does not follow a convolution")
            current.bn, current.out_shape = name, out_shape
        elif isinstance(module, PARAMETER_FREE):
            if current is None:
                raise _unsupported(f"{name} ({type(module).__name__}) comes before any layer")
            current.out_shape = out_shape
        else:
            raise _unsupported(f"{name} is a {type(module).__name__}")
        index += 1
    _check_chain(trace)
    return trace


def _block_unit(name: str, module: nn.Module, calls: list) -> BlockUnit:
    main: list[LayerUnit] = []
    shortcut: LayerUnit | None = None
    in_shape, out_shape = calls[0][2], calls[-1][3]
    for call_name, leaf, leaf_in, leaf_out in calls:
        local = call_name[len(name) + 1 :]
        if isinstance(leaf, nn.Conv2d):
            unit = _layer_unit(call_name, leaf, leaf_in, leaf_out)
            if local.startswith("downsample"):
                shortcut = unit
            else:
                main.append(unit)
        elif isinstance(leaf, nn.BatchNorm2d):
            target = shortcut if local.startswith("downsample") else (main[-1] if main else None)
            if target is None:
                raise _unsupported(f"BatchNorm {call_name} does not follow a convolution")
            target.bn, target.out_shape = call_name, leaf_out
        elif not isinstance(leaf, PARAMETER_FREE):
            raise _unsupported(f"{call_name} is a {type(leaf).__name__}")
    if not main:
        raise _unsupported(f"residual block {name} has no convolution")
    if shortcut is None and in_shape != out_shape:
        raise _unsupported(f"residual block {name} changes shape without a downsample")
    return BlockUnit(name, main, shortcut, in_shape, out_shape, out_shape)


def _numel(shape: Shape) -> int:
    return int(torch.Size(shape).numel())


def _check_chain(trace: ModelTrace) -> None:
    units = trace.units
    if not units or not isinstance(units[-1], LayerUnit) or units[-1].kind != "linear":
        raise _unsupported("the model does not end in a linear layer")
    previous = trace.input_shape
    for unit in units:
        if not adaptable(previous, unit.in_shape):
            label = unit.layer if isinstance(unit, LayerUnit) else unit.name
            raise _unsupported(f"{label} reads {unit.in_shape}, its predecessor gives {previous}")
        previous = unit.out_shape


def adaptable(source: Shape, target: Shape) -> bool:
    """Whether :func:`adapt` can map an estimate of ``source`` shape to ``target`` shape."""
    spatial = len(target) == 3 and len(source) in (1, 3)
    return _numel(source) == _numel(target) or (spatial and source[0] == target[0])
