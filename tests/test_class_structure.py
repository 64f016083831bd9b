"""What the class code is made to hold: the palette template of arch `sprite` (`n_parts`: layout from one
half of the class code, colours from the other) and the class-centre term (`lambda_class_centre`)."""
import pytest
import torch

from helpers import make_module

from g2g import losses
from g2g.data.shapes import N_SCHEMES, N_SHAPES, render, sample_factors
from g2g.networks.generator import Generator, generator_config
from g2g.networks import sprite
from g2g.networks.sprite import SpriteDecoder

SPRITE = dict(arch="sprite", image_size=16, nf=4, n_downs_content=2, content_channels=4, n_res_content=1,
              n_downs_class=2, class_dim=8, mlp_dim=16)


def _palette_decoder(parts: int = 2) -> SpriteDecoder:
    torch.manual_seed(0)
    dec = SpriteDecoder(class_dim=8, image_size=16, channels=3, hidden=16, parts=parts)
    with torch.no_grad():  # layouts and palettes that differ from code to code
        for p in list(dec.mlp.parameters()) + list(dec.palette.parameters()):
            p.normal_(0, 0.5)
    return dec


def test_palette_template_takes_its_layout_from_one_half_and_its_colours_from_the_other():
    dec = _palette_decoder()
    code = torch.randn(2, 8)
    other_palette, other_layout = code.clone(), code.clone()
    other_palette[:, 4:] = torch.randn(2, 4)
    other_layout[:, :4] = torch.randn(2, 4)
    t, t_palette, t_layout = dec.template(code), dec.template(other_palette), dec.template(other_layout)
    torch.testing.assert_close(t_palette[:, 3], t[:, 3])      # a new palette keeps the opacity …
    assert not torch.allclose(t_palette[:, :3], t[:, :3])      # … and recolours
    assert not torch.allclose(t_layout[:, 3], t[:, 3])         # a new layout moves the opacity
    # every template colour is a convex combination of the code's palette colours (2 parts: on the segment)
    colours = torch.tanh(dec.palette(code[:, 4:])).view(2, 2, 3)
    lo, hi = colours.min(dim=1).values, colours.max(dim=1).values
    assert (t[:, :3] >= lo[:, :, None, None] - 1e-6).all() and (t[:, :3] <= hi[:, :, None, None] + 1e-6).all()


def test_palette_generator_draws_images_in_range_and_a_one_number_class_code_is_refused():
    gen = Generator(generator_config(**SPRITE, n_parts=3))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    out = gen.decode(gen.encode_content(x), gen.encode_class(x) * 5)
    assert out.shape == x.shape and out.abs().max() <= 1
    with pytest.raises(ValueError, match="class_dim must be >= 2"):
        SpriteDecoder(class_dim=1, parts=2)


def test_class_centre_is_the_mean_squared_distance_from_the_running_class_centre():
    codes = torch.tensor([[1.0, 0.5], [1.0, -0.5], [-1.0, 0.5], [-1.0, -0.5]])  # two classes at x = ±1
    labels = torch.tensor([0, 0, 1, 1])
    centres, seen = torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool)
    loss, new_centres, new_seen = losses.class_centre(codes, labels, centres, seen)
    torch.testing.assert_close(new_centres[:2], torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    assert new_seen.tolist() == [True, True, False]
    assert float(loss) == pytest.approx(0.25)  # every code 0.5 from its class centre
    # codes at their centres: 0; gradient descent moves a code towards its class centre
    at_centre, _, _ = losses.class_centre(new_centres[labels], labels, new_centres, new_seen)
    assert float(at_centre) == 0
    codes.requires_grad_(True)
    shifted = codes + torch.tensor([0.5, 0.0])  # class means now at x = 1.5 and -0.5
    later, moved, _ = losses.class_centre(shifted, labels, new_centres, new_seen)
    rate = losses.CENTRE_RATE  # a seen class's centre moves by the rate towards the batch mean
    torch.testing.assert_close(moved[:2, 0], torch.tensor([1 + 0.5 * rate, -1 + 0.5 * rate]))
    assert float(later.detach()) == pytest.approx(0.25 + (0.5 * (1 - rate)) ** 2)
    later.backward()
    assert (codes.grad[:, 0] > 0).all()  # pulled back left, towards the centres
    assert (codes.grad[[0, 2], 1] > 0).all() and (codes.grad[[1, 3], 1] < 0).all()


def test_class_centre_term_updates_the_running_centres_in_training_only():
    torch.manual_seed(0)
    m = make_module(generator=generator_config(**SPRITE), num_classes=5, lambda_long=0.0, lambda_class_centre=0.5)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    batch = {"x1": x[:3], "x2": x[3:], "ref1": x[:3, None], "ref2": x[3:, None],
             "y1": torch.tensor([0, 1, 2]), "y2": torch.tensor([1, 2, 3])}
    res = m.forward_pass(batch)
    codes, labels = torch.cat([res.b1, res.b2]), torch.cat([batch["y1"], batch["y2"]])
    expected, centres, _ = losses.class_centre(codes, labels, torch.zeros(5, 8), torch.zeros(5, dtype=torch.bool))
    m.eval()
    torch.testing.assert_close(m.generator_terms(batch, res)["class_centre"], 0.5 * expected)
    assert not m.class_seen.any()
    m.train()
    term = m.generator_terms(batch, res)["class_centre"]
    assert m.class_seen.tolist() == [True, True, True, True, False]
    torch.testing.assert_close(m.class_centres, centres)
    assert {"class_centres", "class_seen"} <= set(m.state_dict())  # checkpointed: a resumed run continues them
    term.backward()  # it trains the class encoder
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.generator.class_encoder.parameters())


