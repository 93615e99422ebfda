"""The demo chain end to end, on a test-sized budget."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.io.files import load_batch, load_update


def test_demo_leaves_every_file_and_scores_in_the_documented_shape(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--iterations", "3", "--seeds", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    update = load_update(out / "update.safetensors")
    truth = load_batch(out / "truth.safetensors")
    recon = load_batch(out / "recon.safetensors")
    assert update.mode == "train" and update.bn_stats  # the GradInversion threat model
    assert recon.images.shape == truth.images.shape
    labels = json.loads((out / "labels.json").read_text())
    assert sorted(labels["labels"]) == sorted(truth.labels.tolist())

    scores = json.loads((out / "scores.json").read_text())
    assert scores["matching"] == "mse"
    assert {row["truth_index"] for row in scores["images"]} == set(range(4))
    for key in ("psnr", "psnr_registered", "ssim", "lpips", "label_ok"):
        assert key in scores["images"][0]
    psnrs = [row["psnr"] for row in scores["images"]]
    assert scores["summary"]["psnr"]["mean"] == pytest.approx(sum(psnrs) / len(psnrs))
    with Image.open(out / "grid.png") as grid:
        assert grid.width >= 4 * 32 and grid.height >= 2 * 32
