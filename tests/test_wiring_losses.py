"""The G2G forward pass and every loss term on hand-computed values."""
import math

import pytest
import torch
import torch.nn.functional as F

from g2g import losses
from g2g.networks.generator import Generator
from g2g.wiring import g2g_forward

B = 3


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def gen(tiny_config) -> Generator:
    torch.manual_seed(0)
    return Generator(tiny_config).eval()


@pytest.fixture
def pair():
    return _images(B, 3, 16, 16, seed=1), _images(B, 3, 16, 16, seed=2)


# --- the G2G pass --------------------------------------------------------------------------------


@torch.no_grad()
def test_result_shapes(gen, pair):
    res = g2g_forward(gen, *pair)
    content, class_, image = (B, 2, 4, 4), (B, 8), (B, 3, 16, 16)
    expected = {"a1": content, "a2": content, "a_m1": content, "a_m2": content,
                "b1": class_, "b2": class_, "b_m1": class_, "b_m2": class_,
                "m1": image, "m2": image, "x1_hat": image, "x2_hat": image, "r1": image, "r2": image}
    assert {k: tuple(getattr(res, k).shape) for k in expected} == expected


@torch.no_grad()
def test_codes_mixing_and_short_reconstruction_without_noise(gen, pair):
    x1, x2 = pair
    res = g2g_forward(gen, x1, x2)
    assert torch.equal(res.a1, gen.encode_content(x1)) and torch.equal(res.a2, gen.encode_content(x2))
    assert torch.equal(res.b1, gen.encode_class(x1)) and torch.equal(res.b2, gen.encode_class(x2))
    # the four decodes are one batched call: on some CPUs its kernels sum in another order than a call per
    # image set (AMD EPYC: differences up to ~1e-6), so these compare to float tolerance
    torch.testing.assert_close(res.m1, gen.decode(res.a1, res.b2))      # content of x1, class of x2
    torch.testing.assert_close(res.m2, gen.decode(res.a2, res.b1))
    torch.testing.assert_close(res.x1_hat, gen.decode(res.a1, res.b1))
    torch.testing.assert_close(res.x2_hat, gen.decode(res.a2, res.b2))
    assert (res.m1 - res.x1_hat).abs().max() > 1e-3


@torch.no_grad()
def test_reassembly_and_long_reconstruction_use_the_mixed_images_codes(gen, pair):
    res = g2g_forward(gen, *pair)
    torch.testing.assert_close(res.a_m1, gen.encode_content(res.m1))
    torch.testing.assert_close(res.b_m2, gen.encode_class(res.m2))
    # r1 = G(a(m1), b(m2)), r2 = G(a(m2), b(m1))
    torch.testing.assert_close(res.r1, gen.decode(gen.encode_content(res.m1), gen.encode_class(res.m2)))
    torch.testing.assert_close(res.r2, gen.decode(gen.encode_content(res.m2), gen.encode_class(res.m1)))


@torch.no_grad()
def test_long_false_stops_after_disassembly(gen, pair):
    res = g2g_forward(gen, *pair, long=False)
    assert res.m1 is not None and res.x2_hat is not None
    assert all(getattr(res, k) is None for k in ("a_m1", "a_m2", "b_m1", "b_m2", "r1", "r2"))


@torch.no_grad()
def test_class_references_give_the_class_codes(gen, pair):
    x1, x2 = pair
    ref1, ref2 = _images(B, 2, 3, 16, 16, seed=3), _images(B, 2, 3, 16, 16, seed=4)  # (B, K=2, 3, H, W)
    res = g2g_forward(gen, x1, x2, ref1, ref2)
    torch.testing.assert_close(res.b1, gen.encode_class(ref1))
    torch.testing.assert_close(res.b2, gen.encode_class(ref2))
    assert not torch.allclose(res.b1, gen.encode_class(x1))
    torch.testing.assert_close(res.m1, gen.decode(gen.encode_content(x1), gen.encode_class(ref2)))


