"""FUNIT compatibility: NVIDIA's FewShotGen checkpoints load into our generator by key mapping
and reproduce FUNIT's translation; `g2g swap` takes such a file; FUNIT's projection discriminator.

The reference below is written from FUNIT's published architecture as plain functional ops on the raw
state-dict tensors under NVIDIA's names, independent of src/g2g/networks/funit.py."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from g2g import inference, losses
from g2g.cli import main
from g2g.data.datasets import load_image
from g2g.inference import export_generator
from g2g.networks.discriminators import ProjectionDiscriminator
from g2g.networks.funit_checkpoint import (FUNIT_ANIMALS, funit_config_from_state_dict, funit_key_map,
                                           init_from_funit_checkpoint, load_funit_checkpoint,
                                           load_funit_state_dict, to_funit_state_dict)
from g2g.networks.generator import Generator, config_from_dict, generator_config
from g2g.wiring import g2g_forward

# a small FewShotGen: same structure and key names as FUNIT's, narrower and shallower
SMALL = dict(nf=4, n_res_blks=2, nf_mlp=16, latent_dim=8, n_mlp_blks=3, n_downs_content=2, n_downs_class=3)
ANIMALS = dict(nf=64, n_res_blks=2, nf_mlp=256, latent_dim=64, n_mlp_blks=3, n_downs_content=3, n_downs_class=4)


# --- NVIDIA's layout and translation, written out independently ---------------------------------


def nvidia_layout(nf, n_res_blks, nf_mlp, latent_dim, n_mlp_blks, n_downs_content, n_downs_class):
    """Key → shape of FewShotGen(hp).state_dict(), following its module nesting (Conv2dBlock.conv,
    ResBlocks.model.j.model.k, AdaptiveInstanceNorm2d running stats, LinearBlock.fc)."""
    keys = OrderedDict()

    def conv(name, cin, cout, k):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    conv("enc_class_model.model.0.conv", 3, nf, 7)
    d = nf
    for i in range(2):
        conv(f"enc_class_model.model.{1 + i}.conv", d, 2 * d, 4)
        d *= 2
    for i in range(n_downs_class - 2):
        conv(f"enc_class_model.model.{3 + i}.conv", d, d, 4)
    conv(f"enc_class_model.model.{n_downs_class + 2}", d, latent_dim, 1)  # after AdaptiveAvgPool2d
    conv("enc_content.model.0.conv", 3, nf, 7)
    d = nf
    for i in range(n_downs_content):
        conv(f"enc_content.model.{1 + i}.conv", d, 2 * d, 4)
        d *= 2
    for j in range(n_res_blks):
        for k in range(2):
            conv(f"enc_content.model.{n_downs_content + 1}.model.{j}.model.{k}.conv", d, d, 3)
    n_adain = 0
    for j in range(n_res_blks):
        for k in range(2):
            conv(f"dec.model.0.model.{j}.model.{k}.conv", d, d, 3)
            keys[f"dec.model.0.model.{j}.model.{k}.norm.running_mean"] = (d,)
            keys[f"dec.model.0.model.{j}.model.{k}.norm.running_var"] = (d,)
            n_adain += 2 * d
    for i in range(n_downs_content):  # dec.model.{2i+1} is nn.Upsample
        conv(f"dec.model.{2 * i + 2}.conv", d, d // 2, 5)
        d //= 2
    conv(f"dec.model.{2 * n_downs_content + 1}.conv", d, 3, 7)
    dims = [latent_dim] + [nf_mlp] * (n_mlp_blks - 1) + [n_adain]
    for i in range(n_mlp_blks):
        keys[f"mlp.model.{i}.fc.weight"], keys[f"mlp.model.{i}.fc.bias"] = (dims[i + 1], dims[i]), (dims[i + 1],)
    return keys


def random_state(layout, seed):
    """He-scaled random weights, small random biases, arbitrary AdaIN running statistics (unused)."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in layout.items():
        if key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def _conv(s, name, x, stride=1, pad=None):
    w = s[f"{name}.weight"]
    pad = (w.shape[-1] - 1) // 2 if pad is None else pad
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(x, w, s[f"{name}.bias"], stride)


