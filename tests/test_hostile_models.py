"""Generator, inverter and labels files: every declared size validated by a schema, models built
on the meta device and compared with the file's tensors before anything real is built, and a
memory estimate (exit 69) on every path that allocates from a file."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hostile_corpus import read_raw, write_raw
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from test_hostile_files import check_outcome, run

from gradinvert.generators import save_generator
from gradinvert.generators.dcgan import DCGANGenerator
from gradinvert.inverter import build_inverter, save_inverter
from gradinvert.inverter.git import GitInverter
from gradinvert.inverter.mlp import MlpInverter
from gradinvert.io.files import parse_labels, save_update
from gradinvert.runtime.errors import InvalidInputError


@pytest.fixture
def real_builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the generators and inverters constructed off the meta device."""
    built: list[str] = []
    for cls in (DCGANGenerator, GitInverter, MlpInverter):
        original = cls.__init__

        def init(self, *args, _original=original, _name=cls.__name__, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if torch.get_default_device().type != "meta":
                built.append(_name)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)
    yield built


def _with_meta(path: Path, out: Path, key: str, change: dict) -> Path:
    """A copy of ``path`` whose JSON metadata ``key`` is updated with ``change``."""
    tensors, metadata = read_raw(path)
    value = json.loads(metadata[key])
    for keys, new in change.items():
        where = value
        *parents, last = keys.split(".") if isinstance(keys, str) else keys
        for part in parents:
            where = where[part]
        where[last] = new
    out.write_bytes(write_raw(tensors, {**metadata, key: json.dumps(value)}))
    return out


# ---------------------------------------------------------------- generator files


@pytest.fixture
def generator_file(tmp_path: Path) -> Path:
    module = DCGANGenerator(size=32, channels=3, ngf=4)
    path = tmp_path / "g.safetensors"
    save_generator(path, module, module.arch(), {"source": "test"})
    return path


@pytest.fixture
def update32(tmp_path: Path) -> Path:
    update, _, _ = make_update(count=1, labels=[1], size=32)
    path = tmp_path / "u32.safetensors"
    save_update(update, path)
    return path


def _invert_z(update: Path, generator: Path, out: Path):  # noqa: ANN202
    return run(
        "invert", update, "--attack", "ig", "--iterations", 1, "--seeds", 1, "--search", "z",
        "--generator", generator, "--no-progress", "--out", out,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ngf": 1500}, "generator.dcgan.ngf"),  # the 6 GB generator
        ({"latent": 10**9}, "generator.dcgan.latent"),
        ({"size": 4096}, "generator.dcgan.size"),
        ({"channels": 7}, "generator.dcgan.channels"),
        ({"ngf": "64"}, "generator.dcgan.ngf"),
        ({"extra": 1}, "generator.dcgan.extra"),
    ],
)
def test_generator_sizes_past_the_schema_are_refused(
    generator_file: Path,
    update32: Path,
    tmp_path: Path,
    real_builds: list,
    change: dict,
    field: str,
):
    path = _with_meta(generator_file, tmp_path / "bad.safetensors", "generator", change)
    out = tmp_path / "r.safetensors"
    for result, name in [
        (_invert_z(update32, path, out), "invert"),
        (run("inspect", path), "inspect"),
        (run("learn-prior", update32, "--generator", path, "--tasks", 1, "--out", out), "learn"),
    ]:
        assert check_outcome(result, name, out) == 65
        assert "invalid generator metadata" in result.stderr and f"{field}:" in result.stderr
    assert real_builds == []


def test_a_generator_whose_tensors_do_not_fit_its_metadata_is_never_built(
    generator_file: Path, update32: Path, tmp_path: Path, real_builds: list
):
    # within the bounds, but the file holds the weights of ngf 4: compared on meta first
    path = _with_meta(generator_file, tmp_path / "big.safetensors", "generator", {"ngf": 1024})
    out = tmp_path / "r.safetensors"
    result = _invert_z(update32, path, out)
    assert check_outcome(result, "invert", out) == 65
    assert "tensors do not fit the generator its metadata describes" in result.stderr
    assert "(4096, 100, 4, 4)" in result.stderr or "vs (100, 8192, 4, 4)" in result.stderr
    assert real_builds == []
    # the untouched file still works, and builds its generator for real
    result = _invert_z(update32, generator_file, out)
    assert check_outcome(result, "invert") == 0 and real_builds == ["DCGANGenerator"]


# ---------------------------------------------------------------- inverter files


