"""Build gradinvert's sample images and prior-training corpora from data shipped in PyPI wheels.

Run from anywhere with ``python samples/make_samples.py``. The script crops recognisable regions
(a face, a cat's eye, a cup, a rocket, ...) out of the full-resolution ``skimage.data`` photos,
downscales each crop with a Lanczos filter (never upscales) and writes:

* ``samples/images32/``, ``samples/images64/``, ``samples/images224/``: RGB PNGs;
* ``samples/labels.json``: a class index per image (at most 10 classes, for ``--num-classes 10``),
  also written as each image folder's own ``labels.json`` map;
* ``samples/digits32/``: scikit-learn's ``load_digits()`` images 0-1499 as 32x32 RGB PNGs, with a
  ``labels.json`` (file name -> digit); indices 1500 and up are reserved and never written;
* ``samples/patches32/``: seeded random 32x32 crops of the training photos (``PATCH_SOURCES``),
  with a ``labels.json`` (file name -> index of the source photo in ``PATCH_SOURCES``);
* ``samples/corpus32/`` and ``samples/corpus64/``: the wider photo corpus, seeded random 32x32
  and 64x64 crops of every training photo (``CORPUS_SOURCES``, grey ones replicated to RGB),
  each with a ``sources.json`` (file name -> source photo); ``corpus64/`` is not committed
  (about 18 MB) and is rebuilt here, byte for byte;
* ``samples/validation32/``: seeded random 32x32 crops of the held-out photos only, for scoring
  (never for training or tuning), with a ``sources.json``;
* ``samples/splits.json``: which sample images tune and which validate (``HELD_OUT_SOURCES``),
  and the digit index ranges for prior training and validation (DESIGN.md section 8);
* ``samples/PROVENANCE.md``: source, recipe and license of every image.

Only photos that ship inside the scikit-image wheel (no download at run time) and that
scikit-image documents as public domain or CC0 are used, plus the digits bundled with
scikit-learn. The output is deterministic: the same inputs and library versions give the same
bytes on every run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
import sklearn
import sklearn.datasets
from PIL import Image

SAMPLES_DIR = Path(__file__).resolve().parent
SIZES: tuple[int, ...] = (32, 64, 224)

# Photos the patch prior trains on; the held-out photos only ever validate (their crops in
# images32/64/224 and validation32 form the "validation" split of splits.json, every other crop
# the "tuning" one).
PATCH_SOURCES: tuple[str, ...] = ("astronaut", "coffee", "rocket", "hubble_deep_field")
HELD_OUT_SOURCES: tuple[str, ...] = ("chelsea", "retina")
PATCH_FOLDER = "patches32"
PATCH_SIZE = 32
PATCH_COUNT = 3000
PATCH_SEED = 20_240_832
# Side lengths (source pixels) of the square boxes, about 1.25x apart: every patch is a downscale.
PATCH_SIDES: tuple[int, ...] = (32, 40, 48, 64, 80, 96, 128, 160, 192, 256)

# The wider corpus: every photo that is neither held out nor excluded (see PROVENANCE.md), the
# colour photos drawn twice as often as the grey ones (the validation photos are in colour).
# Boxes reach 512 px (clipped to the photo) so that whole-scene views are in it too.
CORPUS_SOURCES: tuple[str, ...] = (
    *PATCH_SOURCES,
    "camera",
    "brick",
    "grass",
    "gravel",
    "clock",
)
COLOUR_WEIGHT, GREY_WEIGHT = 2, 1
CORPUS_SIDES: tuple[int, ...] = (*PATCH_SIDES, 320, 400, 512)


@dataclass(frozen=True)
class CropSet:
    """A folder of seeded random square crops, all downscaled to ``size`` (see ``plan_patches``)."""

    folder: str
    sources: tuple[str, ...]
    size: int
    count: int
    seed: int
    sides: tuple[int, ...]
    role: str  # "training" (train-prior, train-inverter) or "validation" (scoring only)
    committed: bool = True


CORPUS32 = CropSet("corpus32", CORPUS_SOURCES, 32, 3000, 20_250_032, CORPUS_SIDES, "training")
CORPUS64 = CropSet(
    "corpus64",
    CORPUS_SOURCES,
    64,
    3000,
    20_250_064,
    tuple(side for side in CORPUS_SIDES if side >= 64),
    "training",
    committed=False,
)
VALIDATION32 = CropSet(
    "validation32", HELD_OUT_SOURCES, 32, 300, 20_250_132, CORPUS_SIDES, "validation"
)
CROP_SETS: tuple[CropSet, ...] = (CORPUS32, CORPUS64, VALIDATION32)

# load_digits() indices: only [0, DIGITS_SHIPPED) are ever written; the rest is reserved for
# independent evaluation (DESIGN.md section 8). Ranges are half-open.
DIGITS_FOLDER = "digits32"
DIGITS_SIZE = 32
DIGITS_SHIPPED = 1500
DIGITS_PRIOR_TRAINING: tuple[int, int] = (0, 1400)
DIGITS_VALIDATION: tuple[int, int] = (1400, 1500)
DIGITS_LICENSE = (
    "Creative Commons Attribution 4.0 International (CC BY 4.0), "
    "https://creativecommons.org/licenses/by/4.0/"
)
DIGITS_CITATION = (
    "E. Alpaydin and C. Kaynak (1998). Optical Recognition of Handwritten Digits [Dataset]. "
    "UCI Machine Learning Repository. https://doi.org/10.24432/C50P49"
)

CLASSES: tuple[str, ...] = (
    "person",
    "cat",
    "cup",
    "rocket",
    "galaxy",
    "retina",
    "flag",
    "helmet",
    "spoon",
    "tower",
)


@dataclass(frozen=True)
class Source:
    """A photo from ``skimage.data`` with its provenance as scikit-image documents it."""

    function: str
    description: str
    origin: str
    license: str
    grey: bool = False  # a grey-level photo, replicated to three channels


SOURCES: dict[str, Source] = {
    "astronaut": Source(
        "astronaut",
        "Portrait of NASA astronaut Eileen Collins",
        "NASA (NASA Great Images database, https://flic.kr/p/r9qvLn)",
        'Public domain ("No known copyright restrictions, released into the public domain")',
    ),
    "chelsea": Source(
        "chelsea",
        "Chelsea the cat",
        "Photographer: Stefan van der Walt",
        'CC0 ("No copyright restrictions. CC0 by the photographer")',
    ),
    "coffee": Source(
        "coffee",
        "Espresso cup on a saucer, courtesy of Pikolo Espresso Bar",
        "Photographer: Rachel Michetti",
        'CC0 ("No copyright restrictions. CC0 by the photographer")',
    ),
    "rocket": Source(
        "rocket",
        "Falcon 9 carrying DSCOVR on SpaceX Launch Complex 40, Cape Canaveral",
        "SpaceX (SpaceX Photos, https://www.flickr.com/photos/spacexphotos/16511594820/)",
        'Public domain ("released in the public domain" by SpaceX, March 2015)',
    ),
    "hubble_deep_field": Source(
        "hubble_deep_field",
        "Hubble eXtreme Deep Field",
        "NASA (HubbleSite, http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/)",
        'Public domain (NASA: "may be freely used in the public domain")',
    ),
    "retina": Source(
        "retina",
        "Fundus photograph of a normal left eye",
        "Wikimedia Commons, "
        "https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg",
        "CC0 1.0 Universal Public Domain Dedication",
    ),
    "camera": Source(
        "camera",
        'Grey-level "camera" image (a man with a camera on a tripod)',
        "Photographer: Lav Varshney",
        'CC0 ("No copyright restrictions. CC0 by the photographer")',
        grey=True,
    ),
    "brick": Source(
        "brick",
        "Brick wall (a small section)",
        "CC0Textures, https://cc0textures.com/view.php?tex=Bricks25",
        'CC0 ("licensed under the Creative Commons CC0 License")',
        grey=True,
    ),
    "grass": Source(
        "grass",
        "Grass",
        "DeviantArt, https://www.deviantart.com/linolafett/art/Grass-01-434853879",
        'CC0 ("licensed under the Creative Commons CC0 License")',
        grey=True,
    ),
    "gravel": Source(
        "gravel",
        "Gravel",
        "CC0Textures, https://cc0textures.com/view.php?tex=Gravel04",
        'CC0 ("licensed under the Creative Commons CC0 License")',
        grey=True,
    ),
    "clock": Source(
        "clock",
        "Motion-blurred wall clock",
        "Photographer: Stefan van der Walt",
        'Public domain ("Released into the public domain by the photographer")',
        grey=True,
    ),
}


@dataclass(frozen=True)
class Crop:
    """A square region of a source photo and the output sizes it is written at."""

    name: str
    source: str
    box: tuple[int, int, int, int]  # (left, top, right, bottom) in source pixels
    label: str
    sizes: tuple[int, ...]


# Listed round-robin over the classes so that the first few files of every folder already cover
# several classes (demos often take the first N images).
CROPS: tuple[Crop, ...] = (
    Crop("astronaut_face", "astronaut", (150, 10, 310, 170), "person", (32, 64)),
    Crop("cat_face", "chelsea", (60, 0, 360, 300), "cat", (32, 64, 224)),
    Crop("cup_and_saucer", "coffee", (80, 0, 480, 400), "cup", (32, 64, 224)),
    Crop("rocket_on_pad", "rocket", (180, 120, 465, 405), "rocket", (32, 64, 224)),
    Crop("galaxy_pair", "hubble_deep_field", (370, 0, 530, 160), "galaxy", (32, 64)),
    Crop("retina_optic_disc", "retina", (117, 533, 317, 733), "retina", (32, 64)),
    Crop("flag_stars", "astronaut", (0, 0, 110, 110), "flag", (32, 64)),
    Crop("helmet", "astronaut", (285, 332, 465, 512), "helmet", (32, 64)),
    Crop("spoon_bowl", "coffee", (310, 225, 420, 335), "spoon", (32,)),
    Crop("tower_left_top", "rocket", (0, 0, 100, 100), "tower", (32,)),
    Crop("astronaut_portrait", "astronaut", (90, 0, 370, 280), "person", (32, 64, 224)),
    Crop("cat_left_eye", "chelsea", (125, 72, 215, 162), "cat", (32, 64)),
    Crop("cup_top_view", "coffee", (150, 10, 430, 290), "cup", (32,)),
    Crop("rocket_nose_cone", "rocket", (282, 115, 362, 195), "rocket", (32,)),
    Crop("galaxy_spiral", "hubble_deep_field", (77, 360, 157, 440), "galaxy", (32,)),
    Crop("retina_fovea", "retina", (450, 433, 950, 933), "retina", (32,)),
    Crop("flag_stripes", "astronaut", (0, 130, 80, 210), "flag", (32,)),
    Crop("helmet_visor", "astronaut", (300, 360, 420, 480), "helmet", (32,)),
    Crop("spoon_in_saucer", "coffee", (285, 150, 445, 310), "spoon", (32,)),
    Crop("tower_right_top", "rocket", (550, 0, 640, 90), "tower", (32,)),
    Crop("astronaut_eyes_smile", "astronaut", (185, 70, 275, 160), "person", (32,)),
    Crop("cat_right_eye", "chelsea", (280, 97, 360, 177), "cat", (32,)),
    Crop("cup_crema", "coffee", (200, 60, 380, 240), "cup", (32,)),
    Crop("shuttle_model", "astronaut", (327, 87, 487, 247), "rocket", (32, 64)),
    Crop("galaxy_orange_elliptical", "hubble_deep_field", (688, 432, 768, 512), "galaxy", (32,)),
    Crop("retina_whole_eye", "retina", (0, 0, 1411, 1411), "retina", (32, 224)),
    Crop("tower_base_lights", "rocket", (135, 315, 245, 425), "tower", (32,)),
    Crop("cat_nose", "chelsea", (207, 180, 327, 300), "cat", (32,)),
    Crop("cup_handle", "coffee", (180, 200, 280, 300), "cup", (32,)),
    Crop("deep_field", "hubble_deep_field", (0, 0, 872, 872), "galaxy", (32,)),
    # 64 px only, appended so that no earlier file is renumbered: validation crops enough for a
    # batch of 8 at 64 px (issue 12's GradInversion ablation).
    Crop("cat_forehead", "chelsea", (180, 0, 330, 150), "cat", (64,)),
    Crop("retina_upper_vessels", "retina", (450, 90, 900, 540), "retina", (64,)),
    Crop("cat_right_ear", "chelsea", (300, 0, 420, 120), "cat", (64,)),
    Crop("retina_lower_arcade", "retina", (300, 840, 750, 1290), "retina", (64,)),
    Crop("cat_whiskers", "chelsea", (0, 160, 140, 300), "cat", (64,)),
)


def load_source(name: str) -> np.ndarray:
    """Load a bundled ``skimage.data`` photo as an ``(H, W, 3)`` uint8 array (a grey photo's
    level in all three channels)."""
    source = SOURCES[name]
    loader: Callable[[], np.ndarray] = getattr(skimage.data, source.function)
    image = np.asarray(loader())
    if source.grey and image.dtype == np.uint8 and image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        kind = "grey" if source.grey else "RGB"
        raise ValueError(f"{name}: expected a {kind} uint8 photo, got {image.dtype} {image.shape}")
    return image


def downscale(
    image: np.ndarray, box: tuple[int, int, int, int], size: int, what: str
) -> Image.Image:
    """Cut the square ``box`` out of ``image`` and downscale it to ``size`` x ``size`` (Lanczos)."""
    left, top, right, bottom = box
    height, width = image.shape[:2]
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(f"{what}: box {box} is outside the {width}x{height} photo")
    if right - left != bottom - top:
        raise ValueError(f"{what}: box {box} is not square")
    if right - left < size:
        raise ValueError(f"{what}: a {right - left}px box would be upscaled to {size}px")
    region = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    return region.resize((size, size), Image.Resampling.LANCZOS)


def render(image: np.ndarray, crop: Crop, size: int) -> Image.Image:
    """Cut ``crop.box`` out of ``image`` and downscale it to ``size`` x ``size`` pixels."""
    return downscale(image, crop.box, size, crop.name)


def file_name(index: int, crop: Crop) -> str:
    """Sortable, descriptive PNG name, e.g. ``00_astronaut_face.png``."""
    return f"{index:02d}_{crop.name}.png"


def crops_at(size: int) -> list[Crop]:
    """The crops written at ``size``, in file order."""
    return [crop for crop in CROPS if size in crop.sizes]


def fresh_folder(folder: Path) -> Path:
    """Empty ``folder`` (creating it if needed) so that no stale file survives a rebuild."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def write_json(path: Path, payload: object) -> None:
    """Write ``payload`` as indented JSON with a trailing newline."""
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def check_sources() -> None:
    """Crop names are unique, every photo either trains or is held out, and only validation
    crop sets cut the held-out photos."""
    names = [crop.name for crop in CROPS]
    if len(set(names)) != len(names):
        raise ValueError("crop names must be unique")
    if set(CORPUS_SOURCES) & set(HELD_OUT_SOURCES):
        raise ValueError("a photo cannot both train and be held out")
    if not set(PATCH_SOURCES) <= set(CORPUS_SOURCES):
        raise ValueError("the patch photos must be corpus photos")
    if set(CORPUS_SOURCES) | set(HELD_OUT_SOURCES) != set(SOURCES):
        raise ValueError("every source photo must be in CORPUS_SOURCES or HELD_OUT_SOURCES")
    for crop_set in CROP_SETS:
        held_out = set(crop_set.sources) & set(HELD_OUT_SOURCES)
        if crop_set.role == "training" and held_out:
            raise ValueError(f"{crop_set.folder}: a training folder cuts held-out photos")
        if crop_set.role == "validation" and set(crop_set.sources) != held_out:
            raise ValueError(f"{crop_set.folder}: a validation folder cuts training photos")