def _inorm(x):
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) / (x.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()


def funit_content(s, x, hp):
    x = F.relu(_inorm(_conv(s, "enc_content.model.0.conv", x)))
    for i in range(hp["n_downs_content"]):
        x = F.relu(_inorm(_conv(s, f"enc_content.model.{1 + i}.conv", x, 2, 1)))
    for j in range(hp["n_res_blks"]):
        base = f"enc_content.model.{hp['n_downs_content'] + 1}.model.{j}.model"
        y = F.relu(_inorm(_conv(s, f"{base}.0.conv", x)))
        x = x + _inorm(_conv(s, f"{base}.1.conv", y))
    return x


def funit_class(s, x, hp):
    """FUNIT's class model code (N, latent, 1, 1) of each image."""
    x = F.relu(_conv(s, "enc_class_model.model.0.conv", x))
    for i in range(hp["n_downs_class"]):
        x = F.relu(_conv(s, f"enc_class_model.model.{1 + i}.conv", x, 2, 1))
    x = F.adaptive_avg_pool2d(x, 1)
    return F.conv2d(x, s[f"enc_class_model.model.{hp['n_downs_class'] + 2}.weight"],
                    s[f"enc_class_model.model.{hp['n_downs_class'] + 2}.bias"])


def funit_decode(s, content, class_code, hp):
    """mlp → assign_adain_params order → Decoder; AdaIN exactly as FUNIT's (batch_norm over B·C)."""
    p = class_code.view(class_code.shape[0], -1)
    for i in range(hp["n_mlp_blks"]):
        p = F.linear(p, s[f"mlp.model.{i}.fc.weight"], s[f"mlp.model.{i}.fc.bias"])
        if i < hp["n_mlp_blks"] - 1:
            p = F.relu(p)
    x = content
    b, c = x.shape[:2]

    def adain(x, name):
        nonlocal p
        mean, std, p = p[:, :c], p[:, c:2 * c], p[:, 2 * c:]
        out = F.batch_norm(x.reshape(1, b * c, *x.shape[2:]), s[f"{name}.running_mean"].repeat(b),
                           s[f"{name}.running_var"].repeat(b), std.reshape(-1), mean.reshape(-1), True, 0.1, 1e-5)
        return out.view(x.shape)

    for j in range(hp["n_res_blks"]):
        base = f"dec.model.0.model.{j}.model"
        y = F.relu(adain(_conv(s, f"{base}.0.conv", x), f"{base}.0.norm"))
        x = x + adain(_conv(s, f"{base}.1.conv", y), f"{base}.1.norm")
    for i in range(hp["n_downs_content"]):
        x = F.relu(_inorm(_conv(s, f"dec.model.{2 * i + 2}.conv", F.interpolate(x, scale_factor=2))))
    return torch.tanh(_conv(s, f"dec.model.{2 * hp['n_downs_content'] + 1}.conv", x))


def funit_translate(s, content_images, class_images, hp):
    """Each content image (B, 3, H, W) drawn with the mean class code of its K class images (B, K, 3, H, W)."""
    b, k = class_images.shape[:2]
    codes = funit_class(s, class_images.flatten(0, 1), hp).view(b, k, -1, 1, 1).mean(dim=1)
    return funit_decode(s, funit_content(s, content_images, hp), codes, hp)


# --- fixtures ------------------------------------------------------------------------------------


def _images(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _config(hp, image_size):
    return generator_config(arch="funit", image_size=image_size, nf=hp["nf"], n_downs_content=hp["n_downs_content"],
                           n_res_content=hp["n_res_blks"], n_downs_class=hp["n_downs_class"],
                           class_dim=hp["latent_dim"], n_res_decoder=hp["n_res_blks"], mlp_dim=hp["nf_mlp"],
                           n_mlp=hp["n_mlp_blks"])


@pytest.fixture(scope="module")
def states():
    layout = nvidia_layout(**SMALL)
    return {"gen": random_state(layout, 1), "gen_test": random_state(layout, 2)}


@pytest.fixture(scope="module")
def checkpoint(states, tmp_path_factory):
    """A small FUNIT checkpoint in NVIDIA's format (2019 files are legacy, non-zip torch.save pickles)."""
    path = tmp_path_factory.mktemp("funit") / "animal_small_gen.pt"
    torch.save(states, path, _use_new_zipfile_serialization=False)
    return path


# --- layout and key mapping ----------------------------------------------------------------------


def test_full_config_maps_one_to_one_onto_fewshotgen_keys_and_shapes():
    config = generator_config(**FUNIT_ANIMALS)
    assert _config(ANIMALS, 128) == config
    with torch.device("meta"):  # shapes only, nothing allocated or run
        ours = Generator(config).state_dict()
    theirs = nvidia_layout(**ANIMALS)
    pairs = funit_key_map(config)
    assert sorted(pairs) == sorted(ours) and sorted(pairs.values()) == sorted(theirs)
    assert len(pairs) == len(set(pairs.values())) == 58
    assert all(tuple(ours[k].shape) == theirs[pairs[k]] for k in ours)
    # spot checks against FewShotGen's names and shapes, written out by hand
    assert theirs["enc_content.model.4.model.1.model.1.conv.weight"] == (512, 512, 3, 3)
    assert theirs["enc_class_model.model.6.weight"] == (64, 256, 1, 1)
    assert theirs["dec.model.0.model.1.model.1.norm.running_var"] == (512,)
    assert theirs["dec.model.6.conv.weight"] == (64, 128, 5, 5)
    assert theirs["dec.model.7.conv.weight"] == (3, 64, 7, 7)
    assert theirs["mlp.model.2.fc.weight"] == (4 * 2 * 512, 256)  # AdaIN params of 2 blocks × 2 layers
    meta = {k: torch.empty(shape, device="meta") for k, shape in theirs.items()}
    assert funit_config_from_state_dict(meta) == config  # the architecture is read back from the file


def test_funit_config_derives_the_content_width_and_rejects_other_forms():
    c = generator_config(**{**FUNIT_ANIMALS, "content_channels": 2})
    assert c.content_channels == 512 and c.content_shape == (512, 16, 16)
    assert config_from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="n_downs_class >= 2"):
        generator_config(**{**FUNIT_ANIMALS, "n_downs_class": 1})
    with pytest.raises(ValueError, match="arch must be one of g2g, funit"):
        generator_config(arch="stargan")


# --- loading reproduces FUNIT's translation ------------------------------------------------------


def test_checkpoint_reproduces_funit_translation_with_k_references(states, checkpoint):
    gen = load_funit_checkpoint(checkpoint, image_size=32)  # gen_test: the EMA generator
    assert gen.config == _config(SMALL, 32)
    x, refs = _images(2, 3, 32, 32, seed=3), _images(2, 3, 3, 32, 32, seed=4)  # K = 3 references each
    with torch.no_grad():
        ours = gen.decode(gen.encode_content(x), gen.encode_class(refs))
        expected = funit_translate(states["gen_test"], x, refs, SMALL)
        torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-4)
        assert (ours - funit_translate(states["gen"], x, refs, SMALL)).abs().max() > 1e-2
        torch.testing.assert_close(gen.encode_content(x), funit_content(states["gen_test"], x, SMALL),
                                   atol=1e-5, rtol=1e-4)
        trained = load_funit_checkpoint(checkpoint, which="gen", image_size=32)
        torch.testing.assert_close(trained.decode(trained.encode_content(x), trained.encode_class(refs)),
                                   funit_translate(states["gen"], x, refs, SMALL), atol=2e-5, rtol=1e-4)


