"""Train a DCGAN generator adversarially on a folder of images (``gradinvert train-prior``).

The standard DCGAN recipe (Radford et al. 2016, as in PyTorch's DCGAN example): images scaled to
[-1, 1]; generator and discriminator initialised with :func:`dcgan_init_`; per step one
discriminator update on a real and a fake batch (binary cross-entropy on logits, real = 1,
fake = 0, the two halves summed), then one generator update with the non-saturating loss
(the same fake batch labelled real); both optimised by Adam (lr 2e-4, betas 0.5, 0.999).

Every random draw comes from seeded CPU ``torch.Generator`` objects (initialisation, the
per-epoch shuffle, the latents), so a run with a seed gives the same weights on CPU, and a run
continued from a checkpoint ends with exactly the weights of an uninterrupted one. An epoch is
``N // batch`` steps over a fresh shuffle (the incomplete last batch is dropped); a batch size
larger than the number of images means one batch of all of them.

Ctrl-C (SIGINT) or SIGTERM (main thread): the current step finishes, a checkpoint is written
when one was asked for, and :class:`InterruptedRun` is raised (exit 130; 143 for SIGTERM); a
second signal aborts at once.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from gradinvert.config.train_prior import TrainPriorSettings
from gradinvert.generators import (
    DCGANDiscriminator,
    DCGANGenerator,
    dcgan_init_,
    save_generator,
)
from gradinvert.io.file_schemas import TrainPriorCheckpoint
from gradinvert.io.images import expand_image_paths, load_images
from gradinvert.report.grid import save_png
from gradinvert.runtime.checkpoint import (
    CheckpointKind,
    LongRun,
    check_optimizer_state,
    check_resume,
    check_tensors_fit,
    fingerprint,
    is_permutation,
    restoring,
)
from gradinvert.runtime.errors import GradinvertError, InvalidInputError, UsageError
from gradinvert.runtime.runstate import stderr_progress

CHECKPOINT = CheckpointKind(
    "train-prior", "gradinvert-train-prior-checkpoint/1", TrainPriorCheckpoint, "images or settings"
)
RECIPE = "DCGAN (Radford et al. 2016)"
SAMPLE_COUNT = 64
SAMPLE_COLUMNS = 8
SAMPLE_TILE = 64  # sample tiles are enlarged (nearest neighbour) to at least this many pixels
SAMPLE_GAP = 2

Log = Callable[[str], None]


class DivergedTraining(GradinvertError):
    """A loss became non-finite."""


# ---------------------------------------------------------------------- configuration


def networks(config: TrainPriorSettings) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """A fresh (uninitialised) generator and discriminator of these settings."""
    generator = DCGANGenerator(
        config.size, config.channels, ngf=config.ngf, upsample=config.upsample
    )
    return generator, DCGANDiscriminator(config.size, config.channels, ndf=config.ngf)


# ---------------------------------------------------------------------- images


def canonical_images(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Image files without duplicates, sorted by their names relative to their common folder.

    Training order and hash then depend on which files are given, not on how the command
    line (or a shell glob) listed them, nor on where the folder lies.
    """
    unique: dict[Path, Path] = {}
    for path in paths:
        unique.setdefault(Path(path).resolve(), Path(path))
    if not unique:
        raise InvalidInputError("no image files given")
    resolved = list(unique)
    root = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    named = sorted((p.relative_to(root).as_posix(), unique[p]) for p in resolved)
    return [p for _, p in named], [n for n, _ in named]