def build(out_dir: Path = SAMPLES_DIR) -> dict[str, dict[str, int]]:
    """Write every image folder, the JSON files and ``PROVENANCE.md``; return per-folder labels."""
    check_sources()
    photos = {name: load_source(name) for name in SOURCES}
    labels: dict[str, dict[str, int]] = {}
    rows: dict[int, list[str]] = {}
    for size in SIZES:
        folder = fresh_folder(out_dir / f"images{size}")
        labels[folder.name] = {}
        rows[size] = []
        for index, crop in enumerate(crops_at(size)):
            name = file_name(index, crop)
            render(photos[crop.source], crop, size).save(folder / name, format="PNG", optimize=True)
            labels[folder.name][name] = CLASSES.index(crop.label)
            rows[size].append(provenance_row(name, crop))
    write_json(out_dir / "labels.json", {"classes": list(CLASSES), **labels})
    # each folder its own map too, so that `capture --images FOLDER` needs no --labels
    for folder_name, folder_labels in labels.items():
        write_json(out_dir / folder_name / "labels.json", folder_labels)
    write_json(out_dir / "splits.json", splits())
    digit_labels = build_digits(out_dir / DIGITS_FOLDER)
    patches = plan_patches({name: photos[name].shape[:2] for name in PATCH_SOURCES})
    patch_labels = build_patches(out_dir / PATCH_FOLDER, patches, photos)
    text = provenance(rows, photos) + digits_provenance(digit_labels) + patches_provenance(patches)
    sets: dict[str, dict[str, int]] = {}
    for crop_set in CROP_SETS:
        plan = plan_crop_set(crop_set, photos)
        sources = build_crop_set(out_dir / crop_set.folder, crop_set, plan, photos)
        sets[crop_set.folder] = {name: crop_set.sources.index(src) for name, src in sources.items()}
        text += crop_set_provenance(crop_set, plan)
    (out_dir / "PROVENANCE.md").write_text(text, encoding="utf-8")
    return {**labels, DIGITS_FOLDER: digit_labels, PATCH_FOLDER: patch_labels, **sets}


