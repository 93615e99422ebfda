"""Does a set of named tensors fit a model? Every mismatch at once, in one readable line."""

from __future__ import annotations

from collections.abc import Mapping

import torch

SHOWN = 5  # names shown per kind of mismatch; the rest are counted


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def tensor_problems(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    check_dtype: bool = True,
    check_finite: bool = True,
) -> list[str]:
    """Every way ``given`` differs from ``expected``: missing and extra names, wrong shapes,
    wrong dtypes and non-finite values, one entry per kind (empty when it fits)."""
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    common = sorted(set(expected) & set(given))
    shape = [n for n in common if tuple(given[n].shape) != tuple(expected[n].shape)]
    dtype = [n for n in common if check_dtype and given[n].dtype != expected[n].dtype]
    # values are read only for tensors whose name and shape fit: at most the model's size
    finite = [
        n
        for n in common
        if check_finite
        and n not in shape
        and given[n].is_floating_point()
        and not torch.isfinite(given[n]).all()
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_names(missing)})")
    if extra:
        problems.append(f"{len(extra)} not in the model ({_names(extra)})")
    if shape:
        detail = [f"{n} {tuple(given[n].shape)} vs {tuple(expected[n].shape)}" for n in shape]
        problems.append(f"{len(shape)} of wrong shape ({_names(detail)})")
    if dtype:
        detail = [
            f"{n} {str(given[n].dtype).removeprefix('torch.')} vs "
            f"{str(expected[n].dtype).removeprefix('torch.')}"
            for n in dtype
        ]
        problems.append(f"{len(dtype)} of wrong dtype ({_names(detail)})")
    if finite:
        problems.append(f"{len(finite)} with NaN or infinite values ({_names(finite)})")
    return problems


def describe_problems(
    source: str, problems: list[str], subject: str = "tensors", what: str = "the model"
) -> str:
    """One line: ``source: tensors do not fit the model: 2 missing (...); ...``."""
    return f"{source}: {subject} do not fit {what}: " + "; ".join(problems)
