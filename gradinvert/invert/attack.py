"""``run_attack``: reconstruct a client's batch from its shared update.

Output selection never uses the truth: with ``pick="best"`` every image comes from the seed
whose final gradient distance (the objective without priors, evaluated without jitter) is the
lowest; with ``pick="consensus"`` the output is the registered group consensus of all seeds,
in that best seed's frame and slot order.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gradinvert.config.attack import AttackConfig
from gradinvert.invert.assume import assume_local_training
from gradinvert.invert.engine import CHECKPOINT, Engine, Progress
from gradinvert.invert.objectives import select_layers
from gradinvert.invert.priors import bn_reference
from gradinvert.invert.simulate import Simulator, Victim, build_victim
from gradinvert.invert.stages import (
    Stage,
    build_space,
    feature_layer_count,
    plan_stages,
    weight_latents,
)
from gradinvert.io.files import BatchFile, UpdateFile, check_labels
from gradinvert.runtime.checkpoint import check_resume, fingerprint, read_checkpoint
from gradinvert.runtime.device import rng_devices
from gradinvert.runtime.errors import InvalidInputError, UnavailableError, UsageError
from gradinvert.runtime.runstate import stderr_progress

if TYPE_CHECKING:
    from gradinvert.generators import Generator

Log = Callable[[str], None]


@dataclass
class LabelChoice:
    """The labels an attack uses and where they come from."""

    labels: list[int] | None  # None: learned jointly (DLG)
    source: str  # given | restored | learned
    method: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "method": self.method,
            "labels": self.labels,
            "details": self.details,
        }


def check_update(update: UpdateFile) -> None:
    """Refuse updates this engine cannot attack, with a clear message."""
    loss = update.loss or {}
    if loss.get("name", "cross_entropy") != "cross_entropy":
        raise InvalidInputError(f"update loss {loss.get('name')!r}: only cross_entropy is known")
    if loss.get("reduction", "mean") not in ("mean", "sum"):
        raise InvalidInputError(f"update loss reduction {loss.get('reduction')!r}: mean or sum")
    for name, value in update.update.items():
        param = update.params.get(name)
        if param is None or param.shape != value.shape:
            raise InvalidInputError(
                f"update tensor {name!r} has shape {tuple(value.shape)}, the model parameter "
                f"{'is missing' if param is None else f'has {tuple(param.shape)}'}"
            )
        if not torch.isfinite(value).all():
            raise InvalidInputError(f"update tensor {name!r} holds non-finite values")
    if update.kind == "delta":
        if update.local is None:
            raise InvalidInputError("a delta update needs its 'local' training metadata")
        if update.local.optimizer != "sgd":
            raise InvalidInputError(
                f"local optimizer {update.local.optimizer!r}: only plain sgd can be simulated"
            )
        if update.local.steps < 1 or update.local.batch_size < 1:
            raise InvalidInputError("local training needs steps >= 1 and batch size >= 1")


def resolve_labels(
    update: UpdateFile, labels: list[int] | None, config: AttackConfig
) -> LabelChoice:
    """Given labels as they are; else learned (``learn_labels``) or restored from the update."""
    num_classes = update.model.num_classes
    if labels is not None:
        check_labels(labels, update.batch_size, num_classes)
        if not labels:
            raise UsageError("no labels given")
        return LabelChoice(list(labels), "given")
    if config.learn_labels:
        if update.batch_size is None:
            raise UsageError("the update does not record its batch size: pass --labels")
        return LabelChoice(None, "learned", "joint soft labels (DLG)")
    try:
        from gradinvert.labels import restore_labels
    except ImportError:
        raise UnavailableError(
            "label restoration is not available in this installation: pass --labels"
        ) from None
    method = "idlg" if config.attack == "idlg" and update.batch_size == 1 else "auto"
    result = restore_labels(update, method=method, batch_size=update.batch_size)
    restored = [int(x) for x in result.labels]
    check_labels(restored, update.batch_size, num_classes)
    return LabelChoice(restored, "restored", result.method, dict(result.details))


def _prepare(
    update: UpdateFile,
    choice: LabelChoice,
    config: AttackConfig,
    device: torch.device,
    batch_size: int,
) -> tuple[Victim, Simulator, list[str]]:
    victim = build_victim(update, device)
    for name, (mean, var) in update.bn_stats.items():
        if name not in victim.bn_names:
            raise InvalidInputError(f"update carries BN statistics of unknown layer {name!r}")
        channels = victim.params.get(f"{name}.weight")
        if channels is not None and (mean.shape != channels.shape or var.shape != mean.shape):
            raise InvalidInputError(f"BN statistics of {name!r} do not fit the layer")
    matched = select_layers(victim.trainable, update.update, config.layers)
    labels = None if choice.labels is None else torch.tensor(choice.labels, dtype=torch.long)
    simulator = Simulator(
        victim,
        update,
        labels,
        matched,
        config.objective,
        config.bn > 0,
        device,
        batch_size,
        relative=config.layer_weights == "relative",
        adapt_defense=config.adapt_defense,
    )
    return victim, simulator, matched


def run_attack(
    update: UpdateFile,
    labels: list[int] | None,
    config: AttackConfig,
    device: torch.device | str = "cpu",
    progress: bool = True,
    checkpoint: Path | None = None,
    resume: bool = False,
    *,
    checkpoint_every: int = 100,
    log: Log | None = None,
    on_iteration: Callable[[Engine, Progress], None] | None = None,
    generator: Generator | None = None,
) -> BatchFile:
    """Reconstruct the batch behind ``update``; the result's metadata records the whole run.

    ``labels``: the batch's labels, or None to restore them from the update (or to learn them
    jointly when ``config.learn_labels``). ``progress`` shows a rich progress bar on stderr.
    ``checkpoint``: written every ``checkpoint_every`` iterations and on Ctrl-C; with
    ``resume`` the run continues from it and ends exactly as an uninterrupted run would.
    ``generator``: the generator of ``--search z|w|zw``; by default ``config.generator`` is
    loaded (:func:`gradinvert.generators.load_generator`).
    """
    config = type(config).model_validate(config.model_dump())  # a validated private copy
    device = torch.device(device)
    say = log or (lambda _message: None)
    if checkpoint_every < 1:
        raise UsageError("--checkpoint-every must be at least 1")
    check_resume(checkpoint, resume)
    recorded = update  # labels are restored from the update as recorded, scale unknown or not
    update, assumed = assume_local_training(update)
    if assumed:
        say(assumed)
    check_update(update)
    generator = _generator(config, generator, update, device)
    choice = resolve_labels(recorded, labels, config)
    if choice.source == "restored":
        say(f"labels restored from the update ({choice.method}): {choice.labels}")
    batch = len(choice.labels) if choice.labels is not None else int(update.batch_size or 0)
    if config.group > 0 and config.seeds < 2:
        say("group consistency needs --seeds 2 or more: the group term is off")
    if config.attack == "idlg" and batch > 1:
        say("iDLG is defined for a single image; running it on the whole batch")

    start, inverter_record = _inverter_start(config, update, device, say)
    victim, simulator, matched = _prepare(update, choice, config, device, batch)
    for line in _adaptation_lines(simulator):
        say(line)
    bn_ref = None
    bn_source = "none"
    if config.bn > 0:
        if not victim.bn_names:
            say("the model has no BatchNorm layers: the BN prior is off")
        else:
            try:
                bn_ref = bn_reference(update, victim.bn_names).to(device)
            except KeyError as exc:
                raise InvalidInputError(
                    f"update file: no BN statistics or running statistics for layer {exc}"
                ) from None
            bn_source = bn_ref.source
            say(f"BN prior reference: {bn_source}")

    shape = (batch, *update.input.shape)
    run_id = fingerprint(
        config.to_dict(),
        choice.labels,
        update.kind,
        update.update,
        update.params,
        update.buffers,
        {k: torch.stack(v) for k, v in update.bn_stats.items()},
        _generator_state(generator),
        start if start is not None else [],
    )
    saved = read_checkpoint(checkpoint, CHECKPOINT, run_id) if resume else None  # type: ignore[arg-type]
    stages = plan_stages(config, feature_layer_count(config, generator))
    first = 0
    if saved is not None:
        names = [stage.name for stage in stages]
        if saved.get("stage") not in names:
            raise UsageError(
                f"{checkpoint}: the checkpoint belongs to another run (different update, labels "
                "or settings); start afresh without --resume or use another --checkpoint path"
            )
        first = names.index(saved["stage"])
    with torch.random.fork_rng(devices=rng_devices(device)):
        torch.manual_seed(config.seed)
        latents = logits = None
        if config.search == "w":
            assert generator is not None
            latents = weight_latents(generator, config.seeds, batch, config.seed)
        elif first > 0:  # resuming into a later stage: the checkpoint holds what it started from
            fixed = saved["fixed"]  # type: ignore[index]
            latents = fixed["start"] if stages[first].layer else fixed["z"]
        history: list[dict[str, Any]] = []
        kept: dict[str, torch.Tensor] = {}

        def build(stage: Stage, carried: torch.Tensor | None) -> Engine:
            space = build_space(
                stage,
                shape,  # type: ignore[arg-type]
                update.input,
                device,
                generator,
                carried,
                reference=start,
            )
            engine = Engine(
                simulator,
                stage.config,
                shape,  # type: ignore[arg-type]
                update.input,
                update.model.num_classes,
                choice.labels is None,
                bn_ref,
                device,
                run_id=run_id,
                space=space,
                stage=stage.name,
                history=history,
                kept=kept,
            )
            if logits is not None:
                engine.adopt_labels(logits)
            return engine

        for index, stage in enumerate(stages[first:], start=first):
            if stage.name == "w" and config.generator_lr_scale == "auto":
                resumed = saved if index == first else None
                if resumed is not None:  # the probe ran before the checkpoint: its record
                    history = json.loads(resumed.get("history", "[]"))
                else:
                    history = [*history, _probe(stage, lambda s, z=latents: build(s, z))]
                chosen = history[-1]["chosen"]
                say(f"generator lr scale: {chosen} (probe: {history[-1]['distances']})")
                stage = replace(
                    stage, config=stage.config.model_copy(update=dict(generator_lr_scale=chosen))
                )
            engine = build(stage, latents)
            if saved is not None and index == first:
                engine.load_state_dict(saved, str(checkpoint))
                _check_kept(engine, shape, str(checkpoint))  # type: ignore[arg-type]
                say(f"resuming from {checkpoint} at {stage.name} iteration {engine.iteration}")
            _run_stage(engine, stage.config, progress, checkpoint, checkpoint_every, on_iteration)
            history, kept = engine.history, engine.kept
            if config.search == "f":
                record = _keep_best(engine)
                say(
                    f"{stage.name}: lowest gradient distance {record['distance']:.4g} "
                    f"(restart {record['chosen_seed']})"
                )
                if index + 1 < len(stages):
                    latents = _next_features(engine, stages[index + 1].layer)
                    logits = engine.label_logits
                history = [*history, record]
            elif index + 1 < len(stages):
                if stages[index + 1].config.seeds > 1:  # every restart refined (prior stage)
                    latents, logits, record = _hand_over_all(engine)
                    message = "every restart is refined in its own generator copies"
                else:
                    latents, logits, record = _hand_over(engine)
                    message = (
                        f"restart {record['chosen_seed']} of {stage.config.seeds} has the lowest "
                        f"gradient distance ({min(record['seed_distances']):.4g}); the weight "
                        "stage refines it with one generator copy per image"
                    )
                history = [*history, record]
                say(f"latent stage: {message}")
        result = _result(engine, choice, config, matched, bn_source, update, history)
        if inverter_record is not None:
            result.metadata["inverter"] = inverter_record
        return result


def _adaptation_lines(simulator: Simulator) -> list[str]:
    """What the attack does about the update's defenses, for the log."""
    lines = []
    if len(simulator.members) > 1:
        sizes = "+".join(str(m.size) for m in simulator.members)
        lines.append(
            f"secure aggregate of {len(simulator.members)} clients: each simulated on its own "
            f"slice of the candidate batch ({sizes} images), their weighted mean matched"
        )
    plan = simulator.adaptation
    if plan.applied:
        lines.append("defense adapted: " + "; ".join(plan.applied))
    if plan.skipped:
        lines.append("defense not adapted: " + "; ".join(plan.skipped))
    return lines


