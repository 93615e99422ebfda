"""Schemas of the generator, inverter, labels and checkpoint files (the update file's is in
:mod:`gradinvert.io.update_schema`), validated with pydantic before any value reaches a constructor.

Every size a constructor receives has a bound, far above any setting gradinvert or the papers
use, so that a hostile file is refused (exit 65, every problem at once) before anything is built:

=================================  ============  ==========================================
value                              bound         used by
=================================  ============  ==========================================
DCGAN ``latent``                   1 … 1 024     DCGANGenerator (default 100)
DCGAN ``ngf``                      1 … 1 024     DCGANGenerator (default 64)
GIT ``width``                      1 … 1 024     GitInverter (default 32)
GIT ``max_channels``               1 … 4 096     GitInverter (default 8)
MLP ``hidden``                     1 … 16 384    MlpInverter (LTI: 3 000)
MLP ``max_inputs``                 16 … 2²⁴      MlpInverter (default 2¹⁶)
inverter template ``batch_size``   1 … 1 024     both inverters' output layers
tensor shapes in metadata          ≤ 8 dims of   MlpInverter, the template's update
                                   < 2³¹ each
labels per file                    ≤ 10⁶         labels files, label maps
JSON file size                     ≤ 16 MiB      labels files, label maps
=================================  ============  ==========================================

Bounds alone do not bound a product (an MLP of 16 384 hidden units over 2²⁴ inputs is 1 TB):
the models are then built on the meta device and compared with the tensors the file holds
(:mod:`gradinvert.models.footprint`), so what is built is at most what the file stores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    Json,
    JsonValue,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from gradinvert.io.tensorfile import MAX_DIMS, MAX_TENSORS
from gradinvert.io.update_schema import (
    MAX_CLASSES,
    DefenseEntry,
    InputMeta,
    LocalMeta,
    ModelMeta,
    validation_message,
)
from gradinvert.runtime.errors import InvalidInputError, MissingInputError

Model = TypeVar("Model", bound=BaseModel)

MAX_LATENT = 1024
MAX_NGF = 1024
MAX_GIT_WIDTH = 1024
MAX_GIT_CHANNELS = 4096
MAX_HIDDEN = 16_384
MAX_INPUTS = 2**24
MAX_INVERTER_BATCH = 1024
MAX_DIM = 2**31 - 1
MAX_LABELS = 1_000_000
MAX_JSON_BYTES = 16 * 2**20

Seed = Annotated[int, Field(ge=0, lt=2**63)]
Dim = Annotated[int, Field(ge=0, le=MAX_DIM)]
ShapeList = Annotated[list[Dim], Field(max_length=MAX_DIMS)]
Shapes = Annotated[dict[str, ShapeList], Field(max_length=MAX_TENSORS)]


class _Strict(BaseModel):
    """JSON objects: exact types, finite numbers, no keys the constructor does not take."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


def _invalid(source: str, what: str, exc: ValidationError) -> InvalidInputError:
    return InvalidInputError(f"{source}: invalid {what}: {validation_message(exc)}")


def _validated(schema: type[Model], source: str, what: str, data: Any) -> Model:
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _invalid(source, what, exc) from None


# ---------------------------------------------------------------- generator files


class DcganArch(_Strict):
    """A DCGAN generator's constructor arguments."""

    name: Literal["dcgan"]
    size: Literal[32, 64] = 32
    channels: Literal[1, 3] = 3
    latent: Annotated[int, Field(ge=1, le=MAX_LATENT)] = 100
    ngf: Annotated[int, Field(ge=1, le=MAX_NGF)] = 64
    upsample: Literal["transpose", "nearest", "bilinear"] = "transpose"  # dcgan.UPSAMPLES


class FactoryArch(BaseModel):
    """A generator a user factory made: the file names the factory, imported only on the
    user's say-so (DESIGN.md §10)."""

    model_config = ConfigDict(strict=True, extra="allow")

    name: Literal["factory"]
    factory: Annotated[str, Field(min_length=1, max_length=300)]


