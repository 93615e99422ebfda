"""The results folder ``DIR``: ``DIR/jobs/<id>/`` holds one job's outputs, each written
atomically, and ``done.json`` last — a job is finished exactly when its ``done.json`` exists,
so a driver killed at any moment loses only unfinished jobs. A failed job leaves
``error.json`` (exit code, message) instead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gradinvert.audit.job import JobOutcome
from gradinvert.io.atomic import atomic_path, make_folder, write_text_atomic

PRIVATE = (".safetensors", ".png")  # images of people's data: owner-only


class Store:
    """Finished and failed jobs of an audit's results folder."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.jobs = self.out / "jobs"

    def folder(self, job_id: str) -> Path:
        return self.jobs / job_id

    def done(self, job_id: str) -> bool:
        return (self.folder(job_id) / "done.json").is_file()

    def failed(self, job_id: str) -> bool:
        return not self.done(job_id) and (self.folder(job_id) / "error.json").is_file()

    def record(self, job: dict[str, Any], outcome: JobOutcome) -> None:
        """Write a job's outcome: its files then ``done.json``, or ``error.json``."""
        folder = make_folder(self.folder(job["id"]), private=True)
        write_text_atomic(folder / "job.json", json.dumps(job, indent=2, sort_keys=True) + "\n")
        timing = {"seconds": round(outcome.seconds, 3), "host": outcome.host}
        if not outcome.ok:
            write_text_atomic(
                folder / "error.json", json.dumps({**(outcome.error or {}), **timing}, indent=2)
            )
            return
        for name, data in outcome.files.items():
            with atomic_path(folder / name, private=name.endswith(PRIVATE)) as tmp:
                tmp.write_bytes(data)
        (folder / "error.json").unlink(missing_ok=True)
        write_text_atomic(folder / "done.json", json.dumps({"ok": True, **timing}, indent=2))

    def forget_failure(self, job_id: str) -> None:
        (self.folder(job_id) / "error.json").unlink(missing_ok=True)

    def error(self, job_id: str) -> dict[str, Any] | None:
        path = self.folder(job_id) / "error.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def scores(self, job_id: str) -> dict[str, Any] | None:
        path = self.folder(job_id) / "scores.json"
        if not self.done(job_id) or not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def seconds(self, job_id: str) -> float | None:
        path = self.folder(job_id) / "done.json"
        if not path.is_file():
            return None
        return float(json.loads(path.read_text(encoding="utf-8")).get("seconds", 0.0))

    def clear_unfinished(self) -> None:
        """Remove folders of jobs that neither finished nor failed (a killed run's leftovers)."""
        if not self.jobs.is_dir():
            return
        for folder in self.jobs.iterdir():
            finished = (folder / "done.json").exists() or (folder / "error.json").exists()
            if folder.is_dir() and not finished:
                shutil.rmtree(folder, ignore_errors=True)
