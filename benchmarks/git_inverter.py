"""Learned inversion (GIT, ours after Chen & Liu 2025) vs LTI's MLP, iterative attacks, drift.

    .venv/bin/python benchmarks/git_inverter.py --part lenet|resnet|drift|corpus [--epochs 20]
        [--threads 1]

Every inverter is trained with `train_inverter` (what `gradinvert train-inverter` runs) on
images it is then never scored on:

* patches: trained on samples/patches32 crops 0 … 2699 (sorted names; random labels, as an
  attacker without labels would); scored on crops 2700 … 2999 of the same four photographs
  (the training domain) and on the seven validation photographs of samples/images32 (held-out
  subjects, samples/splits.json: distribution shift);
* digits: trained on samples/digits32 0 … 1399 with their labels; scored on 1400 … 1499;
* corpus: trained on samples/corpus32 crops 0 … 2699 (nine training photographs, random
  labels); scored on crops 2700 … 2999 and, like patches, on the validation photographs.

Parts:

* ``lenet``: DLG's sigmoid LeNet (seeded 0), batch 1, 32 px, one gradient. `git` and `mlp`
  (LTI: hidden 3000-3000) on the same pairs (patches: 1000 and all; digits: all), MSE/PSNR/SSIM
  of one forward pass; the all-pairs inverters under test-time Gaussian noise σ 0.01 / 0.1 and
  pruning 0.99, with and without training augmentation (git, noise:0.1, patches); DLG
  (300 L-BFGS steps) and IG (1000 steps,
  one seed) on the same defended updates of the first four test images.
* ``resnet``: torchvision resnet18(num_classes=10) seeded 0, eval mode, batch 1 (``--batch 4``:
  one batch of 4), 32 px: IG
  from noise against IG started at the `git` inverter's estimate (`--init git`), PSNR/SSIM of
  the run's current image after 10, 100, 300 and 1000 iterations (one seed each, so nothing is
  selected), on four validation photographs.
* ``drift``: the LeNet patches `git` inverter (trained on the round-0 weights) applied to
  updates of the same model after 1, 10 and 100 local SGD steps (lr 0.1, batch 8) on digits:
  relative parameter distance and MSE, with the transpose paths reading the drifted weights
  (what `invert --attack git` does) and with the template's.
* ``corpus``: the LeNet batch-1 `git` inverter (all pairs of its training crops) trained on
  patches (four photographs), on corpus (nine) and on both (5400 crops), with the same
  settings; each scored on the test crops of both corpora (held-out crops of training
  photographs), on the seven validation photographs of samples/images32 and on the 300 crops of
  samples/validation32 (random crops of the held-out photographs chelsea and retina only).
  Which row to use is read off the test crops, never off the validation images.

Scores: PSNR/SSIM per image after Hungarian matching on MSE (the tool's metric code), mean
over the test images. Writes benchmarks/results/git_<part>.md and grids under
benchmarks/results/git/.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from common import RESULTS, SAMPLES, write_result

from gradinvert.client.capture import CaptureConfig, capture_update, local_sgd_delta
from gradinvert.client.defenses import DefenseConfig
from gradinvert.config import TrainInverterSettings, preset
from gradinvert.invert import run_attack
from gradinvert.inverter import estimate, train_inverter
from gradinvert.inverter.store import InverterFile, load_inverter, save_inverter
from gradinvert.io.files import UpdateFile
from gradinvert.io.images import expand_image_paths, load_images
from gradinvert.metrics import assign, pairwise_mse, psnr, ssim
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
from gradinvert.report.grid import save_grid
from gradinvert.runtime.allocator import keep_freed_memory

GRIDS = RESULTS / "git"
SMOKE = False  # --smoke: tiny sizes, results not written
DEFENSES = {
    "clean": DefenseConfig(),
    "noise 0.01": DefenseConfig(noise=0.01),
    "noise 0.1": DefenseConfig(noise=0.1),
    "prune 0.99": DefenseConfig(prune=0.99),
}


def folder_images(folder: str) -> torch.Tensor:
    """Every image of samples/<folder>, in the sorted order of their names."""
    return load_images(expand_image_paths([SAMPLES / folder]))[0]


def corpus(name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Training and test images (with labels where the corpus has them)."""
    if name in ("patches", "corpus"):
        images = folder_images("patches32" if name == "patches" else "corpus32")
        splits = json.loads((SAMPLES / "splits.json").read_text())["images32"]["validation"]
        photos, _ = load_images([SAMPLES / "images32" / n for n in splits])
        return {
            "train": (images[:2700], None),
            "test": (images[2700:], None),
            "photos": (photos, None),
        }
    paths = expand_image_paths([SAMPLES / "digits32"])
    known = json.loads((SAMPLES / "digits32" / "labels.json").read_text())
    labels = torch.tensor([known[p.name] for p in paths[:1500]])
    images, _ = load_images(paths[:1500])
    return {"train": (images[:1400], labels[:1400]), "test": (images[1400:], labels[1400:])}


