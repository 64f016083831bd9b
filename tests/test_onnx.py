"""ONNX export: the graphs, run in onnxruntime on the CPU, match `G2GModel` to 1e-4 on tiny models of
each architecture, at batch sizes 1 and 3 from the same files (dynamic batch axis); `g2g export --onnx`."""
import contextlib
import importlib.util
import io
import json
from types import SimpleNamespace

import pytest
import torch

from g2g import onnx_export
from g2g.cli import main
from g2g.data.shapes import ShapesDataset
from g2g.inference import G2GModel, export_generator
from g2g.networks.generator import Generator, generator_config
from g2g.networks.sprite import layout_view
from helpers import TINY

ort = pytest.importorskip("onnxruntime", reason="ONNX tests need onnxruntime: pip install 'g2g[onnx]'")
onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'g2g[onnx]'")
pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript: pip install 'g2g[onnx]'")

# the bundled `shapes` model's sprite options (palette template, edge layout view, max pooling, pose fit)
SPRITE = dict(arch="sprite", image_size=16, nf=4, n_downs_content=2, content_channels=4, n_res_content=0,
              n_downs_class=2, class_dim=8, mlp_dim=16, n_fit=2, n_parts=2, layout_view="edges",
              class_pool="max", pose_leak=0.01)
CONFIGS = {
    "g2g": TINY,
    "funit": {**TINY, "arch": "funit"},
    "lord": dict(arch="lord", image_size=16, nf=4, n_downs_content=2, content_channels=4, n_downs_class=2,
                 class_dim=8, n_res_decoder=2, mlp_dim=16),
    "sprite": SPRITE,
}
TOLERANCE = 1e-4  # max abs difference from G2GModel


def _generator(config: dict) -> Generator:
    """A tiny generator with every weight perturbed (zero-initialised layers would make outputs trivial)."""
    torch.manual_seed(0)
    gen = Generator(generator_config(**config)).eval()
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return gen


def _images(n: int, seed: int) -> torch.Tensor:
    """Built-in `shapes` images: flat regions as well as edges (an exported graph that was off only where the
    image is flat matched on uniform noise)."""
    data = ShapesDataset(split="test", size=16, n=n, seed=seed)
    return torch.stack([data[i][0] for i in range(n)])


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory):
    """One `g2g export MODEL --onnx DIR` per arch: the G2GModel that the graphs must match, the folder,
    its description and what the command printed."""
    gen = _generator(CONFIGS[request.param])
    root = tmp_path_factory.mktemp(f"onnx-{request.param}")
    path = export_generator(gen, root / "model.safetensors")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["export", str(path), "--onnx", str(root / "onnx")]) == 0
    # with a pose fit the graphs compute the model without it (the encoder's pose)
    reference = G2GModel(onnx_export.exportable(gen)) if gen.config.pose_fit_steps else G2GModel(gen)
    description = json.loads((root / "onnx" / "onnx.json").read_text())
    return SimpleNamespace(model=reference, folder=root / "onnx", description=description,
                           printed=printed.getvalue(), root=root)


def _run(folder, graph: str, **inputs: torch.Tensor) -> list[torch.Tensor]:
    session = ort.InferenceSession(str(folder / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {k: v.numpy() for k, v in inputs.items()})]


def _assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("batch", [1, 3])
def test_graphs_match_the_model(exported, batch):
    model, folder = exported.model, exported.folder
    x1, x2 = _images(batch, seed=batch), _images(batch, seed=10 + batch)
    content, class_code = model.encode(x1)
    (got_content,) = _run(folder, "content_encoder", image=x1)
    (got_class,) = _run(folder, "class_encoder", image=x1)
    _assert_close(got_content, content)
    _assert_close(got_class, class_code)
    mixed_class = model.encode_class(x2)
    (image,) = _run(folder, "decoder", content=content, class_code=mixed_class)
    _assert_close(image, model.decode(content, mixed_class))
    want = model.swap(x1, x2)
    for got, name in zip(_run(folder, "swap", x1=x1, x2=x2), ("m1", "m2", "r1", "r2")):
        _assert_close(got, getattr(want, name))


