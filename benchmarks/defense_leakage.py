"""The leakage–privacy table: how much an attack recovers through the defenses deployments use,
with and without ``--adapt-defense`` (issue 22).

    python benchmarks/defense_leakage.py [--iterations 500] [--batches 1,4,8]
        [--corpora digits,photos] [--seeds 0,1] [--threads 1] [--victim-epochs 0]
        [--out benchmarks/results/defense_leakage]

    # the trained victim's table:
    python benchmarks/defense_leakage.py --victim-epochs 3 --corpora digits --batches 1,4 \
        --out benchmarks/results/defense_leakage_trained

Data (DESIGN.md §8, validation only, never tuned on): digits = samples/digits32 1400 … 1499;
photos = the validation list of samples/images32 (7 crops of the held-out photographs, so photos
run at batch 1 and 4, and secure aggregation only where M·B ≤ 7). Every condition of a corpus
and batch size attacks the same first images (M clients: the first M·B, consecutive batches).

Victim: an untrained LeNet (DLG's: sigmoid convolutions, no normalization layer, so DP-SGD's
per-example clipping applies as is), init seed 0, 32 px, 10 classes, normalization
mean = std = 0.5, one FedSGD gradient of the mean cross-entropy (client seed 0; client i of an
aggregate seed i; with ``--seeds``, seed s shifts every client seed by s). LeNet because the
2-core budget allows a few hundred iterations per run, and the ig attack gets far on it in that
budget (an untrained convnet-gn stayed near 9 dB).

Trained victim (``--victim-epochs E``): the same LeNet (init seed 0) trained for E epochs on the
tuning digits 0000-1399 with :func:`gradinvert.models.train_victim` (SGD, lr 0.05, momentum 0.9,
batch 32, seed 0; CIFAR normalization, which the capture then uses too), as an FL audit would
see the global model after E epochs of training — the attack gets the trained weights.

Defenses: none; DP-SGD with C = 1 and z ∈ {0, 0.1, 0.5, 1, 2} (ε from Opacus's RDP accountant
for the whole training: client dataset N = 1000, 100 rounds of one step, δ = 1e-5); secure
aggregation of M ∈ {2, 4, 10} clients; top-k keeping 10 % and 1 % (``--prune 0.9/0.99``);
signSGD; 8- and 4-bit stochastic quantization.

Attack: the ``ig`` preset (cosine distance, TV, Adam on the gradient's sign) with
``--iterations`` iterations and one restart seeded s, for every s of ``--seeds`` (the table shows
the mean over them and, for PSNR, the range: one run of this attack is chaotic, a float rounding
in the target can move its PSNR by several dB), labels restored from the update (``auto``),
adapted (``--adapt-defense``, the default) and not (``--no-adapt-defense``) where the defense
has a deterministic part (DP-SGD, top-k, sign); for noise-only parts (quantization) and secure
aggregation the two are the same run. Scores: PSNR and SSIM after Hungarian matching, label
accuracy (multiset). Results are written after every run to OUT.json (a rerun skips the
finished ones), then OUT.md and OUT_eps.png (leakage against ε).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, flat_own_colour, split_digits, split_photos  # noqa: E402

from gradinvert.client.capture import CaptureConfig, capture_clients, capture_update  # noqa: E402
from gradinvert.client.defenses import DefenseConfig  # noqa: E402
from gradinvert.client.dpsgd import DPConfig  # noqa: E402
from gradinvert.config import preset  # noqa: E402
from gradinvert.invert.attack import run_attack  # noqa: E402
from gradinvert.io.files import BatchFile  # noqa: E402
from gradinvert.metrics import evaluate_batches  # noqa: E402
from gradinvert.models import (  # noqa: E402
    NORMALIZATIONS,
    InputSpec,
    build_model,
    load_state,
    model_spec,
    read_state_dict,
)

DATASET_SIZE, ROUNDS, DELTA, CLIP = 1000, 100, 1e-5, 1.0
PHOTO_VALIDATION = 7


@dataclass(frozen=True)
class Condition:
    """One defense setting of the grid."""

    name: str
    family: str  # none | dp | secagg | topk | sign | quantize
    value: float = 0.0
    adaptable: bool = False
    dp: float | None = None
    clients: int = 1
    defense: dict[str, Any] = field(default_factory=dict)


CONDITIONS = [
    Condition("none", "none"),
    *(Condition(f"DP-SGD z={z:g}", "dp", z, True, dp=z) for z in (0.0, 0.1, 0.5, 1.0, 2.0)),
    *(Condition(f"SecAgg M={m}", "secagg", m, clients=m) for m in (2, 4, 10)),
    Condition("top-k 10%", "topk", 0.9, True, defense={"prune": 0.9}),
    Condition("top-k 1%", "topk", 0.99, True, defense={"prune": 0.99}),
    Condition("sign", "sign", 1, True, defense={"sign": True}),
    Condition("quantize 8 bit", "quantize", 8, defense={"quantize": 8}),
    Condition("quantize 4 bit", "quantize", 4, defense={"quantize": 4}),
]


def images_of(corpus: str, count: int) -> tuple[torch.Tensor, list[int]]:
    if corpus == "digits":
        return split_digits("validation", count)
    images, labels, _ = split_photos("validation", count)
    return images, labels


UNTRAINED_INPUT = InputSpec((3, 32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass(frozen=True)
class Victim:
    """The attacked LeNet: its input normalization and trained weights (None: the seeded init)."""

    input_spec: InputSpec = field(default_factory=lambda: UNTRAINED_INPUT)
    weights: Path | None = None
    epochs: int = 0


def trained_victim(epochs: int) -> Victim:
    """LeNet trained ``epochs`` epochs on the tuning digits (written once to build/)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples"))
    from train_victims import load_digits

    from gradinvert.models import VictimRecipe, train_victim

    recipe = VictimRecipe(arch="lenet", epochs=(epochs,), lr=0.05, normalize="cifar", threads=1)
    folder = Path(__file__).resolve().parents[1] / "build" / "victims-lenet"
    (checkpoint,) = train_victim(
        recipe,
        load_digits("prior_training"),
        folder,
        validation=load_digits("validation"),
        data="digits32",
    )
    mean, std = NORMALIZATIONS["cifar"]
    return Victim(InputSpec((3, 32, 32), mean, std), checkpoint.path, epochs)


