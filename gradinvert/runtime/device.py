"""Choose the torch device from ``auto|cpu|cuda|cuda:N``."""

from __future__ import annotations

import torch

from gradinvert.runtime.errors import UnavailableError, UsageError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error (exit 69)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UnavailableError(f"--device {name}: CUDA is not available on this machine")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UnavailableError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return device
    raise UsageError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")


def rng_devices(device: torch.device | str) -> list[int]:
    """The CUDA devices whose random state ``torch.random.fork_rng`` must save and restore
    around seeded work on ``device`` (none for the CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]
