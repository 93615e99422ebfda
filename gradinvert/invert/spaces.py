"""Search spaces: what an inversion optimizes, and how that becomes candidate images.

The engine never knows whether it optimizes pixels. A space owns

* the optimized parameters, a dict of tensors whose leading dimension is the seed (K);
* fixed per-seed tensors that are not optimized (``fixed``, same leading K);
* ``images(params, fixed)``: ONE seed's parameters → its N×C×H×W candidate batch in the model's
  input space (the engine vmaps it over the seeds, so it must be written with vmappable ops);
* ``fresh(count, rng)``: new parameters for ``count`` seeds (start and reset after divergence);
* ``project_``: what happens after every optimizer step (the pixel box clamp).

Spaces (GIAS, Jeon et al. 2021, in the paper's names):

* :class:`PixelSpace` (GI-x): the pixels themselves;
* :class:`LatentSpace` (GI-z): one latent per image and seed, image = G(z);
* :class:`WeightSpace` (GI-w): per seed, one copy of the generator's weights **per image**,
  image_i = G_{θ_i}(z_i) with z fixed; every copy starts from G's weights;
* :class:`SharedWeightSpace` (GIML's inner fine-tuning): per seed, ONE copy of the generator's
  weights for the whole batch, image_i = G_θ(z_i) with z fixed;
* :class:`FeatureSpace` (GIFD, Fang et al. 2023): the output f_i of the generator's layer i,
  one per image and seed, image = G_N ∘ … ∘ G_{i+1}(f_i), kept inside an ℓ1 ball around its
  start (projected after every step).

A space may add a term of its own parameters to every seed's loss (``penalty``; none by
default): :class:`LatentSpace` with ``z_norm`` adds GIML's ``z_norm·||z||₂``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import functional_call, vmap

from gradinvert.generators import Generator
from gradinvert.generators.layers import run_layers
from gradinvert.invert.l1ball import project_l1_ball
from gradinvert.models.spec import InputSpec

Params = dict[str, torch.Tensor]
SEARCHES = ("x", "z", "w", "zw", "f")


class SearchSpace:
    """Base class: see the module docstring."""

    name = "base"
    fused_optimizer = False  # Adam's fused kernel (a generator copy's millions of entries)

    def __init__(self, shape: tuple[int, int, int, int], input_spec: InputSpec, device: Any):
        self.shape = shape  # N, C, H, W
        self.device = torch.device(device)
        channels = shape[1]
        self.mean = torch.tensor(input_spec.mean, device=self.device).view(channels, 1, 1)
        self.std = torch.tensor(input_spec.std, device=self.device).view(channels, 1, 1)
        self.low = (0.0 - self.mean) / self.std
        self.high = (1.0 - self.mean) / self.std
        self.fixed: Params = {}

    def fresh(self, count: int, rng: torch.Generator) -> Params:
        """Starting parameters for ``count`` seeds (K leading), on the space's device."""
        raise NotImplementedError

    def fresh_for(self, indices: list[int], rng: torch.Generator) -> Params:
        """Starting parameters for the seeds ``indices`` (a reset after divergence)."""
        return self.fresh(len(indices), rng)

    def images(self, params: Params, fixed: Params) -> torch.Tensor:
        """ONE seed's candidate batch (N×C×H×W, model input space) from its parameters."""
        raise NotImplementedError

    def all_images(self, params: Params) -> torch.Tensor:
        """Every seed's candidate batch (K×N×C×H×W), without gradients."""
        with torch.no_grad():
            return vmap(self.images, randomness="different")(params, self.fixed)

    def project_(self, params: Params) -> None:
        """Applied in place after every optimizer step (nothing by default)."""

    def penalty(self, params: Params) -> torch.Tensor | None:
        """ONE seed's extra loss term on its own parameters (vmappable), or None (default)."""
        return None

    def add_penalty_(self, params: Params, grads: Params) -> torch.Tensor | None:
        """A term with a closed-form gradient, applied outside the vmapped loss: adds its
        gradient to ``grads`` in place and returns its K per-seed values (None: no term)."""
        return None

    def lr_scales(self) -> dict[str, float]:
        """Per-parameter factors on the learning rate (none: every tensor takes the lr as is)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What the output's metadata records about the space."""
        return {"search": self.name}

    def _from_generated(self, generated: torch.Tensor) -> torch.Tensor:
        """Generator output in [-1, 1] → pixels (G + 1) / 2 → the model's normalization."""
        return ((generated + 1.0) * 0.5 - self.mean) / self.std


