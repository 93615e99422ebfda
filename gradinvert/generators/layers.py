"""A generator split into its layers, G = G_N ∘ … ∘ G_1 (GIFD's feature-domain search).

A layer is a run of the generator's sequential modules that ends at an activation (ReLU,
LeakyReLU, ...): for the DCGAN, ConvT → BatchNorm → ReLU is one layer and the output
convolution with its tanh the last. The split works for generators whose forward pass is one
``nn.Sequential`` — the module itself, or its ``main`` attribute (the built-in DCGAN and
generators written in its style) — or that say it themselves with a ``layers()`` method
returning the modules in order. Nothing is copied: the layers share G's weights.
"""

from __future__ import annotations

import torch
from torch import nn

from gradinvert.runtime.errors import UsageError

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.PReLU, nn.Softplus)


def split_layers(module: nn.Module) -> list[nn.Module]:
    """G's layers in order; their composition is G's forward pass (see the module docstring)."""
    own = getattr(module, "layers", None)
    if callable(own):
        layers = list(own())
        if layers and all(isinstance(layer, nn.Module) for layer in layers):
            return layers
    sequence = module if isinstance(module, nn.Sequential) else getattr(module, "main", None)
    if not isinstance(sequence, nn.Sequential) or not (
        module is sequence or _forward_is_main(module)
    ):
        raise UsageError(
            "--search f splits the generator into its layers: it needs an nn.Sequential, a "
            "module whose forward is its `main` nn.Sequential (the DCGAN), or a `layers()` method"
        )
    layers: list[nn.Module] = []
    block: list[nn.Module] = []
    for child in sequence:
        block.append(child)
        if isinstance(child, ACTIVATIONS):
            layers.append(nn.Sequential(*block))
            block = []
    if block:
        layers.append(nn.Sequential(*block))
    return layers


def _forward_is_main(module: nn.Module) -> bool:
    """True when ``module(z)`` is ``module.main(z)`` (checked on the module's own latent)."""
    shape = getattr(module, "latent_shape", None)
    if not isinstance(shape, tuple):
        return False
    device = next(iter(module.parameters()), torch.empty(0)).device
    z = torch.randn((2, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        return bool(torch.equal(module(z), module.main(z)))  # type: ignore[operator]


def run_layers(
    layers: list[nn.Module], value: torch.Tensor, start: int = 0, stop: int = -1
) -> torch.Tensor:
    """``layers[start:stop]`` applied in order (stop −1: to the end)."""
    end = len(layers) if stop < 0 else stop
    for layer in layers[start:end]:
        value = layer(value)
    return value
