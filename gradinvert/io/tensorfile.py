"""Tensor files from parties an audit distrusts, read so that a file's declared sizes are checked
against the bytes it holds before a single value is read (DESIGN.md §10).

safetensors: the 8-byte header length is checked before the header is parsed, then the number of
tensors; shapes and dtypes come from the header (``get_slice``) and values only on request.
safetensors itself checks that every tensor's shape × dtype is exactly its byte range in the file.

``.pt`` files (``torch.save``'s zip format): the zip directory is checked first (stored entries
only, a bounded pickle, a bounded number of storages), then ``torch.load(weights_only=True,
mmap=True)`` maps the storages without reading them (a legacy file of torch < 1.6, such as
torchvision's older weights, cannot be mapped: its storages are read, each at most the bytes the
file holds), and every tensor is checked against its storage: a view declaring more elements
than its storage's bytes hold, a view whose elements overlap each other (a stride-0 "stretched"
view), or two tensors over overlapping byte ranges are refused (``InvalidInputError``, exit
65). An exact alias — same bytes, shape, strides and dtype, as ``torch.save`` writes tied
weights — is accepted: it is compared by name and shape with the model like any other entry,
so it cannot add memory beyond what the model holds.

Caps (generous for real models: a ResNet-152 update file holds about 1 700 tensors and a
header of about 0.2 MB; an ImageNet classifier's ``.pt`` state dict a pickle of under 1 MB):
at most ``MAX_TENSORS`` tensors (and ``.pt`` storages) per file, a safetensors header of at most
``MAX_HEADER_BYTES``, a ``.pt`` pickle of at most ``MAX_PICKLE_BYTES``, ``MAX_DIMS`` dimensions
per tensor.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from gradinvert.runtime.errors import InvalidInputError, MissingInputError

MAX_TENSORS = 20_000  # per file (safetensors entries, .pt storages and tensors)
MAX_HEADER_BYTES = 16 * 2**20  # a safetensors JSON header
MAX_PICKLE_BYTES = 32 * 2**20  # a .pt file's data.pkl
MAX_DIMS = 8  # dimensions of one tensor

# safetensors dtype names → torch dtypes (floating tensors come back as float32 from readers
# that convert them; meta tensors use the file's own dtype).
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "C64": torch.complex64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip

Shape = tuple[int, ...]


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def existing_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` when it is a file; ``MissingInputError`` / ``InvalidInputError`` otherwise."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: no such file")
    if path.is_dir():
        raise InvalidInputError(f"{path}: is a folder, expected a {what}")
    return path


# ---------------------------------------------------------------- safetensors


@dataclass(frozen=True)
class Header:
    """A safetensors file's metadata and its tensors' shapes and dtypes (nothing read yet)."""

    path: Path
    metadata: dict[str, str]
    shapes: dict[str, tuple[Shape, str]]  # name → (shape, safetensors dtype name)

    def meta_tensors(self, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Tensors of the declared shapes and dtypes on the meta device (no storage)."""
        chosen = self.shapes if names is None else {n: self.shapes[n] for n in names}
        return {
            name: torch.empty(shape, dtype=DTYPES[dtype], device="meta")
            for name, (shape, dtype) in chosen.items()
        }

    def bytes(self) -> int:
        """Bytes of all the tensor data (as stored)."""
        return sum(t.numel() * t.element_size() for t in self.meta_tensors().values())


def _unreadable(path: Path, exc: Exception) -> InvalidInputError:
    return InvalidInputError(
        f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})"
    )