def _inverter_start(
    config: AttackConfig, update: UpdateFile, device: torch.device, say: Log
) -> tuple[torch.Tensor | None, dict[str, Any] | None]:
    """``--init git`` / ``--inverter-prior``: the inverter's estimate and its record."""
    if config.init != "git" and not config.inverter_prior:
        return None, None
    from gradinvert.inverter import estimate, load_inverter

    inverter = load_inverter(config.inverter)  # type: ignore[arg-type]
    images, record = estimate(inverter, update, device, say)
    say(
        f"seeds start from the {record['arch']} inverter's estimate "
        f"(+ noise {config.init_noise:g})"
        + (f", anchored with weight {config.inverter_prior:g}" if config.inverter_prior else "")
    )
    return images, record


def _generator(
    config: AttackConfig, given: Generator | None, update: UpdateFile, device: torch.device
) -> Generator | None:
    """The generator a z, w or zw search needs (loaded from ``config.generator`` if not given)."""
    if config.search == "x":
        return None
    if given is not None:
        return _on_device(given, device)
    if not config.generator:
        raise UsageError(
            f"--search {config.search} needs --generator (dcgan, a generator file written by "
            "train-prior, or package.module:factory)"
        )
    from gradinvert.generators import load_generator

    return load_generator(
        config.generator,
        tuple(update.input.shape),  # type: ignore[arg-type]
        weights=config.generator_weights,
        seed=config.seed,
        device=device,
    )


