"""capture: gradients, FedAvg deltas, defenses and BN statistics against direct torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gradinvert.client.capture import CaptureConfig, capture_update, minibatch_schedule
from gradinvert.client.defenses import DefenseConfig, apply_defenses, global_norm
from gradinvert.io.files import LocalTraining, load_update, save_update
from gradinvert.io.images import load_images
from gradinvert.models import InputSpec, build_model, model_spec

SAMPLES = "samples/images32"


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    images, _ = load_images([SAMPLES])
    return images[:4], torch.tensor([0, 1, 1, 3])


def _setup(arch: str = "convnet", num_classes: int = 10):
    spec = model_spec(arch, num_classes, (3, 32, 32))
    return spec, build_model(spec, init_seed=0), InputSpec((3, 32, 32))


def _on_cpu(update) -> bool:  # noqa: ANN001
    """Every tensor of an update file is a CPU tensor, whatever device captured it."""
    tensors = [*update.update.values(), *update.params.values(), *update.buffers.values()]
    tensors += [t for pair in update.bn_stats.values() for t in pair]
    return all(t.device.type == "cpu" for t in tensors)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_gradient_matches_direct_torch(batch, mode, device):
    images, labels = batch
    spec, model, input_spec = _setup()
    config = CaptureConfig(mode=mode)
    update = capture_update(model, spec, input_spec, images, labels, config, device)

    reference = build_model(spec, init_seed=0).train(mode == "train").to(device)
    mean = torch.tensor(input_spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(input_spec.std, device=device).view(1, 3, 1, 1)
    loss = F.cross_entropy(reference((images.to(device) - mean) / std), labels.to(device))
    loss.backward()
    for name, param in reference.named_parameters():
        torch.testing.assert_close(update.update[name], param.grad.cpu(), rtol=1e-5, atol=1e-7)
    assert update.kind == "gradient" and update.mode == mode and update.batch_size == 4
    assert _on_cpu(update)


def test_update_carries_state_received_before_training(batch, device):
    images, labels = batch
    spec, model, input_spec = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = CaptureConfig(mode="train")
    update = capture_update(model, spec, input_spec, images, labels, config, device)
    for name, value in before.items():
        stored = update.params.get(name, update.buffers.get(name))
        torch.testing.assert_close(stored, value)
        torch.testing.assert_close(model.state_dict()[name], value)  # caller's model untouched


def test_fedavg_delta_matches_explicit_sgd_loop(batch, device):
    images, labels = batch
    spec, model, input_spec = _setup()
    local = LocalTraining(steps=3, lr=0.1, batch_size=3)
    config = CaptureConfig(mode="eval", local=local)
    update = capture_update(model, spec, input_spec, images, labels, config, device)
    assert _on_cpu(update)

    reference = build_model(spec, init_seed=0).eval().to(device)
    start = {n: p.detach().clone() for n, p in reference.named_parameters()}
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    inputs, labels = input_spec.normalize(images.to(device)), labels.to(device)
    # Consecutive slices of 3 that wrap around a batch of 4: 0,1,2 | 3,0,1 | 2,3,0.
    for idx in ([0, 1, 2], [3, 0, 1], [2, 3, 0]):
        optimizer.zero_grad()
        F.cross_entropy(reference(inputs[idx]), labels[idx]).backward()
        optimizer.step()
    assert update.kind == "delta"
    for name, param in reference.named_parameters():
        torch.testing.assert_close(
            update.update[name], (param.detach() - start[name]).cpu(), atol=1e-6, rtol=1e-5
        )


def test_shuffled_schedule_is_seeded_permutation_slices():
    local = LocalTraining(steps=4, lr=0.1, batch_size=3, shuffle=True)
    first = minibatch_schedule(6, local, torch.Generator().manual_seed(5))
    again = minibatch_schedule(6, local, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Two steps of 3 use each of the 6 images exactly once per permutation.
    assert sorted(torch.cat(first[:2]).tolist()) == list(range(6))
    assert sorted(torch.cat(first[2:]).tolist()) == list(range(6))


def test_gaussian_and_laplace_noise_have_their_defined_std():
    clean = {"a": torch.zeros(200_000), "b": torch.zeros(300, 400)}
    noisy, record = apply_defenses(clean, DefenseConfig(noise=0.05), seed=3)
    values = torch.cat([t.flatten() for t in noisy.values()])
    assert abs(values.std().item() - 0.05) / 0.05 < 0.01
    assert record == [{"name": "noise", "kind": "gaussian", "std": 0.05}]

    noisy, _ = apply_defenses(clean, DefenseConfig(noise=0.05, noise_kind="laplace"), seed=3)
    values = torch.cat([t.flatten() for t in noisy.values()])
    assert abs(values.std().item() - 0.05 * math.sqrt(2)) / (0.05 * math.sqrt(2)) < 0.015
    # Laplace: mean absolute deviation equals the scale b.
    assert abs(values.abs().mean().item() - 0.05) / 0.05 < 0.01


def test_pruning_zeroes_the_smallest_fraction_per_tensor():
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "w": torch.randn(50, 40, generator=generator),
        "b": torch.randn(7, generator=generator),
    }
    pruned, _ = apply_defenses(tensors, DefenseConfig(prune=0.9), seed=0)
    for name, value in tensors.items():
        removed = int(0.9 * value.numel())
        zeros = (pruned[name] == 0).sum().item()
        assert zeros == removed
        kept = value.abs().flatten().sort().values[removed:]
        np.testing.assert_allclose(
            pruned[name].abs().flatten().sort().values[removed:].numpy(), kept.numpy()
        )


def test_clipping_scales_to_the_bound_only_when_above():
    tensors = {"a": torch.full((4,), 3.0), "b": torch.full((9,), 4.0 / 3.0)}  # norm sqrt(36+16)
    clipped, record = apply_defenses(tensors, DefenseConfig(clip=1.0), seed=0)
    assert global_norm(clipped).item() == pytest.approx(1.0)
    assert record[0]["norm_before"] == pytest.approx(math.sqrt(52))
    unclipped, _ = apply_defenses(tensors, DefenseConfig(clip=100.0), seed=0)
    torch.testing.assert_close(unclipped["a"], tensors["a"])


def test_shared_bn_stats_equal_direct_statistics(batch, device):
    images, labels = batch
    spec, model, input_spec = _setup()
    config = CaptureConfig(mode="train", share_bn_stats=True)
    update = capture_update(model, spec, input_spec, images, labels, config, device)
    assert _on_cpu(update)
    first_conv = model.features[0].to(device)
    out = first_conv(input_spec.normalize(images.to(device))).detach().cpu()
    mean, var = update.bn_stats["features.1"]
    torch.testing.assert_close(mean, out.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, out.var(dim=(0, 2, 3), unbiased=False), rtol=1e-5, atol=1e-6)
    assert len(update.bn_stats) == 3 and update.threat["bn_stats_shared"] is True


def test_capture_leaves_the_global_random_state_alone(batch, device):
    """capture seeds its own draws (dropout, shuffling) and restores the caller's RNG state,
    on the device it runs on as on the CPU."""
    images, labels = batch
    spec, model, input_spec = _setup()

    def state() -> torch.Tensor:
        return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()

    torch.manual_seed(1234)  # a state that capture's own seed (0) would not give back
    before = state()
    capture_update(model, spec, input_spec, images, labels, CaptureConfig(mode="train"), device)
    assert torch.equal(state(), before)


def test_update_file_round_trip(tmp_path, batch):
    images, labels = batch
    spec, model, input_spec = _setup("lenet")
    config = CaptureConfig(defense=DefenseConfig(clip=1.0, noise=0.01))
    update = capture_update(model, spec, input_spec, images, labels, config)
    save_update(update, tmp_path / "u.safetensors")
    loaded = load_update(tmp_path / "u.safetensors")
    assert loaded.model == spec and loaded.input == input_spec
    assert [d["name"] for d in loaded.defense] == ["clip", "noise"]
    for name, value in update.update.items():
        assert torch.equal(loaded.update[name], value)


def test_truth_holds_the_exact_pixels_of_the_files(batch):
    images, _ = batch
    from pathlib import Path

    first = sorted(Path(SAMPLES).glob("*.png"))[0]
    direct = np.asarray(Image.open(first).convert("RGB"), dtype=np.float32) / 255.0
    np.testing.assert_array_equal(images[0].permute(1, 2, 0).numpy(), direct)


def test_lenet_follows_dlg():
    spec = model_spec("lenet", 10, (3, 32, 32))
    model = build_model(spec, init_seed=1)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (3, 12, 2),
        (12, 12, 2),
        (12, 12, 1),
    ]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert sum(isinstance(m, torch.nn.Sigmoid) for m in model.modules()) == 3
    for param in model.parameters():
        assert param.min() >= -0.5 and param.max() <= 0.5
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_resnet18_has_small_stem():
    model = build_model(model_spec("cifar-resnet18", 10, (3, 32, 32)))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