def splits() -> dict[str, object]:
    """Tuning / validation split of the sample images and the digit ranges (``splits.json``)."""
    payload: dict[str, object] = {}
    for size in SIZES:
        names = [(file_name(i, crop), crop.source) for i, crop in enumerate(crops_at(size))]
        payload[f"images{size}"] = {
            "validation": [name for name, source in names if source in HELD_OUT_SOURCES],
            "tuning": [name for name, source in names if source not in HELD_OUT_SOURCES],
        }
    payload["patch_sources"] = list(PATCH_SOURCES)
    payload["held_out_sources"] = list(HELD_OUT_SOURCES)
    for crop_set in CROP_SETS:
        payload[crop_set.folder] = {
            "role": crop_set.role,
            "sources": list(crop_set.sources),
            "count": crop_set.count,
            "committed": crop_set.committed,
        }
    payload["digits"] = {
        "prior_training": index_range(DIGITS_PRIOR_TRAINING),
        "validation": index_range(DIGITS_VALIDATION),
        "reserved_never_used": f"{DIGITS_SHIPPED}+",
    }
    return payload


def index_range(bounds: tuple[int, int]) -> str:
    """A half-open index range as inclusive digit file stems, e.g. ``"0000-1399"``."""
    start, stop = bounds
    return f"{start:04d}-{stop - 1:04d}"


