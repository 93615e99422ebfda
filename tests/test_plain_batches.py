"""Plain tensors and image folders wherever a batch is read: capture --images, evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.io.files import BatchFile, load_update, save_batch

runner = CliRunner()
SAMPLES = Path("samples/images32")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _tensors(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(4, 3, 32, 32, generator=generator), torch.tensor([3, 1, 4, 1])


def _write_both(tmp: Path, name: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    save_file({"images": images, "labels": labels}, str(tmp / f"{name}-plain.safetensors"))
    save_batch(BatchFile(images, labels, {}), tmp / f"{name}-batch.safetensors")


def _scores(*args: object) -> tuple[dict, str]:
    result = invoke("evaluate", *args, "--lpips", "off", "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return {"images": data["images"], "summary": data["summary"]}, result.output


def test_plain_tensors_are_scored_like_a_batch_file(tmp_path: Path):
    truth, labels = _tensors(0)
    recon = truth + 0.05 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
    _write_both(tmp_path, "t", truth, labels)
    _write_both(tmp_path, "r", recon.clamp(0, 1), torch.tensor([3, 1, 4, 2]))
    reference, output = _scores(
        tmp_path / "r-batch.safetensors", "--truth", tmp_path / "t-batch.safetensors"
    )
    assert "no gradinvert metadata" not in output
    assert reference["summary"]["label_acc"] == 0.75 and reference["summary"]["count"] == 4
    for recon_kind, truth_kind in (("plain", "plain"), ("plain", "batch"), ("batch", "plain")):
        scores, output = _scores(
            tmp_path / f"r-{recon_kind}.safetensors",
            "--truth",
            tmp_path / f"t-{truth_kind}.safetensors",
        )
        assert scores == reference
        notes = [line for line in output.splitlines() if "no gradinvert metadata" in line]
        assert len(notes) == (recon_kind, truth_kind).count("plain")


def test_capture_reads_plain_tensors_like_a_batch_file(tmp_path: Path):
    images, labels = _tensors(2)
    _write_both(tmp_path, "in", images, labels)
    updates = {}
    for kind in ("plain", "batch"):
        out = tmp_path / f"u-{kind}.safetensors"
        result = invoke(
            "capture", "--images", tmp_path / f"in-{kind}.safetensors", "--model", "lenet",
            "--device", "cpu", "--out", out,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert ("no gradinvert metadata" in result.output) == (kind == "plain")
        updates[kind] = load_update(out).update
    assert updates["plain"].keys() == updates["batch"].keys()
    assert all(torch.equal(updates["plain"][k], updates["batch"][k]) for k in updates["batch"])


def test_image_folder_with_labels_as_truth(tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = sorted(p.name for p in SAMPLES.glob("*.png"))[:4]
    for name in names:
        shutil.copy(SAMPLES / name, folder / name)
    capture = invoke(
        "capture", "--images", folder, "--labels", "2,0,1,1", "--model", "lenet", "--device",
        "cpu", "--out", tmp_path / "u.safetensors", "--truth", tmp_path / "t.safetensors",
    )  # fmt: skip
    assert capture.exit_code == 0, capture.output
    recon_path = tmp_path / "r.safetensors"
    save_file({"images": _tensors(5)[0], "labels": torch.tensor([2, 0, 1, 0])}, str(recon_path))
    reference, _ = _scores(recon_path, "--truth", tmp_path / "t.safetensors")
    inline, _ = _scores(recon_path, "--truth", folder, "--truth-labels", "2,0,1,1")
    assert inline == reference
    (folder / "labels.json").write_text(json.dumps(dict(zip(names, [2, 0, 1, 1], strict=True))))
    mapped, _ = _scores(recon_path, "--truth", folder)
    assert mapped == reference

    result = invoke(
        "evaluate", recon_path, "--truth", folder, "--truth-labels", "1,2", "--lpips", "off"
    )
    assert result.exit_code == 2 and "2 labels for the 4 images" in result.output
    result = invoke(
        "evaluate", recon_path, "--truth", tmp_path / "t.safetensors", "--truth-labels", "1"
    )
    assert result.exit_code == 2


TWO = torch.tensor([0, 1])
BAD = {
    "3-d images": ({"images": torch.rand(3, 32, 32), "labels": TWO}, "N×C×H×W"),
    "2 channels": ({"images": torch.rand(2, 2, 8, 8), "labels": TWO}, "C 1 or 3"),
    "float labels": ({"images": torch.rand(2, 3, 8, 8), "labels": TWO.float()}, "integers"),
    "label count": ({"images": torch.rand(2, 3, 8, 8), "labels": torch.arange(3)}, "3 labels"),
    "range": ({"images": torch.rand(2, 3, 8, 8) * 255, "labels": TWO}, "pixels in [0, 1]"),
    "nan": ({"images": torch.full((2, 3, 8, 8), float("nan")), "labels": TWO}, "non-finite"),
    "int images": ({"images": torch.zeros(2, 3, 8, 8).byte(), "labels": TWO}, "floating point"),
    "no labels": ({"images": torch.rand(2, 3, 8, 8)}, "a batch needs 'images'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_plain_tensors_are_clear_errors(tmp_path: Path, case: str):
    tensors, message = BAD[case]
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    good = tmp_path / "good.safetensors"
    save_file({"images": torch.rand(2, 3, 8, 8), "labels": torch.tensor([0, 1])}, str(good))
    for args in (
        ("evaluate", path, "--truth", good, "--lpips", "off"),
        ("evaluate", good, "--truth", path, "--lpips", "off"),
        ("capture", "--images", path, "--model", "lenet", "--out", tmp_path / "u.safetensors"),
    ):
        result = invoke(*args)
        assert result.exit_code == 65, (args, result.output)
        assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "u.safetensors").exists()
