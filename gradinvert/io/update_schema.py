"""The declared schema of update-file metadata, validated with pydantic.

safetensors metadata is a flat string → string map; structured values are JSON strings
(DESIGN.md §2). ``UpdateMetadata`` declares every key a reader uses: its type, whether it is
required, and its allowed range. ``validate_update_metadata`` checks a file's map against it and
raises one ``InvalidInputError`` that lists every problem at once, so a hostile or corrupt file
is refused before any of its values reaches a constructor or an allocation.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, JsonValue, ValidationError, model_validator

from gradinvert.runtime.errors import InvalidInputError

# Bounds that keep a declared value sane; each is far above any real FL setting.
MAX_SIDE = 4096  # input height / width in pixels
MAX_CLASSES = 1_000_000
MAX_LOCAL_STEPS = 10_000  # a labels or invert run simulates every step
MAX_CLIENTS = 10_000  # members of one secure aggregate (an invert run simulates each)
MAX_ROUNDS = 10_000_000  # FL rounds a DP-SGD budget covers (accounting only)
MAX_NOISE_MULTIPLIER = 1e6
MAX_DATASET = 10**12

Positive = Annotated[int, Field(ge=1)]
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
NonNegative = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    """JSON objects: exact types (no "4" for 4, no true for 1), finite numbers only."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")


class ModelMeta(_Strict):
    """``model``: the architecture id, class count and constructor arguments."""

    arch: Annotated[str, Field(min_length=1, max_length=300)]
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)]
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)