GeneratorArch = Annotated[DcganArch | FactoryArch, Field(discriminator="name")]


class GeneratorMetadata(BaseModel):
    """A generator file's metadata: ``generator`` (architecture) and ``training`` (JSON)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    generator: Json[GeneratorArch]
    training: Json[dict[str, JsonValue]] = Field(default_factory=dict)


def validate_generator_metadata(source: str, metadata: dict[str, str]) -> GeneratorMetadata:
    """The parsed metadata, or one ``InvalidInputError`` naming every bad field."""
    return _validated(GeneratorMetadata, source, "generator metadata", metadata)


# ---------------------------------------------------------------- inverter files


class GitSettings(_Strict):
    width: Annotated[int, Field(ge=1, le=MAX_GIT_WIDTH)] = 32
    max_channels: Annotated[int, Field(ge=1, le=MAX_GIT_CHANNELS)] = 8
    seed: Seed = 0


class MlpSettings(_Strict):
    hidden: Annotated[int, Field(ge=1, le=MAX_HIDDEN)] = 3000
    max_inputs: Annotated[int, Field(ge=16, le=MAX_INPUTS)] = 2**16
    seed: Seed = 0
    shapes: Shapes | None = None


class InverterInfo(_Strict):
    """``inverter``: the architecture, its constructor settings and the update's shapes."""

    arch: Literal["git", "mlp"]
    settings: dict[str, JsonValue] = Field(default_factory=dict)
    update_shapes: Shapes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _settings_of_the_arch(self) -> InverterInfo:
        kind = GitSettings if self.arch == "git" else MlpSettings
        self.settings = kind.model_validate(self.settings).model_dump(exclude_none=True)
        return self


class TemplateMeta(BaseModel):
    """``template``: what an inverter was made for (an update file's description)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")

    kind: Literal["gradient", "delta"]
    model: ModelMeta
    input: InputMeta
    mode: Literal["train", "eval"]
    batch_size: Annotated[int, Field(ge=1, le=MAX_INVERTER_BATCH)]
    local: LocalMeta | None = None
    defense: list[DefenseEntry] = Field(default_factory=list)
    weights_sha256: str = ""


class InverterMetadata(BaseModel):
    """An inverter file's metadata: ``inverter``, ``template`` and ``training`` (JSON)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    inverter: Json[InverterInfo]
    template: Json[TemplateMeta]
    training: Json[dict[str, JsonValue]] = Field(default_factory=dict)


def validate_inverter_metadata(source: str, metadata: dict[str, str]) -> InverterMetadata:
    """The parsed metadata, or one ``InvalidInputError`` naming every bad field."""
    return _validated(InverterMetadata, source, "inverter metadata", metadata)


# ---------------------------------------------------------------- labels files

Label = Annotated[int, Field(ge=0, lt=MAX_CLASSES)]
LabelList = Annotated[list[Label], Field(max_length=MAX_LABELS)]


class LabelsDocument(BaseModel):
    """``{"labels": [3, 3, 7, 1], "method": ..., "batch_size": 4, ...}`` (other keys kept)."""

    model_config = ConfigDict(strict=True, extra="allow")

    labels: LabelList
    batch_size: Annotated[int, Field(ge=0, le=MAX_LABELS)] | None = None

    @model_validator(mode="after")
    def _batch_size_counts_the_labels(self) -> LabelsDocument:
        if self.batch_size is not None and self.batch_size != len(self.labels):
            raise ValueError(f"batch_size {self.batch_size} but {len(self.labels)} labels")
        return self


LABELS = TypeAdapter(LabelsDocument | LabelList)
LABEL_MAP = TypeAdapter(
    Annotated[dict[str, Label], Field(min_length=1, max_length=MAX_LABELS)],
    config=ConfigDict(strict=True),
)


