"""`gradinvert invert`: reconstruct the private batch behind an update file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

from gradinvert.cli.common import (
    DeviceOption,
    ModelFactoryOption,
    TrustCodeOption,
    console,
    handle_errors,
)
from gradinvert.invert import PRESETS, preset, run_attack
from gradinvert.io.atomic import make_folder
from gradinvert.io.files import BatchFile, load_update, parse_labels, read_update_shapes, save_batch
from gradinvert.io.outputs import refuse_checkpoint_overwrite, refuse_clobbering
from gradinvert.report.grid import save_png
from gradinvert.runtime.allocator import keep_freed_memory
from gradinvert.runtime.device import resolve_device
from gradinvert.runtime.errors import UsageError
from gradinvert.runtime.memory import invert_estimate
from gradinvert.runtime.resources import MaxMemoryOption, check_memory


def _paragraph(*parts: str) -> str:
    return " ".join(parts)


HELP = "\n\n".join(
    [
        "Reconstruct the images behind an update file (gradient or FedAvg delta).",
        _paragraph(
            "Pick a paper preset with --attack and override any of its settings.",
            "Without --labels the labels are restored from the update (as `gradinvert labels",
            "--method auto`); the dlg preset learns them jointly instead. The K seeds (--seeds)",
            "are optimized together in one vectorized computation; the output keeps the seed",
            "with the lowest final gradient distance (--pick best) or the seeds' registered",
            "group consensus (--pick consensus), never chosen by the truth.",
        ),
        _paragraph(
            "Search spaces (GIAS): --search x optimizes pixels; z the latents of --generator;",
            "w one copy of the generator per image with fixed latents; zw runs z for",
            "--latent-iterations with K restarts, then refines the restart with the lowest",
            "gradient distance in w for --iterations (one seed). The generator's output in",
            "[-1, 1] becomes pixels (G+1)/2 and must match the update's input shape (else exit",
            "65). --lr is the pixel learning rate; --latent-lr and --generator-lr the others.",
        ),
        "Presets (paper defaults):",
        *[f"{p.name}: {p.summary} ({p.source})" for p in PRESETS.values()],
        _paragraph(
            "git: one forward pass of a learned inverter (--inverter INV, from",
            "train-inverter); refused (exit 65) when the inverter was made for another model,",
            "input size, batch size or update kind. --init git --inverter INV starts every seed",
            "of an iterative attack (search x) at the inverter's estimate plus --init-noise σ",
            "(pixel units); --inverter-prior W adds W·mean((x − x_git)²) to every seed's loss.",
        ),
        _paragraph(
            "The BN prior's reference is the update's shared batch statistics when it carries",
            "them, else the model's running statistics (said on stderr and in the output's",
            "metadata). Ctrl-C stops after the current iteration and saves --checkpoint;",
            "--resume continues to the same result as an uninterrupted run. A seed whose loss",
            "turns non-finite restarts from fresh noise; after 10 restarts of one seed the run",
            "stops (exit 70). Exit codes: 2 usage, 65 invalid input (also a file that names",
            "code: see --trust-code), 66 missing input, 69 unavailable, 70 diverged or",
            "internal error, 130 interrupted (143 on SIGTERM, which stops like Ctrl-C).",
        ),
    ]
)


PNG_NAMES = r"\d{3}_label\d+\.png"  # what --png-dir holds: png_name(index, label)


def png_name(index: int, label: int) -> str:
    """The name of a --png-dir image: index and label."""
    return f"{index:03d}_label{int(label)}.png"


def _write_pngs(batch: BatchFile, folder: Path) -> None:
    make_folder(folder, private=True)
    for index, (image, label) in enumerate(zip(batch.images, batch.labels, strict=True)):
        array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        if array.shape[2] == 1:
            array = array[:, :, 0]
        save_png(Image.fromarray(np.ascontiguousarray(array)), folder / png_name(index, label))


@handle_errors
def invert(
    update_path: Annotated[
        Path, typer.Argument(help="Update file (from capture).", metavar="UPDATE")
    ],
    out: Annotated[Path, typer.Option("--out", help="Reconstructed batch file to write.")],
    labels: Annotated[
        str | None,
        typer.Option("--labels", help="Labels: inline '3,3,7,1' or a labels JSON file."),
    ] = None,
    png_dir: Annotated[
        Path | None, typer.Option("--png-dir", help="Also write every image as a PNG here.")
    ] = None,
    attack: Annotated[
        str, typer.Option("--attack", help=f"Preset: {', '.join(PRESETS)}, or git.")
    ] = "gradinversion",
    iterations: Annotated[int | None, typer.Option("--iterations", help="Steps.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate.")] = None,
    optimizer: Annotated[
        str | None, typer.Option("--optimizer", help="adam, signed-adam or lbfgs.")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="none, step (×0.1 at 3/8, 5/8, 7/8) or cosine."),
    ] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="lr warm-up steps.")] = None,
    objective: Annotated[
        str | None,
        typer.Option("--objective", help="l2 (per layer), sql2, cosine (global), layer-cosine."),
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option("--layers", help="Matched tensors: all, or top-k:N (largest ||g*||)."),
    ] = None,
    layer_weights: Annotated[
        str | None,
        typer.Option(
            "--layer-weights",
            help="uniform, or relative: each tensor divided by ||g*_l|| so every layer counts "
            "alike whatever its scale.",
        ),
    ] = None,
    gradient_weight: Annotated[
        float | None, typer.Option("--gradient-weight", help="Weight of the distance (α_G).")
    ] = None,
    calibrate: Annotated[
        str | None,
        typer.Option(
            "--calibrate",
            help="none (absolute weights) or start: α_G, --bn and --bn-first are relative to "
            "each term's value at the seeds' start point (scale-free).",
        ),
    ] = None,
    tv: Annotated[float | None, typer.Option("--tv", help="Total-variation weight.")] = None,
    l2: Annotated[float | None, typer.Option("--l2", help="Image L2-norm weight.")] = None,
    bn: Annotated[float | None, typer.Option("--bn", help="BN-statistics prior weight.")] = None,
    bn_first: Annotated[
        float | None, typer.Option("--bn-first", help="Extra factor on the first BN layer.")
    ] = None,
    group: Annotated[
        float | None, typer.Option("--group", help="Group-consistency weight (seeds > 1).")
    ] = None,
    registration: Annotated[
        str | None,
        typer.Option("--registration", help="Group registration: none, translate, translate-flip."),
    ] = None,
    group_every: Annotated[
        int | None, typer.Option("--group-every", help="Recompute group targets every N.")
    ] = None,
    group_start: Annotated[
        float | None,
        typer.Option("--group-start", help="Fraction of the run before the group term starts."),
    ] = None,
    registration_start: Annotated[
        float | None,
        typer.Option(
            "--registration-start", help="Fraction of the run with a lazy (unregistered) mean."
        ),
    ] = None,
    jitter: Annotated[
        int | None, typer.Option("--jitter", help="Random shifts up to N pixels per step.")
    ] = None,
    flip: Annotated[
        bool | None, typer.Option("--flip/--no-flip", help="Random horizontal flips per step.")
    ] = None,
    langevin: Annotated[
        float | None, typer.Option("--langevin", help="Langevin noise α_n (lr·α_n·N(0,1)).")
    ] = None,
    box: Annotated[
        bool | None, typer.Option("--box/--no-box", help="Clamp to the pixel box every step.")
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="randn (N(0,1) in model input space), rand (U(0,1) pixels), grey (the "
            "normalization's mean colour) or git (the --inverter's estimate); grey and git add "
            "--init-noise.",
        ),
    ] = None,
    inverter: Annotated[
        str | None,
        typer.Option("--inverter", help="Inverter file (train-inverter) for git / --init git."),
    ] = None,
    init_noise: Annotated[
        float | None,
        typer.Option("--init-noise", help="--init grey / git: start noise std in pixels (0.02)."),
    ] = None,
    inverter_prior: Annotated[
        float | None,
        typer.Option("--inverter-prior", help="Weight W of W·mean((x − x_git)²)."),
    ] = None,
    learn_labels: Annotated[
        bool | None,
        typer.Option("--learn-labels/--restore-labels", help="Without --labels: learn or restore."),
    ] = None,
    pick: Annotated[
        str | None, typer.Option("--pick", help="Output: best (seed) or consensus.")
    ] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Candidates optimized together (K).")
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            help="What is optimized: x (pixels), z (generator latents), w (one generator copy "
            "per image, latents fixed) or zw (z, then w from the best restart; GIAS).",
        ),
    ] = None,
    generator: Annotated[
        str | None,
        typer.Option(
            "--generator",
            help="For --search z/w/zw: dcgan (untrained, seeded), a generator file from "
            "train-prior, or package.module:factory.",
        ),
    ] = None,
    generator_weights: Annotated[
        str | None,
        typer.Option(
            "--generator-weights",
            help="State dict or generator file loaded into a named or imported generator "
            "(how a generator file made from your own factory is used without --trust-code).",
        ),
    ] = None,
    generator_lr_scale: Annotated[
        str | None,
        typer.Option(
            "--generator-lr-scale",
            help="relative (default): each weight tensor steps by --generator-lr × its RMS, "
            "so one lr fits any generator; absolute: the lr as is.",
        ),
    ] = None,
    latent_iterations: Annotated[
        int | None,
        typer.Option("--latent-iterations", help="Iterations of zw's latent stage."),
    ] = None,
    latent_lr: Annotated[
        float | None, typer.Option("--latent-lr", help="Learning rate of the latents.")
    ] = None,
    generator_lr: Annotated[
        float | None,
        typer.Option("--generator-lr", help="Learning rate of the generator copies' weights."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; recorded in the output.")] = 0,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Save the run state here periodically.")
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Iterations between checkpoints.")
    ] = 100,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint.")] = False,
    overwrite_checkpoint: Annotated[
        bool,
        typer.Option("--overwrite-checkpoint", help="Replace an existing --checkpoint afresh."),
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar on stderr.")
    ] = False,
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    device: DeviceOption = "auto",
    max_memory: MaxMemoryOption = None,
) -> None:
    settings = dict(
        iterations=iterations,
        lr=lr,
        optimizer=optimizer,
        scheduler=scheduler,
        warmup=warmup,
        objective=objective,
        layers=layers,
        layer_weights=layer_weights,
        gradient_weight=gradient_weight,
        calibrate=calibrate,
        tv=tv,
        l2=l2,
        bn=bn,
        bn_first=bn_first,
        group=group,
        registration=registration,
        group_every=group_every,
        group_start=group_start,
        registration_start=registration_start,
        jitter=jitter,
        flip=flip,
        langevin=langevin,
        box=box,
        init=init,
        inverter=inverter,
        init_noise=init_noise,
        inverter_prior=inverter_prior,
        learn_labels=learn_labels,
        pick=pick,
        seeds=seeds,
        search=search,
        generator=generator,
        generator_weights=generator_weights,
        latent_iterations=latent_iterations,
        latent_lr=latent_lr,
        generator_lr=generator_lr,
        generator_lr_scale=generator_lr_scale,
    )
    refuse_clobbering(
        [update_path, labels, inverter, generator, generator_weights],
        {"--out": out, "--checkpoint": checkpoint},
        {"--png-dir": (png_dir, PNG_NAMES)},
    )
    refuse_checkpoint_overwrite(checkpoint, resume, overwrite_checkpoint)
    if attack == "git":
        given = [k for k, v in settings.items() if v is not None and k != "inverter"]
        given += ["checkpoint"] * (checkpoint is not None) + ["resume"] * resume
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(
                f"--attack git is one forward pass of --inverter: {names} set an iterative "
                "search (use --init git with an iterative --attack for that)"
            )
        _invert_with_inverter(update_path, out, labels, png_dir, inverter, device, max_memory)
        return
    notes: list[str] = []
    config = preset(attack, notes, seed=seed, **settings)
    for note in notes:
        console.print(f"note: {note}", soft_wrap=True)
    if resume and checkpoint is None:
        raise UsageError("--resume needs --checkpoint PATH")
    torch_device = resolve_device(device)
    if torch_device.type == "cpu":
        keep_freed_memory()
    label_list = parse_labels(labels) if labels is not None else None
    estimate = invert_estimate(read_update_shapes(update_path), config, label_list)
    check_memory(estimate, max_memory, torch_device)
    update = load_update(update_path)
    result = run_attack(
        update,
        label_list,
        config,
        torch_device,
        progress=not no_progress,
        checkpoint=checkpoint,
        resume=resume,
        checkpoint_every=checkpoint_every,
        log=lambda message: console.print(message, soft_wrap=True),
    )
    result.metadata["update"] = str(update_path)
    save_batch(result, out, deterministic=True)
    if png_dir is not None:
        _write_pngs(result, png_dir)
    meta = result.metadata
    record = meta["labels"]
    if config.search == "zw":
        chosen = meta["stages"][0]["chosen_seed"]
        picked = f"restart {chosen} of {config.seeds} refined in generator weights"
    elif config.pick == "consensus":
        picked = f"consensus of {config.seeds} seeds (frame of seed {meta['chosen_seed']})"
    else:
        picked = f"seed {meta['chosen_seed']} of {config.seeds}"
    console.print(
        f"{config.attack}: {result.images.shape[0]} images, labels {record['labels']} "
        f"({record['source']}), {picked}, gradient distance "
        f"{meta['candidates'][0]['gradient_distance']:.4g} -> {out}",
        soft_wrap=True,
    )


def _invert_with_inverter(
    update_path: Path,
    out: Path,
    labels: str | None,
    png_dir: Path | None,
    inverter_path: str | None,
    device: str,
    max_memory: str | None,
) -> None:
    """``--attack git``: one forward pass of a trained inverter."""
    from gradinvert.invert import AttackConfig
    from gradinvert.invert.attack import resolve_labels
    from gradinvert.inverter import invert_with, load_inverter
    from gradinvert.inverter.apply import check_compatible
    from gradinvert.inverter.footprint import estimate_git
    from gradinvert.inverter.store import read_inverter_header

    if not inverter_path:
        raise UsageError("--attack git needs --inverter INV (a file written by train-inverter)")
    torch_device = resolve_device(device)
    shapes, head = read_update_shapes(update_path), read_inverter_header(inverter_path)
    check_compatible(head, shapes)
    check_memory(estimate_git(shapes, head), max_memory, torch_device)
    update = load_update(update_path)
    inverter = load_inverter(inverter_path)
    label_list = parse_labels(labels) if labels is not None else None
    choice = resolve_labels(update, label_list, AttackConfig(attack="git"))
    if choice.source == "restored":
        console.print(f"labels restored from the update ({choice.method}): {choice.labels}")
    say = lambda message: console.print(message, soft_wrap=True)  # noqa: E731
    result = invert_with(inverter, update, choice.labels or [], choice.to_dict(), torch_device, say)
    result.metadata["update"] = str(update_path)
    result.metadata["inverter"]["path"] = str(inverter_path)
    save_batch(result, out, deterministic=True)
    if png_dir is not None:
        _write_pngs(result, png_dir)
    seconds = result.metadata["inverter"]["seconds"]
    console.print(
        f"git: {result.images.shape[0]} images from one pass of the "
        f"{result.metadata['inverter']['arch']} inverter ({seconds * 1000:.0f} ms), labels "
        f"{choice.labels} ({choice.source}) -> {out}",
        soft_wrap=True,
    )


invert.__doc__ = HELP