def test_g2g_forward_with_a_funit_generator_is_funit_translation_both_ways(states, checkpoint):
    gen, s = load_funit_checkpoint(checkpoint, image_size=32), states["gen_test"]
    x1, x2 = _images(2, 3, 32, 32, seed=5), _images(2, 3, 32, 32, seed=6)
    with torch.no_grad():
        res = g2g_forward(gen, x1, x2)
        torch.testing.assert_close(res.m1, funit_translate(s, x1, x2[:, None], SMALL), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(res.m2, funit_translate(s, x2, x1[:, None], SMALL), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(res.x1_hat, funit_translate(s, x1, x1[:, None], SMALL), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(res.r1, funit_translate(s, res.m1, res.m2[:, None], SMALL), atol=2e-5, rtol=1e-4)
    assert res.a1.shape == (2, *gen.config.content_shape) and res.b1.shape == (2, SMALL["latent_dim"])


def test_weights_round_trip_and_initialise_a_training_generator(states, checkpoint):
    gen = Generator(_config(SMALL, 32))
    init_from_funit_checkpoint(gen, checkpoint, which="gen")
    back = to_funit_state_dict(gen)
    assert back.keys() == states["gen"].keys()
    assert all(torch.equal(back[k], states["gen"][k]) for k in back)
    assert all(p.requires_grad for p in gen.parameters())
    # an exported FUNIT-arch model (safetensors + config) loads back like any other
    path = export_generator(gen, checkpoint.parent / "funit.safetensors")
    loaded = inference.load(path)
    assert loaded.config.arch == "funit"
    x = _images(2, 3, 32, 32, seed=7)
    assert torch.equal(loaded.swap(x[:1], x[1:]).m1, inference.G2GModel(gen).swap(x[:1], x[1:]).m1)


def test_missing_misshaped_and_unexpected_keys_are_named_in_one_line(states, tmp_path):
    def error(state, **kwargs):
        path = tmp_path / "broken.pt"
        torch.save({"gen": state, "gen_test": state}, path)
        with pytest.raises(ValueError) as e:
            load_funit_checkpoint(path, **kwargs)
        assert "\n" not in str(e.value)
        return str(e.value)

    good = states["gen_test"]
    key = "dec.model.0.model.1.model.0.conv.weight"
    msg = error({**good, key: good[key][:, :-1]})
    assert key in msg and "(16, 15, 3, 3)" in msg and "(16, 16, 3, 3)" in msg
    missing = "dec.model.0.model.0.model.1.norm.running_var"
    assert missing in error({k: v for k, v in good.items() if k != missing})
    assert "unexpected key 'dis.cnn_c.0.conv.weight'" in error({**good, "dis.cnn_c.0.conv.weight": torch.zeros(1)})
    assert "enc_content.model.0.conv.weight" in error({k: v for k, v in good.items() if k.startswith("dec")})
    # the animals config given explicitly: the small file does not fit it
    msg = error(good, config=generator_config(**FUNIT_ANIMALS))
    assert "'enc_content.model.0.conv.weight' has shape (4, 3, 7, 7), expected (64, 3, 7, 7)" in msg
    torch.save({"state_dict": {}}, tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match="no 'gen_test' entry.*g2g export"):
        load_funit_checkpoint(tmp_path / "last.ckpt")


# --- g2g swap with NVIDIA's file -----------------------------------------------------------------


def _png(path, size, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def test_funit_preprocessing_stretches_to_128_and_leaves_128_alone(tmp_path):
    small, exact = _png(tmp_path / "a.png", (20, 24), 0), _png(tmp_path / "b.png", (128, 128), 1)
    pixels = np.asarray(Image.open(exact), dtype=np.float32)
    assert torch.equal(load_image(exact, 128, crop=False), torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1)
    stretched = np.asarray(Image.open(small).resize((128, 128), Image.BILINEAR), dtype=np.float32)
    assert torch.equal(load_image(small, 128, crop=False), torch.from_numpy(stretched).permute(2, 0, 1) / 127.5 - 1)


def test_swap_takes_a_funit_checkpoint(checkpoint, tmp_path, capsys):
    a, b = _png(tmp_path / "a.png", (20, 24), 0), _png(tmp_path / "b.png", (128, 128), 1)
    out = tmp_path / "swap"
    assert main(["swap", str(a), str(b), "--model", str(checkpoint), "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    for name in ("m1", "m2", "r1", "r2"):
        assert Image.open(out / f"{name}.png").size == (128, 128)
    assert Image.open(out / "panel.png").size == (2 * 130 + 2, 3 * 130 + 2)
    # m1 = FUNIT's translation of a (stretched to 128 px) with the class of b (as it is)
    gen = load_funit_checkpoint(checkpoint)
    x = torch.stack([load_image(a, 128, crop=False), load_image(b, 128, crop=False)])
    with torch.no_grad():
        m1 = gen.decode(gen.encode_content(x[:1]), gen.encode_class(x[1:]))[0]
    m1_png = torch.from_numpy(np.asarray(Image.open(out / "m1.png"), dtype=np.float32)).permute(2, 0, 1)
    assert (m1_png - (m1 * 0.5 + 0.5).mul(255).round()).abs().max() <= 1


def test_swap_names_a_torch_file_that_is_no_funit_checkpoint(tmp_path, capsys):
    torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "last.ckpt")
    a = _png(tmp_path / "a.png", (16, 16), 0)
    assert main(["swap", str(a), str(a), "--model", str(tmp_path / "last.ckpt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("g2g: error: ") and err.count("\n") == 1 and "last.ckpt" in err and "gen_test" in err


# --- FUNIT's projection discriminator ------------------------------------------------------------


def test_projection_discriminator_shapes_and_class_selection():
    torch.manual_seed(0)
    d = ProjectionDiscriminator(num_classes=5, nf=4, n_res_blocks=6)  # 3 pairs: two poolings
    x, y = _images(3, 3, 16, 16, seed=8), torch.tensor([4, 0, 2])
    scores, features = d(x, y)
    assert scores.shape == (3, 1, 4, 4) and features.shape == (3, 32, 4, 4)  # every pair doubles: 4 → 32
    maps, _ = d.score_maps(x)
    assert maps.shape == (3, 5, 4, 4)
    assert all(torch.equal(scores[i, 0], maps[i, y[i]]) for i in range(3))
    assert not torch.equal(d(x, torch.tensor([3, 0, 2]))[0][0], scores[0])
    with pytest.raises(ValueError, match="even"):
        ProjectionDiscriminator(num_classes=5, n_res_blocks=5)


def test_projection_discriminator_r1_penalties():
    torch.manual_seed(0)
    d = ProjectionDiscriminator(num_classes=3, nf=4, n_res_blocks=4)
    real = _images(2, 3, 16, 16, seed=9).requires_grad_(True)
    scores, _ = d(real, torch.tensor([1, 2]))
    r1, r1_funit = losses.r1_penalty(scores, real), losses.r1_penalty_funit(scores, real)
    assert r1 > 0 and r1.requires_grad
    n = scores.numel()  # FUNIT differentiates the mean of all B·h·w scores
    torch.testing.assert_close(r1_funit, r1 * 2 / n ** 2, rtol=1e-4, atol=0)
    r1_funit.backward()  # the penalty trains the discriminator (the final bias does not move ∇ₓD)
    assert all(p.grad is not None for name, p in d.named_parameters() if name != "classifier.bias")


# --- the full FUNIT generator, run once at 128 px (~3 s on one CPU thread) ---------------------


def test_animals_config_reproduces_funit_at_128px():
    state = random_state(nvidia_layout(**ANIMALS), 0)
    config = funit_config_from_state_dict(state)
    assert config == generator_config(**FUNIT_ANIMALS)
    with torch.device("meta"):
        gen = Generator(config)
    load_funit_state_dict(gen, state)  # the file round trip is tested above on the small checkpoint
    x, refs = _images(1, 3, 128, 128, seed=10), _images(1, 2, 3, 128, 128, seed=11)
    with torch.no_grad():
        ours = gen.decode(gen.encode_content(x), gen.encode_class(refs))
        torch.testing.assert_close(ours, funit_translate(state, x, refs, ANIMALS), atol=1e-4, rtol=1e-3)