def _on_device(generator: Generator, device: torch.device) -> Generator:
    """``generator`` with its module on ``device``: the caller's own where it already is there,
    else a moved copy (the caller's generator stays where it is)."""
    target = torch.empty(0, device=device).device  # "cuda" → "cuda:0": comparable
    tensors = [*generator.module.parameters(), *generator.module.buffers()]
    if all(t.device == target for t in tensors):
        return generator
    return replace(generator, module=copy.deepcopy(generator.module).to(target))


def _generator_state(generator: Generator | None) -> dict[str, torch.Tensor]:
    if generator is None:
        return {}
    return {k: v.detach() for k, v in generator.module.state_dict().items()}


def _run_stage(
    engine: Engine,
    config: AttackConfig,
    progress: bool,
    checkpoint: Path | None,
    checkpoint_every: int,
    on_iteration: Callable[[Engine, Progress], None] | None,
) -> None:
    callback = on_iteration
    if progress:
        callback = _with_progress_bar(on_iteration, config, engine.iteration, engine.stage)
    try:
        engine.run(checkpoint, checkpoint_every, callback)
    finally:
        if callback is not None and hasattr(callback, "close"):
            callback.close()  # type: ignore[attr-defined]


def _hand_over(engine: Engine) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """The latent stage's best restart (by gradient distance): its latents, labels, record."""
    distances, _ = engine.simulator.evaluate(engine.candidates, engine.label_logits)
    distances = distances.detach().cpu().double()
    best = int(torch.nan_to_num(distances, nan=float("inf")).argmin())
    latents = engine.params["z"][best : best + 1].detach().clone()
    logits = None
    if engine.label_logits is not None:
        logits = engine.label_logits[best : best + 1].detach().clone()
    record = {
        "stage": engine.stage,
        "iterations": engine.iteration,
        "seeds": engine.config.seeds,
        "chosen_seed": best,
        "seed_distances": [float(d) for d in distances],
        "resets": list(engine.resets),
    }
    return latents, logits, record