def read_json_file(path: str | os.PathLike[str], what: str = "labels file") -> Any:
    """A JSON file of at most ``MAX_JSON_BYTES`` (checked before it is read)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such {what}")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise InvalidInputError(
            f"{path}: {size} bytes, more than the {MAX_JSON_BYTES} gradinvert reads as a {what}"
        )
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidInputError(f"{path}: not a JSON {what}") from None


def validate_labels(source: str, data: Any) -> list[int]:
    """The labels of a labels document (an object with ``labels``, or a bare list)."""
    try:
        parsed = LABELS.validate_python(data)
    except ValidationError as exc:
        raise _invalid(source, 'labels file (expected {"labels": [int, ...]})', exc) from None
    return list(parsed.labels if isinstance(parsed, LabelsDocument) else parsed)


def validate_label_map(source: str, data: Any) -> dict[str, int]:
    """A map of file names to labels (``{"0000.png": 0, ...}``)."""
    try:
        return dict(LABEL_MAP.validate_python(data))
    except ValidationError as exc:
        raise _invalid(source, 'labels map (expected {"file name": label, ...})', exc) from None


# ---------------------------------------------------------------- checkpoints
# A checkpoint is a .pt file (read by tensorfile.load_pt: sizes checked against stored bytes);
# its schema fixes every field's type, and its tensors' shapes are then compared with the run's
# own state (runtime.checkpoint.check_tensors_fit, check_optimizer_state) before any value is
# loaded.

Tensor = InstanceOf[torch.Tensor]
Count = Annotated[int, Field(ge=0, lt=2**62)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Maybe = Annotated[float, Field(allow_inf_nan=True)]  # e.g. a best loss that starts at inf
TensorMap = dict[str, Tensor]


class _Checkpoint(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)

    format: str
    run_id: Annotated[str, Field(max_length=200)]


class InvertCheckpoint(_Checkpoint):
    stage: Annotated[str, Field(max_length=100)]
    iteration: Count
    params: TensorMap
    fixed: TensorMap
    label_logits: Tensor | None
    targets: Tensor | None
    optimizer: dict[str, Any]
    cpu_rng: Tensor
    device_rng: Tensor
    torch_rng: Tensor
    cuda_rng: Tensor | None = None
    resets: list[Count]
    history: Json[list[JsonValue]]
    kept: TensorMap = Field(default_factory=dict)  # carried across stages (GIFD's best)


class TrainPriorCheckpoint(_Checkpoint):
    epoch: Count
    epoch_step: Count
    step: Count
    perm: Tensor | None
    sums: list[Finite]
    history: list[Annotated[list[Finite], Field(min_length=2, max_length=2)]]
    seconds: Finite
    generator: TensorMap
    discriminator: TensorMap
    opt_g: dict[str, Any]
    opt_d: dict[str, Any]
    data_rng: Tensor
    noise_rng: Tensor


class LearnPriorCheckpoint(_Checkpoint):
    done: Count
    order: list[Count]
    generator: TensorMap
    meta_optimizer: dict[str, Any]
    torch_rng: Tensor
    history: Json[list[JsonValue]]
    seconds: Finite


class TrainInverterCheckpoint(_Checkpoint):
    epoch: Count
    step: Count
    order: Tensor
    losses: list[Maybe]
    inverter: TensorMap
    optimizer: dict[str, Any]
    best_state: TensorMap
    best_val: Maybe
    best_epoch: Annotated[int, Field(ge=-1)]
    history: list[dict[str, Maybe]]
    rng: Tensor


def validate_checkpoint(
    schema: type[_Checkpoint], source: str, state: dict[str, Any], expected_format: str, what: str
) -> None:
    """Refuse (exit 65) a checkpoint of another kind, or one whose fields do not fit ``schema``
    (every problem at once); ``what`` names the command ("invert", "train-prior", ...)."""
    if state.get("format") != expected_format:
        raise InvalidInputError(f"{source}: not a gradinvert {what} checkpoint")
    _validated(schema, source, f"{what} checkpoint", state)
