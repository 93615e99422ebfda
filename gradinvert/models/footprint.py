"""A model's size, checked against an update file without allocating it (the meta device).

The model an update file describes is built on PyTorch's ``meta`` device, where tensors have
shapes but no storage: a hostile description (a billion classes, a huge width) costs nothing.
Its state dict is compared with the file's tensors, and one meta forward pass counts the
activations a sample produces, for the memory estimates of :mod:`gradinvert.runtime.resources`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from gradinvert.io.files import UpdateFile
from gradinvert.models.registry import build_model, state_problems
from gradinvert.models.spec import ModelSpec
from gradinvert.models.trust import UntrustedCodeError
from gradinvert.runtime.errors import GradinvertError, InvalidInputError, one_line


@dataclass(frozen=True)
class Footprint:
    """Parameter elements, and activation elements per sample (None: not measurable)."""

    parameters: int
    activations: int | None


def _user_model(spec: ModelSpec) -> bool:
    return ":" in spec.arch


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Build on the meta device, quietly: a hostile size may make a constructor warn (e.g. of
    zero-element tensors), and its refusal must stay one line on stderr."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def meta_model(spec: ModelSpec) -> nn.Module | None:
    """``spec``'s model on the meta device; None for a user factory that cannot be built there.

    A registry or torchvision model that cannot be built from the description is an invalid
    file (``InvalidInputError``); a user factory may allocate real tensors on purpose, so its
    failure here only means the size is unknown.
    """
    try:
        with on_meta():
            return build_model(spec, init_seed=None)
    except UntrustedCodeError:
        raise  # nothing was imported: the refusal is the answer
    except Exception as exc:  # any constructor failure
        if _user_model(spec):
            return None
        message = one_line(
            exc.message if isinstance(exc, GradinvertError) else f"{type(exc).__name__}: {exc}"
        )
        raise InvalidInputError(
            f"model {spec.arch!r} cannot be built from the file's description ({message})"
        ) from None


def count_outputs(model: nn.Module, run: Callable[[], object]) -> int | None:
    """Output elements of every leaf module of ``model`` while ``run`` runs (None: it failed,
    e.g. an op without a meta kernel or a shape error)."""
    total = 0

    def count(_module: nn.Module, _args: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            run()
    except Exception:
        return None
    finally:
        for handle in handles:
            handle.remove()
    return total


def activations_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """Output elements of every leaf module for one sample (a meta forward pass)."""
    return count_outputs(model, lambda: model.eval()(torch.empty((1, *input_shape), device="meta")))


def check_update_model(update: UpdateFile) -> nn.Module | None:
    """The update's model on the meta device, after checking that the file's state fits it.

    Raises ``InvalidInputError`` when the model cannot be built or its state dict differs from
    the file's parameters and buffers; None for a user factory that cannot run on meta.
    """
    model = meta_model(update.model)
    if model is None:
        return None
    problems = state_problems(model, {**update.params, **update.buffers})
    if problems:
        raise InvalidInputError(
            f"the update's tensors do not fit model {update.model.arch!r}: " + "; ".join(problems)
        )
    return model


def update_footprint(update: UpdateFile) -> Footprint:
    """Check that the update's state fits its model exactly, and measure the model.

    Raises ``InvalidInputError`` when the described model cannot be built, its state dict
    differs from the file's tensors, or it does not run on the declared input shape.
    """
    in_file = sum(t.numel() for t in update.params.values())
    model = check_update_model(update)
    if model is None:
        return Footprint(in_file, None)
    activations = activations_per_sample(model, tuple(update.input.shape))
    if activations is None and not _user_model(update.model):
        raise InvalidInputError(
            f"model {update.model.arch!r} does not run on the declared input shape "
            f"{tuple(update.input.shape)}"
        )
    return Footprint(in_file, activations)