def client(arch: str, mode: str = "eval") -> tuple:
    mean, std = NORMALIZATIONS["imagenet"]
    spec_in = InputSpec((3, 32, 32), mean, std)
    spec = model_spec(arch, 10, spec_in.shape)
    return build_model(spec, init_seed=0).eval(), spec, spec_in


def update_of(model, spec, spec_in, image, label, defense=DefenseConfig(), seed=0) -> UpdateFile:  # noqa: ANN001, B008
    config = CaptureConfig(defense=defense, seed=seed)
    return capture_update(model, spec, spec_in, image, label, config)


def labels_for(images: torch.Tensor, labels: torch.Tensor | None, seed: int) -> torch.Tensor:
    if labels is not None:
        return labels
    return torch.randint(0, 10, (images.shape[0],), generator=torch.Generator().manual_seed(seed))


def score(recon: torch.Tensor, truth: torch.Tensor) -> tuple[float, float, float]:
    """Mean MSE, PSNR and SSIM after Hungarian matching on MSE."""
    pairs = sorted(assign(pairwise_mse(recon, truth), "mse").truth_of().items())
    m = [float((recon[r] - truth[t]).pow(2).mean()) for r, t in pairs]
    p = [float(psnr(recon[r : r + 1], truth[t : t + 1])[0]) for r, t in pairs]
    s = [float(ssim(recon[r : r + 1], truth[t : t + 1])[0]) for r, t in pairs]
    return sum(m) / len(m), sum(p) / len(p), sum(s) / len(s)


def direct(inverter: InverterFile, updates: list[UpdateFile]) -> torch.Tensor:
    return torch.cat([estimate(inverter, u)[0] for u in updates])


def direct_scores(
    client_model: tuple,
    inverter: InverterFile,
    images: torch.Tensor,
    labels: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]]:
    """One batch-1 update per image (labels drawn with seed 11 when none), the inverter's
    one-pass estimates, and their mean MSE, PSNR and SSIM; returns (images, estimates, scores)."""
    model, spec, spec_in = client_model
    labels = labels_for(images, labels, seed=11)
    if SMOKE:
        images, labels = images[:2], labels[:2]
    updates = [
        update_of(model, spec, spec_in, images[i : i + 1], labels[i : i + 1], seed=i)
        for i in range(images.shape[0])
    ]
    recon = direct(inverter, updates)
    return images, recon, score(recon, images)


def as_file(result, template: UpdateFile) -> InverterFile:  # noqa: ANN001
    return InverterFile(result.inverter, template, result.summary, "benchmark")


def row(cells: list) -> str:  # noqa: ANN001
    return "| " + " | ".join(str(c) for c in cells) + " |"


def machine(threads: int) -> str:
    return f"{platform.machine()}, torch {torch.__version__}, {threads} thread(s), CPU"


# ---------------------------------------------------------------- lenet


