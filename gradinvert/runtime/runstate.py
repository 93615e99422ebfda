"""What every long run shares: Ctrl-C and SIGTERM as requests to stop, and CPU copies of its
state."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import torch

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
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def stderr_progress(title: str, fields: str) -> Any:
    """A rich progress bar on stderr: ``title``, bar, done/total, ``fields``, elapsed, remaining.

    ``fields`` is a column template such as ``"loss {task.fields[loss]}"`` (plain text, no
    markup).
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

    return Progress(
        TextColumn(title, style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(fields, markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
    )


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically and owner-only with ``torch.save``."""
    from gradinvert.io.atomic import atomic_path

    with atomic_path(path, private=True) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint file's dict, read as any untrusted ``.pt`` file (:func:`load_pt`)."""
    from gradinvert.io.tensorfile import load_pt
    from gradinvert.runtime.errors import InvalidInputError

    state = load_pt(path, "checkpoint")
    if not isinstance(state, dict):
        raise InvalidInputError(f"{path}: not a gradinvert checkpoint")
    return state


def read_checkpoint_file(path: Path, expected_format: str, what: str) -> dict[str, Any]:
    """A checkpoint dict of ``expected_format`` (read by :func:`load_checkpoint`).

    ``what`` names the command in errors ("invert", "train-inverter", ...).
    """
    from gradinvert.runtime.errors import InvalidInputError, MissingInputError

    if not Path(path).exists():
        raise MissingInputError(f"{path}: no checkpoint to resume from")
    state = load_checkpoint(path)
    if state.get("format") != expected_format:
        raise InvalidInputError(f"{path}: not a gradinvert {what} checkpoint")
    return state


def check_same_run(state: dict[str, Any], run_id: str, source: str, inputs: str) -> None:
    """Refuse (exit 2) a checkpoint whose run fingerprint differs; ``inputs`` says what may."""
    from gradinvert.runtime.errors import UsageError

    if state.get("run_id") != run_id:
        raise UsageError(
            f"{source}: the checkpoint belongs to another run (different {inputs}); start "
            "afresh without --resume or use another --checkpoint path"
        )


# Adam's and SGD's per-parameter state: each has the shape of its parameter (LBFGS keeps flat
# vectors and is checked by its own load).
_PER_PARAMETER = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


def check_tensors_fit(
    source: str, saved: dict[str, torch.Tensor], live: dict[str, torch.Tensor], what: str
) -> None:
    """Refuse (exit 65) saved tensors whose names, shapes or dtypes differ from the run's own,
    before any value is copied (a copy would broadcast or fail half-way)."""
    from gradinvert.models.fit import tensor_problems
    from gradinvert.runtime.errors import InvalidInputError

    problems = tensor_problems(live, saved, check_finite=False)
    if problems:
        raise InvalidInputError(f"{source}: {what} do not fit this run: " + "; ".join(problems))


def check_optimizer_state(source: str, optimizer: torch.optim.Optimizer, saved: Any) -> None:
    """Refuse (exit 65) a saved optimizer state whose per-parameter tensors do not have their
    parameters' shapes (``load_state_dict`` checks only the group sizes)."""
    from gradinvert.runtime.errors import InvalidInputError

    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = saved.get("state") if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise InvalidInputError(f"{source}: damaged checkpoint (no optimizer state)")
    for index, entry in state.items():
        known = isinstance(index, int) and 0 <= index < len(params)
        if not known or not isinstance(entry, dict):
            raise InvalidInputError(f"{source}: damaged checkpoint (optimizer state {index!r})")
        for key in _PER_PARAMETER:
            value = entry.get(key)
            if isinstance(value, torch.Tensor) and value.shape != params[index].shape:
                raise InvalidInputError(
                    f"{source}: damaged checkpoint (optimizer {key} of parameter {index} has "
                    f"shape {tuple(value.shape)}, the parameter {tuple(params[index].shape)})"
                )


def is_permutation(value: Any, count: int) -> bool:
    """True when ``value`` is an integer tensor holding each of 0 … count − 1 once."""
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (count,):
        return False
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        return False
    return bool(torch.equal(value.sort().values, torch.arange(count, dtype=value.dtype)))
