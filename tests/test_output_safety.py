"""Outputs never destroy inputs: an output that is an input is refused (exit 2) before any
work, an existing checkpoint is replaced only when asked, images of people's data are written
owner-only, SIGTERM stops like Ctrl-C (exit 143), and an image header claiming a huge size is
invalid input (exit 65)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.invert.engine import Engine
from gradinvert.io import atomic
from gradinvert.io.files import BatchFile, save_batch, save_update

runner = CliRunner()
SAMPLES = Path("samples/images32")
FAST_IG = ["--attack", "ig", "--iterations", "2", "--seeds", "1", "--labels", "1,3",
           "--no-progress", "--device", "cpu"]  # fmt: skip


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def refused(result, code: int, *words: str) -> None:  # noqa: ANN001
    """Exit ``code`` with one ``error:`` line holding ``words``, and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """u.safetensors (tiny update of 2 images), t.safetensors (its truth), r.safetensors (a
    'reconstruction'), b.pt / a.pt (state dicts), imgs/ (4 sample photos with labels.json)."""
    update, images, labels = make_update(count=2, labels=[1, 3])
    save_update(update, tmp_path / "u.safetensors")
    save_batch(BatchFile(images, labels, {"source": "test"}), tmp_path / "t.safetensors")
    save_batch(BatchFile(images.flip(-1), labels, {"source": "test"}), tmp_path / "r.safetensors")
    torch.save(update.params, tmp_path / "b.pt")
    torch.save(update.params, tmp_path / "a.pt")
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = sorted(p.name for p in SAMPLES.glob("*.png"))[:4]
    for name in names:
        shutil.copy(SAMPLES / name, folder / name)
    (folder / "labels.json").write_text(json.dumps({n: i for i, n in enumerate(names)}))
    return tmp_path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _first_image(w: Path) -> Path:
    return sorted((w / "imgs").glob("*.png"))[0]


def _labels_png(w: Path) -> Path:
    """A labels file whose name is one --png-dir writes (to test the folder rule)."""
    path = w / "pngs" / "000_label1.png"
    path.parent.mkdir(exist_ok=True)
    path.write_text("[1, 3]")
    return path


def _hard_link(w: Path) -> Path:
    os.link(w / "u.safetensors", w / "same-file.safetensors")
    return w / "same-file.safetensors"


def _symlink(w: Path) -> Path:
    (w / "link.safetensors").symlink_to(w / "u.safetensors")
    return w / "link.safetensors"


Case = Callable[[Path], list[object]]
CLOBBERS: dict[str, tuple[Case, str]] = {
    "invert --out the update": (lambda w: ["invert", w / "u.safetensors", *FAST_IG, "--out", w / "u.safetensors"], "--out"),  # noqa: E501
    "invert --out a hard link": (lambda w: ["invert", w / "u.safetensors", *FAST_IG, "--out", _hard_link(w)], "--out"),  # noqa: E501
    "invert --out a symlink": (lambda w: ["invert", w / "u.safetensors", *FAST_IG, "--out", _symlink(w)], "--out"),  # noqa: E501
    "invert --checkpoint": (lambda w: ["invert", w / "u.safetensors", *FAST_IG, "--out", w / "o.st", "--checkpoint", w / "u.safetensors", "--overwrite-checkpoint"], "--checkpoint"),  # noqa: E501
    "invert --png-dir": (lambda w: ["invert", w / "u.safetensors", *FAST_IG, "--labels", _labels_png(w), "--out", w / "o.st", "--png-dir", w / "pngs"], "--png-dir"),  # noqa: E501
    "invert --attack git": (lambda w: ["invert", w / "u.safetensors", "--attack", "git", "--inverter", w / "r.safetensors", "--out", w / "r.safetensors"], "--out"),  # noqa: E501
    "labels --out": (lambda w: ["labels", w / "u.safetensors", "--out", w / "u.safetensors"], "--out"),  # noqa: E501
    "labels --out the truth": (lambda w: ["labels", w / "u.safetensors", "--truth", w / "t.safetensors", "--out", w / "t.safetensors"], "--out"),  # noqa: E501
    "capture --truth an image": (lambda w: ["capture", "--images", w / "imgs", "--size", "8", "--out", w / "o.st", "--truth", _first_image(w)], "--truth"),  # noqa: E501
    "capture --out the labels map": (lambda w: ["capture", "--images", w / "imgs", "--size", "8", "--out", w / "imgs" / "labels.json"], "--out"),  # noqa: E501
    "capture two outputs": (lambda w: ["capture", "--images", w / "imgs", "--size", "8", "--out", w / "o.st", "--truth", w / "o.st"], "name the same file"),  # noqa: E501
    "import --out --after": (lambda w: ["import", "--before", w / "b.pt", "--after", w / "a.pt", "--model", "convnet", "--input-shape", "3,8,8", "--out", w / "a.pt"], "--out"),  # noqa: E501
    "evaluate --json the truth": (lambda w: ["evaluate", w / "r.safetensors", "--truth", w / "t.safetensors", "--lpips", "off", "--json", w / "t.safetensors"], "--json"),  # noqa: E501
    "evaluate --grid the recon": (lambda w: ["evaluate", w / "r.safetensors", "--truth", w / "t.safetensors", "--lpips", "off", "--grid", w / "r.safetensors"], "--grid"),  # noqa: E501
    "train-prior --out an image": (lambda w: ["train-prior", "--images", w / "imgs", "--out", _first_image(w)], "--out"),  # noqa: E501
    "train-prior --samples an image": (lambda w: ["train-prior", "--images", w / "imgs", "--out", w / "g.st", "--samples", _first_image(w)], "--samples"),  # noqa: E501
    "learn-prior --out an update": (lambda w: ["learn-prior", w / "u.safetensors", "--out", w / "u.safetensors"], "--out"),  # noqa: E501
    "train-inverter --out the template": (lambda w: ["train-inverter", w / "u.safetensors", "--images", w / "imgs", "--out", w / "u.safetensors"], "--out"),  # noqa: E501
    "train-inverter --checkpoint an image": (lambda w: ["train-inverter", w / "u.safetensors", "--images", w / "imgs", "--out", w / "i.st", "--checkpoint", _first_image(w), "--overwrite-checkpoint"], "--checkpoint"),  # noqa: E501
}  # fmt: skip


