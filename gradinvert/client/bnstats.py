"""Per-layer batch statistics of BatchNorm inputs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BnStats = dict[str, tuple[torch.Tensor, torch.Tensor]]


def batchnorm_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    """The model's BatchNorm modules by qualified name, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _BatchNorm)}


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance over every axis but the channel axis (1)."""
    dims = [d for d in range(x.ndim) if d != 1]
    return x.mean(dim=dims), x.var(dim=dims, unbiased=False)


@contextlib.contextmanager
def record_bn_inputs(model: nn.Module, detach: bool = True) -> Iterator[BnStats]:
    """Record the statistics of every BatchNorm layer's input during forward passes."""
    stats: BnStats = {}
    handles = []
    for name, layer in batchnorm_layers(model).items():

        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
            mean, var = channel_stats(args[0])
            stats[name] = (mean.detach(), var.detach()) if detach else (mean, var)

        handles.append(layer.register_forward_pre_hook(hook))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()