@pytest.fixture(params=["git", "mlp"])
def inverter_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """A small untrained inverter file of each architecture, and its template update."""
    template, _, _ = make_update(count=1, labels=[1], size=8)
    settings = {"width": 4} if request.param == "git" else {"hidden": 8}
    inverter = build_inverter(request.param, template, settings)
    path, update = tmp_path / f"{request.param}.safetensors", tmp_path / "u.safetensors"
    save_inverter(path, inverter, template, {"source": "test"})
    save_update(template, update)
    return path, update


def _arch(path: Path) -> str:
    return json.loads(read_raw(path)[1]["inverter"])["arch"]


SETTINGS_PAST_BOUNDS = {
    "git": [({"settings.width": 10**6}, "width"), ({"settings.max_channels": 0}, "max_channels")],
    "mlp": [({"settings.hidden": 10**7}, "hidden"), ({"settings.max_inputs": 2**40}, "max_inputs")],
}


def test_inverter_sizes_past_the_schema_are_refused(
    inverter_file: tuple[Path, Path], tmp_path: Path, real_builds: list
):
    path, update = inverter_file
    cases = [
        *SETTINGS_PAST_BOUNDS[_arch(path)],
        ({"settings.seed": -1}, "seed"),
        ({("update_shapes", "fc.weight"): [2**40, 2]}, "update_shapes.fc.weight.0"),
        ({("update_shapes", "fc.weight"): [1] * 9}, "update_shapes.fc.weight"),
        ({"arch": "factory"}, "inverter.arch"),
    ]
    out = tmp_path / "r.safetensors"
    for index, (change, field) in enumerate(cases):
        bad = _with_meta(path, tmp_path / f"bad{index}.safetensors", "inverter", change)
        for command in (["inspect", bad], ["invert", update, "--attack", "git", "--inverter", bad]):
            result = run(*command, *(["--out", out] if command[0] == "invert" else []))
            assert check_outcome(result, f"{command[0]} {change}", out) == 65
            assert "invalid inverter metadata" in result.stderr and field in result.stderr
    bad = _with_meta(path, tmp_path / "batch.safetensors", "template", {"batch_size": 10**6})
    result = run("inspect", bad)
    assert check_outcome(result, "template batch") == 65 and "batch_size" in result.stderr
    assert real_builds == []


def test_an_inverter_whose_weights_do_not_fit_its_metadata_is_never_built(
    inverter_file: tuple[Path, Path], tmp_path: Path, real_builds: list
):
    # the case: an MLP declaring huge hidden sizes made inspect allocate 262 TB
    path, update = inverter_file
    change = {"settings.width": 1024} if _arch(path) == "git" else {"settings.hidden": 16384}
    bad = _with_meta(path, tmp_path / "wide.safetensors", "inverter", change)
    out = tmp_path / "r.safetensors"
    for command in (["inspect", bad], ["invert", update, "--attack", "git", "--inverter", bad]):
        result = run(*command, *(["--out", out] if command[0] == "invert" else []))
        assert check_outcome(result, command[0], out) == 65
        assert "the weights do not fit the inverter its metadata describes" in result.stderr
    assert real_builds == []


def test_inspect_describes_an_inverter_without_building_it(
    inverter_file: tuple[Path, Path], real_builds: list
):
    path, _ = inverter_file
    result = run("inspect", path, "--json")
    assert check_outcome(result, "inspect") == 0
    summary = json.loads(result.stdout)
    settings = dict(summary["inverter"])
    arch = settings.pop("arch")
    expected = build_inverter(arch, make_update(count=1, labels=[1], size=8)[0], settings)
    assert summary["parameters"] == sum(p.numel() for p in expected.parameters())
    assert (
        summary["template"]["batch_size"] == 1 and summary["template"]["model"]["arch"] == "convnet"
    )
    assert real_builds == [type(expected).__name__]  # only the independent one built here


# ---------------------------------------------------------------- memory (exit 69)


def test_every_path_that_allocates_from_a_file_checks_memory_first(
    inverter_file: tuple[Path, Path], generator_file: Path, update32: Path, tmp_path: Path
):
    inverter, update = inverter_file
    out = tmp_path / "out.safetensors"
    folder = tmp_path / "images"  # images without a labels map: train-inverter draws labels
    folder.mkdir()
    for image in Path("samples/images32").glob("*.png"):
        shutil.copy(image, folder)
    small = ["--max-memory", "1KB"]
    commands = {
        "invert --attack git": ["invert", update, "--attack", "git", "--inverter", inverter],
        "invert": ["invert", update, "--attack", "ig", "--init", "git", "--inverter", inverter],
        "inspect": ["inspect", update],
        "import": [
            "import", "--gradient", tmp_path / "g.pt", "--model", "convnet", "--input-shape",
            "3,8,8", "--num-classes", 4,
        ],
        "train-inverter": ["train-inverter", update, "--images", folder, "--pairs", 4],
        "learn-prior": ["learn-prior", update32, "--generator", generator_file],
    }  # fmt: skip
    torch.save({"fc.weight": torch.zeros(4, 4)}, tmp_path / "g.pt")
    for what, command in commands.items():
        result = run(*command, *small, "--out", out) if what != "inspect" else run(*command, *small)
        assert check_outcome(result, what, out) == 69, what
        assert f"{what.split()[0]}" in result.stderr and "--max-memory" in result.stderr, what
    for what in ("inspect", "invert --attack git"):  # and with room, they run
        result = run(*commands[what], *(["--out", out] if what != "inspect" else []))
        assert check_outcome(result, what) == 0, result.stderr


