"""Attack settings and the paper presets (DLG, iDLG, Inverting Gradients, GradInversion).

Every setting of :class:`AttackConfig` can be overridden on top of a preset:
``preset("ig", iterations=2000, tv=5e-2)``. :func:`preset_table` renders the presets as the
markdown table the README and ``gradinvert invert --help`` show.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from gradinvert.runtime.errors import UsageError

OPTIMIZERS = ("adam", "signed-adam", "lbfgs")
OBJECTIVES = ("l2", "sql2", "cosine", "layer-cosine")
SCHEDULERS = ("none", "step", "cosine")
PICKS = ("best", "consensus")
INITS = ("randn", "rand", "grey", "git")
REGISTRATION_CHOICES = ("none", "translate", "translate-flip")
LAYER_WEIGHTS = ("uniform", "relative")
SEARCHES = ("x", "z", "w", "zw")
CALIBRATIONS = ("none", "start")


@dataclass
class AttackConfig:
    """Everything that defines an inversion run; the output metadata records all of it.

    Weights multiply each term of a seed's loss:
    ``gradient_weight·D(g(x̂), g*) + tv·TV + l2·||x̂|| + bn·R_BN + group·R_group``.
    """

    attack: str = "custom"
    iterations: int = 1000
    optimizer: str = "adam"  # adam | signed-adam (Adam on the gradient's sign) | lbfgs
    lr: float = 0.1
    scheduler: str = "none"  # none | step (×0.1 at 3/8, 5/8, 7/8) | cosine (after warm-up)
    warmup: int = 0  # linear lr warm-up iterations (cosine scheduler)
    objective: str = "cosine"  # l2 (per layer) | sql2 | cosine (global) | layer-cosine
    layers: str = "all"  # all | top-k:N (the N parameter tensors with the largest ||g*||)
    layer_weights: str = "uniform"  # uniform | relative (each tensor divided by ||g*_l|| first)
    gradient_weight: float = 1.0
    # none: the weights are absolute | start: α_G, bn and bn_first are relative to the terms'
    # values at the seeds' start point (scale-free, see gradinvert/invert/calibrate.py)
    calibrate: str = "none"
    tv: float = 0.0  # anisotropic total variation, mean |dx| + mean |dy|
    l2: float = 0.0  # image L2 norm
    bn: float = 0.0  # BN-statistics prior (DeepInversion)
    bn_first: float = 1.0  # extra factor on the first BN layer's term
    group: float = 0.0  # group consistency (needs seeds > 1)
    registration: str = "translate"  # none | translate | translate-flip
    group_every: int = 100  # recompute the group targets every N iterations
    group_start: float = 0.1  # fraction of the run before the group term starts
    registration_start: float = 0.5  # fraction of the run with a lazy (unregistered) mean first
    jitter: int = 0  # random circular shift of the candidates by up to N pixels per iteration
    flip: bool = False  # random horizontal flips of the candidates per iteration
    langevin: float = 0.0  # α_n: add lr·α_n·N(0, 1) after every step
    seeds: int = 1  # candidates optimized together (restarts / group members)
    seed: int = 0
    box: bool = True  # clamp candidates to the valid pixel box after every step
    # randn (N(0,1) in model input space) | rand (U(0,1) pixels) | grey (the normalization's mean
    # colour) | git (a learned inverter's estimate); grey and git add init_noise·N(0, 1) pixels
    # per seed
    init: str = "randn"
    inverter: str | None = None  # the inverter file of --init git / --inverter-prior
    init_noise: float = 0.02  # --init grey / git: std of each seed's start noise, in pixels
    inverter_prior: float = 0.0  # adds W·mean((x − x_git)²) over pixels to every seed's loss
    learn_labels: bool = False  # without given labels, optimize soft labels jointly (DLG)
    pick: str = "best"  # best (lowest gradient distance) | consensus (group consensus)
    lbfgs_evaluations: int = 20  # loss evaluations per L-BFGS step (torch's max_iter)
    # What is optimized (GIAS): x pixels | z a generator's latents | w per-image generator
    # weights | zw latents for latent_iterations, then the best restart's weights for iterations
    search: str = "x"
    generator: str | None = None  # dcgan | a generator file | package.module:factory
    generator_weights: str | None = None  # a state dict for a named or imported generator
    latent_iterations: int = 500  # the z stage of zw (GIAS: 500 at 32 px)
    latent_lr: float = 3e-2  # learning rate of the latents (z, and the z stage of zw)
    generator_lr: float = 1e-3  # learning rate of the generator weights (w, and zw's w stage)
    # relative: each weight tensor steps by generator_lr × its RMS (scale-free) | absolute
    generator_lr_scale: str = "relative"

    def validate(self) -> None:
        """Raise :class:`UsageError` for any setting out of range, all problems at once."""
        problems: list[str] = []

        def choice(name: str, value: str, options: tuple[str, ...]) -> None:
            if value not in options:
                problems.append(f"--{name} {value!r}: choose one of {', '.join(options)}")

        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("objective", self.objective, OBJECTIVES)
        choice("scheduler", self.scheduler, SCHEDULERS)
        choice("registration", self.registration, REGISTRATION_CHOICES)
        choice("pick", self.pick, PICKS)
        choice("init", self.init, INITS)
        choice("layer-weights", self.layer_weights, LAYER_WEIGHTS)
        choice("search", self.search, SEARCHES)
        choice("calibrate", self.calibrate, CALIBRATIONS)
        choice("generator-lr-scale", self.generator_lr_scale, ("relative", "absolute"))
        if self.search == "x" and (self.generator or self.generator_weights):
            problems.append("--generator is used by --search z, w or zw, not by --search x")
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
        if self.init_noise < 0 or self.inverter_prior < 0:
            problems.append("--init-noise and --inverter-prior must be non-negative")
        if self.latent_iterations < 1:
            problems.append("--latent-iterations must be at least 1")
        for name in ("latent_lr", "generator_lr"):
            if not getattr(self, name) > 0:
                problems.append(f"--{name.replace('_', '-')} must be positive")
        try:
            parse_layers(self.layers)
        except UsageError as exc:
            problems.append(exc.message)
        if self.iterations < 1:
            problems.append("--iterations must be at least 1")
        if self.seeds < 1:
            problems.append("--seeds must be at least 1")
        if not self.lr > 0:
            problems.append("--lr must be positive")
        for name in ("gradient_weight", "tv", "l2", "bn", "bn_first", "group", "langevin"):
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must be non-negative")
        if self.gradient_weight == 0:
            problems.append("--gradient-weight must be positive")
        if self.jitter < 0:
            problems.append("--jitter must be non-negative")
        if self.group_every < 1:
            problems.append("--group-every must be at least 1")
        for name in ("group_start", "registration_start"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"--{name.replace('_', '-')} is a fraction of the run in [0, 1]")
        if self.warmup < 0:
            problems.append("--warmup must be non-negative")
        if self.lbfgs_evaluations < 1:
            problems.append("lbfgs_evaluations must be at least 1")
        if self.pick == "consensus" and self.seeds < 2:
            problems.append("--pick consensus needs --seeds 2 or more")
        if problems:
            raise UsageError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """All settings as a JSON-ready dict."""
        return dataclasses.asdict(self)


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
    """A named attack: its settings and where they come from."""

    name: str
    title: str
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


PRESETS: dict[str, Preset] = {
    "dlg": Preset(
        "dlg",
        "Deep Leakage from Gradients",
        "Zhu et al., NeurIPS 2019",
        dict(
            iterations=300,
            optimizer="lbfgs",
            lr=1.0,
            objective="sql2",
            box=False,
            learn_labels=True,
        ),
        "L-BFGS lr 1, squared L2, 300 iterations; without --labels the labels are learned "
        "jointly as soft logits",
    ),
    "idlg": Preset(
        "idlg",
        "improved DLG",
        "Zhao et al., 2020",
        dict(iterations=300, optimizer="lbfgs", lr=1.0, objective="sql2", box=False),
        "DLG on the image only; without --labels the label comes from the last layer's "
        "gradient (iDLG rule)",
    ),
    "ig": Preset(
        "ig",
        "Inverting Gradients",
        "Geiping et al., NeurIPS 2020",
        dict(
            iterations=4800,
            optimizer="signed-adam",
            lr=0.1,
            scheduler="step",
            objective="cosine",
            tv=1e-2,
            seeds=4,
        ),
        "global cosine distance, Adam on the gradient's sign lr 0.1, ×0.1 at 3/8, 5/8 and 7/8 "
        "of the run, TV 1e-2, 4 restarts (the lowest gradient distance is kept), "
        "4800 iterations",
    ),
    "gradinversion": Preset(
        "gradinversion",
        "GradInversion (See through Gradients)",
        "Yin et al., CVPR 2021",
        dict(
            iterations=20000,
            optimizer="adam",
            lr=0.1,
            scheduler="cosine",
            warmup=50,
            objective="l2",
            calibrate="start",
            gradient_weight=1.0,
            tv=1e-4,
            l2=1e-6,
            bn=0.01,
            bn_first=3.0,
            group=0.01,
            registration="translate",
            langevin=0.01,
            seeds=8,
            pick="consensus",
        ),
        "per-layer L2 + BN statistics, calibrated: at the seeds' start the gradient term pulls "
        "the pixels with weight 1, the first BN layer 0.03 and the others 0.01 "
        "(--calibrate start; the paper's absolute α_G 1e-3 and BN 0.1 fit ImageNet ResNet-50 "
        "only) + TV 1e-4 + image L2 1e-6 + registered group consistency 0.01 over 8 seeds, "
        "output = their consensus; "
        "Adam lr 0.1, cosine decay after 50 warm-up steps; Langevin noise 0.01; "
        "20000 iterations",
    ),
    "gias": Preset(
        "gias",
        "Gradient Inversion in Alternative Spaces (GIAS)",
        "Jeon et al., NeurIPS 2021",
        dict(
            search="zw",
            latent_iterations=500,
            iterations=1000,
            optimizer="adam",
            latent_lr=3e-2,
            generator_lr=1e-3,
            scheduler="step",
            objective="cosine",
            tv=1e-6,
            seeds=3,
        ),
        "needs --generator; latents of the generator first (500 iterations, Adam lr 3e-2, "
        "3 restarts), then one copy of the generator per image from the best restart's latents "
        "(1000 iterations, Adam lr 1e-3; the paper's 32 px script runs 5000); 1 − global cosine "
        "+ TV 1e-6; ×0.1 at 3/8, 5/8 and 7/8 of each stage",
    ),
}


def preset(name: str, notes: list[str] | None = None, **overrides: Any) -> AttackConfig:
    """The preset's config with ``overrides`` applied (``None`` values are ignored), validated.

    A preset's default yields to what the caller set: ``--seeds 1`` on a preset whose output is
    the seeds' consensus picks the best seed instead, and says so in ``notes``.
    """
    if name not in PRESETS:
        raise UsageError(f"--attack {name!r}: choose one of {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(AttackConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"unknown attack settings: {', '.join(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {"attack": name, **PRESETS[name].settings, **given}
    if values.get("pick") == "consensus" and "pick" not in given and values.get("seeds", 1) < 2:
        values["pick"] = "best"
        if notes is not None:
            notes.append(
                f"--seeds {values.get('seeds', 1)}: the {name} preset's consensus output "
                "needs 2 or more seeds, so the output is the seed itself (--pick best)"
            )
    config = AttackConfig(**values)
    config.validate()
    return config


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
            if name == "lr" and config.search != "x":
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
