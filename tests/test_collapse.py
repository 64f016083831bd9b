"""The collapse detector: it fires on deliberately collapsed models, each kind, and not on the bundled
shapes and digits models; the training alarm logs every signal, flags the progress bar and warns in one
line; `g2g eval` puts the verdict right under the title of metrics.md and into metrics.json."""
import json
import logging
import sys
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

from g2g.callbacks import CollapseAlarm
from g2g.collapse import SIGNALS, diagnose, pose_off_image, signals, verdict
from g2g.data.datamodule import G2GDataModule
from g2g.data.datasets import DigitsDataset
from g2g.data.shapes import ShapesDataset
from g2g.evaluation.markdown import to_markdown
from g2g.evaluation.pairs import make_pairs
from g2g.evaluation.report import collapse_check, run_eval
from g2g.inference import export_generator, load, load_generator
from g2g.networks.generator import Generator, generator_config
from helpers import MODULE_KWARGS, TINY, make_module, tiny_model_file


class Collapsed(nn.Module):
    """A trained generator broken one way: "constant" (draws grey), "background" (the pose's background
    colour only), "no_content" / "no_class" (the decoder reads the first image's content / class code for
    every image), "off_image" (the pose's centre moved 3 image widths right)."""

    def __init__(self, gen, kind: str):
        super().__init__()
        self.gen, self.kind, self.config = gen, kind, gen.config

    def encode_class(self, x):
        return self.gen.encode_class(x)

    def encode_content(self, x, class_code=None):
        a = self.gen.encode_content(x, class_code)
        return a + torch.tensor([3.0, *[0.0] * (a.shape[1] - 1)]) if self.kind == "off_image" else a

    def decode(self, a, b):
        a = a[:1].expand_as(a) if self.kind == "no_content" else a
        b = b[:1].expand_as(b) if self.kind == "no_class" else b
        out = self.gen.decode(a, b)
        if self.kind == "background":
            return a[:, 4:, None, None].expand_as(out)
        return torch.zeros_like(out) if self.kind == "constant" else out


def _pairs(ds, n=64):
    i, j = make_pairs(ds.labels, n, seed=0)
    return ds.images[i], ds.images[j]


@pytest.fixture(scope="module")
def shapes_pairs():
    return _pairs(ShapesDataset("test", size=32, n=300, seed=0))


@pytest.fixture(scope="module")
def shapes_model():
    return load_generator("shapes")


@pytest.mark.parametrize("name", ["shapes", "digits"])
def test_bundled_models_do_not_collapse_by_a_wide_margin(name, shapes_pairs):
    x1, x2 = shapes_pairs if name == "shapes" else _pairs(DigitsDataset("test", 32))
    d = diagnose(load_generator(name), x1, x2)
    assert not d.collapsed and d.verdict.startswith("no collapse: short reconstructions +")
    assert d.short_gain_db > 5 * SIGNALS["short_gain_db"][0]                    # measured 17.7, 9.5 dB
    assert min(d.class_effect, d.content_effect) > 10 * SIGNALS["class_effect"][0]  # measured ≥ 0.32
    assert d.batch_spread > 5 * SIGNALS["batch_spread"][0] and d.pose_off_image == 0


@pytest.mark.parametrize("kind, fails", [
    ("constant", {"short_gain_db", "class_effect", "content_effect", "batch_spread"}),
    ("background", {"short_gain_db", "class_effect"}),
    ("no_content", {"content_effect"}),
    ("no_class", {"class_effect"}),
    ("off_image", {"pose_off_image", "short_gain_db"}),
    ("untrained", {"short_gain_db", "class_effect"}),
])
def test_each_kind_of_collapse_fires(kind, fails, shapes_model, shapes_pairs):
    torch.manual_seed(0)
    gen = Generator(shapes_model.config) if kind == "untrained" else Collapsed(shapes_model, kind)
    d = diagnose(gen, *shapes_pairs)
    assert fails <= set(d.failed), d.signals()
    assert d.verdict.startswith("collapse: ") and "\n" not in d.verdict and "docs/evaluation.md" in d.verdict
    assert ("ignore the class code" in d.verdict) == ("class_effect" in d.failed)
    assert ("off the image" in d.verdict) == ("pose_off_image" in d.failed)


def test_signals_of_known_images():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    flat = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    assert signals(x, flat, flat)["short_gain_db"] == pytest.approx(0.0, abs=1e-4)  # a flat image gains 0 dB
    same = signals(x, x, x)   # perfect reconstructions, mixed images equal to them: no class effect
    assert same["short_gain_db"] > 50 and same["class_effect"] == 0 and same["batch_spread"] == pytest.approx(1)
    assert signals(x, x, x.roll(4, 0))["content_effect"] == 0   # m1 = x̂2: the content code is ignored
    constant = signals(x, torch.zeros_like(x), torch.zeros_like(x))
    assert constant["batch_spread"] == 0 and constant["class_effect"] == constant["content_effect"] == 0
    pose = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.5, 0.0, 0.0, 0.0], [0.0, -0.9, -4.0, 0.0], [0.9, 0.9, -1.0, 0.0]])
    assert pose_off_image(pose, 32).tolist() == [False, True, True, False]   # centre out; under a pixel


def test_the_verdict_names_each_failed_signal_with_its_number():
    values = {"short_gain_db": 0.3, "class_effect": 0.5, "content_effect": 0.002, "batch_spread": 0.9}
    line = verdict(values)
    assert line.startswith("collapse: short reconstructions no better than a flat image (+0.3 dB over it, "
                           "needs ≥ +1) and mixed images ignore the content code (a content swap changes 0.2 %")
    assert "the model draws nothing useful" in line and "class code" not in line
    assert verdict({**values, "short_gain_db": float("nan")}).startswith("collapse: short reconstructions")
    healthy = verdict({**values, "short_gain_db": 12.0, "content_effect": 0.4})
    assert healthy == ("no collapse: short reconstructions +12.0 dB over a flat image, a class swap changes 50 % "
                       "of the image detail, a content swap 40 %, x̂ varies 0.90× as much as x")


