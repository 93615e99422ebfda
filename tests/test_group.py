"""Group consistency: registration by phase correlation, slot matching, consensus and targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gradinvert.invert.group import (
    REGISTRATIONS,
    align_slots,
    consensus,
    group_targets,
)
from gradinvert.invert.registration import Warp, min_shift_mse, phase_correlation, register
from gradinvert.io.images import load_images

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "images32"
NOISE = 0.05


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    images, _ = load_images([SAMPLES])
    return images


def roll(image: torch.Tensor, shift: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Reference warp for one C×H×W image, built from torch.flip and torch.roll."""
    if flip:
        image = torch.flip(image, dims=(-1,))
    return torch.roll(image, shifts=(int(shift[0]), int(shift[1])), dims=(-2, -1))


def random_warps(generator: torch.Generator, shape: tuple[int, ...], max_shift: int) -> Warp:
    shift = torch.randint(-max_shift, max_shift + 1, (*shape, 2), generator=generator)
    flip = torch.rand(shape, generator=generator) < 0.5
    return Warp(shift, flip)


def make_group(
    photos: torch.Tensor,
    seeds: int,
    slots: int,
    *,
    permute: bool = True,
    max_shift: int = 0,
    flips: bool = False,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeds as permuted, warped, noisy copies of one batch; seed 0 is the batch itself + noise.

    Returns the candidates, ``truth[g, i]`` (the batch member seed g's slot i shows) and the clean
    images in each candidate's own frame.
    """
    generator = torch.Generator().manual_seed(seed)
    batch = photos[:slots]
    truth = torch.stack(
        [
            torch.randperm(slots, generator=generator) if permute and g else torch.arange(slots)
            for g in range(seeds)
        ]
    )
    warps = random_warps(generator, (seeds, slots), max_shift)
    flip = warps.flip & flips
    flip[0] = False
    shift = warps.shift.clone()
    shift[0] = 0
    own = torch.stack(
        [
            torch.stack(
                [roll(batch[truth[g, i]], shift[g, i], bool(flip[g, i])) for i in range(slots)]
            )
            for g in range(seeds)
        ]
    )
    noise = NOISE * torch.randn(own.shape, generator=generator)
    return own + noise, truth, own


def test_warp_matches_roll_flip_and_inverts(photos: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(1)
    images = photos[:6].reshape(2, 3, *photos.shape[1:])
    warps = random_warps(generator, (2, 3), max_shift=40)
    warped = warps.apply(images)
    for g in range(2):
        for i in range(3):
            expected = roll(images[g, i], warps.shift[g, i], bool(warps.flip[g, i]))
            assert torch.equal(warped[g, i], expected)
    assert torch.equal(warps.inverse().apply(warped), images)
    with pytest.raises(ValueError, match="warps for batch"):
        warps.apply(photos[:6])


@pytest.mark.parametrize("whitening", [1.0, 0.5])
def test_phase_correlation_recovers_integer_circular_shifts(
    photos: torch.Tensor, whitening: float
) -> None:
    height, width = photos.shape[-2:]
    generator = torch.Generator().manual_seed(2)
    # Signed range (-H/2, H/2], as reported.
    shifts = torch.stack(
        [
            torch.randint(-height // 2 + 1, height // 2 + 1, (len(photos),), generator=generator),
            torch.randint(-width // 2 + 1, width // 2 + 1, (len(photos),), generator=generator),
        ],
        dim=1,
    )
    moving = torch.stack([roll(img, -s) for img, s in zip(photos, shifts, strict=True)])
    found = phase_correlation(moving, photos, whitening)
    assert torch.equal(found, shifts)


def test_register_recovers_flips_and_shifts(photos: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(3)
    warps = random_warps(generator, (len(photos),), max_shift=10)
    assert 0 < int(warps.flip.sum()) < len(photos)
    moving = warps.inverse().apply(photos)
    found = register(moving, photos, allow_flip=True)
    assert torch.equal(found.flip, warps.flip)
    assert torch.equal(found.shift, warps.shift)
    assert torch.equal(found.apply(moving), photos)
    assert not register(moving, photos, allow_flip=False).flip.any()


@pytest.mark.parametrize("allow_flip", [False, True])
def test_min_shift_mse_matches_brute_force(allow_flip: bool) -> None:
    generator = torch.Generator().manual_seed(4)
    a = torch.rand(4, 2, 6, 5, generator=generator)
    b = torch.rand(3, 2, 6, 5, generator=generator)
    expected = torch.full((4, 3), float("inf"))
    for i in range(4):
        for j in range(3):
            for flip in [False, True] if allow_flip else [False]:
                for dy in range(6):
                    for dx in range(5):
                        moved = roll(a[i], torch.tensor([dy, dx]), flip)
                        mse = (moved - b[j]).square().mean()
                        expected[i, j] = min(expected[i, j], mse)
    assert torch.allclose(min_shift_mse(a, b, allow_flip), expected, atol=1e-5)


def assert_slots_recovered(perm: torch.Tensor, truth: torch.Tensor) -> None:
    """perm[g, i] must be one fixed consensus slot per batch member, the same for every seed."""
    slots = truth.shape[1]
    assert torch.equal(perm.sort(dim=1).values, torch.arange(slots).expand_as(perm))
    slot_of_member = torch.empty(slots, dtype=torch.long)
    slot_of_member[truth[0]] = perm[0]
    assert torch.equal(perm, slot_of_member[truth])


@pytest.mark.parametrize(
    ("registration", "max_shift", "flips"),
    [("none", 0, False), ("translate", 8, False), ("translate-flip", 8, True)],
)
def test_align_slots_recovers_permutations(
    photos: torch.Tensor, registration: str, max_shift: int, flips: bool
) -> None:
    candidates, truth, _ = make_group(photos, 5, 8, max_shift=max_shift, flips=flips)
    perm = align_slots(candidates, registration=registration)
    assert_slots_recovered(perm, truth)


def test_registered_consensus_beats_plain_mean(photos: torch.Tensor) -> None:
    seeds, slots = 6, 6
    shifted, _, _ = make_group(photos, seeds, slots, permute=False, max_shift=6)
    flipped, _, _ = make_group(photos, seeds, slots, permute=False, max_shift=6, flips=True)
    identity = torch.arange(slots).repeat(seeds, 1)
    truth = photos[:slots]
    noise_floor = NOISE**2 / seeds  # error of a perfectly registered average

    def error(images: torch.Tensor) -> float:
        return float((images - truth).square().mean())

    lazy = error(shifted.mean(0))
    registered = error(consensus(shifted, identity, "translate"))
    assert registered < 1.5 * noise_floor
    assert registered < lazy / 5
    lazy_flipped = error(flipped.mean(0))
    registered_flipped = error(consensus(flipped, identity, "translate-flip"))
    assert registered_flipped < 1.5 * noise_floor
    assert registered_flipped < lazy_flipped / 5
    # Shifts alone cannot undo the flips.
    assert error(consensus(flipped, identity, "translate")) > 3 * registered_flipped


def test_targets_sit_in_each_candidates_own_frame(photos: torch.Tensor) -> None:
    candidates, _, own = make_group(photos, 5, 6, max_shift=6, flips=True, seed=5)
    targets = group_targets(candidates, "translate-flip")
    assert targets.shape == candidates.shape
    per_image = (targets - own).square().flatten(2).mean(-1)
    assert float(per_image.max()) < 2 * NOISE**2 / 5
    # Seed 0 holds unwarped copies: its targets are the original images.
    assert torch.allclose(targets[0], photos[:6], atol=4 * NOISE)
    assert float((targets[0] - photos[:6]).square().mean()) < 2 * NOISE**2 / 5


def test_registration_none_is_plain_mean_after_slot_alignment(photos: torch.Tensor) -> None:
    candidates, _, _ = make_group(photos, 4, 6, max_shift=2, seed=6)
    perm = align_slots(candidates)
    expected = torch.zeros(6, *candidates.shape[2:])
    for g in range(4):
        for i in range(6):
            expected[perm[g, i]] += candidates[g, i] / 4
    assert torch.allclose(consensus(candidates, perm, "none"), expected, atol=1e-6)
    targets = group_targets(candidates, "none")
    for g in range(4):
        for i in range(6):
            assert torch.allclose(targets[g, i], expected[perm[g, i]], atol=1e-6)


@pytest.mark.parametrize("registration", REGISTRATIONS)
def test_single_seed_returns_the_candidates(photos: torch.Tensor, registration: str) -> None:
    candidates = photos[None, :5].clone().requires_grad_(True)
    targets = group_targets(candidates, registration)
    assert not targets.requires_grad
    assert torch.equal(targets, photos[None, :5])
    assert torch.equal(align_slots(candidates, registration=registration), torch.arange(5)[None])


def test_same_input_same_targets(photos: torch.Tensor) -> None:
    candidates, _, _ = make_group(photos, 3, 4, max_shift=4, flips=True, seed=7)
    assert torch.equal(group_targets(candidates), group_targets(candidates.clone()))


def test_bad_arguments_raise_value_error(photos: torch.Tensor) -> None:
    candidates = photos[:4].reshape(2, 2, *photos.shape[1:])
    message = r"unknown registration 'affine': choose one of none, translate, translate-flip"
    with pytest.raises(ValueError, match=message):
        group_targets(candidates, "affine")
    with pytest.raises(ValueError, match=message):
        consensus(candidates, torch.zeros(2, 2, dtype=torch.long), "affine")
    with pytest.raises(ValueError, match=message):
        align_slots(candidates, registration="affine")
    with pytest.raises(ValueError, match="K×N×C×H×W"):
        group_targets(photos[:4])
    with pytest.raises(ValueError, match="permutation"):
        consensus(candidates, torch.zeros(2, 2, dtype=torch.long), "none")


@pytest.mark.cuda  # skipped where torch sees no CUDA (tests/conftest.py)
def test_cuda_matches_cpu(photos: torch.Tensor) -> None:
    candidates, _, _ = make_group(photos, 4, 6, max_shift=6, flips=True, seed=8)
    for registration in REGISTRATIONS:
        on_gpu = group_targets(candidates.cuda(), registration)
        assert on_gpu.device.type == "cuda"
        assert torch.allclose(on_gpu.cpu(), group_targets(candidates, registration), atol=1e-5)