PROBE_SCALES = ("relative", "absolute")


def _probe(stage: Stage, build: Callable[[Stage], Engine]) -> dict[str, Any]:
    """``--generator-lr-scale auto``: a short trial of the weight stage with each lr scale
    (``probe_iterations``, same start); the scale whose best restart ends with the lower
    gradient distance wins. Only the update is read: the pick is attacker-computable."""
    distances = {}
    for scale in PROBE_SCALES:
        trial = stage.config.model_copy(
            update=dict(generator_lr_scale=scale, iterations=stage.config.probe_iterations)
        )
        engine = build(replace(stage, config=trial))
        engine.run()
        found, _ = engine.simulator.evaluate(engine.candidates, engine.label_logits)
        distances[scale] = float(torch.nan_to_num(found.detach(), nan=float("inf")).min())
    chosen = min(PROBE_SCALES, key=distances.__getitem__)
    return {
        "stage": "probe",
        "iterations": stage.config.probe_iterations,
        "distances": distances,
        "chosen": chosen,
    }


def _hand_over_all(engine: Engine) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """Every restart's latents and labels go on (the weight stage that keeps the prior)."""
    distances, _ = engine.simulator.evaluate(engine.candidates, engine.label_logits)
    logits = None
    if engine.label_logits is not None:
        logits = engine.label_logits.detach().clone()
    record = {
        "stage": engine.stage,
        "iterations": engine.iteration,
        "seeds": engine.config.seeds,
        "seed_distances": [float(d) for d in distances.detach().cpu().double()],
        "resets": list(engine.resets),
    }
    return engine.params["z"].detach().clone(), logits, record


