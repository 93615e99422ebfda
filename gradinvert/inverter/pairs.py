"""Training pairs for a learned inverter: (update, images) made exactly as ``capture`` makes them.

A template update file fixes everything about the client except its images: architecture and
global weights, input size and normalization, update kind (gradient, or FedAvg delta with its
local settings), BN mode, batch size and defenses. :class:`PairMaker` turns auxiliary images
into the updates that client would have shared. Every pair goes through
:func:`gradinvert.client.capture.capture_update` except one fast path: gradients of batch size 1,
of models up to ``VMAP_MAX`` parameters, where the per-sample gradients of a whole chunk of
images come from one ``vmap``-ed call (the same loss, the same defenses; tests compare the two
tensor by tensor).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.client.defenses import DefenseConfig, apply_defenses
from gradinvert.client.dpsgd import DPConfig
from gradinvert.io.files import UpdateFile
from gradinvert.models.restore import model_from_update
from gradinvert.runtime.errors import InvalidInputError

Tensors = dict[str, torch.Tensor]
# vmap pays off for small models (LeNet: 3× faster per pair on one CPU thread); for ResNet-18
# (11 M parameters) a plain loop is as fast and needs a fraction of the memory
VMAP_MAX = 2_000_000


def dp_of(update: UpdateFile) -> DPConfig | None:
    """The DP-SGD settings an update file records (accounting inputs are not needed)."""
    for step in update.defense:
        if isinstance(step, dict) and step.get("name") == "dp-sgd":
            return DPConfig(float(step["clip"]), float(step["noise_multiplier"]))
    return None


def defense_of(update: UpdateFile) -> DefenseConfig:
    """The defenses an update file records, as the config ``capture`` applied."""
    config = DefenseConfig()
    for step in update.defense:
        name = step.get("name") if isinstance(step, dict) else None
        if name == "dp-sgd":
            continue  # inside the gradient steps: dp_of
        if name == "sign":
            config.sign = True
        elif name == "quantize":
            config.quantize = int(step["bits"])
        elif name == "secure-aggregation":
            raise InvalidInputError(
                "template: a secure aggregate; train the inverter on one client's update"
            )
        elif name == "prune":
            config.prune = float(step["fraction_removed"])
        elif name == "clip":
            config.clip = float(step["max_norm"])
        elif name == "noise":
            config.noise_kind = step.get("kind", "gaussian")
            config.noise = float(step.get("std", step.get("scale", 0.0)))
        else:
            raise InvalidInputError(f"template: unknown defense record {step!r}")
    return config


@dataclass
class Pair:
    """One training example: the update tensors a client would share, and its [0, 1] images."""

    update: Tensors
    images: torch.Tensor  # B×C×H×W
    labels: torch.Tensor  # B


class PairMaker:
    """Makes the template's client updates for new images (see the module docstring)."""

    def __init__(self, template: UpdateFile, device: torch.device | str = "cpu") -> None:
        if template.batch_size is None or template.batch_size < 1:
            raise InvalidInputError("template: the update does not record its batch size")
        self.template = template
        self.device = torch.device(device)
        self.batch_size = int(template.batch_size)
        self.defense = defense_of(template)
        self.dp = dp_of(template)
        self.model = model_from_update(template, self.device)
        # capture's order: noise is drawn tensor by tensor in the model's parameter order
        self.names = [n for n, _ in self.model.named_parameters() if n in template.update]
        numel = sum(p.numel() for p in self.model.parameters())
        self.fast = (
            template.kind == "gradient"
            and self.batch_size == 1
            and numel <= VMAP_MAX
            and self.dp is None  # DP-SGD's clipping and noise: through capture_update
        )
        if self.fast:
            self._prepare_vmap()

    def _prepare_vmap(self) -> None:
        module = copy.deepcopy(self.model)
        if self.template.mode == "train":
            # batch statistics of each single image, as capture's train-mode BN computes them
            replace_all_batch_norm_modules_(module)
        self._module = module
        self._params = {n: p.detach() for n, p in module.named_parameters()}
        self._buffers = {n: b.detach() for n, b in module.named_buffers()}

        def loss(params: Tensors, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            state = {**self._params, **params, **self._buffers}
            logits = functional_call(module, state, (x.unsqueeze(0),))
            return F.cross_entropy(logits, y.unsqueeze(0))

        self._per_sample = vmap(grad(loss), in_dims=(None, 0, 0))

    def capture(self, images01: torch.Tensor, labels: torch.Tensor, seed: int) -> Tensors:
        """The update one client batch yields, through ``capture_update`` itself."""
        config = CaptureConfig(
            mode=self.template.mode,
            local=copy.copy(self.template.local),
            defense=copy.copy(self.defense),
            share_bn_stats=False,
            seed=seed,
            dp=copy.copy(self.dp),
        )
        update = capture_update(
            self.model,
            self.template.model,
            self.template.input,
            images01,
            labels,
            config,
            self.device,
        )
        return {n: update.update[n] for n in self.names}

    def make(self, images01: torch.Tensor, labels: torch.Tensor, first_seed: int) -> list[Pair]:
        """Pairs for consecutive batches of ``images01``; batch j uses seed ``first_seed + j``."""
        count = images01.shape[0] // self.batch_size
        if self.fast:
            return self._make_fast(images01[:count], labels[:count], first_seed)
        pairs = []
        for j in range(count):
            chunk = slice(j * self.batch_size, (j + 1) * self.batch_size)
            update = self.capture(images01[chunk], labels[chunk], first_seed + j)
            pairs.append(Pair(update, images01[chunk].clone(), labels[chunk].clone()))
        return pairs

    def _make_fast(self, images01: torch.Tensor, labels: torch.Tensor, first_seed: int) -> list:
        inputs = self.template.input.normalize(images01.to(self.device))
        trainable = {n: self._params[n] for n in self.names}
        grads = self._per_sample(trainable, inputs, labels.to(self.device))
        pairs = []
        for j in range(images01.shape[0]):
            update = {n: grads[n][j].detach().cpu() for n in self.names}
            update, _ = apply_defenses(update, copy.copy(self.defense), first_seed + j)
            pairs.append(Pair(update, images01[j : j + 1].clone(), labels[j : j + 1].clone()))
        return pairs


def chunks(count: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(count)`` of at most ``size`` entries."""
    for start in range(0, count, size):
        yield slice(start, min(count, start + size))
