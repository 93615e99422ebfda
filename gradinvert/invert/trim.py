"""Drop convolution kernel taps that only ever see zero padding (an exact speed-up).

On small inputs deep convolutions run on tiny maps: torchvision's ResNet-18 at 32 px applies
3×3 kernels to 1×1 maps in ``layer4``, where the eight outer taps multiply padding only. Those
taps add nothing to the output and their gradient is exactly zero, yet they hold most of the
model's weights, so every pass over the weights (forward, backward, the gradient distance and
its double backward) spends most of its time on them. :func:`trim_dead_taps` replaces such a
convolution in the attack's private model copy by one with the live part of the kernel and
explicit padding: outputs and live-tap gradients are unchanged; the dead taps' entries of the
shared update enter the gradient distance as constants (see
:class:`~gradinvert.invert.objectives.GradientDistance`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Trim:
    """The live kernel window of one convolution: rows ``r0:r1``, columns ``c0:c1``."""

    rows: tuple[int, int]
    cols: tuple[int, int]

    def apply(self, tensor: torch.Tensor) -> torch.Tensor:
        """The live window of a weight-shaped tensor (…×kh×kw)."""
        return tensor[..., self.rows[0] : self.rows[1], self.cols[0] : self.cols[1]]


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Length of a convolution's output along one axis (PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def live_taps(size: int, kernel: int, stride: int, padding: int, dilation: int) -> range:
    """Kernel offsets that touch at least one real (non-padding) input position."""
    out = output_size(size, kernel, stride, padding, dilation)
    live = [
        tap
        for tap in range(kernel)
        if any(0 <= i * stride - padding + tap * dilation < size for i in range(out))
    ]
    return range(live[0], live[-1] + 1) if live else range(0)


class TrimmedConv2d(nn.Module):
    """A Conv2d restricted to its live kernel window, with the padding made explicit."""

    def __init__(self, conv: nn.Conv2d, trim: Trim, in_size: tuple[int, int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(trim.apply(conv.weight.detach()).clone(), requires_grad=False)
        self.bias = conv.bias
        self.stride = conv.stride
        self.dilation = conv.dilation
        self.groups = conv.groups
        pads = []
        for dim, (start, stop) in enumerate((trim.cols, trim.rows)):
            axis = 1 - dim  # cols pad the last dimension, rows the one before
            size, stride = in_size[axis], conv.stride[axis]
            padding, dilation = conv.padding[axis], conv.dilation[axis]  # type: ignore[index]
            out = output_size(size, conv.kernel_size[axis], stride, padding, dilation)
            before = padding - start * dilation
            span = dilation * (stop - start - 1) + 1
            after = (out - 1) * stride + span - size - before
            pads += [before, after]
        self.pad = tuple(pads)  # F.pad order: left, right, top, bottom (negative crops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The original convolution's output, from the live taps only."""
        if any(self.pad):
            x = F.pad(x, self.pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _input_sizes(module: nn.Module, shape: tuple[int, ...]) -> dict[str, set[tuple[int, int]]]:
    """Every input size each Conv2d sees in one forward (a reused layer may see several)."""
    sizes: dict[str, set[tuple[int, int]]] = {}

    def recorder(name: str):  # noqa: ANN202 (a forward pre-hook)
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            sizes.setdefault(name, set()).add((int(args[0].shape[-2]), int(args[0].shape[-1])))

        return hook

    handles = [
        layer.register_forward_pre_hook(recorder(name))
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            # batch 2: train-mode BN needs more than one value per channel
            probe = next(module.parameters())
            module(torch.zeros(2, *shape, dtype=probe.dtype, device=probe.device))
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def trim_dead_taps(module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Trim]:
    """Replace, in place, every zero-padded Conv2d whose kernel has dead taps on inputs of
    ``input_shape`` (C×H×W); returns the trims by weight name (``"layer4.0.conv2.weight"``)."""
    sizes = _input_sizes(module, input_shape)
    trims: dict[str, Trim] = {}
    for name, conv in list(module.named_modules()):
        if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros":
            continue
        if len(sizes.get(name, ())) != 1:
            continue  # unused, or reused on maps of different sizes
        (size,) = sizes[name]
        if isinstance(conv.padding, str):
            continue  # "same"/"valid": no dead taps worth the trouble
        windows = [
            live_taps(
                size[axis],
                conv.kernel_size[axis],
                conv.stride[axis],
                conv.padding[axis],
                conv.dilation[axis],
            )
            for axis in (0, 1)
        ]
        if any(len(w) == 0 for w in windows):
            continue
        if all(len(w) == conv.kernel_size[axis] for axis, w in enumerate(windows)):
            continue
        trim = Trim((windows[0].start, windows[0].stop), (windows[1].start, windows[1].stop))
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, TrimmedConv2d(conv, trim, size))
        trims[f"{name}.weight"] = trim
    return trims
