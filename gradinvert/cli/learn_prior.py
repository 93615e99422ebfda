"""`gradinvert learn-prior`: meta-learn a generator from a stream of updates alone (GIML)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import ModelFactoryOption, TrustCodeOption, console, handle_errors
from gradinvert.cli.options import with_settings
from gradinvert.config.learn_prior import LearnPriorSettings
from gradinvert.runtime.errors import UsageError

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
        "global cosine + --tv·TV + --z-norm·||z||₂); the best one's latents fixed, one copy of "
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
        "task's final gradient distance; its 'config' metadata the settings: `gradinvert inspect "
        "G.safetensors --print-config > run.toml`, then `learn-prior UPDATES --config run.toml` "
        "replays the run (options given on the command line override the file).",
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
@with_settings(LearnPriorSettings)
def learn_prior_command(
    updates: Annotated[
        list[str] | None,
        typer.Argument(
            help="Update files or quoted globs.", metavar="UPDATES...", show_default=False
        ),
    ] = None,
    *,
    out: Annotated[
        Path | None, typer.Option("--out", help="Generator file to write (.safetensors).")
    ] = None,
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
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar (one line per task instead).")
    ] = False,
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    config: LearnPriorSettings,
) -> None:
    from gradinvert.io.outputs import refuse_clobbering
    from gradinvert.priors.learn import (
        expand_update_paths,
        labels_path,
        learn_prior,
        save_learned_prior,
    )
    from gradinvert.runtime.checkpoint import check_checkpoint_options
    from gradinvert.runtime.device import resolve_device
    from gradinvert.runtime.memory import learn_prior_estimate
    from gradinvert.runtime.resources import check_memory

    if not updates:
        raise UsageError(
            "no update files given: learn-prior 'stream/*.safetensors' --out G.safetensors"
        )
    if out is None:
        raise UsageError("give the generator file to write with --out G.safetensors")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder, give a file name")
    paths = expand_update_paths(updates)
    refuse_clobbering(
        [*paths, *map(labels_path, paths), config.generator, config.generator_weights],
        {"--out": out, "--checkpoint": checkpoint, "--samples": samples},
    )
    check_checkpoint_options(checkpoint, resume, overwrite_checkpoint)
    device = resolve_device(config.device)
    estimate = learn_prior_estimate(paths, config.restarts, config.generator)
    check_memory(estimate, config.max_memory, device)
    result = learn_prior(
        updates,
        config,
        device=device,
        progress=not no_progress,
        checkpoint=checkpoint,
        resume=resume,
        samples=samples,
        log=lambda message: console.print(message, soft_wrap=True),
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
