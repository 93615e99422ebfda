"""A seeded corpus of hostile copies of valid gradinvert files and state dicts, for fuzz tests.

Each mutation is a ``(name, bytes)`` pair: the file's metadata keys deleted, made invalid JSON
or given another JSON type; every size inside a JSON value set out of bounds; tensors made
NaN/inf, truncated, re-typed, removed or added; and random byte flips and truncations of the
whole file. ``stretched_views`` gives state dicts whose tensors claim more than their bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

# Values a metadata key is set to (None: deleted): invalid JSON and every other JSON type.
META_VALUES: dict[str, str | None] = {
    "deleted": None,
    "invalid-json": "{not json",
    "string": '"text"',
    "list": "[1, 2]",
    "number": "-1",
    "null": "null",
    "object": "{}",
    "empty": "",
}

Tensors = dict[str, torch.Tensor]
Mutation = tuple[str, bytes]


def read_raw(path: Path) -> tuple[Tensors, dict[str, str]]:
    """Tensors and metadata of a safetensors file, unvalidated."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118


def write_raw(tensors: Tensors, metadata: dict[str, str]) -> bytes:
    """A safetensors file's bytes (tensors made contiguous, as safetensors needs)."""
    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def metadata_mutations(tensors: Tensors, metadata: dict[str, str]) -> Iterator[Mutation]:
    """Every metadata key deleted, made invalid JSON, or given each other JSON type."""
    for key in sorted(metadata):
        for label, value in META_VALUES.items():
            changed = dict(metadata)
            if value is None:
                del changed[key]
            else:
                changed[key] = value
            yield f"meta-{key}-{label}", write_raw(tensors, changed)


def tensor_mutations(
    tensors: Tensors, metadata: dict[str, str], names: list[str]
) -> Iterator[Mutation]:
    """Each named tensor made NaN / inf, truncated, re-typed or removed; tensors added."""
    for name in names:
        value = tensors[name]
        variants: dict[str, torch.Tensor | None] = {
            "nan": torch.full_like(value, float("nan")) if value.is_floating_point() else None,
            "inf": torch.full_like(value, float("inf")) if value.is_floating_point() else None,
            "truncated": value.flatten()[:-1],
            "int32": value.to(torch.int32),
            "bool": value != 0,
            "float64": value.double(),
            "float16": value.half(),
            "scalar": value.flatten()[:1].reshape(()),
        }
        for label, changed in variants.items():
            if changed is not None:
                yield f"tensor-{name}-{label}", write_raw({**tensors, name: changed}, metadata)
        rest = {k: v for k, v in tensors.items() if k != name}
        if rest:
            yield f"tensor-{name}-removed", write_raw(rest, metadata)
    first = next(iter(tensors.values()))
    for extra in ("grad.extra.weight", "param.extra.weight", "bnstat.extra.mean", "images2"):
        yield f"tensor-added-{extra}", write_raw({**tensors, extra: first.clone()}, metadata)


def byte_mutations(data: bytes, rng: random.Random, flips: int, cuts: int) -> Iterator[Mutation]:
    """Random byte flips (header and data) and truncations of the file's bytes."""
    header = 8 + int.from_bytes(data[:8], "little")
    for index in range(flips):
        changed = bytearray(data)
        where = header if index % 2 else len(data)  # alternately in the header and anywhere
        for _ in range(rng.randint(1, 4)):
            changed[rng.randrange(where)] ^= 1 << rng.randrange(8)
        yield f"flip-{index}", bytes(changed)
    for index in range(cuts):
        yield f"cut-{index}", data[: rng.randrange(len(data))]


def corpus(
    path: Path, names: list[str], seed: int, flips: int = 12, cuts: int = 6
) -> list[Mutation]:
    """All mutations of the file at ``path``: metadata, the ``names`` tensors, bytes."""
    tensors, metadata = read_raw(path)
    rng = random.Random(seed)
    return [
        *metadata_mutations(tensors, metadata),
        *tensor_mutations(tensors, metadata, names),
        *byte_mutations(path.read_bytes(), rng, flips, cuts),
    ]


# Values every integer inside a JSON metadata value is set to: bounds, overflow, wrong types.
SIZE_VALUES: dict[str, object] = {
    "zero": 0,
    "negative": -1,
    "int32-overflow": 2**31,
    "huge": 10**12,
    "int64-overflow": 2**63,
    "float": 1.5,
    "string": "8",
}


def _int_paths(value: object, path: tuple = ()) -> Iterator[tuple]:
    """The path of every integer (not bool) inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _int_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _int_paths(item, (*path, index))
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path


def _replaced(value: object, path: tuple, new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    assert isinstance(value, list)
    return [_replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]


def size_mutations(
    tensors: Tensors, metadata: dict[str, str], keys: list[str], per_key: int | None = None
) -> Iterator[Mutation]:
    """Every integer inside the JSON metadata ``keys`` (the sizes a constructor receives) set
    to each of ``SIZE_VALUES``; ``per_key`` keeps the first that many integers of a key."""
    import json

    for key in keys:
        value = json.loads(metadata[key])
        for path in list(_int_paths(value))[:per_key]:
            where = ".".join(map(str, path))
            for label, new in SIZE_VALUES.items():
                changed = {**metadata, key: json.dumps(_replaced(value, path, new))}
                yield f"size-{key}-{where}-{label}", write_raw(tensors, changed)


def stretched_views(state: Tensors) -> Iterator[tuple[str, Tensors]]:
    """``state`` with one tensor presented over fewer stored bytes than it declares (its first
    value repeated, stride 0), as overlapping windows of its own values, or overlapping
    another tensor's bytes."""
    names = [n for n, v in state.items() if v.numel() > 1 and v.is_floating_point()]
    for name in names:
        value = state[name]
        yield f"stride0-{name}", {**state, name: value.flatten()[:1].expand(value.shape)}
        if value.ndim >= 2:  # sliding windows: as many elements as stored, but overlapping
            window = torch.as_strided(value.flatten().clone(), value.shape, [1] * value.ndim)
            yield f"window-{name}", {**state, name: window}
    first, second = names[0], names[1]
    joined = torch.cat([state[first].flatten(), state[second].flatten()])
    n_first = state[first].numel()
    shifted = joined[n_first - 1 : n_first - 1 + state[second].numel()]
    yield (
        "overlap",
        {
            **state,
            first: joined[:n_first].view(state[first].shape),
            second: shifted.view(state[second].shape),
        },
    )
