"""Batches in the forms people have them: gradinvert batch files, plain ``images``/``labels``
safetensors files without metadata, and folders of images with a labels file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from gradinvert.io.files import BatchFile, file_type, is_gradinvert_file, load_batch, parse_labels
from gradinvert.io.images import expand_image_paths, load_images
from gradinvert.io.labelmaps import labels_for_images
from gradinvert.io.tensorcheck import batch_problems, raise_problems
from gradinvert.io.tensorfile import read_header, read_metadata, read_tensors
from gradinvert.runtime.errors import InvalidInputError, UsageError

Loaded = tuple[BatchFile, str | None]  # the batch and a one-line note on how it was read


def is_batch_path(path: str | os.PathLike[str]) -> bool:
    """A file to read as a batch rather than as an image: a ``.safetensors`` file or any file
    that says it is a gradinvert batch."""
    path = Path(path)
    if path.is_dir():
        return False
    return path.suffix.lower() == ".safetensors" or is_gradinvert_file(path, "batch")


def _pixel_problems(images: torch.Tensor) -> list[str]:
    """Plain pixels must lie in [0, 1]: un-normalized, as gradinvert batches store them."""
    if not images.is_floating_point() or images.numel() == 0:
        return []
    if not torch.isfinite(images).all():
        return []  # batch_problems reports non-finite values
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        return [
            f"'images' values span [{low:.3g}, {high:.3g}]: expected un-normalized pixels in [0, 1]"
        ]
    return []


def load_plain_batch(path: str | os.PathLike[str]) -> Loaded:
    """A safetensors file holding just ``images`` (N×C×H×W float in [0, 1]) and ``labels``
    (N integers), without gradinvert metadata."""
    header = read_header(path)
    if not {"images", "labels"} <= set(header.shapes):
        found = ", ".join(sorted(header.shapes)[:5]) or "none"
        raise InvalidInputError(
            f"{path}: not a gradinvert file, and not plain tensors either: a batch needs "
            f"'images' (N×C×H×W in [0, 1]) and 'labels' (N integers); found {found}"
        )
    raise_problems(str(path), batch_problems(*header.meta_tensors(["images", "labels"]).values()))
    tensors = read_tensors(header, ["images", "labels"])
    images, labels = tensors["images"], tensors["labels"]
    raise_problems(str(path), batch_problems(images, labels) + _pixel_problems(images))
    extra = sorted(set(header.shapes) - {"images", "labels"})
    note = (
        f"{path} has no gradinvert metadata: read as plain tensors, "
        f"{images.shape[0]} images {tuple(images.shape[1:])} with labels"
        + (f" (ignored: {', '.join(extra)})" if extra else "")
    )
    batch = BatchFile(images.float(), labels.long(), {"source": "plain tensors"})
    return batch, note


def load_any_batch(path: str | os.PathLike[str]) -> Loaded:
    """A gradinvert batch file, or a plain ``images``/``labels`` file (with a note)."""
    if file_type(read_metadata(path)) is None:
        return load_plain_batch(path)
    return load_batch(path), None


def load_image_folder(
    folder: str | os.PathLike[str],
    labels_arg: str | None,
    shape: tuple[int, int, int] | None = None,
) -> Loaded:
    """Images of a folder (sorted) with their labels from ``labels_arg`` (inline list, labels
    file or map) or the folder's ``labels.json`` map. With ``shape`` (C, H, W) the images are
    read with C channels and, when their size differs and H = W, resized as ``capture --size``."""
    paths = expand_image_paths([folder])
    labels, _ = labels_for_images(paths, [folder], labels_arg)
    if labels is None:
        raise UsageError(
            f"{folder}: no labels for its images: give a labels file (a list or a map of file "
            "names to labels) or put a labels.json map in the folder"
        )
    if len(labels) != len(paths):
        raise UsageError(f"{len(labels)} labels for the {len(paths)} images of {folder}")
    channels = shape[0] if shape is not None else 3
    try:
        images: torch.Tensor | None = load_images(paths, None, channels)[0]
    except UsageError:  # images of different sizes
        images = None
    if shape is not None and (images is None or tuple(images.shape[1:]) != shape):
        if shape[1] != shape[2]:
            raise InvalidInputError(f"{folder}: its images are not {shape[1]}×{shape[2]}")
        images = load_images(paths, shape[1], channels)[0]
    elif images is None:
        raise UsageError(f"{folder}: its images have different sizes")
    note = f"{folder}: {len(paths)} images read in sorted file order"
    files = [str(p) for p in paths]
    batch = BatchFile(images, torch.tensor(labels, dtype=torch.long), {"files": files})
    return batch, note


def select_range(count: int, start: int, batch_size: int | None) -> slice:
    """Images start … start + batch_size − 1 (default: to the end), checked to exist."""
    if start < 0:
        raise UsageError(f"--start {start}: must be at least 0")
    if start >= count:
        raise UsageError(f"--start {start}: only {count} images given (0 … {count - 1})")
    if batch_size is None:
        return slice(start, count)
    if batch_size < 1 or start + batch_size > count:
        raise UsageError(
            f"--batch-size {batch_size}"
            + (f" from --start {start}" if start else "")
            + f": only {count} images given"
        )
    return slice(start, start + batch_size)


def load_client_batch(
    sources: list[Path],
    size: int | None,
    labels_arg: str | None,
    start: int = 0,
    batch_size: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[torch.Tensor, list[int] | None, list[str]]:
    """The images ``start`` … ``start + batch_size − 1`` of image files, folders (sorted) or one
    batch file, resized to ``size``, with their labels (``labels_arg``: inline, a labels file or
    a map of file names; else a batch file's own or a folder's ``labels.json``) and names."""
    if len(sources) == 1 and is_batch_path(sources[0]):
        batch, note = load_any_batch(sources[0])
        if note:
            log(f"note: {note}")
        chosen = select_range(batch.images.shape[0], start, batch_size)
        images = batch.images[chosen]
        if size is not None and images.shape[-1] != size:
            images = torch.nn.functional.interpolate(
                images, size=(size, size), mode="bicubic", align_corners=False
            ).clamp(0, 1)
        labels = parse_labels(labels_arg) if labels_arg else batch.labels[chosen].tolist()
        indices = range(batch.images.shape[0])[chosen]
        return images, labels, [f"{sources[0]}[{i}]" for i in indices]
    paths = expand_image_paths(sources)
    paths = paths[select_range(len(paths), start, batch_size)]
    labels, note = labels_for_images(paths, sources, labels_arg)
    if note:
        log(f"{note} (no --labels given)")
    images, paths = load_images(paths, size)
    return images, labels, [str(p) for p in paths]
