"""Trained victims: a registry model trained on labelled images, saved after chosen epochs.

An FL audit attacks the global model at several rounds: freshly initialized (round 0) and after
training, when labels are harder to restore and BatchNorm running statistics hold a real image
prior. :func:`train_victim` makes such checkpoints reproducibly: the epoch-0 checkpoint is exactly
the model ``gradinvert capture --init-seed SEED`` builds, training is plain SGD with momentum at
a constant learning rate (so the epoch-1 checkpoint does not depend on how many epochs follow),
shuffling is seeded, and the files are byte-identical from run to run on one machine and thread
count. Every file is a safetensors state dict that ``capture --weights FILE`` reads; its one
metadata key, ``gradinvert.victim``, is a JSON string (one key: safetensors writes several keys
in an order that changes between processes) describing the model, the recipe and the scores.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save as save_bytes
from torch import nn

from gradinvert.io.atomic import atomic_path
from gradinvert.models.registry import build_model, model_spec
from gradinvert.models.spec import NORMALIZATIONS, InputSpec, ModelSpec

METADATA_KEY = "gradinvert.victim"
Log = Callable[[str], None]


@dataclass(frozen=True)
class VictimRecipe:
    """How a victim is trained: the model, the checkpoints wanted and the optimizer.

    ``seed`` is both the init seed (``capture --init-seed``) and the shuffling seed;
    ``normalize`` must be what ``capture --normalize`` is given when the victim is attacked.
    """

    arch: str = "convnet"
    num_classes: int = 10
    epochs: tuple[int, ...] = (0, 1, 5)
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    normalize: str = "imagenet"
    threads: int = 2

    def __post_init__(self) -> None:
        if not self.epochs or any(e < 0 for e in self.epochs):
            raise ValueError("epochs: a non-empty list of epoch counts >= 0")
        if list(self.epochs) != sorted(set(self.epochs)):
            raise ValueError("epochs: strictly increasing")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize: one of {', '.join(NORMALIZATIONS)}")
        if self.batch_size < 1 or self.threads < 1 or self.lr <= 0:
            raise ValueError("batch_size, threads and lr must be positive")


@dataclass
class Checkpoint:
    """One saved checkpoint and what it scored."""

    epoch: int
    path: Path
    train_loss: float  # mean cross-entropy over the training images, model in eval mode
    train_accuracy: float
    val_accuracy: float | None
    steps: int  # SGD steps taken so far
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Run with ``threads`` intra-op threads and deterministic algorithms; restore both after."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def input_spec(recipe: VictimRecipe, shape: tuple[int, int, int]) -> InputSpec:
    """The input spec ``capture`` would record for these images and ``recipe.normalize``."""
    mean, std = NORMALIZATIONS[recipe.normalize]
    return InputSpec(shape, mean[: shape[0]], std[: shape[0]])


@torch.no_grad()
def evaluate(
    model: nn.Module, spec: InputSpec, images: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on ``images`` in [0, 1]."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, images.shape[0], 256):
        logits = model(spec.normalize(images[start : start + 256]))
        target = labels[start : start + 256]
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    count = max(1, images.shape[0])
    return loss_sum / count, correct / count


def checkpoint_name(arch: str, data: str, epoch: int) -> str:
    """``convnet-digits32-epoch5.safetensors``."""
    return f"{arch}-{data}-epoch{epoch}.safetensors"


def write_weights(model: nn.Module, path: Path, info: dict[str, Any]) -> None:
    """The model's state dict as safetensors with ``info`` as one JSON metadata value."""
    state = {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}
    blob = save_bytes(state, metadata={METADATA_KEY: json.dumps(info, sort_keys=True)})
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def train_victim(
    recipe: VictimRecipe,
    train: tuple[torch.Tensor, torch.Tensor],
    out: Path,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    data: str = "data",
    log: Log = print,
) -> list[Checkpoint]:
    """Train ``recipe.arch`` on ``train`` (images N×C×H×W in [0, 1], int64 labels) on the CPU and
    write one checkpoint per ``recipe.epochs`` entry to ``out`` (named by
    :func:`checkpoint_name` with ``data``). Returns what each checkpoint scored."""
    images, labels = train
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError("train: images N×C×H×W and N labels")
    if images.shape[0] == 0:
        raise ValueError("train: no images")
    shape = (images.shape[1], images.shape[2], images.shape[3])
    spec = input_spec(recipe, shape)
    mspec = model_spec(recipe.arch, recipe.num_classes, shape)
    results: list[Checkpoint] = []
    with deterministic(recipe.threads):
        model = build_model(mspec, init_seed=recipe.seed)
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        generator = torch.Generator().manual_seed(recipe.seed)
        steps = 0
        for epoch in range(max(recipe.epochs) + 1):
            if epoch > 0:
                steps += _one_epoch(model, optimizer, spec, images, labels, recipe, generator)
            if epoch in recipe.epochs:
                results.append(
                    _save(model, mspec, spec, recipe, train, validation, out, data, epoch, steps)
                )
                last = results[-1]
                val = "" if last.val_accuracy is None else f", val acc {last.val_accuracy:.3f}"
                log(
                    f"{recipe.arch} epoch {epoch}: train loss {last.train_loss:.4f}, "
                    f"train acc {last.train_accuracy:.3f}{val} -> {last.path}"
                )
    return results


def _one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    spec: InputSpec,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: VictimRecipe,
    generator: torch.Generator,
) -> int:
    """One pass over a seeded permutation in minibatches (BN in train mode); the step count."""
    model.train()
    order = torch.randperm(images.shape[0], generator=generator)
    steps = 0
    for start in range(0, images.shape[0], recipe.batch_size):
        index = order[start : start + recipe.batch_size]
        if index.numel() < 2 and images.shape[0] >= 2:
            continue  # BatchNorm cannot train on one image; drop a last batch of one
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(spec.normalize(images[index])), labels[index])
        loss.backward()
        optimizer.step()
        steps += 1
    return steps


def _save(
    model: nn.Module,
    mspec: ModelSpec,
    spec: InputSpec,
    recipe: VictimRecipe,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor] | None,
    out: Path,
    data: str,
    epoch: int,
    steps: int,
) -> Checkpoint:
    train_loss, train_acc = evaluate(model, spec, *train)
    val_acc = None if validation is None else evaluate(model, spec, *validation)[1]
    path = out / checkpoint_name(recipe.arch, data, epoch)
    info = {
        "model": mspec.to_dict(),
        "input": spec.to_dict(),
        "normalize": recipe.normalize,
        "recipe": {**asdict(recipe), "epochs": list(recipe.epochs)},
        "data": data,
        "train_images": int(train[0].shape[0]),
        "epoch": epoch,
        "steps": steps,
        "train_loss": round(train_loss, 6),
        "train_accuracy": round(train_acc, 6),
        "val_accuracy": None if val_acc is None else round(val_acc, 6),
        "torch": torch.__version__,
    }
    write_weights(model, path, info)
    return Checkpoint(epoch, path, train_loss, train_acc, val_acc, steps)


def read_victim_info(path: str | Path) -> dict[str, Any] | None:
    """The ``gradinvert.victim`` description of a weights file (None when it has none)."""
    from gradinvert.io.tensorfile import read_metadata

    value = read_metadata(path).get(METADATA_KEY)
    if value is None:
        return None
    try:
        info = json.loads(value)
    except json.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None
