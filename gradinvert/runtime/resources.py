"""Memory bounds: refuse a run whose estimated memory exceeds what the machine can give.

A run states its estimate (:class:`Estimate`, from :mod:`gradinvert.runtime.memory`);
``check_memory``
compares it with ``--max-memory`` or, by default, a share of the device's memory, and raises
``UnavailableError`` (exit 69) with one line naming both figures before anything is allocated.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from gradinvert.runtime.errors import UnavailableError, UsageError

# The default bound: this share of the machine's RAM (of the GPU's memory on CUDA), leaving
# room for the Python process itself, the OS and other jobs.
DEFAULT_SHARE = 0.8
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


@dataclass(frozen=True)
class Estimate:
    """The memory a run is expected to need, and what it was estimated from."""

    what: str  # the command, e.g. "invert"
    bytes: int
    basis: str  # e.g. "batch 4 of 3×32×32, 4 seeds, 11.2M parameters"
    advice: str = "use a smaller batch or fewer seeds, or "  # what else lowers it


def parse_memory(text: str) -> int | None:
    """Bytes of a size such as ``8GB``, ``1.5T``, ``512MiB`` or ``4096``; None for ``none``."""
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned in ("none", "off", "unlimited"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]i?)?b?", cleaned)
    if match is None:
        raise UsageError(f"--max-memory {text!r}: give a size such as 8GB, 512MiB or none")
    number, unit = float(match.group(1)), match.group(2) or ""
    factor = _BINARY[unit] if unit.endswith("i") else _UNITS[unit]
    size = int(number * factor)
    if size <= 0:
        raise UsageError(f"--max-memory {text!r}: must be positive")
    return size


def human_bytes(count: float) -> str:
    """``1.2 TB`` style (powers of 1000), as ``--max-memory`` reads it back."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} PB"


def machine_memory() -> int:
    """Physical RAM in bytes (``os.sysconf``)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_bound(device: torch.device | str = "cpu") -> tuple[int, str]:
    """The bound without ``--max-memory``, and how it was derived."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        where = f"{device.type}:{index} memory"
    else:
        total, where = machine_memory(), "RAM"
    share = int(total * DEFAULT_SHARE)
    return share, f"{DEFAULT_SHARE:.0%} of this machine's {human_bytes(total)} {where}"


def check_memory(
    estimate: Estimate, max_memory: str | None, device: torch.device | str = "cpu"
) -> None:
    """Raise ``UnavailableError`` when ``estimate`` exceeds the bound (one line, exit 69)."""
    if max_memory is not None:
        bound = parse_memory(max_memory)
        if bound is None:
            return
        source = "--max-memory"
    else:
        bound, source = default_bound(device)
    if estimate.bytes <= bound:
        return
    suggestion = human_bytes(estimate.bytes * 1.25).replace(".0 ", "").replace(" ", "")
    raise UnavailableError(
        f"{estimate.what} would need about {human_bytes(estimate.bytes)} of memory "
        f"({estimate.basis}), more than the bound of {human_bytes(bound)} ({source}); "
        f"{estimate.advice}raise the bound with --max-memory {suggestion}"
    )