def digit_image(pixels: np.ndarray) -> Image.Image:
    """One 8x8 ``load_digits()`` image (values 0-16) as a 32x32 RGB picture.

    Values map to ``round(v / 16 * 255)``; the 8x8 grey image is upscaled with Pillow's bilinear
    filter and the grey level replicated to three channels.
    """
    grey = np.round(np.asarray(pixels, dtype=np.float64) / 16 * 255).astype(np.uint8)
    small = Image.fromarray(np.ascontiguousarray(grey)).convert("L")
    return small.resize((DIGITS_SIZE, DIGITS_SIZE), Image.Resampling.BILINEAR).convert("RGB")


def digit_file_name(index: int) -> str:
    """``load_digits()`` index as a PNG name, e.g. ``0042.png``."""
    return f"{index:04d}.png"


def build_digits(folder: Path) -> dict[str, int]:
    """Write ``load_digits()`` images ``0 .. DIGITS_SHIPPED - 1`` and their ``labels.json``."""
    digits = sklearn.datasets.load_digits()
    folder = fresh_folder(folder)
    labels: dict[str, int] = {}
    for index in range(DIGITS_SHIPPED):
        name = digit_file_name(index)
        digit_image(digits.images[index]).save(folder / name, format="PNG", optimize=True)
        labels[name] = int(digits.target[index])
    write_json(folder / "labels.json", labels)
    return labels