def _next_features(engine: Engine, layer: int) -> torch.Tensor:
    """GIFD: the start of the stage at ``layer``: every restart's current input of that layer
    (its latents or its feature map) through the layer, K×N×feature shape."""
    from gradinvert.generators.layers import run_layers, split_layers

    space = engine.space
    assert space is not None and hasattr(space, "generator")
    layers = split_layers(space.generator.module)  # type: ignore[attr-defined]
    value = engine.params["z"] if layer == 1 else engine.params["f"]
    with torch.no_grad():
        flat = run_layers(layers, value.detach().flatten(0, 1), layer - 1, layer)
    return flat.unflatten(0, value.shape[:2]).contiguous()


def _keep_best(engine: Engine) -> dict[str, Any]:
    """GIFD: this stage's restarts scored by gradient distance; ``engine.kept`` holds the
    output with the lowest distance over all stages so far. Returns the stage's record."""
    distances, _ = engine.simulator.evaluate(engine.candidates, engine.label_logits)
    distances = distances.detach().cpu().double()
    order = torch.nan_to_num(distances, nan=float("inf"))
    best = int(order.argmin())
    kept = engine.kept
    if "distance" not in kept or float(order[best]) < float(kept["distance"]):
        kept["distance"] = order[best].clone()
        kept["images"] = engine.pixels()[best].detach().clone()
        kept["stage"] = torch.tensor(len(engine.history))
        kept["seed"] = torch.tensor(best)
        if engine.label_logits is not None:
            kept["logits"] = engine.label_logits[best].detach().clone()
    return {
        "stage": engine.stage,
        "iterations": engine.iteration,
        "seeds": engine.config.seeds,
        "chosen_seed": best,
        "distance": float(order[best]),
        "seed_distances": [float(d) for d in distances],
        "resets": list(engine.resets),
        **({"radius": engine.space.radius} if engine.stage != "z" else {}),  # type: ignore[union-attr]
    }


def _check_kept(engine: Engine, shape: tuple[int, ...], source: str) -> None:
    """A resumed checkpoint's carried tensors have the shapes this run gives them."""
    logits = () if engine.label_logits is None else tuple(engine.label_logits.shape[1:])
    expected = {"distance": (), "images": tuple(shape), "stage": (), "seed": (), "logits": logits}
    for name, value in engine.kept.items():
        if name not in expected or tuple(value.shape) != expected[name]:
            raise InvalidInputError(f"{source}: the checkpoint's kept tensor {name!r} does not fit")


def _calibration_record(engine: Engine) -> dict[str, Any] | None:
    """``--calibrate start``: the terms' start values and the absolute weights they gave."""
    if engine.start is None:
        return None
    names = ("gradient_weight", "bn", "bn_first")
    return {**engine.start.to_dict(), "weights": dict(zip(names, engine.weights, strict=True))}


