"""What every learned inverter is: a fixed encoding of an update, and a network from it to images.

``encode`` turns one update (the tensors a client shares) into the inverter's input tensors —
fixed, not learned, so training pairs can be encoded once and cached. ``forward`` maps a
stack of P encoded updates to P×B×C×H×W pixel estimates in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]


def rms_normalize(x: torch.Tensor, start_dim: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """``x`` divided by its root mean square over the dimensions from ``start_dim`` on."""
    dims = tuple(range(start_dim, x.dim()))
    if not dims:
        return x
    return x / torch.sqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)


class Inverter(nn.Module):
    """Base class; see the module docstring."""

    arch = "base"

    def __init__(self, batch_size: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.image_shape = tuple(image_shape)

    def encode(self, update: Tensors) -> Tensors:
        """The fixed input tensors of one update (no leading P dimension)."""
        raise NotImplementedError

    def forward(self, encoded: Tensors) -> torch.Tensor:
        """P encoded updates (P leading) → P×B×C×H×W pixels in [0, 1]."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Constructor settings, recorded in the inverter file to rebuild it."""
        return {}

    def set_leaked_weights(self, params: Tensors, buffers: Tensors) -> None:
        """Use these model weights where the architecture reads them (default: none)."""


def stack_encoded(items: list[Tensors]) -> Tensors:
    """P encoded updates → one dict of P-leading tensors."""
    return {name: torch.stack([item[name] for item in items]) for name in items[0]}
