"""`gradinvert evaluate` through the CLI: JSON shape, grid, LPIPS availability, gates, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.io.files import BatchFile, save_batch, save_update
from gradinvert.io.images import load_images
from gradinvert.metrics import psnr
from gradinvert.models import InputSpec, build_model, model_spec

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "images32"
PERM = [2, 0, 3, 5, 1, 4]
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def no_cached_backbone(tmp_path, monkeypatch):
    """An empty torch hub cache, whatever the machine has: LPIPS weights are absent."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@dataclass
class Files:
    t: Path  # truth batch
    r: Path  # reconstruction: truth + noise, permuted by PERM
    u: Path  # gradient update of a tiny convnet on the truth batch
    w: Path  # test-only random AlexNet backbone
    truth_images: torch.Tensor
    recon_images: torch.Tensor


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    tmp = tmp_path_factory.mktemp("evaluate")
    images, _ = load_images([SAMPLES])
    truth, labels = images[:6], torch.tensor([0, 1, 2, 3, 3, 7])
    g = torch.Generator().manual_seed(0)
    recon = (truth + 0.08 * torch.randn(truth.shape, generator=g)).clamp(0, 1)[PERM]
    paths = {name: tmp / f"{name}.safetensors" for name in ("t", "r", "u")}
    save_batch(BatchFile(truth, labels, {"source": "test"}), paths["t"])
    save_batch(BatchFile(recon, labels[PERM], {"attack": "test"}), paths["r"])
    spec = model_spec("convnet", 10, (3, 32, 32), width=8)
    update = capture_update(
        build_model(spec, init_seed=0), spec, InputSpec((3, 32, 32)), truth, labels, CaptureConfig()
    )
    save_update(update, paths["u"])
    torch.manual_seed(0)  # test-only random backbone, never a real LPIPS score
    state = torchvision.models.alexnet(weights=None).state_dict()
    paths["w"] = tmp / "random-alexnet-features.pth"
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, paths["w"])
    return Files(paths["t"], paths["r"], paths["u"], paths["w"], truth, recon)


def test_json_to_stdout_and_grid(files, tmp_path):
    grid = tmp_path / "grid.png"
    result = invoke("evaluate", files.r, "--truth", files.t, "--json", "-", "--grid", grid)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["matching"] == "mse"
    assert [row["index"] for row in data["images"]] == list(range(6))
    assert [row["truth_index"] for row in data["images"]] == PERM
    expected = psnr(files.recon_images, files.truth_images[PERM])
    assert [row["psnr"] for row in data["images"]] == pytest.approx(expected.tolist())
    for row in data["images"]:
        assert {"psnr_registered", "ssim", "lpips", "label_ok"} <= set(row)
        assert row["lpips"] is None and row["label_ok"] is True
    summary = data["summary"]
    assert summary["psnr"]["mean"] == pytest.approx(expected.mean().item())
    assert summary["psnr"]["min"] == pytest.approx(expected.min().item())
    assert set(summary["ssim"]) >= {"mean", "max", "min"}
    assert summary["lpips"] is None and summary["label_acc"] == 1.0 and summary["iip"] == 1.0
    # LPIPS was not asked for: a warning, not a failure.
    assert "LPIPS unavailable" in result.stderr
    with Image.open(grid) as image:
        assert image.width >= 6 * 96 and image.height >= 2 * 96


def test_gate_not_tripped_and_tripped_on_identical_batch(files, tmp_path):
    result = invoke("evaluate", files.r, "--truth", files.t, "--fail-above", "psnr=99")
    assert result.exit_code == 0, result.output
    out = tmp_path / "scores.json"
    result = invoke(
        "evaluate", files.t, "--truth", files.t, "--lpips", "off",
        "--fail-above", "psnr=30", "--fail-above", "label_acc=1", "--json", out,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "gate tripped" in result.stderr and "psnr=30" in result.stderr
    assert "label_acc" not in result.stderr.split("gate tripped")[-1]  # 1.0 is not above 1
    data = json.loads(out.read_text())  # scores are still written for the audit trail
    assert data["summary"]["psnr"]["mean"] == 100.0
    assert [g["tripped"] for g in data["gates"]] == [True, False]


@pytest.mark.parametrize("gate", ["psnr", "psnr=", "bogus=3", "ssim=high"])
def test_malformed_gate_is_a_usage_error(files, tmp_path, gate):
    out = tmp_path / "scores.json"
    result = invoke("evaluate", files.r, "--truth", files.t, "--fail-above", gate, "--json", out)
    assert result.exit_code == 2
    assert "--fail-above" in result.stderr
    assert not out.exists()


def test_explicit_lpips_without_weights_exits_69_and_writes_nothing(files, tmp_path):
    out, grid = tmp_path / "scores.json", tmp_path / "grid.png"
    for extra in (["--lpips", "alex"], ["--match", "lpips"], ["--fail-above", "lpips=0.2"]):
        result = invoke(
            "evaluate", files.r, "--truth", files.t, "--json", out, "--grid", grid, *extra
        )
        assert result.exit_code == 69, (extra, result.output)
        assert "--lpips-weights" in result.stderr
    assert not out.exists() and not grid.exists()


def test_lpips_with_a_weights_file(files):
    result = invoke(
        "evaluate", files.r, "--truth", files.t, "--lpips-weights", files.w, "--json", "-"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["lpips_net"] == "alex"
    values = [row["lpips"] for row in data["images"]]
    assert all(v is not None and v > 0 for v in values)
    assert data["summary"]["lpips"]["min"] == pytest.approx(min(values))
    # Identical images: LPIPS 0, so an lpips gate (lower = more leakage) trips.
    result = invoke(
        "evaluate", files.t, "--truth", files.t, "--lpips", "alex",
        "--lpips-weights", files.w, "--match", "lpips", "--fail-above", "lpips=0.01",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "lpips" in result.stderr


def test_lpips_off_conflicts_and_bad_choices(files):
    for extra, code in (
        (["--lpips", "off", "--match", "lpips"], 2),
        (["--lpips", "squeeze"], 2),
        (["--match", "ssim"], 2),
        (["--lpips-weights", "nowhere.pth"], 66),
    ):
        result = invoke("evaluate", files.r, "--truth", files.t, *extra)
        assert result.exit_code == code, (extra, result.output)


def test_update_and_pool_add_iip_spaces(files):
    result = invoke(
        "evaluate", files.r, "--truth", files.t, "--update", files.u,
        "--pool", SAMPLES, "--match", "none", "--lpips", "off", "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["matching"] == "none"
    assert [row["truth_index"] for row in data["images"]] == list(range(6))
    assert data["iip_pool_size"] == 6 + len(list(SAMPLES.glob("*.png")))
    assert set(data["summary"]["iip_spaces"]) == {"pixels", "penultimate"}
    # Without matching, reconstruction i is scored against the wrong original (pixels NN fails).
    assert data["summary"]["iip"] == pytest.approx(sum(p == i for i, p in enumerate(PERM)) / 6)


def test_bad_inputs(files, tmp_path):
    missing = invoke("evaluate", tmp_path / "nope.safetensors", "--truth", files.t)
    assert missing.exit_code == 66
    small = tmp_path / "small.safetensors"
    save_batch(BatchFile(torch.rand(2, 3, 16, 16), torch.tensor([0, 1])), small)
    result = invoke("evaluate", small, "--truth", files.t)
    assert result.exit_code == 65 and "truth images" in result.stderr
    result = invoke("evaluate", files.r, "--truth", files.t, "--update", files.t)
    assert result.exit_code == 65
    assert "Traceback" not in result.output
