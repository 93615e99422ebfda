"""Settings of ``gradinvert audit`` (how the grid runs) and the audit plan's schema (what the grid
is): victim(s), data, update, defenses, label restoration, attacks, evaluation, resources. In a
plan every list-valued setting (except the few that are lists by nature: ``evaluation.fail_above``,
``evaluation.metrics``, ``zip``) is an axis of the cartesian grid."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gradinvert.config.base import SCHEMA_VERSION, Settings
from gradinvert.config.evaluate import Gates

T = TypeVar("T")
Axis = T | list[T]  # a value, or a list of values: one axis of the grid
MAX_AXIS = 1000  # values on one axis
MAX_JOBS = 100_000  # cells of one plan
METRICS = ("psnr", "psnr_registered", "ssim", "lpips", "label_acc", "iip")


class AuditSettings(Settings):
    """How ``audit`` runs a plan (the plan itself is the PLAN file)."""

    command: ClassVar[str] = "audit"

    executor: Literal["local", "ray"] = Field(
        "local",
        description="local (worker processes on this machine, no server) or ray (each job a Ray "
        "task on the cluster at --address).",
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="local: worker processes (default: the cores / the plan's cpus per job).",
    )
    address: str | None = Field(
        None,
        description="ray: the cluster (auto, HOST:PORT or ray://HOST:PORT); default: a Ray "
        "instance started for this audit on this machine.",
    )
    fail_above: Gates = Field(
        default_factory=list,
        description="METRIC=VALUE (repeatable, added to the plan's evaluation.fail_above): exit 1 "
        "when any cell leaks above the bar.",
    )
    retry_failed: bool = Field(False, description="Run again the jobs that failed before.")
    keep_updates: bool = Field(
        False,
        description="Also keep each job's update and truth files (they hold the batch's images).",
    )
    cancel: bool = Field(
        False,
        description="On Ctrl-C/SIGTERM cancel the running jobs instead of letting them finish.",
    )


# ---------------------------------------------------------------- the plan's schema


class Section(BaseModel):
    """A table of the plan: unknown keys are errors; values are taken as TOML typed them."""

    model_config = ConfigDict(extra="forbid", strict=True)


Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]


class Victim(Section):
    """The attacked model, as ``capture`` builds it."""

    model: Axis[str] = "convnet"
    num_classes: int = Field(10, ge=1, le=100_000)
    weights: Axis[str] = Field(
        "init", description="Checkpoint files (.safetensors or state-dict .pt); init: seeded init."
    )
    init_seed: Axis[int] = 0
    mode: Axis[Literal["train", "eval"]] = "eval"
    normalize: Axis[Literal["imagenet", "cifar", "none"]] = "imagenet"
    size: Axis[Positive] | None = None
    share_bn_stats: Axis[bool] = False

    @field_validator("model")
    @classmethod
    def _no_code(cls, value: Any) -> Any:
        for name in value if isinstance(value, list) else [value]:
            if ":" in name:
                raise ValueError(
                    f"{name!r}: a plan names built-in models only (package.module:factory "
                    "code is imported only from the command line)"
                )
        return value


class Data(Section):
    """The clients' batches: images cut from a folder or a batch file."""

    images: Axis[str] = Field(description="An image folder (labels from its labels.json).")
    labels: str | None = Field(None, description="A labels map file (file name -> label).")
    batch_size: Axis[Positive] = 4
    batches: int = Field(1, ge=1, le=MAX_AXIS)
    cut: Literal["consecutive", "shuffled"] = "consecutive"
    start: int = Field(0, ge=0)
    seed: int = 0


class Update(Section):
    """What the client shares: one gradient (local_steps 0) or a FedAvg delta."""

    local_steps: Axis[Annotated[int, Field(ge=0, le=10_000)]] = 0
    local_lr: Axis[Annotated[float, Field(gt=0)]] = 0.1
    local_batch_size: Axis[Positive] | None = None
    shuffle: Axis[bool] = False
    seed: Axis[int] = 0


class Defense(Section):
    """``capture``'s defenses (0: off for clip, prune, quantize and dp_clip)."""

    clip: Axis[NonNegative] = 0.0
    noise: Axis[NonNegative] = 0.0
    noise_kind: Axis[Literal["gaussian", "laplace"]] = "gaussian"
    prune: Axis[Annotated[float, Field(ge=0, lt=1)]] = 0.0
    sign: Axis[bool] = False
    quantize: Axis[Annotated[int, Field(ge=0, le=16)]] = 0
    dp_clip: Axis[NonNegative] = 0.0
    dp_noise_multiplier: Axis[NonNegative] | None = None
    dataset_size: Axis[Positive] | None = None
    dp_delta: Axis[Annotated[float, Field(gt=0, lt=1)]] = 1e-5
    rounds: Axis[Positive] = 1
    dp_accountant: Axis[Literal["rdp", "prv"]] = "rdp"


class Labels(Section):
    """How the attacker restores the labels (``gradinvert labels``)."""

    method: Axis[Literal["auto", "idlg", "yin", "ilrg", "llg", "bias"]] = "auto"


class Evaluation(Section):
    """How reconstructions are scored, and the bars of the verdict."""

    match: Literal["mse", "lpips", "none"] = "mse"
    lpips: Literal["alex", "vgg", "off"] = "off"
    metrics: list[Literal[METRICS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["psnr", "ssim", "label_acc"]
    )
    fail_above: Gates = Field(default_factory=list)


class Resources(Section):
    """What one job needs (Ray schedules by it; the local pool sizes itself by ``cpus``)."""

    cpus: int = Field(1, ge=1, le=1024)
    gpus: float = Field(0.0, ge=0, le=64)
    memory: str | None = Field(None, description="e.g. 2GB: Ray's memory request per job.")
    device: str = "auto"
    retries: int = Field(3, ge=0, le=100, description="Ray: retries of a job whose worker died.")


class Recorded(Section):
    """Updates recorded elsewhere (e.g. by a Flower federation) instead of simulated clients."""

    updates: str = Field(description="A glob of update files, relative to the plan.")
    truth: str | None = Field(
        None, description="The truth file of each update: a path with {stem} (the update's stem)."
    )


class Plan(Section):
    """A whole audit. Attack tables hold a ``preset`` and any attack setting (lists: axes)."""

    schema_version: int = SCHEMA_VERSION
    title: str = "gradinvert audit"
    victim: Victim | None = None
    data: Data | None = None
    update: Update = Field(default_factory=Update)
    defense: Defense = Field(default_factory=Defense)
    labels: Labels = Field(default_factory=Labels)
    attack: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_AXIS)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    resources: Resources = Field(default_factory=Resources)
    recorded: Recorded | None = None
    zip: list[list[str]] = Field(default_factory=list)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"this gradinvert reads audit plans of schema {SCHEMA_VERSION}")
        return value