def images_hash(paths: Sequence[Path], names: Sequence[str] | None = None) -> str:
    """SHA-256 over the images in sorted order: each relative name, NUL, byte count, bytes."""
    if names is None:
        paths, names = canonical_images(paths)
    digest = hashlib.sha256()
    for name, path in sorted(zip(names, paths, strict=True)):
        data = Path(path).read_bytes()
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _prepare_images(
    images: Sequence[str | os.PathLike[str]] | torch.Tensor, config: TrainPriorSettings
) -> tuple[torch.Tensor, str, list[Path]]:
    """Images in [0, 1] (N×C×size×size), their hash and (for files) their canonical order."""
    if isinstance(images, torch.Tensor):
        shape = (config.channels, config.size, config.size)
        if images.ndim != 4 or tuple(images.shape[1:]) != shape or images.shape[0] == 0:
            raise InvalidInputError(
                f"images tensor of shape {tuple(images.shape)}: need N×{shape[0]}×{shape[1]}"
                f"×{shape[2]} with N ≥ 1"
            )
        pixels = images.detach().float().cpu()
        if not bool(torch.isfinite(pixels).all()):
            raise InvalidInputError("images tensor holds non-finite values")
        return pixels.clamp(0, 1).contiguous(), "tensor:" + fingerprint(pixels), []
    paths, names = canonical_images(expand_image_paths(images))
    pixels, _ = load_images(paths, size=config.size, channels=config.channels)
    return pixels, images_hash(paths, names), paths


# ---------------------------------------------------------------------- losses


