"""The general recipe's pieces: the normalised content code, the distorted content view, and the preset."""
from __future__ import annotations

import pytest
import torch

from g2g.configs import load_preset
from g2g.hparams import LossWeights
from g2g.networks.encoders import ContentEncoder
from g2g.networks.generator import Generator, config_from_dict, generator_config
from g2g.wiring import augmented, g2g_forward

from helpers import TINY


def test_normalised_content_code_has_zero_mean_and_unit_variance_per_channel():
    torch.manual_seed(0)
    enc = ContentEncoder(3, 8, 2, 1, 2, normalize_code=True)
    code = enc(torch.rand(4, 3, 32, 32) * 2 - 1)                            # (4, 2, 8, 8)
    assert code.shape == (4, 2, 8, 8)
    torch.testing.assert_close(code.mean(dim=(2, 3)), torch.zeros(4, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(code.var(dim=(2, 3), unbiased=False), torch.ones(4, 2), atol=1e-3, rtol=0)
    plain = ContentEncoder(3, 8, 2, 1, 2)
    plain.load_state_dict(enc.state_dict())
    assert not torch.allclose(plain(torch.ones(1, 3, 32, 32)).mean(), torch.zeros(()), atol=1e-3)


def test_content_norm_travels_with_the_arch_config():
    config = generator_config(**{**TINY, "content_norm": True})
    assert Generator(config).content_encoder.normalize_code
    assert not Generator(generator_config(**TINY)).content_encoder.normalize_code


def test_quantised_content_code_takes_only_its_levels_and_passes_gradients():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    for levels, values in ((2, {-1.0, 1.0}), (3, {-1.0, 0.0, 1.0})):
        enc = Generator(generator_config(**{**TINY, "content_norm": True, "n_content_levels": levels})).content_encoder
        code = enc(x * 2 - 1)
        assert set(code.unique().tolist()) == values                         # every level used, no other value
        x.grad = None
        (code * torch.randn_like(code)).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0                 # straight through the rounding
    config = generator_config(**{**TINY, "n_content_levels": 3})
    assert Generator(config_from_dict(config.to_dict())).content_encoder.levels == 3   # travels with the weights
    continuous = Generator(generator_config(**{**TINY, "content_norm": True})).content_encoder(x)
    assert continuous.unique().numel() > 5
    with pytest.raises(ValueError, match="n_content_levels must be 0"):
        generator_config(**{**TINY, "n_content_levels": 1})


def test_distorted_view_is_seeded_bounded_and_off_at_zero():
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    assert augmented(x, 0.0, torch.Generator().manual_seed(0)) is x
    a = augmented(x, 1.0, torch.Generator().manual_seed(1))
    b = augmented(x, 1.0, torch.Generator().manual_seed(1))
    c = augmented(x, 1.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= x.min() - 1e-6 and a.max() <= x.max() + 1e-6
    assert (a - x).abs().mean() > 0.01                                       # it does distort


def test_distortion_reaches_the_content_code_only():
    torch.manual_seed(0)
    gen = Generator(generator_config(**{**TINY, "content_norm": True}))
    x1, x2 = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    refs = torch.rand(2, 3, 2, 3, 16, 16) * 2 - 1
    plain = g2g_forward(gen, x1, x2, refs[0], refs[1], long=False)
    seeded = g2g_forward(gen, x1, x2, refs[0], refs[1], long=False, content_augment=1.0,
                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seeded.b1, plain.b1)                          # class codes: undistorted
    assert not torch.allclose(seeded.a1, plain.a1)


def test_general_preset_is_the_g2g_arch_with_the_bottleneck_and_the_cycle():
    config = load_preset("general")
    gen, loss = config["model"]["generator"], config["model"]["loss"]
    assert gen["arch"] == "g2g" and gen["content_norm"] is True
    weights = LossWeights(**loss)
    assert weights.lambda_long > 0 and weights.content_augment > 0
    assert gen["n_content_levels"] >= 2 or weights.content_noise > 0   # a bottleneck: rounding or noise
    assert "sprite" not in str(config)


# --- the class-centred content code ---------------------------------------------------------------------

def _centred(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(generator_config(**{**TINY, "content_norm": True, "content_centre": True}))


def test_centred_code_is_the_code_minus_the_mean_code_of_the_class_references():
    gen = _centred().eval()
    x, refs = torch.rand(3, 3, 16, 16) * 2 - 1, torch.rand(3, 4, 3, 16, 16) * 2 - 1
    raw = gen.content_encoder(x)
    centre = gen.content_encoder(refs.flatten(0, 1)).unflatten(0, (3, 4)).mean(1)
    torch.testing.assert_close(gen.content_centre(refs), centre)
    torch.testing.assert_close(gen.encode_content(x, centre=centre), raw - centre)
    torch.testing.assert_close(gen.encode_content(x), raw - gen.content_mean)   # alone: the running mean
    assert not Generator(generator_config(**TINY)).centred


def test_running_mean_centre_moves_in_training_only():
    gen = _centred()
    refs = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    gen.eval().content_centre(refs)
    assert torch.count_nonzero(gen.content_mean) == 0
    centre = gen.train().content_centre(refs)
    torch.testing.assert_close(gen.content_mean, 0.01 * centre.mean(0))


def test_g2g_pass_centres_each_code_on_its_class_and_the_mixed_ones_on_the_class_they_show():
    gen = _centred().eval()
    x1, x2 = torch.rand(2, 2, 3, 16, 16) * 2 - 1
    r1, r2 = torch.rand(2, 2, 3, 3, 16, 16) * 2 - 1
    res = g2g_forward(gen, x1, x2, r1, r2)
    c1, c2 = gen.content_centre(r1), gen.content_centre(r2)
    torch.testing.assert_close(res.a1, gen.content_encoder(x1) - c1)
    torch.testing.assert_close(res.a2, gen.content_encoder(x2) - c2)
    torch.testing.assert_close(res.a_m1, gen.content_encoder(res.m1) - c2)   # m1 shows x2's class
    # centre images apart from the class references: the class codes come from the images themselves
    own = g2g_forward(gen, x1, x2, centre_in1=r1, centre_in2=r2, long=False)
    torch.testing.assert_close(own.a1, res.a1)
    torch.testing.assert_close(own.b1, gen.encode_class(x1))


def test_inference_encode_centres_on_given_references_and_exports_the_running_mean(tmp_path):
    from g2g.inference import G2GModel, export_generator, load

    gen = _centred().train()
    gen.content_centre(torch.rand(4, 2, 3, 16, 16) * 2 - 1)                 # a training batch moves the mean
    model = load(export_generator(gen.eval(), tmp_path / "centred.safetensors"))
    assert model.generator.centred
    torch.testing.assert_close(model.generator.content_mean, gen.content_mean)
    x, refs = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 3, 16, 16) * 2 - 1
    with_refs, alone = model.encode(x, refs)[0], model.encode(x)[0]
    torch.testing.assert_close(with_refs, gen.content_encoder(x) - gen.content_centre(refs))
    torch.testing.assert_close(alone, gen.content_encoder(x) - gen.content_mean)
    plain = G2GModel(Generator(generator_config(**TINY)))
    torch.testing.assert_close(plain.encode(x, refs)[0], plain.encode(x)[0])  # refs only matter when centred


def test_training_refuses_unsupervised_pairs_where_it_needs_other_images_of_the_class(tmp_path):
    import pytest
    with pytest.raises(ValueError, match="content_centre .* data.supervised: true"):
        _fit_unsupervised(tmp_path, {"content_centre": True})
    with pytest.raises(ValueError, match="lambda_content_contrast .* data.supervised: true"):
        _fit_unsupervised(tmp_path, {}, lambda_content_contrast=1.0)


def _fit_unsupervised(root, arch: dict, **options):
    import lightning as L

    from g2g.data.datamodule import G2GDataModule
    from helpers import MODULE_KWARGS, make_module
    module = make_module(generator=generator_config(**{**TINY, **arch}), **{**MODULE_KWARGS, **options})
    data = G2GDataModule(dataset="shapes", image_size=16, batch_size=4, steps_per_epoch=2, panel_size=2,
                         supervised=False)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0,
                        num_sanity_val_steps=0, default_root_dir=str(root))
    trainer.fit(module, data)


def test_centred_training_runs_and_moves_the_running_mean(tmp_path):
    from helpers import fit_tiny
    module, _ = fit_tiny(tmp_path, 3, generator=generator_config(**{**TINY, "content_centre": True}))
    assert module.generator.centred and torch.count_nonzero(module.generator.content_mean) > 0
    torch.testing.assert_close(module.generator_ema.content_mean, module.generator.content_mean)


class _ClassValued(torch.utils.data.Dataset):
    """Images whose value tells their class (−0.8 + 0.4·label, plus a tiny per-image offset)."""

    def __init__(self, n: int = 60, classes: int = 5):
        self.labels = torch.arange(n) % classes
        self.num_classes = classes
        value = -0.8 + 0.4 * self.labels.float() + 1e-4 * torch.arange(n)
        self.images = value.view(n, 1, 1, 1).expand(n, 3, 16, 16).clone()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def _class_of(x: torch.Tensor) -> torch.Tensor:
    return ((x.flatten(-3).mean(-1) + 0.8) / 0.4).round().long()


def test_eval_centres_a_centred_model_on_other_images_of_each_image_class(monkeypatch):
    from g2g.evaluation import split
    from g2g.inference import G2GModel

    model, seen = G2GModel(_centred()), {"pairs": 0, "sample": 0}
    forward, encode = split.g2g_forward, model.encode

    def spy_forward(gen, x1, x2, *args, centre_in1=None, centre_in2=None, **kwargs):
        assert (_class_of(centre_in1) == _class_of(x1)[:, None]).all()
        assert (_class_of(centre_in2) == _class_of(x2)[:, None]).all()
        seen["pairs"] += len(x1)
        return forward(gen, x1, x2, *args, centre_in1=centre_in1, centre_in2=centre_in2, **kwargs)

    def spy_encode(x, refs=None):
        assert refs is not None and (_class_of(refs) == _class_of(x)[:, None]).all()
        seen["sample"] += len(x)
        return encode(x, refs)

    monkeypatch.setattr(split, "g2g_forward", spy_forward)
    monkeypatch.setattr(model, "encode", spy_encode)
    s = split.EvalSettings(n_pairs=20, n_probe=30, k_shots=(1, 3), mlp_probes=False, dci_repeats=1, workers=0)
    report = split.evaluate_split(model, _ClassValued(), split.Judges(), s)
    assert seen == {"pairs": 20, "sample": 30} and report["n_pairs"] == 20


def test_fonts_eval_centres_x1_on_other_glyphs_of_its_font():
    from g2g.evaluation.fonts import _model_swaps
    from g2g.inference import G2GModel

    model = G2GModel(_centred())
    x1, refs, own = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 4, 3, 16, 16), torch.rand(2, 4, 3, 16, 16)
    centred = _model_swaps(model, x1, refs, (4,), own)["model 4-shot"]
    code = model.generator.content_encoder(x1) - model.generator.content_centre(own)
    torch.testing.assert_close(centred, model.decode(code, model.encode_class(refs)))
    alone = _model_swaps(model, x1, refs, (4,))["model 4-shot"]                # no glyphs: the running mean
    assert not torch.allclose(centred, alone)
