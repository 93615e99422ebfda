"""Declared sizes against stored bytes: stretched and overlapping ``.pt`` views, safetensors
headers past the caps, refused before a value is read (DESIGN.md §10, tensorfile.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_hostile_files import check_outcome, run

from gradinvert.io.tensorfile import MAX_HEADER_BYTES, MAX_TENSORS, load_pt, read_header
from gradinvert.models import build_model, model_spec, read_state_dict
from gradinvert.runtime.errors import InvalidInputError

MODEL_ARGS = ["--model", "convnet", "--num-classes", 10, "--input-shape", "3,8,8"]


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    model = build_model(model_spec("convnet", 10, (3, 8, 8)), init_seed=seed)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _stretched(state: dict[str, torch.Tensor], name: str, count: int) -> dict[str, torch.Tensor]:
    """``state`` with ``name`` replaced by one stored value presented as ``count`` elements."""
    return {**state, name: torch.zeros(1).expand(count)}


def test_a_stretched_view_is_refused_at_once_with_memory_about_the_files_size(tmp_path: Path):
    # the case: one stored value presented as a tensor of 10⁹ elements (4 GB)
    state = _state()
    torch.save(state, tmp_path / "before.pt")
    torch.save(_stretched(state, "fc.weight", 10**9), tmp_path / "after.pt")
    assert (tmp_path / "after.pt").stat().st_size < 300_000
    out = tmp_path / "d.safetensors"
    script = (
        "import resource, sys, typer\n"
        "from gradinvert.cli.main import app\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    typer.main.get_command(app).main(args=sys.argv[1:], prog_name='gradinvert')\n"
        "    code = 0\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(code, grown)\n"  # kilobytes on Linux
    )
    args = ["import", "--before", tmp_path / "before.pt", "--after", tmp_path / "after.pt"]
    args += [*MODEL_ARGS, "--out", out]
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    code, grown_kb = map(int, done.stdout.split())
    assert code == 65, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "after.pt: fc.weight: declares 1000000000 elements" in lines[0]
    assert "stretched view" in lines[0] and "Traceback" not in done.stderr
    assert grown_kb < 200_000  # materialized, the view alone would be 4 GB
    assert not out.exists()


def _pt(tmp_path: Path, name: str, value: object) -> Path:
    path = tmp_path / name
    torch.save(value, path)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("stretched-expand", "declares 12 elements (48 B) over 16 B stored"),
        ("stride-zero-inside", "a view whose elements overlap"),
        ("overlapping", "b: overlaps the bytes of a"),
        ("transposed-alias", "overlaps the bytes of"),
        ("sparse", "only dense tensors"),
        ("deep", "more than 8 dimensions"),
    ],
)
def test_pt_views_that_claim_more_than_their_bytes_are_refused(
    tmp_path: Path, case: str, message: str
):
    base = torch.arange(10.0)
    w = torch.randn(4, 4)
    values = {
        # 4 stored values presented as a 4×3 tensor
        "stretched-expand": {"a": torch.randn(4, 1).expand(4, 3)},
        # as many elements as stored (6), but two of them share memory
        "stride-zero-inside": {"a": torch.as_strided(base, (2, 3), (0, 1), 2)},
        "overlapping": {"a": base[0:6], "b": base[4:10]},
        "transposed-alias": {"a": w, "b": w.t()},
        "sparse": {"a": torch.eye(3).to_sparse()},
        "deep": {"a": torch.zeros([1] * 9)},
    }
    path = _pt(tmp_path, "w.pt", values[case])
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_state_dict(path)


def test_exact_aliases_load_as_one_tensor_and_gaps_are_fine(tmp_path: Path):
    # tied weights: two names for the same bytes, shape and strides, as torch.save writes them
    w = torch.randn(4, 4)
    strided = torch.randn(10)[::2]  # every other value: gaps in the storage are harmless
    state = read_state_dict(_pt(tmp_path, "tied.pt", {"a": w, "b": w, "c": strided}))
    assert torch.equal(state["a"], w) and torch.equal(state["b"], w)
    assert state["a"].data_ptr() == state["b"].data_ptr()
    assert torch.equal(state["c"], strided)


def test_pt_files_that_are_not_plain_torch_save_files_are_refused(tmp_path: Path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02}q\x00." * 10)
    good = _pt(tmp_path, "good.pt", {"a": torch.ones(2)})
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    for path, message in [
        (garbage, "cannot read it as a torch.save file"),
        (deflated, "compressed entries"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            load_pt(path)
    assert torch.equal(load_pt(good)["a"], torch.ones(2))


def test_legacy_pt_files_are_read_and_checked_the_same_way(tmp_path: Path):
    # torch < 1.6's format (torchvision's older weights): not mapped, but the same checks
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_pt(legacy)["a"], torch.ones(2))
    stretched = tmp_path / "stretched.pt"
    value = {"a": torch.zeros(1).expand(10**6)}
    torch.save(value, stretched, _use_new_zipfile_serialization=False)
    with pytest.raises(InvalidInputError, match="a: declares 1000000 elements"):
        load_pt(stretched)


def test_a_pickled_callable_never_runs(tmp_path: Path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = _pt(tmp_path, "evil.pt", {"a": torch.ones(2), "b": Payload()})
    with pytest.raises(InvalidInputError, match="cannot read it as a torch.save file"):
        load_pt(path)
    assert not marker.exists()


@pytest.mark.parametrize("role", ["--after", "--gradient"])
def test_import_refuses_hostile_views_in_one_line(tmp_path: Path, role: str):
    state = _state()
    before = _pt(tmp_path, "before.pt", state)
    grads = {n: torch.zeros_like(v) for n, v in state.items() if "running" not in n}
    grads = {n: v for n, v in grads.items() if "num_batches" not in n}
    given = grads if role == "--gradient" else state
    base = torch.zeros(given["fc.bias"].numel() + 5)
    hostile = {
        **given,
        "fc.bias": base[5:],
        "features.1.bias": base[: given["features.1.bias"].numel()],
    }
    path = _pt(tmp_path, "hostile.pt", hostile)
    out = tmp_path / "u.safetensors"
    result = run("import", "--before", before, role, path, *MODEL_ARGS, "--out", out)
    assert check_outcome(result, f"import {role}", out) == 65
    assert "overlaps the bytes of" in result.stderr


def test_invert_refuses_stretched_generator_weights(tmp_path: Path):
    from invert_support import make_update

    from gradinvert.generators.dcgan import DCGANGenerator
    from gradinvert.io.files import save_update

    update, _, _ = make_update(count=1, labels=[1], size=32)
    save_update(update, tmp_path / "u.safetensors")
    state = DCGANGenerator(size=32, channels=3, ngf=4).state_dict()
    name = "main.0.weight"
    state = {**state, name: torch.zeros(1).expand(state[name].shape)}
    weights = _pt(tmp_path, "g.pt", state)
    out = tmp_path / "r.safetensors"
    result = run(
        "invert", tmp_path / "u.safetensors", "--attack", "ig", "--iterations", 1, "--seeds", 1,
        "--search", "z", "--generator", "dcgan", "--generator-weights", weights, "--out", out,
    )  # fmt: skip
    assert check_outcome(result, "invert --generator-weights", out) == 65
    assert "g.pt: main.0.weight: declares" in result.stderr


# ---------------------------------------------------------------- safetensors caps


def _raw_safetensors(
    entries: dict[str, dict], metadata: dict[str, str], data: bytes = b""
) -> bytes:
    header = json.dumps({"__metadata__": metadata, **entries}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


def test_a_hundred_thousand_empty_tensors_are_refused_fast(tmp_path: Path):
    from invert_support import make_update

    from gradinvert.io.files import save_update
    from gradinvert.io.tensorfile import read_metadata

    update, _, _ = make_update(count=1, labels=[1], size=8)
    save_update(update, tmp_path / "valid.safetensors")
    metadata = read_metadata(tmp_path / "valid.safetensors")
    empty = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    entries = {f"grad.t{i}": empty for i in range(100_000)}
    path = tmp_path / "many.safetensors"
    path.write_bytes(_raw_safetensors(entries, metadata))
    for command in (["labels", path], ["inspect", path], ["invert", path, "--out", "r.st"]):
        started = time.perf_counter()
        result = run(*command)
        seconds = time.perf_counter() - started
        assert check_outcome(result, command[0]) == 65
        assert f"holds 100000 tensors, more than the {MAX_TENSORS}" in result.stderr
        assert seconds < 2.0, (command[0], seconds)  # was 8 s and 250 MB


def test_a_header_length_past_the_cap_is_refused_before_parsing(tmp_path: Path):
    path = tmp_path / "huge-header.safetensors"
    path.write_bytes((MAX_HEADER_BYTES + 8).to_bytes(8, "little") + b"{" * 64)
    with pytest.raises(InvalidInputError, match="its header declares 16.8 MB"):
        read_header(path)
    deep = tmp_path / "deep.safetensors"
    save_file({"a": torch.zeros([1] * 9)}, str(deep))
    with pytest.raises(InvalidInputError, match="more than 8 dimensions"):
        read_header(deep)
    odd = tmp_path / "odd.safetensors"
    entries = {"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}
    odd.write_bytes(_raw_safetensors(entries, {}, b"\x00"))
    with pytest.raises(InvalidInputError, match="dtype F4"):
        read_header(odd)
    wide = tmp_path / "wide.safetensors"
    save_file(
        {"a": torch.zeros(3, dtype=torch.uint32), "b": torch.zeros(2, dtype=torch.complex64)},
        str(wide),
    )
    assert read_header(wide).bytes() == 3 * 4 + 2 * 8


@pytest.mark.parametrize("arch", ["resnet152", "vit_l_16", "efficientnet_b7"])
def test_the_caps_are_generous_for_real_models(arch: str):
    """An update file of a large ImageNet classifier: grad, param, buffer and bnstat entries."""
    with torch.device("meta"):
        model = build_model(model_spec(arch, 1000, (3, 224, 224)), init_seed=None)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    bn = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    names = [f"grad.{n}" for n in params] + [f"param.{n}" for n in params]
    names += [f"buffer.{n}" for n in buffers]
    names += [f"bnstat.{n}.{s}" for n in bn for s in ("mean", "var")]
    shapes = {**params, **buffers}

    def entry(name: str) -> dict[str, object]:
        shape = shapes.get(name.split(".", 1)[1])
        return {"dtype": "F32", "shape": [1] if shape is None else list(shape.shape)}

    entries = {name: {**entry(name), "data_offsets": [0, 0]} for name in names}
    header = json.dumps({"__metadata__": {"model": "x" * 2000}, **entries}).encode()
    assert len(names) < MAX_TENSORS / 5
    assert len(header) < MAX_HEADER_BYTES / 20