@dataclass(frozen=True)
class Patch:
    """A random square region of a training photo, optionally mirrored left-right."""

    source: str
    box: tuple[int, int, int, int]  # (left, top, right, bottom) in source pixels
    flipped: bool


def quotas(count: int, weights: Sequence[int]) -> list[int]:
    """``count`` split in proportion to ``weights``: floors, then one more to the largest
    remainders (ties to the earlier source). Equal weights: the first ``count % n`` get one more."""
    total = sum(weights)
    shares = [count * w // total for w in weights]
    remainders = [count * w % total for w in weights]
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i)):
        if sum(shares) == count:
            break
        shares[index] += 1
    return shares


def plan_patches(
    shapes: dict[str, tuple[int, int]],
    count: int = PATCH_COUNT,
    seed: int = PATCH_SEED,
    sources: Sequence[str] = PATCH_SOURCES,
    sides: Sequence[int] = PATCH_SIDES,
    weights: Sequence[int] | None = None,
) -> list[Patch]:
    """Draw ``count`` boxes over ``sources`` (``shapes``: name -> (H, W)), the same every run.

    Each source gets its share of the patches (``weights``, equal by default; see ``quotas``),
    in a shuffled order; the side is drawn from ``sides`` (clipped to the photo), the position
    uniformly, the flip by a coin.
    """
    rng = np.random.default_rng(seed)
    shares = quotas(count, weights if weights is not None else [1] * len(sources))
    order = rng.permutation(np.repeat(np.arange(len(sources)), shares))
    patches = []
    for source_index in order:
        source = sources[int(source_index)]
        height, width = shapes[source]
        side = min(sides[int(rng.integers(len(sides)))], height, width)
        left = int(rng.integers(width - side + 1))
        top = int(rng.integers(height - side + 1))
        flipped = bool(rng.integers(2))
        patches.append(Patch(source, (left, top, left + side, top + side), flipped))
    return patches


