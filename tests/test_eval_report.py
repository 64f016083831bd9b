"""`g2g eval`: the report's structure, its baselines and its CLI, on a tiny untrained model."""
import json

import torch

from g2g.cli import main
from g2g.evaluation.report import make_pairs, run_eval
from g2g.inference import export_generator
from g2g.networks.generator import Generator


def _export(tiny_config, tmp_path):
    torch.manual_seed(0)
    return export_generator(Generator(tiny_config), tmp_path / "model.safetensors")


def test_pairs_have_different_classes():
    labels = torch.arange(10).repeat(5)
    i, j = make_pairs(labels, 200, seed=0)
    assert len(i) == 200 and bool((labels[i] != labels[j]).all())


def test_report_on_shapes_has_every_section(tiny_config, tmp_path):
    path = _export(tiny_config, tmp_path)
    report = run_eval(path, data="shapes", out_dir=tmp_path / "eval", n_pairs=200, classifier_seconds=3)
    for split in ("seen_classes", "heldout_classes"):
        r = report[split]
        for key in ("short_reconstruction", "long_reconstruction", "swap", "class_transfer",
                    "class_from_content_probe", "content_from_class_r2"):
            assert key in r, (split, key)
        # an untrained model cannot beat copying the content source by much, nor reach the classifier
        assert r["swap"]["psnr"] < r["swap"]["baseline_copy_content_source_psnr"] + 6
        assert 0 <= r["class_transfer"]["accuracy"] <= 1
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["seen_classes"]["swap"]["psnr"] == report["seen_classes"]["swap"]["psnr"]
    md = (tmp_path / "eval" / "metrics.md").read_text()
    assert "swap PSNR vs true render" in md and "| metric |" in md


def test_copying_the_content_source_scores_the_copy_baseline(tiny_config, tmp_path):
    """The copy baseline must be what a copy-through model gets: evaluate `m1 = x1` directly."""
    from g2g.data.shapes import ShapesDataset, render
    from g2g.evaluation.metrics import per_image_psnr
    test = ShapesDataset("test", size=16, n=300)
    i, j = make_pairs(test.labels, 200, seed=0)
    target = render(test.labels[j], test.factors[i], 16)
    copy = per_image_psnr(test.images[i], target).mean()
    perfect = per_image_psnr(target, target).mean()
    assert copy < 20 < perfect


def test_eval_cli(tiny_config, tmp_path, capsys):
    path = _export(tiny_config, tmp_path)
    code = main(["eval", str(path), "--data", "digits", "--out", str(tmp_path / "e"), "--pairs", "100",
                 "--classifier-seconds", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "class transfer accuracy" in out and (tmp_path / "e" / "metrics.md").exists()