@torch.no_grad()
def test_content_noise_is_reproducible_from_its_generator(gen, pair):
    def run(seed):
        return g2g_forward(gen, *pair, content_noise=0.5, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    for k in ("m1", "m2", "x1_hat", "r1", "r2"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
        assert not torch.allclose(getattr(a, k), getattr(c, k)), k
    clean = g2g_forward(gen, *pair)
    assert torch.equal(a.a1, clean.a1)          # codes are reported before the noise
    assert not torch.allclose(a.m1, clean.m1)   # ... but the images are drawn from noisy codes


# --- losses on known values ----------------------------------------------------------------------


def test_reconstruction_and_code_losses():
    pred, target = torch.tensor([1.0, 2.0, -1.0, 0.5]), torch.tensor([0.0, 4.0, -1.0, 1.5])
    assert losses.l1(pred, target).item() == pytest.approx((1 + 2 + 0 + 1) / 4)
    assert losses.mse(pred, target).item() == pytest.approx((1 + 4 + 0 + 1) / 4)
    assert losses.code_cycle(pred, target).item() == pytest.approx(1.5)
    assert losses.activation_l2(torch.tensor([[1.0, -2.0], [3.0, 0.0]])).item() == pytest.approx(14 / 4)


def test_reconstruction_edge_and_pyramid_terms_on_known_images():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :, 2:] = 1.0                       # a vertical edge between columns 1 and 2
    shifted = torch.zeros(1, 1, 4, 4)
    shifted[..., :, 3:] = 1.0                      # the same edge one pixel to the right
    blurred = torch.full((1, 1, 4, 4), 0.5)        # no edge at all
    assert losses.reconstruction(shifted, target) == losses.l1(shifted, target) == pytest.approx(4 / 16)
    # the error is 1 in column 2 only: 2 horizontal neighbour differences of 1 per row, none vertical
    assert losses.reconstruction(shifted, target, edges=1.0).item() == pytest.approx(4 / 16 + 8 / 12)
    assert losses.reconstruction(blurred, target, edges=1.0).item() == pytest.approx(0.5 + 4 / 12)
    # at ½ the side the shifted edge errs by ½ in one column of two, at ¼ its mean ¼ against ½; the flat
    # image errs by ½ everywhere at ½ the side and not at all at ¼ (both average ½)
    assert losses.reconstruction(shifted, target, pyramid=2.0).item() == pytest.approx(0.25 + 2 * (0.25 + 0.25))
    assert losses.reconstruction(blurred, target, pyramid=1.0).item() == pytest.approx(0.5 + 0.5 + 0.0)


def test_content_contrast_by_hand():
    query = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[3.0, 0.0], [0.0, 1.0]])                     # cosine 1 with each query
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]], [[1.0, 0.0], [0.0, 5.0]]])  # cosines 0, −1 and 0, 1
    first = -(2 - math.log(math.exp(2) + 1 + math.exp(-2)))               # similarities / tau, tau = ½
    second = -(2 - math.log(math.exp(2) + 1 + math.exp(2)))
    assert losses.content_contrast(query, positive, negatives, 0.5).item() == pytest.approx((first + second) / 2)


def _contrast_pass(**loss):
    """A tiny module with `loss`, a batch of 2 pairs of classes 0, 1 | 2, 3 with 2 references each, its G2G pass,
    and the codes of the references' distorted views by hand (8, code): the negatives of the contrast terms."""
    from helpers import TINY, make_module

    from g2g.networks.generator import generator_config
    from g2g.wiring import augmented
    torch.manual_seed(0)
    m = make_module(generator=generator_config(**TINY), num_classes=4, lambda_long=0.0, content_augment=1.0,
                    content_contrast_tau=0.3, **loss)
    x = _images(12, 3, 16, 16)
    batch = {"x1": x[:2], "x2": x[2:4], "ref1": x[4:8].view(2, 2, 3, 16, 16), "ref2": x[8:].view(2, 2, 3, 16, 16),
             "y1": torch.tensor([0, 1]), "y2": torch.tensor([2, 3])}
    res = m.forward_pass(batch)
    with torch.no_grad():
        negatives = m.generator.encode_content(augmented(x[4:], 1.0, m.step_generator(3))).flatten(1)
    return m, batch, res, negatives


