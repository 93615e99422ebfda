"""One job: capture → labels → invert → evaluate through the library, a pure function of the
job's settings and its input files' bytes. It reads and writes only a private temporary folder
and returns its outputs as bytes, so it runs alike in a local worker and on a Ray node."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradinvert.runtime.errors import ExitCode, GradinvertError

OUTPUTS = ("scores.json", "labels.json", "recon.safetensors", "grid.png", "log.txt")
KEPT = ("update.safetensors", "truth.safetensors")  # --keep-updates: they hold the batch


@dataclass
class JobOutcome:
    """What a job returns to the driver: its files (name → bytes) or its error."""

    id: str
    ok: bool
    files: dict[str, bytes] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    seconds: float = 0.0
    host: str = ""


def _write_inputs(job: dict[str, Any], blobs: dict[str, bytes], folder: Path) -> dict[str, Any]:
    """Each input file written under ``folder`` (images numbered, so they keep their order)."""
    paths: dict[str, Any] = {}
    for role, ref in job["inputs"].items():
        if ref is None:
            paths[role] = None
        elif role == "images":
            paths[role] = []
            for index, (name, digest) in enumerate(ref):
                path = folder / f"{index:05d}{Path(name).suffix.lower()}"
                path.write_bytes(blobs[digest])
                paths[role].append(path)
        else:
            name, digest = ref
            suffix = "".join(Path(name).suffixes[-1:]) or ".bin"
            path = folder / f"{role}{suffix}"
            path.write_bytes(blobs[digest])
            paths[role] = path
    return paths


def _simulate(job: dict[str, Any], paths: dict[str, Any], work: Path, log: Any) -> Path:
    from gradinvert.client.pipeline import capture_files
    from gradinvert.config.capture import CaptureSettings
    from gradinvert.io.files import save_batch, save_update

    values = dict(job["capture"])
    values["labels"] = ",".join(str(label) for label in job["capture_labels"])
    if paths.get("weights") is not None:
        values["weights"] = str(paths["weights"])
    settings = CaptureSettings.model_validate(values)
    if paths.get("batch") is not None:  # the job's rows of a batch file, as a batch file
        from gradinvert.io.batch_input import load_any_batch
        from gradinvert.io.files import BatchFile

        whole, _ = load_any_batch(paths["batch"])
        rows = job["batch_rows"]
        sources = [work / "inputs" / "rows.safetensors"]
        save_batch(BatchFile(whole.images[rows], whole.labels[rows], {}), sources[0], True)
        names = [f"{job['inputs']['batch'][0]}[{i}]" for i in rows]
    else:
        sources = paths["images"]
        names = [name for name, _ in job["inputs"]["images"]]
    update, truth = capture_files(sources, settings, log=log)
    record = settings.record()
    record["weights"] = job["inputs"]["weights"][0] if job["inputs"].get("weights") else None
    update.config = record
    truth.metadata["files"] = names
    truth.metadata["config"] = record
    save_update(update, work / "update.safetensors")
    save_batch(truth, work / "truth.safetensors", deterministic=True)
    return work / "truth.safetensors"


def _attack(job: dict[str, Any], paths: dict[str, Any], labels: list[int]) -> Any:
    from gradinvert.config.invert import InvertSettings

    values = dict(job["invert"])
    for key in ("inverter", "generator", "generator_weights"):
        if paths.get(key) is not None:
            values[key] = str(paths[key])
    values["labels"] = labels
    values["device"] = job["device"]
    values["max_memory"] = "none"  # Ray and the local pool bound memory per job themselves
    return InvertSettings.model_validate(values)


def execute(job: dict[str, Any], blobs: dict[str, bytes], work: Path) -> dict[str, bytes]:
    """Run ``job`` in the empty folder ``work``; its outputs by file name."""
    import torch

    from gradinvert.config.evaluate import EvaluateSettings
    from gradinvert.config.labels import LabelsSettings
    from gradinvert.invert.pipeline import invert_file
    from gradinvert.io.atomic import write_text_atomic
    from gradinvert.io.files import save_batch
    from gradinvert.labels.pipeline import labels_file
    from gradinvert.metrics.pipeline import evaluate_files
    from gradinvert.report.grid import save_result_grid

    torch.set_num_threads(int(job["threads"]))
    lines: list[str] = []
    log = lines.append
    inputs = work / "inputs"
    inputs.mkdir()
    paths = _write_inputs(job, blobs, inputs)
    if job["kind"] == "simulated":
        truth_path: Path | None = _simulate(job, paths, work, log)
        update_path = work / "update.safetensors"
    else:
        update_path = paths["update"]
        truth_path = paths.get("truth")
    labels_settings = LabelsSettings.model_validate(job["labels"])
    document = labels_file(update_path, labels_settings, truth_path, log=log)
    write_text_atomic(work / "labels.json", json.dumps(document, indent=2) + "\n")
    config = _attack(job, paths, [int(v) for v in document["labels"]])
    recon = invert_file(update_path, config, progress=False, log=log)
    recon.metadata["update"] = "update.safetensors"
    record = dict(job["invert"], labels=config.labels)
    recon.metadata["config"] = {"command": "invert", **record}
    save_batch(recon, work / "recon.safetensors", deterministic=True)
    if truth_path is not None:
        settings = EvaluateSettings.model_validate(job["evaluate"])
        scored = evaluate_files(work / "recon.safetensors", truth_path, settings, log=log)
        result = scored.result
        result.update(recon="recon.safetensors", truth="truth.safetensors", update=None)
        result["label_restoration"] = {
            "method": document["method"],
            "accuracy": document.get("accuracy"),
        }
        write_text_atomic(work / "scores.json", json.dumps(result, indent=2) + "\n")
        save_result_grid(result, scored.truth.images, scored.recon.images, work / "grid.png")
    else:
        log("no truth file: reconstruction only, no scores")
    write_text_atomic(work / "log.txt", "".join(line + "\n" for line in lines))
    return {
        name: (work / name).read_bytes() for name in (*OUTPUTS, *KEPT) if (work / name).is_file()
    }


def run_job(job: dict[str, Any], blobs: dict[str, bytes], keep_updates: bool = False) -> JobOutcome:
    """Run one job; never raises for the job's own failure (it is recorded in the outcome)."""
    import socket

    start = time.perf_counter()
    host = socket.gethostname()
    tmp = tempfile.mkdtemp(prefix="gradinvert-job-")
    try:
        files = execute(job, blobs, Path(tmp))
    except GradinvertError as exc:
        return _failed(job, int(exc.exit_code), _local(exc.message, tmp), start, host)
    except Exception as exc:  # a job's crash is recorded, not the audit's end
        detail = "".join(traceback.format_exception(exc)[-3:])
        message = _local(f"{type(exc).__name__}: {exc}", tmp)
        return _failed(job, int(ExitCode.INTERNAL), message, start, host, detail)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep_updates:
        for name in KEPT:
            files.pop(name, None)
    return JobOutcome(job["id"], True, files, None, time.perf_counter() - start, host)


def _local(message: str, tmp: str) -> str:
    """``message`` without the job's temporary folder (input files by their role's name)."""
    return message.replace(os.path.join(tmp, "inputs") + os.sep, "").replace(tmp + os.sep, "")


def _failed(
    job: dict[str, Any], code: int, message: str, start: float, host: str, detail: str = ""
) -> JobOutcome:
    error = {"exit_code": code, "message": message, "traceback": detail, "pid": os.getpid()}
    return JobOutcome(job["id"], False, {}, error, time.perf_counter() - start, host)
