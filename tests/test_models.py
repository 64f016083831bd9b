"""Bundled models: the registry (a tiny model in a temporary models folder), loading by name, `g2g models`,
and benchmarks/make_models.py bundling an already-trained run."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import g2g
import g2g.models as registry
from g2g.cli import main
from g2g.inference import export_generator
from g2g.networks.generator import Generator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import make_models  # noqa: E402

SPLIT = {"n_images": 10, "n_pairs": 5}
METRICS = {"data": "shapes", "image_size": 16, "settings": {"n_pairs": 5, "classifier_steps": 10},
           "seen_classes": {**SPLIT, "swap": {"psnr": 29.5}, "class_transfer": {"accuracy": 1.0, "chance": 0.04},
                            "class_from_content_probe": {"accuracy": 0.05, "chance": 0.04}},
           "heldout_classes": {**SPLIT, "class_transfer": {"accuracy": 0.9, "chance": 0.2}}}


def _export(config, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return export_generator(Generator(config), path)


@pytest.fixture
def models_dir(tmp_path, monkeypatch, tiny_config):
    """A models folder holding `tiny` (with metrics) and `bare` (without), as the package's; cwd is empty."""
    folder = tmp_path / "models"
    _export(tiny_config, folder / "tiny.safetensors", seed=0)
    _export(tiny_config, folder / "bare.safetensors", seed=1)
    (folder / "tiny.metrics.json").write_text(json.dumps({**METRICS, "generator": tiny_config.to_dict()}))
    monkeypatch.setattr(registry, "MODELS_DIR", folder)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return folder


def _first_weight(model) -> torch.Tensor:
    return next(iter(model.generator.state_dict().values()))


def test_registry_names_paths_and_info(models_dir, tiny_config):
    assert registry.bundled_names() == ["bare", "tiny"]
    assert registry.bundled_path("tiny") == models_dir / "tiny.safetensors"
    info = registry.bundled_info("tiny")
    assert (info["data"], info["image_size"], info["arch"]) == ("shapes", 16, tiny_config.arch)
    assert list(info["splits"]) == ["seen_classes", "heldout_classes"]
    assert info["splits"]["seen_classes"] == {"swap_psnr": 29.5, "class_transfer": 1.0, "class_chance": 0.04,
                                              "probe": 0.05, "probe_chance": 0.04}
    assert info["splits"]["heldout_classes"]["swap_psnr"] is None
    bare = registry.bundled_info("bare")  # no metrics: the config file still gives size and arch
    assert (bare["data"], bare["image_size"], bare["splits"]) == (None, 16, {})


def test_unknown_name_is_a_one_line_error(models_dir, tmp_path):
    with pytest.raises(ValueError, match=r"unknown bundled model 'nope': choose one of bare, tiny") as e:
        registry.bundled_path("nope")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="none is installed"):
        registry.bundled_path("tiny", folder=tmp_path / "empty")


def test_load_by_name_is_the_bundled_file(models_dir):
    by_name, by_path = g2g.load("tiny"), g2g.load(models_dir / "tiny.safetensors")
    assert torch.equal(_first_weight(by_name), _first_weight(by_path))
    assert not torch.equal(_first_weight(g2g.load("bare")), _first_weight(by_path))


def test_an_existing_path_wins_over_a_name(models_dir, tiny_config):
    Path("tiny").mkdir()
    with pytest.raises(FileNotFoundError, match="the folder tiny hides the bundled model tiny"):
        g2g.load("tiny")
    _export(tiny_config, Path("tiny") / "model.safetensors", seed=2)
    mine = g2g.load("tiny")
    assert torch.equal(_first_weight(mine), _first_weight(g2g.load(Path("tiny") / "model.safetensors")))
    assert not torch.equal(_first_weight(mine), _first_weight(g2g.load(models_dir / "tiny.safetensors")))


def test_an_unknown_name_names_the_bundled_ones(models_dir):
    with pytest.raises(FileNotFoundError, match=r"model file not found: nope .*bundled model name \(bare, tiny\)"):
        g2g.load("nope")


