"""The shipped prior-training corpora (digits32, patches32) and the tuning/validation split."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from samples_support import SAMPLES, load_make_samples

DIGITS = SAMPLES / "digits32"
PATCHES = SAMPLES / "patches32"


@pytest.fixture(scope="module")
def make_samples() -> ModuleType:
    return load_make_samples()


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    return datasets.load_digits()


def png_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.png"))


def test_digits_match_the_recipe_recomputed_from_load_digits(digits) -> None:
    labels = json.loads((DIGITS / "labels.json").read_text())
    for index in np.random.default_rng(8).choice(1500, size=20, replace=False):
        grey = np.round(digits.images[index] / 16 * 255).astype(np.uint8)
        small = Image.fromarray(grey).convert("L")
        expected = np.asarray(
            small.resize((32, 32), Image.Resampling.BILINEAR).convert("RGB"), dtype=np.uint8
        )
        with Image.open(DIGITS / f"{index:04d}.png") as shipped:
            assert shipped.mode == "RGB" and shipped.size == (32, 32)
            np.testing.assert_array_equal(np.asarray(shipped), expected)
        assert labels[f"{index:04d}.png"] == int(digits.target[index])


def test_digits_ship_indices_0_to_1499_only() -> None:
    assert png_names(DIGITS) == [f"{index:04d}.png" for index in range(1500)]
    assert sorted(path.name for path in DIGITS.iterdir()) == [*png_names(DIGITS), "labels.json"]
    labels = json.loads((DIGITS / "labels.json").read_text())
    assert sorted(labels) == png_names(DIGITS)
    assert all(isinstance(v, int) and 0 <= v <= 9 for v in labels.values())
    assert max(int(name.removesuffix(".png")) for name in labels) == 1499  # 1500+ reserved


def test_patches_are_3000_rgb_32px_images_with_labels(make_samples) -> None:
    names = png_names(PATCHES)
    assert names == [f"{index:05d}.png" for index in range(3000)]
    for name in names:
        with Image.open(PATCHES / name) as patch:
            assert patch.mode == "RGB" and patch.size == (32, 32), name
    labels = json.loads((PATCHES / "labels.json").read_text())
    assert sorted(labels) == names
    assert set(labels.values()) == set(range(len(make_samples.PATCH_SOURCES)))


def test_patches_come_from_the_training_photos_only(make_samples) -> None:
    assert set(make_samples.PATCH_SOURCES).isdisjoint(make_samples.HELD_OUT_SOURCES)
    assert set(make_samples.HELD_OUT_SOURCES) == {"chelsea", "retina"}
    photos = {name: make_samples.load_source(name) for name in make_samples.PATCH_SOURCES}
    plan = make_samples.plan_patches({name: photo.shape[:2] for name, photo in photos.items()})
    labels = json.loads((PATCHES / "labels.json").read_text())
    assert [labels[f"{i:05d}.png"] for i in range(len(plan))] == [
        make_samples.PATCH_SOURCES.index(patch.source) for patch in plan
    ]
    for index in (0, 1, 2, 1234, 2999):  # the plan is what was written
        expected = make_samples.render_patch(photos[plan[index].source], plan[index], index)
        with Image.open(PATCHES / f"{index:05d}.png") as shipped:
            np.testing.assert_array_equal(np.asarray(shipped), np.asarray(expected))


def test_validation_split_is_exactly_the_held_out_photos(make_samples) -> None:
    splits = json.loads((SAMPLES / "splits.json").read_text())
    assert splits["held_out_sources"] == list(make_samples.HELD_OUT_SOURCES)
    assert splits["patch_sources"] == list(make_samples.PATCH_SOURCES)
    assert splits["digits"] == {
        "prior_training": "0000-1399",
        "validation": "1400-1499",
        "reserved_never_used": "1500+",
    }
    for size in make_samples.SIZES:
        folder = f"images{size}"
        crops = make_samples.crops_at(size)
        names = [make_samples.file_name(index, crop) for index, crop in enumerate(crops)]
        held_out = {
            name
            for name, crop in zip(names, crops, strict=True)
            if crop.source in make_samples.HELD_OUT_SOURCES
        }
        assert set(splits[folder]["validation"]) == held_out
        assert set(splits[folder]["tuning"]) == set(names) - held_out
        assert sorted(names) == png_names(SAMPLES / folder)