def discriminator_loss(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """BCE on logits: real images labelled 1, fakes labelled 0, the two batch means summed.

    Real and fake batches go through ``d`` separately (as in the DCGAN recipe, so its
    BatchNorm sees one kind of batch at a time).
    """
    real_logits = d(real)
    fake_logits = d(fake)
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_loss(d: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss: BCE on logits of the fakes labelled real."""
    logits = d(fake)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


# ---------------------------------------------------------------------- samples


def render_samples(images: torch.Tensor, columns: int = SAMPLE_COLUMNS) -> Image.Image:
    """A grid of generated images in [-1, 1]; small tiles enlarged by an integer factor."""
    count, channels, height, width = images.shape
    scale = max(1, math.ceil(SAMPLE_TILE / min(height, width)))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    tile_w, tile_h = width * scale, height * scale
    canvas = Image.new(
        "RGB",
        (columns * (tile_w + SAMPLE_GAP) + SAMPLE_GAP, rows * (tile_h + SAMPLE_GAP) + SAMPLE_GAP),
        color=(255, 255, 255),
    )
    pixels = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)
    array = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for k in range(count):
        tile_array = np.ascontiguousarray(array[k])
        if channels == 1:
            tile = Image.fromarray(tile_array[:, :, 0], mode="L").convert("RGB")
        else:
            tile = Image.fromarray(tile_array, mode="RGB")
        if scale > 1:
            tile = tile.resize((tile_w, tile_h), Image.Resampling.NEAREST)
        x = SAMPLE_GAP + (k % columns) * (tile_w + SAMPLE_GAP)
        y = SAMPLE_GAP + (k // columns) * (tile_h + SAMPLE_GAP)
        canvas.paste(tile, (x, y))
    return canvas


# ---------------------------------------------------------------------- the trainer


@dataclass
class StepInfo:
    """What a progress display needs after each step."""

    step: int  # steps done so far (all epochs)
    total: int  # steps of the whole run
    epoch: int  # the epoch this step belonged to (1-based)
    epochs: int
    loss_d: float
    loss_g: float
    epoch_done: bool  # the step finished its epoch


@dataclass
class PriorTrainer(LongRun):
    """State and loop of one adversarial training run (see the module docstring).

    ``images``: N×C×size×size in [0, 1] (scaled to [-1, 1] here).
    """

    checkpoint_kind: ClassVar[CheckpointKind] = CHECKPOINT

    images: torch.Tensor
    config: TrainPriorSettings
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    run_id: str = ""
    epoch: int = 0  # completed epochs
    epoch_step: int = 0  # steps done in the current epoch
    step_count: int = 0
    seconds: float = 0.0  # training wall time before this process (from a checkpoint)
    history: list[tuple[float, float]] = field(default_factory=list)  # per epoch: mean D, G
    _stop: bool = False

    def __post_init__(self) -> None:
        config, device = self.config, self.device
        self.data = (self.images.to(device, torch.float32) * 2 - 1).contiguous()
        self.count = int(self.data.shape[0])
        self.batch = min(config.batch_size, self.count)
        self.steps_per_epoch = self.count // self.batch
        init_rng = torch.Generator().manual_seed(config.seed)
        self.generator, self.discriminator = networks(config)
        dcgan_init_(self.generator, init_rng)
        dcgan_init_(self.discriminator, init_rng)
        self.generator.to(device).train()
        self.discriminator.to(device).train()
        self.data_rng = torch.Generator().manual_seed(config.seed + 1)
        self.noise_rng = torch.Generator().manual_seed(config.seed + 2)
        self.fixed_latents = torch.randn(
            (SAMPLE_COUNT, *self.generator.latent_shape),
            generator=torch.Generator().manual_seed(config.seed + 3),
        )
        self.opt_g = self._adam(self.generator)
        self.opt_d = self._adam(self.discriminator)
        self.perm: torch.Tensor | None = None
        self.sums = [0.0, 0.0]
        self._samples: Path | None = None
        self._clock = (time.monotonic(), self.seconds)
        self._wrote_samples = False

    def _adam(self, module: nn.Module) -> torch.optim.Adam:
        betas = (self.config.betas[0], self.config.betas[1])
        return torch.optim.Adam(module.parameters(), lr=self.config.lr, betas=betas)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    # ------------------------------------------------------------------ steps

    def step(self) -> tuple[float, float]:
        """One discriminator and one generator update; returns their losses."""
        if self.perm is None:
            self.perm = torch.randperm(self.count, generator=self.data_rng)
        start = self.epoch_step * self.batch
        index = self.perm[start : start + self.batch].to(self.device)
        real = self.data[index]
        z = torch.randn((self.batch, *self.generator.latent_shape), generator=self.noise_rng)
        fake = self.generator(z.to(self.device))

        self.opt_d.zero_grad(set_to_none=True)
        loss_d = discriminator_loss(self.discriminator, real, fake.detach())
        loss_d.backward()
        self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        loss_g = generator_loss(self.discriminator, fake)
        loss_g.backward()
        self.opt_g.step()

        values = (loss_d.item(), loss_g.item())
        if not all(math.isfinite(v) for v in values):
            raise DivergedTraining(
                f"the losses became non-finite at step {self.step_count + 1} (D {values[0]}, "
                f"G {values[1]}); lower --lr"
            )
        self.sums[0] += values[0]
        self.sums[1] += values[1]
        self.step_count += 1
        self.epoch_step += 1
        if self.epoch_step == self.steps_per_epoch:
            self.history.append((self.sums[0] / self.epoch_step, self.sums[1] / self.epoch_step))
            self.epoch += 1
            self.epoch_step = 0
            self.perm = None
            self.sums = [0.0, 0.0]
        return values

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """The fixed latents through the generator in eval mode (as it will be used), [-1, 1]."""
        self.generator.eval()
        try:
            return self.generator(self.fixed_latents.to(self.device)).cpu()
        finally:
            self.generator.train()

    def write_samples(self, path: Path) -> None:
        """Rewrite the samples grid PNG atomically."""
        save_png(render_samples(self.samples()), path)

    # ------------------------------------------------------------------ loop

    def run(
        self,
        checkpoint: Path | None = None,
        samples: Path | None = None,
        on_step: Callable[[PriorTrainer, StepInfo], None] | None = None,
    ) -> None:
        """Train until ``config.epochs``; checkpoint and samples after each epoch, Ctrl-C."""
        self._samples, self._clock = samples, (time.monotonic(), self.seconds)
        self._wrote_samples = False
        self.run_steps(checkpoint, on_step)
        if samples is not None and not self._wrote_samples:
            self.write_samples(samples)  # e.g. a resumed run that had nothing left to train

    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    def advance(self) -> StepInfo:
        epoch = self.epoch + 1
        loss_d, loss_g = self.step()
        started, base = self._clock
        self.seconds = base + time.monotonic() - started
        done = self.epoch_step == 0
        self._wrote_samples = done and self._samples is not None
        if self._wrote_samples:
            self.write_samples(self._samples)  # type: ignore[arg-type]
        epochs = self.config.epochs
        return StepInfo(self.step_count, self.total_steps, epoch, epochs, loss_d, loss_g, done)

    def checkpoint_due(self) -> bool:
        return self.epoch_step == 0  # after every epoch

    def position(self) -> int:
        return self.step_count

    def where(self) -> str:
        return f"at epoch {self.epoch} + {self.epoch_step} steps of {self.config.epochs}"

    # ------------------------------------------------------------------ checkpoints

    def payload(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is."""
        return {
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step_count,
            "perm": self.perm,
            "sums": list(self.sums),
            "history": [list(h) for h in self.history],
            "seconds": self.seconds,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "data_rng": self.data_rng.get_state(),
            "noise_rng": self.noise_rng.get_state(),
        }

    def restore(self, state: dict[str, Any], source: str) -> None:
        """Continue from a checked :meth:`payload` of this run."""
        epoch, epoch_step = int(state.get("epoch", 0)), int(state.get("epoch_step", 0))
        if epoch > self.config.epochs or (epoch == self.config.epochs and epoch_step > 0):
            raise UsageError(
                f"{source}: the checkpoint is past --epochs {self.config.epochs} (at epoch "
                f"{epoch} + {epoch_step} steps): give --epochs {epoch + (epoch_step > 0)} or more"
            )
        for name, module in (("generator", self.generator), ("discriminator", self.discriminator)):
            check_tensors_fit(source, state[name], module.state_dict(), f"the {name}'s weights")
        check_optimizer_state(source, self.opt_g, state["opt_g"])
        check_optimizer_state(source, self.opt_d, state["opt_d"])
        if state["perm"] is not None and not is_permutation(state["perm"], self.count):
            raise InvalidInputError(f"{source}: the checkpoint's image order does not fit")
        with restoring(source):
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.data_rng.set_state(state["data_rng"])
            self.noise_rng.set_state(state["noise_rng"])
        self.epoch = int(state["epoch"])
        self.epoch_step = int(state["epoch_step"])
        self.step_count = int(state["step"])
        self.perm = state["perm"]
        self.sums = [float(s) for s in state["sums"]]
        self.history = [(float(d), float(g)) for d, g in state["history"]]
        self.seconds = float(state["seconds"])


# ---------------------------------------------------------------------- the run


@dataclass
class TrainPriorResult:
    """A trained generator (eval mode, on the CPU) and how it came about."""

    generator: DCGANGenerator
    losses: list[tuple[float, float]]  # per epoch: mean discriminator and generator loss
    training: dict[str, Any]  # the generator file's ``training`` metadata
    config: dict[str, Any] = field(default_factory=dict)  # the settings (Settings.record())


def train_prior(
    images: Sequence[str | os.PathLike[str]] | torch.Tensor,
    config: TrainPriorSettings,
    device: torch.device | str = "cpu",
    progress: bool = False,
    checkpoint: Path | None = None,
    resume: bool = False,
    samples: Path | None = None,
    log: Log | None = None,
    on_step: Callable[[PriorTrainer, StepInfo], None] | None = None,
) -> TrainPriorResult:
    """Train a DCGAN generator on ``images`` (files and folders, or an N×C×H×W [0, 1] tensor).

    ``progress``: a rich progress bar on stderr (else ``log`` gets one line per epoch).
    ``checkpoint``: written after every epoch and on Ctrl-C; with ``resume`` the run continues
    from it and ends with exactly the weights of an uninterrupted run. ``samples``: a PNG grid
    of 64 images from fixed latents, rewritten after every epoch. ``config.device`` is for the
    command line; the run uses ``device``.
    """
    config = TrainPriorSettings.model_validate(config.model_dump())  # a validated private copy
    device = torch.device(device)
    say = log or (lambda _message: None)
    check_resume(checkpoint, resume)
    pixels, data_hash, _ = _prepare_images(images, config)
    count = int(pixels.shape[0])
    if config.batch_size > count:
        say(
            f"--batch-size {config.batch_size} is more than the {count} images: training on "
            f"one batch of all {count} per epoch"
        )
    run_id = fingerprint(config.fingerprint_fields(), count, data_hash)
    trainer = PriorTrainer(pixels, config, device, run_id=run_id)
    if resume:
        trainer.load(Path(checkpoint))  # type: ignore[arg-type]
        say(
            f"resuming from {checkpoint} at epoch {trainer.epoch} + {trainer.epoch_step} steps "
            f"(step {trainer.step_count} of {trainer.total_steps})"
        )
    callback = _ProgressBar(trainer, on_step) if progress else _EpochLog(say, on_step)
    try:
        trainer.run(checkpoint, samples, callback)
    finally:
        if isinstance(callback, _ProgressBar):
            callback.close()
    generator = trainer.generator.cpu().eval()
    losses = list(trainer.history)
    last = losses[-1]
    training = {
        "method": "train-prior",
        "recipe": RECIPE,
        "images": count,
        "images_hash": data_hash,
        "epochs": config.epochs,
        "batch_size": trainer.batch,
        "steps": trainer.step_count,
        "lr": config.lr,
        "betas": list(config.betas),
        "seed": config.seed,
        "losses": {"d": last[0], "g": last[1]},
        "loss_history": [[round(d, 5), round(g, 5)] for d, g in losses],
        "seconds": round(trainer.seconds, 3),
        "device": device.type,
        "torch": torch.__version__,
    }
    return TrainPriorResult(generator, losses, training, config.record())


def save_prior(result: TrainPriorResult, path: str | os.PathLike[str]) -> None:
    """Write the trained generator as a generator file, float16 weights when the run's settings
    say ``half``, with those settings (``inspect --print-config`` prints them for a replay)."""
    half = bool(result.config.get("half", False))
    training = dict(result.training, dtype="float16" if half else "float32")
    module, config = result.generator, result.config
    save_generator(path, module, module.arch(), training, half=half, config=config)


class _EpochLog:
    """Without a progress bar: one log line per finished epoch."""

    def __init__(self, say: Log, inner: Callable[[PriorTrainer, StepInfo], None] | None) -> None:
        self.say, self.inner = say, inner

    def __call__(self, trainer: PriorTrainer, info: StepInfo) -> None:
        if info.epoch_done:
            loss_d, loss_g = trainer.history[-1]
            self.say(
                f"epoch {info.epoch}/{info.epochs}: loss_D {loss_d:.4f}  loss_G {loss_g:.4f}  "
                f"({trainer.seconds:.1f} s)"
            )
        if self.inner is not None:
            self.inner(trainer, info)


class _ProgressBar:
    """A rich progress bar on stderr over all steps: epoch, loss_D and loss_G."""

    def __init__(
        self, trainer: PriorTrainer, inner: Callable[[PriorTrainer, StepInfo], None] | None
    ) -> None:
        self.inner = inner
        self.bar = stderr_progress(
            "train-prior",
            "epoch {task.fields[epoch]}  loss_D {task.fields[d]}  loss_G {task.fields[g]}",
        )
        epochs = trainer.config.epochs
        self.task = self.bar.add_task(
            "train-prior",
            total=trainer.total_steps,
            completed=trainer.step_count,
            epoch=f"{min(trainer.epoch + 1, epochs)}/{epochs}",
            d="–",
            g="–",
        )
        self.bar.start()

    def __call__(self, trainer: PriorTrainer, info: StepInfo) -> None:
        self.bar.update(
            self.task,
            completed=info.step,
            epoch=f"{info.epoch}/{info.epochs}",
            d=f"{info.loss_d:.3f}",
            g=f"{info.loss_g:.3f}",
        )
        if self.inner is not None:
            self.inner(trainer, info)

    def close(self) -> None:
        self.bar.stop()
