"""GIT (our design after Chen & Liu 2025): an inverter wired like the model's back-propagation.

Back-propagation through a layer with weights W, input a and output error δ gives
``∇W = δ ⋆ a`` (a correlation summed over positions; ``δ aᵀ`` for a linear layer) and passes
``Wᵀδ ⊙ σ′`` down. The inverter visits the model's units (:mod:`.trace`) from the output to the
input and carries two estimates per sample: the activation ``a`` and its error ``d``. At each
layer (a :class:`LayerInverse`):

* ``v = adjoint_∇W(d)`` — the adjoint of ``a ↦ d ⋆ a`` applied to the shared ``∇W``
  (``conv_transpose2d(d, ∇W)``; ``dᵀ∇W`` for a linear layer). For one sample and the top
  linear layer, whose error is exactly ``∇b``, ``v/||∇b||²`` IS the layer's input: the exact
  relation "each row of ∇W divided by ∇b". Below it, ``v`` is the least-squares direction of
  the input given the error estimate.
* ``u = Wᵀa`` with the leaked model's own weights (the transpose path);
* the input estimate ``a_in = v̂ + refine([v̂, û])`` (hats: RMS-normalized per sample; refine is
  a small learnable conv block), and the error passed down ``d_in = Wᵀ d``;
* before the next layer the error is gated by a learnable elementwise function of the
  activation estimate (standing in for σ′) and scaled by the BN layer's γ/√(var + ε).

Residual blocks (:class:`BlockInverse`) run their main path's layers backwards, the shortcut's
downsampling layer (or the identity) beside it, and merge the two input estimates with a
learnable 1×1 convolution; their errors add, as in back-propagation. The last estimate (the
model's input) goes through a small conv head and a sigmoid to pixels.

Batches of B > 1: the top error of slot b starts from a learnable mix of ``∇b`` and the top
layer's B leading left-singular vectors (``∇W = Σ δ_i a_iᵀ / B`` has rank ≤ B); every later
step acts per slot. Large layers: a convolution with more than ``max_channels`` output channels
is read through a fixed seeded projection R of its output axis, ``R∇W = (Rδ) ⋆ a`` — exact in
the projected space, it keeps every input channel and kernel tap (ResNet-18: ~0.3 M numbers
per update instead of 11 M).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from gradinvert.inverter.base import Inverter, Tensors, rms_normalize
from gradinvert.inverter.trace import BlockUnit, LayerUnit, ModelTrace, Shape, trace_model

TOP = "top"


def adapt(x: torch.Tensor, shape: Shape, lead: int = 2) -> torch.Tensor:
    """Estimates of one shape (after ``lead`` batch dims) to another: reshape, or resize."""
    if tuple(x.shape[lead:]) == tuple(shape):
        return x
    front = x.shape[:lead]
    if torch.Size(x.shape[lead:]).numel() == torch.Size(shape).numel():
        return x.reshape(*front, *shape)
    flat = x.reshape(-1, *x.shape[lead:])
    if flat.dim() == 2:  # pooled features (C,) → a C×1×1 map
        flat = flat[..., None, None]
    resized = F.interpolate(flat, size=tuple(shape[1:]), mode="nearest")
    return resized.reshape(*front, *shape)


class Gate(nn.Module):
    """A learnable elementwise function in (0, 1) of the activation estimate (σ′'s stand-in)."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(a.unsqueeze(-1)).squeeze(-1))


class LayerInverse(nn.Module):
    """Inverse of one convolution or linear layer: (a_out, d) → (a_in, d_in)."""

    def __init__(self, unit: LayerUnit, width: int, max_channels: int, seed: int) -> None:
        super().__init__()
        self.unit = unit
        out_channels, in_channels = unit.layer_out_shape[0], unit.in_shape[0]
        self.projected = unit.kind == "conv" and out_channels > max_channels
        if self.projected:
            rng = torch.Generator().manual_seed(seed)
            r = torch.randn(max_channels, out_channels, generator=rng) / max_channels**0.5
            self.register_buffer("projection", r)
        self.register_buffer("bn_scale", torch.ones(out_channels), persistent=False)
        self.register_buffer("weight", torch.zeros(0), persistent=False)
        if unit.kind == "conv":
            hidden = max(width, min(in_channels, 64))
            self.refine = nn.Sequential(
                nn.Conv2d(2 * in_channels, hidden, 1),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(hidden, in_channels, 1),
            )
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)
        else:
            # per input feature: a_in = mix₀·v̂ + mix₁·û + offset (starts at the exact v̂)
            count = int(torch.Size(unit.in_shape).numel())
            self.mix = nn.Parameter(torch.stack([torch.ones(count), torch.zeros(count)]))
            self.offset = nn.Parameter(torch.zeros(count))

    # ---------------------------------------------------------------- leaked weights

    def set_weights(self, weight: torch.Tensor, bn_scale: torch.Tensor | None) -> None:
        self.weight = weight.detach().clone().float()
        if bn_scale is not None:
            self.bn_scale = bn_scale.detach().clone().float()

    def encode(self, grad_weight: torch.Tensor) -> torch.Tensor:
        """The layer's ∇W as the inverter reads it (projected when large), RMS-normalized."""
        g = grad_weight.float()
        if self.projected:
            g = torch.einsum("ro,o...->r...", self.projection, g)
        return rms_normalize(g, start_dim=0)

    # ---------------------------------------------------------------- the inverse step

    def _transpose(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``Wᵀx`` for an (N, out, ...) batch: the layer's backward with respect to its input."""
        unit = self.unit
        if unit.kind == "linear":
            return x @ weight
        h_in, w_in = unit.in_shape[1:]
        k_h, k_w = weight.shape[-2:]
        (s_h, s_w), (p_h, p_w) = unit.stride, unit.padding
        h_out, w_out = x.shape[-2:]
        padding = (
            h_in - ((h_out - 1) * s_h - 2 * p_h + k_h),
            w_in - ((w_out - 1) * s_w - 2 * p_w + k_w),
        )
        return F.conv_transpose2d(
            x, weight, stride=unit.stride, padding=unit.padding, output_padding=padding
        )

    def adjoint(self, d: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``v``: per pair (P leading), the adjoint of ``a ↦ d ⋆ a`` applied to that pair's ∇W.

        ``d``: P×B×out×... errors; ``grad``: P×out×in×... (as :meth:`encode` wrote it).
        """
        if self.projected:
            d = torch.einsum("ro,pbo...->pbr...", self.projection, d)
        if self.unit.kind == "linear":
            return torch.einsum("pbo,poi->pbi", d, grad)
        return vmap(self._transpose)(d, grad)

    def forward(
        self, grad: torch.Tensor, a_out: torch.Tensor | None, d: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p, b = d.shape[:2]
        v = rms_normalize(self.adjoint(d, grad), start_dim=2)
        flat_d = d.reshape(p * b, *d.shape[2:])
        d_in = self._transpose(flat_d, self.weight).reshape(p, b, *self.unit.in_shape)
        if a_out is None:
            u = torch.zeros_like(v)
        else:
            flat_a = a_out.reshape(p * b, *a_out.shape[2:])
            u = self._transpose(flat_a, self.weight)
            u = rms_normalize(u.reshape(p, b, *u.shape[1:]), start_dim=2)
        if self.unit.kind == "linear":
            a_in = self.mix[0] * v.flatten(2) + self.mix[1] * u.flatten(2) + self.offset
            return a_in.reshape(p, b, *self.unit.in_shape), d_in
        both = torch.cat([v, u], dim=2).flatten(0, 1)
        a_in = v + self.refine(both).reshape(v.shape)
        return a_in, d_in


class UnitInverse(nn.Module):
    """A layer unit: gate the error by the activation estimate, scale by BN, invert the layer."""

    def __init__(self, unit: LayerUnit, width: int, max_channels: int, seed: int) -> None:
        super().__init__()
        self.unit = unit
        self.gate = Gate()
        self.layer = LayerInverse(unit, width, max_channels, seed)

    def error(self, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """The error at the layer's output from the unit output's activation and error."""
        shape = self.unit.layer_out_shape
        a, d = adapt(a, shape), adapt(d, shape)
        scale = self.layer.bn_scale.view(-1, *([1] * (len(shape) - 1)))
        return rms_normalize(d * self.gate(rms_normalize(a, 2)) * scale, start_dim=2)

    def forward(
        self, grads: Tensors, a: torch.Tensor, d: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a_out = adapt(a, self.unit.layer_out_shape)
        return self.layer(grads[self.unit.layer], a_out, self.error(a, d))


class BlockInverse(nn.Module):
    """A residual block: main path backwards, shortcut beside it, estimates merged, errors added."""

    def __init__(self, unit: BlockUnit, width: int, max_channels: int, seed: int) -> None:
        super().__init__()
        self.unit = unit
        self.out_gate = Gate()
        self.main = nn.ModuleList(
            UnitInverse(u, width, max_channels, seed + i) for i, u in enumerate(unit.main)
        )
        self.shortcut = (
            None
            if unit.shortcut is None
            else LayerInverse(unit.shortcut, width, max_channels, seed + len(unit.main))
        )
        channels = unit.in_shape[0]
        self.merge = nn.Conv2d(2 * channels, channels, 1)
        with torch.no_grad():
            self.merge.weight.zero_()
            self.merge.bias.zero_()
            eye = torch.eye(channels).view(channels, channels, 1, 1)
            self.merge.weight[:, :channels] = eye
        self.skip_weight = nn.Parameter(torch.ones(()))

    def forward(
        self, grads: Tensors, a: torch.Tensor, d: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = self.unit.body_out_shape
        a, d = adapt(a, shape), adapt(d, shape)
        d_sum = rms_normalize(d * self.out_gate(rms_normalize(a, 2)), start_dim=2)
        last = self.main[-1]
        scale = last.layer.bn_scale.view(-1, 1, 1)
        a_main, d_main = last.layer(grads[last.unit.layer], a, rms_normalize(d_sum * scale, 2))
        for stage in reversed(self.main[:-1]):
            a_main, d_main = stage(grads, a_main, d_main)
        if self.shortcut is None:
            a_skip, d_skip = a, d_sum
        else:
            scale = self.shortcut.bn_scale.view(-1, 1, 1)
            grad = grads[self.shortcut.unit.layer]
            a_skip, d_skip = self.shortcut(grad, a, rms_normalize(d_sum * scale, 2))
        both = torch.cat([rms_normalize(a_main, 2), rms_normalize(a_skip, 2)], dim=2)
        a_in = self.merge(both.flatten(0, 1)).reshape(a_main.shape)
        d_in = rms_normalize(d_main, 2) + self.skip_weight * rms_normalize(d_skip, 2)
        return a_in, d_in


def _layers(trace: ModelTrace) -> list[LayerUnit]:
    found: list[LayerUnit] = []
    for unit in trace.units:
        if isinstance(unit, LayerUnit):
            found.append(unit)
        else:
            found.extend(unit.main)
            if unit.shortcut is not None:
                found.append(unit.shortcut)
    return found


class GitInverter(Inverter):
    """The GIT inverter for one model and input (see the module docstring)."""

    arch = "git"

    def __init__(
        self,
        model: nn.Module,
        image_shape: tuple[int, int, int],
        batch_size: int,
        width: int = 32,
        max_channels: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, image_shape)
        self.width, self.max_channels, self.seed = width, max_channels, seed
        self.trace = trace_model(model, image_shape)
        self.top = self.trace.units[-1]
        assert isinstance(self.top, LayerUnit)
        self.rank = min(batch_size, self.top.layer_out_shape[0])
        self.top_layer = LayerInverse(self.top, width, max_channels, seed)
        mix = torch.zeros(batch_size, 1 + self.rank)
        mix[:, 0] = 1.0 if batch_size == 1 else 0.5
        if batch_size > 1:
            for slot in range(batch_size):
                mix[slot, 1 + slot % self.rank] = 1.0
        self.slot_mix = nn.Parameter(mix)
        stages: list[nn.Module] = []
        for index, unit in enumerate(self.trace.units[:-1]):
            if isinstance(unit, LayerUnit):
                stages.append(UnitInverse(unit, width, max_channels, seed + 10 * index))
            else:
                stages.append(BlockInverse(unit, width, max_channels, seed + 10 * index))
        self.stages = nn.ModuleList(stages)
        channels = image_shape[0]
        self.head = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )
        self.set_leaked_weights(
            {n: p.detach() for n, p in model.named_parameters()},
            {n: b.detach() for n, b in model.named_buffers()},
        )

    def _layer_inverses(self) -> dict[str, LayerInverse]:
        found = {self.top.layer: self.top_layer}
        for stage in self.stages:
            if isinstance(stage, UnitInverse):
                found[stage.unit.layer] = stage.layer
            else:
                for inner in stage.main:
                    found[inner.unit.layer] = inner.layer
                if stage.shortcut is not None:
                    found[stage.shortcut.unit.layer] = stage.shortcut
        return found

    def set_leaked_weights(self, params: Tensors, buffers: Tensors) -> None:
        """The transpose paths use these weights; BN scales γ/√(running var + ε) come along."""
        for name, layer in self._layer_inverses().items():
            bn = layer.unit.bn
            scale = None
            if bn is not None and f"{bn}.running_var" in buffers:
                gamma = params.get(f"{bn}.weight")
                var = buffers[f"{bn}.running_var"].float()
                scale = (gamma.float() if gamma is not None else 1.0) / torch.sqrt(var + 1e-5)
            layer.set_weights(params[f"{name}.weight"], scale)

    def settings(self) -> dict[str, Any]:
        return {"width": self.width, "max_channels": self.max_channels, "seed": self.seed}

    def encode(self, update: Tensors) -> Tensors:
        encoded: Tensors = {}
        for name, layer in self._layer_inverses().items():
            grad = update.get(f"{name}.weight")
            if grad is None:  # a frozen layer: no gradient to read
                grad = torch.zeros_like(layer.weight)
            encoded[name] = layer.encode(grad)
        top = self.top.layer
        weight = update.get(f"{top}.weight", torch.zeros_like(self.top_layer.weight)).float()
        bias = update.get(f"{top}.bias")
        if bias is None:  # no bias: the leading left-singular vector stands in for ∇b
            u, s, _ = torch.linalg.svd(weight, full_matrices=False)
            bias = u[:, 0] * s[0]
        bias = bias.float()
        encoded[f"{TOP}.bias"] = rms_normalize(bias, start_dim=0)
        u, s, _ = torch.linalg.svd(weight, full_matrices=False)
        signs = torch.sign(u[:, : self.rank].T @ bias)
        signs[signs == 0] = 1.0
        slots = (u[:, : self.rank] * (s[: self.rank].sqrt() * signs)).T
        encoded[f"{TOP}.slots"] = rms_normalize(slots, start_dim=0)
        return encoded

    def forward(self, encoded: Tensors) -> torch.Tensor:
        bias, slots = encoded[f"{TOP}.bias"], encoded[f"{TOP}.slots"]
        features = torch.cat([bias.unsqueeze(1), slots], dim=1)  # P×(1+rank)×classes
        d = torch.einsum("bk,pkc->pbc", self.slot_mix, features)
        a, d = self.top_layer(encoded[self.top.layer], None, d)
        for stage in reversed(self.stages):
            a, d = stage(encoded, a, d)
        a = adapt(a, self.image_shape)
        p, b = a.shape[:2]
        pixels = torch.sigmoid(self.head(rms_normalize(a, 2).flatten(0, 1)))
        return pixels.reshape(p, b, *self.image_shape)
