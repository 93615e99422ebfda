"""Metrics against independent references: scikit-image, brute force, direct torch."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.io.files import BatchFile
from gradinvert.io.images import load_images
from gradinvert.metrics import (
    PSNR_CAP_DB,
    LpipsScorer,
    assign,
    check_gates,
    evaluate_batches,
    identified,
    identity_matching,
    iip,
    label_accuracy,
    load_lpips,
    pairwise_mse,
    parse_gate,
    penultimate_features,
    psnr,
    registered_psnr,
    resolve_lpips,
    ssim,
    translate,
)
from gradinvert.models import InputSpec, build_model, model_spec
from gradinvert.runtime.errors import InvalidInputError, UnavailableError, UsageError

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "images32"


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    images, _ = load_images([SAMPLES])
    return images[:8].double()


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).double().numpy()


def _noisy(images: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=g, dtype=images.dtype).to(images.device)
    return (images + std * noise).clamp(0, 1)


def _random_pairs(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    return x, _noisy(x, 0.2, seed + 1)


def _sk_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(
        _hwc(a),
        _hwc(b),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
        channel_axis=2,
    )


# ---------------------------------------------------------------- PSNR / SSIM vs scikit-image


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (3, 1, 16, 24), (2, 3, 11, 40)])
def test_psnr_and_ssim_equal_skimage_on_random_images(shape, device):
    x, y = _random_pairs(shape, seed=sum(shape))
    ours_psnr, ours_ssim = psnr(x.to(device), y.to(device)), ssim(x.to(device), y.to(device))
    assert ours_psnr.device.type == ours_ssim.device.type == device.type
    for i in range(shape[0]):
        ref_psnr = peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(), data_range=1)
        assert ours_psnr[i].item() == pytest.approx(ref_psnr, abs=1e-4)
        assert ours_ssim[i].item() == pytest.approx(_sk_ssim(x[i], y[i]), abs=1e-4)


def test_psnr_and_ssim_equal_skimage_on_real_photos(photos):
    # Noisy, blurred and unrelated photos span high, medium and low similarity.
    blurred = torch.nn.functional.avg_pool2d(photos, 3, stride=1, padding=1)
    for other in (_noisy(photos, 0.05, 0), blurred, photos.roll(1, dims=0)):
        ours_psnr, ours_ssim = psnr(photos, other.float()), ssim(photos, other.float())
        for i in range(photos.shape[0]):
            a, b = photos[i], other.float()[i].double()
            ref = peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1)
            assert ours_psnr[i].item() == pytest.approx(ref, abs=1e-4)
            assert ours_ssim[i].item() == pytest.approx(_sk_ssim(a, b), abs=1e-4)


def test_psnr_of_identical_images_is_capped_and_finite(photos):
    values = psnr(photos, photos.clone())
    assert torch.isfinite(values).all()
    assert torch.allclose(values, torch.full_like(values, PSNR_CAP_DB))
    assert ssim(photos, photos).sub(1).abs().max() < 1e-12


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))  # below the 11-px window
    with pytest.raises(ValueError):
        psnr(torch.rand(2, 3, 8, 8), torch.rand(3, 3, 8, 8))


# ---------------------------------------------------------------- matching


def test_mse_matching_recovers_a_known_permutation(photos, device):
    photos = photos.to(device)
    perm = torch.tensor([5, 2, 7, 0, 1, 6, 4, 3])
    recon = _noisy(photos, 0.1, 3)[perm]
    cost = pairwise_mse(recon, photos)
    direct = ((recon[:, None] - photos[None]) ** 2).flatten(2).mean(-1)
    assert torch.allclose(cost, direct)
    matching = assign(cost, "mse")
    assert matching.recon_index == list(range(8))
    assert matching.truth_index == perm.tolist()
    assert matching.unmatched_recon == [] and matching.unmatched_truth == []


def test_matching_is_optimal_and_handles_fewer_reconstructions():
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(3, 5, generator=g, dtype=torch.float64)
    matching = assign(cost, "mse")
    best = min(
        sum(cost[r, c].item() for r, c in enumerate(cols))
        for cols in itertools.permutations(range(5), 3)
    )
    got = sum(
        cost[r, c].item() for r, c in zip(matching.recon_index, matching.truth_index, strict=True)
    )
    assert got == pytest.approx(best)
    assert len(matching.unmatched_truth) == 2 and matching.unmatched_recon == []
    plain = identity_matching(4, 2)
    assert plain.truth_index == [0, 1] and plain.unmatched_recon == [2, 3]


# ---------------------------------------------------------------- registration


def test_translate_moves_content_and_replicates_edges(photos):
    image = photos[0]
    moved = translate(image, 2, -3)
    assert torch.equal(moved[:, 2:, :-3], image[:, :-2, 3:])
    assert torch.equal(moved[:, :2, :-3], image[:, :1, 3:].expand(-1, 2, -1))
    assert torch.equal(moved[:, 2:, -3:], image[:, :-2, -1:].expand(-1, -1, 3))


def test_registered_psnr_undoes_shift_and_flip(photos, device):
    photos = photos.to(device)
    shifted = torch.stack([translate(p, 2, -3) for p in photos[:4]])
    flipped = photos[4:].flip(-1)
    recon = torch.cat([shifted, flipped])
    plain = psnr(recon, photos)
    registered, alignments = registered_psnr(recon, photos)
    assert (registered >= plain).all()
    assert (registered[:4] > plain[:4] + 5).all()
    assert all(a.shift == (-2, 3) and not a.flip for a in alignments[:4])
    assert all(a.flip for a in alignments[4:])
    cap = torch.full((4,), PSNR_CAP_DB, dtype=torch.float64, device=device)
    assert torch.allclose(registered[4:], cap)


def test_registered_psnr_compares_each_image_only_with_its_own_original(photos):
    recon = torch.stack([translate(p, 1, 2) for p in photos])
    together, _ = registered_psnr(recon, photos)
    for k in range(photos.shape[0]):
        alone, _ = registered_psnr(recon[k : k + 1], photos[k : k + 1])
        assert together[k].item() == pytest.approx(alone.item(), abs=1e-12)
    # Against the wrong originals the shifted copies are not found again.
    wrong, _ = registered_psnr(recon, photos.roll(1, dims=0))
    assert (wrong < together - 5).all()


# ---------------------------------------------------------------- IIP and features


def test_iip_on_constructed_pools(photos, device):
    photos = photos.to(device)
    truth = photos[:4]
    close = _noisy(truth, 0.02, 1)
    assert iip(close, truth, [0, 1, 2, 3]) == 1.0
    # Reconstructions that look like another member of the pool are not identified.
    swapped = close[[1, 0, 2, 3]]
    assert identified(swapped, truth, [0, 1, 2, 3]) == [False, False, True, True]
    assert iip(swapped, truth, [0, 1, 2, 3]) == 0.5
    # An extra pool image closer than the original takes the nearest-neighbour place.
    pool = torch.cat([truth, close[2:3]])
    assert identified(close, pool, [0, 1, 2, 3]) == [True, True, False, True]


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 12), nn.ReLU())
        self.head = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_penultimate_features_are_the_last_linear_input(device):
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16).to(device)
    mlp = _MLP().train().to(device)
    assert torch.allclose(penultimate_features(mlp, x), mlp.body(x))
    assert mlp.training  # mode restored
    spec = model_spec("convnet", 10, (3, 16, 16))
    convnet = build_model(spec, init_seed=0).eval().to(device)
    assert torch.allclose(penultimate_features(convnet, x), convnet.features(x))
    with pytest.raises(InvalidInputError):
        penultimate_features(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)), torch.rand(2, 4))


# ---------------------------------------------------------------- labels and gates


@pytest.mark.parametrize(
    ("pred", "true"), [([3, 3, 7], [3, 7, 7]), ([1, 2, 3, 4], [4, 3, 2, 1]), ([0, 0], [1, 0, 0])]
)
def test_label_accuracy_is_the_best_order_free_match(pred, true):
    n = max(len(pred), len(true))
    padded = pred + [-1] * (n - len(pred))
    brute = max(
        sum(a == b for a, b in zip(p, true, strict=False)) for p in itertools.permutations(padded)
    )
    assert label_accuracy(torch.tensor(pred), true) == pytest.approx(brute / n)


def test_gates_parse_and_trip_in_the_leakage_direction():
    summary = {
        "psnr": {"mean": 20.0},
        "psnr_registered": {"mean": 22.0},
        "ssim": {"mean": 0.4},
        "lpips": {"mean": 0.3},
        "label_acc": 1.0,
        "iip": 0.25,
        "iip_spaces": {"pixels": 0.25, "penultimate": 0.75},
    }
    ok = [parse_gate(t) for t in ("psnr=21", "ssim=0.5", "lpips=0.2", "label_acc=1", "iip=0.8")]
    assert check_gates(summary, ok) == []
    bad = [parse_gate(t) for t in ("psnr=18", "ssim=0.3", "lpips=0.4", "label_acc=0.9", "iip=0.5")]
    tripped = check_gates(summary, bad)
    assert [t.split("=")[0] for t in tripped] == ["psnr", "ssim", "lpips", "label_acc", "iip"]
    assert check_gates({**summary, "lpips": None}, [parse_gate("lpips=0.1")])  # unmeasured
    for text in ("psnr", "psnr=", "foo=1", "psnr=abc", "ssim=nan"):
        with pytest.raises(UsageError):
            parse_gate(text)


# ---------------------------------------------------------------- LPIPS plumbing


def _random_alexnet_features(seed: int = 0) -> dict[str, torch.Tensor]:
    """Test-only random backbone: torchvision AlexNet's feature layers, seeded init."""
    torch.manual_seed(seed)
    state = torchvision.models.alexnet(weights=None).state_dict()
    return {k: v for k, v in state.items() if k.startswith("features.")}


