"""Inputs of the tiny long runs (learn-prior, train-prior, train-inverter) the checkpoint and
settings tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from invert_support import make_update
from PIL import Image
from safetensors import safe_open

from gradinvert.io.files import save_update


def training_inputs(folder: Path) -> Path:
    """In ``folder``: u.safetensors and v.safetensors (8 px updates of two images, model seeds 0
    and 1), imgs/ (8 random 32 px PNGs). Returns ``folder``."""
    for name, seed in (("u", 0), ("v", 1)):
        update, _, _ = make_update(count=2, labels=[1, 3], seed=seed)
        save_update(update, folder / f"{name}.safetensors")
    images = folder / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
    return folder


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two safetensors files hold the same tensors (names, dtypes, values)."""
    ours, theirs = tensors_of(a), tensors_of(b)
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