def _result(
    engine: Engine,
    choice: LabelChoice,
    config: AttackConfig,
    matched: list[str],
    bn_source: str,
    update: UpdateFile,
    history: list[dict[str, Any]] | None = None,
) -> BatchFile:
    """Pick the output by gradient distance (never by the truth) and describe the run.

    ``--search f``: the output is the stage output with the lowest gradient distance over all
    stages (``engine.kept``); ``history`` then holds every stage's record."""
    simulator = engine.simulator
    distances, _ = simulator.evaluate(engine.candidates, engine.label_logits)
    distances = distances.detach().cpu().double()
    order = torch.nan_to_num(distances, nan=float("inf"))
    best = int(order.argmin())
    images = engine.pixels()[best]
    output_distance = float(distances[best])
    if config.pick == "consensus":
        from gradinvert.invert.group import group_targets

        images = group_targets(engine.pixels(), registration=config.registration)[best]
        normalized = ((images - engine.mean) / engine.std).unsqueeze(0)
        logits = None if engine.label_logits is None else engine.label_logits[best : best + 1]
        output_distance = float(simulator.evaluate(normalized, logits)[0][0])
    stages = [
        *engine.history,
        {"stage": engine.stage, "iterations": engine.iteration, "seeds": engine.config.seeds},
    ]
    chosen_stage = None
    if config.search == "f":
        kept = engine.kept
        images, output_distance = kept["images"], float(kept["distance"])
        best, chosen_stage = int(kept["seed"]), int(kept["stage"])
        stages = list(history or [])
    if choice.labels is None and config.search == "f":
        labels = engine.kept["logits"].argmax(-1).cpu()
    elif choice.labels is None:
        assert engine.label_logits is not None
        labels = engine.label_logits[best].argmax(-1).cpu()
    else:
        labels = torch.tensor(choice.labels, dtype=torch.long)
    label_record = choice.to_dict()
    label_record["labels"] = [int(x) for x in labels]
    per_image = [
        {"seed": best, "gradient_distance": output_distance, "label": int(labels[i])}
        for i in range(images.shape[0])
    ]
    metadata = {
        "source": "invert",
        "attack": config.attack,
        "config": config.record(),
        "seed": config.seed,
        "update_kind": update.kind,
        "model": update.model.to_dict(),
        "labels": label_record,
        "bn_reference": bn_source,
        "matched_layers": len(matched),
        "defense_adaptation": simulator.adaptation.to_dict(),
        "clients": len(simulator.members),
        "pick": config.pick,
        "selection": (
            "seed with the lowest final gradient distance (no ground truth)"
            if config.pick == "best"
            else "registered group consensus in the frame of the seed with the lowest distance"
        ),
        "chosen_seed": best,
        "calibration": _calibration_record(engine),
        "candidates": per_image,
        "seed_distances": [float(d) for d in distances],
        "iterations": engine.iteration,
        "resets": list(engine.resets),
        "search": {**engine.space.describe(), "search": config.search},  # type: ignore[union-attr]
        "stages": stages,
        "device": engine.device.type,
    }
    if chosen_stage is not None:
        metadata["chosen_stage"] = stages[chosen_stage]["stage"]
        metadata["selection"] = (
            "the stage output and restart with the lowest gradient distance over all stages "
            "(no ground truth)"
        )
    return BatchFile(images.detach().cpu().float(), labels, metadata)


class _ProgressBar:
    """A rich progress bar on stderr showing the best seed's loss."""

    def __init__(
        self,
        inner: Callable[[Engine, Progress], None] | None,
        config: AttackConfig,
        start: int,
        stage: str = "x",
    ) -> None:
        self.inner = inner
        self.bar = stderr_progress(
            "{task.description}", "loss {task.fields[loss]}  distance {task.fields[distance]}"
        )
        self.task = self.bar.add_task(
            f"{config.attack} ×{config.seeds}" + ("" if stage == "x" else f" ({stage})"),
            total=config.iterations,
            completed=start,
            loss="–",
            distance="–",
        )
        self.bar.start()

    def __call__(self, engine: Engine, progress: Progress) -> None:
        self.bar.update(
            self.task,
            completed=progress.iteration,
            loss=f"{progress.loss:.4g}",
            distance=f"{progress.distance:.4g}",
        )
        if self.inner is not None:
            self.inner(engine, progress)

    def close(self) -> None:
        self.bar.stop()


def _with_progress_bar(
    inner: Callable[[Engine, Progress], None] | None,
    config: AttackConfig,
    start: int,
    stage: str = "x",
) -> _ProgressBar:
    return _ProgressBar(inner, config, start, stage)
