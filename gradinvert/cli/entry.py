"""Start the CLI with the current folder off the import path.

Python puts the current folder first on ``sys.path`` for ``python -m gradinvert`` (and an empty
``PYTHONPATH`` entry does the same for any start). A client's files often sit in that folder, so
a ``torch.py`` or ``evilmod.py`` delivered next to an update would be imported instead of the
real module. Both entry points drop the folder before importing anything else; it stays only
when the user put it on ``PYTHONPATH`` by name (``PYTHONPATH=.`` or its absolute path), which is
how a model factory in the current folder is used on purpose.

This module imports only what the interpreter has always loaded (``os``, ``sys``): no
``from __future__`` either, since ``__future__`` is a module a folder could shadow.
"""

import os
import sys


def _real(entry: str, cwd: str) -> str:
    return os.path.realpath(os.path.join(cwd, entry))  # '' and '.' resolve to cwd


def import_path_without_cwd(
    path: list[str], cwd: str, pythonpath: str, implicit_first: bool
) -> list[str]:
    """``path`` without the current folder ``cwd``.

    ``implicit_first``: ``path[0]`` is the entry the interpreter added itself (the current
    folder for ``-m``, the script's folder for a console script); it goes when it is the
    current folder. Every other entry that resolves to ``cwd`` goes too, unless a non-empty
    ``pythonpath`` segment names ``cwd`` (an explicit choice; an empty segment is not).
    """
    here = os.path.realpath(cwd)
    named = {_real(p, here) for p in pythonpath.split(os.pathsep) if p}
    kept = []
    for index, entry in enumerate(path):
        at_cwd = isinstance(entry, str) and _real(entry, here) == here
        if at_cwd and (entry == "" or (index == 0 and implicit_first) or here not in named):
            continue
        kept.append(entry)
    return kept


def secure_import_path() -> None:
    """Drop the current folder from ``sys.path`` in place (see the module docstring)."""
    try:
        cwd = os.getcwd()
    except OSError:  # the folder was deleted: only the relative entries can point at it
        sys.path[:] = [p for p in sys.path if p and os.path.isabs(p)]
        return
    implicit = not getattr(sys.flags, "safe_path", False)  # python -P adds no entry
    pythonpath = os.environ.get("PYTHONPATH", "")
    sys.path[:] = import_path_without_cwd(sys.path, cwd, pythonpath, implicit)


def main() -> None:
    """Console-script and ``python -m gradinvert`` entry point."""
    secure_import_path()
    from gradinvert.cli.main import run

    run()