def _trains_the_content_encoder_alone(term, gen) -> None:
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.content_encoder.parameters())
    assert all(p.grad is None for p in gen.decoder.parameters())


def test_content_contrast_term_trains_the_content_encoder_on_distorted_views():
    from g2g.wiring import augmented
    m, batch, res, negatives = _contrast_pass(lambda_content_contrast=0.5)
    term = m.generator_terms(batch, res)["content_contrast"]
    with torch.no_grad():  # by hand: another view of x1, x2 against views of their 2 references each
        x = torch.cat([batch["x1"], batch["x2"]])
        positive = m.generator.encode_content(augmented(x, 1.0, m.step_generator(2))).flatten(1)
        expected = losses.content_contrast(torch.cat([res.a1, res.a2]).flatten(1), positive,
                                           negatives.view(4, 2, -1), 0.3)
    torch.testing.assert_close(term.detach(), 0.5 * expected)
    _trains_the_content_encoder_alone(term, m.generator)


def test_nearest_other_takes_the_most_similar_code_of_another_class():
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pool = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0], [0.1, 3.0]])
    # query 0 (class 0): the same direction [2, 0] is its own class's, so the 45° code of class 1 wins;
    # query 1 (class 1): [1, 1] is its own class's, [0.1, 3] (class 2) is nearer than [0, −1]
    picked = losses.nearest_other(query, torch.tensor([0, 1]), pool, torch.tensor([0, 1, 2, 2]))
    torch.testing.assert_close(picked, pool[[1, 3]])


def test_content_match_term_draws_each_code_to_another_class():
    m, batch, res, negatives = _contrast_pass(lambda_content_match=2.0)
    terms = m.generator_terms(batch, res)
    assert "content_contrast" not in terms
    with torch.no_grad():  # by hand: each code's positive is the nearest reference code of another class
        query = torch.cat([res.a1, res.a2]).flatten(1)
        labels, ref_labels = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        sim = torch.nn.functional.cosine_similarity(query[:, None], negatives[None], dim=2)
        positive = negatives[sim.masked_fill(labels[:, None] == ref_labels, -2).argmax(1)]
        expected = losses.content_contrast(query, positive, negatives.view(4, 2, -1), 0.3)
    torch.testing.assert_close(terms["content_match"].detach(), 2.0 * expected)
    _trains_the_content_encoder_alone(terms["content_match"], m.generator)


def test_content_match_bank_keeps_the_newest_codes_and_skips_empty_slots():
    from helpers import TINY, make_module

    from g2g.networks.generator import generator_config
    m = make_module(generator=generator_config(**TINY), num_classes=4, lambda_content_match=1.0, content_match_bank=3)
    assert m.match_labels.tolist() == [-1, -1, -1]
    code = m.match_codes.shape[1]
    # an empty slot is never the positive, however near: the one labelled code of another class is
    picked = losses.nearest_other(torch.ones(1, code), torch.tensor([0]), torch.cat([-torch.ones(1, code),
                                  m.match_codes]), torch.cat([torch.tensor([1]), m.match_labels]))
    torch.testing.assert_close(picked, -torch.ones(1, code))
    m.remember_codes(torch.full((2, code), 1.0), torch.tensor([0, 1]))
    m.remember_codes(torch.full((2, code), 2.0), torch.tensor([2, 3]))
    assert m.match_labels.tolist() == [3, 1, 2] and m.match_next.item() == 1   # the oldest (class 0) went first
    assert m.match_codes[:, 0].tolist() == [2.0, 1.0, 2.0]
    m = make_module(generator=generator_config(**TINY), num_classes=4, lambda_content_match=1.0, content_match_bank=0)
    m.remember_codes(torch.ones(2, code), torch.tensor([0, 1]))                   # no bank: the step's codes alone
    assert m.match_codes.shape == (0, code)


