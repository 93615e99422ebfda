"""``capture_files``: the library call behind ``gradinvert capture`` — read a client's batch,
build the model the settings name, simulate the client, and return its update and the truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from gradinvert.client.capture import CaptureConfig, capture_clients, capture_update
from gradinvert.client.defenses import DefenseConfig
from gradinvert.client.dpsgd import DPConfig
from gradinvert.config.capture import CaptureSettings
from gradinvert.config.import_update import ImportSettings
from gradinvert.io.batch_input import load_client_batch
from gradinvert.io.files import BatchFile, LocalTraining, UpdateFile, check_labels
from gradinvert.models import (
    NORMALIZATIONS,
    InputSpec,
    build_model,
    load_state,
    model_spec,
    read_state_dict,
)
from gradinvert.runtime.device import resolve_device
from gradinvert.runtime.errors import UsageError

Log = Callable[[str], None]


def capture_files(
    sources: list[Path], settings: CaptureSettings, log: Log = print
) -> tuple[UpdateFile, BatchFile]:
    """The update a client sharing ``settings``' update of the batch in ``sources`` would send,
    and that batch (the ground truth). Both record the settings."""
    device = resolve_device(settings.device)
    clients = settings.clients
    wanted = None if settings.batch_size is None else settings.batch_size * clients
    pixels, labels, names = load_client_batch(
        sources, settings.size, settings.labels, settings.start, wanted, log
    )
    if labels is None:
        raise UsageError(
            "no labels: give --labels (inline list, labels JSON file, or a map of file names "
            "to labels), or put a labels.json map in the images' folder"
        )
    check_labels(labels, pixels.shape[0], settings.num_classes)
    mean, std = NORMALIZATIONS[settings.normalize]
    channels = pixels.shape[1]
    input_spec = InputSpec(tuple(pixels.shape[1:]), mean[:channels], std[:channels])
    spec = model_spec(settings.model, settings.num_classes, input_spec.shape)
    net = build_model(spec, init_seed=settings.init_seed)
    if settings.weights is not None:
        load_state(net, read_state_dict(settings.weights), settings.weights)
    local = None
    if settings.local_steps > 0:
        local = LocalTraining(
            settings.local_steps,
            settings.local_lr,
            settings.local_batch_size or pixels.shape[0] // clients,
            settings.shuffle,
        )
    defense = DefenseConfig(
        settings.clip,
        settings.noise,
        settings.noise_kind,
        settings.prune,
        settings.sign,
        settings.quantize,
    )
    dp = None
    if settings.dp_clip is not None:
        dp = DPConfig(
            settings.dp_clip,
            settings.dp_noise_multiplier or 0.0,
            settings.dataset_size,
            settings.dp_delta,
            settings.rounds,
            settings.dp_accountant,
        )
    client = CaptureConfig(
        mode=settings.mode,
        local=local,
        defense=defense,
        share_bn_stats=settings.share_bn_stats,
        seed=settings.seed,
        dp=dp,
    )
    label_tensor = torch.tensor(labels, dtype=torch.long)
    if clients > 1:
        update, _ = capture_clients(
            net, spec, input_spec, pixels, label_tensor, client, clients, device
        )
    else:
        update = capture_update(net, spec, input_spec, pixels, label_tensor, client, device)
    update.config = settings.record()
    truth = BatchFile(
        pixels,
        label_tensor,
        {"source": "capture", "files": names, "config": settings.record()},
    )
    return update, truth


def describe_capture(update: UpdateFile, count: int) -> str:
    """One line saying what was captured."""
    from gradinvert.client.aggregate import members_of

    local = update.local
    what = "gradient" if local is None else f"FedAvg delta ({local.steps} local steps)"
    members = members_of(update)
    if members is not None:
        what = f"secure aggregate of {len(members)} clients' {what}s"
    return f"captured {what} of {update.model.arch} on {count} images {tuple(update.input.shape)}"


def import_files(
    before: Path | None,
    after: Path | None,
    gradient: Path | None,
    settings: ImportSettings,
    log: Log = print,
) -> UpdateFile:
    """The update file a deployment's state dicts make: ``after − before`` (a FedAvg delta) or
    a ``gradient`` at the weights of ``before`` (else the seeded init). Every tensor must fit
    the model; the memory is estimated on the meta device before any file is read."""
    from gradinvert.client.import_update import ClientSettings, build_update, read_inputs
    from gradinvert.models.footprint import meta_model
    from gradinvert.runtime.memory import estimate_import
    from gradinvert.runtime.resources import check_memory

    shape = settings.shape()
    mean, std = NORMALIZATIONS[settings.normalize]
    input_spec = InputSpec(shape, mean[: shape[0]], std[: shape[0]])
    spec = model_spec(settings.model or "", settings.num_classes, shape)
    local = None
    if settings.local_steps is not None and settings.local_lr is not None:
        local = LocalTraining(
            settings.local_steps,
            settings.local_lr,
            settings.local_batch_size or settings.batch_size or 0,
            settings.shuffle,
        )
    if gradient is not None and local is not None:
        raise UsageError("--local-* describe a delta (--before/--after), not a --gradient")
    meta = meta_model(spec)
    if meta is not None:  # a user factory that does not build on meta: size unknown
        check_memory(estimate_import(meta), settings.max_memory)
    inputs, digests = read_inputs(before, after, gradient)
    source = {
        "tool": "import",
        "files": dict(inputs.names),
        "sha256": digests,
        "global": "before" if before is not None else f"seeded init {settings.init_seed}",
    }
    if gradient is None:
        source["local"] = "given" if local is not None else "unknown"
    client = ClientSettings(settings.mode, settings.batch_size, local)
    update = build_update(spec, input_spec, inputs, client, source, settings.init_seed)
    if before is None:
        log(f"no --before: the global model is {spec.arch}'s seeded init {settings.init_seed}")
    update.config = settings.record()
    return update