def run_one(
    corpus: str,
    batch: int,
    condition: Condition,
    adapt: bool,
    iterations: int,
    seed: int = 0,
    victim: Victim | None = None,
) -> dict[str, Any]:
    victim = victim or Victim()
    clients = condition.clients
    images, labels = images_of(corpus, batch * clients)
    input_spec = victim.input_spec
    spec = model_spec("lenet", 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    if victim.weights is not None:
        load_state(model, read_state_dict(victim.weights), victim.weights)
    dp = None
    if condition.dp is not None:
        dp = DPConfig(CLIP, condition.dp, DATASET_SIZE, DELTA, ROUNDS)
    config = CaptureConfig(dp=dp, defense=DefenseConfig(**condition.defense), seed=seed)
    label_tensor = torch.tensor(labels)
    if clients > 1:
        update, _ = capture_clients(model, spec, input_spec, images, label_tensor, config, clients)
    else:
        update = capture_update(model, spec, input_spec, images, label_tensor, config)
    epsilon = None
    for entry in update.defense:
        if entry["name"] == "dp-sgd":
            epsilon = entry["accounting"]["epsilon"]
    attack = preset("ig", iterations=iterations, seeds=1, seed=seed, adapt_defense=adapt)
    start = time.perf_counter()
    recon = run_attack(update, None, attack, progress=False, log=lambda _message: None)
    seconds = time.perf_counter() - start
    scores = evaluate_batches(recon, BatchFile(images, label_tensor), lpips="off")
    summary = scores["summary"]
    return {
        "corpus": corpus,
        "batch": batch,
        "condition": condition.name,
        "family": condition.family,
        "value": condition.value,
        "clients": clients,
        "adapt": adapt,
        "seed": seed,
        "epsilon": epsilon,
        "psnr": summary["psnr"]["mean"],
        "ssim": summary["ssim"]["mean"] if summary["ssim"] else None,
        "label_acc": summary["label_acc"],
        "labels_method": recon.metadata["labels"]["method"],
        "adaptation": recon.metadata["defense_adaptation"],
        "seconds": round(seconds, 1),
    }


def _key(row: dict[str, Any]) -> str:
    return f"{row['corpus']}|{row['batch']}|{row['condition']}|{row['adapt']}|{row.get('seed', 0)}"


def plan(
    corpora: list[str], batches: list[int], seeds: list[int]
) -> list[tuple[str, int, Condition, bool, int]]:
    """Every run of the grid that the data allows, in the order they run (seed by seed)."""
    runs = []
    for seed in seeds:
        for corpus in corpora:
            for batch in batches:
                for condition in CONDITIONS:
                    if corpus == "photos" and batch * condition.clients > PHOTO_VALIDATION:
                        continue
                    for adapt in (True, False) if condition.adaptable else (True,):
                        runs.append((corpus, batch, condition, adapt, seed))
    return runs


def merged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting: the mean of its seeds' scores (and PSNR's min and max)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_key({**row, "seed": "*"}), []).append(row)
    out = []
    for group in groups.values():
        row = {**group[0], "seeds": len(group)}
        for metric in ("psnr", "ssim", "label_acc", "seconds"):
            values = [r[metric] for r in group if r[metric] is not None]
            row[metric] = sum(values) / len(values) if values else None
        row["psnr_range"] = (min(r["psnr"] for r in group), max(r["psnr"] for r in group))
        row["seed"] = "*"
        out.append(row)
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


