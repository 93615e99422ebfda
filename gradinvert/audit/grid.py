"""A plan's grid: its axes (every list-valued setting; ``zip`` ties axes together) and one job
per cell and batch, each checked as the commands would check it — every problem at once."""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gradinvert.audit.plan import LoadedPlan, invalid_plan
from gradinvert.config.attack import PRESETS, AttackConfig
from gradinvert.config.audit import MAX_AXIS, MAX_JOBS, Plan
from gradinvert.config.capture import CaptureSettings
from gradinvert.config.evaluate import EvaluateSettings
from gradinvert.config.invert import InvertSettings
from gradinvert.config.labels import LabelsSettings
from gradinvert.runtime.errors import GradinvertError

JOB_FORMAT = 1  # bump when a job's outputs for the same settings change meaning
SIMULATED = ("victim", "data", "update", "defense")
OFF_WHEN_ZERO = ("clip", "noise", "prune", "quantize", "dp_clip")  # capture's None
ATTACK_FILES = ("inverter", "generator", "generator_weights")
HASHED = (
    "format",
    "kind",
    "capture",
    "capture_labels",
    "batch_rows",
    "inputs",
    "invert",
    "labels",
    "evaluate",
    "threads",
    "device",
)
NOT_IN_ATTACK = ("labels", "device", "max_memory", "checkpoint_every")


@dataclass
class Grid:
    """The jobs in grid order, the swept axes with their values, and the input files
    (sha256 → path) the jobs read."""

    jobs: list[dict[str, Any]]
    axes: dict[str, list[Any]]
    blobs: dict[str, Path] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Inputs:
    """Input files by digest (each file read once)."""

    def __init__(self) -> None:
        self.blobs: dict[str, Path] = {}
        self._known: dict[Path, str] = {}

    def add(self, path: Path) -> list[str]:
        path = path.resolve()
        if path not in self._known:
            self._known[path] = sha256_file(path)
            self.blobs[self._known[path]] = path
        return [path.name, self._known[path]]


def section_axes(plan: Plan) -> list[tuple[str, list[Any]]]:
    """The list-valued settings of the victim, data, update, defense and labels tables."""
    axes = []
    for name in (*SIMULATED, "labels"):
        section = getattr(plan, name)
        if section is None:
            continue
        for key in type(section).model_fields:
            value = getattr(section, key)
            if isinstance(value, list):
                axes.append((f"{name}.{key}", value))
    return axes


def attack_names(plan: Plan) -> list[str]:
    """Each attack table's name: its ``name``, else its preset (numbered when repeated)."""
    names = []
    for index, entry in enumerate(plan.attack):
        base = str(entry.get("name") or entry.get("preset") or f"attack{index}")
        names.append(base if base not in names else f"{base}#{index}")
    return names