def test_cli_models_lists_data_size_arch_and_metrics(models_dir, capsys, tiny_config):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "data", "size"]
    bare, seen, heldout = lines[1], lines[2], lines[3]
    assert bare.split()[:2] == ["bare", "—"] and "16 px" in bare
    assert seen.split()[:2] == ["tiny", "shapes"] and tiny_config.arch in seen
    assert "seen_classes" in seen and "29.50 dB" in seen and "100.0 % (4.0 %)" in seen and "5.0 % (4.0 %)" in seen
    assert heldout.split() == ["heldout_classes", "—", "90.0", "%", "(20.0", "%)", "—"]
    assert str(models_dir) in lines[-1]


def test_cli_models_without_any(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path)
    assert main(["models"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("no bundled models in") and "\n" not in out


def test_cli_swap_takes_a_model_name(models_dir, capsys):
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(f"{i}.png")
    assert main(["swap", "0.png", "1.png", "--model", "tiny", "--out", "swap"]) == 0
    assert all(Path("swap", f"{n}.png").is_file() for n in ("m1", "m2", "r1", "r2", "panel"))
    assert main(["swap", "0.png", "1.png", "--model", "nope"]) == 2
    assert "bundled model name (bare, tiny)" in capsys.readouterr().err


@pytest.fixture
def trained_run(tmp_path, tiny_config):
    """A run folder as `g2g demo` leaves it: model.safetensors, metrics.json and a last checkpoint."""
    run = tmp_path / "run"
    _export(tiny_config, run / "model.safetensors", seed=3)
    (run / "metrics.json").write_text(json.dumps({**METRICS, "generator": tiny_config.to_dict(), "markdown": "# x"}))
    (run / "train" / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 7, "callbacks": {"Timer": {"time_elapsed": {"train": 123.4}}}},
               run / "train" / "checkpoints" / "last.ckpt")
    return run


def test_make_models_bundles_a_trained_run(trained_run, tmp_path):
    models, docs = tmp_path / "models", tmp_path / "docs" / "models.md"
    assert make_models.main(["--from-run", str(trained_run), "--only", "demo", "--preset", "g2g",
                             "--command", "g2g demo --out run", "--models-dir", str(models), "--docs", str(docs)]) == 0
    assert sorted(p.name for p in models.iterdir()) == ["demo.json", "demo.metrics.json", "demo.safetensors"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in models.iterdir())  # package data anyone can read
    assert (models / "demo.safetensors").read_bytes() == (trained_run / "model.safetensors").read_bytes()
    assert (models / "demo.json").read_text() == (trained_run / "model.json").read_text()
    metrics = json.loads((models / "demo.metrics.json").read_text())
    assert metrics["seen_classes"] == METRICS["seen_classes"] and "markdown" not in metrics
    b = metrics["bundle"]
    assert (b["name"], b["dataset"], b["image_size"], b["preset"]) == ("demo", "shapes", 16, "g2g")
    assert (b["train_command"], b["steps"], b["train_seconds"], b["torch"]) == \
        ("g2g demo --out run", 7, 123.4, torch.__version__)
    assert b["eval_command"].endswith("--data shapes --pairs 5 --classifier-steps 10")
    text = docs.read_text()
    assert "| `demo` | shapes | 16 px |" in text and "29.50 dB" in text and "7 steps, 2.1 min" in text
    assert "- `demo`: `g2g demo --out run`" in text and "$" not in text


def test_make_models_names_a_run_by_its_dataset_and_needs_its_metrics(trained_run, tmp_path):
    models = tmp_path / "models"
    make_models.main(["--from-run", str(trained_run), "--models-dir", str(models), "--docs", str(tmp_path / "m.md")])
    assert (models / "shapes.safetensors").is_file()
    with pytest.raises(FileNotFoundError, match="no metrics.json in .*give --eval DIR"):
        make_models.main(["--from-run", str(trained_run), "--eval", str(tmp_path), "--models-dir", str(models),
                          "--docs", str(tmp_path / "m.md")])


def test_training_command_budget_and_steps():
    args = make_models.train_args("g2g", "digits", Path("w"), 5430, None)
    assert args[:5] == ["train", "--preset", "g2g", "--data.dataset", "digits"]
    assert args[-2:] == ["--trainer.max_time", "00:01:30:30"]
    assert make_models.train_args("g2g", "shapes", Path("w"), None, 2)[-2:] == ["--trainer.max_steps", "2"]
    with pytest.raises(SystemExit):
        make_models.parse_args(["--only", "nope"])
