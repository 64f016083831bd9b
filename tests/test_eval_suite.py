"""The eval suite's G2G-specific parts on constructed cases with known answers: copy-through (metric,
report and training callback), block DCI, K-shot references, offline handling of external networks."""
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from g2g.callbacks import CopyThroughAlarm
from g2g.data.shapes import FACTOR_NAMES, ShapesDataset, render
from g2g.evaluation import external as X
from g2g.evaluation.metrics import copy_through
from g2g.evaluation.pairs import make_pairs, same_class_others
from g2g.evaluation.report import EvalSettings, Judges, evaluate_split
from g2g.evaluation.sections import dci_blocks
from g2g.inference import G2GModel


class CopyGenerator(nn.Module):
    """An identity "model": the content code is the image and the decoder ignores the class code, so
    every mixed image is its content source (m1 = x1) — the failure of the original implementation."""

    config = None

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device

    def encode_content(self, x, class_code=None):  # Generator's signature: class_code for a sprite pose fit
        return x

    def encode_class(self, x):  # (B, 3, H, W) → mean colour (B, 3); (B, K, 3, H, W) → mean over K
        return x.mean(dim=(-2, -1)).mean(1) if x.dim() == 5 else x.mean(dim=(2, 3))

    def decode(self, content, class_code):
        return content


class ColourGenerator(CopyGenerator):
    """Class = mean colour, content = the image minus its mean colour: reconstructs exactly, and a
    class swap recolours the image, so nothing copies through by the reconstruction criterion."""

    def encode_content(self, x, class_code=None):
        return x - x.mean(dim=(2, 3), keepdim=True)

    def decode(self, content, class_code):
        return content + class_code[:, :, None, None]


@pytest.fixture(scope="module")
def shapes():
    return ShapesDataset("test", size=16, n=400, seed=0)


def _pairs(ds, n=64):
    i, j = make_pairs(ds.labels, n, seed=0)
    return i, j, ds.images[i], ds.images[j], render(ds.labels[j], ds.factors[i], 16)


def test_copy_through_is_one_for_the_identity_model_and_zero_for_the_oracle(shapes):
    i, j, x1, x2, truth = _pairs(shapes)
    assert copy_through(x1, x1, target=truth).all()             # m1 = x1
    assert not copy_through(truth, x1, target=truth).any()      # m1 = the true render
    assert copy_through(x1, x1, reconstruction=x1).all()        # m1 = x̂1 = x1
    assert not copy_through(truth, x1, reconstruction=x1).any()  # recoloured and redrawn, perfect x̂1
    with pytest.raises(ValueError, match="exactly one"):
        copy_through(x1, x1)


def _split_report(generator, ds, **settings):
    s = EvalSettings(**{"n_pairs": 100, "n_probe": 300, "mlp_probes": False, "dci_repeats": 1,
                        "k_shots": (1, 3), **settings})
    return evaluate_split(G2GModel(generator), ds, Judges(), s)


def test_report_flags_the_copy_model_and_not_the_recolouring_model(shapes):
    copy = _split_report(CopyGenerator(), shapes)
    assert copy["copy_through"]["reconstruction"]["rate"] == 1.0
    assert copy["few_shot"]["k3"]["copy_through"]["reconstruction"]["rate"] == 1.0
    assert copy["code_cycle"]["content"]["agreement"] == pytest.approx(1.0, abs=1e-5)  # a(m1) = a1
    colour = _split_report(ColourGenerator(), shapes)
    assert colour["copy_through"]["reconstruction"]["rate"] == 0.0
    assert colour["short_reconstruction"]["psnr"] > 90  # exact up to float error
    assert colour["code_cycle"]["class"]["agreement"] == pytest.approx(1.0, abs=1e-4)   # b(m1) = b2
    assert colour["code_cycle"]["class"]["unrelated_level"] < 0.5


