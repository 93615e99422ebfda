"""A `.pt` file whose pickle calls a function never runs it through any gradinvert reader.

The hostile file is built here with the standard library alone: an object whose ``__reduce__``
asks the unpickler to call ``os.system`` with a command that creates a marker file. Plain
``pickle`` runs it (checked first, so the file is known to be live); every gradinvert reader must
refuse it with exit 65 and leave the marker absent.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest
import torch
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.invert.engine import CHECKPOINT
from gradinvert.io.files import save_update
from gradinvert.models import read_state_dict
from gradinvert.runtime.checkpoint import read_checkpoint
from gradinvert.runtime.errors import InvalidInputError

runner = CliRunner()


class _RunsCode:
    """Unpickling this calls ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def _hostile_pt(path: Path, marker: Path) -> Path:
    command = f"{shlex.quote(sys.executable)} -c 'import pathlib, sys; pathlib.Path(sys.argv[1]).touch()' {shlex.quote(str(marker))}"  # noqa: E501
    torch.save({"fc.weight": _RunsCode(command), "format": "x"}, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code-ran"


def test_the_hostile_file_runs_code_under_plain_pickle(tmp_path: Path, marker: Path) -> None:
    path = _hostile_pt(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)  # what an unsafe reader would do
    assert marker.exists()


def test_library_readers_refuse_it(tmp_path: Path, marker: Path) -> None:
    path = _hostile_pt(tmp_path / "evil.pt", marker)
    with pytest.raises(InvalidInputError):
        read_state_dict(path)
    with pytest.raises(InvalidInputError):
        read_checkpoint(path, CHECKPOINT)
    assert not marker.exists()


@pytest.fixture
def update_path(tmp_path: Path) -> Path:
    update, _, _ = make_update(count=1, labels=[1], size=32)
    path = tmp_path / "u.safetensors"
    save_update(update, path)
    return path


CASES = {
    "capture --weights": lambda evil, u, d: [
        "capture", "--images", "samples/images32/00_astronaut_face.png", "--labels", "1",
        "--size", "32", "--model", "convnet", "--num-classes", "4", "--weights", evil,
        "--out", d / "out.safetensors", "--device", "cpu",
    ],
    "import --after": lambda evil, u, d: [
        "import", "--before", evil, "--after", evil, "--model", "convnet",
        "--input-shape", "3,32,32", "--out", d / "out.safetensors",
    ],
    "invert --resume": lambda evil, u, d: [
        "invert", u, "--attack", "ig", "--iterations", "2", "--seeds", "1", "--labels", "1",
        "--checkpoint", evil, "--resume", "--no-progress", "--device", "cpu",
        "--out", d / "out.safetensors",
    ],
    "invert --generator-weights": lambda evil, u, d: [
        "invert", u, "--attack", "gias", "--search", "z", "--generator", "dcgan",
        "--generator-weights", evil, "--iterations", "1", "--seeds", "1", "--labels", "1",
        "--no-progress", "--device", "cpu", "--out", d / "out.safetensors",
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_cli_readers_refuse_it_with_exit_65(
    case: str, tmp_path: Path, marker: Path, update_path: Path
) -> None:
    evil = _hostile_pt(tmp_path / "evil.pt", marker)
    args = [str(a) for a in CASES[case](evil, update_path, tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 65, (case, result.output)
    assert "evil.pt" in result.stderr  # refused by the reader, not before it
    assert not marker.exists()
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out.safetensors").exists()
