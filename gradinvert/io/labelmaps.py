"""Labels of image files: inline lists, labels JSON files, and maps of file names to labels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gradinvert.io.file_schemas import read_json_file, validate_label_map
from gradinvert.io.files import parse_labels
from gradinvert.runtime.errors import InvalidInputError

LABELS_MAP_NAME = "labels.json"


def read_labels_map(path: Path) -> dict[str, int] | None:
    """A labels file mapping file names to labels ({"0000.png": 0, ...}), or None when the file
    is a labels list (``{"labels": [...]}`` or ``[...]``) instead."""
    data = read_json_file(path)
    if not isinstance(data, dict) or "labels" in data:
        return None
    return validate_label_map(str(path), data)


def _is_labels_map(value: str) -> bool:
    path = Path(value)
    return path.suffix.lower() == ".json" and path.is_file() and read_labels_map(path) is not None


def labels_from_maps(
    paths: list[Path], maps: list[tuple[Path, dict[str, int]]]
) -> list[int] | None:
    """Each image's label from the first map of its folder (by file name, or the path relative
    to the map's folder); None when no map knows any of them."""
    labels: list[int | None] = []
    for path in paths:
        found = None
        for map_path, mapping in maps:
            folder = map_path.parent.resolve()
            resolved = path.resolve()
            keys = [path.name]
            if resolved.is_relative_to(folder):
                keys.insert(0, resolved.relative_to(folder).as_posix())
            found = next((mapping[k] for k in keys if k in mapping), None)
            if found is not None:
                break
        labels.append(found)
    if all(label is None for label in labels):
        return None
    missing = [str(p) for p, label in zip(paths, labels, strict=True) if label is None]
    if missing:
        names = ", ".join(str(m) for m, _ in maps)
        raise InvalidInputError(f"{names}: no label for {missing[0]}")
    return [int(label) for label in labels]  # type: ignore[arg-type]


def labels_for_images(
    paths: list[Path], sources: Sequence[str | os.PathLike[str]], labels_arg: str | None
) -> tuple[list[int] | None, str | None]:
    """The labels of ``paths`` (image files from ``sources``) and a note on where they came
    from: ``labels_arg`` (inline list, labels file or map), else each source folder's
    ``labels.json`` map; None when there are none."""
    if labels_arg and _is_labels_map(labels_arg):
        map_path = Path(labels_arg)
        labels = labels_from_maps(paths, [(map_path, read_labels_map(map_path) or {})])
        if labels is None:
            raise InvalidInputError(f"{map_path}: no label for {paths[0]}")
        return labels, None
    if labels_arg:
        return parse_labels(labels_arg), None
    maps = []
    for source in sources:
        candidate = Path(source) / LABELS_MAP_NAME
        if Path(source).is_dir() and candidate.is_file():
            mapping = read_labels_map(candidate)
            if mapping is not None:
                maps.append((candidate, mapping))
    labels = labels_from_maps(paths, maps) if maps else None
    if labels is None:
        return None, None
    return labels, f"labels from {', '.join(str(m) for m, _ in maps)}"
