"""The general recipe's pieces: the normalised content code, the distorted content view, and the preset."""
from __future__ import annotations

import torch

from g2g.configs import load_preset
from g2g.hparams import LossWeights
from g2g.networks.encoders import ContentEncoder
from g2g.networks.generator import Generator, generator_config
from g2g.wiring import _augmented, g2g_forward

from helpers import TINY


def test_normalised_content_code_has_zero_mean_and_unit_variance_per_channel():
    torch.manual_seed(0)
    enc = ContentEncoder(3, 8, 2, 1, 2, normalize_code=True)
    code = enc(torch.rand(4, 3, 32, 32) * 2 - 1)                            # (4, 2, 8, 8)
    assert code.shape == (4, 2, 8, 8)
    torch.testing.assert_close(code.mean(dim=(2, 3)), torch.zeros(4, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(code.var(dim=(2, 3), unbiased=False), torch.ones(4, 2), atol=1e-3, rtol=0)
    plain = ContentEncoder(3, 8, 2, 1, 2)
    plain.load_state_dict(enc.state_dict())
    assert not torch.allclose(plain(torch.ones(1, 3, 32, 32)).mean(), torch.zeros(()), atol=1e-3)


def test_content_norm_travels_with_the_arch_config():
    config = generator_config(**{**TINY, "content_norm": True})
    assert Generator(config).content_encoder.normalize_code
    assert not Generator(generator_config(**TINY)).content_encoder.normalize_code


def test_distorted_view_is_seeded_bounded_and_off_at_zero():
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    assert _augmented(x, 0.0, torch.Generator().manual_seed(0)) is x
    a = _augmented(x, 1.0, torch.Generator().manual_seed(1))
    b = _augmented(x, 1.0, torch.Generator().manual_seed(1))
    c = _augmented(x, 1.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= x.min() - 1e-6 and a.max() <= x.max() + 1e-6
    assert (a - x).abs().mean() > 0.01                                       # it does distort


def test_distortion_reaches_the_content_code_only():
    torch.manual_seed(0)
    gen = Generator(generator_config(**{**TINY, "content_norm": True}))
    x1, x2 = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    refs = torch.rand(2, 3, 2, 3, 16, 16) * 2 - 1
    plain = g2g_forward(gen, x1, x2, refs[0], refs[1], long=False)
    seeded = g2g_forward(gen, x1, x2, refs[0], refs[1], long=False, content_augment=1.0,
                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seeded.b1, plain.b1)                          # class codes: undistorted
    assert not torch.allclose(seeded.a1, plain.a1)


def test_general_preset_is_the_g2g_arch_with_the_bottleneck_and_the_cycle():
    config = load_preset("general")
    gen, loss = config["model"]["generator"], config["model"]["loss"]
    assert gen["arch"] == "g2g" and gen["content_norm"] is True
    weights = LossWeights(**loss)
    assert weights.lambda_long > 0 and weights.content_augment > 0 and weights.content_noise > 0
    assert "sprite" not in str(config)
