"""Arch `sprite` (pose content code, class template) and the two class-supervision terms of the `g2g`
preset: the class-code cross-entropy and the content probe's confusion."""
import math

import pytest
import torch

from helpers import make_module

from g2g import inference, losses, pose_losses
from g2g.inference import export_generator
from g2g.networks.generator import Generator, generator_config
from g2g.networks import sprite
from g2g.networks.sprite import SpriteDecoder, pose_dim
from g2g.wiring import g2g_forward

SPRITE = dict(arch="sprite", image_size=16, nf=4, n_downs_content=2, content_channels=4, n_res_content=1,
              n_downs_class=2, class_dim=8, mlp_dim=16)


def _images(n: int, seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def sprite_gen() -> Generator:
    torch.manual_seed(0)
    return Generator(generator_config(**SPRITE)).eval()


def test_sprite_codes_are_a_pose_and_a_vector_and_images_are_in_range(sprite_gen):
    x = _images(3)
    pose, code = sprite_gen.encode_content(x), sprite_gen.encode_class(x)
    assert pose.shape == (3, pose_dim(3)) == (3, 7)
    assert sprite_gen.config.content_shape == (7,)
    assert code.shape == (3, 8)
    out = sprite_gen.decode(torch.randn(3, 7) * 3, torch.randn(3, 8) * 3)
    assert out.shape == (3, 3, 16, 16)
    assert out.min() >= -1 and out.max() <= 1


def test_a_fresh_pose_encoder_gives_the_centred_upright_nominal_pose(sprite_gen):
    assert torch.equal(sprite_gen.encode_content(_images(2)), torch.zeros(2, 7))


def _drawn(pose: torch.Tensor, size: int = 32) -> torch.Tensor:
    """What a fresh decoder (grey template, centred disc of opacity) draws at `pose` on a black
    background: (B, H, W) opacity, the difference from the background."""
    torch.manual_seed(0)
    dec = SpriteDecoder(class_dim=4, image_size=size, channels=3, hidden=8)
    with torch.no_grad():
        dec.mlp[-1].weight.zero_()  # template colour 0 (grey), opacity exactly the disc prior
    pose = torch.cat([pose, torch.full((len(pose), 3), -1.0)], dim=1)  # black background
    with torch.no_grad():
        return (dec(pose, torch.zeros(len(pose), 4)) + 1).mean(dim=1)  # 0 on the background, = opacity on the disc


def _centroid(mass: torch.Tensor) -> tuple[float, float]:
    """Centre of mass of (H, W) in image units ([-1, 1], x right, y down)."""
    size = mass.shape[-1]
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    total = mass.sum()
    return float((mass.sum(0) * c).sum() / total), float((mass.sum(1) * c).sum() / total)


def test_pose_translation_moves_the_drawn_object_by_the_code():
    drawn = _drawn(torch.tensor([[0.0, 0, 0, 0], [0.4, 0, 0, 0], [0, -0.4, 0, 0]]))
    x0, y0 = _centroid(drawn[0])
    assert abs(x0) < 1e-3 and abs(y0) < 1e-3  # centred
    x1, y1 = _centroid(drawn[1])
    assert x1 == pytest.approx(0.4, abs=0.02) and abs(y1) < 1e-3  # right by 0.4
    x2, y2 = _centroid(drawn[2])
    assert abs(x2) < 1e-3 and y2 == pytest.approx(-0.4, abs=0.02)  # up by 0.4


def test_pose_log_scale_scales_the_drawn_area():
    drawn = _drawn(torch.tensor([[0.0, 0, 0, 0], [0, 0, 0.25, 0]]))
    assert float(drawn[1].sum() / drawn[0].sum()) == pytest.approx(math.exp(0.25) ** 2, rel=0.05)


def _asymmetric_decoder(size: int = 32) -> SpriteDecoder:
    """A decoder whose template is an off-centre, elongated blob, so position, size and turn all show."""
    torch.manual_seed(0)
    dec = SpriteDecoder(class_dim=4, image_size=size, channels=3, hidden=8)
    t = dec.template_size
    c = (torch.arange(t, dtype=torch.float32) + 0.5) / t * 2 - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    blob = 6.0 * (0.25 - ((xx - 0.2) / 0.7) ** 2 - ((yy + 0.1) / 0.3) ** 2) / 0.25  # opacity logit
    with torch.no_grad():
        dec.mlp[-1].weight.zero_()
        dec.mlp[-1].bias.view(4, t, t)[3] = blob - dec.opacity_prior[0, 0]
        dec.mlp[-1].bias.view(4, t, t)[:3] = 0.8
    return dec


def test_canonical_view_of_a_drawn_object_is_its_template():
    """template_to_image inverts the decoder's warp: sampling an image drawn at pose p in p's frame gives
    the template itself (over the background), whatever p is."""
    dec = _asymmetric_decoder()
    pose = torch.tensor([[0.15, -0.1, 0.2, 0.4, -1, -1, -1], [-0.2, 0.05, -0.15, -0.3, -1, -1, -1]])
    with torch.no_grad():
        x, code = dec(pose, torch.zeros(2, 4)), torch.zeros(2, 4)
        grid = torch.nn.functional.affine_grid(sprite.template_to_image(pose), list(x.shape), align_corners=False)
        view = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
        colour, opacity = dec.template(code).split([3, 1], dim=1)
        template = opacity * colour - (1 - opacity)  # over the black background
        err = (view - template).abs().mean(dim=(1, 2, 3))
        assert (err < 0.02).all()  # interpolation only
        assert ((x - template).abs().mean(dim=(1, 2, 3)) > 3 * err).all()  # the drawn images do differ
        flipped = pose * torch.tensor([1, 1, 1, -1, 1, 1, 1])  # the frame turned the wrong way
        grid = torch.nn.functional.affine_grid(sprite.template_to_image(flipped), list(x.shape), align_corners=False)
        wrong = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
        assert ((wrong - template).abs().mean(dim=(1, 2, 3)) > 2 * err).all()


def test_transform_poses_gives_the_pose_of_transformed_images():
    """Drawing at transform_poses(p) matches transforming the image drawn at p (the equivariance target)."""
    dec = _asymmetric_decoder()
    pose = torch.tensor([[0.1, -0.1, 0.1, 0.2, -1, -1, -1]]).repeat(3, 1)
    angle, log_scale = torch.tensor([0.2, -0.2, 0.0]), torch.tensor([0.1, 0.0, -0.1])
    shift = torch.tensor([[0.1, 0.0], [0.0, -0.1], [-0.1, 0.1]])
    with torch.no_grad():
        moved = pose_losses.transform_images(dec(pose, torch.zeros(3, 4)), angle, log_scale, shift)
        drawn = dec(pose_losses.transform_poses(pose, angle, log_scale, shift), torch.zeros(3, 4))
        wrong = dec(pose_losses.transform_poses(pose, -angle, log_scale, -shift), torch.zeros(3, 4))
    err = (moved - drawn).abs().mean(dim=(1, 2, 3))
    assert (err < 0.03).all()
    assert ((moved - wrong).abs().mean(dim=(1, 2, 3)) > 5 * err).all()


def test_pose_error_px_counts_each_number_in_pixels():
    a = torch.zeros(1, 7)
    b = torch.tensor([[2 / 16, 0, 0, 0, 0.5, 0.5, 0.5]])  # 2 px right at 32 px; the background is not geometry
    assert float(pose_losses.pose_error_px(b, a, 32)) == pytest.approx(4 / 4)
    c = torch.tensor([[0, 0, 0, 0.1, 0, 0, 0]])  # 0.1 rad at the nominal radius of 0.62 × 16 px
    assert float(pose_losses.pose_error_px(c, a, 32)) == pytest.approx((0.1 * 0.62 * 16) ** 2 / 4)


def test_refinement_composes_its_correction_in_the_object_frame():
    torch.manual_seed(0)
    enc = sprite.PoseEncoder(3, nf=4, n_downs=2, n_res=0, code_channels=4, image_size=16, hidden=8, refine=1)
    coarse = torch.tensor([0.3, -0.2, 0.4, 0.5])  # tanh-space outputs of the coarse head
    correction = torch.tensor([0.2, 0.1, -0.3, 0.2])  # tanh-space outputs of the fine head
    with torch.no_grad():
        enc.coarse.head[-1].bias[:4] = torch.atanh(coarse)
        enc.fine.head[-1].bias[:4] = torch.atanh(correction)
        pose = enc(_images(2, size=16))
    first = torch.stack([coarse[0], coarse[1], sprite.SCALE_RANGE * coarse[2], sprite.MAX_ROTATION * coarse[3]])
    frame = sprite.template_to_image(first[None])[0]  # (2, 3): template → image
    shift = first[:2] + frame[:, :2] @ (sprite.REFINE_SHIFT * correction[:2])
    expected = torch.cat([shift, first[2:3] + sprite.REFINE_SCALE * correction[2:3],
                          first[3:4] + sprite.REFINE_ROTATION * correction[3:4]])
    torch.testing.assert_close(pose[:, :4], expected.expand(2, 4))
    assert torch.equal(pose[:, 4:], torch.zeros(2, 3))  # background: tanh(0 + 0)


def test_a_pose_pushed_deep_into_its_bound_gets_a_gradient_back_only_with_the_leak():
    # the coarse head's translation output driven to 20 (tanh'(20) ≈ 1e-17): the pose thrown off the image
    grads = {}
    for leak in (0.0, 0.01):
        torch.manual_seed(0)
        enc = sprite.PoseEncoder(3, nf=4, n_downs=2, n_res=0, code_channels=4, image_size=16, hidden=8, refine=0,
                                 leak=leak)
        with torch.no_grad():
            enc.coarse.head[-1].bias[0] = 20.0
        pose = enc(_images(2, size=16))
        assert float(pose[0, 0]) == pytest.approx(1.0 + leak * 20.0)
        grads[leak] = torch.autograd.grad(pose[:, 0].sum(), enc.coarse.head[-1].bias)[0][0].item()
    assert grads[0.0] < 1e-12 and grads[0.01] == pytest.approx(2 * 0.01, rel=1e-3)


def test_pose_fit_finds_the_pose_that_drew_the_image_again():
    """An image drawn by a template at a pose, and the encoder's pose off by half a pixel, a turn of 3°, 3 %
    of scale and a background shade: the fit against that template recovers the pose."""
    dec = _asymmetric_decoder()
    true = torch.tensor([[0.15, -0.1, 0.2, 0.4, -0.3, -0.3, -0.3], [-0.2, 0.05, -0.15, -0.3, 0.2, 0.2, 0.2]])
    start = true + torch.tensor([0.03, -0.03, 0.03, 0.05, 0.1, -0.1, 0.05])
    code = torch.zeros(2, 4)
    with torch.no_grad():
        x = dec(true, code)
    fitted = sprite.fit_pose(dec, x, start, code, steps=3)
    before = [float(pose_losses.pose_error_px(start[i:i + 1], true[i:i + 1], 32)) for i in (0, 1)]
    after = [float(pose_losses.pose_error_px(fitted[i:i + 1], true[i:i + 1], 32)) for i in (0, 1)]
    assert all(a < b / 1e3 for a, b in zip(after, before)), (before, after)  # squared px: 30× closer
    torch.testing.assert_close(fitted[:, 4:], true[:, 4:])  # the uncovered pixels' shade


def test_pose_fit_never_leaves_an_image_worse_drawn():
    """Noise images, a template that fits none of them: each kept step lowers the image's error."""
    dec = _asymmetric_decoder(16)
    x, code = _images(8, seed=3), torch.randn(8, 4, generator=torch.Generator().manual_seed(4))
    start = torch.randn(8, 7, generator=torch.Generator().manual_seed(5)) * 0.3
    with torch.no_grad():
        fitted = sprite.fit_pose(dec, x, start, code, steps=2)
        err = [(x - dec(p, code)).pow(2).sum(dim=(1, 2, 3)) for p in (start, fitted)]
    assert (err[1] <= err[0]).all()
    assert (err[1] < err[0]).any()  # and the fit does move some


def test_encode_content_fits_the_pose_in_eval_mode_only(sprite_gen):
    torch.manual_seed(0)
    gen = Generator(generator_config(**SPRITE, n_fit=2))
    gen.load_state_dict(sprite_gen.state_dict())
    with torch.no_grad():  # a trained-looking encoder: its pose off centre, so the fit has work to do
        gen.content_encoder.coarse.head[-1].bias[:4] = torch.tensor([0.1, -0.1, 0.1, 0.2])
    true = torch.tensor([0.25, -0.1, 0.1, 0.0, -0.6, -0.6, -0.6]).repeat(4, 1)
    with torch.no_grad():  # a disc (the fresh template) drawn off the pose the encoder reads
        x = gen.decode(true, torch.randn(4, 8, generator=torch.Generator().manual_seed(6)))
    own = gen.encode_class(x)
    read = gen.content_encoder(x)
    assert torch.equal(gen.train().encode_content(x), read)  # training: the encoder's pose
    fitted = gen.eval().encode_content(x)
    torch.testing.assert_close(fitted, gen.encode_content(x, own))  # fitted against the image's own class code
    torch.testing.assert_close(fitted, sprite.fit_pose(gen.decoder, x, read, own, 2))
    err = [(x - gen.decode(p, own)).pow(2).sum(dim=(1, 2, 3)) for p in (read, fitted)]
    assert (err[1] < err[0] / 10).all(), err


def test_pose_fit_needs_the_sprite_arch():
    with pytest.raises(ValueError, match=r"generator keys \['n_fit'\] are not options of arch 'g2g'"):
        generator_config(arch="g2g", n_fit=1)


def test_sprite_swap_draws_the_class_template_at_the_content_pose(sprite_gen):
    """m1 = G(a1, b2) is exactly x2's class template placed by x1's pose."""
    x1, x2 = _images(2, seed=1), _images(2, seed=2)
    with torch.no_grad():
        res = g2g_forward(sprite_gen, x1, x2)
        expected = sprite_gen.decoder(sprite_gen.encode_content(x1), sprite_gen.encode_class(x2))
    torch.testing.assert_close(res.m1, expected)


def test_sprite_model_exports_and_loads_exactly(sprite_gen, tmp_path):
    path = export_generator(sprite_gen, tmp_path / "model.safetensors")
    loaded = inference.load(path)
    assert loaded.config == sprite_gen.config
    x1, x2 = _images(2, seed=1), _images(2, seed=2)
    s1, s2 = inference.G2GModel(sprite_gen).swap(x1, x2), loaded.swap(x1, x2)
    for k in ("m1", "m2", "r1", "r2"):
        assert torch.equal(getattr(s1, k), getattr(s2, k)), k


def test_sprite_config_rejects_a_decoder_norm_choice():
    with pytest.raises(ValueError, match=r"generator keys \['decoder_norm'\] are not options of arch 'sprite'"):
        generator_config(**SPRITE, decoder_norm="film")


# --- the class-supervision terms -------------------------------------------------------------------


def test_confusion_is_log_n_for_a_uniform_probe_and_larger_for_a_confident_one():
    assert float(losses.confusion(torch.zeros(4, 10))) == pytest.approx(math.log(10))
    confident = torch.zeros(4, 10)
    confident[:, 0] = 8.0
    assert float(losses.confusion(confident)) > math.log(10) + 1


def _batch(b: int = 3, seed: int = 0) -> dict:
    x = _images(2 * b, seed)
    x1, x2 = x.split(b)
    return {"x1": x1, "x2": x2, "ref1": x1[:, None], "ref2": x2[:, None],
            "y1": torch.arange(b), "y2": torch.arange(b) + 1}


def test_class_code_and_content_probe_terms_are_the_defined_cross_entropies():
    torch.manual_seed(0)
    m = make_module(generator=generator_config(**SPRITE), num_classes=5, lambda_long=0.0,
                  lambda_class_code=2.0, lambda_content_probe=0.5)
    batch = _batch()
    res = m.forward_pass(batch)
    y = torch.cat([batch["y1"], batch["y2"]])
    g = m.generator_terms(batch, res)
    head = torch.nn.functional.cross_entropy(m.class_head(torch.cat([res.b1, res.b2])), y)
    torch.testing.assert_close(g["class_code"], 2.0 * head)
    probe_logits = m.content_probe(torch.cat([res.a1, res.a2]))
    torch.testing.assert_close(g["content_probe"], 0.5 * losses.confusion(probe_logits))
    d = m.critic_terms(batch, res)
    torch.testing.assert_close(d["d_content_probe"], torch.nn.functional.cross_entropy(probe_logits, y))
    # the head trains with the generator, the probe with the critics
    opt_g, opt_d = m.configure_optimizers()
    in_g = {id(p) for group in opt_g.param_groups for p in group["params"]}
    in_d = {id(p) for group in opt_d.param_groups for p in group["params"]}
    assert {id(p) for p in m.class_head.parameters()} <= in_g
    assert {id(p) for p in m.content_probe.parameters()} <= in_d
    assert not in_g & in_d


def test_content_probe_flattens_spatial_content_codes(tiny_config):
    m = make_module(generator=tiny_config, num_classes=5, lambda_content_probe=1.0)
    assert m.content_probe.in_features == math.prod(tiny_config.content_shape) == 2 * 4 * 4
    batch = _batch()
    res = m.forward_pass(batch)
    assert m.generator_terms(batch, res)["content_probe"].isfinite()


@pytest.mark.parametrize("term", ["lambda_class_code", "lambda_content_probe", "lambda_pose_moments",
                                  "lambda_class_centre"])
def test_class_supervision_terms_need_labels(term):
    with pytest.raises(ValueError, match=f"{term} > 0 needs a labelled dataset"):
        make_module(generator=generator_config(**SPRITE), num_classes=0, **{term: 1.0})


def test_equivariance_term_is_the_pose_error_of_transformed_images():
    torch.manual_seed(0)
    m = make_module(generator=generator_config(**SPRITE), num_classes=5, lambda_long=0.0, lambda_equivariance=0.5)
    with torch.no_grad():  # a non-zero pose head, so that the poses differ between images
        m.generator.content_encoder.coarse.head[-1].weight.normal_(0, 0.5)
    batch = _batch()
    res = m.forward_pass(batch)
    x, pose = torch.cat([batch["x1"], batch["x2"]]), torch.cat([res.a1, res.a2])
    transform = pose_losses.random_similarity(len(x), m.step_generator(1))
    moved = m.generator.encode_content(pose_losses.transform_images(x, *transform))
    expected = pose_losses.pose_error_px(moved, pose_losses.transform_poses(pose, *transform), 16)
    term = m.generator_terms(batch, res)["equivariance"]
    torch.testing.assert_close(term, 0.5 * expected)
    assert term > 0
    term.backward()  # it trains the pose encoder
    assert m.generator.content_encoder.coarse.head[-1].weight.grad.abs().sum() > 0


def test_pose_moments_is_half_the_squared_spread_of_class_means():
    px = sprite.pixel_weights(32)
    pose = torch.zeros(4, 7)
    pose[:2, 0] = 2 / px[0]   # class 0: 2 px right
    pose[2:, 0] = -2 / px[0]  # class 1: 2 px left
    labels = torch.tensor([0, 0, 1, 1])
    means, seen = torch.zeros(3, 4), torch.zeros(3, dtype=torch.bool)
    loss, new_means, new_seen = pose_losses.pose_moments(pose, labels, means, seen, 32)
    assert float(loss) == pytest.approx(0.5 * 4)  # each class mean 2 px from the centre
    torch.testing.assert_close(new_means[:2, 0], torch.tensor([2.0, -2.0]))
    assert new_seen.tolist() == [True, True, False]
    # once seen, a class mean moves by the rate; the unseen class stays out of the centre
    pose.requires_grad_(True)
    loss, later, _ = pose_losses.pose_moments(pose.flip(0), labels, new_means, new_seen, 32)  # the classes swap sides
    rate = pose_losses.POSE_MOMENT_RATE
    torch.testing.assert_close(later[:2, 0], torch.tensor([2 - 4 * rate, -2 + 4 * rate]))
    assert float(loss.detach()) == pytest.approx(0.5 * (2 - 4 * rate) ** 2)
    loss.backward()  # descent moves each class's samples so that its running mean nears the common mean:
    assert (pose.grad[2:, 0] > 0).all()  # class 0 (now rows 2, 3 via the flip; its mean is right) moves left
    assert (pose.grad[:2, 0] < 0).all()  # class 1 moves right


def test_pose_moments_term_updates_the_running_means_in_training_only():
    torch.manual_seed(0)
    m = make_module(generator=generator_config(**SPRITE), num_classes=5, lambda_long=0.0, lambda_pose_moments=2.0)
    with torch.no_grad():
        m.generator.content_encoder.coarse.head[-1].weight.normal_(0, 0.5)
    batch = _batch()
    res = m.forward_pass(batch)
    labels = torch.cat([batch["y1"], batch["y2"]])
    expected, means, _ = pose_losses.pose_moments(torch.cat([res.a1, res.a2]), labels, torch.zeros(5, 4),
                                                  torch.zeros(5, dtype=torch.bool), 16)
    m.eval()
    torch.testing.assert_close(m.generator_terms(batch, res)["pose_moments"], 2.0 * expected)
    assert not m.pose_seen.any()
    m.train()
    m.generator_terms(batch, res)
    assert m.pose_seen.tolist() == [True, True, True, True, False]
    torch.testing.assert_close(m.pose_means, means)
    assert {"pose_means", "pose_seen"} <= set(m.state_dict())  # checkpointed: a resumed run continues them


def test_pose_moment_rate_sets_how_far_a_step_moves_the_running_means():
    torch.manual_seed(0)
    m = make_module(generator=generator_config(**SPRITE), num_classes=5, lambda_long=0.0, lambda_pose_moments=1.0,
                  pose_moment_rate=0.5)
    with torch.no_grad():
        m.generator.content_encoder.coarse.head[-1].weight.normal_(0, 0.5)
    first, second = _batch(), _batch(seed=1)  # the same labels, other images
    m.generator_terms(first, m.forward_pass(first))  # the first sight of a class sets its mean
    before = m.pose_means.clone()
    res = m.forward_pass(second)
    labels = torch.cat([second["y1"], second["y2"]])
    _, expected, _ = pose_losses.pose_moments(torch.cat([res.a1, res.a2]), labels, before, m.pose_seen.clone(), 16, 0.5)
    m.generator_terms(second, res)
    torch.testing.assert_close(m.pose_means, expected)
    _, slow, _ = pose_losses.pose_moments(torch.cat([res.a1, res.a2]), labels, before, m.pose_seen.clone(), 16, 0.02)
    moved = (m.pose_means - before).abs().sum()
    assert moved > 0 and (slow - before).abs().sum() == pytest.approx(float(moved) * 0.02 / 0.5, rel=1e-4)
    with pytest.raises(ValueError, match="pose_moment_rate must be within"):
        make_module(generator=generator_config(**SPRITE), num_classes=5, pose_moment_rate=0.0)


@pytest.mark.parametrize("term", ["lambda_equivariance", "lambda_pose_moments"])
def test_pose_terms_need_the_sprite_pose_code(tiny_config, term):
    with pytest.raises(ValueError, match=f"{term} needs a pose content code"):
        make_module(generator=tiny_config, num_classes=5, **{term: 1.0})
