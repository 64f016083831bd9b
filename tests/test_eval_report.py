"""`g2g eval`: the report's structure, its baselines and its CLI, on a tiny untrained model."""
import json
import sys

import torch

from g2g.cli import main
from g2g.evaluation.pairs import make_pairs
from g2g.evaluation.report import run_eval
from g2g.inference import export_generator
from g2g.networks.generator import Generator


def _export(tiny_config, tmp_path):
    torch.manual_seed(0)
    return export_generator(Generator(tiny_config), tmp_path / "model.safetensors")


def test_pairs_have_different_classes():
    labels = torch.arange(10).repeat(5)
    i, j = make_pairs(labels, 200, seed=0)
    assert len(i) == 200 and bool((labels[i] != labels[j]).all())


# stand-ins for the external judges (the real ones need weights that tests may not download)
STAND_INS = {"lpips": lambda pred, target: (pred - target).abs().mean(dim=(1, 2, 3)),
             "inception": torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()),
             "identity": torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())}


def test_report_on_shapes_has_every_section(tiny_config, tmp_path):
    path = _export(tiny_config, tmp_path)
    report = run_eval(path, data="shapes", out_dir=tmp_path / "eval", n_pairs=200, classifier_steps=600,
                      n_probe=500, dci_repeats=2, k_shots=(1, 3), networks=STAND_INS)
    for split in ("seen_classes", "heldout_classes"):
        r = report[split]
        for key in ("short_reconstruction", "long_reconstruction", "reassembly", "swap", "class_transfer",
                    "few_shot", "copy_through", "code_cycle", "class_from_content_probe",
                    "class_from_content_mlp_probe", "content_from_class_r2", "content_from_class_mlp_r2",
                    "dci", "realism", "identity_similarity"):
            assert key in r, (split, key)
        # an untrained model cannot beat copying the content source by much, nor reach the classifier
        assert r["swap"]["psnr"] < r["swap"]["baseline_copy_content_source_psnr"] + 6
        assert 0 <= r["class_transfer"]["accuracy"] <= 1
        assert set(r["few_shot"]) == {"k1", "k3"}
        assert r["few_shot"]["k1"]["class_transfer"]["accuracy"] == r["class_transfer"]["accuracy"]
        assert set(r["copy_through"]) >= {"true_render", "reconstruction"}
        assert r["dci"]["blocks"] == ["class", "content"] and len(r["dci"]["factors"]) == 6
        for metric in (r["swap"], r["reassembly"], r["dci"], r["realism"], r["identity_similarity"],
                       r["code_cycle"]["class"], r["class_from_content_mlp_probe"], r["content_from_class_r2"]):
            assert any(k.endswith("ci95") and v is not None for k, v in metric.items()), metric
        assert "lpips" in r["swap"] and "fid_real_reference" in r["realism"]
    assert report["skipped"] == {}
    assert {"torch", "torchvision", "lightning", "numpy", "scikit-learn", "g2g"} <= set(report["versions"])
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["seen_classes"]["swap"]["psnr"] == report["seen_classes"]["swap"]["psnr"]
    md = (tmp_path / "eval" / "metrics.md").read_text()
    for row in ("swap PSNR vs true render", "| metric |", "DCI disentanglement", "copy-through", "3-shot",
                "code cycle", "MLP probe", "FID", "identity similarity", "Versions: ", f"Model: {path} (arch g2g)"):
        assert row in md, row
    assert saved["generator"] == tiny_config.to_dict()


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


def test_eval_cli(tiny_config, tmp_path, capsys, monkeypatch):
    path = _export(tiny_config, tmp_path)
    weights = tmp_path / "resnet50_ft_weight.pth"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "g2g.networks.identity", None)  # the identity module is not installed
    code = main(["eval", str(path), "--data", "digits", "--out", str(tmp_path / "e"), "--pairs", "100",
                 "--classifier-steps", "400", "--k-shots", "1", "2", "--identity", str(weights)])
    assert code == 0
    out = capsys.readouterr().out
    assert "class transfer accuracy" in out and "2-shot" in out and (tmp_path / "e" / "metrics.md").exists()
    assert "not measured: identity similarity: g2g.networks.identity is not part of this installation" in out


def test_one_given_classifier_judges_several_evaluations(tiny_config, tmp_path):
    """networks={"classifier": ...} replaces the classifier's training (the same judge for many models);
    a None entry leaves an external judge out, with a line in `skipped`."""
    from g2g.evaluation.report import independent_classifier
    path = _export(tiny_config, tmp_path)
    judge = independent_classifier("digits", 16, seed=0, classifier_steps=200)
    kwargs = dict(data="digits", n_pairs=100, n_probe=200, mlp_probes=False, k_shots=(1,))
    given = run_eval(path, out_dir=tmp_path / "given", networks={"classifier": judge, "lpips": None}, **kwargs)
    trained = run_eval(path, out_dir=tmp_path / "trained", classifier_steps=200, **kwargs)
    assert given["settings"]["classifier_steps"] == "given" and trained["settings"]["classifier_steps"] == 200
    assert "class_transfer" in given["test"] and given["classifier_accuracy_real_test"] > 0.1
    assert given["skipped"]["lpips"] == "lpips: left out by the caller"
    assert "lpips" not in given["test"]["short_reconstruction"]
