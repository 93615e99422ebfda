"""The benchmarks score reconstructions exactly as `gradinvert evaluate` does.

benchmarks/vs_breaching.py, ig_tuning.py and gias_search.py report PSNR / SSIM through
``gias_search._scores`` (Hungarian matching on MSE, then per-pair metrics); the figures they print
must be the ones a user gets from ``evaluate`` on the same two batches.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from gradinvert.cli.main import app

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def vs_breaching():  # noqa: ANN201
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import vs_breaching

        yield vs_breaching
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_vs_breaching_scores_equal_evaluate(vs_breaching, tmp_path: Path) -> None:  # noqa: ANN001
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(4, 3, 16, 16, generator=generator)
    noisy = truth + 0.1 * torch.randn(truth.shape, generator=generator)
    recon = noisy.clamp(0, 1)[torch.tensor([2, 0, 3, 1])]  # out of order: matching must undo it
    labels = torch.tensor([1, 2, 3, 4])
    save_file({"images": truth, "labels": labels}, str(tmp_path / "t.safetensors"))
    save_file({"images": recon, "labels": labels}, str(tmp_path / "r.safetensors"))

    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "r.safetensors"),
            "--truth",
            str(tmp_path / "t.safetensors"),
            "--lpips",
            "off",
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]

    psnr, ssim = vs_breaching.mean_score(recon, truth)
    assert psnr == pytest.approx(summary["psnr"]["mean"], abs=1e-6)
    assert ssim == pytest.approx(summary["ssim"]["mean"], abs=1e-6)
    # and the matching found the permutation: scores are those of the aligned pairs
    aligned = noisy.clamp(0, 1)
    mse = ((aligned - truth) ** 2).flatten(1).mean(1)
    assert psnr == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), abs=1e-4)