# ---- training ----

def _alarm_step(alarm, generator, batch, step, end=False):
    logged = []
    module = SimpleNamespace(generator_ema=generator, device=torch.device("cpu"),
                             log=lambda name, value, **kw: logged.append(name))
    trainer = SimpleNamespace(global_step=step, is_global_zero=True,
                              datamodule=SimpleNamespace(panel_batch=lambda n: batch))
    if end:
        alarm.on_train_end(trainer, module)
    else:
        alarm.on_train_batch_end(trainer, module, None, batch, 0)
    return logged


def test_alarm_waits_for_min_step_and_patience(shapes_model, shapes_pairs, caplog):
    x1, x2 = (x[:16] for x in shapes_pairs)
    batch = {"x1": x1, "x2": x2, "ref1": x1[:, None], "ref2": x2[:, None],
             "y1": torch.zeros(16, dtype=torch.long), "y2": torch.ones(16, dtype=torch.long)}
    alarm, broken = CollapseAlarm(every_n_steps=100, min_step=200, patience=2), Collapsed(shapes_model, "constant")
    with caplog.at_level(logging.WARNING, logger="g2g.callbacks"):
        assert _alarm_step(alarm, broken, batch, 100) == []                     # before min_step
        logged = _alarm_step(alarm, broken, batch, 200)
        assert "train/collapse_short_gain_db" in logged and "collapse" in logged and not caplog.records
        assert _alarm_step(alarm, broken, batch, 250) == []                     # not a check step
        _alarm_step(alarm, broken, batch, 300)
        assert [r.getMessage()[:57] for r in caplog.records] == [
            "collapse alarm at step 300 (since step 200): short recons"]
        _alarm_step(alarm, shapes_model, batch, 400)                            # healthy: the streak ends
        assert alarm.streak == 0 and len(caplog.records) == 1
        _alarm_step(CollapseAlarm(min_step=200), broken, batch, 250, end=True)  # the exported model: no patience
        assert "at the end of training (step 250): short reconstructions" in caplog.records[-1].getMessage()
    with pytest.raises(ValueError, match="patience"):
        CollapseAlarm(patience=0)


def test_alarm_in_a_tiny_training_run(tmp_path, caplog):
    """A generator made to collapse (its decoder's output layer zeroed, learning rate 0) is flagged in the
    progress bar, its signals logged and one line warned at every check of a 3-step run (the end of training
    adds none: its step was checked)."""
    module = make_module(generator=generator_config(**TINY), **{**MODULE_KWARGS, "lr_g": 0.0})
    for gen in (module.generator, module.generator_ema):
        for p in gen.decoder.to_rgb.parameters():
            nn.init.zeros_(p)
    data = G2GDataModule(dataset="shapes", image_size=16, batch_size=4, steps_per_epoch=3, panel_size=2)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0,
                        use_distributed_sampler=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path),
                        callbacks=[CollapseAlarm(every_n_steps=1, min_step=0, patience=1, n_pairs=16)])
    with caplog.at_level(logging.WARNING, logger="g2g.callbacks"):
        trainer.fit(module, data)
    assert trainer.progress_bar_metrics["collapse"] == 4.0  # gain, class, content, spread
    assert trainer.callback_metrics["train/collapse_batch_spread"] == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "g2g.callbacks"]
    assert [line.split(":")[0] for line in lines] == [f"collapse alarm at step {s} (since step 1)" for s in (1, 2, 3)]


def test_train_cli_exposes_the_collapse_options(capsys, monkeypatch):
    from g2g.training import run_training
    monkeypatch.setattr(sys, "argv", ["g2g"])
    with pytest.raises(SystemExit):
        run_training(["--print_config", "--collapse.every_n_steps", "50", "--collapse.min_step", "0"])
    out = capsys.readouterr().out
    assert "collapse:" in out and "min_step: 0" in out and "patience: 2" in out


# ---- eval ----

def test_eval_report_opens_with_the_collapse_line(tmp_path):
    gen = load_generator(tiny_model_file(tmp_path / "tiny.safetensors"))
    with torch.no_grad():
        for p in gen.decoder.to_rgb.parameters():
            p.zero_()
    path = export_generator(gen, tmp_path / "collapsed.safetensors")
    report = run_eval(path, data="digits", out_dir=tmp_path / "eval", n_pairs=40, classifier_steps=20, n_probe=60,
                      mlp_probes=False, dci_repeats=1, k_shots=(1,), networks={"lpips": None, "inception": None})
    lines = (tmp_path / "eval" / "metrics.md").read_text().splitlines()
    assert lines[0].startswith("# G2G evaluation") and lines[2].startswith("**collapse: short reconstructions")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())["collapse"]
    assert saved["verdict"] == report["collapse"]["verdict"] and saved["pairs"] == 64 and saved["split"] == "test"
    assert saved["collapsed"] and "batch_spread" in saved["failed"] and saved["thresholds"]["short_gain_db"] == 1.0


def test_a_healthy_model_gets_a_no_collapse_line():
    found = {**collapse_check(load("digits"), DigitsDataset("test", 32), seed=0), "split": "test"}
    assert not found["failed"]
    md = to_markdown({"data": "digits", "image_size": 32, "collapse": found}).splitlines()
    assert md[2] == f"{found['verdict']} (64 test pairs of test)" and md[2].startswith("no collapse: ")
