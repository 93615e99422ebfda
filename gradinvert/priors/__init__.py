"""Training generative image priors (DESIGN.md §5.7): ``train-prior`` (adversarial DCGAN)."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "PriorTrainer": "train",
        "StepInfo": "train",
        "TrainPriorResult": "train",
        "discriminator_loss": "train",
        "generator_loss": "train",
        "images_hash": "train",
        "render_samples": "train",
        "save_prior": "train",
        "train_prior": "train",
    },
)