class InputMeta(_Strict):
    """``input``: shape C,H,W (C is 1 or 3) and the per-channel normalization."""

    shape: tuple[Literal[1, 3], Side, Side]
    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]

    @model_validator(mode="after")
    def _one_value_per_channel(self) -> InputMeta:
        channels = self.shape[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need one value per channel ({channels})")
        return self


class LossMeta(_Strict):
    """``loss``: the client's training loss."""

    name: Literal["cross_entropy"] = "cross_entropy"
    reduction: Literal["mean", "sum"] = "mean"


class LocalMeta(_Strict):
    """``local``: the FedAvg client's local training (plain SGD)."""

    steps: Annotated[int, Field(ge=1, le=MAX_LOCAL_STEPS)]
    lr: Annotated[float, Field(gt=0)]
    batch_size: Positive
    shuffle: bool = False
    optimizer: Literal["sgd"] = "sgd"
    seed: int | None = None


class PruneMeta(_Strict):
    name: Literal["prune"]
    fraction_removed: Annotated[float, Field(ge=0, lt=1)]
    scope: Literal["per-tensor"] = "per-tensor"


class ClipMeta(_Strict):
    name: Literal["clip"]
    max_norm: Annotated[float, Field(gt=0)]
    norm_before: NonNegative | None = None


class NoiseMeta(_Strict):
    name: Literal["noise"]
    kind: Literal["gaussian", "laplace"]
    std: NonNegative | None = None  # gaussian
    scale: NonNegative | None = None  # laplace

    @model_validator(mode="after")
    def _parameter_of_its_kind(self) -> NoiseMeta:
        key = "std" if self.kind == "gaussian" else "scale"
        if getattr(self, key) is None:
            raise ValueError(f"{self.kind} noise needs '{key}'")
        return self


Text = Annotated[str, Field(max_length=300)]


class AccountingMeta(_Strict):
    """A DP-SGD entry's privacy accounting: ε at δ and the accountant's inputs."""

    accountant: Literal["rdp", "prv"]
    library: Text | None = None
    delta: Annotated[float, Field(gt=0, lt=1)]
    rounds: Annotated[int, Field(ge=1, le=MAX_ROUNDS)]
    steps: Annotated[int, Field(ge=1, le=MAX_ROUNDS * MAX_LOCAL_STEPS)]
    dataset_size: Annotated[int, Field(ge=1, le=MAX_DATASET)] | None = None
    sample_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    epsilon: NonNegative | None = None
    sampling: Text | None = None
    note: Text | None = None


class DpSgdMeta(_Strict):
    """``dp-sgd``: per-example clipping to ``clip``, noise N(0, (z·clip)²), ÷ the step's batch."""

    name: Literal["dp-sgd"]
    clip: Annotated[float, Field(gt=0)]
    noise_multiplier: Annotated[float, Field(ge=0, le=MAX_NOISE_MULTIPLIER)]
    noise_std: NonNegative | None = None
    per_step_batch: Positive
    local_steps: Annotated[int, Field(ge=1, le=MAX_LOCAL_STEPS)] = 1
    clipped_examples: Annotated[int, Field(ge=0)] | None = None
    examples_seen: Annotated[int, Field(ge=0)] | None = None
    per_example: Text | None = None
    noise_seed: Annotated[int, Field(ge=0)] | None = None
    accounting: AccountingMeta | None = None


class SignMeta(_Strict):
    name: Literal["sign"]


class QuantizeMeta(_Strict):
    name: Literal["quantize"]
    bits: Annotated[int, Field(ge=2, le=16)]
    rounding: Literal["stochastic"] = "stochastic"
    scale: Literal["max"] = "max"


class MemberMeta(_Strict):
    """One client of a secure aggregate: its batch, local training and seed."""

    batch_size: Positive
    local: LocalMeta | None = None
    seed: int | None = None


class SecureAggregationMeta(_Strict):
    """``secure-aggregation``: the batch-size-weighted mean of ``clients`` members' updates."""

    name: Literal["secure-aggregation"]
    clients: Annotated[int, Field(ge=1, le=MAX_CLIENTS)]
    weighting: Literal["batch-size"] = "batch-size"
    members: Annotated[list[MemberMeta], Field(max_length=MAX_CLIENTS)]

    @model_validator(mode="after")
    def _one_member_per_client(self) -> SecureAggregationMeta:
        if len(self.members) != self.clients:
            raise ValueError(f"{len(self.members)} members listed for {self.clients} clients")
        for i, member in enumerate(self.members):
            if member.local is not None and member.local.batch_size > member.batch_size:
                raise ValueError(f"member {i}: local batch size exceeds its batch size")
        return self


DefenseEntry = Annotated[
    PruneMeta | ClipMeta | NoiseMeta | DpSgdMeta | SignMeta | QuantizeMeta | SecureAggregationMeta,
    Field(discriminator="name"),
]


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


class UpdateMetadata(BaseModel):
    """Every metadata key of an update file that a reader uses (schema version 1).

    Plain keys are strings; ``model``, ``input``, ``loss``, ``local``, ``defense``, ``threat``
    and ``source`` are JSON. ``batch_size`` and ``seed`` are decimal integers or empty (unknown).
    """

    model_config = ConfigDict(strict=True, extra="ignore")

    kind: Literal["gradient", "delta"]
    model: Json[ModelMeta]
    input: Json[InputMeta]
    loss: Json[LossMeta] = Field(default_factory=LossMeta)
    batch_size: Annotated[int | None, Field(ge=1, strict=False)] = None
    mode: Literal["train", "eval"] = "eval"
    local: Json[LocalMeta | None] = None
    defense: Json[list[DefenseEntry]] = Field(default_factory=list)
    threat: Json[dict[str, bool]] = Field(default_factory=dict)
    source: Json[dict[str, JsonValue]] = Field(default_factory=dict)
    seed: Annotated[int | None, Field(strict=False)] = None
    created: str = ""
    torch: str = ""

    @model_validator(mode="before")
    @classmethod
    def _blanks(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {**data}
            for key in ("batch_size", "seed"):
                if key in data:
                    data[key] = _blank_is_none(data[key])
        return data

    @model_validator(mode="after")
    def _local_fits_batch(self) -> UpdateMetadata:
        local, size = self.local, self.batch_size
        if local is not None and size is not None and local.batch_size > size:
            raise ValueError(f"local.batch_size {local.batch_size} exceeds batch_size {size}")
        problems = []
        for entry in self.defense:
            if not isinstance(entry, SecureAggregationMeta):
                continue
            total = sum(member.batch_size for member in entry.members)
            if size is not None and total != size:
                problems.append(f"the members' batches sum to {total}, batch_size is {size}")
            if self.kind == "delta" and any(m.local is None for m in entry.members):
                problems.append("every member of an aggregated delta needs its local training")
            if self.kind == "delta" and local is not None:
                for i, member in enumerate(entry.members):
                    other = member.local
                    if other is not None and (other.steps, other.lr) != (local.steps, local.lr):
                        problems.append(f"member {i}: local steps and lr differ from 'local'")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _where(loc: tuple[Any, ...]) -> str:
    # pydantic names union members in the location (``defense.0.noise.std``): it helps, keep it.
    return ".".join(str(part) for part in loc) or "metadata"


def _describe(error: dict[str, Any]) -> str:
    message = re.sub(r" or instance of \w+", "", str(error["msg"]).removeprefix("Value error, "))
    where = _where(tuple(error["loc"]))
    if error["type"] == "missing":
        return f"{where}: missing"
    value = error.get("input")
    shown = repr(value)
    if isinstance(value, (int, float, bool, type(None))) or (
        isinstance(value, str) and len(shown) <= 40
    ):
        return f"{where}: {message} (got {shown})"
    if isinstance(value, (list, dict)):
        return f"{where}: {message} (got a JSON {'list' if isinstance(value, list) else 'object'})"
    return f"{where}: {message}"


def validation_message(exc: ValidationError, limit: int = 8) -> str:
    """Every problem of a failed validation on one line, ``key: problem; ...``."""
    problems = [_describe(error) for error in exc.errors(include_url=False)]
    extra = len(problems) - limit
    text = "; ".join(problems[:limit])
    return text + (f"; and {extra} more" if extra > 0 else "")


def validate_update_metadata(source: str, metadata: dict[str, str]) -> UpdateMetadata:
    """The parsed metadata, or an ``InvalidInputError`` naming every bad field of ``source``."""
    try:
        return UpdateMetadata.model_validate(metadata)
    except ValidationError as exc:
        raise InvalidInputError(
            f"{source}: invalid update metadata: {validation_message(exc)}"
        ) from None