def render_patch(
    image: np.ndarray, patch: Patch, index: int, size: int = PATCH_SIZE
) -> Image.Image:
    """Downscale ``patch.box`` of ``image`` to ``size`` pixels and mirror it if flipped."""
    picture = downscale(image, patch.box, size, f"patch {index}")
    return picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if patch.flipped else picture


def patch_file_name(index: int) -> str:
    """Patch number as a PNG name, e.g. ``00042.png``."""
    return f"{index:05d}.png"


def build_patches(
    folder: Path, patches: list[Patch], photos: dict[str, np.ndarray]
) -> dict[str, int]:
    """Write the planned patches and their ``labels.json`` (index of the source photo)."""
    folder = fresh_folder(folder)
    labels: dict[str, int] = {}
    for index, patch in enumerate(patches):
        name = patch_file_name(index)
        picture = render_patch(photos[patch.source], patch, index)
        picture.save(folder / name, format="PNG", optimize=True)
        labels[name] = PATCH_SOURCES.index(patch.source)
    write_json(folder / "labels.json", labels)
    return labels


def source_weights(sources: Sequence[str]) -> list[int]:
    """Draw weights of a crop set's photos: ``COLOUR_WEIGHT`` for colour, ``GREY_WEIGHT`` grey."""
    return [GREY_WEIGHT if SOURCES[name].grey else COLOUR_WEIGHT for name in sources]


def plan_crop_set(crop_set: CropSet, photos: dict[str, np.ndarray]) -> list[Patch]:
    """The boxes of ``crop_set`` (``plan_patches`` over its photos with ``source_weights``)."""
    shapes = {name: photos[name].shape[:2] for name in crop_set.sources}
    return plan_patches(
        shapes,
        crop_set.count,
        crop_set.seed,
        crop_set.sources,
        crop_set.sides,
        source_weights(crop_set.sources),
    )


def build_crop_set(
    folder: Path, crop_set: CropSet, plan: list[Patch], photos: dict[str, np.ndarray]
) -> dict[str, str]:
    """Write the planned crops (``00000.png`` ...) and ``sources.json`` (file -> source photo).

    The map is not called ``labels.json`` on purpose: ``train-inverter`` would take a folder's
    ``labels.json`` as class labels, and a photo's name is no class.
    """
    folder = fresh_folder(folder)
    sources: dict[str, str] = {}
    for index, patch in enumerate(plan):
        name = patch_file_name(index)
        picture = render_patch(photos[patch.source], patch, index, crop_set.size)
        picture.save(folder / name, format="PNG", optimize=True)
        sources[name] = patch.source
    write_json(folder / "sources.json", sources)
    return sources


def provenance_row(name: str, crop: Crop) -> str:
    """One Markdown table row describing a written image."""
    source = SOURCES[crop.source]
    box = ", ".join(str(v) for v in crop.box)
    return (
        f"| `{name}` | {crop.label} | `skimage.data.{source.function}()` | {source.origin} "
        f"| ({box}) | {source.license} |"
    )


