"""Find the classifier's output layer and read its part of an update."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from gradinvert.io.files import UpdateFile
from gradinvert.models import build_model
from gradinvert.models.classifier import LastLayer, find_last_linear
from gradinvert.models.spec import ModelSpec
from gradinvert.runtime.errors import InvalidInputError


@dataclass
class LastLayerUpdate:
    """The last layer's weights and its gradient in mean-loss gradient convention.

    For a FedAvg delta the gradient is the pseudo-gradient −Δ/(lr·steps), the mean gradient
    over the local steps (``scale_known``, ``trajectory`` = (steps, lr)), or −Δ when the local
    learning rate and step count are unknown (then only signs and ratios are usable).
    ``weight``/``bias`` are the global weights the client started from.
    """

    layer: LastLayer
    grad_w: torch.Tensor
    grad_b: torch.Tensor | None
    weight: torch.Tensor
    bias: torch.Tensor | None
    scale_known: bool
    scale: float
    trajectory: tuple[int, float] | None = None


@lru_cache(maxsize=32)
def _locate(spec_json: str, input_shape: tuple[int, ...], origin: str | None) -> LastLayer:
    # The output layer depends on the architecture only, so any weights will do.
    model = build_model(ModelSpec.from_dict(json.loads(spec_json), origin), init_seed=0)
    return find_last_linear(model, input_shape)


def locate_last_linear(spec: ModelSpec, input_shape: tuple[int, ...]) -> LastLayer:
    """``find_last_linear`` on a freshly built model of ``spec`` (cached per architecture)."""
    key = json.dumps(spec.to_dict(), sort_keys=True)
    return replace(_locate(key, tuple(int(x) for x in input_shape), spec.origin))


def last_layer_update(update: UpdateFile) -> LastLayerUpdate:
    """Locate the last linear layer of the update's model and extract its update and weights."""
    layer = locate_last_linear(update.model, tuple(update.input.shape))
    if layer.weight not in update.update:
        raise InvalidInputError(f"the update holds no tensor for the last layer {layer.weight!r}")
    grad_w = update.update[layer.weight].detach().double()
    if grad_w.shape != (layer.num_classes, layer.num_features):
        raise InvalidInputError(
            f"update tensor {layer.weight!r} has shape {tuple(grad_w.shape)}, expected "
            f"{(layer.num_classes, layer.num_features)}"
        )
    grad_b = None
    if layer.bias is not None and layer.bias in update.update:
        grad_b = update.update[layer.bias].detach().double().reshape(-1)
    else:
        layer.bias = None  # no bias update shared: treat the layer as bias-free
    if layer.weight not in update.params or (
        layer.bias is not None and layer.bias not in update.params
    ):
        raise InvalidInputError(f"the update holds no model parameters for {layer.module!r}")
    weight = update.params[layer.weight].detach().double()
    bias = update.params[layer.bias].detach().double() if layer.bias is not None else None
    if weight.shape != grad_w.shape or (bias is not None and bias.shape != (layer.num_classes,)):
        raise InvalidInputError(f"the parameters of {layer.module!r} do not fit the model")
    if grad_b is not None and grad_b.shape != (layer.num_classes,):
        raise InvalidInputError(f"update tensor {layer.bias!r} does not fit the model")
    if not torch.isfinite(grad_w).all() or (
        grad_b is not None and not torch.isfinite(grad_b).all()
    ):
        raise InvalidInputError("the last layer's update holds NaN or infinite values")
    if float(grad_w.abs().max()) == 0.0:
        raise InvalidInputError("the last layer's update is all zeros: nothing to restore")

    scale, scale_known, trajectory = 1.0, True, None
    if update.kind == "delta":
        local = update.local
        if local is not None and local.steps > 0 and local.lr > 0:
            scale = local.lr * local.steps
            trajectory = (local.steps, local.lr)
        else:
            scale_known = False
        grad_w = -grad_w / scale
        grad_b = None if grad_b is None else -grad_b / scale
    return LastLayerUpdate(layer, grad_w, grad_b, weight, bias, scale_known, scale, trajectory)
