"""A run as a sequence of stages, each one search space optimized by the engine.

``--search x|z|w`` is one stage. ``zw`` (GIAS) is two: the latents of K restarts for
``latent_iterations`` at ``latent_lr``, then a weight stage for ``iterations`` at
``generator_lr`` with one copy of the generator per image. With ``weight_stage="free"`` (the
first version, as the official code) the restart with the lowest gradient distance hands its
latents (and learned labels) to ONE seed of unconstrained copies; with ``"prior"`` every
restart refines its own latents (K seeds, group consistency and the pick act there too) and
each copy is kept near G (``generator_proximity``, ``generator_trust``).

``f`` (GIFD) is the latent stage followed by one stage per generator layer i = 1, 2, …
(``f1``, ``f2``, …), each ``iterations`` long at ``feature_lr``: the output of layer i is
optimized inside an ℓ1 ball of radius ``feature_radii[i − 1]`` (relative to its start) and
the rest of the generator applied; all K restarts go through every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradinvert.config.attack import AttackConfig
from gradinvert.generators import Generator
from gradinvert.generators.layers import split_layers
from gradinvert.invert.spaces import (
    FeatureSpace,
    LatentSpace,
    PixelSpace,
    SearchSpace,
    WeightSpace,
)
from gradinvert.models.spec import InputSpec

WEIGHT_LATENT_SEED_OFFSET = 2  # the fixed latents of --search w come from seed + 2


@dataclass
class Stage:
    """One search space and the settings it runs with (iterations, lr, seeds)."""

    name: str  # x | z | w | f1, f2, …
    config: AttackConfig
    layer: int = 0  # the generator layer whose output a feature stage optimizes
    radius: float = 0.0  # the feature stage's ℓ1 radius (relative to its start)


def feature_layer_count(config: AttackConfig, generator: Generator | None) -> int:
    """How many feature stages ``--search f`` runs with ``generator``."""
    if config.search != "f" or generator is None:
        return 0
    available = len(split_layers(generator.module)) - 1
    return min(config.feature_layers, available) if config.feature_layers else available


def plan_stages(config: AttackConfig, layers: int = 0) -> list[Stage]:
    """The stages ``config.search`` runs, each with its own copy of the settings; ``layers``:
    the feature stages of ``--search f`` (:func:`feature_layer_count`)."""
    if config.search == "x":
        return [Stage("x", config)]
    if config.search == "z":
        return [Stage("z", config.model_copy(update=dict(lr=config.latent_lr)))]
    if config.search == "w":
        return [Stage("w", config.model_copy(update=dict(lr=config.generator_lr)))]
    latent = config.model_copy(
        update=dict(iterations=config.latent_iterations, lr=config.latent_lr)
    )
    if config.search == "f":
        feature = config.model_copy(update=dict(lr=config.feature_lr))
        radii = config.feature_radii or [0.0]
        return [
            Stage("z", latent),
            *[
                Stage(f"f{i}", feature, layer=i, radius=radii[min(i, len(radii)) - 1])
                for i in range(1, layers + 1)
            ],
        ]
    if config.weight_stage == "prior":
        weights = config.model_copy(update=dict(lr=config.generator_lr))
    else:
        weights = config.model_copy(
            update=dict(lr=config.generator_lr, seeds=1, pick="best", group=0.0)
        )
    return [Stage("z", latent), Stage("w", weights)]


def weight_latents(generator: Generator, seeds: int, images: int, seed: int) -> torch.Tensor:
    """The fixed latents of ``--search w``: K×N draws from N(0, I), seeded."""
    rng = torch.Generator().manual_seed(seed + WEIGHT_LATENT_SEED_OFFSET)
    z = generator.sample_latents(seeds * images, rng)
    return z.view(seeds, images, *z.shape[1:])


def build_space(
    stage: Stage,
    shape: tuple[int, int, int, int],
    input_spec: InputSpec,
    device: torch.device,
    generator: Generator | None,
    latents: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> SearchSpace:
    """The search space of ``stage``; a weight stage needs its fixed ``latents`` (K×N×...),
    a feature stage its start (K×N×feature shape, passed as ``latents``).

    ``reference``: a learned inverter's estimate (``--init git`` / ``--inverter-prior``).
    """
    config = stage.config
    if stage.name == "x":
        return PixelSpace(
            shape,
            input_spec,
            device,
            init=config.init,
            box=config.box,
            reference=reference,
            start_noise=config.init_noise,
            anchor=config.inverter_prior,
        )
    assert generator is not None
    if stage.name == "z":
        return LatentSpace(shape, input_spec, device, generator)
    assert latents is not None
    if stage.layer:
        layers = split_layers(generator.module)
        return FeatureSpace(
            shape, input_spec, device, generator, layers, stage.layer, latents, stage.radius
        )
    relative = config.generator_lr_scale == "relative"
    keep = config.weight_stage == "prior"  # --search w alone: the copies kept near G too
    return WeightSpace(
        shape,
        input_spec,
        device,
        generator,
        latents,
        relative_lr=relative,
        proximity=config.generator_proximity if keep else 0.0,
        trust=config.generator_trust if keep else 0.0,
    )
