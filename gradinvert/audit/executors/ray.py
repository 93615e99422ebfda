"""The Ray executor: each job a Ray task with the plan's cpus, gpus and memory; ``max_retries``
runs a job again when its worker or node is lost. Nothing relies on a shared filesystem: each
input file is put in Ray's object store once and travels with the jobs that read it, and every
outcome (the files as bytes) comes back to the driver, which alone writes the results folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gradinvert.audit.executors import OnDone, OnStart, StopFlag, input_digests
from gradinvert.audit.job import JobOutcome, run_job
from gradinvert.runtime.errors import ExitCode, UnavailableError

INSTALL_HINT = "pip install 'gradinvert[ray]' (or: make install, which includes it)"


def import_ray() -> Any:
    """The ``ray`` module, or exit 69 saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UnavailableError(f"--executor ray needs Ray: {INSTALL_HINT}") from None
    return ray


def _remote_job(job: dict[str, Any], keep: bool, digests: list[str], *data: bytes) -> JobOutcome:
    return run_job(job, dict(zip(digests, data, strict=True)), keep)


def parse_memory(text: str | None) -> int | None:
    """Ray's memory request in bytes from e.g. ``2GB`` (None: none)."""
    if not text:
        return None
    from gradinvert.runtime.resources import parse_memory as parse

    return parse(text)


def run_ray(
    jobs: list[dict[str, Any]],
    blobs: dict[str, Path],
    resources: Any,
    address: str | None,
    keep_updates: bool,
    stop: StopFlag,
    on_start: OnStart,
    on_done: OnDone,
) -> None:
    """Run ``jobs`` as Ray tasks on the cluster at ``address`` (None: a local Ray started for
    this audit), at most two per free slot in flight, outcomes handled as they arrive."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address:
            options["address"] = address
        else:  # a private instance: never join a cluster a stale /tmp/ray record names
            options["address"] = "local"
            options["num_cpus"] = os.cpu_count() or 1
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UnavailableError(f"--address {address}: no Ray cluster there ({exc})") from None
    try:
        _schedule(ray, jobs, blobs, resources, keep_updates, stop, on_start, on_done)
    finally:
        if started:
            ray.shutdown()


def _schedule(
    ray: Any,
    jobs: list[dict[str, Any]],
    blobs: dict[str, Path],
    resources: Any,
    keep_updates: bool,
    stop: StopFlag,
    on_start: OnStart,
    on_done: OnDone,
) -> None:
    task = ray.remote(_remote_job).options(
        num_cpus=resources.cpus,
        num_gpus=resources.gpus,
        memory=parse_memory(resources.memory),
        max_retries=resources.retries,
        retry_exceptions=False,
    )
    total = ray.cluster_resources()
    slots = int(total.get("CPU", 1) // resources.cpus)
    if resources.gpus > 0:
        slots = min(slots, int(total.get("GPU", 0) / resources.gpus))
    window = max(2, 2 * slots)
    refs: dict[str, Any] = {}  # digest -> object ref, each file put once
    pending = list(reversed(jobs))
    running: dict[Any, dict[str, Any]] = {}
    while (pending and not stop.stop) or running:
        while pending and len(running) < window and not stop.stop:
            job = pending.pop()
            digests = input_digests(job)
            for digest in digests:
                if digest not in refs:
                    refs[digest] = ray.put(blobs[digest].read_bytes())
            ref = task.remote(job, keep_updates, digests, *(refs[d] for d in digests))
            running[ref] = job
            on_start(job)
        if stop.cancel:
            for ref in running:
                ray.cancel(ref, force=True)
            return
        ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
        for ref in ready:
            job = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # the task was lost beyond its retries
                message = (
                    f"Ray: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                )
                error = {"exit_code": int(ExitCode.INTERNAL), "message": message}
                outcome = JobOutcome(job["id"], False, error=error)
            on_done(job, outcome)
