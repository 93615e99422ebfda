"""Memory estimates of invert, labels, train-prior and learn-prior runs, before they allocate.

Every figure is in bytes of float32 tensors (4 bytes an element) and follows from what the
inputs declare: batch size B, input C×H×W (D = C·H·W elements), seeds K, the model's P
parameters and A activation elements per sample (a meta-device forward pass,
:mod:`gradinvert.models.footprint`). The factors were measured on CPU (peak RSS of ``invert``
on convnet, LeNet and ResNet-18 at 32 and 64 px, eval and train mode) and round up:

    invert  = file + P·4 + K·P·4·1.25 + K·B·A·4·α + K·B·D·4·10 + generator
              α = 8 in eval mode, 14 in train mode (BN statistics per candidate batch);
              a FedAvg delta replaces B·A·α by E·b·A·α + E·P·1.25 (E local steps of b samples,
              all kept for the differentiable simulation); generator = G·4·5 per trained copy
              of a G-parameter generator (z: one, w: K·B, zw: B)
    labels  = file + P·4 + 4·A·4·2 + head·8·12 + B·100  (head: the last layer's C×F weights)
    train-prior = 4·(N·D·2 + (P_G + P_D)·4 + b·(A_G + 2·A_D))  (N images, batch b; weights,
              gradients and two Adam moments; a real and a fake pass through D)
    learn-prior = the largest of its updates' tasks: invert in the z space with K restarts
    import  = 8·4·(P + buffers): both state dicts, the update, the global state, the model,
              the file's bytes as written (twice) and their contiguous copies
    inspect = the file's tensors as stored + 4 bytes an element (their float32 copies)

When A cannot be measured (a user factory that does not run on the meta device) it is taken
as 32·D. The estimate leaves out the Python process itself (about 1 GB with torch loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from gradinvert.io.files import UpdateFile
from gradinvert.io.tensorfile import Header
from gradinvert.models.footprint import Footprint, activations_per_sample
from gradinvert.runtime.resources import Estimate

if TYPE_CHECKING:
    from gradinvert.config.attack import AttackConfig
    from gradinvert.config.train_prior import TrainPriorSettings

FLOAT = 4
PER_SEED_PARAMS = 1.25  # gradients with their graph, per seed
ACTIVATION_FACTOR = {"eval": 8, "train": 14}  # double backward through the model
PIXEL_COPIES = 10  # candidates, optimizer moments, gradients, jitter and group copies
UNKNOWN_ACTIVATIONS = 32  # × D when the model cannot run on the meta device
LABEL_BYTES = 100  # per restored label: list entries, counts, the JSON text
GENERATOR_COPIES = 5  # a trained copy of G: weights, gradient, two Adam moments, graph
IMPORT_COPIES = 8  # two state dicts, the update, global state, model, file bytes (twice), clones


def _millions(count: int) -> str:
    return f"{count / 1e6:.3g}M" if count >= 10**5 else str(count)


def file_bytes(update: UpdateFile) -> int:
    """Bytes of the tensors an update file holds."""
    groups = [update.update, update.params, update.buffers]
    total = sum(t.numel() * t.element_size() for g in groups for t in g.values())
    return total + sum(2 * m.numel() * m.element_size() for m, _ in update.bn_stats.values())


def _activations(footprint: Footprint, update: UpdateFile) -> int:
    if footprint.activations is not None:
        return footprint.activations
    return UNKNOWN_ACTIVATIONS * _pixels(update)


def _pixels(update: UpdateFile) -> int:
    channels, height, width = update.input.shape
    return channels * height * width


def _shape(update: UpdateFile) -> str:
    return "×".join(str(s) for s in update.input.shape)


def estimate_invert(
    update: UpdateFile,
    footprint: Footprint,
    batch: int,
    seeds: int,
    search: str = "x",
    generator_params: int = 0,
    every_restart: bool = False,
) -> Estimate:
    """The memory an ``invert`` run of ``seeds`` candidates for a batch of ``batch`` needs;
    ``every_restart``: zw's weight stage refines every seed (``--weight-stage prior``)."""
    params, pixels = footprint.parameters, _pixels(update)
    factor = ACTIVATION_FACTOR[update.mode]
    per_seed_samples = batch * _activations(footprint, update) * factor
    per_seed_params = params * PER_SEED_PARAMS
    if update.kind == "delta" and update.local is not None:
        steps, local = update.local.steps, update.local.batch_size
        per_seed_samples = steps * local * _activations(footprint, update) * factor
        per_seed_params = steps * params * PER_SEED_PARAMS
    total = file_bytes(update) + FLOAT * params
    total += FLOAT * seeds * (per_seed_params + per_seed_samples + batch * pixels * PIXEL_COPIES)
    if search in ("w", "zw"):  # one generator copy per image (and per seed in w)
        copies = batch * (seeds if search == "w" or every_restart else 1)
        total += FLOAT * copies * generator_params * GENERATOR_COPIES
    elif search in ("z", "f"):  # f: one generator, feature maps per seed (small beside it)
        total += FLOAT * generator_params * GENERATOR_COPIES
    basis = (
        f"batch {batch} of {_shape(update)}, {seeds} seed{'s' if seeds != 1 else ''}, "
        f"{update.mode} mode, {_millions(params)} parameters"
    )
    if update.kind == "delta" and update.local is not None:
        basis += f", {update.local.steps} local steps"
    if generator_params and search != "x":
        basis += f", generator {_millions(generator_params)} parameters"
    return Estimate("invert", int(total), basis)


