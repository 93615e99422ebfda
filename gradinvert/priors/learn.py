"""Meta-learn a generative prior from a stream of updates alone (``gradinvert learn-prior``).

GIML (Jeon et al., NeurIPS 2021; DESIGN.md §5.7). The learner never sees an image: each *task*
is one shared update (a gradient or a FedAvg delta) with its labels (restored from the update as
``labels --method auto`` does, or read from ``<update>.labels.json`` beside it). Per task, with
the current generator G_θ in eval mode (BN running statistics):

1. latent search: K restarts of one latent per image, Adam (lr 3e-2) on
   ``1 − cos(g(G_θ(z)), g*) + TV 1e-6 + z_norm·||z||₂`` (:class:`~gradinvert.invert.spaces.
   LatentSpace` with ``z_norm``); the restart with the lowest gradient distance is kept;
2. fine-tuning: ONE copy θ′ of the whole generator, shared by the batch, Adam (lr 1e-3) on the
   same matching loss with those latents fixed (:class:`~gradinvert.invert.spaces.
   SharedWeightSpace`); both stages decay the lr ×0.1 at 3/8, 5/8, 7/8 (the gias preset).
   The generator lr is absolute by default, as in the official GIML code (a DCGAN with Adam
   1e-3); ``generator_lr_scale="relative"`` steps each weight tensor by lr × its RMS, as
   ``invert``'s default does (:func:`~gradinvert.invert.spaces.weight_lr_scales`);
3. Reptile step: the meta-optimizer (Adam, meta lr 1e-2, as in the official code) minimises
   ``||θ′ − θ||²`` over θ, i.e. it is handed the meta-gradient **2(θ − θ′)** (:func:`reptile_step`)
   and moves θ toward θ′. Only parameters move; BN running statistics stay as they are.

Tasks are drawn from the updates in a seeded order: epochs over the list, each a fresh seeded
permutation (:func:`task_order`; its first N entries do not depend on how many tasks follow, so
a finished run can be continued with a larger ``--tasks``). Each task's inner searches are seeded
by ``seed + task index``, so a run continued from a checkpoint ends with exactly the weights of an
uninterrupted one on CPU.

Ctrl-C (SIGINT) or SIGTERM (main thread): the current task is abandoned after its current
iteration, the checkpoint of the last finished task is written when one was asked for, and
:class:`InterruptedRun` is raised (exit 130; 143 for SIGTERM); a second signal aborts at once.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from gradinvert.config.learn_prior import LearnPriorSettings
from gradinvert.generators import Generator, arch_record, load_generator, save_generator
from gradinvert.invert.attack import _hand_over, _prepare, check_update, resolve_labels
from gradinvert.invert.engine import Engine
from gradinvert.invert.spaces import LatentSpace, SearchSpace, SharedWeightSpace
from gradinvert.invert.stages import Stage, plan_stages
from gradinvert.io.file_schemas import LearnPriorCheckpoint
from gradinvert.io.files import UpdateFile, load_update, parse_labels
from gradinvert.priors.train import SAMPLE_COUNT, canonical_images, images_hash, render_samples
from gradinvert.report.grid import save_png
from gradinvert.runtime.checkpoint import (
    CheckpointKind,
    InterruptedRun,
    LongRun,
    check_optimizer_state,
    check_resume,
    check_tensors_fit,
    fingerprint,
    restoring,
)
from gradinvert.runtime.errors import InvalidInputError, MissingInputError, UsageError
from gradinvert.runtime.runstate import stderr_progress

CHECKPOINT = CheckpointKind(
    "learn-prior",
    "gradinvert-learn-prior-checkpoint/1",
    LearnPriorCheckpoint,
    "updates, starting generator or settings",
)
RECIPE = "GIML (Jeon et al. 2021): latent search, shared-copy fine-tuning, Reptile"
META_GRADIENT = "2(θ − θ′): Adam on ||θ′ − θ||²"
LABELS_SUFFIX = ".labels.json"
GLOB_CHARS = set("*?[")

Log = Callable[[str], None]


# ---------------------------------------------------------------------- the stream


@dataclass
class Stream:
    """The update files of a run, in canonical (sorted) order, checked to fit one model."""

    paths: list[Path]
    names: list[str]  # relative to the files' common folder
    hashes: list[str]  # SHA-256 of each file's bytes
    model: dict[str, Any]
    input: dict[str, Any]

    @property
    def digest(self) -> str:
        """SHA-256 over the files in sorted order (name, NUL, size, bytes)."""
        return images_hash(self.paths, self.names)


def expand_update_paths(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; an argument that is not a file but holds ``*?[`` is a glob (sorted)."""
    if not sources:
        raise UsageError(
            "no update files given: pass files or a quoted glob ('stream/*.safetensors')"
        )
    paths: list[Path] = []
    for source in sources:
        text = os.fspath(source)
        path = Path(text)
        if path.exists():
            if path.is_dir():
                raise UsageError(f"{path}: is a folder; pass its update files or a glob")
            paths.append(path)
        elif GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise MissingInputError(f"{text!r} matches no file")
            paths.extend(Path(m) for m in matches if not Path(m).is_dir())
        else:
            raise MissingInputError(f"{path}: no such update file")
    return paths