def provenance(rows: dict[int, list[str]], photos: dict[str, np.ndarray]) -> str:
    """Render ``PROVENANCE.md``."""
    lines = [
        "# Sample image provenance",
        "",
        "Generated by `python samples/make_samples.py`; do not edit by hand.",
        "",
        "Every image is a square crop of a photograph bundled with scikit-image (`skimage.data`,",
        "available offline), downscaled with Pillow's Lanczos filter. Crop boxes are",
        "`(left, top, right, bottom)` in pixels of the full-resolution photo. Sources and",
        "licenses are quoted from the `skimage.data` docstrings (scikit-image 0.26). The crops",
        "are derivatives of public-domain / CC0 photographs; no further restrictions are added.",
        "Grey-level photos (marked grey below) are replicated to three channels (R = G = B).",
        "",
        "Not used (scikit-image 0.26 wheel): `immunohistochemistry()` and `coins()` (documented",
        'only as "No known copyright restrictions", without a dedication), `stereo_motorcycle()`',
        "(Middlebury stereo benchmark), `lfw_subset()` (faces from Labeled Faces in the Wild),",
        "`moon()` and `page()` (no license stated); `microaneurysms()` (CC0, but a detail of a",
        "retina fundus photo: left out so that the held-out retina stays an unseen subject);",
        "`cell()` (CC0, a quantitative phase image of a cell, not a photograph), `horse()`",
        "(silhouette clip art), `text()` (a synthetic corner test image), `logo()`,",
        "`colorwheel()`, `checkerboard()` and other non-photographs; and every photo that needs a",
        "download (`eagle()`, `skin()`, `kidney()`, `lily()`, ...).",
        "",
        "## Source photographs",
        "",
        "| `skimage.data` function | Photo | Origin / author | License | Size (HxW) "
        "| SHA-256 of pixels (first 16 hex) |",
        "|---|---|---|---|---|---|",
    ]
    for key, source in SOURCES.items():
        pixels = photos[key]
        digest = hashlib.sha256(pixels.tobytes()).hexdigest()[:16]
        grey = ", grey" if source.grey else ""
        lines.append(
            f"| `{source.function}()` | {source.description} | {source.origin} | "
            f"{source.license} | {pixels.shape[0]}x{pixels.shape[1]}{grey} | `{digest}` |"
        )
    held_out = ", ".join(f"`{name}()`" for name in HELD_OUT_SOURCES)
    training = ", ".join(f"`{s.folder}/`" for s in CROP_SETS if s.role == "training")
    validation = ", ".join(f"`{s.folder}/`" for s in CROP_SETS if s.role == "validation")
    lines += [
        "",
        "## Tuning and validation split",
        "",
        f"`splits.json` puts every image cut from {held_out} in the `validation` split and all",
        "other images in the `tuning` split. No image of the training folders (`patches32/`,",
        f"{training}) comes from a held-out photo: those are for validation only, never for",
        f"training a prior or an inverter or tuning a preset; {validation} holds crops of them",
        "for scoring only.",
    ]
    for size in SIZES:
        lines += [
            "",
            f"## images{size}/ ({size}x{size} RGB)",
            "",
            "| File | Class | Source | Origin / author | Crop box | License |",
            "|---|---|---|---|---|---|",
            *rows[size],
        ]
    return "\n".join(lines) + "\n"


