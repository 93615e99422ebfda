"""What every long run shares: Ctrl-C as a request to stop, and CPU copies of its state."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import torch


class Interruptible:
    """A run loop that stops after its current step on the first Ctrl-C (SIGINT, main thread).

    The loop checks ``self._stop``; a second Ctrl-C raises ``KeyboardInterrupt`` at once.
    """

    _stop: bool = False

    def request_stop(self) -> None:
        """Stop after the current step (as Ctrl-C does)."""
        self._stop = True

    @contextlib.contextmanager
    def _sigint_stops(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (dicts, lists, tuples) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def stderr_progress(title: str, fields: str) -> Any:
    """A rich progress bar on stderr: ``title``, bar, done/total, ``fields``, elapsed, remaining.

    ``fields`` is a rich column template such as ``"loss {task.fields[loss]}"``.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(fields),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