def labels_path(update: Path) -> Path:
    """The labels file of ``update`` (read when it exists): u3.safetensors → u3.labels.json."""
    stem = (
        update.name[: -len(".safetensors")] if update.name.endswith(".safetensors") else update.stem
    )
    return update.with_name(stem + LABELS_SUFFIX)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_stream(sources: Sequence[str | os.PathLike[str]]) -> Stream:
    """Resolve, sort and check the update files: one architecture, one input, valid updates."""
    paths, names = canonical_images(expand_update_paths(sources))
    model = input_spec = None
    first: Path | None = None
    for path in paths:
        update = load_update(path)
        try:
            check_update(update)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{path}: {exc.message}") from None
        if first is None:
            first, model, input_spec = path, update.model.to_dict(), update.input.to_dict()
            continue
        if update.input.to_dict() != input_spec:
            raise InvalidInputError(
                f"{path}: input {update.input.to_dict()} differs from {first}'s {input_spec}; "
                "a stream holds updates of one input shape and normalization"
            )
        if update.model.to_dict() != model:
            raise InvalidInputError(
                f"{path}: model {update.model.to_dict()} differs from {first}'s {model}; "
                "a stream holds updates of one architecture"
            )
    return Stream(paths, names, [_file_hash(p) for p in paths], model or {}, input_spec or {})


def task_order(count: int, tasks: int, seed: int) -> list[int]:
    """Which update each task uses: epochs over ``count`` updates, each a seeded permutation."""
    rng = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < tasks:
        order.extend(int(i) for i in torch.randperm(count, generator=rng))
    return order[:tasks]


# ---------------------------------------------------------------------- one task


@dataclass
class TaskResult:
    """The fine-tuned copy θ′ of one task and how close it came."""

    adapted: dict[str, torch.Tensor]
    labels: list[int]
    label_source: str
    latent_distance: float  # the chosen restart's gradient distance after the latent search
    distance: float  # the gradient distance of G_θ′(z) (the task's final distance)


def run_task(
    generator: Generator,
    update: UpdateFile,
    labels: list[int] | None,
    config: LearnPriorSettings,
    task: int,
    device: torch.device,
) -> TaskResult:
    """Latent search (with the ||z|| penalty), then one shared copy of G fine-tuned; θ′ back."""
    attack = config.attack_config(task)
    check_update(update)
    choice = resolve_labels(update, labels, attack)
    assert choice.labels is not None
    batch = len(choice.labels)
    _, simulator, _ = _prepare(update, choice, attack, device, batch)
    shape: tuple[int, int, int, int] = (batch, *update.input.shape)  # type: ignore[assignment]
    latent_stage, weight_stage = plan_stages(attack)

    def engine(space: SearchSpace, stage: Stage) -> Engine:
        return Engine(
            simulator,
            stage.config,
            shape,
            update.input,
            update.model.num_classes,
            False,  # labels are given or restored, never learned
            None,  # no BN prior
            device,
            space=space,
            stage=space.name,
        )

    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(attack.seed)
        search = engine(
            LatentSpace(shape, update.input, device, generator, z_norm=config.z_norm),
            latent_stage,
        )
        search.run()
        latents, _, record = _hand_over(search)
        relative = config.generator_lr_scale == "relative"
        space = SharedWeightSpace(
            shape, update.input, device, generator, latents, relative_lr=relative
        )
        tune = engine(space, weight_stage)
        tune.run()
        distances, _ = simulator.evaluate(tune.candidates)
    adapted = {name: value[0].detach() for name, value in tune.params.items()}
    return TaskResult(
        adapted,
        list(choice.labels),
        choice.source,
        float(min(record["seed_distances"])),
        float(distances[0]),
    )