# ---------------------------------------------------------------- labels files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"labels": [1, -1]}', "labels.1: Input should be greater than or equal to 0"),
        ('{"labels": [1, true]}', "labels.1"),
        ('{"labels": [1, 2], "batch_size": 3}', "batch_size 3 but 2 labels"),
        ('{"labels": [1, 1e30]}', "labels.1"),
        ("[1, 2.5]", "1:"),
        ('{"method": "x"}', "labels: missing"),
        ("{not json", "not a JSON labels file"),
    ],
)
def test_labels_files_are_validated(tmp_path: Path, content: str, message: str):
    path = tmp_path / "l.json"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        parse_labels(str(path))


def test_a_labels_file_past_the_size_cap_is_refused_unread(tmp_path: Path):
    from gradinvert.io.file_schemas import MAX_JSON_BYTES

    path = tmp_path / "big.json"
    with path.open("wb") as handle:  # sparse: no 16 MB written
        handle.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(InvalidInputError, match="more than the 16777216 gradinvert reads"):
        parse_labels(str(path))
    path.write_text('{"labels": [3, 1], "batch_size": 2, "method": "given"}')
    assert parse_labels(str(path)) == [3, 1]


# ---------------------------------------------------------------- fuzz


def _fuzz(
    path: Path, names: list[str], keys: list[str], seed: int, sizes: int = 32
) -> list[tuple[str, bytes]]:
    """The corpus of ``path`` and a seeded sample of ``sizes`` of its size mutations."""
    import random

    from hostile_corpus import corpus, size_mutations

    tensors, metadata = read_raw(path)
    every = list(size_mutations(tensors, metadata, keys))
    sample = random.Random(seed).sample(every, min(sizes, len(every)))
    return [*corpus(path, names, seed, flips=8, cuts=4), *sample]


def _outcomes(mutations: list, tmp_path: Path, second: Callable, every: int = 4) -> Counter:
    """Exit codes of ``inspect`` on every mutation and of ``second(path, out)`` on every
    ``every``-th, each checked to be a clean, documented outcome."""
    codes: Counter[int] = Counter()
    for index, (name, data) in enumerate(mutations):
        path = tmp_path / f"{index:03d}.safetensors"
        path.write_bytes(data)
        codes[check_outcome(run("inspect", path, "--json"), f"inspect {name}")] += 1
        if index % every == 0:
            out = tmp_path / f"{index:03d}.r.safetensors"
            codes[check_outcome(second(path, out), f"{name} ({second.__name__})", out)] += 1
    return codes


def test_hostile_generator_files_end_cleanly(generator_file: Path, update32: Path, tmp_path: Path):
    mutations = _fuzz(generator_file, ["param.main.0.weight", "buffer.main.1.running_var"],
                      ["generator"], seed=16)  # fmt: skip

    def invert(path: Path, out: Path):  # noqa: ANN202
        return _invert_z(update32, path, out)

    codes = _outcomes(mutations, tmp_path, invert)
    assert len(mutations) > 90 and codes[65] > len(mutations) // 2 and codes[0] > 10


def test_hostile_inverter_files_end_cleanly(inverter_file: tuple[Path, Path], tmp_path: Path):
    path, update = inverter_file
    state = sorted(k for k in read_raw(path)[0] if k.startswith("state."))
    mutations = _fuzz(path, [state[0], state[-1], "template.param.fc.weight"],
                      ["inverter", "template"], seed=17)  # fmt: skip

    def invert_git(bad: Path, out: Path):  # noqa: ANN202
        return run("invert", update, "--attack", "git", "--inverter", bad, "--out", out)

    codes = _outcomes(mutations, tmp_path, invert_git)
    assert len(mutations) > 100 and codes[65] > len(mutations) // 2 and codes[0] > 10