def _psnr(row: dict[str, Any]) -> str:
    low, high = row["psnr_range"]
    spread = f" ({low:.1f}–{high:.1f})" if row["seeds"] > 1 else ""
    return f"{row['psnr']:.2f}{spread}"


def _epsilon(value: float | None, family: str) -> str:
    if family != "dp":
        return "–"
    return "∞" if value is None else f"{value:.3g}"


def flat_baseline(corpus: str, batch: int) -> float:
    """Mean PSNR of each image replaced by its own mean colour: what "nothing recovered" scores."""
    images, _ = images_of(corpus, batch)
    errors = (flat_own_colour(images) - images).square().flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / errors)).mean())


def table(rows: list[dict[str, Any]], header: str) -> str:
    index = {_key(r): r for r in rows}
    lines = [header, ""]
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    for corpus in corpora:
        for batch in sorted({r["batch"] for r in rows if r["corpus"] == corpus}):
            lines += [
                f"### {corpus}, batch {batch}",
                "",
                f"Reference: each image replaced by its own mean colour scores "
                f"{flat_baseline(corpus, batch):.2f} dB (first B images; SecAgg rows attack M·B).",
                "",
                "| defense | ε (δ = 1e-5) | PSNR adapted | PSNR as is | SSIM adapted | "
                "SSIM as is | label acc. adapted | label acc. as is | labels | s |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for condition in CONDITIONS:
                on = index.get(f"{corpus}|{batch}|{condition.name}|True|*")
                if on is None:
                    continue
                off = index.get(f"{corpus}|{batch}|{condition.name}|False|*", on)
                same = off is on and not condition.adaptable
                mark = " (same run)" if same and condition.family != "none" else ""
                lines.append(
                    f"| {condition.name} | {_epsilon(on['epsilon'], condition.family)} | "
                    f"{_psnr(on)} | {_psnr(off)}{mark} | {_fmt(on['ssim'], 3)} | "
                    f"{_fmt(off['ssim'], 3)} | {_fmt(on['label_acc'])} | "
                    f"{_fmt(off['label_acc'])} | {on['labels_method']} | "
                    f"{on['seconds']:.0f}+{0 if off is on else off['seconds']:.0f} |"
                )
            lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """PSNR against ε for the DP-SGD rows: one line per corpus × batch × adapted or not;
    no noise (ε = ∞) is drawn at the right edge."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    dp = [r for r in rows if r["family"] == "dp"]
    finite = [r["epsilon"] for r in dp if r["epsilon"] is not None]
    if not finite:
        return
    right = max(finite) * 10
    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=100)
    groups = sorted({(r["corpus"], r["batch"], r["adapt"]) for r in dp}, key=str)
    for corpus, batch, adapt in groups:
        points = sorted(
            (r["epsilon"] if r["epsilon"] is not None else right, r["psnr"])
            for r in dp
            if (r["corpus"], r["batch"], r["adapt"]) == (corpus, batch, adapt)
        )
        axis.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            linestyle="-" if adapt else "--",
            label=f"{corpus} B={batch}" + (" adapted" if adapt else " as is"),
        )
    axis.set_xscale("log")
    axis.axvline(right, color="grey", linewidth=0.5)
    axis.annotate("z = 0: clipping only, ε = ∞", (right, 0.02), xycoords=("data", "axes fraction"),
                  rotation=90, ha="right", va="bottom", fontsize=7, color="grey")  # fmt: skip
    axis.set_xlabel("ε at δ = 1e-5 (100 rounds, q = B/1000; right edge: no noise)")
    axis.set_ylabel("PSNR (dB), mean over the batch")
    axis.set_title("Leakage against the DP-SGD privacy budget (C = 1)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def victim_text(victim: Victim) -> str:
    """The victim, as the table's header names it."""
    if victim.weights is None:
        return "Untrained LeNet victims"
    from gradinvert.models import read_victim_info

    info = read_victim_info(victim.weights) or {}
    accuracy = info.get("val_accuracy")
    scored = f", {accuracy:.2f} accuracy on the validation digits" if accuracy is not None else ""
    return (
        f"A trained LeNet victim ({victim.epochs} epochs on the tuning digits 0000-1399{scored}; "
        f"CIFAR normalization; {victim.weights.name}, built by --victim-epochs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--corpora", default="digits,photos")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--victim-epochs", type=int, default=0, help="0: the untrained LeNet")
    parser.add_argument("--out", default=str(RESULTS / "defense_leakage"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store = out.with_suffix(".json")
    done: dict[str, dict[str, Any]] = {}
    if store.exists():
        saved = json.loads(store.read_text(encoding="utf-8"))
        if saved.get("iterations") == args.iterations and saved.get("victim_epochs", 0) == (
            args.victim_epochs
        ):
            done = {_key(r): r for r in saved["rows"]}
    victim = Victim()
    if args.victim_epochs > 0:
        victim = trained_victim(args.victim_epochs)
    batches = [int(b) for b in args.batches.split(",")]
    runs = plan(args.corpora.split(","), batches, [int(x) for x in args.seeds.split(",")])
    machine = (
        f"{platform.machine()} CPU, {args.threads} torch thread(s), torch {torch.__version__}, "
        "a machine shared with other jobs (times are indicative only)"
    )
    started = time.perf_counter()
    for number, (corpus, batch, condition, adapt, seed) in enumerate(runs, 1):
        key = f"{corpus}|{batch}|{condition.name}|{adapt}|{seed}"
        if key in done:
            continue
        row = run_one(corpus, batch, condition, adapt, args.iterations, seed, victim)
        done[key] = row
        print(
            f"[{number}/{len(runs)}] {key}: PSNR {row['psnr']:.2f}, labels "
            f"{row['label_acc']:.2f}, {row['seconds']:.0f}s "
            f"(total {time.perf_counter() - started:.0f}s)",
            flush=True,
        )
        document = {
            "iterations": args.iterations,
            "victim_epochs": args.victim_epochs,
            "machine": machine,
            "rows": list(done.values()),
        }
        store.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    rows = merged([done[f"{c}|{b}|{k.name}|{a}|{s}"] for c, b, k, a, s in runs])
    header = (
        "# Leakage through deployed defenses (benchmarks/defense_leakage.py)\n\n"
        f"{victim_text(victim)}, one FedSGD gradient, validation images only; "
        f"attack: the ig preset, {args.iterations} iterations, 1 restart, labels restored from the "
        f"update; mean over attack/client seeds {args.seeds} (PSNR: min–max in brackets). "
        f"DP-SGD: C = {CLIP:g}, ε for {ROUNDS} rounds at q = B/{DATASET_SIZE}, "
        f"δ = {DELTA:g} (Opacus RDP). Machine: {machine}. Columns: mean PSNR (dB) and SSIM over "
        "the batch after Hungarian matching, multiset label accuracy; 'adapted' = "
        "--adapt-defense (default), 'as is' = --no-adapt-defense; s = attack seconds."
    )
    text = table(rows, header)
    (out.parent / f"{out.name}.md").write_text(text, encoding="utf-8")
    plot(rows, out.parent / f"{out.name}_eps.png")
    print(text)


if __name__ == "__main__":
    main()
