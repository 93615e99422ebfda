"""Running audits locally: finished jobs are skipped on a rerun, an edited plan recomputes only
its new cells, a failing job is recorded while the others finish, 1 and 2 workers give
byte-identical outputs, and a driver killed with SIGKILL loses nothing it had finished."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit_support import job_files, write_plan
from typer.testing import CliRunner

from gradinvert.cli.main import app


def _audit(*args: object) -> object:
    return CliRunner().invoke(app, ["audit", *(str(a) for a in args)])


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_rerun_skips_and_an_edited_plan_runs_only_new_cells(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, noise="[0.0]")
    out = tmp_path / "out"
    result = _audit(plan, "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    first = job_files(out)
    results = (out / "results.csv").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "jobs").rglob("done.json")}
    assert len(stamps) == 1

    result = _audit(plan, "--out", out, "--workers", "1")
    assert result.exit_code == 0
    assert "0 jobs run, 1 skipped" in _flat(result.output)
    assert job_files(out) == first and (out / "results.csv").read_bytes() == results

    plan.write_text(plan.read_text().replace("noise = [0.0]", "noise = [0.0, 0.01]"))
    result = _audit(plan, "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "1 jobs run, 1 skipped" in _flat(result.output)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the old job untouched
    rows = (out / "results.csv").read_text().splitlines()
    assert (
        len(rows) == 3 and rows[1].split(",")[0] == results.decode().splitlines()[1].split(",")[0]
    )


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, noise="0.0", victim='weights = ["init", "broken.safetensors"]')
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "out"
    result = _audit(plan, "--out", out, "--workers", "2")
    assert result.exit_code == 65, result.output  # the failed job's own exit code
    assert "failed: 1 jobs" in result.output
    errors = list((out / "jobs").rglob("error.json"))
    assert len(errors) == 1 and '"exit_code": 65' in errors[0].read_text()
    assert len(list((out / "jobs").rglob("done.json"))) == 1
    statuses = [line.split(",") for line in (out / "results.csv").read_text().splitlines()]
    status = statuses[0].index("status")
    assert sorted(row[status] for row in statuses[1:]) == ["done", "failed"]
    # a rerun leaves the failure alone; --retry-failed runs it again
    assert "0 jobs run, 2 skipped" in _flat(_audit(plan, "--out", out).output)
    again = _flat(_audit(plan, "--out", out, "--retry-failed").output)
    assert "0 jobs run, 1 skipped (finished before), 1 failed" in again
    assert "failed: weights.safetensors: not a" in again


def test_one_and_two_workers_give_byte_identical_outputs(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, batch_size="[1, 2]", iterations=3)
    one, two = tmp_path / "one", tmp_path / "two"
    assert _audit(plan, "--out", one, "--workers", "1").exit_code == 0
    assert _audit(plan, "--out", two, "--workers", "2").exit_code == 0
    assert len(job_files(one)) == 4 * 6
    assert job_files(one) == job_files(two)
    for name in ("results.csv", "results.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    page = (one / "report.html").read_text()
    for axis in ("data.batch_size", "defense.noise"):
        assert f"<h2>psnr, ssim, label_acc against {axis}</h2>" in page
        # each plot is also a file, the same PNG the page shows
        plot = (one / "plots" / f"{axis}.png").read_bytes()
        assert plot.startswith(b"\x89PNG") and plot == (two / "plots" / f"{axis}.png").read_bytes()
        assert base64.b64encode(plot).decode() in page
    assert sorted(p.name for p in (one / "plots").iterdir()) == [
        "data.batch_size.png",
        "defense.noise.png",
    ]
    assert page.count('<img class="grid"') == 4


def test_fail_above_gates_the_exit_code_and_the_report_says_what_it_rests_on(
    tmp_path: Path,
) -> None:
    plan = write_plan(tmp_path, noise="0.0")
    out = tmp_path / "out"
    result = _audit(plan, "--out", out, "--fail-above", "psnr=1")
    assert result.exit_code == 1 and "gate tripped" in _flat(result.output)
    result = _audit(plan, "--out", out, "--fail-above", "psnr=90")
    assert result.exit_code == 0
    page = (out / "report.html").read_text()
    assert "PASS" not in page
    assert "weak evidence: 1 of them ran their attack below its preset" in page
    assert "ig: 2 iterations, 1 restarts, seed 0 (its preset&#x27;s budget: 4800 iterations" in page


def test_a_killed_driver_loses_nothing_finished(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, batch_size="[1, 2]", batches=2, noise="[0.0]", iterations=40)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gradinvert", "audit", str(plan), "--out", str(out)]
    driver = subprocess.Popen(
        [*command, "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list((out / "jobs").rglob("done.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        done_before = {p.parent.name: p.read_bytes() for p in (out / "jobs").rglob("done.json")}
        assert done_before, "no job finished in time"
        outputs_before = {k: v for k, v in job_files(out).items() if k.split("/")[1] in done_before}
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers, at once
        driver.wait()
    assert driver.returncode == -signal.SIGKILL
    rerun = subprocess.run([*command, "--workers", "2"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    counts = re.search(r"(\d+) jobs run, (\d+) skipped", " ".join(rerun.stderr.split()))
    assert counts is not None, rerun.stderr
    skipped = int(counts.group(2))
    assert skipped >= len(done_before)
    after = job_files(out)
    assert len(list((out / "jobs").rglob("done.json"))) == 4
    for name, data in outputs_before.items():
        assert after[name] == data


def test_the_ray_executor_without_ray_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    plan = write_plan(tmp_path)
    result = _audit(plan, "--out", tmp_path / "out", "--executor", "ray")
    assert result.exit_code == 69
    assert "pip install 'gradinvert[ray]'" in _flat(result.output)
    assert not (tmp_path / "out").exists()