def _zip_axes(
    axes: list[tuple[str, list[Any]]], groups: list[list[str]], problems: list[str], where: str
) -> list[tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Axes as tuples: a zip group is one axis of its members' values taken together."""
    names = [name for name, _ in axes]
    values = dict(axes)
    used: set[str] = set()
    tied: list[tuple[tuple[str, ...], list[tuple[Any, ...]]]] = []
    for group in groups:
        members = []
        for name in group:
            found = [n for n in names if n == name or n.endswith("." + name)]
            if len(found) != 1:
                problems.append(
                    f"zip {group}: {name!r} is "
                    + ("not a swept setting" if not found else f"ambiguous ({', '.join(found)})")
                    + where
                )
                continue
            members.append(found[0])
        if len(members) != len(group):
            continue
        lengths = {len(values[m]) for m in members}
        if len(lengths) != 1:
            problems.append(f"zip {group}: the lists differ in length{where}")
            continue
        used.update(members)
        tied.append((tuple(members), list(zip(*(values[m] for m in members), strict=True))))
    single = [((n,), [(v,) for v in values[n]]) for n in names if n not in used]
    return single + tied


def _capture_values(cell: dict[str, Any], plan: Plan) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in SIMULATED:
        for key in type(getattr(plan, name)).model_fields:
            values[key if name != "update" or key != "seed" else "seed"] = cell[f"{name}.{key}"]
    for key in OFF_WHEN_ZERO:
        if values[key] == 0:
            values[key] = None
    for key in ("images", "labels", "batches", "cut", "start"):
        values.pop(key)
    values.pop("weights")
    values["device"] = plan.resources.device
    return values


def _cell_label(cell: dict[str, Any], axes: list[str]) -> str:
    return ", ".join(f"{a}={cell[a]}" for a in axes if a in cell) or "the only cell"


def _batches(plan: Plan, base: Path, cell: dict[str, Any], problems: list[str]) -> list[Any]:
    """Each batch of the cell: (image paths, labels) cut as the data table says."""
    from gradinvert.io.batch_input import is_batch_path, load_any_batch
    from gradinvert.io.images import expand_image_paths
    from gradinvert.io.labelmaps import labels_for_images

    data = plan.data
    assert data is not None
    folder = base / cell["data.images"]
    size = cell["data.batch_size"]
    try:
        if is_batch_path(folder):
            batch, _ = load_any_batch(folder)
            return _rows(data, folder, size, batch.labels.tolist(), problems)
        paths = expand_image_paths([folder])
    except GradinvertError as exc:
        problems.append(f"data.images: {exc.message}")
        return []
    cuts = _cuts(data, size, len(paths), folder, problems)
    labels_arg = str(base / data.labels) if data.labels else None
    out = []
    for rows in cuts:
        chosen = [paths[i] for i in rows]
        try:
            labels, _ = labels_for_images(chosen, [folder], labels_arg)
        except GradinvertError as exc:
            problems.append(f"data.labels: {exc.message}")
            return []
        if labels is None:
            problems.append(f"data: no labels for {folder} (give data.labels or a labels.json)")
            return []
        out.append((chosen, labels))
    return out


def _rows(data: Any, path: Path, size: int, labels: list[int], problems: list[str]) -> list[Any]:
    """Each batch of a batch file: ((path, row indices), labels)."""
    cuts = _cuts(data, size, len(labels), path, problems)
    return [((path, rows), [int(labels[i]) for i in rows]) for rows in cuts]


def _cuts(data: Any, size: int, count: int, where: Path, problems: list[str]) -> list[list[int]]:
    """The indices of each batch of ``size`` among ``count`` images, cut as the data table says
    (none, with a problem noted, when there are too few)."""
    order = list(range(count))
    if data.cut == "shuffled":
        random.Random(data.seed).shuffle(order)
    needed = data.start + data.batches * size
    if needed > count:
        problems.append(
            f"data: {data.batches} batches of {size} from image {data.start} need {needed} "
            f"images, {where} holds {count}"
        )
        return []
    return [order[data.start + b * size : data.start + (b + 1) * size] for b in range(data.batches)]


def _attack_values(
    entry: dict[str, Any], inputs: _Inputs, base: Path, problems: list[str], where: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """An attack cell's settings checked as ``invert`` checks them, and its input files."""
    values = {k: v for k, v in entry.items() if k not in ("preset", "name")}
    values["attack"] = entry.get("preset", "gradinversion")
    files: dict[str, Any] = {}
    for key in ATTACK_FILES:
        value = values.get(key)
        if not isinstance(value, str) or (key == "generator" and value == "dcgan"):
            continue
        path = base / value
        if not path.is_file():
            problems.append(f"attack{where}: {key} {value!r}: no such file")
            return None
        files[key] = inputs.add(path)
    try:
        config = InvertSettings.build(cli_values=values)
    except GradinvertError as exc:
        problems.append(f"attack{where}: {exc.message.removeprefix('invalid settings: ')}")
        return None
    record = config.record()
    for key in ("command", "device", "max_memory", "labels", "checkpoint_every"):
        record.pop(key, None)
    return record, files


def expand(loaded: LoadedPlan) -> Grid:
    """Every job of the plan, in grid order; raises one error naming every problem."""
    plan, base = loaded.plan, loaded.base
    problems: list[str] = []
    inputs = _Inputs()
    names = attack_names(plan)
    global_axes = section_axes(plan) if plan.recorded is None else []
    for name, values in global_axes:
        if len(values) == 0 or len(values) > MAX_AXIS:
            problems.append(f"{name}: an axis needs 1 to {MAX_AXIS} values")
    fixed = {}
    for name in (*SIMULATED, "labels"):
        section = getattr(plan, name)
        if section is not None and (
            name != "update" and name != "defense" or plan.recorded is None
        ):
            for key in type(section).model_fields:
                fixed[f"{name}.{key}"] = getattr(section, key)
    for index, entry in enumerate(plan.attack):
        unknown = sorted(set(entry) - set(AttackConfig.model_fields) - {"preset", "name"})
        unknown += sorted(set(entry) & set(NOT_IN_ATTACK))
        if unknown:
            problems.append(f"attack[{index}]: unknown or not settable here: {', '.join(unknown)}")
        if entry.get("preset", "gradinversion") not in (*PRESETS, "git"):
            problems.append(
                f"attack[{index}].preset: {entry.get('preset')!r}: choose one of "
                f"{', '.join([*PRESETS, 'git'])}"
            )
    recorded = _recorded(plan, base, inputs, problems)
    if problems:
        raise invalid_plan(loaded.path, problems)

    swept: dict[str, list[Any]] = {name: list(values) for name, values in global_axes}
    if len(plan.attack) > 1:
        swept["attack"] = names
    jobs: list[dict[str, Any]] = []
    checked: set[str] = set()
    for index, entry in enumerate(plan.attack):
        where = f" (attack {names[index]})"
        attack_axes = [
            (f"attack.{k}", v) for k, v in entry.items() if isinstance(v, list) and k != "name"
        ]
        for name, values in attack_axes:
            swept.setdefault(name, [])
            swept[name] += [v for v in values if v not in swept[name]]
        tied = _zip_axes(
            global_axes + attack_axes, _relevant(plan.zip, attack_axes), problems, where
        )
        for combo in itertools.product(*(values for _, values in tied)):
            cell = dict(fixed)
            for (members, _), chosen in zip(tied, combo, strict=True):
                cell.update(zip(members, chosen, strict=True))
            attack_entry = {**entry}
            for key in entry:
                if f"attack.{key}" in cell:
                    attack_entry[key] = cell[f"attack.{key}"]
            label = _cell_label(cell, list(swept))
            attack = _attack_values(attack_entry, inputs, base, problems, f" {label}")
            if attack is None:
                continue
            record, files = attack
            common = {
                "attack_name": names[index],
                "cell": {k: v for k, v in cell.items() if not k.startswith("attack.")},
                "attack": {k: v for k, v in attack_entry.items() if k not in ("name",)},
                "invert": record,
                "labels": LabelsSettings.model_validate(
                    {"method": cell.get("labels.method", "auto")}
                ).model_dump(mode="json", exclude_none=True),
                "evaluate": EvaluateSettings.model_validate(
                    {"match": plan.evaluation.match, "lpips": plan.evaluation.lpips}
                ).model_dump(mode="json", exclude_none=True),
                "threads": plan.resources.cpus,
                "device": plan.resources.device,
            }
            if recorded is not None:
                for update, truth in recorded:
                    job = {**common, "kind": "recorded", "batch": update[0]}
                    job["inputs"] = {"update": update, "truth": truth, **files}
                    jobs.append(_finish(job))
                continue
            capture = _capture_values(cell, plan)
            key = repr(sorted(capture.items()))
            if key not in checked:
                checked.add(key)
                try:
                    CaptureSettings.model_validate(capture)
                except ValidationError as exc:
                    for error in exc.errors(include_url=False):
                        message = str(error["msg"]).removeprefix("Value error, ")
                        problems.append(f"cell {label}: {message}")
                    continue
            weights = None
            if cell["victim.weights"] != "init":
                path = base / cell["victim.weights"]
                if not path.is_file():
                    problems.append(f"victim.weights: {cell['victim.weights']!r}: no such file")
                    continue
                weights = inputs.add(path)
            for b, (paths, labels) in enumerate(_batches(plan, base, cell, problems)):
                job = {**common, "kind": "simulated", "batch": b, "capture": capture}
                job["capture_labels"] = labels
                job["inputs"] = {"weights": weights, **files}
                if isinstance(paths, tuple):  # rows of a batch file
                    job["inputs"]["batch"] = inputs.add(paths[0])
                    job["batch_rows"] = paths[1]
                else:
                    job["inputs"]["images"] = [inputs.add(p) for p in paths]
                jobs.append(_finish(job))
            if len(jobs) > MAX_JOBS:
                problems.append(f"the grid has over {MAX_JOBS} jobs")
                break
    if problems:
        raise invalid_plan(loaded.path, list(dict.fromkeys(problems)))
    if plan.data is not None and plan.data.batches > 1 and plan.recorded is None:
        swept["batch"] = list(range(plan.data.batches))
    return Grid(jobs, {k: v for k, v in swept.items() if k == "attack" or len(v) > 0}, inputs.blobs)


def _relevant(groups: list[list[str]], attack_axes: list[tuple[str, list[Any]]]) -> list[list[str]]:
    """Zip groups that name no attack setting, or only ones this attack sweeps."""
    mine = {name.removeprefix("attack.") for name, _ in attack_axes}
    kept = []
    for group in groups:
        attack_members = [g for g in group if g.startswith("attack.")]
        if all(g.removeprefix("attack.") in mine for g in attack_members):
            kept.append(group)
    return kept


def _recorded(
    plan: Plan, base: Path, inputs: _Inputs, problems: list[str]
) -> list[tuple[list[str], list[str] | None]] | None:
    """The recorded updates (sorted) with their truth files where the plan names them."""
    if plan.recorded is None:
        return None
    found = sorted(Path(p) for p in glob.glob(str(base / plan.recorded.updates)))
    found = [p for p in found if p.is_file()]
    if not found:
        problems.append(f"recorded.updates: {plan.recorded.updates!r} matches no file")
        return []
    pairs = []
    for path in found:
        truth = None
        if plan.recorded.truth:
            candidate = base / plan.recorded.truth.replace("{stem}", path.stem)
            truth = inputs.add(candidate) if candidate.is_file() else None
        pairs.append((inputs.add(path), truth))
    return pairs


def _digests(value: Any) -> Any:
    """Input references ``[name, sha256]`` reduced to their digests (names are not content)."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[1]
    if isinstance(value, list):
        return [_digests(v) for v in value]
    if isinstance(value, dict):
        return {k: _digests(v) for k, v in value.items()}
    return value


def hashed_part(job: dict[str, Any]) -> dict[str, Any]:
    """What a job's id covers: its whole effective config and its inputs' bytes (not how the
    plan displays it: cell labels, attack names, batch numbers)."""
    part = {k: job[k] for k in HASHED if k in job}
    part["inputs"] = _digests(job.get("inputs", {}))
    return part


def job_id(job: dict[str, Any]) -> str:
    """The id of ``job``: the sha256 of :func:`hashed_part` as canonical JSON (20 hex digits)."""
    text = json.dumps(hashed_part(job), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _finish(job: dict[str, Any]) -> dict[str, Any]:
    job = {"format": JOB_FORMAT, **job}
    job["id"] = job_id(job)
    return job
