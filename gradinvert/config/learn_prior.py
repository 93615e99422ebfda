"""Settings of ``gradinvert learn-prior`` (GIML, Jeon et al. 2021): defaults of the official run
(200 tasks, 1000 latent + 500 generator iterations per task, meta lr 1e-2)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from gradinvert.config.attack import AttackConfig, preset
from gradinvert.config.base import DEVICE_HELP, MAX_MEMORY_HELP, SEED_HELP, Settings

LrScale = Literal["absolute", "relative"]
# The settings a checkpoint must share with the run resuming it: not ``tasks`` (a finished run
# may be continued for more), nor where the run starts (fingerprinted from the generator
# itself), samples or the machine.
RUN_IDENTITY = (
    "latent_iterations",
    "iterations",
    "restarts",
    "meta_lr",
    "z_norm",
    "latent_lr",
    "generator_lr",
    "generator_lr_scale",
    "tv",
    "seed",
)


class LearnPriorSettings(Settings):
    """Everything ``learn-prior`` needs besides its update files and outputs."""

    command: ClassVar[str] = "learn-prior"

    generator: str = Field(
        "dcgan", description="Start from: dcgan, a generator file, or module:factory."
    )
    generator_weights: str | None = Field(
        None,
        description="State dict or generator file loaded into a named or imported --generator.",
    )
    tasks: int = Field(200, ge=1, description="Tasks (one update each).")
    latent_iterations: int = Field(1000, ge=1, description="Latent-search iterations per task.")
    iterations: int = Field(500, ge=1, description="Generator fine-tuning iterations per task.")
    restarts: int = Field(1, ge=1, description="Restarts of the latent search (best kept).")
    meta_lr: float = Field(1e-2, gt=0, allow_inf_nan=False, description="Reptile step: Adam lr.")
    z_norm: float = Field(
        1e-3, ge=0, allow_inf_nan=False, description="Weight of the ||z||₂ penalty."
    )
    latent_lr: float = Field(3e-2, gt=0, allow_inf_nan=False, description="Adam lr of the latents.")
    generator_lr: float = Field(
        1e-3, gt=0, allow_inf_nan=False, description="Adam lr of the generator copy."
    )
    generator_lr_scale: LrScale = Field(
        "absolute",
        description="absolute (official GIML) or relative (each weight tensor steps by lr × its "
        "RMS).",
    )
    tv: float = Field(
        1e-6, ge=0, allow_inf_nan=False, description="Total-variation weight of every search."
    )
    seed: int = Field(0, description=SEED_HELP)
    samples_every: int = Field(10, ge=1, description="Rewrite --samples every N tasks.")
    device: str = Field("auto", description=DEVICE_HELP)
    max_memory: str | None = Field(None, description=MAX_MEMORY_HELP)

    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings that make a run what it is (see ``RUN_IDENTITY``)."""
        return {name: getattr(self, name) for name in RUN_IDENTITY}

    def attack_config(self, task: int) -> AttackConfig:
        """The inner searches of task ``task`` (0-based): the gias preset's two stages."""
        return preset(
            "gias",
            seeds=self.restarts,
            latent_iterations=self.latent_iterations,
            iterations=self.iterations,
            latent_lr=self.latent_lr,
            generator_lr=self.generator_lr,
            tv=self.tv,
            seed=self.seed + task,
        )
