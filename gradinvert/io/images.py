"""Load image files and folders into a [0, 1] float batch."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gradinvert.runtime.errors import InvalidInputError, MissingInputError, UsageError

# Pillow's default bound (it warns above it and refuses above twice it): no image gradinvert
# attacks comes near it, and a header claiming more is refused before any pixel is decoded.
MAX_PIXELS = 89_478_485
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def expand_image_paths(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders expanded to their image files in sorted order."""
    paths: list[Path] = []
    for source in sources:
        source = Path(source)
        if not source.exists():
            raise MissingInputError(f"{source}: no such file or folder")
        if source.is_dir():
            found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InvalidInputError(f"{source}: folder holds no image files")
            paths.extend(found)
        else:
            paths.append(source)
    return paths


def _resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize(
        (max(size, round(width * scale)), max(size, round(height * scale))),
        Image.Resampling.BICUBIC,
    )
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def _too_large(path: Path, size: str = "") -> InvalidInputError:
    claim = f"{size} pixels, more than the {MAX_PIXELS}" if size else f"more than the {MAX_PIXELS}"
    return InvalidInputError(
        f"{path}: the image claims {claim} pixels gradinvert decodes (a decompression bomb?)"
    )


def load_image(path: Path, size: int | None, channels: int = 3) -> torch.Tensor:
    """One image as a C×H×W float tensor in [0, 1]; its header's size is checked first."""
    try:
        with warnings.catch_warnings():  # Pillow warns on what the size check below refuses
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            if img.width * img.height > MAX_PIXELS:
                raise _too_large(path, f"{img.width}×{img.height}")
            img = img.convert("RGB" if channels == 3 else "L")
            if size is not None:
                img = _resize_center_crop(img, size)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except Image.DecompressionBombError:
        raise _too_large(path) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidInputError(f"{path}: cannot decode image ({exc})") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load_images(
    sources: Sequence[str | os.PathLike[str]], size: int | None = None, channels: int = 3
) -> tuple[torch.Tensor, list[Path]]:
    """Load images into an N×C×H×W batch; without ``size`` all images must share one size."""
    paths = expand_image_paths(sources)
    images = [load_image(p, size, channels) for p in paths]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1:
        raise UsageError(f"images have different sizes {sorted(shapes)[:3]}: give --size")
    return torch.stack(images), paths


PNG_NAMES = r"\d{3}_label\d+\.png"  # what save_pngs writes: png_name(index, label)


def png_name(index: int, label: int) -> str:
    """The file name of a batch's image in a PNG folder: index and label."""
    return f"{index:03d}_label{int(label)}.png"


def save_pngs(images: torch.Tensor, labels: torch.Tensor, folder: Path) -> None:
    """Every image of a batch as ``NNN_labelL.png`` in ``folder``; the folder (created when
    absent) and the files are owner-only: they hold images of people's data."""
    import numpy as np

    from gradinvert.io.atomic import atomic_path, make_folder

    make_folder(folder, private=True)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        if array.shape[2] == 1:
            array = array[:, :, 0]
        with atomic_path(folder / png_name(index, label), private=True) as tmp:
            Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
