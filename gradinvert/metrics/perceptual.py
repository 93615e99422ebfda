"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with offline-only backbone weights.

``lpips`` ships its calibrated linear layers inside the package, but its AlexNet/VGG backbone
comes from torchvision's download cache, which cannot be filled here. We therefore build
``lpips.LPIPS(pnet_rand=True)`` (backbone constructed without downloading) and then load the
backbone from a local file: ``--lpips-weights PATH`` or the torch hub cache
(``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth`` for AlexNet). Every backbone layer
must be overwritten from that file, so a random backbone is never used for scoring.

Images smaller than 32 px on a side are bilinearly upsampled so the shorter side is 32 (AlexNet's
strided stem cannot process smaller inputs). Pixels in [0, 1] are mapped to [-1, 1] as LPIPS
expects. Lower LPIPS means more similar, so lower values mean more leakage.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gradinvert.metrics._validate import as_image_batch
from gradinvert.models import read_state_dict
from gradinvert.runtime.errors import InvalidInputError, UnavailableError, UsageError

HIGHER_IS_BETTER = False
LPIPS_NETS = ("alex", "vgg")
MIN_SIDE = 32
# torchvision's published ImageNet weights; the cache file is the last part of the URL.
_WEIGHT_ENUMS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}


def backbone_cache_path(net: str) -> Path:
    """Where torchvision's download cache would keep the backbone weights of ``net``."""
    import torchvision.models as tvm

    url = getattr(tvm, _WEIGHT_ENUMS[net]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def read_backbone_state(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision AlexNet/VGG-16 state dict from a .pth (tensors only) or .safetensors file."""
    return read_state_dict(path)


def infer_net(state: dict[str, torch.Tensor]) -> str | None:
    """alex or vgg, judged from the first convolution of a torchvision state dict."""
    first = state.get("features.0.weight")
    if first is None or first.ndim != 4:
        return None
    return {11: "alex", 3: "vgg"}.get(int(first.shape[-1]))


def _build_lpips(net: str, backbone: dict[str, torch.Tensor], source: str) -> nn.Module:
    import lpips

    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated `pretrained=` flag; pnet_rand=True means no
        # download is attempted. The linear layers load from the package's own files.
        warnings.simplefilter("ignore")
        try:
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        except Exception as exc:
            raise UnavailableError(f"cannot build LPIPS ({type(exc).__name__}: {exc})") from None
    loaded = 0
    for slice_module in model.net.children():
        for index, layer in slice_module.named_children():
            wanted = layer.state_dict()
            if not wanted:
                continue  # ReLU / pooling
            source_state = {}
            for key, value in wanted.items():
                name = f"features.{index}.{key}"
                if name not in backbone or backbone[name].shape != value.shape:
                    raise InvalidInputError(
                        f"{source}: not a torchvision {net} backbone ({name} missing or misshaped)"
                    )
                source_state[key] = backbone[name]
            layer.load_state_dict(source_state, strict=True)
            loaded += 1
    if loaded == 0:
        raise InvalidInputError(f"{source}: no backbone layers loaded")
    return model.eval()


@dataclass
class LpipsScorer:
    """LPIPS distances with a backbone whose weights came from a given state dict."""

    net: str
    model: nn.Module
    source: str

    @classmethod
    def from_backbone_state(
        cls,
        net: str,
        state: dict[str, torch.Tensor],
        source: str = "backbone state",
        device: torch.device | str = "cpu",
    ) -> LpipsScorer:
        """Build from an in-memory torchvision state dict (tests use random weights here)."""
        if net not in LPIPS_NETS:
            raise UsageError(f"LPIPS net must be one of {', '.join(LPIPS_NETS)}, got {net!r}")
        model = _build_lpips(net, state, source).to(device)
        for param in model.parameters():
            param.requires_grad_(False)
        return cls(net, model, source)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = as_image_batch(images).to(self.device, torch.float32)
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIDE:
            scale = MIN_SIDE / min(h, w)
            size = (max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return 2 * x - 1

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalized backbone activations of each LPIPS layer."""
        import lpips

        outs = self.model.net(self.model.scaling_layer(self._prepare(images)))
        return [lpips.normalize_tensor(o) for o in outs]

    @torch.no_grad()
    def _distance(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(fa[0].shape[0], device=fa[0].device)
        for lin, a, b in zip(self.model.lins, fa, fb, strict=True):
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS of each image pair of two equal-shape batches (float64, N values)."""
        x, y = as_image_batch(x), as_image_batch(y)
        if x.shape != y.shape:
            raise ValueError(f"image batches differ in shape: {tuple(x.shape)} vs {y.shape}")
        return self._distance(self.features(x), self.features(y)).double().cpu()

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """R×T matrix of LPIPS between every image of ``x`` and every image of ``y``."""
        fx, fy = self.features(x), self.features(y)
        rows = []
        for i in range(fx[0].shape[0]):
            fa = [f[i : i + 1].expand_as(g) for f, g in zip(fx, fy, strict=True)]
            rows.append(self._distance(fa, fy))
        return torch.stack(rows).double().cpu()


def load_lpips(
    net: str, weights: Path | None = None, device: torch.device | str = "cpu"
) -> LpipsScorer:
    """LPIPS with the ``net`` backbone from ``weights`` or the torch hub cache.

    Raises UnavailableError (exit 69) when no weights file is given and none is cached.
    """
    if net not in LPIPS_NETS:
        raise UsageError(f"--lpips must be one of {', '.join(LPIPS_NETS)} or off, got {net!r}")
    path = Path(weights) if weights is not None else backbone_cache_path(net)
    if weights is None and not path.is_file():
        raise UnavailableError(
            f"LPIPS {net} backbone weights not found at {path}: copy torchvision's file there "
            f"or pass --lpips-weights PATH (or use --lpips off)"
        )
    state = read_backbone_state(path)
    found = infer_net(state)
    if found is not None and found != net:
        raise InvalidInputError(f"{path}: holds {found} weights, but --lpips {net} was asked for")
    return LpipsScorer.from_backbone_state(net, state, str(path), device)


def resolve_lpips(
    choice: str | None,
    weights: Path | None = None,
    device: torch.device | str = "cpu",
    required: bool = False,
) -> tuple[LpipsScorer | None, str | None]:
    """Turn ``--lpips auto|alex|vgg|off`` into a scorer, or None plus a warning.

    ``auto`` uses AlexNet (or the net a given weights file holds) when its weights are
    available and otherwise returns a warning, unless ``required``: then, as for an explicit
    net, missing weights raise UnavailableError (exit 69).
    """
    if choice in (None, "off"):
        return None, None
    if choice == "auto":
        if weights is not None:
            state = read_backbone_state(Path(weights))
            net = infer_net(state) or "alex"
            return LpipsScorer.from_backbone_state(net, state, str(weights), device), None
        try:
            return load_lpips("alex", None, device), None
        except UnavailableError as exc:
            if required:
                raise
            return None, f"LPIPS unavailable, reported as null ({exc.message})"
    return load_lpips(choice, weights, device), None
