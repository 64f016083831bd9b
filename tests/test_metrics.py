"""Metric primitives against constructed cases with known answers (fast, CPU, fixed seeds)."""

import json
import math

import numpy as np
import pytest
import torch

from g2g.evaluation.intervals import bootstrap_ci, bootstrap_ratio_ci, seed_ci
from g2g.evaluation.metrics import (
    PSNR_CAP_DB,
    classify,
    cosine_agreement,
    flat_image_baseline,
    image_metrics,
    per_image_metrics,
    per_image_psnr,
    train_classifier,
)
from g2g.evaluation.probes import dci, factor_r2, linear_probe, mlp_factor_r2, mlp_probe


def _images(n=4, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen) * 1.6 - 0.8  # room for a +0.2 offset inside [-1, 1]


@pytest.mark.parametrize("size", [16, 32, 64])
def test_identical_images_score_perfectly(size):
    x = _images(size=size)
    m = image_metrics(x, x.clone())
    assert m["l1"] == 0.0
    assert m["psnr"] == PSNR_CAP_DB  # capped, not inf
    assert m["ssim"] == pytest.approx(1.0, abs=1e-5)


def test_known_offset_gives_known_psnr_and_l1():
    x = _images()
    y = x + 0.2  # 0.1 on the [0, 1] scale → MSE 0.01 → 20 dB
    m = image_metrics(y, x)
    assert m["l1"] == pytest.approx(0.1, abs=1e-6)
    assert m["psnr"] == pytest.approx(20.0, abs=1e-4)
    assert torch.allclose(per_image_psnr(y, x), torch.full((4,), 20.0), atol=1e-4)
    assert m["ssim"] < 1.0


def test_psnr_is_mean_of_per_image_values():
    x = _images(n=2)
    y = x.clone()
    y[1] += 0.2  # image 0 perfect (100 dB), image 1 at 20 dB
    assert image_metrics(y, x)["psnr"] == pytest.approx(60.0, abs=1e-3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        image_metrics(_images(size=32), _images(size=16))


def test_flat_baseline_keeps_each_mean_colour():
    x = _images()
    flat = flat_image_baseline(x)
    assert flat.shape == x.shape
    assert torch.allclose(flat.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6)
    assert torch.all(flat.std(dim=(2, 3)) < 1e-6)


def _class_codes(n=1500, classes=10, dims=64, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    codes = rng.normal(0, noise, (n, dims))
    codes[np.arange(n), labels] += 1.0  # one-hot class plus noise
    return codes, labels


@pytest.mark.parametrize("probe", [linear_probe, mlp_probe])
def test_probe_reads_class_from_codes_that_hold_it(probe):
    codes, labels = _class_codes()
    out = probe(torch.as_tensor(codes).view(-1, 4, 4, 4), labels)  # spatial codes are flattened
    assert out["accuracy"] >= 0.99
    assert out["n_classes"] == 10
    assert 0.09 < out["chance"] < 0.13


@pytest.mark.parametrize("probe", [linear_probe, mlp_probe])
def test_probe_on_random_codes_is_near_chance(probe):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 2000)
    out = probe(rng.normal(size=(2000, 64)), labels)
    assert abs(out["accuracy"] - out["chance"]) < 0.06


def test_per_image_metrics_and_intervals():
    x = _images(n=8)
    y = x.clone()
    y[4:] += 0.2  # four perfect images, four at 20 dB
    per = per_image_metrics(y, x)
    assert per["psnr"].tolist() == pytest.approx([PSNR_CAP_DB] * 4 + [20.0] * 4, abs=1e-3)
    assert per["ssim"].shape == (8,) and per["ssim"][:4].tolist() == pytest.approx([1.0] * 4, abs=1e-5)
    m = image_metrics(y, x, ci=True)
    assert m["psnr"] == pytest.approx(60.0, abs=1e-3)
    assert m["psnr_ci95"][0] < 60 < m["psnr_ci95"][1] and m["l1_ci95"][0] <= m["l1"] <= m["l1_ci95"][1]


def test_probe_interval_brackets_its_accuracy():
    codes, labels = _class_codes(n=600, noise=2.0)  # a weak code: accuracy well inside (0, 1)
    out = linear_probe(codes, labels)
    assert out["ci95"][0] < out["accuracy"] < out["ci95"][1]
    assert out["ci95"][1] - out["ci95"][0] < 0.2


def test_ratio_and_seed_intervals_known_cases():
    rng = np.random.default_rng(0)
    short = rng.uniform(1, 2, 500)
    lo, hi = bootstrap_ratio_ci(1.5 * short, short)  # paired: the ratio is exactly 1.5 in every resample
    assert lo == pytest.approx(1.5) and hi == pytest.approx(1.5)
    lo, hi = bootstrap_ratio_ci(rng.uniform(1, 2, 500) * 1.5, short)
    assert lo < 1.5 < hi
    lo, hi = seed_ci([1.0, 2.0, 3.0])  # mean 2, s 1, t(0.975, 2) = 4.303
    assert (lo, hi) == pytest.approx((2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)), abs=1e-3)


