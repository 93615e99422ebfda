"""What every long run shares: Ctrl-C and SIGTERM as requests to stop, CPU copies of its state
and a progress bar (its checkpoints: :mod:`gradinvert.runtime.checkpoint`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

_received: list[int] = []  # the stop signals received since the last sigterm_interrupts()


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived outside a run loop (raised like ``KeyboardInterrupt`` for Ctrl-C)."""


def terminated() -> bool:
    """Whether a SIGTERM asked this process to stop (exit 143 rather than Ctrl-C's 130)."""
    return signal.SIGTERM in _received


def _raise_interrupt(signum: int) -> NoReturn:
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated` wherever the program is, as Ctrl-C raises
    ``KeyboardInterrupt``, so that ``finally`` blocks remove temporary files (main thread)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _received.append(signum)
        _raise_interrupt(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Interruptible:
    """A run loop that stops after its current step on the first Ctrl-C or SIGTERM (main thread).

    The loop checks ``self._stop``; a second signal raises ``KeyboardInterrupt`` (Ctrl-C) or
    :class:`Terminated` (SIGTERM) at once.
    """

    _stop: bool = False

    def request_stop(self) -> None:
        """Stop after the current step (as Ctrl-C does)."""
        self._stop = True

    @contextlib.contextmanager
    def _signals_stop(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            _received.append(signum)
            if self._stop:
                _raise_interrupt(signum)
            self._stop = True

        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, handler) for signum in stops}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (dicts, lists, tuples) copied to the CPU."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def stderr_progress(title: str, fields: str, tail: str | None = None) -> Any:
    """A rich progress bar on stderr: ``title``, bar, done/total, ``fields``, elapsed, remaining
    (and ``tail`` after them, labelled "ETA", when given).

    ``fields`` and ``tail`` are column templates such as ``"loss {task.fields[loss]}"`` (plain
    text, no markup).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from gradinvert.report.console import stderr_console

    columns = [
        TextColumn(title, style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(fields, markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    if tail is not None:
        columns[-1:] = [TextColumn("ETA", markup=False), TimeRemainingColumn()]
        columns.append(TextColumn(tail, markup=False))
    return Progress(*columns, console=stderr_console())
