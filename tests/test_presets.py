"""The original report's approaches as presets: each trains a few steps through `g2g train --preset` on
tiny fabricated data in its dataset's on-disk format (CelebA, FUNIT Animal Faces), with random weights
in the published file layouts for the frozen networks (VGGFace2, VGG16 in the torch hub cache) and for
FUNIT; then the module's wiring of each preset's terms, and the defects of the original implementation that it avoids."""
import csv
import dataclasses
import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from g2g import inference, losses
from g2g.cli import main
from g2g.configs import load_preset
from g2g.module import G2GModule
from helpers import grouped
from g2g.networks.funit_checkpoint import to_funit_state_dict
from g2g.networks.generator import Generator, generator_config
from g2g.networks.perceptual import LAYERS
from test_funit import SMALL, nvidia_layout, random_state
from test_identity import _official_state_dict
from test_perceptual import CONVS

pytestmark = [pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode"),  # frozen nets, by design
              pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")]  # sys.argv is pytest's

# 32 px versions of each preset's generator (CLI overrides), small enough for a step in well under a second
SHRINK = {
    "naive": dict(nf=8, n_downs_content=3, n_downs_class=3, content_channels=16, class_dim=16, n_res_decoder=2,
                  mlp_dim=16, max_channels=32),
    "cyclefunit": dict(nf=4, n_downs_content=2, class_dim=8, mlp_dim=16),
    "cyclefunit-id": dict(nf=4, n_downs_content=2, mlp_dim=16),
    "cyclefunit-idloss": dict(nf=4, n_downs_content=2, class_dim=8, mlp_dim=16),
    # NVIDIA's layout at test_funit.SMALL: nf 4, latent 8, nf_mlp 16, 2 content / 3 class downsamplings
    "funit2funit": dict(nf=4, n_downs_content=2, n_downs_class=3, class_dim=8, mlp_dim=16),
}
CRITIC = {"ndf": 8, "d_res_blocks": 4}


# --- files in their published formats -----------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights: VGGFace2 resnet50_ft (official names, without the optional classifier), VGG16 in a
    torch hub cache (torchvision's file name and `features.*` keys), a FUNIT checkpoint (NVIDIA's layout)."""
    root = tmp_path_factory.mktemp("weights")
    official = {k: v for k, v in _official_state_dict().items() if not k.startswith("classifier.")}
    torch.save(official, root / "resnet50_ft_dag.pth")
    g = torch.Generator().manual_seed(0)
    vgg = {}
    for i, c_in, c_out in CONVS:
        vgg[f"features.{i}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * (2.0 / (9 * c_in)) ** 0.5
        vgg[f"features.{i}.bias"] = 0.1 * torch.randn(c_out, generator=g)
    (root / "torch_home" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(vgg, root / "torch_home" / "hub" / "checkpoints" / "vgg16-397923af.pth")
    layout = nvidia_layout(**SMALL)
    funit = {"gen": random_state(layout, 1), "gen_test": random_state(layout, 2)}
    torch.save(funit, root / "animal_small_gen.pt", _use_new_zipfile_serialization=False)
    return {"vggface2": root / "resnet50_ft_dag.pth", "torch_home": root / "torch_home",
            "funit": root / "animal_small_gen.pt", "funit_states": funit, "official": official}


@pytest.fixture(autouse=True)
def torch_home(weights, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(weights["torch_home"]))


def _noise_image(path, size, seed, fmt=None):
    rng = np.random.default_rng(seed)
    pixels = (rng.integers(0, 256, (1, 1, 3)) * 0.7 + rng.integers(0, 80, (*size[::-1], 3))).astype(np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    """CelebA aligned: 178×218 JPEGs in img_align_celeba/, the partition file (10 train, 3 val, 3 test,
    not in CelebA's proportions) and the identity file (4 identities in train)."""
    root = tmp_path_factory.mktemp("CelebA")
    (root / "img_align_celeba").mkdir()
    names = [f"{i:06d}.jpg" for i in range(1, 17)]
    for i, name in enumerate(names):
        _noise_image(root / "img_align_celeba" / name, (178, 218), i)
    partition = [0] * 10 + [1] * 3 + [2] * 3
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    (root / "identity_CelebA.txt").write_text("".join(f"{n} {100 + i % 4}\n" for i, n in enumerate(names)))
    return root


@pytest.fixture(scope="module")
def animals(tmp_path_factory):
    """FUNIT's datasets/ folder: the two list files and the crops extracted to animals/<synset>/<entry>."""
    root = tmp_path_factory.mktemp("datasets")
    lists = {"train": ["n02085620", "n02086240"], "test": ["n02138441", "n02441942"]}
    for split, synsets in lists.items():
        entries = [f"{s}/{s}_{100 + k}.JPEG_0_0_60_50.jpg" for s in synsets for k in range(3)]
        for i, entry in enumerate(entries):
            (root / "animals" / entry).parent.mkdir(parents=True, exist_ok=True)
            _noise_image(root / "animals" / entry, (60, 50), 50 * len(split) + i, fmt="JPEG")
        (root / f"animals_list_{split}.txt").write_text("\n".join(entries) + "\n")
    return root


def _overrides(name: str) -> list[str]:
    return [f"--model.generator.{k}={v}" for k, v in SHRINK[name].items()]


def _train(name: str, out, *extra: str, steps: int = 2) -> None:
    """`g2g train --preset NAME` shrunk to 32 px, `steps` steps of 2 pairs (1 with the 224 px identity
    network), no logger, a panel at the end."""
    pairs = 1 if "-id" in name else 2
    argv = ["train", "--preset", name, "--data.image_size=32", f"--data.batch_size={pairs}",
            "--data.num_workers=0", "--data.steps_per_epoch=2", f"--data.panel_size={pairs}",
            f"--trainer.max_steps={steps}",
            "--trainer.max_epochs=-1", f"--trainer.default_root_dir={out}", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--panels.every_n_steps=0", *_overrides(name), *extra]
    assert main(argv) == 0


def _check_run_and_swap(out, image1, image2) -> dict:
    """The run wrote a panel and an exported model; `g2g swap` works on the exported model alone."""
    assert [p.name for p in (out / "panels").iterdir()] == ["step_0000002.png"]
    assert main(["swap", str(image1), str(image2), "--model", str(out / "model.safetensors"),
                 "--out", str(out / "swap")]) == 0
    assert Image.open(out / "swap" / "m1.png").size == (32, 32)
    return json.loads((out / "model.json").read_text())


# --- every preset trains on its dataset's real format, and on shapes ------------------------------


@pytest.mark.parametrize("name", ["naive", "cyclefunit"])
def test_preset_trains_on_celeba(name, celeba, tmp_path):
    _train(name, tmp_path, f"--data.root={celeba}", "--model.critic.ndf=8")
    config = _check_run_and_swap(tmp_path, *sorted((celeba / "img_align_celeba").iterdir())[:2])
    assert config["arch"] == {"naive": "lord", "cyclefunit": "funit"}[name]
    # `g2g eval` works on the exported model, on the dataset it was trained on
    assert main(["eval", str(tmp_path / "model.safetensors"), "--data", "celeba", "--root", str(celeba),
                 "--out", str(tmp_path / "eval"), "--pairs", "8", "--classifier-steps", "200"]) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["test"]["short_reconstruction"]["psnr"] > 0


def test_cyclefunit_id_exports_the_identity_encoder_with_the_model(celeba, weights, tmp_path):
    _train("cyclefunit-id", tmp_path, f"--data.root={celeba}", "--model.critic.ndf=8",
           f"--model.frozen.identity_weights={weights['vggface2']}")
    config = _check_run_and_swap(tmp_path, *sorted((celeba / "img_align_celeba").iterdir())[:2])
    assert config["class_encoder"] == "vggface2" and config["class_dim"] == 2048
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:  # frozen weights, as published
        assert torch.equal(f.get_tensor("class_encoder.conv3_2_3x3.weight"), weights["official"]["conv3_2_3x3.weight"])
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("class_encoder." in k for k in ckpt["state_dict"])  # ... but not in training checkpoints


def test_cyclefunit_idloss_warms_its_weight_up_linearly(celeba, weights, tmp_path):
    _train("cyclefunit-idloss", tmp_path, f"--data.root={celeba}", "--model.critic.ndf=8",
           f"--model.frozen.identity_weights={weights['vggface2']}", "--model.schedule.identity_warmup_steps=2",
           "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
           "--trainer.log_every_n_steps=1")
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/identity_weight")]
    assert [float(r["train/identity_weight"]) for r in rows] == [0.0, 0.5]  # 0 → 1 over 2 steps
    assert rows[0]["train/identity"] == "" and float(rows[1]["train/identity"]) > 0  # not computed at weight 0
    assert {"train/short", "train/long", "train/content_cycle", "train/class_cycle", "train/adv",
            "train/d_adv"} <= set(rows[0])
    run = next(p for p in tmp_path.rglob("version_0") if p.is_dir())
    _check_run_and_swap(run, *sorted((celeba / "img_align_celeba").iterdir())[:2])


def test_funit2funit_starts_from_a_funit_checkpoint_on_animal_faces(animals, weights, tmp_path):
    _train("funit2funit", tmp_path, f"--data.root={animals}", "--model.critic.ndf=8", "--model.critic.d_res_blocks=4",
           f"--model.init_from={weights['funit']}")
    image = sorted((animals / "animals").rglob("*.jpg"))
    config = _check_run_and_swap(tmp_path, image[0], image[-1])
    assert config["arch"] == "funit"


@pytest.fixture
def few_shapes(monkeypatch):
    """Built-in shapes with 64 images per split instead of 20,000 (rendering them would dominate a run)."""
    from g2g.data import shapes
    monkeypatch.setattr(shapes.ShapesDataset, "__init__", functools.partialmethod(shapes.ShapesDataset.__init__, n=64))


@pytest.mark.parametrize("name", list(SHRINK))
def test_preset_runs_on_shapes_with_an_override(name, weights, tmp_path, few_shapes):
    frozen = [f"--model.frozen.identity_weights={weights['vggface2']}"] if "-id" in name else []
    _train(name, tmp_path, "--data.dataset=shapes", "--model.critic.ndf=8", "--model.critic.d_res_blocks=4", *frozen, steps=1)
    assert (tmp_path / "model.safetensors").is_file()


def test_celeba_presets_need_a_root(capsys):
    assert main(["train", "--preset", "naive", "--trainer.max_steps=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("g2g: error: ") and "--data.root" in err and err.count("\n") == 1


# --- the module's wiring of each preset ----------------------------------------------------------


def _preset_module(name: str, weights, **overrides) -> G2GModule:
    """G2GModule with a preset's model options as its YAML file gives them, the generator shrunk to 32 px."""
    model = grouped(**load_preset(name)["model"], num_classes=3)
    model["generator"].update(SHRINK[name], image_size=32)
    model["critic"] = {**model.get("critic", {}), **CRITIC}
    if "-id" in name:
        model["frozen"] = {**model.get("frozen", {}), "identity_weights": str(weights["vggface2"])}
    for key, value in grouped(**overrides).items():
        model[key] = {**model.get(key, {}), **value} if isinstance(value, dict) and key != "generator" else value
    return G2GModule(**model)


def _batch(b: int = 2, seed: int = 0) -> dict:
    """Unsupervised pairs as the original implementation drew them: class codes from the images themselves (K = 1)."""
    x = torch.rand(2 * b, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    x1, x2 = x.split(b)
    return {"x1": x1, "x2": x2, "ref1": x1[:, None], "ref2": x2[:, None],
            "y1": torch.arange(b), "y2": torch.arange(b) + 1}


def _pair_l1(a, b) -> torch.Tensor:
    """Sum over the two halves (x1 side, x2 side) of the mean absolute difference."""
    return sum(losses.l1(p, q) for p, q in zip(a.chunk(2), b.chunk(2)))


def test_naive_objective_is_long_reconstruction_plus_both_code_cycles(weights):
    torch.manual_seed(0)
    m, batch = _preset_module("naive", weights), _batch()
    res = m.forward_pass(batch)
    assert res.a1.shape == (2, 16) and res.b1.shape == (2, 16)  # vector codes (arch lord)
    assert res.x1_hat is None  # L_all has no short reconstruction: it is not drawn
    terms = m.generator_terms(batch, res)
    assert set(terms) == {"long", "content_cycle", "class_cycle"}  # L_r + γ·(L_cyc,A + L_cyc,B)
    x, r = torch.cat([batch["x1"], batch["x2"]]), torch.cat([res.r1, res.r2])
    torch.testing.assert_close(terms["long"], _pair_l1(r, x))
    torch.testing.assert_close(terms["content_cycle"],
                               0.4 * (losses.mse(res.a_m1, res.a1) + losses.mse(res.a_m2, res.a2)))
    torch.testing.assert_close(terms["class_cycle"],
                               0.4 * (losses.mse(res.b_m1, res.b2) + losses.mse(res.b_m2, res.b1)))
    assert m.discriminator is None and len(m.configure_optimizers()) == 1
    # batch-norm statistics of the encoders reach the EMA generator (parameters are averaged, buffers copied)
    m.generator.content_encoder.net[1].running_mean.add_(1.0)
    m.update_ema()
    torch.testing.assert_close(m.generator_ema.content_encoder.net[1].running_mean,
                               m.generator.content_encoder.net[1].running_mean)


def test_decoders_take_the_class_code_as_an_argument():
    """Original implementation's defect: AdaIN parameters assigned as hidden module state before each
    decode. A decode depends on its arguments only, and each image of a batch on its own codes only."""
    torch.manual_seed(0)
    for arch in ("lord", "funit"):
        config = generator_config(arch=arch, image_size=32, **{k: v for k, v in SHRINK["naive" if arch == "lord"
                                                                                   else "funit2funit"].items()})
        gen = Generator(config).eval()
        with torch.no_grad():
            a, b = gen.encode_content(_batch()["x1"]), gen.encode_class(_batch(seed=1)["x1"])
            first = gen.decode(a, b)
            gen.decode(a, b.flip(0))  # another class code in between changes nothing
            assert torch.equal(gen.decode(a, b), first)
            torch.testing.assert_close(torch.cat([gen.decode(a[i:i + 1], b[i:i + 1]) for i in range(2)]), first)


def test_cyclefunit_objective_compares_vgg16_relu2_2_features(weights):
    torch.manual_seed(0)
    m, batch = _preset_module("cyclefunit", weights, lr_d=3e-4), _batch()
    res = m.forward_pass(batch)
    terms = m.generator_terms(batch, res)
    assert set(terms) == {"short", "long", "content_cycle", "class_cycle", "adv"}
    assert set(m.critic_terms(batch, res)) == {"d_adv"}
    # original implementation's defect: VGG features computed for all four stages when one is used
    assert len(m.perceptual.features) == LAYERS.index("relu2_2") + 1 == 9
    vgg, x = m.perceptual, torch.cat([batch["x1"], batch["x2"]])
    torch.testing.assert_close(terms["short"], _pair_l1(vgg(torch.cat([res.x1_hat, res.x2_hat])), vgg(x)))
    torch.testing.assert_close(terms["long"], _pair_l1(vgg(torch.cat([res.r1, res.r2])), vgg(x)))
    # original implementation's defect: one global learning rate; here each optimizer has its own
    opt_g, opt_d = m.configure_optimizers()
    assert (opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]) == (2e-4, 3e-4)
    assert opt_g.param_groups[0]["betas"] == (0.9, 0.999)
    frozen = {id(p) for p in m.perceptual.parameters()}
    assert not frozen & {id(p) for opt in (opt_g, opt_d) for g in opt.param_groups for p in g["params"]}


def test_identity_warmup_is_linear():
    assert [losses.linear_warmup(s, 0, 4) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert [losses.linear_warmup(s, 2, 2) for s in range(6)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert [losses.linear_warmup(s, 3, 0) for s in range(5)] == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_identity_loss_with_a_learned_or_an_identity_class_encoder(weights):
    """‖E_ID(x2) − E_ID(m1)‖₁ + ‖E_ID(x1) − E_ID(m2)‖₁ by definition; with E_ID as the class encoder the
    same number comes from the class codes of the pass, without running E_ID again."""
    batch = _batch(b=1)
    for name in ("cyclefunit-idloss", "cyclefunit-id"):
        torch.manual_seed(0)
        m = _preset_module(name, weights, lambda_identity=2.0)
        if name == "cyclefunit-idloss":  # the preset's warm-up: weight 0 at step 0, nothing computed
            assert m.identity_weight() == 0.0 and "identity" not in m.generator_terms(batch, m.forward_pass(batch))
            m.schedule = dataclasses.replace(m.schedule, identity_warmup_steps=0)
        res = m.forward_pass(batch)
        with torch.no_grad():
            e = m.identity
            expected = 2.0 * (losses.l1(e(res.m1), e(batch["x2"])) + losses.l1(e(res.m2), e(batch["x1"])))
            torch.testing.assert_close(m.generator_terms(batch, res)["identity"], expected, rtol=1e-4, atol=1e-5)


def test_funit2funit_objective_scores_each_image_as_the_class_it_should_show(weights):
    torch.manual_seed(0)
    m, batch = _preset_module("funit2funit", weights, init_from=str(weights["funit"])), _batch()
    # init_from: NVIDIA's `gen` into the generator, `gen_test` into its EMA copy
    for net, which in ((m.generator, "gen"), (m.generator_ema, "gen_test")):
        theirs = weights["funit_states"][which]
        assert all(torch.equal(v, theirs[k]) for k, v in to_funit_state_dict(net).items())
    opt_g, opt_d = m.configure_optimizers()
    assert isinstance(opt_g, torch.optim.RMSprop) and opt_d.param_groups[0]["weight_decay"] == 1e-4
    calls = []
    forward = m.discriminator.forward
    m.discriminator.forward = lambda x, y: (calls.append(y.tolist()), forward(x, y))[1]
    res = m.forward_pass(batch)
    d_terms = m.critic_terms(batch, res)
    assert set(d_terms) == {"d_adv", "d_r1"} and calls == [[0, 1, 1, 2], [1, 2, 0, 1]]  # real x1, x2; m1, m2
    calls.clear()
    terms = m.generator_terms(batch, res)
    assert set(terms) == {"short", "long", "adv", "adv_short", "fm_mixed", "fm_short", "fm_long", "fm_mixed_long"}
    assert calls == [[1, 2, 0, 1, 0, 1, 1, 2, 0, 1, 1, 2], [0, 1, 1, 2]]  # m1, m2, x̂1, x̂2, r1, r2; then x1, x2
    with torch.no_grad():
        _, f = forward(torch.cat([res.m1, res.m2, batch["x2"], batch["x1"]]), torch.zeros(8, dtype=torch.long))
        f = f.mean(dim=(2, 3))
        torch.testing.assert_close(terms["fm_mixed"], _pair_l1(f[:4], f[4:]))  # m1 vs x2, m2 vs x1
    torch.testing.assert_close(terms["short"], 0.1 * _pair_l1(torch.cat([res.x1_hat, res.x2_hat]),
                                                               torch.cat([batch["x1"], batch["x2"]])))


def test_celeba_presets_pair_at_random_from_the_official_partition(celeba):
    """Original implementation's defects: hard-coded dataset indices (the split comes from
    list_eval_partition.txt), and its unsupervised halves: random pairs whose class codes come from the
    images themselves."""
    from g2g.data.datamodule import G2GDataModule
    data = load_preset("naive")["data"]
    dm = G2GDataModule(**{**data, "root": str(celeba), "image_size": 32, "batch_size": 3, "num_workers": 0})
    dm.setup()
    assert len(dm.train_set.base) == 10 and not dm.train_set.supervised
    batch = dm.train_set.__getitems__([0, 1, 2])
    assert torch.equal(batch["ref1"][:, 0], batch["x1"]) and not torch.equal(batch["x1"], batch["x2"])
    assert dm.panel_batch()["x1"].shape == (8, 3, 32, 32)  # from the 3 validation images


def test_frozen_networks_stay_in_eval_mode_out_of_optimizers_and_checkpoints(weights, tmp_path):
    """Original implementation's defect: the frozen identity network switched to training mode by the
    framework (its batch norm then ran on batch statistics). Identity class encoder, identity loss and VGG
    loss at once."""
    import lightning as L

    from g2g.data.datamodule import G2GDataModule
    from g2g.training import SafeCheckpointIO, export_checkpoint, load_checkpoint

    class RecordModes(L.Callback):
        def on_train_batch_start(self, trainer, module, *args):
            modes.append((module.identity.training, module.perceptual.training, module.generator.training))

        on_train_batch_end = on_train_batch_start

    modes = []
    torch.manual_seed(0)
    module = _preset_module("cyclefunit-id", weights, lambda_identity=1.0)
    data = G2GDataModule(dataset="shapes", image_size=32, batch_size=1, steps_per_epoch=2, panel_size=1,
                         supervised=False)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", use_distributed_sampler=False,
                        limit_val_batches=0, default_root_dir=str(tmp_path), plugins=[SafeCheckpointIO()],
                        callbacks=[RecordModes()])
    trainer.fit(module, data)
    assert modes == [(False, False, True)] * 4
    official = weights["official"]
    assert all(torch.equal(v, official[k]) for k, v in module.identity.state_dict().items()
               if k in official)  # batch-norm running statistics untouched
    assert module.generator.class_encoder is module.identity is module.generator_ema.class_encoder  # shared
    trained = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
    frozen = {id(p) for m in (module.identity, module.perceptual) for p in m.parameters()}
    assert not trained & frozen
    assert {id(p) for p in module.generator.parameters() if p.requires_grad} <= trained
    # training checkpoints leave the frozen networks out; loading puts the user's weights back in
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    assert not [k for k in ckpt["state_dict"] if k.startswith(("identity.", "perceptual.")) or ".class_encoder." in k]
    fresh = _preset_module("cyclefunit-id", weights, lambda_identity=1.0)
    fresh.on_load_checkpoint(ckpt)
    fresh.load_state_dict(ckpt["state_dict"])  # strict
    trained_state = module.state_dict()
    assert all(torch.equal(v, trained_state[k]) for k, v in fresh.state_dict().items())
    # `g2g export` reads the identity weights again from the run's file, and the exported model holds them
    path = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "model.safetensors")
    gen = inference.load(path).generator
    assert torch.equal(gen.class_encoder.conv5_3_1x1_increase.weight, official["conv5_3_1x1_increase.weight"])
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    ckpt["hyper_parameters"]["frozen"]["identity_weights"] = str(tmp_path / "moved.pth")
    torch.save(ckpt, tmp_path / "moved.ckpt")
    with pytest.raises(FileNotFoundError, match="identity_weights file, .*moved.pth, which is not there"):
        export_checkpoint(tmp_path / "moved.ckpt", tmp_path / "other.safetensors")
