"""VGG16 perceptual features: a random-weight file in torchvision's state-dict layout, read
from the torch hub cache or a given path, equals torchvision's own vgg16 features[:k]; nothing downloads."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

from g2g.networks.perceptual import LAYERS, VGGPerceptual

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
         (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512),
         (28, 512, 512)]  # torchvision vgg16 `features` index, in, out channels of each 3x3 conv


@pytest.fixture(scope="module")
def vgg_state():
    """Every `features.*` tensor of torchvision's VGG16 layout with random values (the 124M-parameter
    classifier is left out: it is never read)."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for i, c_in, c_out in CONVS:
        sd[f"features.{i}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * (2.0 / (9 * c_in)) ** 0.5
        sd[f"features.{i}.bias"] = 0.1 * torch.randn(c_out, generator=g)
    return sd


@pytest.fixture(scope="module")
def torch_home(vgg_state, tmp_path_factory):
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(vgg_state, home / "hub" / "checkpoints" / "vgg16-397923af.pth")
    return home


def _torchvision_features(vgg_state, k: int) -> torch.nn.Module:
    with torch.device("meta"):  # no 138M-parameter random init; the features get real tensors below
        ref = torchvision.models.vgg16(weights=None)
    ref.features.load_state_dict({key[len("features."):]: v for key, v in vgg_state.items()}, assign=True)
    return ref.features[:k].eval()


def _images(n: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("layer, k, channels", [("relu2_2", 9, 128), ("conv3_1", 11, 256), ("pool1", 5, 64)])
def test_equals_torchvision_features_from_the_hub_cache(torch_home, vgg_state, monkeypatch, layer, k, channels):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    vgg = VGGPerceptual(layer=layer)
    assert len(vgg.features) == k and LAYERS[k - 1] == layer
    x = _images(2)
    with torch.no_grad():
        ours = vgg(x)
        ref = _torchvision_features(vgg_state, k)(((x + 1) / 2 - MEAN) / STD)
    assert ours.shape == ref.shape and ours.shape[1] == channels
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_default_is_relu2_2_from_a_given_file(torch_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: the given file is used
    vgg = VGGPerceptual(torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth")
    assert vgg.layer == "relu2_2" and vgg(_images(1)).shape == (1, 128, 16, 16)


def test_missing_weights_say_which_file_where_and_the_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        VGGPerceptual()
    msg = str(e.value)
    expected = str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth")
    assert expected in msg and "perceptual: none" in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match="mine.pth"):
        VGGPerceptual(tmp_path / "mine.pth")


def test_bad_file_names_the_parameter(vgg_state, tmp_path):
    bad = dict(vgg_state)
    bad["features.7.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    shapes = r"has shape \(128, 64, 1, 1\), expected \(128, 128, 3, 3\)"
    with pytest.raises(ValueError, match="'features.7.weight' " + shapes):
        VGGPerceptual(tmp_path / "bad.pth")
    del bad["features.5.bias"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing parameter 'features.5.bias'"):
        VGGPerceptual(tmp_path / "bad.pth")
    VGGPerceptual(tmp_path / "bad.pth", layer="relu1_2")  # layers not used need not be there
    with pytest.raises(ValueError, match="relu2_2"):
        VGGPerceptual(tmp_path / "bad.pth", layer="relu9_9")


def test_frozen_eval_and_loss_gradients_reach_the_input_only(torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    vgg = torch.nn.Sequential(VGGPerceptual()).train()[0]  # a parent switched to training mode
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())
    x, target = _images(2).requires_grad_(True), _images(2, seed=2).requires_grad_(True)
    loss = vgg.loss(x, target)
    torch.testing.assert_close(loss, F.l1_loss(vgg(x), vgg(target)))
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and target.grad is None
