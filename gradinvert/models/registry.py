"""Model registry: small literature models, torchvision classifiers, and user import paths.

A ``package.module:factory`` path is imported only when the run trusts it
(:mod:`gradinvert.models.trust`): files name architectures, never code to run.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradinvert.io.tensorfile import load_pt, read_header, read_tensors
from gradinvert.models.fit import tensor_problems
from gradinvert.models.small import ConvNet, LeNet, cifar_resnet18, group_norm
from gradinvert.models.spec import ModelSpec
from gradinvert.models.trust import require_trusted
from gradinvert.runtime.errors import InvalidInputError, UsageError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that registers a factory ``f(num_classes=..., **kwargs) -> nn.Module``."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


@register("lenet")
def _lenet(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return LeNet(num_classes, in_channels, image_size)


@register("convnet")
def _convnet(
    num_classes: int, in_channels: int = 3, width: int = 32, image_size: int = 32
) -> nn.Module:
    return ConvNet(num_classes, in_channels, width, image_size)


@register("convnet-gn")
def _convnet_gn(
    num_classes: int, in_channels: int = 3, width: int = 32, image_size: int = 32
) -> nn.Module:
    return ConvNet(num_classes, in_channels, width, image_size, norm="group")


@register("cifar-resnet18")
def _cifar_resnet18(num_classes: int) -> nn.Module:
    return cifar_resnet18(num_classes)


@register("cifar-resnet18-gn")
def _cifar_resnet18_gn(num_classes: int) -> nn.Module:
    return cifar_resnet18(num_classes, norm="group")


@register("resnet18-gn")
def _resnet18_gn(num_classes: int) -> nn.Module:
    import torchvision.models

    return torchvision.models.resnet18(num_classes=num_classes, norm_layer=group_norm)


@register("resnet50-gn")
def _resnet50_gn(num_classes: int) -> nn.Module:
    import torchvision.models

    return torchvision.models.resnet50(num_classes=num_classes, norm_layer=group_norm)


def torchvision_models() -> list[str]:
    """Names of torchvision's classification architectures."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def available_models() -> list[str]:
    """Every name ``--model`` accepts (besides ``package.module:factory`` paths)."""
    return sorted(_REGISTRY) + torchvision_models()


def model_spec(
    arch: str, num_classes: int, input_shape: tuple[int, int, int], **kwargs: Any
) -> ModelSpec:
    """Build the spec for ``arch``, adding the input-dependent arguments some models need."""
    if num_classes < 1:
        raise UsageError("--num-classes must be at least 1")
    if arch in ("lenet", "convnet", "convnet-gn"):
        kwargs.setdefault("in_channels", input_shape[0])
        kwargs.setdefault("image_size", input_shape[1])
    spec = ModelSpec(arch, num_classes, kwargs)
    _factory(spec.arch)  # fail early on an unknown name
    return spec


def _factory(arch: str, origin: str | None = None) -> ModelFactory:
    """The constructor ``arch`` names; ``origin`` is the file it comes from, if any."""
    if arch in _REGISTRY:
        return _REGISTRY[arch]
    if ":" in arch:
        return import_factory(arch, origin=origin)
    import torchvision.models

    if arch in torchvision_models():

        def build(num_classes: int, **kwargs: Any) -> nn.Module:
            return torchvision.models.get_model(
                arch, weights=None, num_classes=num_classes, **kwargs
            )

        return build
    raise UsageError(
        f"unknown model {arch!r}: use one of {', '.join(sorted(_REGISTRY))}, a torchvision "
        "classifier (resnet18, resnet50, vgg11, ...) or package.module:factory"
    )


def import_factory(
    path: str, what: str = "model", origin: str | None = None, own: str | None = None
) -> Callable[..., Any]:
    """The callable a ``package.module:factory`` path names (``what`` names it in errors).

    Refused (:class:`~gradinvert.models.trust.UntrustedCodeError`) before anything is imported
    unless the run trusts ``path``; ``origin`` is the file that names it and ``own`` the
    command-line words that would vouch for it (default ``--model PATH``).
    """
    require_trusted(path, origin, own or f"--model {path}")
    error = UsageError if origin is None else InvalidInputError
    where = f"{what} {path!r}" if origin is None else f"{origin}: {what} {path!r}"
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError, TypeError) as exc:  # an empty or relative module name
        raise error(f"{where}: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise error(f"{where}: {module_name!r} has no callable {attr!r}")
    return factory


def build_model(spec: ModelSpec, init_seed: int | None = 0) -> nn.Module:
    """Instantiate the model; weights are seeded with ``init_seed`` when it is given."""
    factory = _factory(spec.arch, spec.origin)
    with torch.random.fork_rng(devices=[]):
        if init_seed is not None:
            torch.manual_seed(init_seed)
        try:
            model = factory(num_classes=spec.num_classes, **spec.kwargs)
        except TypeError as exc:
            raise UsageError(f"model {spec.arch!r}: bad constructor arguments ({exc})") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"model {spec.arch!r}: factory returned {type(model).__name__}")
    return model


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a ``.pt`` file, its sizes checked against the bytes the
    file holds before any value is read (:mod:`gradinvert.io.tensorfile`); ``.pt`` values stay
    mapped from the file until used, so a caller compares names and shapes first."""
    if Path(path).suffix == ".safetensors":
        state: Any = read_tensors(read_header(path))
    else:
        state = load_pt(path, "weights file")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InvalidInputError(f"{path}: not a state dict of tensors")
    return state


def state_problems(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """How ``state`` fails to fit ``model``'s state dict exactly (empty when it fits): names and
    shapes (values are converted on loading; the model may live on the meta device)."""
    return tensor_problems(model.state_dict(), state, check_dtype=False, check_finite=False)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a complete state dict; anything that does not fit exactly is an error."""
    problems = state_problems(model, state)
    if problems:
        raise InvalidInputError(f"{source}: weights do not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
