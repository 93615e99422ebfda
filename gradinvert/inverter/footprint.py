"""Memory of the inverter commands (``invert --attack git``, ``--init git``, ``train-inverter``),
estimated from the files' headers and the inverter built on the meta device, before anything
is read or allocated.

Bytes, as in :mod:`gradinvert.runtime.memory` (W: the inverter's weights and buffers, M the template
model's, E the encoded elements of one update, A the activation elements of one forward pass
over one encoded update, B the batch, D = C·H·W):

    git (one pass)  = update file + inverter file + W + M + 4·(E + A)
    train-inverter  = template file + M + 5·W (weights, gradients, two Adam moments, the best
                      epoch's copy) + N·(2·E + 4·B·D) (N pairs, encodings kept as float16, their
                      images as float32) + 4·b·A·3 (b pairs a step: forward and backward)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from gradinvert.inverter.base import Inverter, stack_encoded
from gradinvert.inverter.store import InverterHeader, _NotOnMeta, build_inverter
from gradinvert.io.files import UpdateFile
from gradinvert.models.footprint import count_outputs, on_meta
from gradinvert.runtime.memory import FLOAT, UNKNOWN_ACTIVATIONS, _millions, file_bytes
from gradinvert.runtime.resources import Estimate

if TYPE_CHECKING:
    from gradinvert.config.train_inverter import TrainInverterSettings

STEP_COPIES = 3  # a training step keeps the forward activations and their gradients


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (persistent or not), meta or real."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _model_bytes(template: UpdateFile) -> int:
    tensors = [*template.params.values(), *template.buffers.values()]
    return FLOAT * sum(t.numel() for t in tensors)


def encoded_and_activations(net: Inverter, update: UpdateFile) -> tuple[int, int | None]:
    """Elements of one encoded update and of one forward pass over it (meta device; None
    when the pass does not run there)."""
    shapes = {n: torch.empty(t.shape, device="meta") for n, t in update.update.items()}
    with on_meta():
        try:
            encoded = net.encode(shapes)
        except Exception:  # an op without a meta kernel
            return 0, None
        elements = sum(t.numel() for t in encoded.values())
        stacked = stack_encoded([encoded])
        return elements, count_outputs(net, lambda: net(stacked))


def _unknown(update: UpdateFile) -> int:
    pixels = int(torch.Size(update.input.shape).numel())
    return UNKNOWN_ACTIVATIONS * int(update.batch_size or 1) * pixels


def estimate_git(update: UpdateFile, head: InverterHeader) -> Estimate:
    """The memory of one forward pass of the inverter file ``head`` over ``update``."""
    net, stored = head.inverter, head.header.bytes()
    weights = stored if net is None else module_bytes(net)
    encoded, activations = (0, None) if net is None else encoded_and_activations(net, update)
    acts = activations if activations is not None else _unknown(update)
    total = file_bytes(update) + stored + weights + _model_bytes(head.template)
    total += FLOAT * (encoded + acts)
    arch = head.meta.inverter.arch
    basis = f"the {arch} inverter of {_millions(weights // FLOAT)} weights, one pass"
    return Estimate("invert --attack git", int(total), basis, "")


def estimate_train_inverter(
    template: UpdateFile, config: TrainInverterSettings, images: int
) -> Estimate:
    """The memory ``train-inverter`` needs for ``template`` (shapes will do) and ``images``
    auxiliary images; builds the inverter on the meta device."""
    try:
        net = build_inverter(config.arch, template, config.inverter_settings(), "meta")
    except _NotOnMeta:  # a user's model: the inverter's size is unknown
        net = None
    weights = 0 if net is None else module_bytes(net)
    encoded, activations = (0, None) if net is None else encoded_and_activations(net, template)
    acts = activations if activations is not None else _unknown(template)
    batch = int(template.batch_size or 1)
    pixels = int(torch.Size(template.input.shape).numel())
    pairs = config.pairs + max(1, round(config.pairs * config.val_fraction))
    total = file_bytes(template) + _model_bytes(template) + 5 * weights
    total += pairs * (2 * encoded + FLOAT * batch * pixels) + FLOAT * images * pixels
    total += FLOAT * min(config.batch, pairs) * acts * STEP_COPIES
    basis = (
        f"{config.arch} inverter of {_millions(weights // FLOAT)} weights, {pairs} pairs of "
        f"batch {batch}, {_millions(encoded)} encoded numbers a pair"
    )
    return Estimate("train-inverter", int(total), basis, "use fewer --pairs, or ")
