"""Outputs never destroy inputs: checks a command makes before it does any work.

An output that is one of the run's input files (the same path once links are resolved, or the
same file under another name: a hard link) is refused, as are two outputs naming one file and a
checkpoint that would silently replace an earlier run's (exit 2, usage).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from gradinvert.runtime.errors import UsageError

PathLike = str | os.PathLike[str]


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` names after links; None when there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _input_files(inputs: Iterable[PathLike | None]) -> Iterator[Path]:
    """Every input file: files as given, folders by the files directly in them."""
    for item in inputs:
        if item is None or str(item) == "-":
            continue
        path = Path(item)
        if path.is_dir():
            yield from (child for child in path.iterdir() if child.is_file())
        elif path.exists():
            yield path


def refuse_clobbering(
    inputs: Iterable[PathLike | None],
    outputs: Mapping[str, PathLike | None],
    folders: Mapping[str, tuple[PathLike | None, str]] | None = None,
) -> None:
    """Raise :class:`UsageError` when an output would replace an input of the run.

    ``inputs``: files and folders the run reads (None and ``-`` are skipped). ``outputs``: the
    option that names each output file (``--out``) and its path (None, ``-``: not written).
    ``folders``: output folders as option -> (folder, regular expression of the file names
    written there); an input in that folder whose name matches is refused too.
    """
    files = list(_input_files(inputs))
    by_identity = {key: path for path in files if (key := _identity(path)) is not None}
    seen: dict[str, str] = {}
    for option, output in outputs.items():
        if output is None or str(output) == "-":
            continue
        target = Path(output)
        identity = _identity(target)
        victim = by_identity.get(identity) if identity is not None else None
        if victim is not None:
            which = "an input" if str(victim) == str(output) else f"the input {victim}"
            raise UsageError(f"{option} {output}: is {which} of this run; write it elsewhere")
        resolved = os.path.realpath(target)
        if resolved in seen:
            raise UsageError(f"{option} {output} and {seen[resolved]} name the same file")
        seen[resolved] = f"{option} {output}"
    for option, (folder, names) in (folders or {}).items():
        if folder is None:
            continue
        where = os.path.realpath(folder)
        for path in files:
            if os.path.realpath(path.parent) == where and re.fullmatch(names, path.name):
                raise UsageError(
                    f"{option} {folder}: would replace the input {path} of this run; write it "
                    "elsewhere"
                )


def refuse_checkpoint_overwrite(checkpoint: PathLike | None, resume: bool, overwrite: bool) -> None:
    """Raise :class:`UsageError` when ``checkpoint`` exists and the run would start afresh
    without ``--overwrite-checkpoint`` (``--resume`` continues it instead)."""
    if checkpoint is None or resume or overwrite or not Path(checkpoint).exists():
        return
    raise UsageError(
        f"--checkpoint {checkpoint}: exists; pass --resume to continue that run or "
        "--overwrite-checkpoint to replace it"
    )
