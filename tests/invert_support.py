"""Shared builders for the invert tests: tiny models, tiny batches, update files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from gradinvert.client.capture import CaptureConfig, capture_update, minibatch_schedule
from gradinvert.io.files import LocalTraining, UpdateFile
from gradinvert.io.images import load_images
from gradinvert.models import InputSpec, build_model, model_spec
from gradinvert.models.restore import model_from_update
from gradinvert.models.spec import NORMALIZATIONS

SAMPLES = "samples/images32"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def photos(count: int, size: int) -> torch.Tensor:
    """The first ``count`` sample photographs at ``size`` px, in [0, 1]."""
    images, _ = load_images([SAMPLES], size)
    return images[:count]


def make_update(
    arch: str = "convnet",
    *,
    count: int = 2,
    size: int = 8,
    labels: list[int] | None = None,
    mode: str = "eval",
    share_bn_stats: bool = False,
    local: LocalTraining | None = None,
    num_classes: int = 4,
    seed: int = 0,
    **model_kwargs: object,
) -> tuple[UpdateFile, torch.Tensor, torch.Tensor]:
    """An update of a seeded tiny model on sample photos; returns (update, images, labels)."""
    images = photos(count, size)
    label_tensor = torch.tensor(labels if labels is not None else list(range(count)))
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec((3, size, size), mean, std)
    if arch == "convnet":
        model_kwargs.setdefault("width", 4)
    spec = model_spec(arch, num_classes, input_spec.shape, **model_kwargs)
    model = build_model(spec, init_seed=seed)
    config = CaptureConfig(
        mode=mode,  # type: ignore[arg-type]
        share_bn_stats=share_bn_stats,
        local=local,
        seed=seed,
    )
    update = capture_update(model, spec, input_spec, images, label_tensor, config)
    return update, images, label_tensor


def make_engine(update, labels, config, batch, device=CPU):  # noqa: ANN001, ANN201
    """An :class:`Engine` for ``update`` on ``device``, set up as run_attack sets it (pixels)."""
    from gradinvert.invert.attack import _prepare, resolve_labels
    from gradinvert.invert.engine import Engine
    from gradinvert.invert.priors import bn_reference

    choice = resolve_labels(update, labels, config)
    victim, simulator, _ = _prepare(update, choice, config, device, batch)
    reference = bn_reference(update, victim.bn_names).to(device) if config.bn else None
    shape = (batch, *update.input.shape)
    return Engine(
        simulator, config, shape, update.input, update.model.num_classes, False, reference, device
    )


def reference_seed_loss(update, labels, config, x, target):  # noqa: ANN001, ANN202
    """One seed's loss, written out with plain autograd on the real model (no vmap), on the
    device of the candidates ``x``."""
    device = x.device
    model = model_from_update(update, device)
    labels = labels.to(device)
    seen: list[tuple[str, torch.Tensor]] = []
    handles = [
        m.register_forward_pre_hook(lambda _m, args, name=name: seen.append((name, args[0])))
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    out = model(x)  # the whole batch: the statistics the BN prior sees
    for handle in handles:
        handle.remove()
    if update.kind == "gradient":
        grads = torch.autograd.grad(
            F.cross_entropy(out, labels), list(params.values()), create_graph=True
        )
        shared = dict(zip(names, grads, strict=True))
    else:
        generator = torch.Generator().manual_seed(update.local.seed or 0)
        theta = dict(params)
        for indices in minibatch_schedule(x.shape[0], update.local, generator):
            out = functional_call(model, theta, (x[indices],))
            step = torch.autograd.grad(
                F.cross_entropy(out, labels[indices]), list(theta.values()), create_graph=True
            )
            theta = {
                n: t - update.local.lr * g for (n, t), g in zip(theta.items(), step, strict=True)
            }
        shared = {n: theta[n] - params[n] for n in names}
    distance = sum(torch.linalg.vector_norm(shared[n] - update.update[n].to(device)) for n in names)
    total = config.gradient_weight * distance
    total = total + config.tv * (
        (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
        + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    )
    total = total + config.l2 * x.square().sum().sqrt()
    bn = 0.0
    for index, (name, inputs) in enumerate(seen if config.bn else []):
        mean = inputs.mean(dim=(0, 2, 3))
        var = inputs.var(dim=(0, 2, 3), unbiased=False)
        true_mean, true_var = (t.to(device) for t in update.bn_stats[name])
        term = (mean - true_mean).norm() + (var - true_var).norm()
        bn = bn + (config.bn_first if index == 0 else 1.0) * term
    total = total + config.bn * bn
    std = torch.tensor(update.input.std, device=device).view(3, 1, 1)
    mean = torch.tensor(update.input.mean, device=device).view(3, 1, 1)
    pixels = x * std + mean
    total = total + config.group * (pixels - target).flatten(1).norm(dim=1).sum()
    return total
