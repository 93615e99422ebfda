"""The wider photo corpus (corpus32/64) and the held-out validation crops (validation32)."""

from __future__ import annotations

import json
import re
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from samples_support import SAMPLES, load_make_samples

SPLITS = json.loads((SAMPLES / "splits.json").read_text())
HELD_OUT = set(SPLITS["held_out_sources"])
CROP_FOLDERS = [
    name for name, entry in SPLITS.items() if isinstance(entry, dict) and "role" in entry
]


@pytest.fixture(scope="module")
def make_samples() -> ModuleType:
    return load_make_samples()


@pytest.fixture(scope="module")
def photos(make_samples) -> dict[str, np.ndarray]:
    return {name: make_samples.load_source(name) for name in make_samples.SOURCES}


def provenance_sources(folder: str) -> dict[str, int]:
    """Source photo -> crop count, read from the folder's table in PROVENANCE.md."""
    text = (SAMPLES / "PROVENANCE.md").read_text()
    section = text.split(f"\n## {folder}/ ", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `skimage\.data\.(\w+)\(\)` \| (\d+) \|", section, flags=re.M)
    assert rows, f"no source table for {folder}"
    return {name: int(count) for name, count in rows}


def test_the_split_names_every_crop_folder_and_holds_chelsea_and_retina_out() -> None:
    assert {"chelsea", "retina"} == HELD_OUT
    assert set(CROP_FOLDERS) == {"corpus32", "corpus64", "validation32"}
    assert {SPLITS[f]["role"] for f in CROP_FOLDERS} == {"training", "validation"}
    for folder in CROP_FOLDERS:
        sources = set(SPLITS[folder]["sources"])
        if SPLITS[folder]["role"] == "training":
            assert sources.isdisjoint(HELD_OUT), folder
            assert set(SPLITS["patch_sources"]) <= sources  # wider than the four photos
        else:
            assert sources <= HELD_OUT, folder


@pytest.mark.parametrize("folder", ["corpus32", "corpus64", "validation32"])
def test_no_training_crop_comes_from_a_held_out_photo(folder: str) -> None:
    """PROVENANCE.md, sources.json and splits.json agree; training folders never cut chelsea
    or retina, the validation folder cuts nothing else."""
    entry = SPLITS[folder]
    documented = provenance_sources(folder)
    assert set(documented) == set(entry["sources"])
    assert sum(documented.values()) == entry["count"]
    allowed = set(entry["sources"])
    if entry["role"] == "training":
        assert allowed.isdisjoint(HELD_OUT)
    else:
        assert allowed <= HELD_OUT
    path = SAMPLES / folder
    if not path.exists():  # corpus64 is rebuilt by make_samples.py, not committed
        assert not entry["committed"]
        pytest.skip(f"{folder} is not built here")
    written = json.loads((path / "sources.json").read_text())
    assert sorted(written) == sorted(p.name for p in path.glob("*.png"))
    assert len(written) == entry["count"]
    assert set(written.values()) <= allowed
    counts = {name: list(written.values()).count(name) for name in allowed}
    assert counts == documented


def test_grey_photos_are_replicated_to_rgb(make_samples, photos) -> None:
    import skimage.data

    grey = [name for name in make_samples.CORPUS_SOURCES if make_samples.SOURCES[name].grey]
    assert grey  # the corpus is wider than the colour photos
    for name in grey:
        level = np.asarray(getattr(skimage.data, name)())
        assert photos[name].shape == (*level.shape, 3)
        for channel in range(3):
            np.testing.assert_array_equal(photos[name][:, :, channel], level)


def test_quotas_split_by_weight_with_largest_remainders(make_samples) -> None:
    colour, grey = [461] * 4, [231] * 5
    # floors 461 and 230; the grey remainders (.77) beat the colour ones (.54): each grey photo
    # gets one more, and the one crop left goes to the first colour photo
    colour[0] += 1
    assert make_samples.quotas(3000, [2, 2, 2, 2, 1, 1, 1, 1, 1]) == colour + grey
    assert make_samples.quotas(10, [1, 1, 1]) == [4, 3, 3]
    assert make_samples.quotas(7, [3, 1]) == [5, 2]  # 5.25 and 1.75: the larger remainder
    assert sum(make_samples.quotas(301, [2, 2])) == 301


@pytest.mark.parametrize("crop_set", ["CORPUS32", "VALIDATION32"])
def test_committed_crops_are_the_plan_rendered_again(make_samples, photos, crop_set) -> None:
    """The same plan every run, and the shipped files are exactly that plan (determinism)."""
    chosen = getattr(make_samples, crop_set)
    plan = make_samples.plan_crop_set(chosen, photos)
    assert plan == make_samples.plan_crop_set(chosen, photos)
    written = json.loads((SAMPLES / chosen.folder / "sources.json").read_text())
    assert [written[f"{i:05d}.png"] for i in range(len(plan))] == [p.source for p in plan]
    sides = {patch.box[2] - patch.box[0] for patch in plan}
    assert min(sides) >= chosen.size and max(sides) > 256  # whole-scene views are in it
    for index in (0, 1, len(plan) // 2, len(plan) - 1):
        expected = make_samples.render_patch(photos[plan[index].source], plan[index], index)
        with Image.open(SAMPLES / chosen.folder / f"{index:05d}.png") as shipped:
            assert shipped.mode == "RGB" and shipped.size == (chosen.size, chosen.size)
            np.testing.assert_array_equal(np.asarray(shipped), np.asarray(expected))


def test_check_sources_refuses_a_training_folder_that_cuts_a_held_out_photo(
    make_samples, monkeypatch
) -> None:
    make_samples.check_sources()
    leaky = make_samples.CropSet(
        "leaky", (*make_samples.CORPUS_SOURCES, "chelsea"), 32, 10, 1, (32,), "training"
    )
    monkeypatch.setattr(make_samples, "CROP_SETS", (*make_samples.CROP_SETS, leaky))
    with pytest.raises(ValueError, match="leaky: a training folder cuts held-out photos"):
        make_samples.check_sources()
    mixed = make_samples.CropSet("mixed", ("chelsea", "camera"), 32, 10, 1, (32,), "validation")
    monkeypatch.setattr(make_samples, "CROP_SETS", (mixed,))
    with pytest.raises(ValueError, match="mixed: a validation folder cuts training photos"):
        make_samples.check_sources()