def test_flat_regions_export_exactly(tmp_path):
    """The edge view's sqrt(s + 1e-8) keeps its 1e-8: a graph optimiser that dropped it put the graph 4e-4 off
    the model wherever the image is flat, which the class encoder of a trained model amplifies."""
    x = _images(2, seed=0)
    onnx_export.export_graph(_generator(SPRITE), "edge view", lambda gen, image: layout_view(image, "edges"),
                             {"image": x}, ["view"], tmp_path / "view.onnx")
    (got,) = _run(tmp_path, "view", image=x)
    assert (got - layout_view(x, "edges")).abs().max().item() < 1e-6


def test_description_names_files_shapes_and_value_range(exported):
    description, folder = exported.description, exported.folder
    assert set(description["graphs"]) == set(onnx_export.GRAPHS)
    for entry in description["graphs"].values():
        graph = onnx.load(str(folder / entry["file"])).graph
        shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                  for v in [*graph.input, *graph.output]}
        assert shapes == {**entry["inputs"], **entry["outputs"]}
        assert all(shape[0] == "batch" for shape in shapes.values())
    content_shape = list(exported.model.config.content_shape)
    assert description["graphs"]["content_encoder"]["outputs"]["content"] == ["batch", *content_shape]
    assert description["image_size"] == 16 and description["value_range"] == [-1.0, 1.0]
    assert description["config"] == json.loads((exported.root / "model.json").read_text())
    assert description["pose_fit"] == ("not exported" if description["config"].get("n_fit") else "none")


def test_export_command_says_what_it_wrote(exported):
    assert f"content_encoder.onnx, class_encoder.onnx, decoder.onnx, swap.onnx and onnx.json to {exported.folder}" \
        in exported.printed
    assert ("the pose fit is not exported" in exported.printed) == (exported.description["pose_fit"] == "not exported")
    assert sorted(p.name for p in exported.root.iterdir()) == ["model.json", "model.safetensors", "onnx"]


def test_pose_fit_is_left_out_and_said_so():
    """The graphs of a model with a pose fit give the encoder's pose, which differs from the fitted one."""
    gen = _generator(SPRITE)
    x = _images(2, seed=0)
    plain = onnx_export.exportable(gen)
    assert plain.config.pose_fit_steps == 0 and gen.config.pose_fit_steps == 2
    with torch.no_grad():
        assert torch.equal(plain.encode_content(x), gen.content_encoder(x))
        assert not torch.allclose(gen.encode_content(x), gen.content_encoder(x))


def test_an_operator_without_onnx_form_is_a_one_line_error(tmp_path):
    """Layout view 'figure' takes the median colour of the border, which has no ONNX operator."""
    with pytest.raises(ValueError, match=r"the class_encoder of arch 'sprite' cannot be exported to ONNX \(.*aten\.median") as e:
        onnx_export.export_onnx(_generator({**SPRITE, "layout_view": "figure"}), tmp_path)
    assert "\n" not in str(e.value)


def test_export_errors_are_one_line(tmp_path, capsys, monkeypatch):
    model = export_generator(_generator(TINY), tmp_path / "model.safetensors")
    (tmp_path / "file").write_text("")
    assert main(["export", str(model), "--onnx", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"g2g: error: {tmp_path / 'file'} is a file; give a folder for the ONNX graphs\n"

    assert main(["export", str(model)]) == 2  # an exported model needs --onnx
    assert capsys.readouterr().err == (f"g2g: error: {model} is an exported model; add --onnx DIR to write its "
                                       f"ONNX graphs, or give a training checkpoint (.ckpt)\n")

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxscript" else find_spec(name))
    assert main(["export", str(model), "--onnx", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "g2g: error: ONNX export needs onnxscript: pip install 'g2g[onnx]'\n"
    assert not (tmp_path / "o").exists()