def test_layout_half_of_the_class_code_is_blind_to_which_channel_is_which():
    torch.manual_seed(0)
    gen = Generator(generator_config(**SPRITE, n_parts=2))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    code, permuted = gen.encode_class(x), gen.encode_class(x[:, [2, 0, 1]])
    assert code.shape == (3, 8)
    torch.testing.assert_close(permuted[:, :4], code[:, :4])  # layout half: the same
    assert not torch.allclose(permuted[:, 4:], code[:, 4:])   # palette half: sees the colours
    refs = torch.stack([x, x.flip(0)], dim=1)                 # (B, K = 2, C, H, W): the mean code over K
    torch.testing.assert_close(gen.encode_class(refs), (code + gen.encode_class(x.flip(0))) / 2)


# `shapes` classes for the layout-view tests: the star in all five colour schemes, and every shape in red-white
STAR_SCHEMES = [3 * N_SCHEMES + s for s in range(N_SCHEMES)]
SHAPES_RED = [s * N_SCHEMES for s in range(N_SHAPES)]


def _factors() -> torch.Tensor:
    return sample_factors(20, torch.Generator().manual_seed(0))


def _spread(view: str, class_ids: list[int]) -> float:
    """Mean absolute deviation, across classes, of the layout views of the same 20 poses."""
    factors = _factors()
    v = torch.stack([sprite.layout_view(render(torch.full((20,), c), factors, 32), view) for c in class_ids])
    return (v - v.mean(0)).abs().mean().item()


def test_edge_view_sees_the_silhouette_whatever_the_colour_scheme():
    """layout_view 'edges': the same shape at the same pose in all five colour schemes of `shapes` gives
    nearly the same view (the schemes differ in hue and in which part is bright), while other shapes in
    one scheme give clearly different views; the sorted view keeps the schemes' brightness profiles."""
    assert _spread("edges", STAR_SCHEMES) < 0.05 * _spread("edges", SHAPES_RED)
    assert _spread("sorted", STAR_SCHEMES) > 0.25 * _spread("sorted", SHAPES_RED)
    edges = sprite.layout_view(render(torch.zeros(2, dtype=torch.long), _factors()[:2], 32), "edges")
    assert edges.shape == (2, 1, 32, 32) and edges.min() < 0.01 and edges.max() <= 1
    gen = Generator(generator_config(**SPRITE, n_parts=2, layout_view="edges"))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    recoloured = x.flip(1) * -1  # channels swapped and negated: every colour changes, every edge stays
    torch.testing.assert_close(gen.encode_class(recoloured)[:, :4], gen.encode_class(x)[:, :4])
    with pytest.raises(ValueError, match="layout_view must be one of"):
        generator_config(**SPRITE, n_parts=2, layout_view="hsv")


def test_figure_view_marks_the_object_against_the_border_colour():
    """layout_view 'figure': channel 0 is the edge view; channel 1 is tanh(|x − b| / FIGURE_SCALE) with b the
    border's median colour, so a square of colour c on a background b reads 0 outside and the known value
    inside. It is blind to the colour scheme on `shapes` as the edge view is, and unlike the edges it tells
    the inside of an outline from the outside: a filled square and a frame of the same outline differ."""
    b, c = torch.tensor([-0.6, -0.2, 0.1]), torch.tensor([0.9, -0.5, 0.3])
    square = b.view(3, 1, 1).repeat(1, 12, 12)
    square[:, 3:9, 3:9] = c.view(3, 1, 1)
    view = sprite.layout_view(square, "figure")
    assert view.shape == (2, 12, 12)
    torch.testing.assert_close(view[0], sprite.layout_view(square, "edges")[0])
    inside = torch.tanh((c - b).norm() / sprite.FIGURE_SCALE)
    torch.testing.assert_close(view[1, 3:9, 3:9], inside.expand(6, 6))
    assert view[1, :3].abs().max() < 1e-3 and view[1, :, 9:].abs().max() < 1e-3
    frame = square.clone()
    frame[:, 4:8, 4:8] = b.view(3, 1, 1)  # the same outer outline, hollow
    assert (sprite.layout_view(frame, "figure")[1, 4:8, 4:8] < 1e-3).all()

    assert _spread("figure", STAR_SCHEMES) < 0.05 * _spread("figure", SHAPES_RED)
    gen = Generator(generator_config(**SPRITE, n_parts=2, layout_view="figure"))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    x[..., [0, -1], :], x[..., :, [0, -1]] = 0.2, 0.2  # a flat border: its median is exact
    recoloured = x.flip(1) * -1  # every colour changes; every edge and every distance from the border stays
    torch.testing.assert_close(gen.encode_class(recoloured)[:, :4], gen.encode_class(x)[:, :4])
