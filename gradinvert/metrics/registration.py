"""Registered PSNR: score a reconstruction after aligning it to its own original.

Reconstructions are often right but shifted or mirrored. Each reconstruction is compared only
with the original it was matched to, under a few rigid transforms: identity, horizontal flip,
and for each of these the integer translation found by phase correlation (limited to a quarter
of the image side). Pixels that a shift uncovers are filled by replicating the edge, so every
candidate is compared over the full image. The best PSNR among the candidates is kept; it is
never below the plain PSNR because the identity is always a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradinvert.metrics._validate import check_pair
from gradinvert.metrics.psnr import MSE_FLOOR, psnr_from_mse

HIGHER_IS_BETTER = True


@dataclass
class Alignment:
    """The transform applied to a reconstruction: optional flip, then a shift (rows, cols)."""

    flip: bool
    shift: tuple[int, int]

    def to_dict(self) -> dict[str, object]:
        return {"flip": self.flip, "shift": list(self.shift)}


def translate(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift a C×H×W image down by ``dy`` and right by ``dx``, replicating the edge."""
    h, w = image.shape[-2:]
    rows = (torch.arange(h, device=image.device) - dy).clamp(0, h - 1)
    cols = (torch.arange(w, device=image.device) - dx).clamp(0, w - 1)
    return image.index_select(-2, rows).index_select(-1, cols)


def phase_correlation_shift(
    reference: torch.Tensor, moving: torch.Tensor, max_shift: int | None = None
) -> tuple[int, int]:
    """Integer shift (dy, dx) such that ``moving`` shifted by it best matches ``reference``.

    Both are C×H×W; channels are averaged. Peaks farther than ``max_shift`` are ignored.
    """
    ref = reference.mean(dim=0)
    mov = moving.mean(dim=0)
    ref = ref - ref.mean()
    mov = mov - mov.mean()
    cross = torch.fft.fft2(ref) * torch.conj(torch.fft.fft2(mov))
    corr = torch.fft.ifft2(cross / (cross.abs() + 1e-12)).real
    h, w = corr.shape
    dys = torch.arange(h, device=corr.device)
    dxs = torch.arange(w, device=corr.device)
    dys = torch.where(dys > h // 2, dys - h, dys)  # wrap to signed shifts
    dxs = torch.where(dxs > w // 2, dxs - w, dxs)
    if max_shift is not None:
        allowed = (dys.abs() <= max_shift)[:, None] & (dxs.abs() <= max_shift)[None, :]
        corr = torch.where(allowed, corr, torch.full_like(corr, -torch.inf))
    peak = int(torch.argmax(corr))
    return int(dys[peak // w]), int(dxs[peak % w])


def align(recon: torch.Tensor, original: torch.Tensor) -> tuple[torch.Tensor, Alignment, float]:
    """Best-aligned version of one C×H×W reconstruction, its transform and its MSE."""
    max_shift = min(original.shape[-2:]) // 4
    best: tuple[torch.Tensor, Alignment, float] | None = None
    for flip in (False, True):
        candidate = recon.flip(-1) if flip else recon
        shifts = {(0, 0), phase_correlation_shift(original, candidate, max_shift)}
        for dy, dx in sorted(shifts):
            moved = translate(candidate, dy, dx)
            error = float((moved - original).pow(2).mean())
            if best is None or error < best[2]:
                best = (moved, Alignment(flip, (dy, dx)), error)
    assert best is not None
    return best


def registered_psnr(
    recon: torch.Tensor, truth: torch.Tensor, mse_floor: float = MSE_FLOOR
) -> tuple[torch.Tensor, list[Alignment]]:
    """PSNR of recon[i] against truth[i] after alignment, and the alignment used, per image
    (float64 values on the images' device, as :func:`~gradinvert.metrics.psnr.psnr`)."""
    recon, truth = check_pair(recon, truth)
    errors, alignments = [], []
    for r, t in zip(recon, truth, strict=True):
        _, alignment, error = align(r, t)
        errors.append(error)
        alignments.append(alignment)
    errors_tensor = torch.tensor(errors, dtype=torch.float64, device=recon.device)
    values = psnr_from_mse(errors_tensor, mse_floor=mse_floor)
    return values, alignments
