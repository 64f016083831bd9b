"""Arch `sprite` (pose content code, class template) and the two class-supervision terms of the `g2g`
preset: the class-code cross-entropy and the content probe's confusion."""
import math

import pytest
import torch

from g2g import inference, losses
from g2g.inference import export_generator
from g2g.module import G2GModule
from g2g.networks.generator import Generator, GeneratorConfig
from g2g.networks.sprite import SpriteDecoder, pose_dim
from g2g.wiring import g2g_forward

SPRITE = dict(arch="sprite", image_size=16, nf=4, n_downs_content=2, content_channels=4, n_res_content=1,
              n_downs_class=2, class_dim=8, mlp_dim=16)


def _images(n: int, seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def sprite_gen() -> Generator:
    torch.manual_seed(0)
    return Generator(GeneratorConfig(**SPRITE)).eval()


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
    pose = torch.cat([pose, torch.full((len(pose), 3), -20.0)], dim=1)  # background tanh(-20) = -1
    with torch.no_grad():
        return (dec(pose, torch.zeros(len(pose), 4)) + 1).mean(dim=1)  # 0 on the background, = opacity on the disc


def _centroid(mass: torch.Tensor) -> tuple[float, float]:
    """Centre of mass of (H, W) in image units ([-1, 1], x right, y down)."""
    size = mass.shape[-1]
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    total = mass.sum()
    return float((mass.sum(0) * c).sum() / total), float((mass.sum(1) * c).sum() / total)


def test_pose_translation_moves_the_drawn_object_by_tanh_of_the_code():
    shift = math.atanh(0.4)
    drawn = _drawn(torch.tensor([[0.0, 0, 0, 0], [shift, 0, 0, 0], [0, -shift, 0, 0]]))
    x0, y0 = _centroid(drawn[0])
    assert abs(x0) < 1e-3 and abs(y0) < 1e-3  # centred
    x1, y1 = _centroid(drawn[1])
    assert x1 == pytest.approx(0.4, abs=0.02) and abs(y1) < 1e-3  # right by 0.4
    x2, y2 = _centroid(drawn[2])
    assert abs(x2) < 1e-3 and y2 == pytest.approx(-0.4, abs=0.02)  # up by 0.4


def test_pose_scale_code_scales_the_drawn_area():
    drawn = _drawn(torch.tensor([[0.0, 0, 0, 0], [0, 0, math.atanh(0.5), 0]]))
    growth = math.exp(0.5 * 0.5)  # SCALE_RANGE · tanh(code)
    assert float(drawn[1].sum() / drawn[0].sum()) == pytest.approx(growth ** 2, rel=0.05)


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
    with pytest.raises(ValueError, match="arch 'sprite' has no normalisation choice"):
        GeneratorConfig(**SPRITE, decoder_norm="film")


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
    m = G2GModule(generator=GeneratorConfig(**SPRITE), num_classes=5, lambda_long=0.0,
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
    m = G2GModule(generator=tiny_config, num_classes=5, lambda_content_probe=1.0)
    assert m.content_probe.in_features == math.prod(tiny_config.content_shape) == 2 * 4 * 4
    batch = _batch()
    res = m.forward_pass(batch)
    assert m.generator_terms(batch, res)["content_probe"].isfinite()


@pytest.mark.parametrize("term", ["lambda_class_code", "lambda_content_probe"])
def test_class_supervision_terms_need_labels(term):
    with pytest.raises(ValueError, match=f"{term} > 0 needs a labelled dataset"):
        G2GModule(generator=GeneratorConfig(**SPRITE), num_classes=0, **{term: 1.0})