class PixelSpace(SearchSpace):
    """GI-x: the candidates' pixels (in the model's input space) are the parameters.

    ``reference``: N×C×H×W pixels in [0, 1] (a learned inverter's estimate). With
    ``init="git"`` every seed starts at ``reference + start_noise·N(0, 1)`` (pixel units), so
    restarts differ; ``anchor`` > 0 adds ``anchor·mean((x − reference)²)`` over the seed's
    pixels to its loss.
    """

    name = "x"

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        input_spec: InputSpec,
        device: Any,
        init: str = "randn",
        box: bool = True,
        reference: torch.Tensor | None = None,
        start_noise: float = 0.0,
        anchor: float = 0.0,
    ) -> None:
        super().__init__(shape, input_spec, device)
        if (init == "git" or anchor) and reference is None:
            raise ValueError("init='git' and anchor need the reference images")
        self.init, self.box = init, box
        self.reference = None if reference is None else reference.to(self.device).float()
        self.start_noise, self.anchor = start_noise, anchor

    def fresh(self, count: int, rng: torch.Generator) -> Params:
        shape = (count, *self.shape)
        if self.init == "git":
            noise = torch.randn(shape, generator=rng).to(self.device) * self.start_noise
            x = (self.reference + noise - self.mean) / self.std
        elif self.init == "grey":
            noise = torch.randn(shape, generator=rng).to(self.device) * self.start_noise
            x = noise / self.std
        elif self.init == "rand":
            x = (torch.rand(shape, generator=rng).to(self.device) - self.mean) / self.std
        else:
            x = torch.randn(shape, generator=rng).to(self.device)
        if self.box:
            x = torch.maximum(torch.minimum(x, self.high), self.low)
        return {"x": x.contiguous()}

    def images(self, params: Params, fixed: Params) -> torch.Tensor:
        return params["x"]

    def all_images(self, params: Params) -> torch.Tensor:
        return params["x"]

    def project_(self, params: Params) -> None:
        if self.box:
            x = params["x"]
            x.copy_(torch.maximum(torch.minimum(x, self.high), self.low))

    def penalty(self, params: Params) -> torch.Tensor | None:
        if not self.anchor:
            return None
        pixels = params["x"] * self.std + self.mean
        return self.anchor * (pixels - self.reference).pow(2).mean()

    def describe(self) -> dict[str, Any]:
        if self.reference is None:
            return super().describe()
        noise = self.start_noise if self.init == "git" else None
        return {"search": self.name, "init": self.init, "start_noise": noise, "anchor": self.anchor}


class LatentSpace(SearchSpace):
    """GI-z: one latent per image and seed; the generator itself stays fixed.

    ``z_norm`` > 0 adds ``z_norm·||z||₂`` (the L2 norm of the seed's N latents together) to
    every seed's loss, as GIML's latent search does (official: 1e-3).
    """

    name = "z"

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        input_spec: InputSpec,
        device: Any,
        generator: Generator,
        z_norm: float = 0.0,
    ) -> None:
        super().__init__(shape, input_spec, device)
        self.generator = generator
        self.z_norm = float(z_norm)

    def fresh(self, count: int, rng: torch.Generator) -> Params:
        z = self.generator.sample_latents(count * self.shape[0], rng)
        return {"z": z.view(count, self.shape[0], *z.shape[1:]).to(self.device).contiguous()}

    def images(self, params: Params, fixed: Params) -> torch.Tensor:
        return self._from_generated(self.generator.module(params["z"]))

    def penalty(self, params: Params) -> torch.Tensor | None:
        if not self.z_norm:
            return None
        return self.z_norm * torch.linalg.vector_norm(params["z"])

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"search": self.name, "generator": self.generator.source}
        if self.z_norm:
            described["z_norm"] = self.z_norm
        return described


