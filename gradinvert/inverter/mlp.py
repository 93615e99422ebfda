"""LTI's baseline (Wu et al., UAI 2023): an MLP from the flattened update to the batch's pixels.

The update's tensors are concatenated in sorted name order and divided by their RMS (so one
network fits any gradient scale). When the result is longer than ``max_inputs`` (default
2¹⁶ = 65 536: LeNet's 15.8 k numbers pass as they are, ResNet-18's 11 M do not) it goes
through a seeded count sketch — each coordinate is added, with a random sign, to one of
``max_inputs`` buckets — the sparse random projection LTI calls hashing; it costs one index
and one sign per coordinate, not a dense matrix. Then ``hidden`` → ``hidden`` with ReLU
(LTI: 3000) and a sigmoid to B×C×H×W pixels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradinvert.inverter.base import Inverter, Tensors, rms_normalize

MAX_INPUTS = 2**16


class MlpInverter(Inverter):
    """See the module docstring."""

    arch = "mlp"

    def __init__(
        self,
        shapes: dict[str, tuple[int, ...]],
        image_shape: tuple[int, int, int],
        batch_size: int,
        hidden: int = 3000,
        max_inputs: int = MAX_INPUTS,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, image_shape)
        self.shapes = {name: tuple(shapes[name]) for name in sorted(shapes)}
        self.hidden, self.max_inputs, self.seed = hidden, max_inputs, seed
        length = sum(int(torch.Size(s).numel()) for s in self.shapes.values())
        self.length = length
        self.sketched = length > max_inputs
        inputs = max_inputs if self.sketched else length
        if self.sketched:
            rng = torch.Generator().manual_seed(seed)
            self.register_buffer("bucket", torch.randint(0, max_inputs, (length,), generator=rng))
            signs = torch.randint(0, 2, (length,), generator=rng).float() * 2 - 1
            self.register_buffer("sign", signs)
        outputs = batch_size * int(torch.Size(image_shape).numel())
        self.net = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, outputs),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "max_inputs": self.max_inputs,
            "seed": self.seed,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
        }

    def encode(self, update: Tensors) -> Tensors:
        parts = []
        for name, shape in self.shapes.items():
            value = update.get(name)
            parts.append(torch.zeros(shape).flatten() if value is None else value.float().flatten())
        flat = torch.cat(parts)
        if self.sketched:
            flat = torch.zeros(self.max_inputs).index_add_(0, self.bucket, flat * self.sign)
        return {"flat": rms_normalize(flat, start_dim=0)}

    def forward(self, encoded: Tensors) -> torch.Tensor:
        flat = encoded["flat"]
        out = torch.sigmoid(self.net(flat))
        return out.view(flat.shape[0], self.batch_size, *self.image_shape)
