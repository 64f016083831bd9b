"""benchmarks/pose_diagnostics.py: the pose-noise fit on constructed poses with known noise, the true pose of
known factors, and the double-swap split against the G2G pass on a small sprite model."""
import math
import sys
from pathlib import Path

import pytest
import torch

from g2g.data.shapes import ShapesDataset
from g2g.networks.generator import Generator, generator_config
from g2g.wiring import g2g_forward

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import pose_diagnostics as pd  # noqa: E402


def test_affine_residuals_recover_the_noise_around_a_different_affine_map_per_class():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(6000, 4, generator=g)
    labels = torch.arange(6000) % 3
    maps, offsets = torch.randn(3, 4, 4, generator=g), torch.randn(3, 4, generator=g)
    exact = torch.einsum("nt,ntp->np", truth, maps[labels]) + offsets[labels]
    assert pd.affine_residuals(exact, truth, labels).abs().max() < 1e-4
    noise = 0.05 * torch.randn(6000, 4, generator=g)
    rms = pd.affine_residuals(exact + noise, truth, labels).pow(2).mean(0).sqrt()
    torch.testing.assert_close(rms, torch.full((4,), 0.05), atol=0.003, rtol=0)


def test_true_pose_of_known_factors():
    factors = torch.tensor([[0.5, 0.5, 0.0, 0.5, 0.3], [1.0, 0.0, 1.0, 1.0, 0.3]])
    pose = pd.true_pose(factors, 32)
    torch.testing.assert_close(pose[0], torch.tensor([0.0, 0.0, math.log(0.5), 0.0]))
    travel = 1.0 - 0.75 - 2.0 / 32  # the largest shape's centre goes this far from the middle
    torch.testing.assert_close(pose[1], torch.tensor([travel, -travel, math.log(0.75), math.radians(25.0)]))


@pytest.mark.parametrize("n_fit", [0, 2])
def test_the_double_swap_ratio_is_the_g2g_pass_and_every_figure_is_reported(n_fit):
    torch.manual_seed(0)
    gen = Generator(generator_config(arch="sprite", image_size=16, nf=4, n_downs_content=2, content_channels=4,
                                    n_downs_class=2, class_dim=8, mlp_dim=16, n_fit=n_fit)).eval()
    with torch.no_grad():  # non-zero pose heads: poses differ between images and read-backs are off
        for head in (gen.content_encoder.coarse.head, gen.content_encoder.fine.head):
            head[-1].weight.normal_(0, 0.3)
    ds = ShapesDataset("test", size=16, n=200, seed=0, classes="seen")
    out = pd.diagnose(gen, ds.images, ds.labels, ds.factors, n_pairs=100, chunk=64)
    i, j = pd.make_pairs(ds.labels, 100, 0)
    with torch.no_grad():
        res = g2g_forward(gen, ds.images[i], ds.images[j])
    x1 = ds.images[i]
    expected = (res.r1 - x1).abs().mean() / (res.x1_hat - x1).abs().mean()
    assert out["to_short_l1"]["double_swap"] == pytest.approx(float(expected), rel=1e-3)
    for key in ("real_pose_noise_px", "short_readback_px", "mixed_readback_px"):
        assert set(out[key]) == {"x", "y", "scale", "angle"} and all(v >= 0 for v in out[key].values())
    assert out["mixed_readback_px"]["x"] > 0
    assert set(out["mixed_readback_mean_px_by_drawn_shape"]) <= {"bar", "square", "triangle", "star", "cross", "heart"}
