"""A run as a sequence of stages, each one search space optimized by the engine.

``--search x|z|w`` is one stage. ``zw`` (GIAS) is two: the latents of K restarts for
``latent_iterations`` at ``latent_lr``, then the restart with the lowest gradient distance
hands its latents (and learned labels) to a weight stage of ONE seed with a copy of the
generator per image, for ``iterations`` at ``generator_lr`` (the official code refines the
best restart only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradinvert.config.attack import AttackConfig
from gradinvert.generators import Generator
from gradinvert.invert.spaces import LatentSpace, PixelSpace, SearchSpace, WeightSpace
from gradinvert.models.spec import InputSpec

WEIGHT_LATENT_SEED_OFFSET = 2  # the fixed latents of --search w come from seed + 2


@dataclass
class Stage:
    """One search space and the settings it runs with (iterations, lr, seeds)."""

    name: str  # x | z | w
    config: AttackConfig


def plan_stages(config: AttackConfig) -> list[Stage]:
    """The stages ``config.search`` runs, each with its own copy of the settings."""
    if config.search == "x":
        return [Stage("x", config)]
    if config.search == "z":
        return [Stage("z", config.model_copy(update=dict(lr=config.latent_lr)))]
    if config.search == "w":
        return [Stage("w", config.model_copy(update=dict(lr=config.generator_lr)))]
    latent = config.model_copy(
        update=dict(iterations=config.latent_iterations, lr=config.latent_lr)
    )
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
    """The search space of ``stage``; a weight stage needs its fixed ``latents`` (K×N×...).

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
    relative = config.generator_lr_scale == "relative"
    return WeightSpace(shape, input_spec, device, generator, latents, relative_lr=relative)