def test_same_class_others_are_distinct_other_members_of_the_class():
    labels = torch.tensor([0, 1, 0, 2, 0, 1, 0, 0])  # class 2 has a single image
    idx = torch.tensor([0, 2, 1, 3, 7])
    out = same_class_others(labels, idx, 3, seed=0)
    assert out.shape == (5, 3)
    assert bool((labels[out] == labels[idx][:, None]).all())
    for row, own in zip(out.tolist(), idx.tolist()):
        if labels[own] == 0:  # five images: three distinct others
            assert own not in row and len(set(row)) == 3
    assert out[2].tolist() == [5, 5, 5]  # one other image of class 1: repeated
    assert out[3].tolist() == [3, 3, 3]  # alone in its class: stands for itself


def test_block_dci_of_a_perfectly_disentangled_code_is_about_one():
    ds = ShapesDataset("test", size=16, n=600, seed=1)
    class_code = torch.eye(30)[ds.labels]                   # the class exactly, nothing else
    content = ds.factors[:, :, None, None]                  # (N, 5, 1, 1): each content factor exactly
    d = dci_blocks(content, class_code, ds.labels, ds.factors, FACTOR_NAMES, repeats=2)
    assert d["disentanglement"] > 0.9 and d["completeness"] > 0.9 and d["informativeness"] > 0.85
    assert d["disentanglement_ci95"][0] <= d["disentanglement"] <= d["disentanglement_ci95"][1]
    assert d["factors"] == ["class", *FACTOR_NAMES] and np.array(d["importance"]).shape == (2, 6)
    leaky = dci_blocks(content, torch.cat([class_code, ds.factors], 1), ds.labels, ds.factors, FACTOR_NAMES,
                       repeats=1)  # the class code holds the content factors too
    assert leaky["disentanglement"] < d["disentanglement"] - 0.2


# ---- the training callback ----

def _alarm_run(generator, batch, step, every=5, threshold=0.5, patience=1, alarm=None):
    alarm = alarm or CopyThroughAlarm(every_n_steps=every, threshold=threshold, n_pairs=len(batch["x1"]),
                                      patience=patience)
    logged = []
    module = SimpleNamespace(generator_ema=generator, device=torch.device("cpu"),
                             log=lambda name, value: logged.append((name, value)))
    trainer = SimpleNamespace(global_step=step, datamodule=SimpleNamespace(panel_batch=lambda n: batch))
    alarm.on_train_batch_end(trainer, module, None, batch, 0)
    return alarm, logged


def _batch(ds, n=16):
    i, j, x1, x2, _ = _pairs(ds, n)
    return {"x1": x1, "x2": x2, "ref1": x1[:, None], "ref2": x2[:, None], "y1": ds.labels[i], "y2": ds.labels[j]}


