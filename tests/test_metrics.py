"""Chamfer, per-point L2, PSNR and SSIM against values worked out by hand on small inputs."""
import math

import numpy as np
import torch

from train.metrics import _nearest_sq, chamfer_distance, kd_trees, per_point_l2, psnr, ssim


def test_chamfer_and_l2_by_hand():
    a = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0]]])
    b = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]]])
    # a -> b: both exact (0); b -> a: 0, 0 and 2^2 = 4, mean 4/3
    assert torch.allclose(chamfer_distance(a, b), torch.tensor([4 / 3]))
    assert torch.allclose(chamfer_distance(a, b, chunk=1), chamfer_distance(a, b))
    assert torch.allclose(per_point_l2(a, a + torch.tensor([3.0, 4.0, 0])), torch.tensor([5.0]))


def test_chamfer_by_kd_trees_equals_the_distance_matrix():
    """The CPU path (KD-trees, shared trees of b) against the GPU path's exhaustive torch.cdist."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 700, 3, generator=g), torch.randn(3, 500, 3, generator=g) * 1.3
    brute = _nearest_sq(a, b, 128).mean(1) + _nearest_sq(b, a, 128).mean(1)
    assert torch.allclose(chamfer_distance(a, b), brute, rtol=1e-5)
    assert torch.allclose(chamfer_distance(a, b, b_trees=kd_trees(b)), brute, rtol=1e-5)


def test_psnr_by_hand():
    true = np.zeros((4, 4, 3), np.uint8)
    pred = true.copy()
    pred[0, 0, 0] = 255  # one element of 48 off by 255: MSE = 255^2 / 48
    assert math.isclose(psnr(pred, true), 10 * math.log10(48))
    assert psnr(true, true) == float("inf")


def test_ssim_by_hand():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert math.isclose(ssim(img, img), 1.0)
    # a constant offset c on flat images: luminance term only, (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1)
    flat, shifted = np.full((16, 16, 1), 100.0), np.full((16, 16, 1), 110.0)
    C1 = (0.01 * 255) ** 2
    assert math.isclose(ssim(shifted, flat), (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1), rel_tol=1e-6)


def test_lpips_loads_a_backbone_file_and_scores_and_names_what_is_missing(tmp_path, monkeypatch):
    from train import lpips_metric

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    reason = lpips_metric.unavailable_reason()
    assert lpips_metric.load() is None and lpips_metric.BACKBONE_FILE in reason and str(tmp_path / "hub") in reason
    assert "nowhere.pth" in lpips_metric.unavailable_reason(str(tmp_path / "nowhere.pth"))
    # torchvision's parameter names and shapes, random values: the real loading path, figures unasserted
    torch.manual_seed(0)
    path = tmp_path / "hub" / "checkpoints" / lpips_metric.BACKBONE_FILE
    path.parent.mkdir(parents=True)
    state = lpips_metric.AlexFeatures().state_dict()
    assert sorted(state) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    torch.save(state, path)
    metric = lpips_metric.load()
    assert metric is not None and lpips_metric.unavailable_reason() is None
    assert torch.equal(metric.net.features[0].weight, state["features.0.weight"])
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    assert lpips_metric.lpips_of_strips(metric, a, a) == 0.0
    assert lpips_metric.lpips_of_strips(metric, a, b) > 0.0


def _torchvision_alexnet_features():
    """torchvision's `AlexNet().features` as torchvision defines it (models/alexnet.py), in-place
    ReLUs included: the trunk the `lpips` package builds, written apart from ours on purpose."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True))


def test_lpips_matches_the_lpips_package_forward_pass(tmp_path, monkeypatch):
    """Ours against `lpips.LPIPS(net="alex")` itself (its scaling layer, slices, normalisation, its own
    v0.1 linear weights, spatial average) with one backbone file loaded by both. The `lpips` package
    imports torchvision, whose wheel does not load beside the CPU torch, so a stand-in module serves
    `torchvision.models.alexnet` (the same architecture, reading the same file). ImageNet's AlexNet
    weights are not on these machines, so the file holds seeded random weights: this checks the
    computation, not the published figures."""
    import sys
    import types

    from train import lpips_metric

    torch.manual_seed(0)
    backbone = tmp_path / lpips_metric.BACKBONE_FILE
    state = {f"features.{k}": v for k, v in _torchvision_alexnet_features().state_dict().items()}
    torch.save(state, backbone)

    def alexnet(pretrained=True, **_):
        features = _torchvision_alexnet_features()
        features.load_state_dict({k[len("features."):]: v for k, v in torch.load(backbone).items()})
        return types.SimpleNamespace(features=features)

    torchvision = types.ModuleType("torchvision")
    torchvision.models = types.SimpleNamespace(alexnet=alexnet)
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    theirs = lpips.LPIPS(net="alex", verbose=False)
    ours = lpips_metric.LPIPS(str(backbone), lpips_metric.linear_weights_path())
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 256, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    c = np.roll(a, 5, axis=1)
    for x, y in ((a, b), (a, c), (b, c)):
        def tensor(im):
            return torch.as_tensor(im).permute(2, 0, 1)[None].float() / 127.5 - 1.0

        with torch.no_grad():
            expected = float(theirs(tensor(x), tensor(y)).flatten()[0])
        got = lpips_metric.lpips_of_strips(ours, x, y)
        # the same float32 operations: equal to a millionth (the bar is 1e-4 absolute)
        assert expected > 1e-3 and math.isclose(got, expected, rel_tol=1e-6), (got, expected)
