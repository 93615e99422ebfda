"""Rebuild the attacked model from the global state an update file carries."""

from __future__ import annotations

import torch
from torch import nn

from gradinvert.io.files import UpdateFile
from gradinvert.models.footprint import check_update_model
from gradinvert.models.registry import build_model, load_state
from gradinvert.runtime.errors import InvalidInputError


def model_from_update(update: UpdateFile, device: torch.device | str = "cpu") -> nn.Module:
    """The model with the exact parameters and buffers the client received.

    The file's state is first checked against the model on the meta device, so a description
    that does not fit the file is refused before a real (possibly huge) model is allocated.
    """
    check_update_model(update)
    model = build_model(update.model, init_seed=None)
    state = {**update.params, **update.buffers}
    load_state(model, state, "update file")
    names = {name for name, _ in model.named_parameters()}
    extra = sorted(set(update.update) - names)
    if extra:
        raise InvalidInputError(f"update file: update tensors for unknown parameters {extra[:3]}")
    model.to(device)
    model.train(update.mode == "train")
    return model
