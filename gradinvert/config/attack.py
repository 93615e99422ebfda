"""Attack settings (:class:`AttackConfig`) and the paper presets, which are data files
(``gradinvert/config/presets/*.toml``) naming their paper and the source of every value.

Every setting can be overridden on top of a preset: ``preset("ig", iterations=2000, tv=5e-2)``.
:func:`preset_table` renders the presets as the markdown table the README shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from gradinvert.config.base import Settings, tomllib
from gradinvert.runtime.errors import UsageError

Optimizer = Literal["adam", "signed-adam", "lbfgs"]
Objective = Literal["l2", "sql2", "cosine", "layer-cosine"]
Scheduler = Literal["none", "step", "cosine", "ramp"]
Pick = Literal["best", "consensus"]
Init = Literal["randn", "rand", "grey", "git"]
Registration = Literal["none", "translate", "translate-flip"]
LayerWeights = Literal["uniform", "relative"]
Search = Literal["x", "z", "w", "zw", "f"]
Calibration = Literal["none", "start"]
LrScale = Literal["relative", "absolute", "auto"]
WeightStage = Literal["prior", "free"]
NonNegative = Field(ge=0)


class AttackConfig(Settings):
    """Everything that defines an inversion run; the output metadata records all of it.

    Weights multiply each term of a seed's loss:
    ``gradient_weight·D(g(x̂), g*) + tv·TV + l2·||x̂|| + bn·R_BN + group·R_group``.
    """

    command: ClassVar[str] = "attack"

    attack: str = Field("custom", description="The preset these settings start from.")
    iterations: int = Field(1000, ge=1, description="Steps.")
    optimizer: Optimizer = Field(
        "adam", description="adam, signed-adam (Adam on the gradient's sign) or lbfgs."
    )
    lr: float = Field(0.1, gt=0, description="Learning rate.")
    scheduler: Scheduler = Field(
        "none",
        description="none, step (×0.1 at 3/8, 5/8, 7/8), cosine, or ramp (GIFD's official "
        "schedule: linear warm-up over the first 5 %, cosine ramp-down over the last 75 %).",
    )
    warmup: int = Field(0, ge=0, description="lr warm-up steps.")
    objective: Objective = Field(
        "cosine", description="l2 (per layer), sql2, cosine (global), layer-cosine."
    )
    layers: str = Field("all", description="Matched tensors: all, or top-k:N (largest ||g*||).")
    layer_weights: LayerWeights = Field(
        "uniform",
        description="uniform, or relative: each tensor divided by ||g*_l|| so every layer counts "
        "alike whatever its scale.",
    )
    gradient_weight: float = Field(1.0, gt=0, description="Weight of the distance (α_G).")
    calibrate: Calibration = Field(
        "none",
        description="none (absolute weights) or start: α_G, --bn and --bn-first are relative to "
        "each term's value at the seeds' start point (scale-free).",
    )
    tv: float = Field(0.0, ge=0, description="Total-variation weight.")
    l2: float = Field(0.0, ge=0, description="Image L2-norm weight.")
    bn: float = Field(0.0, ge=0, description="BN-statistics prior weight.")
    bn_first: float = Field(1.0, ge=0, description="Extra factor on the first BN layer.")
    group: float = Field(0.0, ge=0, description="Group-consistency weight (seeds > 1).")
    registration: Registration = Field(
        "translate", description="Group registration: none, translate, translate-flip."
    )
    group_every: int = Field(100, ge=1, description="Recompute group targets every N.")
    group_start: float = Field(
        0.1, ge=0, le=1, description="Fraction of the run before the group term starts."
    )
    registration_start: float = Field(
        0.5, ge=0, le=1, description="Fraction of the run with a lazy (unregistered) mean."
    )
    jitter: int = Field(0, ge=0, description="Random shifts up to N pixels per step.")
    flip: bool = Field(False, description="Random horizontal flips per step.")
    langevin: float = Field(0.0, ge=0, description="Langevin noise α_n (lr·α_n·N(0,1)).")
    seeds: int = Field(1, ge=1, description="Candidates optimized together (K).")
    seed: int = Field(0, description="Random seed; recorded in the output.")
    box: bool = Field(True, description="Clamp to the pixel box every step.")
    init: Init = Field(
        "randn",
        description="randn (N(0,1) in model input space), rand (U(0,1) pixels), grey (the "
        "normalization's mean colour) or git (the --inverter's estimate); grey and git add "
        "--init-noise.",
    )
    inverter: str | None = Field(
        None, description="Inverter file (train-inverter) for git / --init git."
    )
    init_noise: float = Field(
        0.02, ge=0, description="--init grey / git: start noise std in pixels (0.02)."
    )
    inverter_prior: float = Field(0.0, ge=0, description="Weight W of W·mean((x − x_git)²).")
    learn_labels: bool = Field(False, description="Without --labels: learn or restore.")
    pick: Pick = Field("best", description="Output: best (seed) or consensus.")
    lbfgs_evaluations: int = Field(
        20, ge=1, description="Loss evaluations per L-BFGS step (torch's max_iter)."
    )
    adapt_defense: bool = Field(
        True,
        description="Apply the deterministic part of the update's recorded defense to every "
        "candidate's update before matching, where that is exact: DP-SGD's per-example "
        "clipping, the support of a pruned (top-k) update, a global clip, signSGD's sign; noise "
        "and quantization are never simulated (--no-adapt-defense: match the target as it is).",
    )
    search: Search = Field(
        "x",
        description="What is optimized: x (pixels), z (generator latents), w (one generator copy "
        "per image, latents fixed) or zw (z, then w from the best restart; GIAS).",
    )
    generator: str | None = Field(
        None,
        description="For --search z/w/zw: dcgan (untrained, seeded), a generator file from "
        "train-prior, or package.module:factory.",
    )
    generator_weights: str | None = Field(
        None, description="State dict loaded into a named or imported generator."
    )
    latent_iterations: int = Field(500, ge=1, description="Iterations of zw's latent stage.")
    latent_lr: float = Field(3e-2, gt=0, description="Learning rate of the latents.")
    generator_lr: float = Field(
        1e-3, gt=0, description="Learning rate of the generator copies' weights."
    )
    generator_lr_scale: LrScale = Field(
        "relative",
        description="relative (default): each weight tensor steps by --generator-lr × its RMS, "
        "so one lr fits any generator; absolute: the lr as is; auto: a short trial of each "
        "(--probe-iterations) and the one with the lower gradient distance (recorded).",
    )
    weight_stage: WeightStage = Field(
        "free",
        description="The weight stage (zw, w): free (the first version: zw refines the best "
        "restart only, copies unconstrained) or prior (zw refines every restart; each copy "
        "kept near G by --generator-proximity and --generator-trust; fused Adam).",
    )
    generator_proximity: float = Field(
        0.0,
        ge=0,
        description="Weight λ of λ·mean(((θᵢ − θ)/s)²) per image copy, s the lr scale's unit "
        "per weight tensor (its RMS when relative, 1 when absolute).",
    )
    generator_trust: float = Field(
        0.0,
        ge=0,
        description="Trust region: after every step each copy's RMS of (θᵢ − θ)/s is cut back "
        "to at most this (0: none).",
    )
    probe_iterations: int = Field(
        50, ge=1, description="Iterations of each trial of --generator-lr-scale auto."
    )
    feature_lr: float = Field(
        0.1, gt=0, description="--search f: learning rate of the intermediate feature maps."
    )
    feature_radii: list[float] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.4],
        max_length=64,
        description="--search f: per generator layer, the ℓ1-ball radius around the layer's "
        "start, as a fraction of each image's start ℓ1 norm (≤ 0: unbounded; the last value "
        "repeats for deeper layers).",
    )
    feature_layers: int = Field(
        0, ge=0, description="--search f: how many layers to walk (0: every one)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> AttackConfig:
        problems: list[str] = []
        if self.search == "x" and (self.generator or self.generator_weights):
            problems.append("--generator is used by --search z, w, zw or f, not by --search x")
        if self.generator_weights and not self.generator:
            problems.append("--generator-weights needs --generator")
        uses_inverter = self.init == "git" or self.inverter_prior > 0
        if uses_inverter and not self.inverter:
            problems.append("--init git and --inverter-prior need --inverter INV")
        if uses_inverter and self.search != "x":
            problems.append(
                "--init git and --inverter-prior start or anchor pixels: they need --search x "
                "(GIAS searches a generator's latents and weights instead)"
            )
        try:
            parse_layers(self.layers)
        except UsageError as exc:
            problems.append(exc.message)
        if self.pick == "consensus" and self.seeds < 2:
            problems.append("--pick consensus needs --seeds 2 or more")
        if self.pick == "consensus" and self.search == "f":
            problems.append(
                "--search f returns the stage output with the lowest gradient distance: "
                "use --pick best"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def layer(
        cls, file_values: dict[str, Any], cli_values: dict[str, Any], notes: list[str]
    ) -> dict[str, Any]:
        """The preset named by ``attack`` (command line, else file) underneath the file's
        values, which lie underneath the command line's."""
        name = cli_values.get(
            "attack", file_values.get("attack", cls.model_fields["attack"].default)
        )
        given = {**file_values, **cli_values}
        if name not in PRESETS:
            return given  # the field's validation names the problem
        return preset_values(name, given, notes)

    def to_dict(self) -> dict[str, Any]:
        """All settings as a JSON-ready dict (``None`` included)."""
        return self.model_dump(mode="json")

    def validate_settings(self) -> None:
        """Validate the current values again (after attribute assignments)."""
        type(self).model_validate(self.model_dump())


