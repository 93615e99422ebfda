"""`gradinvert report`: the HTML's structure and content (rendering is `make report-check`)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from gradinvert.cli.main import app

runner = CliRunner()
DATA_IMG = re.compile(r'<img class="(plot|grid)" alt="[^"]*" src="data:image/png;base64,([^"]+)">')


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def audit(tmp_path_factory) -> Path:
    """Two real runs (capture → invert → evaluate) that differ only in the noise level."""
    root = tmp_path_factory.mktemp("audit")
    for noise in ("0", "0.1"):
        run = root / f"noise-{noise}"
        steps = [
            ["capture", "--model", "lenet", "--images", "samples/images32", "--batch-size", "2",
             "--labels", "0,1", "--noise", noise, "--device", "cpu",
             "--out", run / "u.safetensors", "--truth", run / "t.safetensors"],
            ["invert", run / "u.safetensors", "--attack", "ig", "--seeds", "1", "--iterations",
             "3", "--device", "cpu", "--no-progress", "--out", run / "r.safetensors"],
            ["evaluate", run / "r.safetensors", "--truth", run / "t.safetensors", "--lpips",
             "off", "--json", run / "scores.json", "--grid", run / "grid.png"],
        ]  # fmt: skip
        for step in steps:
            result = invoke(*step)
            assert result.exit_code == 0, result.output
    return root


def _report(audit: Path, *extra: object, runs=("0", "0.1")) -> str:
    out = audit / "report.html"
    scores = [audit / f"noise-{n}" / "scores.json" for n in runs]
    result = invoke("report", *scores, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def _png(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def test_every_run_has_a_row_with_its_settings_and_scores(audit: Path):
    page = _report(audit)
    rows = re.findall(r'<tr class="run">(.*?)</tr>', page)
    assert len(rows) == 2
    for noise, row in zip(("0", "0.1"), rows, strict=True):
        summary = json.loads((audit / f"noise-{noise}" / "scores.json").read_text())["summary"]
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[0].endswith(f"noise-{noise}/scores.json")
        assert (
            f"{summary['psnr']['mean']:.2f}" in cells and f"{summary['ssim']['mean']:.3f}" in cells
        )
        assert ["ig", "lenet", "2", "eval", "gradient", noise] == cells[1:7]


def test_plot_and_grids_are_embedded_images(audit: Path):
    page = _report(audit)
    images = DATA_IMG.findall(page)
    assert [kind for kind, _ in images] == ["plot", "grid", "grid"]
    assert "against noise" in page
    plot = _png(images[0][1])
    assert plot.width > 600 and len(set(plot.tobytes())) > 10  # drawn, not blank
    for noise, (_, data) in zip(("0", "0.1"), images[1:], strict=True):
        expected = Image.open(audit / f"noise-{noise}" / "grid.png").convert("RGB")
        grid = _png(data)
        assert grid.size == expected.size and grid.tobytes() == expected.tobytes()


def test_nothing_is_fetched_from_outside(audit: Path):
    page = _report(audit, "--fail-above", "psnr=5")
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "DATA", page)
    assert not re.search(r"https?:|ftp:|//[a-z]|<link|<script|@import|url\(", text, re.I)
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


@pytest.mark.parametrize("bar", ["0", "100"])
def test_verdict_agrees_with_evaluates_gate(audit: Path, bar: str):
    page = _report(audit, "--fail-above", f"psnr={bar}")
    cells = re.findall(r'<td class="(pass|fail)">', page)
    for noise, cell in zip(("0", "0.1"), cells, strict=True):
        run = audit / f"noise-{noise}"
        gate = invoke(
            "evaluate", run / "r.safetensors", "--truth", run / "t.safetensors", "--lpips", "off",
            "--fail-above", f"psnr={bar}",
        )  # fmt: skip
        assert (cell == "fail") == (gate.exit_code == 1)
    verdict = re.search(r'<p id="verdict" class="(pass|fail)">(.*?)</p>', page)
    assert verdict is not None
    assert verdict.group(1) == ("fail" if "fail" in cells else "pass")


def test_one_run_has_no_plot_and_no_bars_no_verdict(audit: Path):
    page = _report(audit, runs=("0",))
    assert [kind for kind, _ in DATA_IMG.findall(page)] == ["grid"]
    assert "No sweep plot: one run" in page and "no verdict" in page


def test_bad_scores_files(audit: Path, tmp_path: Path):
    out = tmp_path / "report.html"
    assert invoke("report", tmp_path / "none.json", "--out", out).exit_code == 66
    (tmp_path / "other.json").write_text('{"labels": [1, 2]}')
    result = invoke("report", tmp_path / "other.json", "--out", out)
    assert result.exit_code == 65 and "not an `evaluate --json` scores file" in result.output
    assert not out.exists()


def test_a_pass_from_attacks_below_their_budget_says_it_is_weak_evidence(audit: Path):
    page = _report(audit, "--fail-above", "psnr=99")
    verdict = re.search(r'<p id="verdict" class="pass">(.*?)</p>', page)
    assert verdict is not None
    text = verdict.group(1).replace("&#x27;", "'")
    assert "weak evidence: 2 of them ran their attack below its preset's iteration budget" in text
    assert "ig 3 of 4800 iterations" in text
