"""Networks: AdaIN, encoders, decoder, discriminators and the generator config (tiny, fixed seeds)."""
import pytest
import torch

from helpers import make_module

from g2g.networks.blocks import AdaIN, InstanceNorm, adain, instance_norm
from g2g.networks.discriminators import ClassCritic, PatchGAN
from g2g.networks.generator import Generator, config_from_dict, generator_config


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) uniform in [-1, 1]."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def gen(tiny_config) -> Generator:
    torch.manual_seed(0)
    return Generator(tiny_config).eval()


# --- AdaIN ---------------------------------------------------------------------------------------


def test_adain_output_statistics_are_the_given_scale_and_bias():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g) * 5 + 3  # arbitrary per-channel statistics
    scale = torch.tensor([[0.5, 2.0, 1.0], [3.0, 0.25, 1.5]])
    bias = torch.tensor([[1.0, -2.0, 0.0], [0.5, 4.0, -1.0]])
    out = adain(x, scale, bias)
    assert out.shape == x.shape
    torch.testing.assert_close(out.mean(dim=(2, 3)), bias, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), scale, atol=1e-4, rtol=1e-4)


def test_adain_module_splits_scale_and_bias_and_centres_the_scale_on_one():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 4, generator=g)
    scale, bias = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    out = AdaIN(3)(x, torch.cat([scale, bias], dim=1))  # params: [scale | bias]
    torch.testing.assert_close(out, adain(x, 1.0 + scale, bias), rtol=0, atol=0)
    # zero parameters: plain instance normalisation (mean 0, std 1 per channel)
    plain = AdaIN(3)(x, torch.zeros(2, 6))
    torch.testing.assert_close(plain.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.std(dim=(2, 3), unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_instance_norm_is_torchs_instance_norm_in_value_gradient_and_memory_format(channels_last):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 7, 6, generator=g) * 4 - 2
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = instance_norm(ours)
    torch.testing.assert_close(out, torch.nn.functional.instance_norm(theirs), atol=1e-5, rtol=1e-5)
    upstream = torch.randn(out.shape, generator=g)
    (out * upstream).sum().backward()
    (torch.nn.functional.instance_norm(theirs) * upstream).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-5, rtol=1e-4)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(InstanceNorm(5)(x), torch.nn.InstanceNorm2d(5)(x), atol=1e-5, rtol=1e-5)


# --- encoders and decoder ------------------------------------------------------------------------


def test_encoder_output_shapes(gen, tiny_config):
    x = _images(3)
    assert gen.encode_content(x).shape == (3, *tiny_config.content_shape) == (3, 2, 4, 4)
    assert gen.encode_class(x).shape == (3, 8)


def test_class_encoder_with_references_is_the_mean_of_the_individual_codes(gen):
    refs = _images(2 * 3).view(2, 3, 3, 16, 16)  # (B=2, K=3, 3, H, W)
    pooled = gen.encode_class(refs)
    assert pooled.shape == (2, 8)
    individual = torch.stack([gen.encode_class(refs[:, k]) for k in range(3)], dim=1)  # (B, K, D)
    torch.testing.assert_close(pooled, individual.mean(dim=1), atol=1e-6, rtol=1e-5)


def test_max_pooled_class_code_does_not_count_copies_of_an_object_and_the_mean_does():
    # A 4 px patch on a zero background at (16, 16) of a 64 px image, then a second copy at (48, 48): the
    # encoder's receptive field is 21 px (7 + 2 + 4 + 8), so no position sees both copies or a copy and the
    # border, and the copies are 32 px (a multiple of the total stride 8) apart. Every feature of the
    # two-copy image is then a feature of the one-copy image: the max is the same, the mean is not.
    from g2g.networks.encoders import ClassEncoder
    patch = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    one = torch.zeros(1, 3, 64, 64)
    one[0, :, 14:18, 14:18] = patch
    two = one.clone()
    two[0, :, 46:50, 46:50] = patch
    torch.manual_seed(0)
    for pool, same in (("max", True), ("mean", False)):
        enc = ClassEncoder(3, nf=8, n_downs=3, code_dim=16, pool=pool)
        with torch.no_grad():
            a, b = enc(one), enc(two)
        assert torch.allclose(a, b, atol=1e-6) is same, pool
    with pytest.raises(ValueError, match="class_pool must be one of mean, max"):
        ClassEncoder(3, pool="median")


def test_decoder_output_shape_and_range(gen):
    content = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(2)) * 50  # saturate tanh
    class_code = torch.randn(3, 8, generator=torch.Generator().manual_seed(3)) * 50
    out = gen.decode(content, class_code)
    assert out.shape == (3, 3, 16, 16)
    assert out.min() >= -1 and out.max() <= 1


def test_decoder_depends_on_the_class_code_and_keeps_no_state_between_calls(gen):
    x = _images(2)
    a = gen.encode_content(x)
    b1 = torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
    b2 = torch.randn(2, 8, generator=torch.Generator().manual_seed(5))
    out1, out2 = gen.decode(a, b1), gen.decode(a, b2)
    assert (out1 - out2).abs().max() > 1e-3  # the class code changes the image
    # the class code is an argument, not hidden state: any call order gives the same images
    assert torch.equal(gen.decode(a, b2), out2)
    assert torch.equal(gen.decode(a, b1), out1)
    fresh = Generator(gen.config)
    fresh.load_state_dict(gen.state_dict())
    assert torch.equal(fresh.decode(a, b2), out2)


# --- discriminators ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, n_layers, size, out_side", [
    ("basic", 7, 32, 2),      # basic ignores n_layers: always 3 layers, 32 px → 2×2 patches
    ("n_layers", 2, 16, 2),
    ("n_layers", 1, 16, 6),
    ("pixel", 3, 16, 16),     # 1×1 convolutions: one score per pixel
])
def test_patchgan_output_shapes(kind, n_layers, size, out_side):
    torch.manual_seed(0)
    d = PatchGAN(3, ndf=4, kind=kind, n_layers=n_layers)
    assert d(_images(2, size)).shape == (2, 1, out_side, out_side)


def test_patchgan_unknown_kind():
    with pytest.raises(ValueError, match="unknown PatchGAN kind 'nope'"):
        PatchGAN(3, ndf=4, kind="nope")


def test_class_critic_logits_shape():
    torch.manual_seed(0)
    assert ClassCritic(num_classes=5, nf=4, n_downs=2)(_images(3)).shape == (3, 5)


def test_module_with_basic_patchgan_rejects_or_handles_16px(tiny_config):
    try:
        module = make_module(generator=tiny_config, lambda_adv=1.0, discriminator="basic", ndf=4)
    except ValueError as e:  # a clear error at construction is acceptable
        assert "image_size" in str(e) or "discriminator" in str(e)
        return
    module.discriminator.train()
    scores = module.discriminator(_images(2))
    assert scores.shape[0] == 2 and scores[0].numel() >= 1


# --- generator config ----------------------------------------------------------------------------


def test_generator_config_rejects_an_image_size_the_content_code_cannot_divide():
    with pytest.raises(ValueError, match="not divisible"):
        generator_config(image_size=18, n_downs_content=2)
    generator_config(image_size=20, n_downs_content=2)  # 20 / 4 = 5: fine


def test_generator_config_from_dict_names_unknown_keys(tiny_config):
    with pytest.raises(ValueError, match="bogus_key"):
        config_from_dict({**tiny_config.to_dict(), "bogus_key": 1})
    assert config_from_dict(tiny_config.to_dict()) == tiny_config
