"""Tiny models for tests, loaded through the registry's ``package.module:factory`` paths.

Tests put this folder on ``sys.path`` and name a factory as ``models_for_tests:<name>``.
"""

from __future__ import annotations

import torch
from torch import nn


def no_bias_head(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> nn.Module:
    """Conv-ReLU-avgpool features and a last linear layer without bias."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes, bias=False),
    )


def conv_head(num_classes: int = 10, in_channels: int = 3, width: int = 8) -> nn.Module:
    """An all-convolutional classifier: a 1×1 convolution and average pooling, no nn.Linear."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, num_classes, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class TinyGenerator(nn.Module):
    """A two-layer DCGAN-style generator: latents 6×1×1 → C×(2·4)×(2·4) images in [-1, 1]."""

    latent_shape = (6, 1, 1)

    def __init__(self, channels: int = 3, stages: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(6, 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        ]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(8, 8, 4, 2, 1, bias=False), nn.ReLU()]
        layers += [nn.ConvTranspose2d(8, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):  # non-trivial running statistics
                layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator))
                layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
    return module


def tiny_generator() -> nn.Module:
    """8×8 RGB images (fits the tiny test updates)."""
    return _seeded(TinyGenerator())


def tiny_generator_16px() -> nn.Module:
    """16×16 RGB images: the wrong size for 8 px updates."""
    return _seeded(TinyGenerator(stages=2))


def tiny_generator_grey() -> nn.Module:
    """8×8 single-channel images: the wrong channels for RGB updates."""
    return _seeded(TinyGenerator(channels=1))


def no_latent_shape() -> nn.Module:
    """A generator without the ``latent_shape`` attribute ``--generator`` needs."""
    return nn.Sequential(nn.ConvTranspose2d(6, 3, 8), nn.Tanh())