def test_stretched_pt_views_are_refused_everywhere_a_pt_is_read(tmp_path: Path):
    from hostile_corpus import stretched_views

    from gradinvert.models import build_model, model_spec

    model = build_model(model_spec("convnet", 4, (3, 8, 8), width=4), init_seed=0)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    before = tmp_path / "before.pt"
    torch.save(state, before)
    args = ["--model", "convnet", "--num-classes", 4, "--input-shape", "3,8,8"]
    cases = list(stretched_views(state))
    for index, (name, hostile) in enumerate(cases):
        path = tmp_path / f"{index:03d}.pt"
        torch.save(hostile, path)
        out = tmp_path / f"{index:03d}.safetensors"
        result = run("import", "--before", before, "--after", path, *args, "--out", out)
        assert check_outcome(result, f"import {name}", out) == 65
        assert "stretched view" in result.stderr or "overlaps the bytes" in result.stderr, name
    assert len(cases) > 15


# ---------------------------------------------------------------- checkpoints


@pytest.fixture
def invert_checkpoint(tmp_path: Path) -> tuple[list, Path, dict]:
    """The CLI arguments of a finished 2-iteration invert run with --checkpoint, and its state."""
    update, _, _ = make_update(count=2, labels=[1, 3])
    save_update(update, tmp_path / "u.safetensors")
    ckpt = tmp_path / "run.ckpt"
    args = ["invert", tmp_path / "u.safetensors", "--attack", "ig", "--iterations", 2,
            "--seeds", 2, "--labels", "1,3", "--no-progress", "--checkpoint", ckpt,
            "--checkpoint-every", 1]  # fmt: skip
    assert check_outcome(run(*args, "--out", tmp_path / "first.safetensors"), "first run") == 0
    return args, ckpt, torch.load(ckpt, weights_only=True)


def _spoiled_checkpoints(state: dict) -> Iterator[tuple[str, dict, str]]:
    """Copies of an invert checkpoint's state, each spoiled one way, with the expected message."""
    name, value = next(iter(state["params"].items()))
    yield "param shape", {**state, "params": {name: value[:1]}}, "parameters do not fit this run"
    yield "param dtype", {**state, "params": {name: value.double()}}, "of wrong dtype"
    yield "iteration type", {**state, "iteration": "4"}, "iteration: Input should be"
    yield "negative iteration", {**state, "iteration": -1}, "iteration: Input should be"
    yield "history", {**state, "history": "{not json"}, "history: Invalid JSON"
    yield "extra key", {**state, "payload": 1}, "payload: Extra inputs"
    yield "format", {**state, "format": "other"}, "not a gradinvert invert checkpoint"
    optimizer = state["optimizer"]
    moments = {k: {**v, "exp_avg": v["exp_avg"].flatten()} for k, v in optimizer["state"].items()}
    spoiled = {**state, "optimizer": {**optimizer, "state": moments}}
    yield "adam moments", spoiled, "optimizer exp_avg of parameter 0 has shape"
    stretched = {**state, "params": {name: torch.zeros(1).expand(value.shape)}}
    yield "stretched", stretched, "stretched view"


def test_hostile_checkpoints_are_refused_before_anything_is_loaded(
    invert_checkpoint: tuple[list, Path, dict], tmp_path: Path
):
    args, ckpt, state = invert_checkpoint
    assert state["optimizer"]["state"], "Adam's moments are in the checkpoint"
    for case, spoiled, message in _spoiled_checkpoints(state):
        bad = tmp_path / "bad.ckpt"
        torch.save(spoiled, bad)
        out = tmp_path / "out.safetensors"
        changed = [bad if a == ckpt else a for a in args]
        result = run(*changed, "--resume", "--out", out)
        assert check_outcome(result, case, out) == 65, case
        assert message in result.stderr, (case, result.stderr)


def test_train_prior_checkpoints_need_a_permutation_of_the_images(tmp_path: Path):
    args = ["train-prior", "--images", "samples/images32", "--size", 32, "--epochs", 1,
            "--batch-size", 16, "--no-progress", "--checkpoint", tmp_path / "p.ckpt",
            "--out", tmp_path / "g.safetensors"]  # fmt: skip
    assert check_outcome(run(*args), "train-prior") == 0
    state = torch.load(tmp_path / "p.ckpt", weights_only=True)
    count = len(list(Path("samples/images32").glob("*.png")))
    for case, perm in [("repeats", torch.zeros(count, dtype=torch.long)),
                       ("too short", torch.arange(count - 1)),
                       ("floats", torch.arange(count).float())]:  # fmt: skip
        torch.save({**state, "perm": perm, "epoch": 0, "epoch_step": 1}, tmp_path / "p.ckpt")
        result = run(*args, "--resume")
        assert check_outcome(result, case) == 65 and "image order does not fit" in result.stderr
