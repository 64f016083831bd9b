"""`G2GModel.interpolate` and `g2g interp`: blending the class or the content code of one image into
another's, with both ends known (the short reconstruction and a mixed image of the swap)."""
import numpy as np
import pytest
import torch
from PIL import Image

from g2g.cli import main
from g2g.inference import G2GModel, export_generator
from g2g.networks.generator import Generator, generator_config
from helpers import TINY

SPRITE = dict(arch="sprite", image_size=16, nf=4, n_downs_content=2, content_channels=4, n_res_content=0,
              n_downs_class=2, class_dim=8, mlp_dim=16, n_fit=2, n_parts=2, layout_view="edges")
LORD = dict(arch="lord", image_size=16, nf=4, n_downs_content=2, content_channels=4, n_downs_class=2,
            class_dim=8, n_res_decoder=2, mlp_dim=16)
CONFIGS = {"g2g": TINY, "sprite": SPRITE, "lord": LORD}


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _model(config: dict) -> G2GModel:
    """A tiny generator with every weight perturbed (a fresh pose encoder gives the same pose for all)."""
    torch.manual_seed(0)
    gen = Generator(generator_config(**config))
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return G2GModel(gen)


@pytest.fixture(params=sorted(CONFIGS))
def model(request) -> G2GModel:
    return _model(CONFIGS[request.param])


def test_class_blend_runs_from_the_short_reconstruction_to_the_mixed_image(model):
    x = _images(2)
    out = model.interpolate(x[0], x[1], steps=5, code="class")
    content, class_code = model.encode(x)
    assert out.shape == (5, 3, 16, 16)
    torch.testing.assert_close(out[0], model.decode(content[:1], class_code[:1])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[-1], model.swap(x[:1], x[1:]).m1[0], atol=1e-5, rtol=0)
    middle = model.decode(content[:1], class_code.mean(0, keepdim=True))[0]
    torch.testing.assert_close(out[2], middle, atol=1e-5, rtol=0)


def test_content_blend_keeps_the_class_of_the_first_image(model):
    x = _images(2, seed=1)
    out = model.interpolate(x[:1], x[1:], steps=3, code="content")
    content, class_code = model.encode(x)
    assert out.shape == (3, 3, 16, 16)
    torch.testing.assert_close(out[0], model.decode(content[:1], class_code[:1])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[-1], model.swap(x[:1], x[1:]).m2[0], atol=1e-5, rtol=0)
    middle = model.decode(content.mean(0, keepdim=True), class_code[:1])[0]
    torch.testing.assert_close(out[1], middle, atol=1e-5, rtol=0)


def test_one_encode_and_one_decode_for_the_whole_strip(model, monkeypatch):
    calls = {"decode": 0, "encode_class": 0}
    for name in calls:
        method = getattr(model.generator, name)

        def counted(*args, _method=method, _name=name):
            calls[_name] += 1
            return _method(*args)
        monkeypatch.setattr(model.generator, name, counted)
    x = _images(2)
    model.interpolate(x[0], x[1], steps=7)
    assert calls == {"decode": 1, "encode_class": 1}


@pytest.mark.parametrize("kwargs, fragment", [(dict(steps=1), "steps must be an integer >= 2"),
                                              (dict(steps=4, code="style"), "code must be 'class' or 'content'")])
def test_bad_arguments_are_one_line_errors(kwargs, fragment):
    model = _model(TINY)
    x = _images(2)
    with pytest.raises(ValueError, match=fragment) as e:
        model.interpolate(x[0], x[1], **kwargs)
    assert "\n" not in str(e.value)


def test_inputs_must_be_single_images_of_one_size():
    model = _model(TINY)
    with pytest.raises(ValueError, match=r"x_a must be one image of shape \(3, H, W\) or \(1, 3, H, W\)"):
        model.interpolate(_images(2), _images(1))
    with pytest.raises(ValueError, match="same size"):
        model.interpolate(_images(1), torch.zeros(3, 8, 8))


# --- g2g interp ------------------------------------------------------------------------------------

def _write_png(path, seed: int):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def files(tmp_path):
    model = export_generator(_model(TINY).generator, tmp_path / "model.safetensors")
    return str(model), _write_png(tmp_path / "a.png", 0), _write_png(tmp_path / "b.png", 1)


@pytest.mark.parametrize("extra, tiles", [([], 5), (["--show-inputs", "--code", "content"], 7)])
def test_interp_writes_a_strip(files, tmp_path, capsys, extra, tiles):
    model, a, b = files
    out = tmp_path / "strips" / "strip.png"
    assert main(["interp", a, b, "--model", model, "--out", str(out), "--steps", "5", *extra]) == 0
    assert Image.open(out).size == (tiles * 18 + 2, 18 + 2)  # one row of 16 px tiles, padding 2
    assert "wrote" in capsys.readouterr().out


def test_interp_steps_below_two_is_a_one_line_error(files, tmp_path, capsys):
    model, a, b = files
    assert main(["interp", a, b, "--model", model, "--out", str(tmp_path / "s.png"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("g2g: error: steps must be an integer >= 2") and err.count("\n") == 1
    assert not (tmp_path / "s.png").exists()