def _check_header_length(path: Path) -> None:
    """The 8-byte length that starts a safetensors file, checked before its header is parsed."""
    with path.open("rb") as handle:
        start = handle.read(8)
    if len(start) < 8:
        raise InvalidInputError(f"{path}: not a readable safetensors file (too short)")
    length = int.from_bytes(start, "little")
    if length > MAX_HEADER_BYTES:
        raise InvalidInputError(
            f"{path}: not a readable safetensors file (its header declares {_size(length)}, "
            f"more than the {_size(MAX_HEADER_BYTES)} gradinvert reads)"
        )


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """A safetensors file's metadata alone (its header length checked first)."""
    path = existing_file(path, "safetensors file")
    _check_header_length(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise _unreadable(path, exc) from None


def read_header(path: str | os.PathLike[str]) -> Header:
    """The header of a safetensors file, within the caps, without reading any tensor data."""
    path = existing_file(path, "safetensors file")
    _check_header_length(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            names = list(f.keys())  # noqa: SIM118 (safe_open API)
            if len(names) > MAX_TENSORS:
                raise InvalidInputError(
                    f"{path}: holds {len(names)} tensors, more than the {MAX_TENSORS} "
                    "gradinvert reads from one file"
                )  # before any per-tensor work: 10⁵ empty tensors cost nothing here
            metadata = dict(f.metadata() or {})
            shapes = {}
            for name in names:
                part = f.get_slice(name)
                shapes[name] = (tuple(part.get_shape()), part.get_dtype())
    except InvalidInputError:
        raise
    except Exception as exc:  # safetensors raises several types for corrupt input
        raise _unreadable(path, exc) from None
    deep = [n for n, (shape, _) in shapes.items() if len(shape) > MAX_DIMS]
    if deep:
        raise InvalidInputError(f"{path}: tensor {deep[0]!r} has more than {MAX_DIMS} dimensions")
    odd = [(n, dtype) for n, (_, dtype) in shapes.items() if dtype not in DTYPES]
    if odd:
        raise InvalidInputError(f"{path}: tensor {odd[0][0]!r} has dtype {odd[0][1]}, unknown here")
    return Header(path, metadata, shapes)


def read_tensors(header: Header, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The values of ``names`` (default: all) of a file whose header was read."""
    wanted = list(header.shapes) if names is None else names
    try:
        with safe_open(str(header.path), framework="pt", device="cpu") as f:
            return {name: f.get_tensor(name) for name in wanted}
    except Exception as exc:
        raise _unreadable(header.path, exc) from None


# ---------------------------------------------------------------- .pt files


def _check_zip(path: Path) -> None:
    """The zip directory of a ``torch.save`` file: stored entries, bounded pickle and count."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: not a readable zip file ({type(exc).__name__})") from None
    compressed = [e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise InvalidInputError(
            f"{path}: holds compressed entries ({compressed[0]}); torch.save stores them plainly"
        )
    pickles = [e for e in entries if e.filename.endswith("data.pkl")]
    if len(pickles) != 1:
        raise InvalidInputError(f"{path}: not a torch.save file ({len(pickles)} data.pkl entries)")
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise InvalidInputError(
            f"{path}: its pickle holds {_size(pickles[0].file_size)}, more than the "
            f"{_size(MAX_PICKLE_BYTES)} gradinvert reads"
        )
    storages = sum("/data/" in e.filename for e in entries)
    if storages > MAX_TENSORS:
        raise InvalidInputError(
            f"{path}: holds {storages} storages, more than the {MAX_TENSORS} gradinvert reads"
        )


def _tensors_in(value: Any, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a loaded object (dicts, lists, tuples), with a path naming it."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        name, item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield name or "<tensor>", item
        elif isinstance(item, dict):
            stack.extend((f"{name}.{k}" if name else str(k), v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{name}[{i}]", v) for i, v in enumerate(item))


def _self_overlap(shape: Shape, stride: Shape) -> bool:
    """True when two elements of a strided view share memory (e.g. a stride-0 dimension)."""
    extent = 1  # elements spanned by the dimensions of smaller stride
    for size, step in sorted((p for p in zip(shape, stride, strict=True) if p[0] > 1),
                             key=lambda p: p[1]):  # fmt: skip
        if step < extent:
            return True
        extent += (size - 1) * step
    return False


def _span(tensor: torch.Tensor) -> int:
    """Bytes from a non-empty tensor's first element to the end of its last."""
    last = sum((size - 1) * step for size, step in zip(tensor.shape, tensor.stride(), strict=True))
    return (last + 1) * tensor.element_size()


def storage_problems(tensors: list[tuple[str, torch.Tensor]]) -> list[str]:
    """Every tensor that declares more than its stored bytes or overlaps another's bytes.

    Looks only at shapes, strides, offsets and addresses: no value is read.
    """
    problems: list[str] = []
    seen: set[tuple[Any, ...]] = set()  # exact aliases (tied weights) are checked once
    ranges: list[tuple[int, int, str]] = []
    for name, tensor in tensors:
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
            problems.append(f"{name}: a {tensor.layout} tensor (only dense tensors are read)")
            continue
        if len(tensor.shape) > MAX_DIMS:
            problems.append(f"{name}: more than {MAX_DIMS} dimensions")
            continue
        declared = tensor.numel() * tensor.element_size()
        stored = tensor.untyped_storage().nbytes()
        if declared > stored:
            problems.append(
                f"{name}: declares {tensor.numel()} elements ({_size(declared)}) over "
                f"{_size(stored)} stored in the file (a stretched view)"
            )
        elif _self_overlap(tuple(tensor.shape), tuple(tensor.stride())):
            problems.append(f"{name}: a view whose elements overlap (a stretched view)")
        elif tensor.numel():
            start = tensor.data_ptr()
            key = (start, tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
            if key not in seen:
                seen.add(key)
                ranges.append((start, start + _span(tensor), name))
    end, owner = -1, ""
    for start, stop, name in sorted(ranges):
        if start < end:
            problems.append(f"{name}: overlaps the bytes of {owner}")
        if stop > end:
            end, owner = stop, name
    return problems


def load_pt(path: str | os.PathLike[str], what: str = "file") -> Any:
    """A ``.pt`` file's object, its tensors mapped from the file and checked against their
    storage before any value is read (see the module docstring)."""
    path = existing_file(path, what)
    zipped = zipfile.is_zipfile(path)
    if zipped:
        _check_zip(path)
    try:  # a legacy (torch < 1.6) file cannot be mapped: its storages are read from the file
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as exc:  # a pickle weights_only refuses, a corrupt record, ...
        raise InvalidInputError(
            f"{path}: cannot read it as a torch.save file ({type(exc).__name__})"
        ) from None
    tensors = list(_tensors_in(loaded))
    if len(tensors) > MAX_TENSORS:
        raise InvalidInputError(
            f"{path}: holds {len(tensors)} tensors, more than the {MAX_TENSORS} gradinvert reads"
        )
    problems = storage_problems(tensors)
    if problems:
        extra = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise InvalidInputError(f"{path}: " + "; ".join(problems[:3]) + extra)
    return loaded
