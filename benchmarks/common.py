"""What the benchmark scripts share: the sample photographs with their labels, and writing a
result table (printed, and saved under benchmarks/results/)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gradinvert.io.images import load_images

ROOT = Path(__file__).resolve().parent
SAMPLES = ROOT.parent / "samples"
RESULTS = ROOT / "results"


def sample_photos(batch: int, size: int = 32, start: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Photos ``start … start+batch-1`` (by file name) of samples/images{size}, and their labels."""
    folder = f"images{size}"
    known = json.loads((SAMPLES / "labels.json").read_text(encoding="utf-8"))[folder]
    names = sorted(known)[start : start + batch]
    if len(names) < batch:
        raise SystemExit(f"samples/{folder} has fewer than {start + batch} photos")
    images, _ = load_images([SAMPLES / folder / name for name in names])
    return images, [int(known[name]) for name in names]


def split_photos(
    split: str, batch: int, size: int = 32, start: int = 0
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Photos ``start … start+batch-1`` of the sorted ``images{size}`` list ``split``
    (``tuning`` or ``validation``) of samples/splits.json, their labels and file names."""
    folder = f"images{size}"
    splits = json.loads((SAMPLES / "splits.json").read_text(encoding="utf-8"))
    names = sorted(splits[folder][split])[start : start + batch]
    if len(names) < batch:
        raise SystemExit(
            f"the {split} list of samples/{folder} has fewer than {start + batch} photos"
        )
    known = json.loads((SAMPLES / "labels.json").read_text(encoding="utf-8"))[folder]
    images, _ = load_images([SAMPLES / folder / name for name in names])
    return images, [int(known[name]) for name in names], names


def flat_own_colour(images: torch.Tensor) -> torch.Tensor:
    """The baseline every quality table shows: each image replaced by its own mean colour."""
    return images.mean(dim=(2, 3), keepdim=True).expand_as(images)


def write_result(text: str, path: Path) -> None:
    """Print a result table and save it to ``path``."""
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


DIGIT_SPLITS = {"prior_training": (0, 1400), "validation": (1400, 1500)}


def split_digits(split: str, count: int, start: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Digits ``start … start+count-1`` of the ``split`` range of samples/digits32
    (samples/splits.json: prior_training 0000-1399, validation 1400-1499; 1500+ is reserved and
    never read) and their labels."""
    first, end = DIGIT_SPLITS[split]
    indices = range(first + start, first + start + count)
    if indices.stop > end:
        raise SystemExit(f"the {split} digits hold {end - first} images, not {start + count}")
    known = json.loads((SAMPLES / "digits32" / "labels.json").read_text(encoding="utf-8"))
    names = [f"{i:04d}.png" for i in indices]
    images, _ = load_images([SAMPLES / "digits32" / name for name in names])
    return images, [int(known[name]) for name in names]