def parse_layers(spec: str) -> int | None:
    """``all`` -> None; ``top-k:N`` -> N."""
    if spec == "all":
        return None
    match = re.fullmatch(r"top-k:(\d+)", spec)
    if match and int(match.group(1)) >= 1:
        return int(match.group(1))
    raise UsageError(f"--layers {spec!r}: use all or top-k:N with N >= 1")


@dataclass(frozen=True)
class Preset:
    """A named attack: its settings, its paper, and where each value comes from."""

    name: str
    title: str
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    value_sources: dict[str, str] = field(default_factory=dict)


@cache
def _load_presets() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    folder = resources.files("gradinvert.config") / "presets"
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".toml"):
            continue
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
        preset = Preset(
            name=data["name"],
            title=data["title"],
            source=data["paper"],
            settings=dict(data.get("settings", {})),
            summary=data.get("summary", ""),
            value_sources=dict(data.get("sources", {})),
        )
        presets[preset.name] = preset
    return {name: presets[name] for name in sorted(presets, key=_rank)}


def _rank(name: str) -> tuple[int, str]:
    """Presets in the order of the literature, then any others by name."""
    order = ("dlg", "idlg", "ig", "gradinversion", "gias", "gifd")
    return (order.index(name) if name in order else len(order), name)


PRESETS: dict[str, Preset] = _load_presets()


