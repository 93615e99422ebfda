"""One checkpoint mechanism for the four long runs: ``invert``'s engine, ``train-prior``,
``learn-prior`` and ``train-inverter``.

A long run (:class:`LongRun`) advances one step at a time (an iteration, a training step, a
task) and says after which steps its checkpoint is due. On Ctrl-C (SIGINT) or SIGTERM (main
thread) it finishes the current step, writes its checkpoint when it was given one, and raises
:class:`InterruptedRun` (exit 130; 143 for SIGTERM); a second signal aborts at once.

A checkpoint file is a dict written with ``torch.save``, atomically and owner-only (it may hold
images of people's data). Its ``format`` names the run's kind and version; its ``run_id``
fingerprints the run's inputs and settings (:func:`fingerprint`). It is read back as any
untrusted ``.pt`` file (``weights_only``, every size checked against the stored bytes:
:func:`gradinvert.io.tensorfile.load_pt`), its fields checked against the kind's schema
(:mod:`gradinvert.io.file_schemas`; exit 65) and its ``run_id`` against the run's (another run's
file: exit 2). The run then compares every saved tensor with its own before any value is copied
(:func:`check_tensors_fit`, :func:`check_optimizer_state`), and continues to exactly the result
of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import torch
from pydantic import BaseModel

from gradinvert.io.file_schemas import validate_checkpoint
from gradinvert.runtime.errors import (
    ExitCode,
    GradinvertError,
    InvalidInputError,
    MissingInputError,
    UsageError,
    one_line,
)
from gradinvert.runtime.runstate import Interruptible, to_cpu

PathLike = str | os.PathLike[str]


class InterruptedRun(GradinvertError):
    """The run was stopped by Ctrl-C or SIGTERM (after saving a checkpoint when one was asked
    for)."""

    exit_code = ExitCode.INTERRUPTED


def fingerprint(*parts: Any) -> str:
    """A hash of run inputs (tensors by value, everything else as JSON)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            digest.update(str((part.dtype, tuple(part.shape))).encode())
            digest.update(
                part.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
            )
        elif (
            isinstance(part, dict)
            and part
            and all(isinstance(v, torch.Tensor) for v in part.values())
        ):
            for key in sorted(part):
                digest.update(key.encode())
                digest.update(fingerprint(part[key]).encode())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointKind:
    """What one long run's checkpoint files are."""

    command: str  # names the run in messages: "invert", "train-prior", ...
    format: str  # the file's ``format`` field: the kind and its version
    schema: type[BaseModel]  # the file's fields (gradinvert.io.file_schemas)
    inputs: str  # what differs when the run_id does: "images or settings"


# ---------------------------------------------------------------------- the command line


def check_resume(checkpoint: PathLike | None, resume: bool) -> None:
    """``resume`` needs a ``checkpoint`` (exit 2) that exists (exit 66)."""
    if not resume:
        return
    if checkpoint is None:
        raise UsageError("--resume needs --checkpoint PATH")
    if not Path(checkpoint).exists():
        raise MissingInputError(f"{checkpoint}: no checkpoint to resume from")


def check_checkpoint_options(
    checkpoint: PathLike | None, resume: bool, overwrite: bool = False
) -> None:
    """The command line's checkpoint rules, checked before any work: ``--resume`` needs an
    existing ``--checkpoint`` (exit 2, 66), and an existing ``--checkpoint`` is replaced only
    with ``--overwrite-checkpoint`` (exit 2)."""
    from gradinvert.io.outputs import refuse_checkpoint_overwrite

    check_resume(checkpoint, resume)
    refuse_checkpoint_overwrite(checkpoint, resume, overwrite)


# ---------------------------------------------------------------------- the file


def write_checkpoint(path: PathLike, state: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically and owner-only with ``torch.save``."""
    from gradinvert.io.atomic import atomic_path

    with atomic_path(path, private=True) as tmp:
        torch.save(state, tmp)


def check_checkpoint(
    state: Any, kind: CheckpointKind, source: str, run_id: str | None = None
) -> None:
    """Refuse a checkpoint of another kind or whose fields do not fit ``kind``'s schema (exit
    65, every problem at once) and, given ``run_id``, one of another run (exit 2)."""
    if not isinstance(state, dict):
        raise InvalidInputError(f"{source}: not a gradinvert {kind.command} checkpoint")
    validate_checkpoint(kind.schema, source, state, kind.format, kind.command)
    if run_id is not None and state.get("run_id") != run_id:
        raise UsageError(
            f"{source}: the checkpoint belongs to another run (different {kind.inputs}); start "
            "afresh without --resume or use another --checkpoint path"
        )


def read_checkpoint(
    path: PathLike, kind: CheckpointKind, run_id: str | None = None
) -> dict[str, Any]:
    """A checkpoint file of ``kind``, read as any untrusted ``.pt`` file and checked by
    :func:`check_checkpoint` (a missing file: exit 66)."""
    from gradinvert.io.tensorfile import load_pt

    if not Path(path).exists():
        raise MissingInputError(f"{path}: no checkpoint to resume from")
    state = load_pt(path, "checkpoint")
    check_checkpoint(state, kind, str(path), run_id)
    return state


# ---------------------------------------------------------------------- checks of its values

# Adam's and SGD's per-parameter state: each has the shape of its parameter (LBFGS keeps flat
# vectors and is checked by its own load).
_PER_PARAMETER = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


def check_tensors_fit(
    source: str, saved: dict[str, torch.Tensor], live: dict[str, torch.Tensor], what: str
) -> None:
    """Refuse (exit 65) saved tensors whose names, shapes or dtypes differ from the run's own,
    before any value is copied (a copy would broadcast or fail half-way)."""
    from gradinvert.models.fit import tensor_problems

    problems = tensor_problems(live, saved, check_finite=False)
    if problems:
        raise InvalidInputError(f"{source}: {what} do not fit this run: " + "; ".join(problems))


def check_optimizer_state(source: str, optimizer: torch.optim.Optimizer, saved: Any) -> None:
    """Refuse (exit 65) a saved optimizer state whose per-parameter tensors do not have their
    parameters' shapes (``load_state_dict`` checks only the group sizes)."""
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


