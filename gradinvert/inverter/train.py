"""Train a learned inverter on (update, images) pairs made from auxiliary images.

The images are split (seeded) into a training and a validation part, never mixed; pairs are
batches of the template's batch size drawn from each part by seeded permutations and made by
:class:`~gradinvert.inverter.pairs.PairMaker` (the template's defenses, then ``augment``'s, on
every pair), then encoded once (:meth:`Inverter.encode`) and kept as float16. Training: Adam,
minibatches of pairs in a seeded order, the learning rate ×0.1 after 75 % of the epochs (LTI),
MSE on [0, 1] pixels — for batches of more than one image after matching each estimate to an
image (Hungarian, on the detached per-pair cost). Every epoch ends with the validation MSE;
the weights of the best epoch are kept, and training stops after ``patience`` epochs without
improvement. Checkpoints hold everything needed to continue to the same weights (model,
optimizer, order, position, best so far, RNG state); Ctrl-C (or SIGTERM) finishes the current step,
saves and exits 130 (143).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from scipy.optimize import linear_sum_assignment

from gradinvert.client.defenses import DefenseConfig, apply_defenses
from gradinvert.config.train_inverter import TrainInverterSettings
from gradinvert.inverter.base import Inverter, Tensors, stack_encoded
from gradinvert.inverter.pairs import PairMaker, chunks
from gradinvert.inverter.store import build_inverter, template_record
from gradinvert.io.atomic import make_folder
from gradinvert.io.file_schemas import TrainInverterCheckpoint
from gradinvert.io.files import UpdateFile, _save, read_safetensors
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
from gradinvert.runtime.errors import InvalidInputError, UsageError
from gradinvert.runtime.runstate import stderr_progress

CHECKPOINT = CheckpointKind(
    "train-inverter",
    "gradinvert-train-inverter-checkpoint/1",
    TrainInverterCheckpoint,
    "template, images or settings",
)
PAIRS_CACHE_NAMES = r"pairs-[0-9a-f]{16}\.safetensors"  # the files a --pairs-cache folder holds
AUGMENT_KINDS = ("noise", "laplace", "prune", "clip")
AUGMENT_SEED_OFFSET = 1_000_003  # augmentation noise draws apart from the template's defenses
TRAINING_ONLY = ("epochs", "batch", "lr", "patience")  # settings that do not change the pairs
Log = Callable[[str], None]


def parse_augment(text: str) -> DefenseConfig:
    """``noise:0.1,prune:0.99`` → the defenses applied to every training pair."""
    config = DefenseConfig()
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, value = item.partition(":")
        try:
            amount = float(value)
        except ValueError:
            amount = math.nan
        if kind not in AUGMENT_KINDS or not math.isfinite(amount):
            raise UsageError(
                f"--augment {item!r}: use KIND:VALUE with KIND one of {', '.join(AUGMENT_KINDS)}"
            )
        if kind in ("noise", "laplace"):
            config.noise, config.noise_kind = amount, "gaussian" if kind == "noise" else "laplace"
        elif kind == "prune":
            config.prune = amount
        else:
            config.clip = amount
    config.validate()
    return config


@dataclass
class PairSet:
    """Encoded updates (P leading, float16) and their images (P×B×C×H×W) and labels."""

    encoded: Tensors
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[Tensors, torch.Tensor]:
        encoded = {k: v[index].to(device).float() for k, v in self.encoded.items()}
        return encoded, self.images[index].to(device)


def split_images(count: int, batch_size: int, val_fraction: float, seed: int) -> tuple:
    """Seeded disjoint training and validation image indices (each at least one batch)."""
    if count < 2 * batch_size:
        raise UsageError(
            f"{count} images: a training and a validation split of batch size {batch_size} "
            f"need at least {2 * batch_size}"
        )
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    val = max(batch_size, round(count * val_fraction))
    val = min(val, count - batch_size)
    return order[val:], order[:val]


def _picks(indices: torch.Tensor, pairs: int, batch_size: int, seed: int) -> torch.Tensor:
    """P×B image indices: consecutive batches of seeded permutations (epochs over the images)."""
    rng = torch.Generator().manual_seed(seed)
    need, taken = pairs * batch_size, []
    while sum(t.numel() for t in taken) < need:
        taken.append(indices[torch.randperm(indices.numel(), generator=rng)])
    return torch.cat(taken)[:need].view(pairs, batch_size)


def make_pairs(
    maker: PairMaker,
    inverter: Inverter,
    images: torch.Tensor,
    labels: torch.Tensor,
    picks: torch.Tensor,
    augment: DefenseConfig,
    first_seed: int,
    progress: Callable[[int], None] | None = None,
) -> PairSet:
    """Encode the updates of the batches ``picks`` names (pair j's seed: ``first_seed + j``)."""
    encoded: list[Tensors] = []
    # per-sample gradients of a chunk are held at once: keep a chunk near 256 MB
    numel = sum(p.numel() for p in maker.model.parameters())
    chunk_size = max(1, min(64, (256 << 20) // (4 * numel))) if maker.fast else 8
    for part in chunks(picks.shape[0], chunk_size):
        flat = picks[part].reshape(-1)
        made = maker.make(images[flat], labels[flat], first_seed + part.start)
        for offset, pair in enumerate(made):
            update = pair.update
            if augment != DefenseConfig():
                seed = first_seed + part.start + offset + AUGMENT_SEED_OFFSET
                update, _ = apply_defenses(update, copy.copy(augment), seed)
            with torch.no_grad():
                encoded.append({k: v.half() for k, v in inverter.encode(update).items()})
        if progress is not None:
            progress(len(made))
    return PairSet(stack_encoded(encoded), images[picks], labels[picks])


def matched_mse(estimates: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per pair, the MSE after matching each estimate to an image (Hungarian; B = 1: plain)."""
    if estimates.shape[1] == 1:
        return (estimates - images).pow(2).flatten(1).mean(1)
    cost = (estimates.unsqueeze(2) - images.unsqueeze(1)).pow(2).flatten(3).mean(3)
    losses = []
    for p in range(cost.shape[0]):
        rows, cols = linear_sum_assignment(cost[p].detach().cpu().double().numpy())
        losses.append(cost[p, torch.as_tensor(rows), torch.as_tensor(cols)].mean())
    return torch.stack(losses)


@dataclass
class EpochInfo:
    """What a progress display needs after each step."""

    epoch: int
    step: int
    steps: int
    loss: float
    val_mse: float | None = None


@dataclass
class InverterTrainer(LongRun):
    """The training loop of one run (see the module docstring)."""

    checkpoint_kind: ClassVar[CheckpointKind] = CHECKPOINT

    inverter: Inverter
    config: TrainInverterSettings
    train: PairSet
    val: PairSet
    run_id: str = ""
    device: torch.device = torch.device("cpu")
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = -1
    _stop: bool = False

    def __post_init__(self) -> None:
        self.inverter.to(self.device)
        self.optimizer = torch.optim.Adam(
            self.inverter.parameters(), lr=self.config.learning_rate()
        )
        self.rng = torch.Generator().manual_seed(self.config.seed + 1)
        self.order = torch.randperm(len(self.train), generator=self.rng)
        self.best_state = copy.deepcopy(self.inverter.state_dict())
        self.losses: list[float] = []

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.config.batch)

    def _lr(self) -> float:
        drop = self.epoch >= math.ceil(0.75 * self.config.epochs)
        return self.config.learning_rate() * (0.1 if drop else 1.0)

    def train_step(self) -> float:
        """One optimizer step on the next minibatch of the epoch's order."""
        start = self.step * self.config.batch
        index = self.order[start : start + self.config.batch]
        encoded, images = self.train.batch(index, self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        self.inverter.train()
        loss = matched_mse(self.inverter(encoded), images).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def validation_mse(self) -> float:
        """The validation pairs' mean matched MSE with the current weights."""
        self.inverter.eval()
        total = 0.0
        with torch.no_grad():
            for part in chunks(len(self.val), 64):
                encoded, images = self.val.batch(torch.arange(part.start, part.stop), self.device)
                total += float(matched_mse(self.inverter(encoded), images).sum())
        return total / len(self.val)

    def _end_epoch(self) -> float:
        val = self.validation_mse()
        train = sum(self.losses) / max(1, len(self.losses))
        self.history.append({"epoch": self.epoch + 1, "train_mse": train, "val_mse": val})
        if val < self.best_val:
            self.best_val, self.best_epoch = val, self.epoch + 1
            self.best_state = copy.deepcopy(self.inverter.state_dict())
        self.epoch += 1
        self.step, self.losses = 0, []
        self.order = torch.randperm(len(self.train), generator=self.rng)
        return val

    def finished(self) -> bool:
        stale = self.best_epoch >= 0 and self.epoch - self.best_epoch >= self.config.patience
        return self.epoch >= self.config.epochs or stale

    def run(
        self,
        checkpoint: Path | None = None,
        on_step: Callable[[InverterTrainer, EpochInfo], None] | None = None,
    ) -> None:
        """Train until the last epoch or early stopping; checkpoint every epoch and on Ctrl-C."""
        self.run_steps(checkpoint, on_step)
        self.inverter.load_state_dict(self.best_state)

    def advance(self) -> EpochInfo:
        loss = self.train_step()
        self.losses.append(loss)
        val = self._end_epoch() if self.step == self.steps_per_epoch else None
        return EpochInfo(self.epoch, self.step, self.steps_per_epoch, loss, val)

    def checkpoint_due(self) -> bool:
        return self.step == 0  # the step ended an epoch

    def position(self) -> tuple[int, int]:
        return self.epoch, self.step

    def where(self) -> str:
        return f"in epoch {self.epoch + 1}"

    def payload(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "order": self.order,
            "losses": list(self.losses),
            "inverter": self.inverter.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_state": self.best_state,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "history": [dict(h) for h in self.history],
            "rng": self.rng.get_state(),
        }

    def restore(self, state: dict[str, Any], source: str) -> None:
        """Continue from a checked :meth:`payload` of this run."""
        live = self.inverter.state_dict()
        check_tensors_fit(source, state["inverter"], live, "the inverter's weights")
        check_tensors_fit(source, state["best_state"], live, "the best epoch's weights")
        check_optimizer_state(source, self.optimizer, state["optimizer"])
        if not is_permutation(state["order"], len(self.train)):
            raise InvalidInputError(f"{source}: the checkpoint's pair order does not fit")
        with restoring(source):
            self.inverter.load_state_dict(state["inverter"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.rng.set_state(state["rng"])
        self.best_state = state["best_state"]
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.order, self.losses = state["order"], list(state["losses"])
        self.best_val, self.best_epoch = float(state["best_val"]), int(state["best_epoch"])
        self.history = [dict(h) for h in state["history"]]


@dataclass
class TrainInverterResult:
    """The trained inverter and the record its file keeps."""

    inverter: Inverter
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)  # the settings (Settings.record())


def _cached_pairs(path: Path) -> tuple[PairSet, PairSet]:
    tensors, _ = read_safetensors(path)
    sets = []
    for part in ("train", "val"):
        prefix = f"{part}.enc."
        encoded = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        sets.append(PairSet(encoded, tensors[f"{part}.images"], tensors[f"{part}.labels"]))
    return sets[0], sets[1]


def _write_cache(path: Path, train: PairSet, val: PairSet, key: str) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for part, pairs in (("train", train), ("val", val)):
        tensors.update({f"{part}.enc.{k}": v for k, v in pairs.encoded.items()})
        tensors[f"{part}.images"], tensors[f"{part}.labels"] = pairs.images, pairs.labels
    _save(tensors, {"gradinvert.file": "inverter-pairs", "key": key}, path, private=True)


def train_inverter(
    template: UpdateFile,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    config: TrainInverterSettings,
    *,
    pairs_cache: Path | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Log | None = None,
    on_step: Callable[[InverterTrainer, EpochInfo], None] | None = None,
    device: torch.device | str = "cpu",
) -> TrainInverterResult:
    """Train an inverter for ``template`` on ``images`` (N×C×H×W in [0, 1]).

    ``labels``: the images' labels, or None to draw each pair's labels uniformly over the
    classes (seeded). The result's summary records the run for the inverter file.
    """
    config = TrainInverterSettings.model_validate(config.model_dump())  # a validated private copy
    say = log or (lambda _message: None)
    check_resume(checkpoint, resume)
    batch = int(template.batch_size or 0)
    shape = tuple(template.input.shape)
    if tuple(images.shape[1:]) != shape:
        raise InvalidInputError(
            f"images are {tuple(images.shape[1:])}, the template's model reads {shape} "
            "(give --size to resize)"
        )
    classes = template.model.num_classes
    label_source = "the images' labels file"
    if labels is None:
        rng = torch.Generator().manual_seed(config.seed + 2)
        labels = torch.randint(0, classes, (images.shape[0],), generator=rng)
        label_source = f"drawn uniformly over the {classes} classes (seeded)"
    elif int(labels.max()) >= classes or int(labels.min()) < 0:
        raise InvalidInputError(f"labels outside 0 … {classes - 1} for this model")
    train_idx, val_idx = split_images(images.shape[0], batch, config.val_fraction, config.seed)
    val_pairs = max(1, round(config.pairs * config.val_fraction))
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        inverter = build_inverter(config.arch, template, config.inverter_settings())
    training = config.training_fields()
    pair_fields = {k: v for k, v in training.items() if k not in TRAINING_ONLY}
    pairs_key = fingerprint(template_record(template), images, labels, pair_fields)
    run_id = fingerprint(pairs_key, training)
    cache_file = None if pairs_cache is None else Path(pairs_cache) / f"pairs-{pairs_key[:16]}"
    if cache_file is not None:
        cache_file = cache_file.with_suffix(".safetensors")
    if cache_file is not None and cache_file.exists():
        train, val = _cached_pairs(cache_file)
        say(f"pairs from the cache {cache_file}")
    else:
        train, val = _generate(
            template,
            inverter,
            images,
            labels,
            (train_idx, val_idx),
            config,
            val_pairs,
            progress,
            torch.device(device),
        )
        if cache_file is not None:
            make_folder(cache_file.parent, private=True)
            _write_cache(cache_file, train, val, pairs_key)
            say(f"pairs cached in {cache_file}")
    made = time.perf_counter() - started
    trainer = InverterTrainer(
        inverter, config, train, val, run_id=run_id, device=torch.device(device)
    )
    if resume:
        trainer.load(Path(checkpoint))  # type: ignore[arg-type]
        say(f"resuming from {checkpoint} at epoch {trainer.epoch + 1}")
    callback = on_step
    bar = _ProgressBar(on_step, config, trainer) if progress else None
    if bar is not None:
        callback = bar
    try:
        trainer.run(checkpoint, callback)
    finally:
        if bar is not None:
            bar.close()
    summary = {
        "arch": config.arch,
        "config": training,
        "pairs": len(train),
        "val_pairs": len(val),
        "images": {"count": int(images.shape[0]), "train": int(train_idx.numel())},
        "images_sha256": fingerprint(images),
        "labels": label_source,
        "epochs_run": trainer.epoch,
        "best_epoch": trainer.best_epoch,
        "best_val_mse": trainer.best_val,
        "history": trainer.history,
        "pair_seconds": round(made, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return TrainInverterResult(inverter.cpu().eval(), summary, config.record())


def _generate(
    template: UpdateFile,
    inverter: Inverter,
    images: torch.Tensor,
    labels: torch.Tensor,
    split: tuple[torch.Tensor, torch.Tensor],
    config: TrainInverterSettings,
    val_pairs: int,
    progress: bool,
    device: torch.device,
) -> tuple[PairSet, PairSet]:
    train_idx, val_idx = split
    maker = PairMaker(template, device)
    batch = maker.batch_size
    augment = parse_augment(config.augment)
    train_picks = _picks(train_idx, config.pairs, batch, config.seed + 3)
    val_picks = _picks(val_idx, val_pairs, batch, config.seed + 4)
    bar = stderr_progress("making pairs", "") if progress else None
    task = None
    if bar is not None:
        task = bar.add_task("pairs", total=config.pairs + val_pairs)
        bar.start()

    def advance(count: int) -> None:
        if bar is not None:
            bar.update(task, advance=count)  # type: ignore[arg-type]

    try:
        first = config.seed * 10_000_000
        train = make_pairs(maker, inverter, images, labels, train_picks, augment, first, advance)
        val = make_pairs(
            maker, inverter, images, labels, val_picks, augment, first + 5_000_000, advance
        )
    finally:
        if bar is not None:
            bar.stop()
    return train, val


class _ProgressBar:
    """Epoch progress on stderr with the latest training and validation MSE."""

    def __init__(
        self,
        inner: Callable[[InverterTrainer, EpochInfo], None] | None,
        config: TrainInverterSettings,
        trainer: InverterTrainer,
    ) -> None:
        self.inner = inner
        self.bar = stderr_progress(
            "train-inverter", "mse {task.fields[mse]}  val {task.fields[val]}"
        )
        done = trainer.epoch * trainer.steps_per_epoch + trainer.step
        self.task = self.bar.add_task(
            config.arch,
            total=config.epochs * trainer.steps_per_epoch,
            completed=done,
            mse="–",
            val="–",
        )
        self.bar.start()

    def __call__(self, trainer: InverterTrainer, info: EpochInfo) -> None:
        fields: dict[str, Any] = {"mse": f"{info.loss:.4g}"}
        if info.val_mse is not None:
            fields["val"] = f"{info.val_mse:.4g}"
        done = trainer.epoch * trainer.steps_per_epoch + trainer.step
        self.bar.update(self.task, completed=done, **fields)
        if self.inner is not None:
            self.inner(trainer, info)

    def close(self) -> None:
        self.bar.stop()