@pytest.fixture(scope="module")
def random_scorer() -> LpipsScorer:
    return LpipsScorer.from_backbone_state("alex", _random_alexnet_features(), "test-random")


def _scorer_on(scorer: LpipsScorer, device: torch.device) -> LpipsScorer:
    """``scorer`` itself on the CPU, a copy on another device."""
    if device.type == "cpu":
        return scorer
    return LpipsScorer(scorer.net, copy.deepcopy(scorer.model).to(device), scorer.source)


def test_lpips_backbone_is_loaded_from_the_given_state(random_scorer):
    state = _random_alexnet_features()
    loaded = {
        f"features.{index}.{key}": value
        for part in random_scorer.model.net.children()
        for index, layer in part.named_children()
        for key, value in layer.state_dict().items()
    }
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_lpips_distances_match_the_package_forward(random_scorer, photos, device):
    scorer = _scorer_on(random_scorer, device)
    x, y = photos[:3].float().to(device), _noisy(photos[:3], 0.1, 5).float().to(device)
    ours = scorer.distance(x, y)
    assert ours.device.type == "cpu"
    reference = scorer.model(x, y, normalize=True).flatten().double().cpu()
    assert torch.allclose(ours, reference, atol=1e-5)
    pairwise = scorer.pairwise(x, y)
    assert torch.allclose(pairwise.diagonal(), ours, atol=1e-5)
    other = scorer.model(x[0:1].expand(3, -1, -1, -1), y, normalize=True).flatten()
    assert torch.allclose(pairwise[0], other.double().cpu(), atol=1e-5)
    assert scorer.distance(x, x).abs().max() < 1e-6
    small = scorer.distance(x[:, :, :16, :16], y[:, :, :16, :16])  # upsampled to 32 px
    assert torch.isfinite(small).all()