def estimate_inspect(header: Header) -> Estimate:
    """The memory ``inspect`` needs: an update, batch or generator file's values as stored and
    as float32 (an inverter file is described from its header; nothing is read)."""
    if header.metadata.get("gradinvert.file") == "inverter":
        return Estimate("inspect", 0, "an inverter file's header", "")
    elements = sum(t.numel() for t in header.meta_tensors().values())
    basis = f"{len(header.shapes)} tensors of {_millions(elements)} elements"
    return Estimate("inspect", header.bytes() + FLOAT * elements, basis, "")


def estimate_import(model: nn.Module) -> Estimate:
    """The memory ``import`` needs for ``model`` (a meta copy will do): the state dicts it
    reads, the update, the global state, the model itself and the written file's bytes."""
    elements = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    total = FLOAT * elements * IMPORT_COPIES
    return Estimate("import", int(total), f"{_millions(elements)} parameters and buffers", "")


def estimate_labels(update: UpdateFile, footprint: Footprint, batch: int) -> Estimate:
    """The memory ``labels`` needs: the model, a probe of 4 samples, the last layer, B labels."""
    classes = update.model.num_classes
    head = max(
        (t.numel() for t in update.params.values() if t.ndim == 2 and t.shape[0] == classes),
        default=0,
    )
    total = file_bytes(update) + FLOAT * footprint.parameters
    total += 4 * _activations(footprint, update) * FLOAT * 2 + head * 8 * 12 + batch * LABEL_BYTES
    basis = f"batch {batch}, {classes} classes, {_millions(footprint.parameters)} parameters"
    return Estimate("labels", int(total), basis)


def estimate_train_prior(
    images: int, channels: int, size: int, batch: int, models: tuple[nn.Module, nn.Module]
) -> Estimate:
    """The memory ``train-prior`` needs: every image decoded, G and D with Adam, one batch.

    ``models``: the generator and discriminator (meta-device copies will do).
    """
    generator, discriminator = models
    pixels = channels * size * size
    params = sum(p.numel() for m in (generator, discriminator) for p in m.parameters())
    latent = getattr(generator, "latent_shape", (100, 1, 1))
    g_acts = activations_per_sample(generator, tuple(latent)) or UNKNOWN_ACTIVATIONS * pixels
    d_acts = activations_per_sample(discriminator, (channels, size, size))
    d_acts = d_acts or UNKNOWN_ACTIVATIONS * pixels
    step = min(batch, images)
    total = FLOAT * (images * pixels * 2 + params * 4 + step * (g_acts + 2 * d_acts))
    basis = f"{images} images of {channels}×{size}×{size}, batch {step}"
    return Estimate("train-prior", int(total), basis)