def digits_provenance(labels: dict[str, int]) -> str:
    """The ``digits32/`` section of ``PROVENANCE.md``."""
    version = ".".join(sklearn.__version__.split(".")[:2])
    counts = np.bincount(list(labels.values()), minlength=10)
    per_digit = ", ".join(f"{digit}: {int(n)}" for digit, n in enumerate(counts))
    lines = [
        "",
        f"## {DIGITS_FOLDER}/ ({DIGITS_SIZE}x{DIGITS_SIZE} RGB)",
        "",
        f"{len(labels)} images: `sklearn.datasets.load_digits()` indices "
        f"0-{DIGITS_SHIPPED - 1}, file `NNNN.png` = index NNNN.",
        f"`{DIGITS_FOLDER}/labels.json` maps each file name to its digit ({per_digit}).",
        f"Indices {DIGITS_SHIPPED} and up are reserved for independent evaluation and are "
        "written nowhere.",
        f"Generative priors train on {index_range(DIGITS_PRIOR_TRAINING)} and validate on "
        f"{index_range(DIGITS_VALIDATION)} (`splits.json`).",
        "",
        "- Source: the UCI ML hand-written digits data set (Optical Recognition of",
        "  Handwritten Digits, its 1797-image test set), E. Alpaydin and C. Kaynak,",
        "  Bogazici University, 1998, as shipped in scikit-learn",
        f"  (scikit-learn {version}, `load_digits()`).",
        f"- License: {DIGITS_LICENSE},",
        "  as listed on the UCI Machine Learning Repository record",
        "  https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        "  (scikit-learn's `load_digits().DESCR` states no license of its own).",
        f"- Attribution: {DIGITS_CITATION}.",
        "- Changes: each 8x8 image (values 0-16) mapped to uint8 `round(v / 16 * 255)`,",
        "  upscaled to 32x32 with Pillow's bilinear filter (`Image.resize`, mode `L`),",
        "  grey replicated to RGB.",
    ]
    return "\n".join(lines) + "\n"


def patches_provenance(patches: list[Patch]) -> str:
    """The ``patches32/`` section of ``PROVENANCE.md``: recipe and per-source counts."""
    lines = [
        "",
        f"## {PATCH_FOLDER}/ ({PATCH_SIZE}x{PATCH_SIZE} RGB)",
        "",
        f"{len(patches)} random crops (`00000.png` ...) of the training photos only; "
        f"{', '.join(f'`{name}()`' for name in HELD_OUT_SOURCES)} are held out.",
        f"Recipe: `numpy.random.default_rng({PATCH_SEED})`; the patches are spread evenly over",
        "the sources in a shuffled order; each is a square box whose side is drawn uniformly from",
        f"{', '.join(str(side) for side in PATCH_SIDES)} px (clipped to the photo), at a uniform",
        f"position, downscaled to {PATCH_SIZE}x{PATCH_SIZE} with Pillow's Lanczos filter (never",
        "upscaled) and mirrored left-right with probability 1/2 (see `plan_patches`).",
        f"`{PATCH_FOLDER}/labels.json` maps each file name to the index of its source photo in",
        "`PATCH_SOURCES` (the label column below). Licenses: those of the source photographs",
        "above.",
        "",
        "| Label | Source | Patches | Mirrored |",
        "|---|---|---|---|",
    ]
    for label, source in enumerate(PATCH_SOURCES):
        lines.append(f"| {label} | `skimage.data.{source}()` | {count_row(patches, source)} |")
    lines += ["", box_sides(patches)]
    return "\n".join(lines) + "\n"


def count_row(plan: list[Patch], source: str) -> str:
    """``crops | mirrored`` of one source photo in a plan (Markdown cells)."""
    chosen = [patch for patch in plan if patch.source == source]
    return f"{len(chosen)} | {sum(patch.flipped for patch in chosen)}"


def box_sides(plan: list[Patch]) -> str:
    """How many boxes of each side a plan holds, as a sentence."""
    sides = [patch.box[2] - patch.box[0] for patch in plan]
    per_side = ", ".join(f"{side} px: {sides.count(side)}" for side in sorted(set(sides)))
    return f"Box sides: {per_side}."


def crop_set_provenance(crop_set: CropSet, plan: list[Patch]) -> str:
    """A crop set's section of ``PROVENANCE.md``: recipe and per-source counts."""
    size = crop_set.size
    role = (
        "training photos only (for `train-prior` and `train-inverter`)"
        if crop_set.role == "training"
        else "held-out photos only: validation, never training or tuning"
    )
    stored = (
        "committed"
        if crop_set.committed
        else "not committed (its size): `python samples/make_samples.py` rebuilds it, byte for byte"
    )
    weights = ", ".join(
        f"{'grey' if grey else 'colour'} {weight}"
        for grey, weight in ((False, COLOUR_WEIGHT), (True, GREY_WEIGHT))
        if any(SOURCES[name].grey == grey for name in crop_set.sources)
    )
    lines = [
        "",
        f"## {crop_set.folder}/ ({size}x{size} RGB)",
        "",
        f"{len(plan)} random crops (`00000.png` ...) of the {role}; {stored}.",
        f"Recipe: `plan_patches` with `numpy.random.default_rng({crop_set.seed})`; each photo",
        f"gets a share of the crops in proportion to its weight ({weights}), in a shuffled",
        "order; each crop is a square box whose side is drawn uniformly from",
        f"{', '.join(str(side) for side in crop_set.sides)} px (clipped to the photo), at a",
        f"uniform position, downscaled to {size}x{size} with Pillow's Lanczos filter (never",
        "upscaled) and mirrored left-right with probability 1/2.",
        f"`{crop_set.folder}/sources.json` maps each file name to its source photo.",
        "Licenses: those of the source photographs above.",
        "",
        "| Source | Crops | Mirrored |",
        "|---|---|---|",
    ]
    for source in crop_set.sources:
        lines.append(f"| `skimage.data.{source}()` | {count_row(plan, source)} |")
    lines += ["", box_sides(plan)]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Regenerate all samples and print a short summary."""
    labels = build()
    crop_sets = {crop_set.folder: crop_set for crop_set in CROP_SETS}
    for folder, entries in labels.items():
        if folder == DIGITS_FOLDER:
            kinds = f"digits: {', '.join(str(d) for d in sorted(set(entries.values())))}"
        elif folder == PATCH_FOLDER:
            kinds = f"sources: {', '.join(PATCH_SOURCES)}"
        elif folder in crop_sets:
            kinds = f"{crop_sets[folder].role}, sources: {', '.join(crop_sets[folder].sources)}"
        else:
            kinds = f"classes: {', '.join(sorted({CLASSES[i] for i in entries.values()}))}"
        print(f"{folder}: {len(entries)} images, {kinds}")


if __name__ == "__main__":
    main()