class _GeneratorCopies(SearchSpace):
    """Spaces whose parameters are copies of a generator's weights, with fixed latents.

    ``latents`` (K×N×latent shape) are the fixed inputs; every copy starts from the generator's
    weights and uses its buffers (BN running statistics; the generator stays in eval mode).
    ``relative_lr``: each weight tensor steps by lr × its RMS (:func:`weight_lr_scales`).

    Keeping the prior (the weight stage ``prior``): with d = (θ_copy − θ)/s over all of a
    copy's entries, s the unit the lr scale uses (a weight tensor's RMS when relative, 1 when
    absolute or for 1-dim tensors), ``proximity`` λ adds λ·mean(d²) per copy to the seed's loss
    and ``trust`` ρ scales d back after every step so that RMS(d) ≤ ρ.
    """

    copies_per_seed = 1

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        input_spec: InputSpec,
        device: Any,
        generator: Generator,
        latents: torch.Tensor,
        relative_lr: bool = False,
        proximity: float = 0.0,
        trust: float = 0.0,
    ) -> None:
        super().__init__(shape, input_spec, device)
        self.generator = generator
        self.relative_lr = relative_lr
        self.proximity, self.trust = float(proximity), float(trust)
        # Adam's fused kernel is ~8× faster on millions of entries but rounds differently:
        # the prior-keeping stage uses it, the first version's results stay bit-identical.
        self.fused_optimizer = bool(proximity or trust)
        module = generator.module
        self.base = {n: p.detach().clone() for n, p in module.named_parameters()}
        scales = weight_lr_scales(self.base) if relative_lr else {}
        self.units = {n: scales.get(n, 1.0) for n in self.base}
        self.entries = sum(v.numel() for v in self.base.values())
        self.buffers = {n: b.detach() for n, b in module.named_buffers()}
        if latents.shape[1] != shape[0]:
            raise ValueError(f"latents for {latents.shape[1]} images, the batch has {shape[0]}")
        self.fixed = {"z": latents.to(self.device).contiguous()}

    def _copies(self) -> tuple[int, ...]:
        """The copy dimensions after the seed's (per image: N; shared: none)."""
        return ()

    def fresh(self, count: int, rng: torch.Generator) -> Params:
        lead = (count, *self._copies())
        return {
            name: value.expand(*lead, *value.shape).clone().contiguous()
            for name, value in self.base.items()
        }

    def lr_scales(self) -> dict[str, float]:
        return weight_lr_scales(self.base) if self.relative_lr else {}

    def deviation_squares(self, params: Params) -> torch.Tensor:
        """Σ d² per copy (the leading copy dimensions of ``params``), d = (θ_copy − θ)/s."""
        lead = len(next(iter(params.values())).shape) - len(next(iter(self.base.values())).shape)
        total = None
        for name, value in params.items():
            d = (value - self.base[name]) / self.units[name]
            square = d.square().flatten(lead).sum(-1)
            total = square if total is None else total + square
        assert total is not None
        return total

    def proximity_values(self, params: Params) -> torch.Tensor:
        """Per seed (K leading): λ·Σ_copies mean(d²), the proximity term's value."""
        squares = self.deviation_squares(params) / self.entries
        return (
            self.proximity * squares.flatten(1).sum(1)
            if squares.dim() > 1
            else (self.proximity * squares)
        )

    def add_penalty_(self, params: Params, grads: Params) -> torch.Tensor | None:
        """The proximity term in closed form: ∂/∂θ of λ·mean(d²) is 2λ·d/(s·n) per entry (n
        entries per copy), about 10× cheaper than differentiating it inside the vmapped loss."""
        if not self.proximity:
            return None
        with torch.no_grad():
            for name, value in params.items():
                unit = self.units[name]
                factor = 2.0 * self.proximity / (unit * unit * self.entries)
                grads[name].add_(value - self.base[name], alpha=factor)
            return self.proximity_values(params)

    def project_(self, params: Params) -> None:
        if not self.trust:
            return
        rms = (self.deviation_squares(params) / self.entries).sqrt()
        factor = torch.clamp(self.trust / rms.clamp_min(1e-30), max=1.0)
        for name, value in params.items():
            base = self.base[name]
            shaped = factor.view(*factor.shape, *([1] * base.dim()))
            value.copy_(base + (value - base) * shaped)

    def describe(self) -> dict[str, Any]:
        copies = self._copies()
        described = {
            "search": self.name,
            "generator": self.generator.source,
            "copies_per_seed": copies[0] if copies else 1,
            "generator_lr": "relative" if self.relative_lr else "absolute",
        }
        if self.proximity or self.trust:
            described.update(proximity=self.proximity, trust=self.trust)
        return described


