"""The local executor: ``workers`` processes on this machine (spawned, so each starts clean),
at most one job each at a time; GPUs handed out round-robin with ``CUDA_VISIBLE_DEVICES``.
Workers ignore Ctrl-C: the driver decides whether running jobs finish or are cancelled."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from gradinvert.audit.executors import OnDone, OnStart, StopFlag, read_blobs
from gradinvert.audit.job import JobOutcome, run_job
from gradinvert.runtime.errors import ExitCode

CRASHES = 2  # a job whose worker dies this often is recorded as failed


def default_workers(cpus_per_job: int, gpus_per_job: float, gpus: int) -> int:
    """The cores / the job's cpus (and no more jobs than the GPUs hold, when jobs need GPUs)."""
    workers = max(1, (os.cpu_count() or 1) // cpus_per_job)
    if gpus_per_job > 0 and gpus > 0:
        workers = min(workers, max(1, int(gpus / gpus_per_job)))
    return workers


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _start_worker(slots: Any, gpus: list[str], threads: int) -> None:
    """Before anything is imported: ignore Ctrl-C, size every thread pool (OpenMP, MKL,
    OpenBLAS) to the job's cpus as Ray does, and take a GPU round-robin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]


def visible_gpus() -> list[str]:
    """The CUDA devices this machine shows (none without torch's CUDA)."""
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def run_local(
    jobs: list[dict[str, Any]],
    blobs: dict[str, Path],
    workers: int,
    keep_updates: bool,
    stop: StopFlag,
    on_start: OnStart,
    on_done: OnDone,
    gpus: list[str] | None = None,
    threads: int = 1,
) -> None:
    """Run ``jobs`` on ``workers`` processes of ``threads`` threads each, calling back as each
    starts and ends."""
    context = multiprocessing.get_context("spawn")
    pending = deque(jobs)
    crashes: dict[str, int] = {}
    while pending and not stop.stop:
        slots = context.Queue()
        for slot in range(workers):
            slots.put(slot)
        pool = ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(slots, gpus or [], threads),
        )
        running: dict[Future[JobOutcome], dict[str, Any]] = {}
        broken = False
        try:
            while (pending and not stop.stop) or running:
                while pending and len(running) < workers and not stop.stop:
                    job = pending.popleft()
                    future = pool.submit(run_job, job, read_blobs(job, blobs), keep_updates)
                    running[future] = job
                    on_start(job)
                if stop.cancel:
                    _kill(pool)
                    return
                finished, _ = wait(list(running), timeout=0.25, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        on_done(job, future.result())
                    except BrokenProcessPool:
                        broken = True
                        crashes[job["id"]] = crashes.get(job["id"], 0) + 1
                        if crashes[job["id"]] >= CRASHES:
                            message = f"its worker process died {CRASHES} times"
                            error = {"exit_code": int(ExitCode.INTERNAL), "message": message}
                            on_done(job, JobOutcome(job["id"], False, error=error))
                        else:
                            pending.appendleft(job)
                if broken:
                    for job in running.values():  # lost with the pool: run again
                        pending.appendleft(job)
                    running.clear()
                    break
        finally:
            if stop.cancel:
                _kill(pool)
            pool.shutdown(wait=not stop.cancel, cancel_futures=True)
        if not broken:
            return


def _kill(pool: ProcessPoolExecutor) -> None:
    """Stop the running jobs at once (``--cancel``)."""
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()