@contextlib.contextmanager
def restoring(source: str) -> Iterator[None]:
    """Within: a value that ``load_state_dict`` or ``set_state`` refuses is a damaged
    checkpoint (exit 65)."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"{source}: damaged checkpoint ({one_line(str(exc))})") from None


# ---------------------------------------------------------------------- the run


class LongRun(Interruptible):
    """A run that advances in steps, writes its checkpoint after the steps it says, and stops
    after the current step on Ctrl-C or SIGTERM (see the module docstring).

    A subclass says what a step is (:meth:`advance`), when the run is done (:meth:`finished`),
    after which steps a checkpoint is due (:meth:`checkpoint_due`), where it stands
    (:meth:`position`, :meth:`where`), and what its state holds (:meth:`payload`,
    :meth:`restore`); it sets ``checkpoint_kind`` and ``run_id``.
    """

    checkpoint_kind: ClassVar[CheckpointKind]
    run_id: str
    _saved_at: Any = None  # the position of the checkpoint last written or read here

    # ------------------------------------------------------------------ what a run says

    def finished(self) -> bool:
        """Whether the run is complete."""
        raise NotImplementedError

    def advance(self) -> Any:
        """Take one step; return what ``on_step`` receives, or None when the step was
        abandoned (a signal arrived inside it: nothing of it is kept)."""
        raise NotImplementedError

    def checkpoint_due(self) -> bool:
        """Whether a checkpoint is due after the step just taken."""
        return True

    def position(self) -> Any:
        """A value that changes with every step (a checkpoint at the same one is not
        written again)."""
        raise NotImplementedError

    def where(self) -> str:
        """Where the run stands, for messages: ``at iteration 4/9``."""
        raise NotImplementedError

    def payload(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is (besides format, run_id)."""
        raise NotImplementedError

    def restore(self, state: dict[str, Any], source: str) -> None:
        """Continue from a checked :meth:`payload` (compare tensors before copying them)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the mechanism

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's dict (CPU tensors)."""
        kind = self.checkpoint_kind
        return to_cpu({"format": kind.format, "run_id": self.run_id, **self.payload()})

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        """Continue from :meth:`state_dict`; refuses a checkpoint of another kind or run."""
        check_checkpoint(state, self.checkpoint_kind, source, self.run_id)
        self._adopt(state, source)

    def save(self, path: PathLike) -> None:
        """Write the checkpoint atomically (``torch.save``; read back with ``weights_only``)."""
        if self._saved_at == self.position() and Path(path).exists():
            return
        write_checkpoint(path, self.state_dict())
        self._saved_at = self.position()

    def load(self, path: PathLike) -> None:
        """Read a checkpoint written by :meth:`save` and continue from it."""
        self._adopt(read_checkpoint(path, self.checkpoint_kind, self.run_id), str(path))

    def _adopt(self, state: dict[str, Any], source: str) -> None:
        self.restore(state, source)
        self._saved_at = self.position()

    def run_steps(
        self, checkpoint: PathLike | None, on_step: Callable[[Any, Any], None] | None = None
    ) -> None:
        """Advance until :meth:`finished`: after each step the checkpoint when it is due, then
        ``on_step(self, info)``; on Ctrl-C or SIGTERM the checkpoint and
        :class:`InterruptedRun`."""
        with self._signals_stop():
            while not self.finished():
                info = self.advance()
                if info is not None:
                    if checkpoint is not None and self.checkpoint_due():
                        self.save(checkpoint)
                    if on_step is not None:
                        on_step(self, info)
                if self._stop and not self.finished():
                    self._interrupted(checkpoint)

    def _interrupted(self, checkpoint: PathLike | None) -> NoReturn:
        where = self.where()
        if checkpoint is None:
            raise InterruptedRun(f"interrupted {where} (no --checkpoint given, nothing saved)")
        self.save(checkpoint)
        raise InterruptedRun(
            f"interrupted {where}; checkpoint saved to {checkpoint}: rerun the same command "
            "with --resume"
        )
