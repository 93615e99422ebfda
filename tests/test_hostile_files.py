"""Fuzz: hostile copies of small update and batch files through the CLI, in process.

Every outcome must be a documented exit (0, 2, 65 or 69) with one ``error:`` line on stderr
and no output file left behind on failure: never a traceback, an internal error (70), a hang
or an allocation the machine cannot make.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from hostile_corpus import corpus, read_raw, write_raw
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.io.files import BatchFile, save_batch, save_update

runner = CliRunner()
COMMAND = typer.main.get_command(app)  # built once: CliRunner.invoke rebuilds it every call
ALLOWED = {0, 2, 65, 69}


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny train-mode convnet update (8 px, BN statistics shared) and its truth batch."""
    folder = tmp_path_factory.mktemp("valid")
    update, images, labels = make_update(count=2, labels=[1, 3], mode="train", share_bn_stats=True)
    paths = {"update": folder / "u.safetensors", "batch": folder / "t.safetensors"}
    save_update(update, paths["update"])
    save_batch(BatchFile(images, labels, {"source": "test"}), paths["batch"])
    return paths


def run(*args: object) -> Outcome:
    """The CLI app in process, as ``CliRunner.invoke`` runs it; any other exception propagates."""
    with runner.isolation() as (stdout, stderr, _):
        try:
            COMMAND.main(args=[str(a) for a in args], prog_name="gradinvert")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return Outcome(code, stdout.getvalue().decode(), stderr.getvalue().decode())


def check_outcome(result: Outcome, name: str, out: Path | None = None) -> int:
    """Assert a clean outcome; return the exit code."""
    code = result.exit_code
    assert code in ALLOWED, f"{name}: exit {code}\n{result.output}"
    assert "Traceback" not in result.output, name
    if code != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: {result.stderr!r}"
        if out is not None:
            assert not out.exists(), f"{name}: left {out}"
            assert not list(out.parent.glob(f".{out.name}*")), f"{name}: left a temporary file"
    return code


UPDATE_TENSORS = [
    "grad.fc.weight",
    "grad.features.0.weight",
    "param.fc.bias",
    "buffer.features.1.running_var",
    "bnstat.features.1.mean",
]


def test_hostile_update_files_end_cleanly(files: dict[str, Path], tmp_path: Path) -> None:
    mutations = corpus(files["update"], UPDATE_TENSORS, seed=14)
    codes: Counter[int] = Counter()
    for index, (name, data) in enumerate(mutations):
        path = tmp_path / f"{index:03d}.safetensors"
        path.write_bytes(data)
        out = tmp_path / f"{index:03d}.labels.json"
        codes[check_outcome(run("labels", path, "--out", out), f"labels {name}", out)] += 1
        codes[check_outcome(run("inspect", path, "--json"), f"inspect {name}")] += 1
        if index % 3 == 0:  # invert is the slowest step: every third mutation
            recon = tmp_path / f"{index:03d}.r.safetensors"
            args = ("--attack", "ig", "--iterations", 1, "--seeds", 1, "--no-progress")
            result = run("invert", path, "--out", recon, *args)
            codes[check_outcome(result, f"invert {name}", recon)] += 1
    assert len(mutations) > 150
    assert codes[65] > len(mutations)  # most mutations are refused as invalid input ...
    assert codes[0] > 20  # ... but harmless ones (e.g. a deleted 'created') still work


def test_hostile_batch_files_end_cleanly(files: dict[str, Path], tmp_path: Path) -> None:
    mutations = corpus(files["batch"], ["images", "labels"], seed=15)
    codes: Counter[int] = Counter()
    for index, (name, data) in enumerate(mutations):
        path = tmp_path / f"{index:03d}.safetensors"
        path.write_bytes(data)
        codes[check_outcome(run("inspect", path), f"inspect {name}")] += 1
        out = tmp_path / f"{index:03d}.scores.json"
        result = run("evaluate", path, "--truth", files["batch"], "--lpips", "off", "--json", out)
        codes[check_outcome(result, f"evaluate {name}", out)] += 1
    assert codes[65] > len(mutations) // 2 and codes[0] > 10


def _variant(files: dict[str, Path], tmp_path: Path, key: str, value: str) -> Path:
    tensors, metadata = read_raw(files["update"])
    path = tmp_path / f"{key}.safetensors"
    path.write_bytes(write_raw(tensors, {**metadata, key: value}))
    return path


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("defense", '"noise"', "defense"),
        ("defense", '["noise", 1]', "defense.0"),
        ("loss", '["cross_entropy"]', "loss"),
        ("model", '{"arch": "convnet", "num_classes": -1, "kwargs": {"width": 4}}', "num_classes"),
    ],
)
def test_known_crashes_are_one_line_naming_the_field(
    files: dict[str, Path], tmp_path: Path, key: str, value: str, field: str
) -> None:
    path = _variant(files, tmp_path, key, value)
    for command in (["labels", path], ["invert", path, "--attack", "ig", "--out", "r.st"]):
        result = run(*command)
        assert result.exit_code == 65, result.output
        assert result.stderr.count("\n") == 1 and f"{field}:" in result.stderr


def test_huge_batch_is_refused_before_anything_is_allocated(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path = _variant(files, tmp_path, "batch_size", "100000000")
    out = tmp_path / "r.safetensors"
    result = run("invert", path, "--attack", "ig", "--iterations", 1, "--out", out)
    assert result.exit_code == 69, result.output
    assert result.stderr.count("\n") == 1
    assert "batch 100000000" in result.stderr and "--max-memory" in result.stderr
    assert " TB " in result.stderr  # the estimated figure: 10⁸ × 2 seeds × ~40 KB
    assert not out.exists()
    # labels needs ~100 bytes a label: refused under a small bound, and the bound is the user's
    result = run("labels", path, "--max-memory", "1GB")
    assert result.exit_code == 69 and "labels would need about 10.0 GB" in result.stderr
    labels = json.loads(run("labels", files["update"], "--max-memory", "1GB").stdout)
    assert labels["labels"] == [1, 3]