def preset_values(
    name: str, given: dict[str, Any], notes: list[str] | None = None
) -> dict[str, Any]:
    """The preset's settings with ``given`` on top. A preset's default yields to what the caller
    set: ``--seeds 1`` on a preset whose output is the seeds' consensus picks the best seed
    instead, and says so in ``notes``."""
    values = {"attack": name, **PRESETS[name].settings, **given}
    if values.get("pick") == "consensus" and "pick" not in given and values.get("seeds", 1) < 2:
        values["pick"] = "best"
        if notes is not None:
            notes.append(
                f"--seeds {values.get('seeds', 1)}: the {name} preset's consensus output "
                "needs 2 or more seeds, so the output is the seed itself (--pick best)"
            )
    return values


def preset(name: str, notes: list[str] | None = None, **overrides: Any) -> AttackConfig:
    """The preset's config with ``overrides`` applied (``None`` values are ignored), validated."""
    if name not in PRESETS:
        raise UsageError(f"--attack {name!r}: choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(AttackConfig.model_fields))
    if unknown:
        raise UsageError(f"unknown attack settings: {', '.join(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return AttackConfig.build(cli_values={**given, "attack": name}, notes=notes)


_TABLE_FIELDS = (
    ("search", "search"),
    ("iterations", "iterations"),
    ("optimizer", "optimizer"),
    ("lr", "lr"),
    ("scheduler", "schedule"),
    ("objective", "objective"),
    ("gradient_weight", "α_G"),
    ("tv", "TV"),
    ("l2", "L2"),
    ("bn", "BN"),
    ("group", "group"),
    ("langevin", "Langevin"),
    ("seeds", "seeds"),
)


def _cell(value: Any) -> str:
    if value in (0, 0.0, "none"):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def preset_table() -> str:
    """The presets as a markdown table (one row per preset, settings that differ from 0/off)."""
    header = "| preset | paper | " + " | ".join(label for _, label in _TABLE_FIELDS) + " |"
    rule = "|" + "---|" * (len(_TABLE_FIELDS) + 2)
    rows = [header, rule]
    for p in PRESETS.values():
        config = preset(p.name)
        cells = []
        for name, _ in _TABLE_FIELDS:
            value = getattr(config, name)
            if name == "scheduler" and value == "cosine":
                value = f"cosine, {config.warmup} warm-up"
            if name == "bn" and value:
                value = f"{value:g} (first ×{config.bn_first:g})"
            if name in ("gradient_weight", "bn") and value and config.calibrate == "start":
                value = f"{value if isinstance(value, str) else f'{value:g}'}, calibrated"
            if name == "iterations" and config.search == "zw":
                value = f"{config.latent_iterations} z + {value} w"
            if name == "iterations" and config.search == "f":
                value = f"{config.latent_iterations} z + {value} per layer"
            if name == "lr" and config.search == "f":
                value = f"z {config.latent_lr:g}, f {config.feature_lr:g}"
            elif name == "lr" and config.search != "x":
                value = f"z {config.latent_lr:g}, w {config.generator_lr:g}"
            if name == "group" and value:
                value = f"{value:g} ({config.registration})"
            cells.append(
                "–"
                if value in (0, 0.0, "none")
                else f"{value:g}"
                if isinstance(value, float)
                else str(value)
            )
        rows.append(f"| `{p.name}` | {p.title} ({p.source}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)
