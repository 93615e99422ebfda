"""Resolve ``--generator``: a named architecture, a generator file, or a user's factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradinvert.generators.dcgan import SIZES, DCGANGenerator, dcgan_init_
from gradinvert.generators.store import FILE_KIND, load_generator_file
from gradinvert.io.files import is_gradinvert_file
from gradinvert.models.registry import import_factory, load_state, read_state_dict
from gradinvert.models.trust import require_trusted
from gradinvert.runtime.errors import InvalidInputError, MissingInputError, UsageError

NAMED = ("dcgan",)
FACTORY = "factory"  # the architecture name of a generator file made from a user factory


@dataclass
class Generator:
    """A frozen generator in eval mode: latents ``B×latent_shape`` → images in [-1, 1]."""

    module: nn.Module
    latent_shape: tuple[int, ...]
    source: dict[str, Any] = field(default_factory=dict)  # recorded in the output's metadata

    def sample_latents(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` latents drawn from N(0, I) on the CPU generator (device-independent)."""
        return torch.randn((count, *self.latent_shape), generator=generator)

    @torch.no_grad()
    def output_shape(self) -> tuple[int, ...]:
        """C, H, W of one generated image."""
        device = next(iter(self.module.parameters()), torch.empty(0)).device
        z = torch.zeros((1, *self.latent_shape), device=device)
        return tuple(self.module(z).shape[1:])


def _build_dcgan(input_shape: tuple[int, int, int], seed: int) -> nn.Module:
    channels, height, width = input_shape
    if height != width or height not in SIZES:
        raise InvalidInputError(
            f"--generator dcgan makes {' or '.join(map(str, SIZES))} px square images; the "
            f"update's input is {height}x{width}: train or pass a generator of that size"
        )
    module = DCGANGenerator(size=height, channels=channels)
    dcgan_init_(module, torch.Generator().manual_seed(seed))
    return module


def _import_factory(spec: str) -> nn.Module:
    made = import_factory(spec, "--generator", own=f"--generator {spec}")()
    if not isinstance(made, nn.Module):
        raise UsageError(f"--generator {spec!r}: the factory returned {type(made).__name__}")
    return made


def _from_file(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    stored = load_generator_file(path)
    arch = dict(stored.arch)
    name = arch.pop("name")
    source: dict[str, Any] = {"file": str(path), "arch": stored.arch, "training": stored.training}
    if name == FACTORY:
        module = _recorded_factory(path, arch.get("factory"))
        source["factory"] = arch["factory"]
    elif name == "dcgan":
        try:
            module = DCGANGenerator(**arch)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{path}: bad generator architecture {stored.arch} ({exc})"
            ) from None
    else:
        raise InvalidInputError(f"{path}: unknown generator architecture {name!r}")
    load_state(module, stored.state, str(path))
    return module, source


def _recorded_factory(path: Path, spec: object) -> nn.Module:
    """The module a file's ``{"name": "factory", "factory": "pkg.mod:fn"}`` record names,
    built by importing that factory: only when the run trusts it (``--trust-code``), since the
    file may come from anyone; ``--generator pkg.mod:fn --generator-weights FILE`` is the way to
    use such a file with a factory the user names."""
    if not isinstance(spec, str) or ":" not in spec:
        raise InvalidInputError(f"{path}: the factory record needs 'factory': 'package.module:fn'")
    require_trusted(spec, str(path), f"--generator {spec} --generator-weights {path}")
    try:
        return _import_factory(spec)
    except UsageError as exc:
        raise InvalidInputError(
            f"{path}: its architecture is the factory {spec!r}, which does not load here "
            f"({exc.message}); put its package on PYTHONPATH"
        ) from None


def _weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict file's tensors, or a generator file's weights (its architecture record is
    not read: the generator is the one the command line names)."""
    if is_gradinvert_file(path, FILE_KIND):
        return load_generator_file(path).state
    return read_state_dict(path)


def arch_record(generator: Generator) -> dict[str, Any]:
    """The ``generator`` metadata a generator file stores so that it loads back: a DCGAN's
    constructor arguments, or ``{"name": "factory", "factory": "pkg.mod:fn"}`` for a module a
    user factory made (loading the file imports that factory again)."""
    module = generator.module
    if isinstance(module, DCGANGenerator):
        return module.arch()
    factory = generator.source.get("factory")
    if not isinstance(factory, str):
        raise ValueError(f"no architecture record for a {type(module).__name__}")
    return {"name": FACTORY, "factory": factory}


def load_generator(
    spec: str,
    input_shape: tuple[int, int, int],
    weights: str | Path | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Generator:
    """The generator ``spec`` names, checked to make images of ``input_shape`` (C, H, W).

    ``spec``: ``dcgan`` (untrained, DCGAN-initialised with ``seed``), a generator file written by
    ``train-prior``/``learn-prior``, or ``package.module:factory`` (a no-argument callable
    returning an ``nn.Module`` with a ``latent_shape`` attribute, output in [-1, 1]).
    ``weights``: a state dict (safetensors or ``.pt``) or a generator file, loaded into a named
    or imported generator. A factory is imported only when the run trusts it
    (:func:`gradinvert.models.trust_code`; on the command line ``--generator`` vouches for it).
    """
    path = Path(spec)
    if spec in NAMED:
        module = _build_dcgan(tuple(input_shape), seed)  # type: ignore[arg-type]
        source: dict[str, Any] = {"name": spec, "arch": module.arch(), "init_seed": seed}
    elif path.suffix == ".safetensors" or path.exists():
        if not path.exists():
            raise MissingInputError(f"{path}: no such generator file")
        if weights is not None:
            raise UsageError("--generator-weights goes with a named or imported generator")
        module, source = _from_file(path)
    elif ":" in spec:
        module = _import_factory(spec)
        source = {"factory": spec}
    else:
        raise UsageError(
            f"--generator {spec!r}: use dcgan, a generator file (.safetensors) or "
            "package.module:factory"
        )
    if weights is not None:
        load_state(module, _weights(weights), str(weights))
        source["weights"] = str(weights)
    latent_shape = getattr(module, "latent_shape", None)
    if not isinstance(latent_shape, tuple) or not all(
        isinstance(d, int) and d > 0 for d in latent_shape
    ):
        raise UsageError(
            f"--generator {spec!r}: the module needs a latent_shape attribute (a tuple of "
            "positive ints, e.g. (100, 1, 1))"
        )
    module = module.to(device).eval()
    for param in module.parameters():
        param.requires_grad_(False)
    generator = Generator(module, latent_shape, source)
    try:
        shape = generator.output_shape()
    except RuntimeError as exc:
        raise InvalidInputError(f"--generator {spec!r}: cannot run it ({exc})") from None
    if tuple(shape) != tuple(input_shape):
        raise InvalidInputError(
            f"--generator {spec!r} makes images of shape {tuple(shape)} (C, H, W); the update's "
            f"input is {tuple(input_shape)}"
        )
    return generator