class WeightSpace(_GeneratorCopies):
    """GI-w: per seed, one copy of the generator per image, each with its own fixed latent:
    the parameters are the K×N stacked copies of the generator's parameters."""

    name = "w"

    def _copies(self) -> tuple[int, ...]:
        return (self.shape[0],)

    def images(self, params: Params, fixed: Params) -> torch.Tensor:
        module, buffers = self.generator.module, self.buffers

        def one(weights: Params, z: torch.Tensor) -> torch.Tensor:
            return functional_call(module, (weights, buffers), (z.unsqueeze(0),))[0]

        return self._from_generated(vmap(one)(params, fixed["z"]))


class SharedWeightSpace(_GeneratorCopies):
    """Per seed, ONE copy of the generator's weights for the whole batch, latents fixed:
    image_i = G_θ(z_i). GIML fine-tunes such a copy per task before its Reptile step.

    Its lr is absolute unless ``relative_lr`` (as every generator-copy space): ``learn-prior``
    keeps the official GIML setting (absolute, ``--generator-lr-scale``), while ``invert``'s
    :class:`WeightSpace` defaults to relative (``AttackConfig.generator_lr_scale``)."""

    name = "shared-w"

    def images(self, params: Params, fixed: Params) -> torch.Tensor:
        module = self.generator.module
        generated = functional_call(module, (params, self.buffers), (fixed["z"],))
        return self._from_generated(generated)


class FeatureSpace(SearchSpace):
    """GIFD's stage at layer ``layer``: the output f of the generator's first ``layer`` layers,
    one per image and seed, is optimized; image = the remaining layers applied to f.

    ``start`` (K×N×feature shape): where the stage begins (the previous stage's result passed
    through layer ``layer``); every f stays inside the ℓ1 ball of radius ``radius``·||start||₁
    (per image) around its start, projected after every step (``radius`` ≤ 0: unbounded).
    """

    name = "f"

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        input_spec: InputSpec,
        device: Any,
        generator: Generator,
        layers: list[torch.nn.Module],
        layer: int,
        start: torch.Tensor,
        radius: float,
    ) -> None:
        super().__init__(shape, input_spec, device)
        self.generator, self.layers, self.layer = generator, layers, layer
        self.radius = float(radius)
        start = start.to(self.device).contiguous()
        norms = start.flatten(2).abs().sum(-1)
        radii = norms * self.radius if self.radius > 0 else torch.full_like(norms, -1.0)
        self.fixed = {"start": start, "radius": radii}

    def fresh(self, count: int, rng: torch.Generator) -> Params:
        start = self.fixed["start"]
        if count != start.shape[0]:
            raise ValueError(f"the stage starts {start.shape[0]} seeds, not {count}")
        return {"f": start.clone()}

    def fresh_for(self, indices: list[int], rng: torch.Generator) -> Params:
        return {"f": self.fixed["start"][indices].clone()}

    def images(self, params: Params, fixed: Params) -> torch.Tensor:
        return self._from_generated(run_layers(self.layers, params["f"], self.layer))

    def project_(self, params: Params) -> None:
        f, start = params["f"], self.fixed["start"]
        rows = (f - start).flatten(0, 1)
        inside = project_l1_ball(rows, self.fixed["radius"].flatten())
        f.copy_(start + inside.view_as(f))

    def describe(self) -> dict[str, Any]:
        return {
            "search": self.name,
            "generator": self.generator.source,
            "layer": self.layer,
            "radius": self.radius,
        }


def weight_lr_scales(weights: Params) -> dict[str, float]:
    """Relative learning rates: a weight tensor (2+ dims) steps by lr × its RMS.

    Adam's step is an absolute size per entry. GIAS's generator lr (1e-3) was set for
    StyleGAN2, whose equalized learning rate keeps weights near unit scale; a DCGAN's weights
    are ~0.02, where the same absolute step rewrites the prior within a few iterations. Scaling
    each weight tensor's step by its RMS gives every generator the same relative change per
    step. Biases and BN affine parameters (1 dim) keep the lr as is, as in StyleGAN2.
    """
    scales = {}
    for name, value in weights.items():
        if value.dim() >= 2:
            rms = float(value.double().square().mean().sqrt())
            scales[name] = rms if rms > 0 else 1.0
    return scales
