"""Score a reconstructed batch against the ground truth (the `gradinvert evaluate` library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gradinvert.io.files import BatchFile, UpdateFile
from gradinvert.metrics.iip import identified, penultimate_features
from gradinvert.metrics.labels import label_accuracy
from gradinvert.metrics.matching import (
    MATCH_METHODS,
    Matching,
    assign,
    identity_matching,
    pairwise_mse,
)
from gradinvert.metrics.perceptual import LpipsScorer, resolve_lpips
from gradinvert.metrics.psnr import MSE_FLOOR, PSNR_CAP_DB, mse, psnr_from_mse
from gradinvert.metrics.registration import registered_psnr
from gradinvert.metrics.ssim import WIN_SIZE, ssim
from gradinvert.models.trust import UntrustedCodeError
from gradinvert.runtime.errors import InvalidInputError, UsageError


def _check_images(images: torch.Tensor, what: str) -> None:
    if images.ndim != 4:
        raise InvalidInputError(f"{what}: expected N×C×H×W images, got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise InvalidInputError(f"{what}: images contain NaN or infinite values")


def _stats(values: list[float], indices: list[int], higher_is_better: bool) -> dict[str, Any]:
    """mean/max/min plus the row index of the best (most leaked) and worst reconstruction."""
    tensor = torch.tensor(values, dtype=torch.float64)
    hi, lo = int(tensor.argmax()), int(tensor.argmin())
    best, worst = (hi, lo) if higher_is_better else (lo, hi)
    return {
        "mean": float(tensor.mean()),
        "max": float(tensor.max()),
        "min": float(tensor.min()),
        "best_index": indices[best],
        "worst_index": indices[worst],
    }


def _match(
    method: str, recon: torch.Tensor, truth: torch.Tensor, scorer: LpipsScorer | None
) -> Matching:
    if method == "none":
        return identity_matching(recon.shape[0], truth.shape[0])
    if method == "lpips":
        assert scorer is not None
        return assign(scorer.pairwise(recon, truth), "lpips")
    return assign(pairwise_mse(recon, truth), "mse")


def _model_features(update: UpdateFile, device: torch.device, *batches: torch.Tensor) -> list:
    """Penultimate features of each batch under the attacked model rebuilt from ``update``."""
    from gradinvert.models.restore import model_from_update

    shape = tuple(update.input.shape)
    for batch in batches:
        if tuple(batch.shape[1:]) != shape:
            raise InvalidInputError(
                f"images are {tuple(batch.shape[1:])} but the update's model takes {shape}"
            )
    model = model_from_update(update, device)
    return [
        penultimate_features(model, update.input.normalize(b.to(device, torch.float32)))
        for b in batches
    ]


def evaluate_batches(
    recon: BatchFile,
    truth: BatchFile,
    match: str = "mse",
    lpips: str | None = "auto",
    lpips_weights: Path | None = None,
    pool: torch.Tensor | None = None,
    update: UpdateFile | None = None,
    *,
    device: torch.device | str = "cpu",
    lpips_scorer: LpipsScorer | None = None,
) -> dict[str, Any]:
    """Match reconstructions to originals and score them (see README, "evaluate").

    ``lpips`` is auto (AlexNet when its weights are available, else null with a warning),
    alex/vgg (required: UnavailableError when the backbone is missing) or off/None.
    ``lpips_scorer`` replaces that lookup with a ready scorer. ``pool`` holds extra real images
    (N×C×H×W in [0, 1], same size as the truth) for IIP; ``update`` adds IIP in the attacked
    model's penultimate feature space. Returns the JSON document: per-image rows, summary,
    the matching used and any warnings.
    """
    if match not in MATCH_METHODS:
        raise UsageError(f"--match must be one of {', '.join(MATCH_METHODS)}, got {match!r}")
    device = torch.device(device)
    _check_images(recon.images, "reconstruction")
    _check_images(truth.images, "truth")
    if recon.images.shape[1:] != truth.images.shape[1:]:
        raise InvalidInputError(
            f"reconstruction images are {tuple(recon.images.shape[1:])} but the truth images are "
            f"{tuple(truth.images.shape[1:])}"
        )
    if pool is not None:
        _check_images(pool, "pool")
        if pool.shape[1:] != truth.images.shape[1:]:
            raise InvalidInputError(
                f"pool images are {tuple(pool.shape[1:])}, the truth images "
                f"{tuple(truth.images.shape[1:])}"
            )
    notes: list[str] = []
    scorer = lpips_scorer
    if scorer is None:
        scorer, warning = resolve_lpips(lpips, lpips_weights, device, required=match == "lpips")
        if warning:
            notes.append(warning)
    if match == "lpips" and scorer is None:
        raise UsageError("--match lpips needs LPIPS, which is off")

    r_all = recon.images.to(device, torch.float64)
    t_all = truth.images.to(device, torch.float64)
    matching = _match(match, r_all, t_all, scorer)
    if matching.unmatched_recon or matching.unmatched_truth:
        notes.append(
            f"{recon.images.shape[0]} reconstructions for {truth.images.shape[0]} originals: "
            f"{len(matching.recon_index)} pairs scored"
        )
    ri, ti = matching.recon_index, matching.truth_index
    r, t = r_all[ri], t_all[ti]

    errors = mse(r, t)
    psnr_values = psnr_from_mse(errors).tolist()
    reg_values, alignments = registered_psnr(r, t)
    ssim_values: list[float] | None = None
    if min(r.shape[-2:]) >= WIN_SIZE:
        ssim_values = ssim(r, t).tolist()
    else:
        notes.append(f"SSIM needs images of at least {WIN_SIZE} px; reported as null")
    lpips_values = scorer.distance(r, t).tolist() if scorer is not None else None

    recon_labels, truth_labels = recon.labels.tolist(), truth.labels.tolist()
    label_ok = [recon_labels[i] == truth_labels[j] for i, j in zip(ri, ti, strict=True)]

    pool_images = t_all if pool is None else torch.cat([t_all, pool.to(device, torch.float64)])
    hits: dict[str, list[bool]] = {"pixels": identified(r, pool_images, ti)}
    if update is not None:
        try:
            r_feat, p_feat = _model_features(update, device, r, pool_images)
            hits["penultimate"] = identified(r_feat, p_feat, ti)
        except UntrustedCodeError:
            raise  # a refusal, not a model that does not fit: the user must decide
        except InvalidInputError as exc:
            notes.append(f"penultimate-feature IIP skipped: {exc.message}")

    rows = []
    for k, (i, j) in enumerate(zip(ri, ti, strict=True)):
        rows.append(
            {
                "index": i,
                "truth_index": j,
                "label": recon_labels[i],
                "truth_label": truth_labels[j],
                "label_ok": label_ok[k],
                "mse": float(errors[k]),
                "psnr": psnr_values[k],
                "psnr_registered": float(reg_values[k]),
                "registration": alignments[k].to_dict(),
                "ssim": None if ssim_values is None else ssim_values[k],
                "lpips": None if lpips_values is None else lpips_values[k],
                "identified": {space: h[k] for space, h in hits.items()},
            }
        )
    iip_spaces = {space: (sum(h) / len(h) if h else 0.0) for space, h in hits.items()}
    summary: dict[str, Any] = {"count": len(rows)}
    if rows:
        summary.update(
            {
                "psnr": _stats(psnr_values, ri, True),
                "psnr_registered": _stats(reg_values.tolist(), ri, True),
                "ssim": None if ssim_values is None else _stats(ssim_values, ri, True),
                "lpips": None if lpips_values is None else _stats(lpips_values, ri, False),
            }
        )
    else:
        summary.update({"psnr": None, "psnr_registered": None, "ssim": None, "lpips": None})
    summary.update(
        {
            "label_acc": label_accuracy(recon_labels, truth_labels),
            "label_acc_matched": sum(label_ok) / len(label_ok) if label_ok else 0.0,
            "iip": iip_spaces["pixels"],
            "iip_spaces": iip_spaces,
        }
    )
    return {
        "images": rows,
        "summary": summary,
        "matching": matching.method,
        "unmatched_recon": matching.unmatched_recon,
        "unmatched_truth": matching.unmatched_truth,
        "lpips_net": None if scorer is None else scorer.net,
        "iip_pool_size": int(pool_images.shape[0]),
        "psnr_cap_db": PSNR_CAP_DB,
        "mse_floor": MSE_FLOOR,
        "recon_count": int(recon.images.shape[0]),
        "truth_count": int(truth.images.shape[0]),
        "warnings": notes,
        **({} if update is None else _defense_of(update)),
    }


def _defense_of(update: UpdateFile) -> dict[str, Any]:
    """The attacked update's defenses and privacy budget, for the scores document."""
    from gradinvert.io.describe import members_of, privacy_lines

    return {
        "defense": update.defense,
        "privacy": privacy_lines(update.defense),
        "clients": len(members_of(update) or [None]),
    }