def part_lenet(args: argparse.Namespace) -> str:
    model, spec, spec_in = client("lenet")
    lines = [
        "# Learned inversion on LeNet, batch 1 (validation images; see the script's docstring)",
        "",
        f"Written by `benchmarks/git_inverter.py --part lenet --epochs {args.epochs} --mlp-epochs "
        f"{args.mlp_epochs}` (LTI trains its MLP for 200 epochs; a 2-core CPU affords "
        f"{args.mlp_epochs}). Direct = one forward pass of the inverter. MSE on [0, 1] pixels; "
        "'all' pairs = one per training image.",
        "",
    ]
    for name in ("patches", "digits"):
        data = corpus(name)
        train_images, train_labels = data["train"]
        template = update_of(model, spec, spec_in, train_images[:1], torch.tensor([0]))
        trained: dict[str, InverterFile] = {}
        settings = [("git", 0, ""), ("mlp", 0, "")]
        if name == "patches":
            settings = [("git", 1000, ""), ("mlp", 1000, ""), *settings, ("git", 0, "noise:0.1")]
        table = [
            f"## {name}",
            "",
            "| inverter | pairs | augment | epochs (best) | train time (s) | test set | MSE | "
            "PSNR (dB) | SSIM |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for arch, pairs, augment in settings:
            count = pairs or int(train_images.shape[0] * 0.9)
            count = 40 if SMOKE else count
            epochs = args.mlp_epochs if arch == "mlp" else args.epochs
            config = TrainInverterSettings(
                arch=arch, pairs=count, epochs=epochs, patience=5, augment=augment
            )
            started = time.perf_counter()
            result = train_inverter(template, train_images, train_labels, config, progress=False)
            seconds = time.perf_counter() - started
            key = f"{arch}/{pairs or 'all'}/{augment or 'none'}"
            trained[key] = as_file(result, template)
            for split in [s for s in data if s != "train"]:
                images, labels = data[split]
                images, recon, (mse, p, s) = direct_scores(
                    (model, spec, spec_in), trained[key], images, labels
                )
                table.append(
                    row(
                        [
                            arch,
                            count,
                            augment or "–",
                            f"{result.summary['epochs_run']} ({result.summary['best_epoch']})",
                            f"{seconds:.0f}",
                            f"{split} ({images.shape[0]})",
                            f"{mse:.4f}",
                            f"{p:.2f}",
                            f"{s:.3f}",
                        ]
                    )  # fmt: skip
                )
                tag = (augment or "none").replace(":", "")
                grid = f"lenet-{name}-{split}-{arch}-{pairs or 'all'}-{tag}.png"
                save_grid(images[:8], recon[:8], [""] * len(recon[:8]), GRIDS / grid)
                print(table[-1], flush=True)
        lines += table + [""]
        lines += _defended(name, data, model, spec, spec_in, trained) + [""]
    lines.append(f"Machine: {machine(args.threads)}.")
    return "\n".join(lines)


def _defended(name, data, model, spec, spec_in, trained) -> list[str]:  # noqa: ANN001
    """The all-pairs inverters, DLG and IG under test-time defenses."""
    images, labels = data["test"]
    labels = labels_for(images, labels, seed=11)
    if SMOKE:
        images, labels = images[:2], labels[:2]
    lines = [
        f"### {name}: under test-time defenses (test set)",
        "",
        "| defense | git | git (aug noise 0.1) | mlp | DLG (4 images) | IG (4 images) |",
        "|---|---|---|---|---|---|",
    ]
    for label, defense in DEFENSES.items():
        updates = [
            update_of(model, spec, spec_in, images[i : i + 1], labels[i : i + 1], defense, seed=i)
            for i in range(images.shape[0])
        ]
        cells = [label]
        for key in ("git/all/none", "git/all/noise:0.1", "mlp/all/none"):
            if key not in trained:
                cells.append("–")
                continue
            mse, p, _ = score(direct(trained[key], updates), images)
            cells.append(f"{mse:.4f} ({p:.1f} dB)")
        for attack, settings in (("dlg", {}), ("ig", {"iterations": 1000, "seeds": 1})):
            if name != "patches":
                cells.append("–")
                continue
            recon = []
            for i in range(1 if SMOKE else 4):
                config = preset(attack, **({"iterations": 5} if SMOKE else settings))
                recon.append(run_attack(updates[i], None, config, progress=False).images)
            mse, p, _ = score(torch.cat(recon), images[: len(recon)])
            cells.append(f"{mse:.4f} ({p:.1f} dB)")
        lines.append(row(cells))
        print(lines[-1], flush=True)
    lines.append("")
    lines.append(
        "Cells: MSE (PSNR). DLG: 300 L-BFGS steps, labels learned; IG: 1000 steps, 1 seed."
    )
    return lines


# ---------------------------------------------------------------- resnet


VARIANTS = {  # how IG continues from the git estimate (chosen on tuning photos: --photos tuning)
    "ig + init git": {},
    "ig + init git, lr 0.01": {"lr": 0.01},
    "ig + init git, lr 0.01, prior 10": {"lr": 0.01, "inverter_prior": 10.0},
}


def _resnet_inverter(args: argparse.Namespace, template: UpdateFile, train_images) -> tuple:  # noqa: ANN001
    """Train the ResNet-18 git inverter, or reuse the file an earlier run saved (same settings)."""
    saved = GRIDS / f"resnet18-b{args.batch}-p{args.pairs}-e{args.epochs}-git.safetensors"
    if saved.exists() and not SMOKE:
        stored = load_inverter(saved)
        return stored, saved, stored.training.get("seconds", 0.0)
    pairs = 20 if SMOKE else args.pairs
    config = TrainInverterSettings(arch="git", pairs=pairs, epochs=args.epochs, patience=3)
    result = train_inverter(template, train_images, None, config, progress=False)
    save_inverter(saved, result.inverter, template, result.summary)  # not committed (40 MB)
    return as_file(result, template), saved, result.summary["seconds"]


def part_resnet(args: argparse.Namespace) -> str:
    model, spec, spec_in = client("resnet18")
    data = corpus("patches")
    train_images, _ = data["train"]
    b = args.batch
    template = update_of(model, spec, spec_in, train_images[:b], torch.arange(b))
    inverter, saved, train_seconds = _resnet_inverter(args, template, train_images)
    summary = inverter.training
    photos = data["photos"][0] if args.photos == "validation" else tuning_photos()
    photos = photos[: b if SMOKE else args.count]
    labels = labels_for(photos, None, seed=11)
    checkpoints = (2, 5, 10, 20) if SMOKE else (10, 100, 300, 1000)
    names = ["ig", *[v for v in args.variants.split(";") if v]]
    curves: dict[str, list[list[tuple[float, float]]]] = {n: [] for n in names}
    finals: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    direct_scores = []
    for i in range(photos.shape[0] // b):
        batch = slice(i * b, (i + 1) * b)
        update = update_of(model, spec, spec_in, photos[batch], labels[batch], seed=i)
        x_git, _ = estimate(inverter, update)
        direct_scores.append(score(x_git, photos[batch]))
        for name in names:
            extra = (
                {} if name == "ig" else {"init": "git", "inverter": str(saved), **VARIANTS[name]}
            )
            seen: list[tuple[float, float]] = []

            def record(engine, progress, truth=photos[batch], seen=seen) -> None:  # noqa: ANN001
                if progress.iteration in checkpoints:
                    _, p, s = score(engine.pixels()[0], truth)
                    seen.append((p, s))

            attack = preset("ig", iterations=checkpoints[-1], seeds=1, **extra)
            out = run_attack(update, None, attack, progress=False, on_iteration=record).images
            curves[name].append(seen)
            finals[name].append(out)
            print(name, i, seen, flush=True)
    lines = [
        f"# IG from noise vs IG started at the GIT estimate (ResNet-18, batch {b}, eval, 32 px, "
        f"{args.photos} photos)",
        "",
        f"Written by `benchmarks/git_inverter.py --part resnet --batch {b} --pairs {args.pairs} "
        f"--epochs {args.epochs} --photos {args.photos}`. Inverter: `git` trained on "
        f"{summary['pairs']} pairs of patches32 crops 0 … 2699 ({summary['epochs_run']} epochs, "
        f"best {summary['best_epoch']}, {train_seconds:.0f} s including "
        f"{summary['pair_seconds']:.0f} s of pairs); scored on the first {photos.shape[0]} "
        f"{args.photos} photographs. IG: the `ig` preset with one seed (nothing is selected); "
        "the iteration columns are the same run's current image.",
        "",
        "| attack | " + " | ".join(f"PSNR / SSIM @{c}" for c in checkpoints) + " |",
        "|---|" + "---|" * len(checkpoints),
    ]
    mean_direct = [sum(s[k] for s in direct_scores) / len(direct_scores) for k in range(3)]
    lines.append(
        row(
            ["git direct (0 iterations)", f"{mean_direct[1]:.2f} / {mean_direct[2]:.3f}"]
            + ["" for _ in checkpoints[1:]]
        )  # fmt: skip
    )
    for name, runs in curves.items():
        cells = [name]
        for k in range(len(checkpoints)):
            p = sum(r[k][0] for r in runs) / len(runs)
            s = sum(r[k][1] for r in runs) / len(runs)
            cells.append(f"{p:.2f} / {s:.3f}")
        lines.append(row(cells))
    for index, name in enumerate(names):
        recon = torch.cat(finals[name])
        grid = GRIDS / f"resnet-b{b}-{args.photos}-{index}.png"
        save_grid(photos[: len(recon)], recon, [""] * len(recon), grid)
    lines += [
        "",
        f"Grids: results/git/resnet-b{b}-{args.photos}-N.png (N: the row, 0 = ig).",
        f"Machine: {machine(args.threads)}.",
    ]
    return "\n".join(lines)


def tuning_photos() -> torch.Tensor:
    """The tuning photographs of samples/images32 (samples/splits.json)."""
    names = json.loads((SAMPLES / "splits.json").read_text())["images32"]["tuning"]
    return load_images([SAMPLES / "images32" / n for n in names])[0]


# ---------------------------------------------------------------- drift


def part_drift(args: argparse.Namespace) -> str:
    model, spec, spec_in = client("lenet")
    data = corpus("patches")
    train_images, _ = data["train"]
    template = update_of(model, spec, spec_in, train_images[:1], torch.tensor([0]))
    pairs = 40 if SMOKE else 2430
    config = TrainInverterSettings(arch="git", pairs=pairs, epochs=args.epochs, patience=5)
    inverter = as_file(
        train_inverter(template, train_images, None, config, progress=False), template
    )
    digits = corpus("digits")["train"]
    images, _ = data["test"]
    images = images[: 2 if SMOKE else 100]
    labels = labels_for(images, None, seed=11)
    lines = [
        "# Parameter discrepancy: a LeNet `git` inverter of round-0 weights on drifted models",
        "",
        f"Written by `benchmarks/git_inverter.py --part drift --epochs {args.epochs}`. The "
        "global model takes S local SGD steps (lr 0.1, batch 8) on digits before the client "
        "computes its gradient on 100 patches32 test crops.",
        "",
        "| SGD steps | relative distance | MSE (drifted weights) | PSNR | MSE (template weights) "
        "| PSNR |",
        "|---|---|---|---|---|---|",
    ]
    from gradinvert.inverter.apply import parameter_discrepancy

    for steps in (0, 1, 10, 100):
        drifted = build_model(spec, init_seed=0).eval()
        for step in range(steps):
            idx = torch.arange(8 * step, 8 * step + 8) % digits[0].shape[0]
            x = spec_in.normalize(digits[0][idx])
            local_sgd_delta(drifted, x, digits[1][idx], [torch.arange(8)], 0.1)
        updates = [
            update_of(drifted, spec, spec_in, images[i : i + 1], labels[i : i + 1], seed=i)
            for i in range(images.shape[0])
        ]
        distance = parameter_discrepancy(template, updates[0])
        with_drift = score(direct(inverter, updates), images)
        fixed = []
        for update in updates:
            stale = UpdateFile(**{**update.__dict__, "params": template.params})
            fixed.append(estimate(inverter, stale)[0])
        stale_scores = score(torch.cat(fixed), images)
        lines.append(
            row(
                [
                    steps,
                    f"{distance:.3g}",
                    f"{with_drift[0]:.4f}",
                    f"{with_drift[1]:.2f}",
                    f"{stale_scores[0]:.4f}",
                    f"{stale_scores[1]:.2f}",
                ]
            )  # fmt: skip
        )
        print(lines[-1], flush=True)
    lines += ["", f"Machine: {machine(args.threads)}."]
    return "\n".join(lines)


# ---------------------------------------------------------------- corpus


def part_corpus(args: argparse.Namespace) -> str:
    """The LeNet inverter trained on the four-photo patches, the nine-photo corpus and both."""
    client_model = client("lenet")
    model, spec, spec_in = client_model
    patches, wide = corpus("patches"), corpus("corpus")
    tests = {
        "patches32 test (300)": patches["test"][0],
        "corpus32 test (300)": wide["test"][0],
        "validation photos (7)": wide["photos"][0],
        "validation32 (300)": folder_images("validation32"),
    }
    trainings = {
        "patches32 (4 photos)": patches["train"][0],
        "corpus32 (9 photos)": wide["train"][0],
        "both (9 photos)": torch.cat([patches["train"][0], wide["train"][0]]),
    }
    lines = [
        "# LeNet `git` inverter, batch 1: trained on four photographs or on nine",
        "",
        f"Written by `benchmarks/git_inverter.py --part corpus --epochs {args.epochs} --threads "
        f"{args.threads}` (see its docstring). Every inverter: `train_inverter` (what "
        f"`train-inverter` runs) with `--arch git`, all pairs of its training crops (90 % "
        f"train, 10 % its own validation), {args.epochs} epochs at most, patience 5, random "
        "labels, the template = DLG's sigmoid LeNet seeded 0 at ImageNet normalization. Scores: "
        "one forward pass; MSE on [0, 1] pixels, PSNR and SSIM per image, mean. The test crops "
        "are held-out crops of the training photographs (tuning); validation photos and "
        "validation32 are crops of chelsea and retina only (never trained or tuned on).",
        "",
        "| trained on | pairs | epochs (best) | train time (s) | test set | MSE | PSNR (dB) "
        "| SSIM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for index, (name, train_images) in enumerate(trainings.items()):
        template = update_of(model, spec, spec_in, train_images[:1], torch.tensor([0]))
        count = 40 if SMOKE else int(train_images.shape[0] * 0.9)
        config = TrainInverterSettings(arch="git", pairs=count, epochs=args.epochs, patience=5)
        started = time.perf_counter()
        result = train_inverter(template, train_images, None, config, progress=False)
        seconds = time.perf_counter() - started
        inverter = as_file(result, template)
        summary = result.summary
        for split, images in tests.items():
            images, recon, (mse, p, s) = direct_scores(client_model, inverter, images, None)
            lines.append(
                row(
                    [
                        name,
                        count,
                        f"{summary['epochs_run']} ({summary['best_epoch']})",
                        f"{seconds:.0f}",
                        split,
                        f"{mse:.4f}",
                        f"{p:.2f}",
                        f"{s:.3f}",
                    ]
                )  # fmt: skip
            )
            print(lines[-1], flush=True)
            if split.startswith("validation") and not SMOKE:  # keep the real grids
                tag = "photos" if "photos" in split else "validation32"
                grid = GRIDS / f"corpus-{index}-{tag}.png"
                save_grid(images[:16], recon[:16], [""] * len(recon[:16]), grid)
    lines += [
        "",
        "Grids: results/git/corpus-N-photos.png and corpus-N-validation32.png (N: the training "
        "set, 0 = patches32, 1 = corpus32, 2 = both; originals over estimates).",
        f"Machine: {machine(args.threads)}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("lenet", "resnet", "drift", "corpus"), required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--mlp-epochs", type=int, default=10, help="lenet: epochs of the (5× costlier) MLP"
    )
    parser.add_argument("--pairs", type=int, default=1000, help="resnet: training pairs")
    parser.add_argument("--batch", type=int, default=1, help="resnet: the client's batch size")
    parser.add_argument("--photos", choices=("validation", "tuning"), default="validation")
    parser.add_argument("--count", type=int, default=4, help="resnet: photographs scored")
    parser.add_argument(
        "--variants", default="ig + init git", help=f"resnet: ';'-separated of {list(VARIANTS)}"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = parser.parse_args()
    global SMOKE
    SMOKE = args.smoke
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    GRIDS.mkdir(parents=True, exist_ok=True)
    parts = {"lenet": part_lenet, "resnet": part_resnet, "drift": part_drift}
    text = {**parts, "corpus": part_corpus}[args.part](args)
    if SMOKE:
        print(text)
        return
    suffix = ""
    if args.part == "resnet":
        suffix = (f"_b{args.batch}" if args.batch > 1 else "") + (
            "_tuning" if args.photos == "tuning" else ""
        )
    write_result(text, RESULTS / f"git_{args.part}{suffix}.md")


if __name__ == "__main__":
    main()