def test_lpips_needs_real_backbone_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UnavailableError):
        load_lpips("alex")
    scorer, warning = resolve_lpips("auto")
    assert scorer is None and "unavailable" in warning
    with pytest.raises(UnavailableError):
        resolve_lpips("auto", required=True)
    assert resolve_lpips("off") == (None, None)
    # A file in torchvision's cache location is found without --lpips-weights.
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cache.parent.mkdir(parents=True)
    torch.save(_random_alexnet_features(), cache)
    scorer = load_lpips("alex")
    assert scorer.source == str(cache)
    broken = tmp_path / "broken.pth"
    torch.save({"features.0.weight": torch.zeros(2, 2)}, broken)
    with pytest.raises(InvalidInputError):
        load_lpips("alex", broken)
    with pytest.raises(InvalidInputError):
        load_lpips("vgg", cache)  # AlexNet weights asked to be VGG


# ---------------------------------------------------------------- evaluate_batches


def test_evaluate_batches_scores_matched_pairs(photos, random_scorer, device):
    scorer = _scorer_on(random_scorer, device)
    truth_images = photos[:6].float()
    labels = torch.tensor([0, 1, 2, 2, 5, 9])
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    recon_images = _noisy(truth_images, 0.05, 7).float()[perm]
    recon_labels = labels[perm].clone()
    recon_labels[0] = 7  # one wrong label
    spec = model_spec("convnet", 10, (3, 32, 32), width=8)
    input_spec = InputSpec((3, 32, 32))
    update = capture_update(
        build_model(spec, init_seed=0), spec, input_spec, truth_images, labels, CaptureConfig()
    )
    result = evaluate_batches(
        BatchFile(recon_images, recon_labels),
        BatchFile(truth_images, labels),
        update=update,
        device=device,
        lpips_scorer=scorer,
    )
    assert result["matching"] == "mse"
    rows = result["images"]
    assert [r["truth_index"] for r in rows] == perm.tolist()
    expected_psnr = psnr(recon_images, truth_images[perm])
    assert [r["psnr"] for r in rows] == pytest.approx(expected_psnr.tolist())
    assert [r["ssim"] for r in rows] == pytest.approx(
        ssim(recon_images, truth_images[perm]).tolist()
    )
    lp = scorer.distance(recon_images, truth_images[perm])
    assert [r["lpips"] for r in rows] == pytest.approx(lp.tolist())
    assert [r["label_ok"] for r in rows] == [False] + [True] * 5
    summary = result["summary"]
    assert summary["psnr"]["mean"] == pytest.approx(expected_psnr.mean().item())
    assert summary["psnr"]["max"] == pytest.approx(expected_psnr.max().item())
    assert summary["lpips"]["best_index"] == int(lp.argmin())
    assert summary["label_acc"] == pytest.approx(5 / 6)
    assert summary["iip_spaces"]["pixels"] == 1.0
    assert set(summary["iip_spaces"]) == {"pixels", "penultimate"}
    assert result["iip_pool_size"] == 6
    plain = evaluate_batches(
        BatchFile(recon_images, recon_labels),
        BatchFile(truth_images, labels),
        match="none",
        lpips="off",
        device=device,
    )
    assert plain["matching"] == "none" and plain["summary"]["lpips"] is None
    assert [r["truth_index"] for r in plain["images"]] == list(range(6))
    assert plain["summary"]["psnr"]["mean"] < summary["psnr"]["mean"]
