"""No code named by a file is imported unless the user vouches for it, and the current folder is
never on the import path (DESIGN.md §10).

The hostile files are written here from scratch with safetensors (no gradinvert writer): an
update whose model is ``logging:basicConfig`` with keyword arguments that would empty a victim
file, and files naming ``evilmod:make``, a module whose import and call leave marker files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from invert_support import make_update
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from gradinvert.cli.entry import import_path_without_cwd
from gradinvert.cli.main import app
from gradinvert.io.files import load_update, save_update
from gradinvert.labels import restore_labels
from gradinvert.models import UntrustedCodeError, trust_code
from gradinvert.models.restore import model_from_update

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "images32"
EVIL = "evilmod:make"
LOGGING = "logging:basicConfig"
SHAPE = (3, 4, 4)
LABEL = 2

EVIL_SOURCE = """
import pathlib
pathlib.Path({imported!r}).write_text("imported")
from torch import nn


def make(num_classes=4):
    pathlib.Path({called!r}).write_text("called")
    return nn.Sequential(nn.Flatten(), nn.Linear(48, num_classes))
"""


class Scene:
    """A folder with the hostile files, a victim file and the marker paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.code = root / "code"
        self.code.mkdir()
        self.imported, self.called = root / "imported.marker", root / "called.marker"
        self.victim = root / "victim.txt"
        self.victim.write_bytes(b"the auditor's notes\n")
        self.out = root / "out"
        self.out.mkdir()

    def markers(self) -> list[str]:
        return [p.name for p in (self.imported, self.called) if p.exists()]

    def nothing_ran(self) -> bool:
        return not self.markers() and self.victim.read_bytes() == b"the auditor's notes\n"


def write_module(folder: Path, name: str, imported: Path, called: Path) -> None:
    (folder / f"{name}.py").write_text(
        EVIL_SOURCE.format(imported=str(imported), called=str(called))
    )


def _meta(file: str, **fields: object) -> dict[str, str]:
    meta = {"gradinvert.file": file, "gradinvert.schema": "1"}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})
    return meta


MODEL_INPUT = {"shape": list(SHAPE), "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def write_update(path: Path, arch: str, **kwargs: object) -> Path:
    """A one-image gradient of a flatten + linear classifier whose ``model.arch`` is ``arch``."""
    layer = nn.Linear(48, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-1, 1, 192).reshape(4, 48))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    image = torch.linspace(0, 1, 48).reshape(1, *SHAPE)
    loss = F.cross_entropy(layer(image.flatten(1)), torch.tensor([LABEL]))
    grad_w, grad_b = torch.autograd.grad(loss, [layer.weight, layer.bias])
    tensors = {
        "grad.1.weight": grad_w.contiguous(),
        "grad.1.bias": grad_b.contiguous(),
        "param.1.weight": layer.weight.detach().clone(),
        "param.1.bias": layer.bias.detach().clone(),
    }
    model = {"arch": arch, "num_classes": 4, "kwargs": kwargs}
    save_file(tensors, str(path), _meta("update", kind="gradient", model=model,
                                        input=MODEL_INPUT, batch_size="1"))  # fmt: skip
    return path


def write_batch(path: Path) -> Path:
    images = torch.linspace(0, 1, 48).reshape(1, *SHAPE)
    save_file({"images": images, "labels": torch.tensor([LABEL])}, str(path), _meta("batch"))
    return path


def write_generator(path: Path, factory: str) -> Path:
    arch = {"name": "factory", "factory": factory}
    save_file(
        {"param.w": torch.zeros(3)}, str(path), _meta("generator", generator=arch, training={})
    )
    return path


