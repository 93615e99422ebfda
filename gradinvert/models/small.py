"""Small models the gradient-inversion literature attacks."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18


class LeNet(nn.Module):
    """DLG's LeNet: three 5×5 convolutions (stride 2, 2, 1) with sigmoids and one linear layer.

    Weights are drawn from U(-0.5, 0.5), as in Zhu et al. (2019).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
        )
        side = (image_size + 3) // 4
        self.fc = nn.Linear(12 * side * side, num_classes)
        for param in self.parameters():
            nn.init.uniform_(param, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(32, C) groups: the substitute for BatchNorm that DP-SGD deployments
    use (Opacus's module validator makes the same substitution)."""
    return nn.GroupNorm(min(32, channels), channels)


class ConvNet(nn.Module):
    """A small convolutional network with BatchNorm: three conv-BN-ReLU blocks (strides 1, 2, 2),
    then one linear layer on the flattened feature map (no global pooling, as in many FL CNNs).

    ``norm="group"``: GroupNorm instead of BatchNorm (for DP-SGD's per-example gradients).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 32,
        image_size: int = 32,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if norm not in ("batch", "group"):
            raise TypeError(f"norm must be batch or group, got {norm!r}")
        layer = nn.BatchNorm2d if norm == "batch" else group_norm

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                layer(cout),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *block(in_channels, width, 1),
            *block(width, 2 * width, 2),
            *block(2 * width, 2 * width, 2),
            nn.Flatten(),
        )
        side = (image_size + 3) // 4
        self.fc = nn.Linear(2 * width * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def cifar_resnet18(num_classes: int = 10, norm: str = "batch") -> nn.Module:
    """ResNet-18 for 32 px inputs: a 3×3 stride-1 stem and no max-pool (``norm="group"``:
    GroupNorm instead of BatchNorm)."""
    if norm not in ("batch", "group"):
        raise TypeError(f"norm must be batch or group, got {norm!r}")
    layer = nn.BatchNorm2d if norm == "batch" else group_norm
    model = resnet18(num_classes=num_classes, norm_layer=layer)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model
