"""Exported models, the inference API and the `g2g` command line."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import safe_open, save_file

from g2g import inference
from g2g.cli import main
from g2g.inference import CONFIG_KEY, G2GModel, export_generator
from g2g.networks.generator import Generator
from g2g.training import export_checkpoint


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def gen(tiny_config) -> Generator:
    torch.manual_seed(0)
    return Generator(tiny_config).eval()


@pytest.fixture
def model_path(gen, tmp_path):
    return export_generator(gen, tmp_path / "model" / "model.safetensors")


def _write_png(path, seed: int, size=(20, 24)):
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


# --- export and load -----------------------------------------------------------------------------


def test_export_writes_config_in_metadata_and_json_beside_it(model_path, tiny_config):
    with safe_open(str(model_path), framework="pt") as f:
        assert json.loads(f.metadata()[CONFIG_KEY]) == tiny_config.to_dict()
    assert json.loads(model_path.with_suffix(".json").read_text()) == tiny_config.to_dict()


def test_loaded_model_reproduces_the_original_exactly(gen, model_path):
    original, loaded = G2GModel(gen), inference.load(model_path)
    assert loaded.config == gen.config
    x1, x2 = _images(2, seed=1), _images(2, seed=2)
    for a, b in zip(original.encode(x1), loaded.encode(x1)):
        assert torch.equal(a, b)
    content, class_code = original.encode(x1)
    assert torch.equal(original.decode(content, class_code), loaded.decode(content, class_code))
    refs = _images(4, seed=3).view(2, 2, 3, 16, 16)
    assert torch.equal(original.encode_class(refs), loaded.encode_class(refs))
    s1, s2 = original.swap(x1, x2), loaded.swap(x1, x2)
    for k in ("m1", "m2", "r1", "r2"):
        assert torch.equal(getattr(s1, k), getattr(s2, k)), k
    assert torch.equal(original.grid(x1), loaded.grid(x1))
    assert torch.equal(inference.load(model_path.parent).grid(x1), loaded.grid(x1))  # a folder works too


def test_grid_rows_are_classes_and_columns_are_contents(gen):
    model, x = G2GModel(gen), _images(3, seed=4)
    g = model.grid(x)
    assert g.shape == (3, 3, 3, 16, 16)
    content, class_code = model.encode(x)
    torch.testing.assert_close(g[2, 0], model.decode(content[:1], class_code[2:3])[0])  # class 2, content 0
    torch.testing.assert_close(g[1, 1], model.decode(content[1:2], class_code[1:2])[0])  # x̂ on the diagonal


def test_swap_is_the_g2g_pass_without_noise(gen):
    model, x1, x2 = G2GModel(gen), _images(2, seed=5), _images(2, seed=6)
    res = model.swap(x1, x2)
    (a1, _), (_, b2) = model.encode(x1), model.encode(x2)
    torch.testing.assert_close(res.m1, model.decode(a1, b2))


def test_load_user_errors(tmp_path, gen):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        inference.load(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError):
        inference.load(tmp_path)  # a folder without model.safetensors
    text = tmp_path / "notes.safetensors"
    text.write_text("this is not a model\n")
    with pytest.raises(ValueError, match="not a safetensors model file"):
        inference.load(text)
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(bare))  # no config metadata
    with pytest.raises(ValueError, match="no G2G generator config"):
        inference.load(bare)


def test_export_checkpoint_gives_the_ema_generator(tiny_run, tmp_path):
    path = export_checkpoint(tiny_run.ckpt, tmp_path / "exported.safetensors")
    loaded = inference.load(path).generator.state_dict()
    ema = tiny_run.module.generator_ema.state_dict()
    assert loaded.keys() == ema.keys()
    assert all(torch.equal(loaded[k], ema[k]) for k in ema)
    assert not all(torch.equal(loaded[k], tiny_run.module.generator.state_dict()[k]) for k in ema)


# --- command line --------------------------------------------------------------------------------


def _one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("g2g: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # pytest's own argv is in sys.argv
@pytest.mark.parametrize("argv", [["--help"], ["swap", "--help"], ["grid", "--help"], ["eval", "--help"],
                                  ["export", "--help"], ["train", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: g2g" in capsys.readouterr().out


def test_swap_writes_mixed_reconstructed_and_panel(model_path, tmp_path, capsys):
    a, b = _write_png(tmp_path / "a.png", 0), _write_png(tmp_path / "b.png", 1)
    out = tmp_path / "swap"
    assert main(["swap", a, b, "--model", str(model_path), "--out", str(out)]) == 0
    for name in ("m1", "m2", "r1", "r2"):
        assert Image.open(out / f"{name}.png").size == (16, 16)
    assert Image.open(out / "panel.png").size == (2 * 18 + 2, 3 * 18 + 2)  # 2 columns × 3 rows, padding 2
    assert capsys.readouterr().err == ""


def test_grid_writes_n_by_n_tiles(model_path, tmp_path):
    paths = [_write_png(tmp_path / f"{i}.png", i) for i in range(3)]
    out = tmp_path / "grid.png"
    assert main(["grid", *paths, "--model", str(model_path), "--out", str(out)]) == 0
    assert Image.open(out).size == (3 * 18 + 2, 3 * 18 + 2)


def test_swap_missing_image(model_path, tmp_path, capsys):
    b = _write_png(tmp_path / "b.png", 1)
    assert main(["swap", str(tmp_path / "nope.png"), b, "--model", str(model_path)]) == 2
    _one_line_error(capsys, "nope.png")


def test_swap_text_file_named_png(model_path, tmp_path, capsys):
    fake = tmp_path / "fake.png"
    fake.write_text("hello\n")
    b = _write_png(tmp_path / "b.png", 1)
    assert main(["swap", str(fake), b, "--model", str(model_path), "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "fake.png")


def test_swap_missing_model(tmp_path, capsys):
    a, b = _write_png(tmp_path / "a.png", 0), _write_png(tmp_path / "b.png", 1)
    assert main(["swap", a, b, "--model", str(tmp_path / "none.safetensors")]) == 2
    _one_line_error(capsys, "none.safetensors")


def test_swap_out_is_an_existing_file(model_path, tmp_path, capsys):
    a, b = _write_png(tmp_path / "a.png", 0), _write_png(tmp_path / "b.png", 1)
    (tmp_path / "taken").write_text("")
    assert main(["swap", a, b, "--model", str(model_path), "--out", str(tmp_path / "taken")]) == 2
    _one_line_error(capsys, "taken")


def test_train_unknown_preset_lists_the_known_ones(capsys):
    assert main(["train", "--preset", "nope"]) == 2
    _one_line_error(capsys, "'nope'", "g2g")


def test_export_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "m.safetensors")]) == 2
    _one_line_error(capsys, "none.ckpt")
    assert not (tmp_path / "m.safetensors").exists()


def test_export_command(tiny_run, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["export", str(tiny_run.ckpt), "--out", str(out)]) == 0
    assert out.exists() and out.with_suffix(".json").exists()
    assert inference.load(out).config == tiny_run.module.generator.config