def write_inverter(path: Path, arch: str) -> Path:
    info = {"arch": "git", "settings": {}, "update_shapes": {"1.weight": [4, 48], "1.bias": [4]}}
    template = {"kind": "gradient", "model": {"arch": arch, "num_classes": 4, "kwargs": {}},
                "input": MODEL_INPUT, "mode": "eval", "batch_size": 1, "local": None,
                "defense": []}  # fmt: skip
    tensors = {
        "state.w": torch.zeros(3),
        "template.param.1.weight": torch.zeros(4, 48),
        "template.param.1.bias": torch.zeros(4),
    }
    save_file(tensors, str(path), _meta("inverter", inverter=info, template=template, training={}))
    return path


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    """``evilmod`` is importable (its folder on sys.path), so only the policy stops it."""
    here = Scene(tmp_path)
    write_module(here.code, "evilmod", here.imported, here.called)
    monkeypatch.syspath_prepend(str(here.code))
    sys.modules.pop("evilmod", None)
    yield here
    sys.modules.pop("evilmod", None)


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def _commands(scene: Scene, update: Path) -> dict[str, list[object]]:
    """Every command that builds the model an update file describes, writing into ``out``."""
    out = scene.out
    recon = write_batch(scene.root / "recon.safetensors")
    truth = write_batch(scene.root / "truth.safetensors")
    return {
        "labels": ["labels", update, "--out", out / "labels.json"],
        "invert": ["invert", update, "--attack", "ig", "--iterations", 2, "--seeds", 1,
                   "--out", out / "r.safetensors", "--device", "cpu"],
        "evaluate": ["evaluate", recon, "--truth", truth, "--update", update, "--lpips", "off",
                     "--json", out / "scores.json"],
        "learn-prior": ["learn-prior", update, "--generator", "dcgan", "--tasks", 1,
                        "--out", out / "G.safetensors", "--device", "cpu", "--no-progress"],
        "train-inverter": ["train-inverter", update, "--images", SAMPLES, "--size", 4,
                           "--arch", "mlp", "--pairs", 4, "--epochs", 1,
                           "--out", out / "inv.safetensors", "--device", "cpu", "--no-progress"],
    }  # fmt: skip


def refusal(path: Path, factory: str, own: str | None = None) -> str:
    """The one line a refused file gets."""
    own = own or f"--model {factory}"
    return (
        f"{path}: names code ({factory}); pass --trust-code to run it, or {own} if it is your own"
    )


def assert_refused(result, scene: Scene, line: str) -> None:  # noqa: ANN001
    assert result.exit_code == 65, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [f"error: {line}"]
    assert scene.nothing_ran(), scene.markers()
    assert list(scene.out.iterdir()) == []  # no output, no temporary file


@pytest.mark.parametrize(
    "command", ["labels", "invert", "evaluate", "learn-prior", "train-inverter"]
)
@pytest.mark.parametrize("arch", [LOGGING, EVIL])
def test_a_file_naming_code_is_refused_and_nothing_runs(
    scene: Scene, command: str, arch: str
) -> None:
    # logging.basicConfig opens (and empties) the file before it refuses num_classes
    empty_it = {"filename": str(scene.victim), "filemode": "w", "force": True}
    update = write_update(
        scene.root / "u.safetensors", arch, **(empty_it if arch == LOGGING else {})
    )
    result = invoke(*_commands(scene, update)[command])
    assert_refused(result, scene, refusal(update, arch))


@pytest.mark.parametrize("command", ["labels", "invert", "evaluate"])
@pytest.mark.parametrize("vouch", [["--trust-code"], ["--model", EVIL]])
def test_the_same_file_runs_when_the_user_vouches_for_its_factory(
    scene: Scene, command: str, vouch: list[str]
) -> None:
    update = write_update(scene.root / "u.safetensors", EVIL)
    result = invoke(*_commands(scene, update)[command], *vouch)
    assert result.exit_code == 0, result.output
    assert scene.markers() == ["imported.marker", "called.marker"]
    written = sorted(p.name for p in scene.out.iterdir())
    assert written == {"labels": ["labels.json"], "invert": ["r.safetensors"],
                       "evaluate": ["scores.json"]}[command]  # fmt: skip
    if command == "labels":
        assert json.loads((scene.out / "labels.json").read_text())["labels"] == [LABEL]


def test_capture_with_ones_own_factory_and_attacking_its_file(scene: Scene) -> None:
    update = scene.root / "u.safetensors"
    result = invoke("capture", "--images", SAMPLES, "--size", 4, "--batch-size", 1, "--labels",
                    LABEL, "--model", EVIL, "--num-classes", 4, "--out", update)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_update(update).model.arch == EVIL
    scene.imported.unlink()
    scene.called.unlink()
    sys.modules.pop("evilmod", None)
    assert_refused(invoke("labels", update), scene, refusal(update, EVIL))
    result = invoke("labels", update, "--model", EVIL)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"] == [LABEL]


def test_another_factory_on_the_command_line_does_not_vouch(scene: Scene) -> None:
    update = write_update(scene.root / "u.safetensors", EVIL)
    result = invoke("labels", update, "--model", "evilmod:other", "--out", scene.out / "l.json")
    assert_refused(result, scene, refusal(update, EVIL))


