"""Where an audit's jobs run: a local pool of worker processes, or a Ray cluster. Both take jobs
with their input files' bytes and hand each outcome back to the driver, which alone writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradinvert.audit.job import JobOutcome

OnStart = Callable[[dict[str, Any]], None]
OnDone = Callable[[dict[str, Any], JobOutcome], None]


@dataclass
class StopFlag:
    """Set by Ctrl-C/SIGTERM: stop scheduling; ``cancel``: also stop the running jobs."""

    stop: bool = False
    cancel: bool = False
    signals: list[int] = field(default_factory=list)


def read_blobs(job: dict[str, Any], blobs: dict[str, Path]) -> dict[str, bytes]:
    """The bytes of every input file ``job`` reads, by digest."""
    return {digest: blobs[digest].read_bytes() for digest in input_digests(job)}


def input_digests(job: dict[str, Any]) -> list[str]:
    """The digests of ``job``'s input files (each once, in a fixed order)."""
    found: list[str] = []
    for role in sorted(job["inputs"]):
        ref = job["inputs"][role]
        refs = ref if role == "images" else [ref] if ref is not None else []
        for _, digest in refs:
            if digest not in found:
                found.append(digest)
    return found