@pytest.mark.parametrize("case", CLOBBERS)
def test_an_output_that_is_an_input_is_refused_before_any_work(work: Path, case: str) -> None:
    make_args, option = CLOBBERS[case]
    args = make_args(work)
    before = _snapshot(work)
    refused(invoke(*args), 2, option)
    assert _snapshot(work) == before  # victims byte-identical, no output, no temporary file


def test_report_refuses_to_replace_a_file_its_runs_name(work: Path) -> None:
    scores = work / "s.json"
    result = invoke("evaluate", work / "r.safetensors", "--truth", work / "t.safetensors",
                    "--lpips", "off", "--json", scores)  # fmt: skip
    assert result.exit_code == 0, result.output
    before = _snapshot(work)
    refused(invoke("report", scores, "--out", work / "t.safetensors"), 2, "--out")
    assert _snapshot(work) == before


def test_demo_refuses_an_out_folder_holding_its_samples_labels(work: Path) -> None:
    samples = work / "samples" / "images32"
    shutil.copytree(SAMPLES, samples)
    shutil.copy(SAMPLES.parent / "labels.json", samples.parent / "labels.json")
    before = _snapshot(work)
    refused(invoke("demo", "--samples", samples, "--out", samples.parent), 2, "labels.json")
    assert _snapshot(work) == before


CHECKPOINTED = {
    "invert": lambda w, ckpt: ["invert", w / "u.safetensors", *FAST_IG, "--out", w / "o.st", "--checkpoint", ckpt],  # noqa: E501
    "train-prior": lambda w, ckpt: ["train-prior", "--images", w / "imgs", "--out", w / "g.st", "--checkpoint", ckpt],  # noqa: E501
    "learn-prior": lambda w, ckpt: ["learn-prior", w / "u.safetensors", "--out", w / "g.st", "--checkpoint", ckpt],  # noqa: E501
    "train-inverter": lambda w, ckpt: ["train-inverter", w / "u.safetensors", "--images", w / "imgs", "--out", w / "i.st", "--checkpoint", ckpt],  # noqa: E501
}  # fmt: skip


@pytest.mark.parametrize("command", CHECKPOINTED)
def test_an_existing_checkpoint_is_kept_without_resume_or_overwrite(
    work: Path, command: str
) -> None:
    ckpt = work / "run.ckpt"
    ckpt.write_bytes(b"an earlier run's state")
    before = _snapshot(work)
    result = invoke(*CHECKPOINTED[command](work, ckpt))
    refused(result, 2, str(ckpt), "--resume", "--overwrite-checkpoint")
    assert _snapshot(work) == before