def reptile_step(
    module: torch.nn.Module, adapted: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> float:
    """One meta step: hand ``optimizer`` the gradient of ||θ′ − θ||², i.e. 2(θ − θ′), and step.

    ``optimizer`` holds ``module``'s parameters (Adam, meta lr 1e-2 in GIML). Returns the
    distance ||θ′ − θ|| before the step.
    """
    squared = 0.0
    params = dict(module.named_parameters())
    if set(params) != set(adapted):
        raise ValueError("the adapted copy does not have the generator's parameters")
    for name, param in params.items():
        difference = param.detach() - adapted[name].to(param.device)
        squared += float(difference.double().square().sum())
        param.grad = 2.0 * difference
    optimizer.step()
    for param in params.values():
        param.grad = None
    return math.sqrt(squared)


# ---------------------------------------------------------------------- the learner


@dataclass
class TaskInfo:
    """What a progress display needs after each task."""

    done: int  # tasks finished so far
    total: int
    update: str  # the task's update file (relative name)
    distance: float  # the task's final gradient distance
    latent_distance: float
    step: float  # ||θ′ − θ|| of the Reptile step


@dataclass
class MetaLearner(LongRun):
    """State and loop of one ``learn-prior`` run (see the module docstring)."""

    checkpoint_kind: ClassVar[CheckpointKind] = CHECKPOINT

    generator: Generator
    stream: Stream
    config: LearnPriorSettings
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    run_id: str = ""
    done: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per task
    _stop: bool = False

    def __post_init__(self) -> None:
        self.module = self.generator.module.to(self.device).eval()
        self.optimizer = torch.optim.Adam(list(self.module.parameters()), lr=self.config.meta_lr)
        self.order = task_order(len(self.stream.paths), self.config.tasks, self.config.seed)
        rng = torch.Generator().manual_seed(self.config.seed + 3)
        self.fixed_latents = self.generator.sample_latents(SAMPLE_COUNT, rng)
        self._samples: Path | None = None
        self._clock = (time.monotonic(), self.seconds)
        self._wrote_samples = False
        self._abandoned = False

    def labels_for(self, path: Path) -> list[int] | None:
        """The labels of ``labels_path(path)`` when that file exists, else None (restore)."""
        beside = labels_path(path)
        return parse_labels(str(beside)) if beside.exists() else None

    def task(self) -> TaskInfo:
        """Run the next task and take its Reptile step."""
        index = self.order[self.done]
        path = self.stream.paths[index]
        update = load_update(path)
        if _file_hash(path) != self.stream.hashes[index]:
            raise InvalidInputError(f"{path}: the file changed during the run")
        result = run_task(
            self.generator, update, self.labels_for(path), self.config, self.done, self.device
        )
        if not math.isfinite(result.distance):
            raise InvalidInputError(f"{path}: the gradient distance became non-finite")
        step = reptile_step(self.module, result.adapted, self.optimizer)
        self.done += 1
        self.history.append(
            {
                "task": self.done,
                "update": self.stream.names[index],
                "labels": result.labels,
                "label_source": result.label_source,
                "latent_distance": round(result.latent_distance, 6),
                "distance": round(result.distance, 6),
                "step": round(step, 6),
            }
        )
        return TaskInfo(
            self.done,
            self.config.tasks,
            self.stream.names[index],
            result.distance,
            result.latent_distance,
            step,
        )

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """The fixed latents through the current generator (eval mode), in [-1, 1]."""
        return self.module(self.fixed_latents.to(self.device)).cpu()

    def write_samples(self, path: Path) -> None:
        """Rewrite the samples grid PNG atomically."""
        save_png(render_samples(self.samples()), path)

    def run(
        self,
        checkpoint: Path | None = None,
        samples: Path | None = None,
        on_task: Callable[[MetaLearner, TaskInfo], None] | None = None,
    ) -> None:
        """Run tasks until ``config.tasks``; checkpoint after each, samples every few."""
        self._samples, self._clock = samples, (time.monotonic(), self.seconds)
        self._wrote_samples = False
        self.run_steps(checkpoint, on_task)
        if samples is not None and not self._wrote_samples:
            self.write_samples(samples)

    def finished(self) -> bool:
        return self.done >= self.config.tasks

    def advance(self) -> TaskInfo | None:
        try:
            info: TaskInfo | None = self.task()
        except InterruptedRun:  # Ctrl-C inside a task's search: abandon the task
            self._stop = self._abandoned = True
            info = None
        started, base = self._clock
        self.seconds = base + time.monotonic() - started
        total, samples = self.config.tasks, self._samples
        self._wrote_samples = (
            info is not None
            and samples is not None
            and (self.done % self.config.samples_every == 0 or self.done == total)
        )
        if self._wrote_samples:
            self.write_samples(samples)  # type: ignore[arg-type]
        return info

    def position(self) -> int:
        return self.done

    def where(self) -> str:
        where = f"after task {self.done} of {self.config.tasks}"
        if self._abandoned:
            where += f" (task {self.done + 1} was under way and is run again)"
        return where

    # ------------------------------------------------------------------ checkpoints

    def payload(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is."""
        return {
            "done": self.done,
            "order": list(self.order[: self.done]),
            "generator": self.module.state_dict(),
            "meta_optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
            "seconds": self.seconds,
        }

    def restore(self, state: dict[str, Any], source: str) -> None:
        """Continue from a checked :meth:`payload` of this run."""
        done = int(state["done"])
        if done > self.config.tasks:
            raise UsageError(f"{source}: the checkpoint is at task {done}, past --tasks")
        if list(state["order"]) != self.order[:done]:
            raise InvalidInputError(f"{source}: the checkpoint's task order does not fit")
        check_tensors_fit(source, state["generator"], self.module.state_dict(), "the generator")
        check_optimizer_state(source, self.optimizer, state["meta_optimizer"])
        with restoring(source):
            self.module.load_state_dict(state["generator"])
            self.optimizer.load_state_dict(state["meta_optimizer"])
            torch.set_rng_state(state["torch_rng"])
        self.done = done
        self.history = json.loads(state["history"])
        self.seconds = float(state["seconds"])


# ---------------------------------------------------------------------- the run


@dataclass
class LearnPriorResult:
    """A meta-learned generator (eval mode, on the CPU) and how it came about."""

    module: torch.nn.Module
    arch: dict[str, Any]  # the generator file's architecture record
    training: dict[str, Any]  # the generator file's ``training`` metadata
    history: list[dict[str, Any]]  # one record per task
    config: dict[str, Any] = field(default_factory=dict)  # the settings (Settings.record())


def learn_prior(
    updates: Sequence[str | os.PathLike[str]],
    config: LearnPriorSettings,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
    checkpoint: Path | None = None,
    resume: bool = False,
    samples: Path | None = None,
    log: Log | None = None,
    on_task: Callable[[MetaLearner, TaskInfo], None] | None = None,
) -> LearnPriorResult:
    """Meta-learn ``config.generator`` (``dcgan``, a generator file or
    ``package.module:factory``, with ``config.generator_weights`` loaded into a named or imported
    one: see :func:`gradinvert.generators.load_generator`) from the update files ``updates``
    (files or globs) alone.

    ``progress``: a rich progress bar over the tasks on stderr (else ``log`` gets one line per
    task). ``checkpoint``: written after every task and on Ctrl-C; with ``resume`` the run
    continues from it and ends with exactly the weights of an uninterrupted run. ``samples``: a
    PNG grid of 64 images from fixed latents, rewritten every ``config.samples_every`` tasks.
    """
    config = LearnPriorSettings.model_validate(config.model_dump())  # a validated private copy
    device = torch.device(device)
    say = log or (lambda _message: None)
    check_resume(checkpoint, resume)
    stream = open_stream(updates)
    shape = tuple(stream.input["shape"])
    loaded = load_generator(
        config.generator,
        shape,  # type: ignore[arg-type]
        weights=config.generator_weights,
        seed=config.seed,
        device=device,
    )
    start_state = {k: v.detach() for k, v in loaded.module.state_dict().items()}
    count = len(stream.paths)
    if config.tasks > count:
        say(
            f"--tasks {config.tasks} over {count} updates: {math.ceil(config.tasks / count)} epochs"
        )
    run_id = fingerprint(
        config.fingerprint_fields(),
        stream.names,
        stream.hashes,
        {k: v for k, v in loaded.source.items() if k != "file"},
        start_state,
    )
    learner = MetaLearner(loaded, stream, config, device, run_id=run_id)
    if resume:
        learner.load(Path(checkpoint))  # type: ignore[arg-type]
        say(f"resuming from {checkpoint} after task {learner.done} of {config.tasks}")
    callback = _ProgressBar(learner, on_task) if progress else _TaskLog(say, on_task)
    try:
        learner.run(checkpoint, samples, callback)
    finally:
        if isinstance(callback, _ProgressBar):
            callback.close()
    module = learner.module.cpu().eval()
    distances = [record["distance"] for record in learner.history]
    training = {
        "method": "learn-prior",
        "recipe": RECIPE,
        "tasks": learner.done,
        "updates": count,
        "update_files": [
            {"name": name, "sha256": digest}
            for name, digest in zip(stream.names, stream.hashes, strict=True)
        ],
        "updates_hash": stream.digest,
        "model": stream.model,
        "input": stream.input,
        "order": [stream.names[i] for i in learner.order[: learner.done]],
        "start": loaded.source,
        "latent_iterations": config.latent_iterations,
        "iterations": config.iterations,
        "restarts": config.restarts,
        "latent_lr": config.latent_lr,
        "generator_lr": config.generator_lr,
        "generator_lr_scale": config.generator_lr_scale,
        "meta_lr": config.meta_lr,
        "meta_optimizer": "adam",
        "meta_gradient": META_GRADIENT,
        "z_norm": config.z_norm,
        "objective": "1 - global cosine",
        "tv": config.tv,
        "seed": config.seed,
        "task_distances": distances,
        "labels": sorted({record["label_source"] for record in learner.history}),
        "seconds": round(learner.seconds, 3),
        "device": device.type,
        "torch": torch.__version__,
    }
    history = list(learner.history)
    return LearnPriorResult(module, arch_record(loaded), training, history, config.record())


def save_learned_prior(result: LearnPriorResult, path: str | os.PathLike[str]) -> None:
    """Write the learned generator as a generator file (as ``train-prior`` does), with the
    run's settings (``inspect --print-config`` prints them for a replay)."""
    save_generator(path, result.module, result.arch, result.training, config=result.config)


class _TaskLog:
    """Without a progress bar: one log line per finished task."""

    def __init__(self, say: Log, inner: Callable[[MetaLearner, TaskInfo], None] | None) -> None:
        self.say, self.inner = say, inner

    def __call__(self, learner: MetaLearner, info: TaskInfo) -> None:
        self.say(
            f"task {info.done}/{info.total} ({info.update}): distance {info.distance:.4f} "
            f"(latent {info.latent_distance:.4f}), step {info.step:.4g}"
        )
        if self.inner is not None:
            self.inner(learner, info)


class _ProgressBar:
    """A rich progress bar on stderr over the tasks, with each task's final distance."""

    def __init__(
        self, learner: MetaLearner, inner: Callable[[MetaLearner, TaskInfo], None] | None
    ) -> None:
        self.inner = inner
        self.bar = stderr_progress("learn-prior", "distance {task.fields[distance]}")
        self.task = self.bar.add_task(
            "learn-prior", total=learner.config.tasks, completed=learner.done, distance="–"
        )
        self.bar.start()

    def __call__(self, learner: MetaLearner, info: TaskInfo) -> None:
        self.bar.update(self.task, completed=info.done, distance=f"{info.distance:.4f}")
        if self.inner is not None:
            self.inner(learner, info)

    def close(self) -> None:
        self.bar.stop()
