"""`gradinvert learn-prior`: meta-learn a generator from a stream of updates alone (GIML)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import (
    DeviceOption,
    MaxMemoryOption,
    ModelFactoryOption,
    TrustCodeOption,
    console,
    handle_errors,
)
from gradinvert.io.outputs import refuse_checkpoint_overwrite, refuse_clobbering
from gradinvert.priors.learn import (
    LearnPriorConfig,
    expand_update_paths,
    labels_path,
    learn_prior,
    save_learned_prior,
)
from gradinvert.runtime.device import resolve_device
from gradinvert.runtime.errors import UsageError
from gradinvert.runtime.memory import learn_prior_estimate
from gradinvert.runtime.resources import check_memory

HELP = "\n\n".join(
    [
        "Meta-learn a generative prior (GIML, Jeon et al. 2021) from update files alone: it "
        "never opens an image or a truth file.",
        "UPDATES are update files or quoted globs ('stream/*.safetensors'), used in the sorted "
        "order of their names; they must share one architecture and input (the weights may "
        "differ, as over FL rounds); gradients and FedAvg deltas both work. Each update's labels "
        "come from a labels file beside it (u3.safetensors -> u3.labels.json, as `gradinvert "
        "labels --out` writes) or are restored from the update (as `labels --method auto`).",
        "Per task (one update, drawn in a seeded order: epochs over the list, each a fresh "
        "permutation): --restarts latent searches of --latent-iterations (Adam lr 3e-2, 1 − "
        "global cosine + TV 1e-6 + --z-norm·||z||₂); the best one's latents fixed, one copy of "
        "the whole generator shared by the batch is fine-tuned for --iterations (Adam lr 1e-3, "
        "absolute as in the official code; --generator-lr-scale relative steps each weight "
        "tensor by the lr × its RMS, as invert does by default); "
        "then a Reptile step: Adam (--meta-lr) on ||θ′ − θ||², i.e. meta-gradient 2(θ − θ′), "
        "moves the generator toward the copy. The generator stays in eval mode (BN running "
        "statistics). Defaults are the official run: 200 tasks, 1000 + 500 iterations.",
        "--generator is where to start: dcgan (untrained, seeded by --seed), a generator file "
        "(train-prior or learn-prior), or package.module:factory (with --generator-weights: a "
        "state dict or generator file to start from). The output is a generator file like "
        "train-prior's (use it with invert --generator; one started from a factory records the "
        "factory's path, and is used again with --generator pkg.mod:fn --generator-weights "
        "FILE, or with --trust-code: a file never runs code on its own); its 'training' metadata "
        "records the tasks, each update file's SHA-256, the order, the settings and every "
        "task's final gradient distance.",
        "--samples writes a grid of 64 images from fixed latents every --samples-every tasks. "
        "--checkpoint is written after every task and on Ctrl-C (which abandons the current "
        "task); --resume continues to exactly the weights of an uninterrupted run, and may raise "
        "--tasks to continue a finished run.",
        "Exit codes: 2 usage (no UPDATES, a bad setting), 65 invalid input (updates of "
        "different architectures or inputs, a generator that does not fit the input, an "
        "unreadable file or checkpoint, a file that names code: see --trust-code), 66 missing "
        "input (a file, or a glob that matches nothing), 69 unavailable device or more memory "
        "needed than --max-memory, 70 internal error, 130 interrupted (143 on SIGTERM, which "
        "stops like Ctrl-C).",
    ]
)


@handle_errors
def learn_prior_command(
    updates: Annotated[
        list[str] | None,
        typer.Argument(
            help="Update files or quoted globs.", metavar="UPDATES...", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Generator file to write (.safetensors).")
    ] = None,
    generator: Annotated[
        str,
        typer.Option("--generator", help="Start from: dcgan, a generator file, or module:factory."),
    ] = "dcgan",
    generator_weights: Annotated[
        Path | None,
        typer.Option(
            "--generator-weights",
            help="State dict or generator file loaded into a named or imported --generator.",
        ),
    ] = None,
    tasks: Annotated[int, typer.Option("--tasks", help="Tasks (one update each).")] = 200,
    latent_iterations: Annotated[
        int, typer.Option("--latent-iterations", help="Latent-search iterations per task.")
    ] = 1000,
    iterations: Annotated[
        int, typer.Option("--iterations", help="Generator fine-tuning iterations per task.")
    ] = 500,
    restarts: Annotated[
        int, typer.Option("--restarts", help="Restarts of the latent search (best kept).")
    ] = 1,
    meta_lr: Annotated[float, typer.Option("--meta-lr", help="Reptile step: Adam lr.")] = 1e-2,
    z_norm: Annotated[float, typer.Option("--z-norm", help="Weight of the ||z||₂ penalty.")] = 1e-3,
    latent_lr: Annotated[float, typer.Option("--latent-lr", help="Adam lr of the latents.")] = 3e-2,
    generator_lr: Annotated[
        float, typer.Option("--generator-lr", help="Adam lr of the generator copy.")
    ] = 1e-3,
    generator_lr_scale: Annotated[
        str,
        typer.Option(
            "--generator-lr-scale",
            help="absolute (official GIML) or relative (each weight tensor steps by lr × its RMS).",
        ),
    ] = "absolute",
    seed: Annotated[int, typer.Option("--seed", help="Random seed; recorded in the output.")] = 0,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Save the run state here after every task.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint.")] = False,
    overwrite_checkpoint: Annotated[
        bool,
        typer.Option("--overwrite-checkpoint", help="Replace an existing --checkpoint afresh."),
    ] = False,
    samples: Annotated[
        Path | None, typer.Option("--samples", help="PNG grid of 64 generated images.")
    ] = None,
    samples_every: Annotated[
        int, typer.Option("--samples-every", help="Rewrite --samples every N tasks.")
    ] = 10,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar (one line per task instead).")
    ] = False,
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    device: DeviceOption = "auto",
    max_memory: MaxMemoryOption = None,
) -> None:
    if not updates:
        raise UsageError(
            "no update files given: learn-prior 'stream/*.safetensors' --out G.safetensors"
        )
    if out is None:
        raise UsageError("give the generator file to write with --out G.safetensors")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder, give a file name")
    if resume and checkpoint is None:
        raise UsageError("--resume needs --checkpoint PATH")
    config = LearnPriorConfig(
        tasks=tasks,
        latent_iterations=latent_iterations,
        iterations=iterations,
        restarts=restarts,
        meta_lr=meta_lr,
        z_norm=z_norm,
        latent_lr=latent_lr,
        generator_lr=generator_lr,
        generator_lr_scale=generator_lr_scale,
        seed=seed,
        samples_every=samples_every,
    )
    config.validate()
    paths = expand_update_paths(updates)
    refuse_clobbering(
        [*paths, *map(labels_path, paths), generator],
        {"--out": out, "--checkpoint": checkpoint, "--samples": samples},
    )
    refuse_checkpoint_overwrite(checkpoint, resume, overwrite_checkpoint)
    torch_device = resolve_device(device)
    estimate = learn_prior_estimate(paths, config.restarts, generator)
    check_memory(estimate, max_memory, torch_device)
    result = learn_prior(
        updates,
        config,
        generator,
        torch_device,
        progress=not no_progress,
        checkpoint=checkpoint,
        resume=resume,
        samples=samples,
        log=lambda message: console.print(message, soft_wrap=True),
        generator_weights=generator_weights,
    )
    save_learned_prior(result, out)
    training = result.training
    distances = training["task_distances"]
    last = f", last task's distance {distances[-1]:.4f}" if distances else ""
    console.print(
        f"learn-prior: {training['tasks']} tasks over {training['updates']} updates "
        f"({training['seconds']:.0f} s){last} -> {out}"
        + (f"; samples -> {samples}" if samples is not None else ""),
        soft_wrap=True,
    )


learn_prior_command.__doc__ = HELP
