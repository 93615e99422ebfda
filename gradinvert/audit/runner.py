"""An audit from plan to results: expand the grid, skip finished jobs, run the rest on an
executor while the driver writes each outcome, then the results table, the report and the
verdict. Ctrl-C/SIGTERM stop the scheduling (a second one, or ``cancel``, stops running jobs)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradinvert.audit.executors import StopFlag
from gradinvert.audit.grid import Grid, expand
from gradinvert.audit.job import JobOutcome
from gradinvert.audit.plan import LoadedPlan
from gradinvert.audit.store import Store
from gradinvert.config.audit import AuditSettings

Log = Callable[[str], None]


@dataclass
class Tally:
    """Jobs by state, for the progress display and the summary line."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    running: dict[str, str] = field(default_factory=dict)  # id -> label


def unique_jobs(grid: Grid) -> list[dict[str, Any]]:
    """Each job once (two cells with the same settings and inputs are one job)."""
    seen: dict[str, dict[str, Any]] = {}
    for job in grid.jobs:
        seen.setdefault(job["id"], job)
    return list(seen.values())


def job_label(job: dict[str, Any], axes: list[str]) -> str:
    """The job's swept settings in a few words."""
    cell = {**job["cell"], "attack": job["attack_name"], "batch": job["batch"]}
    cell.update({f"attack.{k}": v for k, v in job["attack"].items()})
    return " ".join(f"{a.split('.')[-1]}={cell[a]}" for a in axes if a in cell) or job["id"][:8]


@contextlib.contextmanager
def stop_on_signals(stop: StopFlag, cancel: bool) -> Iterator[None]:
    """First Ctrl-C/SIGTERM: stop scheduling (and cancel when asked); second: cancel."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        stop.signals.append(signum)
        stop.cancel = stop.cancel or stop.stop or cancel
        stop.stop = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_audit(
    loaded: LoadedPlan,
    out: Path,
    settings: AuditSettings,
    progress: Any = None,
    log: Log = print,
    grid: Grid | None = None,
) -> tuple[Grid, Tally, StopFlag]:
    """Run every unfinished job of the plan, writing each outcome under ``out`` as it comes."""
    grid = grid or expand(loaded)
    store = Store(out)
    store.clear_unfinished()
    jobs = unique_jobs(grid)
    tally = Tally(total=len(jobs))
    todo = []
    for job in jobs:
        if store.done(job["id"]) or (store.failed(job["id"]) and not settings.retry_failed):
            tally.skipped += 1
        else:
            todo.append(job)
    axes = list(grid.axes)
    stop = StopFlag()
    started = time.perf_counter()

    def on_start(job: dict[str, Any]) -> None:
        tally.running[job["id"]] = job_label(job, axes)
        if progress is not None:
            progress(tally, started)

    def on_done(job: dict[str, Any], outcome: JobOutcome) -> None:
        tally.running.pop(job["id"], None)
        store.record(job, outcome)
        if outcome.ok:
            tally.done += 1
        else:
            tally.failed += 1
            error = outcome.error or {}
            log(f"job {job['id'][:8]} ({job_label(job, axes)}) failed: {error.get('message')}")
        if progress is not None:
            progress(tally, started)

    if progress is not None:
        progress(tally, started)
    with stop_on_signals(stop, settings.cancel):
        if todo and settings.executor == "ray":
            from gradinvert.audit.executors.ray import run_ray

            run_ray(
                todo,
                grid.blobs,
                loaded.plan.resources,
                settings.address,
                settings.keep_updates,
                stop,
                on_start,
                on_done,
            )
        elif todo:
            from gradinvert.audit.executors.local import default_workers, run_local, visible_gpus

            resources = loaded.plan.resources
            gpus = visible_gpus() if resources.device != "cpu" else []
            workers = settings.workers or default_workers(resources.cpus, resources.gpus, len(gpus))
            run_local(
                todo,
                grid.blobs,
                min(workers, len(todo)),
                settings.keep_updates,
                stop,
                on_start,
                on_done,
                gpus,
                resources.cpus,
            )
    return grid, tally, stop
