"""`gradinvert audit`: a whole grid of attacks from one plan, resumable, on this machine or Ray."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from gradinvert.cli.common import console, handle_errors, labelled
from gradinvert.cli.options import with_settings
from gradinvert.config.audit import AuditSettings
from gradinvert.runtime.errors import ExitCode


def _dry_run(loaded: Any, grid: Any, out: Path) -> None:
    from gradinvert.audit.estimate import job_memory
    from gradinvert.audit.runner import unique_jobs
    from gradinvert.audit.store import Store
    from gradinvert.runtime.resources import human_bytes

    jobs = unique_jobs(grid)
    store = Store(out)
    done = sum(store.done(j["id"]) for j in jobs)
    failed = sum(store.failed(j["id"]) for j in jobs)
    lines = [
        f"{loaded.plan.title}: {len(jobs)} jobs ({len(grid.jobs)} grid cells × batches), "
        f"{done} finished and {failed} failed in {out}"
    ]
    lines.append("axes:" if grid.axes else "axes: none (one cell)")
    for name, values in grid.axes.items():
        lines.append(f"  {name} ({len(values)}): " + ", ".join(str(v) for v in values))
    sizes = [m for m in (job_memory(j, grid.blobs) for j in jobs) if m is not None]
    resources = loaded.plan.resources
    if sizes:
        lines.append(
            f"memory per job: about {human_bytes(max(sizes))} at most, "
            f"{human_bytes(sum(sizes) / len(sizes))} on average (with ~1 GB for the process)"
        )
    else:
        lines.append("memory per job: known once the recorded updates are read")
    lines.append(
        f"each job asks for {resources.cpus} cpu, {resources.gpus:g} gpu"
        + (f", {resources.memory}" if resources.memory else "")
    )
    typer.echo("\n".join(lines))


def _progress_display() -> tuple[Any, Any]:
    from gradinvert.runtime.runstate import stderr_progress

    progress = stderr_progress(
        "audit",
        "done {task.fields[done]} running {task.fields[running]} failed "
        "{task.fields[failed]} skipped {task.fields[skipped]}",
        tail="{task.fields[now]}",
    )
    task = progress.add_task("audit", total=None, done=0, running=0, failed=0, skipped=0, now="")

    def update(tally: Any, started: float) -> None:
        now = "; ".join(list(tally.running.values())[:4])
        progress.update(
            task,
            total=tally.total - tally.skipped,
            completed=tally.done + tally.failed,
            done=tally.done,
            running=len(tally.running),
            failed=tally.failed,
            skipped=tally.skipped,
            now=now[:120],
        )

    return progress, update


@handle_errors
@with_settings(AuditSettings)
def audit(
    plan: Annotated[Path, typer.Argument(help="The audit plan (TOML).", metavar="PLAN")],
    *,
    out: Annotated[
        Path, typer.Option("--out", help="Results folder (jobs/, results.csv, report.html).")
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the grid (jobs, axes, memory per job) and exit."),
    ] = False,
    config: AuditSettings,
) -> None:
    """Run a whole audit — a grid of capture → labels → invert → evaluate jobs — from one plan.

    Every list-valued setting of the plan is an axis of the grid. Each job's outputs go to
    OUT/jobs/ID/, the id a hash of its settings and input files, so a rerun skips finished
    jobs and an edited plan runs only its new cells. At the end: OUT/results.csv,
    OUT/results.json and OUT/report.html. Exit 1 when a cell leaks above a bar (--fail-above
    or the plan's evaluation.fail_above), 65 for an invalid plan, 69 when --executor ray lacks
    Ray, the failed jobs' exit code when jobs failed, 130/143 when interrupted.
    """
    from gradinvert.audit.grid import expand
    from gradinvert.audit.plan import load_plan
    from gradinvert.audit.report import write_report
    from gradinvert.audit.results import result_rows, write_results
    from gradinvert.audit.runner import run_audit
    from gradinvert.audit.store import Store
    from gradinvert.metrics.gates import parse_gate

    loaded = load_plan(plan)
    gates = [parse_gate(g) for g in [*loaded.plan.evaluation.fail_above, *config.fail_above]]
    grid = expand(loaded)
    if dry_run:
        _dry_run(loaded, grid, out)
        return
    if config.executor == "ray":
        from gradinvert.audit.executors.ray import import_ray

        import_ray()  # exit 69 before anything runs
    from gradinvert.io.atomic import make_folder, write_text_atomic

    make_folder(out)
    write_text_atomic(out / "plan.toml", loaded.text)
    say = lambda message: console.print(message, soft_wrap=True)  # noqa: E731
    progress, update = _progress_display()
    start = time.perf_counter()
    with progress:
        grid, tally, stop = run_audit(loaded, out, config, update, say, grid)
    rows = result_rows(grid, Store(out), gates)
    write_results(rows, out)
    write_report(loaded, grid, rows, gates, out / "report.html")
    seconds = time.perf_counter() - start
    console.print(
        f"{tally.done} jobs run, {tally.skipped} skipped (finished before), {tally.failed} "
        f"failed in {seconds:.1f} s; results: {out / 'results.csv'}, report: "
        f"{out / 'report.html'}",
        soft_wrap=True,
    )
    if stop.signals:
        import signal

        terminated = signal.SIGTERM in stop.signals
        console.print("terminated" if terminated else "interrupted: rerun to finish the audit")
        raise typer.Exit(int(ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED))
    leaking = [row for row in rows if row["leaks"]]
    failed = [row for row in rows if row["status"] == "failed"]
    for row in leaking[:10]:
        console.print(
            labelled("gate tripped:", "bold red", f"job {row['job'][:8]}: {row['leaks']}"),
            soft_wrap=True,
        )
    if failed:
        console.print(
            labelled(
                "failed:",
                "bold red",
                f"{len(failed)} jobs (see {out}/jobs/<id>/error.json); rerun with --retry-failed",
            ),
            soft_wrap=True,
        )
    if leaking:
        raise typer.Exit(int(ExitCode.GATE_TRIPPED))
    if failed:
        codes = {Store(out).error(row["job"]).get("exit_code") for row in failed}
        raise typer.Exit(int(codes.pop()) if len(codes) == 1 else int(ExitCode.INTERNAL))
