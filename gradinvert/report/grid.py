"""Image grids (PNG): originals over their matched reconstructions, with captions."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from gradinvert.io.atomic import atomic_path

MIN_TILE = 96  # small images are enlarged (nearest neighbour) to at least this many pixels
MAX_COLUMNS = 8
GAP = 4
CAPTION = 14


def _to_pil(image: torch.Tensor, scale: int) -> Image.Image:
    array = (image.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8)
    array = array.permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        tile = Image.fromarray(np.ascontiguousarray(array[:, :, 0]), mode="L").convert("RGB")
    else:
        tile = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    if scale > 1:
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
    return tile


def render_grid(
    truth_images: torch.Tensor | Sequence[torch.Tensor],
    recon_images: torch.Tensor | Sequence[torch.Tensor],
    captions: list[str],
) -> Image.Image:
    """Originals over their reconstructions, a caption under each reconstruction.

    Pairs wrap after ``MAX_COLUMNS`` columns; images under ``MIN_TILE`` px are enlarged by an
    integer factor with nearest-neighbour sampling so that 32 px images stay visible.
    """
    truth = list(truth_images)
    recon = list(recon_images)
    if len(truth) != len(recon) or len(captions) != len(recon) or not recon:
        raise ValueError("render_grid needs as many originals, reconstructions and captions")
    height, width = truth[0].shape[-2:]
    scale = max(1, math.ceil(MIN_TILE / min(height, width)))
    tile_w, tile_h = width * scale, height * scale
    columns = min(MAX_COLUMNS, len(recon))
    blocks = math.ceil(len(recon) / columns)
    block_h = 2 * tile_h + GAP + CAPTION + GAP
    canvas = Image.new(
        "RGB",
        (columns * (tile_w + GAP) + GAP, blocks * block_h + GAP),
        color=(255, 255, 255),
    )
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k, (orig, rec, caption) in enumerate(zip(truth, recon, captions, strict=True)):
        x = GAP + (k % columns) * (tile_w + GAP)
        y = GAP + (k // columns) * block_h
        canvas.paste(_to_pil(orig, scale), (x, y))
        canvas.paste(_to_pil(rec, scale), (x, y + tile_h + GAP))
        draw.text((x + 1, y + 2 * tile_h + GAP + 1), caption, fill=(0, 0, 0), font=font)
    return canvas


def save_grid(
    truth_images: torch.Tensor | Sequence[torch.Tensor],
    recon_images: torch.Tensor | Sequence[torch.Tensor],
    captions: list[str],
    path: str | os.PathLike[str],
) -> None:
    """Write the originals-over-reconstructions grid as a PNG, atomically."""
    save_png(render_grid(truth_images, recon_images, captions), path)


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write a PIL image as a PNG, atomically and owner-only (see :mod:`gradinvert.io.atomic`)."""
    with atomic_path(path, private=True) as tmp:
        image.save(tmp, format="PNG")


def result_grid(
    result: dict[str, Any], truth_images: torch.Tensor, recon_images: torch.Tensor
) -> Image.Image | None:
    """Grid of an evaluation result's matched pairs; None when no pair was matched."""
    rows = result["images"]
    if not rows:
        return None
    return render_grid(
        truth_images[[r["truth_index"] for r in rows]],
        recon_images[[r["index"] for r in rows]],
        grid_captions(result),
    )


def save_result_grid(
    result: dict[str, Any],
    truth_images: torch.Tensor,
    recon_images: torch.Tensor,
    path: str | os.PathLike[str],
) -> bool:
    """Write the grid of an evaluation result's matched pairs; False when none was matched."""
    image = result_grid(result, truth_images, recon_images)
    if image is None:
        return False
    save_png(image, path)
    return True


def grid_captions(result: dict[str, Any]) -> list[str]:
    """Per-pair captions of an evaluation result: reconstruction index and PSNR."""
    return [f"#{row['index']} {row['psnr']:.1f} dB" for row in result["images"]]
