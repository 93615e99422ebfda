"""Checks of the tensors an update or batch file holds: dtypes, shapes and finite values.

Each check returns a list of problems (empty when the tensors are fine), so a reader can report
them all in one line; ``raise_problems`` turns a non-empty list into an ``InvalidInputError``.
On meta tensors (a file's header) the checks see names, dtypes and shapes only, so a reader runs
them on the header first and on the values after.
"""

from __future__ import annotations

import torch

from gradinvert.io.update_schema import MAX_SIDE
from gradinvert.runtime.errors import InvalidInputError

Tensors = dict[str, torch.Tensor]


def _non_finite(tensor: torch.Tensor) -> int:
    if tensor.is_meta or not tensor.is_floating_point():
        return 0
    return int((~torch.isfinite(tensor)).sum())


def _negative(tensor: torch.Tensor) -> bool:
    return not tensor.is_meta and bool((tensor < 0).any())


def _floating(group: str, tensors: Tensors) -> list[str]:
    """Problems of a group that must hold finite floating-point tensors."""
    problems = []
    for name, value in tensors.items():
        if not value.is_floating_point():
            problems.append(f"{group}{name} has dtype {value.dtype}, expected floating point")
        elif bad := _non_finite(value):
            problems.append(f"{group}{name} holds {bad} non-finite (NaN or inf) values")
    return problems


def update_problems(
    prefix: str,
    update: Tensors,
    params: Tensors,
    buffers: Tensors,
    bn_parts: dict[str, Tensors],
) -> list[str]:
    """Everything wrong with an update file's tensors (``prefix``: ``grad.`` or ``delta.``)."""
    problems = _floating(prefix, update) + _floating("param.", params)
    for name, value in update.items():
        param = params.get(name)
        if param is None:
            problems.append(f"{prefix}{name} has no model parameter param.{name}")
        elif param.shape != value.shape:
            problems.append(
                f"{prefix}{name} has shape {tuple(value.shape)}, the parameter {tuple(param.shape)}"
            )
    for name, value in buffers.items():
        if value.is_floating_point():
            if bad := _non_finite(value):
                problems.append(f"buffer.{name} holds {bad} non-finite values")
            elif name.endswith("running_var") and _negative(value):
                problems.append(f"buffer.{name} holds negative variances")
    for module, parts in bn_parts.items():
        if set(parts) != {"mean", "var"}:
            problems.append(f"BN statistics of {module!r} need exactly mean and var")
            continue
        mean, var = parts["mean"], parts["var"]
        found = _floating(f"bnstat.{module}.", parts)
        problems += found
        if found:
            continue
        if mean.ndim != 1 or mean.shape != var.shape:
            problems.append(f"bnstat.{module}: mean and var must be vectors of one length")
        elif _negative(var):
            problems.append(f"bnstat.{module}.var holds negative variances")
    return problems


def batch_problems(images: torch.Tensor, labels: torch.Tensor) -> list[str]:
    """Everything wrong with a batch file's ``images`` and ``labels`` tensors."""
    problems = []
    if not images.is_floating_point():
        problems.append(f"'images' has dtype {images.dtype}, expected floating point")
    elif bad := _non_finite(images):
        problems.append(f"'images' holds {bad} non-finite values")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        problems.append(f"'images' must be N×C×H×W with C 1 or 3, got {tuple(images.shape)}")
    elif images.shape[0] < 1 or not all(1 <= side <= MAX_SIDE for side in images.shape[2:]):
        problems.append(f"'images' of shape {tuple(images.shape)}: need N ≥ 1, sides 1…{MAX_SIDE}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        problems.append(f"'labels' has dtype {labels.dtype}, expected integers")
    elif labels.numel() and _negative(labels):
        problems.append("'labels' holds negative values")
    if images.ndim >= 1 and labels.shape != (images.shape[0],):
        problems.append(f"{labels.numel()} labels for {images.shape[0]} images")
    return problems


def raise_problems(source: str, problems: list[str], limit: int = 5) -> None:
    """Raise one ``InvalidInputError`` listing ``problems`` (the first ``limit``), if any."""
    if not problems:
        return
    extra = len(problems) - limit
    text = "; ".join(problems[:limit]) + (f"; and {extra} more" if extra > 0 else "")
    raise InvalidInputError(f"{source}: {text}")


def as_float32(tensors: Tensors) -> Tensors:
    """Floating tensors as float32 (the dtype the models compute in); others unchanged."""
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