def test_mlp_factor_r2_reads_a_nonlinear_factor():
    rng = np.random.default_rng(0)
    factor = rng.uniform(0, 1, (1500, 1))
    angle = 2 * np.pi * factor
    features = np.concatenate([np.cos(angle), np.sin(angle)], 1)  # a circle: no linear read-out of the angle
    assert mlp_factor_r2(features, factor)["mean"] > 0.9
    assert factor_r2(features, factor)["mean"] < 0.8
    random = mlp_factor_r2(rng.normal(size=(1500, 8)), factor)
    assert random["mean"] < 0.05 and random["ci95"][0] < random["mean"] < random["ci95"][1]


def test_factor_r2_known_cases():
    rng = np.random.default_rng(0)
    factors = rng.uniform(-1, 1, (1000, 3))
    linear = factors @ rng.normal(size=(3, 32)) + rng.normal(0, 0.01, (1000, 32))
    good = factor_r2(linear, factors)
    assert len(good["r2"]) == 3 and min(good["r2"]) > 0.99
    bad = factor_r2(rng.normal(size=(1000, 32)), factors)
    assert max(bad["r2"]) <= 0.05
    assert bad["mean"] == pytest.approx(np.mean(bad["r2"]))


def _dci_toy(entangled, n=1000, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    content = rng.uniform(-1, 1, (n, 2))  # two continuous content factors
    onehot = np.eye(classes)[labels]
    if not entangled:
        codes = {"class": onehot, "content": content}
    else:  # both blocks hold every factor, each mixed by its own random rotation
        full = np.concatenate([onehot, content], 1)  # (N, classes + 2)
        rot = [np.linalg.qr(rng.normal(size=(classes + 2,) * 2))[0] for _ in range(2)]
        codes = {"class": full @ rot[0], "content": full @ rot[1]}
    factors = {"class": labels, "x": content[:, 0], "y": content[:, 1]}
    return codes, factors


GROUPS = {"class": "class", "x": "content", "y": "content"}


def test_dci_separates_disentangled_from_entangled_codes():
    codes, factors = _dci_toy(entangled=False)
    good = dci(codes, factors, discrete={"class"}, factor_groups=GROUPS)
    json.dumps(good)  # JSON-serialisable as promised
    assert good["disentanglement"] >= 0.9 and good["completeness"] >= 0.9
    assert good["informativeness"] > 0.9
    assert np.array(good["importance"]).shape == (2, 3)
    bad = dci(*_dci_toy(entangled=True), discrete={"class"}, factor_groups=GROUPS)
    assert bad["disentanglement"] < good["disentanglement"] - 0.3
    assert bad["completeness"] < good["completeness"] - 0.3


def test_dci_without_groups_is_plain_eastwood():
    # the content block holds x and y equally: 1 − log_3 2 ≈ 0.37, the class block ≈ 1
    per_block = dci(*_dci_toy(entangled=False), discrete={"class"})["disentanglement_per_block"]
    assert per_block["class"] > 0.85 and per_block["content"] == pytest.approx(1 - math.log(2, 3), abs=0.05)


def test_dci_rejects_unknown_factor_names():
    codes, factors = _dci_toy(entangled=False, n=50)
    with pytest.raises(ValueError):
        dci(codes, factors, discrete={"shape"})
    with pytest.raises(ValueError):
        dci(codes, factors, discrete={"class"}, factor_groups={"class": "class"})


def test_bootstrap_interval_contains_mean_and_narrows():
    rng = np.random.default_rng(0)
    small, large = rng.normal(3, 1, 100), rng.normal(3, 1, 10_000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5  # width ∝ 1/√N: about 10× narrower
    assert hi_s - lo_s == pytest.approx(2 * 1.96 / math.sqrt(100), rel=0.25)


def test_cosine_agreement():
    a = torch.randn(8, 3, 4, 4)
    assert cosine_agreement(a, a) == pytest.approx(1.0, abs=1e-6)
    assert cosine_agreement(a, -a) == pytest.approx(-1.0, abs=1e-6)


def _shape_images(n, size=32, seed=0):
    """Four classes: (square | disc) × (red | blue) at random positions and sizes on a grey background."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    radius = torch.randint(4, 8, (n, 1, 1), generator=gen).float()
    cy, cx = (torch.randint(8, size - 8, (2, n, 1, 1), generator=gen)).float()
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    dy, dx = ys - cy, xs - cx  # (N, H, W)
    disc = dy**2 + dx**2 <= radius**2
    square = (dy.abs() <= radius * 0.8) & (dx.abs() <= radius * 0.8)
    mask = torch.where((labels % 2 == 0)[:, None, None], square, disc)[:, None]  # (N, 1, H, W)
    colour = torch.tensor([[0.9, -0.6, -0.6], [-0.6, -0.6, 0.9]])[labels // 2][:, :, None, None]
    background = torch.rand(n, 1, 1, 1, generator=gen) * 0.6 - 0.3
    images = torch.where(mask, colour, background) + 0.05 * torch.randn(n, 3, size, size, generator=gen)
    return images.clamp(-1, 1), labels


def test_classifier_learns_simple_shapes():
    train_x, train_y = _shape_images(1024, seed=0)
    test_x, test_y = _shape_images(512, seed=1)
    before = torch.random.get_rng_state()
    model = train_classifier(train_x, train_y, num_classes=4, epochs=4)
    assert torch.equal(before, torch.random.get_rng_state())  # caller's RNG untouched
    assert not model.training
    pred = classify(model, test_x, batch_size=100)
    assert pred.dtype == torch.long and pred.shape == (512,)
    assert (pred == test_y).float().mean() > 0.95