def generator_parameters(spec: str | None, input_shape: tuple[int, int, int]) -> int:
    """Parameters of a ``--generator`` without loading it (0 when unknown: a user factory)."""
    if not spec:
        return 0
    if spec == "dcgan":
        from gradinvert.generators.dcgan import DCGANGenerator

        with torch.device("meta"):
            try:
                module = DCGANGenerator(size=input_shape[1], channels=input_shape[0])
            except Exception:  # a size DCGAN does not make: the loader reports it
                return 0
        return sum(p.numel() for p in module.parameters())
    path = Path(spec)
    if path.suffix == ".safetensors" and path.is_file():
        from gradinvert.generators.store import read_generator_header

        header, _ = read_generator_header(path)  # validated and compared with its model
        return sum(int(torch.Size(shape).numel()) for shape, _ in header.shapes.values())
    return 0


def invert_estimate(
    update: UpdateFile, config: AttackConfig, labels: list[int] | None = None
) -> Estimate:
    """``estimate_invert`` for an attack configuration (checks the update's model first)."""
    from gradinvert.models.footprint import update_footprint

    batch = len(labels) if labels else (update.batch_size or 1)
    generator = generator_parameters(config.generator, tuple(update.input.shape))  # type: ignore[arg-type]
    footprint = update_footprint(update)
    estimate = estimate_invert(
        update,
        footprint,
        batch,
        config.seeds,
        config.search,
        generator,
        every_restart=config.weight_stage == "prior",
    )
    extra, why = _defense_bytes(update, footprint.parameters, config)
    if extra:
        estimate = Estimate("invert", estimate.bytes + extra, f"{estimate.basis}, {why}")
    if config.inverter and (config.init == "git" or config.inverter_prior):
        from gradinvert.inverter.footprint import estimate_git
        from gradinvert.inverter.store import read_inverter_header

        start = estimate_git(update, read_inverter_header(config.inverter))
        basis = f"{estimate.basis}; start: {start.basis}"
        estimate = Estimate("invert", estimate.bytes + start.bytes, basis)
    return estimate


def _defense_bytes(update: UpdateFile, params: int, config: AttackConfig) -> tuple[int, str]:
    """What a secure aggregate's members and DP-SGD's per-example gradients add per seed."""
    from gradinvert.client.aggregate import members_of

    clients = len(members_of(update) or [None])
    steps = update.local.steps if update.kind == "delta" and update.local is not None else 1
    dp = next((e for e in update.defense if e.get("name") == "dp-sgd"), None)
    per_copy = int(FLOAT * config.seeds * params * PER_SEED_PARAMS)
    if dp is not None and config.adapt_defense:
        examples = int(dp.get("per_step_batch", 1))
        why = f"per-example gradients of {examples} examples × {steps} steps × {clients} clients"
        return per_copy * examples * steps * clients, why
    if clients > 1 and update.kind == "delta":
        return per_copy * steps * (clients - 1), f"{clients} clients' local training"
    return 0, ""


def learn_prior_estimate(
    paths: list[Path], restarts: int, generator: str | None = None
) -> Estimate:
    """The largest task of a ``learn-prior`` stream, from the files' headers alone.

    A task is a latent search of ``restarts`` seeds over one update's batch plus one shared,
    fine-tuned copy of the generator: ``estimate_invert`` in the ``z`` space.
    """
    from gradinvert.io.files import read_update_shapes
    from gradinvert.models.footprint import update_footprint

    largest = Estimate("learn-prior", 0, "no updates")
    footprints: dict[str, Footprint] = {}
    for path in paths:
        update = read_update_shapes(path)
        key = repr((update.model.to_dict(), update.input.to_dict()))
        if key not in footprints:
            footprints[key] = update_footprint(update)
        shape = tuple(update.input.shape)
        size = generator_parameters(generator, shape)  # type: ignore[arg-type]
        task = estimate_invert(update, footprints[key], update.batch_size or 1, restarts, "z", size)
        if task.bytes > largest.bytes:
            largest = Estimate("learn-prior", task.bytes, f"{task.basis}; {path.name}")
    return largest


def train_prior_estimate(paths: list[Path], config: TrainPriorSettings) -> Estimate:
    """``estimate_train_prior`` for the image files and settings of a ``train-prior`` run."""
    from gradinvert.priors.train import networks

    with torch.device("meta"):
        models = networks(config)
    return estimate_train_prior(len(paths), config.channels, config.size, config.batch_size, models)
