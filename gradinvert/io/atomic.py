"""Write output files atomically and durably: a reader never sees a half-written file.

Outputs that hold images of people's data (reconstructions, ground truth, grids, reports,
checkpoints) are written ``private``: owner-only (0600; folders 0700), unless the user asked for
public outputs (``gradinvert --public-outputs`` or ``GRADINVERT_PUBLIC_OUTPUTS=1``), when they get
the mode a plain write would give, as every other output does.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_settings = {"public_outputs": False}


def set_public_outputs(enabled: bool) -> None:
    """Write private outputs with the plain-write mode (True) or owner-only (False, default)."""
    _settings["public_outputs"] = enabled


def _default_mode() -> int:
    """The permissions ``open()`` would give a new file (0o666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success flush it to disk and rename it onto
    ``target`` (then flush the folder). ``private``: owner-only (see the module docstring)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        # mkstemp makes the file owner-only (0600): the mode a private output keeps
        if not private or _settings["public_outputs"]:
            os.chmod(tmp, _default_mode())
        os.replace(tmp, target)
        with contextlib.suppress(OSError):  # not every file system can flush a folder
            _fsync(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def make_folder(path: str | os.PathLike[str], private: bool = False) -> Path:
    """Create ``path`` (and its parents) when missing; a new ``private`` folder is owner-only."""
    path = Path(path)
    mode = 0o700 if private and not _settings["public_outputs"] else 0o777
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path


def write_text_atomic(target: str | os.PathLike[str], text: str, private: bool = False) -> None:
    """Write ``text`` to ``target`` through a temporary file and a rename."""
    with atomic_path(target, private) as tmp:
        tmp.write_text(text, encoding="utf-8")