def test_generator_and_inverter_files_naming_code_are_refused(scene: Scene) -> None:
    update, _, _ = make_update(count=1, size=8, labels=[1])
    good = scene.root / "good.safetensors"
    save_update(update, good)
    generator = write_generator(scene.root / "g.safetensors", EVIL)
    inverter = write_inverter(scene.root / "inv.safetensors", EVIL)
    gias = [
        "invert",
        good,
        "--attack",
        "gias",
        "--generator",
        generator,
        "--seeds",
        1,
        "--latent-iterations",
        1,
        "--iterations",
        1,
        "--out",
        scene.out / "r.safetensors",
    ]
    learn = [
        "learn-prior",
        good,
        "--generator",
        generator,
        "--tasks",
        1,
        "--no-progress",
        "--out",
        scene.out / "G.safetensors",
    ]
    git = ["invert", good, "--attack", "git", "--inverter", inverter,
           "--out", scene.out / "r.safetensors"]  # fmt: skip
    own = f"--generator {EVIL} --generator-weights {generator}"
    for args in (gias, learn):
        assert_refused(invoke(*args), scene, refusal(generator, EVIL, own))
    assert_refused(invoke(*git), scene, refusal(inverter, EVIL))


def test_an_inverter_for_ones_own_model_is_used_with_model(tmp_path: Path) -> None:
    own = "models_for_tests:no_bias_head"  # a model GIT can mirror
    with trust_code(own):
        update, _, _ = make_update(own, count=1, size=8, labels=[1], width=4)
    path, inverter = tmp_path / "u.safetensors", tmp_path / "inv.safetensors"
    save_update(update, path)
    images = tmp_path / "images"  # without the folder's labels map: labels are drawn at random
    images.mkdir()
    for image in SAMPLES.glob("*.png"):
        shutil.copy(image, images)
    train = ["train-inverter", path, "--images", images, "--size", 8, "--pairs", 4, "--batch", 2,
             "--epochs", 1, "--out", inverter, "--device", "cpu", "--no-progress"]  # fmt: skip
    assert invoke(*train).exit_code == 65 and not inverter.exists()
    assert invoke(*train, "--model", own).exit_code == 0
    git = ["invert", path, "--attack", "git", "--inverter", inverter, "--device", "cpu"]
    refused = invoke(*git, "--out", tmp_path / "no.safetensors")
    assert refused.exit_code == 65 and refused.stderr.strip() == f"error: {refusal(inverter, own)}"
    result = invoke(*git, "--model", own, "--out", tmp_path / "r.safetensors")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.safetensors").exists() and not (tmp_path / "no.safetensors").exists()


