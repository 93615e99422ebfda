"""Training generative image priors (DESIGN.md §5.7): ``train-prior`` (adversarial DCGAN)."""

from gradinvert.priors.train import (
    PriorTrainer,
    StepInfo,
    TrainPriorConfig,
    TrainPriorResult,
    discriminator_loss,
    generator_loss,
    images_hash,
    render_samples,
    save_prior,
    train_prior,
)

__all__ = [
    "PriorTrainer",
    "StepInfo",
    "TrainPriorConfig",
    "TrainPriorResult",
    "discriminator_loss",
    "generator_loss",
    "images_hash",
    "render_samples",
    "save_prior",
    "train_prior",
]