def test_overwrite_checkpoint_starts_afresh(work: Path) -> None:
    ckpt = work / "run.ckpt"
    ckpt.write_bytes(b"an earlier run's state")
    args = CHECKPOINTED["invert"](work, ckpt)
    result = invoke(*args, "--overwrite-checkpoint")
    assert result.exit_code == 0, result.output
    assert torch.load(ckpt, weights_only=True)["iteration"] == 2


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_images_of_people_are_written_owner_only(work: Path, umask_022: None) -> None:
    out = work / "out"
    result = invoke("capture", "--images", work / "imgs", "--size", "8", "--num-classes", "4",
                    "--out", out / "u.st", "--truth", out / "t.st")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("invert", out / "u.st", *FAST_IG, "--labels", "0,1,2,3", "--out", out / "r.st",
                    "--png-dir", out / "pngs", "--checkpoint", out / "run.ckpt")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", out / "r.st", "--truth", out / "t.st", "--lpips", "off",
                    "--json", out / "s.json", "--grid", out / "grid.png")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert invoke("report", out / "s.json", "--out", out / "report.html").exit_code == 0
    pngs = sorted((out / "pngs").iterdir())
    assert len(pngs) == 4
    private = [out / "t.st", out / "r.st", out / "run.ckpt", out / "grid.png",
               out / "report.html", *pngs]  # fmt: skip
    assert {p.name: _mode(p) for p in private} == {p.name: 0o600 for p in private}
    assert _mode(out / "pngs") == 0o700
    assert _mode(out / "u.st") == _mode(out / "s.json") == 0o644  # no images: the umask's mode


def test_public_outputs_gives_the_umask_mode(work: Path, umask_022: None) -> None:
    out = work / "r.st"
    result = invoke("--public-outputs", "invert", work / "u.safetensors", *FAST_IG, "--out", out)
    assert result.exit_code == 0, result.output
    assert _mode(out) == 0o644
    result = runner.invoke(
        app,
        ["invert", str(work / "u.safetensors"), *FAST_IG, "--out", str(work / "r2.st")],
        env={"GRADINVERT_PUBLIC_OUTPUTS": "1"},
    )
    assert result.exit_code == 0, result.output
    assert _mode(work / "r2.st") == 0o644
    assert invoke("invert", work / "u.safetensors", *FAST_IG, "--out", out).exit_code == 0
    assert _mode(out) == 0o600  # each run decides afresh


# ---------------------------------------------------------------- SIGTERM


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp")]


def test_sigterm_in_the_loop_saves_the_checkpoint_and_exits_143(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Engine.step

    def step_then_sigterm(self: Engine) -> None:
        original(self)
        if self.iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Engine, "step", step_then_sigterm)
    out, ckpt = work / "o.st", work / "run.ckpt"
    result = invoke("invert", work / "u.safetensors", *FAST_IG, "--iterations", 6,
                    "--out", out, "--checkpoint", ckpt)  # fmt: skip
    refused(result, 143, "--resume")
    assert torch.load(ckpt, weights_only=True)["iteration"] == 2
    assert not out.exists() and not _temporaries(work)


def test_sigterm_while_writing_removes_the_temporary_and_exits_143(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = atomic._fsync

    def fsync_then_sigterm(path: Path) -> None:
        real_fsync(path)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(atomic, "_fsync", fsync_then_sigterm)
    out = work / "o.st"
    result = invoke("invert", work / "u.safetensors", *FAST_IG, "--out", out)
    assert result.exit_code == 143, result.output
    assert "terminated" in result.stderr and "Traceback" not in result.output
    assert not out.exists() and not _temporaries(work)


def test_sigterm_to_a_running_invert_process(work: Path) -> None:
    out, ckpt = work / "o.st", work / "run.ckpt"
    command = [sys.executable, "-m", "gradinvert", "invert", str(work / "u.safetensors"),
               *FAST_IG, "--iterations", "1000000", "--checkpoint", str(ckpt),
               "--checkpoint-every", "1", "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ckpt.exists(), "the run never reached its loop"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    assert 1 <= torch.load(ckpt, weights_only=True)["iteration"] < 1000000
    assert not out.exists() and not _temporaries(work)


# ---------------------------------------------------------------- decompression bombs


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` RGB pixels and holds almost none."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [20000, 10000])  # Pillow refuses the first, warns on the second
def test_an_image_claiming_a_huge_size_is_invalid_input(work: Path, side: int) -> None:
    bomb = work / "imgs" / "zz_bomb.png"
    bomb.write_bytes(_png_header(side, side))
    before = _snapshot(work)
    out = work / "o.st"
    result = invoke("capture", "--images", bomb, "--labels", "1", "--out", out)
    refused(result, 65, "zz_bomb.png", f"{side}×{side}" if side == 10000 else "pixels")
    result = invoke("evaluate", work / "r.safetensors", "--truth", work / "imgs",
                    "--truth-labels", "0,1,2,3,4", "--lpips", "off")  # fmt: skip
    refused(result, 65, "zz_bomb.png")
    assert _snapshot(work) == before