def test_inspect_and_report_describe_without_importing(scene: Scene) -> None:
    files = {
        "update": write_update(scene.root / "u.safetensors", EVIL),
        "generator": write_generator(scene.root / "g.safetensors", EVIL),
        "inverter": write_inverter(scene.root / "inv.safetensors", EVIL),
    }
    for kind, path in files.items():
        result = invoke("inspect", path, "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["file"] == kind and summary["names_code"] == EVIL
        assert invoke("inspect", path).exit_code == 0  # the table too
    assert (
        json.loads(invoke("inspect", files["inverter"], "--json").stdout)["template"]["model"][
            "arch"
        ]
        == EVIL
    )
    scores = scene.root / "scores.json"
    scores.write_text(
        json.dumps({"summary": {"count": 1}, "images": [], "update": "u.safetensors"})
    )
    page = scene.root / "report.html"
    result = invoke("report", scores, "--out", page)
    assert result.exit_code == 0, result.output
    assert EVIL in page.read_text()  # shown as the run's model, never imported
    assert scene.nothing_ran(), scene.markers()


def test_library_readers_refuse_by_default_and_trust_code_opts_in(scene: Scene) -> None:
    path = write_update(scene.root / "u.safetensors", EVIL)
    update = load_update(path)  # reading describes; building imports
    for build in (model_from_update, restore_labels):
        with pytest.raises(UntrustedCodeError, match=f"{path}: names code"):
            build(update)
    assert scene.nothing_ran()
    with trust_code(EVIL):
        assert restore_labels(update).labels == [LABEL]
    assert scene.markers() == ["imported.marker", "called.marker"]
    with pytest.raises(UntrustedCodeError):  # the trust ended with the block
        model_from_update(update)


def test_the_flower_recorder_trusts_the_factory_its_caller_names(scene: Scene) -> None:
    pytest.importorskip("flwr", reason="the flower extra is not installed")
    from types import SimpleNamespace as Reply

    from flwr.app import ArrayRecord, MetricRecord
    from flwr.serverapp.strategy import FedAvg

    from gradinvert.integrations.flower import RecordUpdates

    # the caller's own code names the model: no trust_code needed around it
    recorder = RecordUpdates(FedAvg(), scene.out, model=EVIL, num_classes=4, input_shape=SHAPE)
    assert scene.markers() == ["imported.marker"]  # checked to exist; built per reply
    before = write_update(scene.root / "u.safetensors", EVIL)
    sent = {k[len("param.") :]: v for k, v in load_file(str(before)).items() if "param." in k}
    recorder.sent[1] = sent
    returned = {k: v + 0.01 for k, v in sent.items()}
    reply = Reply(  # the parts of a Flower reply the recorder reads
        metadata=Reply(src_node_id=7, message_id="m"),
        content=Reply(
            array_records={"arrays": ArrayRecord(returned)},
            metric_records={"metrics": MetricRecord({"num-examples": 1})},
        ),
    )
    path = recorder.record(1, reply)
    assert path is not None and load_update(path).model.arch == EVIL
    assert scene.markers() == ["imported.marker", "called.marker"]
    # what it wrote names the factory: attacking it takes the same vouching as any file
    assert invoke("labels", path).exit_code == 65
    assert invoke("labels", path, "--model", EVIL).exit_code == 0


# ------------------------------------------------------------------ the import path


@pytest.mark.parametrize(
    ("path", "pythonpath", "implicit", "kept"),
    [
        (["/w", "/lib"], "", True, ["/lib"]),  # python -m: the folder Python put first
        (["", "/lib"], "", True, ["/lib"]),  # python -c style
        (["/bin", "/w", "/lib"], ":/x", True, ["/bin", "/lib"]),  # an empty PYTHONPATH entry
        (["/bin", "/w", "/lib"], "/w", True, ["/bin", "/w", "/lib"]),  # named: stays
        (["/w", "/w", "/lib"], ".", True, ["/w", "/lib"]),  # -m's own entry still goes
        (["/w", "/lib"], "", False, ["/lib"]),  # python -P: no implicit entry, still not cwd
        (["/w/./", "/w/sub", "/lib"], "", False, ["/w/sub", "/lib"]),
    ],
)
def test_import_path_without_cwd(
    path: list[str], pythonpath: str, implicit: bool, kept: list[str]
) -> None:
    assert import_path_without_cwd(path, "/w", pythonpath, implicit) == kept


def _probe(folder: Path, record: Path) -> None:
    """``probe:make`` records the import path the CLI had when it called the user's code, and
    whether ``evilmod`` (delivered next to the update) could be found on it."""
    (folder / "probe.py").write_text(
        "import importlib.util, json, sys\nfrom torch import nn\n\n"
        "def make(num_classes=4):\n"
        "    found = importlib.util.find_spec('evilmod') is not None\n"
        f"    open({str(record)!r}, 'w').write(json.dumps([sys.path, found]))\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(48, num_classes))\n"
    )


def test_the_current_folder_is_never_on_the_import_path(tmp_path: Path) -> None:
    here = Scene(tmp_path)  # the folder a client's files were delivered to
    for shadow in ("rich", "typer", "torch", "safetensors"):  # would shadow what the CLI imports
        (tmp_path / f"{shadow}.py").write_text(f"open({str(here.imported)!r}, 'w')\n")
    write_module(tmp_path, "evilmod", here.imported, here.called)
    code, record = tmp_path / "code", tmp_path / "path.json"
    _probe(code, record)
    write_update(tmp_path / "u.safetensors", "probe:make")
    # python -m puts the folder first, and an empty PYTHONPATH entry puts it there again
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}"}
    argv = [sys.executable, "-m", "gradinvert", "labels", "u.safetensors", "--model", "probe:make"]
    result = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    path, evilmod_found = json.loads(record.read_text())
    seen = {os.path.realpath(os.path.join(tmp_path, p)) for p in path}
    assert str(tmp_path.resolve()) not in seen and str(code.resolve()) in seen
    assert not evilmod_found
    assert here.nothing_ran(), here.markers()  # no shadowing module was imported either


def test_the_console_script_starts_where_python_m_does() -> None:
    scripts = entry_points(group="console_scripts", name="gradinvert")
    assert [e.value for e in scripts] == ["gradinvert.cli.entry:main"]
    main = (Path(__file__).parents[1] / "gradinvert" / "__main__.py").read_text()
    assert "from gradinvert.cli.entry import main" in main
