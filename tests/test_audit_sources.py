"""Other sources of an audit's batches: rows of a batch file, and updates recorded elsewhere
(with truth files where the auditor has them: scores there, reconstructions everywhere); and
SIGTERM, which stops the scheduling, keeps what finished and exits 143."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit_support import run_plan, write_plan

from gradinvert.audit.grid import expand
from gradinvert.audit.plan import load_plan


def test_rows_of_a_batch_file_are_cut_into_batches(tmp_path: Path) -> None:
    import torch

    from gradinvert.io.files import BatchFile, save_batch

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=generator)
    save_batch(BatchFile(images, torch.tensor([3, 1, 4, 1]), {}), tmp_path / "b.safetensors")
    plan = write_plan(tmp_path, batch_size=2, batches=2, noise="0.0")
    plan.write_text(plan.read_text().replace('images = "imgs"', 'images = "b.safetensors"'))
    grid = expand(load_plan(plan))
    assert [j["batch_rows"] for j in grid.jobs] == [[0, 1], [2, 3]]
    assert [j["capture_labels"] for j in grid.jobs] == [[3, 1], [4, 1]]
    out = tmp_path / "out"
    _, tally, _ = run_plan(plan, out, workers=1, keep_updates=True)
    assert tally.done == 2
    from gradinvert.io.files import load_batch

    for job in grid.jobs:
        truth = load_batch(out / "jobs" / job["id"] / "truth.safetensors")
        assert torch.equal(truth.images, images[job["batch_rows"]])
        assert truth.labels.tolist() == job["capture_labels"]


def test_recorded_updates_are_attacked_and_scored_where_truth_exists(tmp_path: Path) -> None:
    source = tmp_path / "source"
    run_plan(write_plan(source), source / "out", workers=1, keep_updates=True)
    recorded = tmp_path / "rec"
    (recorded / "updates").mkdir(parents=True)
    (recorded / "truth").mkdir()
    for index, folder in enumerate(sorted((source / "out" / "jobs").iterdir())):
        shutil.copy(folder / "update.safetensors", recorded / "updates" / f"u{index}.safetensors")
        if index == 0:  # the auditor has only the first client's batch
            shutil.copy(folder / "truth.safetensors", recorded / "truth" / "u0.safetensors")
    plan = recorded / "plan.toml"
    plan.write_text(
        'schema_version = 1\n[recorded]\nupdates = "updates/*.safetensors"\n'
        'truth = "truth/{stem}.safetensors"\n[[attack]]\npreset = "ig"\niterations = 2\n'
        '[resources]\ndevice = "cpu"\n'
    )
    out = recorded / "out"
    from typer.testing import CliRunner

    from gradinvert.cli.main import app

    result = CliRunner().invoke(
        app, ["audit", str(plan), "--out", str(out), "--fail-above", "psnr=90"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())
    assert [r["batch"] for r in rows] == ["u0.safetensors", "u1.safetensors"]
    assert rows[0]["psnr"] is not None and rows[1]["psnr"] is None
    assert all(r["status"] == "done" for r in rows)
    assert all((out / "jobs" / r["job"] / "recon.safetensors").is_file() for r in rows)
    assert "1 of 2 cells have no truth to score against" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("stop", "code", "cancel"),
    [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)],
    ids=["sigterm", "ctrl-c", "sigterm-cancel"],
)
def test_a_stop_ends_scheduling_and_keeps_what_finished(
    tmp_path: Path, stop: signal.Signals, code: int, cancel: bool
) -> None:
    # with --cancel, jobs long enough that the one running at the stop cannot end unnoticed
    iterations = 400 if cancel else 40
    plan = write_plan(
        tmp_path, batch_size="[1, 2]", batches=2, noise="[0.0]", iterations=iterations
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gradinvert", "audit", str(plan), "--out", str(out)]
    command += ["--workers", "1", *(["--cancel"] if cancel else [])]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((out / "jobs").glob("*/done.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    at_stop = len(list((out / "jobs").glob("*/done.json")))
    driver.send_signal(stop)
    _, stderr = driver.communicate(timeout=240)
    assert driver.returncode == code, stderr
    finished = len(list((out / "jobs").glob("*/done.json")))
    # without --cancel the job running at the stop may finish; with it, it is stopped
    assert 1 <= at_stop <= finished <= (at_stop if cancel else at_stop + 1) and finished < 4
    assert (out / "results.csv").is_file()
    statuses = [r["status"] for r in json.loads((out / "results.json").read_text())]
    assert statuses.count("done") == finished and statuses.count("not run") == 4 - finished
