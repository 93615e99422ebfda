"""DCGAN generator and discriminator (Radford et al. 2016), as GIML's official code builds them.

Generator at 32 px (DESIGN.md §5.7): latent 100×1×1; ConvT 100→8·ngf (4×4, stride 1) → 4·ngf
(8×8) → 2·ngf (16×16) → ngf (32×32), kernel 4 stride 2 padding 1, each followed by BatchNorm and
ReLU; then a 1×1 ConvT ngf→C and tanh; no biases. The 64 px version adds one more up-stage
ngf→ngf (64×64) before the 1×1 output layer. The discriminator mirrors it (strided 4×4
convolutions, BatchNorm, LeakyReLU 0.2) and returns one logit per image.

``upsample``: how each up-stage after the first doubles the resolution. ``transpose`` (the
official layers) is a stride-2 4×4 transposed convolution, whose kernel overlaps unevenly and
stamps a periodic checkerboard on the output (Odena et al. 2016, "Deconvolution and
Checkerboard Artifacts"); ``nearest`` and ``bilinear`` resize by 2 first and then apply a
3×3 convolution (padding 1), which overlaps evenly: the resize-then-convolve remedy of that
paper. Only these built-in names exist; a generator file records the name, never code.
"""

from __future__ import annotations

import torch
from torch import nn

SIZES = (32, 64)
LATENT = 100
NGF = 64
UPSAMPLES = ("transpose", "nearest", "bilinear")
DEFAULT_UPSAMPLE = "transpose"


def _check_size(size: int) -> None:
    if size not in SIZES:
        raise ValueError(f"DCGAN size {size}: choose one of {', '.join(map(str, SIZES))}")


def _check_upsample(upsample: object) -> None:
    if not isinstance(upsample, str) or upsample not in UPSAMPLES:
        raise ValueError(f"DCGAN upsample {upsample!r}: choose one of {', '.join(UPSAMPLES)}")


def _up(cin: int, cout: int, upsample: str) -> list[nn.Module]:
    """One up-stage that doubles the resolution, then BatchNorm and ReLU."""
    if upsample == "transpose":
        layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)]
    else:
        resize = (
            nn.Upsample(scale_factor=2, mode="nearest")
            if upsample == "nearest"
            else nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        )
        layers = [resize, nn.Conv2d(cin, cout, 3, 1, 1, bias=False)]
    return [*layers, nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]


class DCGANGenerator(nn.Module):
    """Maps latents B×100×1×1 to images B×C×size×size in [-1, 1]."""

    def __init__(
        self,
        size: int = 32,
        channels: int = 3,
        latent: int = LATENT,
        ngf: int = NGF,
        upsample: str = DEFAULT_UPSAMPLE,
    ) -> None:
        super().__init__()
        _check_size(size)
        _check_upsample(upsample)
        self.size, self.channels, self.latent, self.ngf = size, channels, latent, ngf
        self.upsample = upsample
        self.latent_shape = (latent, 1, 1)
        # 1×1 → 4×4 from a 1×1 input: every output pixel sees the whole kernel once, no overlap
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent, 8 * ngf, 4, 1, 0, bias=False),
            nn.BatchNorm2d(8 * ngf),
            nn.ReLU(inplace=False),
        ]
        widths = [8 * ngf, 4 * ngf, 2 * ngf, ngf] + ([ngf] if size == 64 else [])
        for cin, cout in zip(widths, widths[1:], strict=False):
            layers += _up(cin, cout, upsample)
        layers += [nn.ConvTranspose2d(ngf, channels, 1, 1, 0, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)

    def arch(self) -> dict[str, int | str]:
        """The constructor arguments, as recorded in generator files (``upsample`` only when
        not the default, so that files written before the option keep their exact record)."""
        record: dict[str, int | str] = {
            "name": "dcgan",
            "size": self.size,
            "channels": self.channels,
            "latent": self.latent,
            "ngf": self.ngf,
        }
        if self.upsample != DEFAULT_UPSAMPLE:
            record["upsample"] = self.upsample
        return record


class DCGANDiscriminator(nn.Module):
    """Maps images B×C×size×size in [-1, 1] to one real/fake logit each (B)."""

    def __init__(self, size: int = 32, channels: int = 3, ndf: int = NGF) -> None:
        super().__init__()
        _check_size(size)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2),
        ]
        width = ndf
        for _ in range(2 if size == 32 else 3):
            layers += [
                nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
                nn.BatchNorm2d(2 * width),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


def dcgan_init_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """DCGAN's initialisation: conv weights N(0, 0.02), BN weights N(1, 0.02), BN biases 0."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                layer.weight.normal_(0.0, 0.02, generator=generator)
            elif isinstance(layer, nn.BatchNorm2d):
                layer.weight.normal_(1.0, 0.02, generator=generator)
                layer.bias.zero_()
    return module