def test_alarm_warns_for_the_copy_model_only(shapes):
    batch = _batch(shapes)
    with pytest.warns(UserWarning, match="copy-through alarm at step 10"):
        alarm, logged = _alarm_run(CopyGenerator(), batch, step=10)
    assert alarm.last_rate == 1.0 and logged == [("train/copy_through", 1.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alarm, logged = _alarm_run(ColourGenerator(), batch, step=10)
        assert alarm.last_rate == 0.0 and logged == [("train/copy_through", 0.0)]
        _, logged = _alarm_run(CopyGenerator(), batch, step=12)  # not a check step
        assert logged == []


def test_alarm_waits_for_copy_through_at_consecutive_checks(shapes):
    batch = _batch(shapes)
    alarm = CopyThroughAlarm(every_n_steps=5, n_pairs=len(batch["x1"]))         # patience 2 by default
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _alarm_run(CopyGenerator(), batch, step=5, alarm=alarm)               # an early phase of copying …
        _alarm_run(ColourGenerator(), batch, step=10, alarm=alarm)            # … that passes: no alarm
        _alarm_run(CopyGenerator(), batch, step=15, alarm=alarm)
    assert alarm.streak == 1
    with pytest.warns(UserWarning, match=r"copy-through alarm at step 20 \(since step 15\): in 100 %"):
        _alarm_run(CopyGenerator(), batch, step=20, alarm=alarm)              # copying that lasts: the alarm
    with pytest.raises(ValueError, match="patience"):
        CopyThroughAlarm(patience=0)


def test_alarm_on_a_real_module_and_datamodule(tiny_config):
    from g2g.data.datamodule import G2GDataModule
    from g2g.module import G2GModule
    data = G2GDataModule(dataset="shapes", image_size=16, batch_size=2, panel_size=2)
    data.setup()
    assert len(data.panel_batch(12)["x1"]) == 12 and len(data.panel_batch()["x1"]) == 2
    alarm = CopyThroughAlarm(every_n_steps=1, n_pairs=12)
    rate = alarm.rate(G2GModule(generator=tiny_config), SimpleNamespace(datamodule=data))
    assert 0.0 <= rate <= 1.0
    with pytest.raises(ValueError):
        CopyThroughAlarm(threshold=2.0)


def test_train_cli_exposes_the_alarm_options(capsys, monkeypatch):
    from g2g.training import run_training
    monkeypatch.setattr(sys, "argv", ["g2g"])
    with pytest.raises(SystemExit):
        run_training(["--print_config", "--copy_through.threshold", "0.3", "--copy_through.every_n_steps", "50",
                      "--copy_through.patience", "3"])
    out = capsys.readouterr().out
    assert "copy_through:" in out and "threshold: 0.3" in out and "every_n_steps: 50" in out and "patience: 3" in out


# ---- external networks: offline, never downloading ----

def test_missing_weights_and_packages_are_skipped_with_a_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(X.Unavailable, match=r"hub/checkpoints/alexnet-owt-7be5be79\.pth not found"):
        X.load_lpips("alex")
    with pytest.raises(X.Unavailable, match="torch-fidelity|weights-inception-2015-12-05"):
        X.load_inception()
    weights = tmp_path / "resnet50_ft_weight.pth"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "g2g.networks.identity", None)  # the module is not in this branch
    with pytest.raises(X.Unavailable, match="g2g.networks.identity is not part of this installation"):
        X.load_identity(weights)
    with pytest.raises(FileNotFoundError):
        X.load_identity(tmp_path / "missing.pth")


def test_lpips_runs_offline_from_weights_placed_in_torch_home(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = X.hub_file(torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1])
    target.parent.mkdir(parents=True)
    torch.save(torchvision.models.squeezenet1_1().state_dict(), target)  # random weights, the real name
    lpips = X.load_lpips("squeeze")
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    same = X.lpips_summary(lpips, x, x.clone())
    assert same["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert X.lpips_summary(lpips, x, -x)["lpips"] > 0


def test_frechet_distance_matches_the_matrix_square_root_formula():
    from scipy.linalg import sqrtm
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(60, 8, generator=g, dtype=torch.float64)
    f2 = torch.randn(50, 8, generator=g, dtype=torch.float64) * 1.5 + 0.3
    m1, m2 = f1.mean(0).numpy(), f2.mean(0).numpy()
    s1, s2 = np.cov(f1.numpy(), rowvar=False), np.cov(f2.numpy(), rowvar=False)
    expected = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert X.frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-6)


def test_realism_of_real_images_matches_its_reference():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(800, 3, 2, 2, generator=g) * 2 - 1                   # 12-d "features" (Flatten)
    same = X.realism(torch.rand(400, 3, 2, 2, generator=g) * 2 - 1, real, nn.Flatten(), n=400, chunks=2)
    shifted = X.realism(real[:400] * 0.5 + 0.4, real, nn.Flatten(), n=400, chunks=2)
    assert same["fid"] == pytest.approx(same["fid_real_reference"], rel=0.5)
    assert shifted["fid"] > 5 * shifted["fid_real_reference"] and shifted["kid"] > 5 * max(same["kid"], 1e-3)
    assert shifted["fid_ci95"][0] <= shifted["fid"] <= shifted["fid_ci95"][1]
