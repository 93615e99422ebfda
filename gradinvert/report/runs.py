"""One audit run as the report sees it: its scores, its settings and its images.

``evaluate --json`` writes the scores and names the files it read; the settings (attack, model,
batch size, defense, ...) come from the reconstruction's metadata and the update it attacked.
Paths are tried as written and relative to the scores file, so a report can be made from another
folder. Files that cannot be found leave a note instead of a setting or grid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradinvert.io.batch_input import load_any_batch
from gradinvert.io.files import load_update
from gradinvert.runtime.errors import GradinvertError, InvalidInputError, MissingInputError

# The settings compared across runs, in table order (None: not known for that run).
SETTINGS = (
    "attack",
    "model",
    "batch_size",
    "mode",
    "update",
    "noise",
    "clip",
    "prune",
    "dp_noise_multiplier",
    "epsilon",
    "clients",
    "compression",
    "iterations",
    "seeds",
    "local_steps",
)


@dataclass
class Run:
    """A scores file and what the report could learn about it."""

    name: str
    scores: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    truth: torch.Tensor | None = None
    recon: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # every file read: scores, recon, truth, ...

    @property
    def summary(self) -> dict[str, Any]:
        return self.scores["summary"]


def read_scores(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An ``evaluate --json`` document, checked to have a summary and per-image rows."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such scores file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputError(f"{path}: not a JSON file") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("summary"), dict)
        or not isinstance(data.get("images"), list)
    ):
        raise InvalidInputError(f"{path}: not an `evaluate --json` scores file")
    return data


def _find(value: Any, base: Path) -> Path | None:
    if not isinstance(value, str) or not value:
        return None
    for candidate in (Path(value), base / value):
        if candidate.is_file():
            return candidate
    return None


def defense_settings(defense: list[dict[str, Any]]) -> dict[str, Any]:
    """noise (std or Laplace scale), clip (max norm) and prune (fraction) of an update (0: off);
    DP-SGD's noise multiplier and ε (None: no DP-SGD or ε unknown), the clients of a secure
    aggregate and the compression (sign or quantize:BITS); None: not used."""
    found: dict[str, Any] = {
        "noise": 0.0,
        "clip": 0.0,
        "prune": 0.0,
        "dp_noise_multiplier": None,
        "epsilon": None,
        "clients": None,
        "compression": None,
    }
    for entry in defense:
        name = entry.get("name")
        if name == "dp-sgd":
            found["dp_noise_multiplier"] = entry.get("noise_multiplier")
            found["epsilon"] = (entry.get("accounting") or {}).get("epsilon")
        elif name == "secure-aggregation":
            found["clients"] = entry.get("clients", 1)
        elif name == "sign":
            found["compression"] = "sign"
        elif name == "quantize":
            found["compression"] = f"quantize:{entry.get('bits')}"
        if name == "noise":
            found["noise"] = float(entry.get("std") or entry.get("scale") or 0.0)
        elif name == "clip":
            found["clip"] = float(entry.get("max_norm") or 0.0)
        elif name == "prune":
            found["prune"] = float(entry.get("fraction_removed") or 0.0)
    return found


def _recon_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    model = metadata.get("model") if isinstance(metadata.get("model"), dict) else {}
    return {
        "attack": metadata.get("attack"),
        "model": model.get("arch"),
        "update": metadata.get("update_kind"),
        "iterations": config.get("iterations"),
        "seeds": config.get("seeds"),
    }


def load_run(path: str | os.PathLike[str]) -> Run:
    """The run behind a scores file: settings from its files where they can be found."""
    path = Path(path)
    run = Run(str(path), read_scores(path))
    base = path.parent
    settings: dict[str, Any] = {}
    recon_path = _find(run.scores.get("recon"), base)
    truths = run.scores.get("truth")
    truth_paths = [_find(t, base) for t in (truths if isinstance(truths, list) else [truths])]
    update_ref = run.scores.get("update")
    if recon_path is not None:
        try:
            recon, _ = load_any_batch(recon_path)
            run.recon = recon.images
            settings.update(_recon_settings(recon.metadata))
            update_ref = update_ref or recon.metadata.get("update")
        except GradinvertError as exc:
            run.notes.append(f"reconstruction not read: {exc.message}")
    else:
        run.notes.append(f"reconstruction {run.scores.get('recon')!r} not found: no grid")
    update_path = _find(update_ref, base) or (
        _find(update_ref, recon_path.parent) if recon_path is not None else None
    )
    if update_path is not None:
        try:
            update = load_update(update_path)
            settings.update(
                model=update.model.arch,
                update=update.kind,
                batch_size=update.batch_size,
                mode=update.mode,
                local_steps=update.local.steps if update.local is not None else None,
                **defense_settings(update.defense),
            )
        except GradinvertError as exc:
            run.notes.append(f"update not read: {exc.message}")
    elif update_ref:
        run.notes.append(f"update {update_ref!r} not found: its defense is unknown")
    if all(p is not None for p in truth_paths) and run.recon is not None:
        try:
            run.truth = torch.cat([load_any_batch(p)[0].images for p in truth_paths])
        except GradinvertError as exc:
            run.notes.append(f"truth not read: {exc.message}")
        except RuntimeError:  # images of different shapes: no grid
            run.notes.append("truth files of different image shapes: no grid")
    run.files = [path, *(p for p in (recon_path, update_path, *truth_paths) if p is not None)]
    settings.setdefault("batch_size", run.summary.get("count"))
    run.settings = {key: settings.get(key) for key in SETTINGS}
    return run


def swept_setting(runs: list[Run]) -> tuple[str | None, list[str]]:
    """The one setting the runs differ in (None when they differ in none or several), and
    every setting that differs."""
    differing = [key for key in SETTINGS if len({repr(r.settings.get(key)) for r in runs}) > 1]
    if set(differing) == {"dp_noise_multiplier", "epsilon"}:
        return "epsilon", differing  # ε follows from the noise multiplier: plot against it
    return (differing[0] if len(differing) == 1 else None), differing