def test_class_consistency_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    target = torch.tensor([0, 2])
    # by hand: −log softmax at the target class, averaged
    first = -(2.0 - math.log(math.exp(2) + 1 + math.exp(-1)))
    second = -(0.0 - math.log(2 + math.e))
    assert losses.class_consistency(logits, target).item() == pytest.approx((first + second) / 2)
    torch.testing.assert_close(losses.class_consistency(logits, target), F.cross_entropy(logits, target))


def test_lsgan():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert losses.d_lsgan_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 0.5))
    assert losses.d_lsgan_loss(torch.ones(3), torch.zeros(3)).item() == 0.0  # the critic's optimum
    assert losses.g_lsgan_loss(fake).item() == pytest.approx(0.5)
    assert losses.g_lsgan_loss(torch.ones(2)).item() == 0.0


def test_vanilla():
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731  softplus
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.5])
    expected_d = 0.5 * ((sp(-2.0) + sp(0.0)) / 2 + (sp(-1.0) + sp(0.5)) / 2)
    assert losses.d_vanilla_loss(real, fake).item() == pytest.approx(expected_d)
    assert losses.g_vanilla_loss(fake).item() == pytest.approx((sp(1.0) + sp(-0.5)) / 2)
    assert losses.g_vanilla_loss(torch.zeros(1)).item() == pytest.approx(math.log(2))


def test_hinge():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # relu(1 − real) = [0, 0.5], relu(1 + fake) = [0, 1.5]
    assert losses.d_hinge_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.75))
    assert losses.g_hinge_loss(fake).item() == pytest.approx(0.75)


def test_wgan():
    real, fake = torch.tensor([0.5, 1.5]), torch.tensor([1.0, 3.0])
    assert losses.d_wgan_loss(real, fake).item() == pytest.approx(2.0 - 1.0)
    assert losses.g_wgan_loss(fake).item() == pytest.approx(-2.0)


def test_gan_loss_table():
    assert set(losses.GAN_LOSSES) == {"lsgan", "vanilla", "hinge", "wgangp"}
    assert losses.GAN_LOSSES["wgangp"] == (losses.d_wgan_loss, losses.g_wgan_loss)


def _linear_critic(norm: float):
    """D(x) = <w, x> with ‖w‖ = norm: its gradient is w everywhere."""
    w = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
    w = w * (norm / w.norm())
    return lambda x: (x * w).flatten(1).sum(dim=1)


def test_gradient_penalty_on_linear_critics():
    real, fake = _images(4, 3, 4, 4, seed=5), _images(4, 3, 4, 4, seed=6)
    g = torch.Generator().manual_seed(0)
    gp_unit = losses.gradient_penalty(_linear_critic(1.0), real, fake, g)
    assert gp_unit.item() == pytest.approx(0.0, abs=1e-10)
    gp_three = losses.gradient_penalty(_linear_critic(3.0), real, fake, g)
    assert gp_three.item() == pytest.approx(4.0)  # (3 − 1)²


def test_gradient_penalty_is_differentiable_in_the_critic():
    w = torch.full((3, 4, 4), 0.5, requires_grad=True)  # ‖w‖ = √48 · 0.5
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    gp = losses.gradient_penalty(critic, torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
    gp.backward()
    norm = math.sqrt(48) * 0.5
    # d/dw (‖w‖ − 1)² = 2(‖w‖ − 1) w / ‖w‖
    torch.testing.assert_close(w.grad, torch.full((3, 4, 4), 2 * (norm - 1) * 0.5 / norm))


def test_r1_penalty_on_a_quadratic():
    x = torch.tensor([[1.0, 2.0], [0.0, -3.0]], requires_grad=True)
    scores = (x ** 2).sum(dim=1)  # ∇D(x) = 2x, so ½‖∇D‖² = 2‖x‖²: [10, 18]
    assert losses.r1_penalty(scores, x).item() == pytest.approx((10 + 18) / 2)
