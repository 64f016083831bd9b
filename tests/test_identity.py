"""VGGFace2 ResNet-50 identity network: official state-dict layout, equality with a
straightforward reference implementation, frozen eval mode during a Lightning fit, and `g2g identity`."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from g2g.cli import main
from g2g.networks.identity import IdentityNet

MEAN = torch.tensor([131.0912, 103.8827, 91.4953]).view(1, 3, 1, 1)
BLOCKS = {2: 3, 3: 4, 4: 6, 5: 3}  # bottleneck blocks per stage
WIDTH = {2: 64, 3: 128, 4: 256, 5: 512}  # bottleneck width per stage; outputs are 4 × width


def _official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the published names and shapes (BN running stats included)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv_bn(name, c_in, c_out, k, bn_scale=1.0):
        sd[f"{name}.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * (2.0 / (c_in * k * k)) ** 0.5
        sd[f"{name}_bn.weight"] = bn_scale * (1 + 0.1 * torch.randn(c_out, generator=g))
        sd[f"{name}_bn.bias"] = 0.1 * torch.randn(c_out, generator=g)
        sd[f"{name}_bn.running_mean"] = 0.1 * torch.randn(c_out, generator=g)
        sd[f"{name}_bn.running_var"] = 0.5 + torch.rand(c_out, generator=g)
        sd[f"{name}_bn.num_batches_tracked"] = torch.tensor(0)

    conv_bn("conv1_7x7_s2", 3, 64, 7)
    c_in = 64
    for s, n in BLOCKS.items():
        w = WIDTH[s]
        for b in range(1, n + 1):
            conv_bn(f"conv{s}_{b}_1x1_reduce", c_in, w, 1)
            conv_bn(f"conv{s}_{b}_3x3", w, w, 3)
            conv_bn(f"conv{s}_{b}_1x1_increase", w, 4 * w, 1, bn_scale=0.3)
            if b == 1:
                conv_bn(f"conv{s}_{b}_1x1_proj", c_in, 4 * w, 1)
            c_in = 4 * w
    sd["classifier.weight"] = torch.zeros(8631, 2048, 1, 1)  # ignored for identity features
    sd["classifier.bias"] = torch.zeros(8631)
    return sd


def _reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """The official definition written out: x is the network input (0..255 RGB minus mean, 224 px)."""
    def conv(t, name, stride=1, padding=0):
        return F.conv2d(t, sd[f"{name}.weight"], None, stride, padding)

    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}_bn.running_mean"], sd[f"{name}_bn.running_var"],
                            sd[f"{name}_bn.weight"], sd[f"{name}_bn.bias"], False, 0.0, 1e-5)

    x = F.relu(bn(conv(x, "conv1_7x7_s2", 2, 3), "conv1_7x7_s2"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
    assert x.shape[-1] == 56  # ceil mode: floor would give 55
    for s, n in BLOCKS.items():
        for b in range(1, n + 1):
            p = f"conv{s}_{b}"
            stride = 2 if (b == 1 and s > 2) else 1  # Caffe: the stride sits on the first 1x1 conv
            y = F.relu(bn(conv(x, f"{p}_1x1_reduce", stride), f"{p}_1x1_reduce"))
            y = F.relu(bn(conv(y, f"{p}_3x3", 1, 1), f"{p}_3x3"))
            y = bn(conv(y, f"{p}_1x1_increase"), f"{p}_1x1_increase")
            shortcut = bn(conv(x, f"{p}_1x1_proj", stride), f"{p}_1x1_proj") if b == 1 else x
            x = F.relu(y + shortcut)
    return F.avg_pool2d(x, kernel_size=7, stride=1).flatten(1)  # pool5_7x7_s1: (B, 2048)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def official():
    return _official_state_dict()


@pytest.fixture(scope="module")
def weights_file(official, tmp_path_factory):
    path = tmp_path_factory.mktemp("vggface2") / "resnet50_ft_dag.pth"
    torch.save(official, path)
    return path


@pytest.fixture(scope="module")
def net(weights_file):
    return IdentityNet.from_file(weights_file)


def _faces(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_matches_the_reference_definition(net, official):
    x = _faces(2, 224)
    with torch.no_grad():
        ours = net(x)
        ref = _reference(official, (x + 1) * 127.5 - MEAN)
    assert ours.shape == (2, 2048)
    assert _rel_err(ours, ref) < 1e-5
    assert _rel_err(ours[0], ours[1]) > 1e-3  # the two faces differ
    # any input size is resized to 224 first (bilinear, antialiased)
    small = _faces(1, 112, seed=2)
    with torch.no_grad():
        resized = F.interpolate(small, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        assert _rel_err(net(small), _reference(official, (resized + 1) * 127.5 - MEAN)) < 1e-5


def test_loads_without_classifier_and_counters(official):
    bare = {k: v for k, v in official.items() if not k.startswith("classifier.")
            and not k.endswith("num_batches_tracked")}
    net = IdentityNet()
    net.load_official(bare)
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, official[k]), k


@pytest.mark.parametrize("edit, fragment", [
    (lambda sd: sd.pop("conv4_2_3x3.weight"), "missing parameter 'conv4_2_3x3.weight'"),
    (lambda sd: sd.update({"conv2_1_1x1_proj_bn.running_var": torch.ones(3)}),
     "'conv2_1_1x1_proj_bn.running_var' has shape (3,), expected (256,)"),
    (lambda sd: sd.update({"conv2_1_1x1_down.weight": torch.ones(16, 256, 1, 1)}),  # an SENet file
     "unexpected parameter 'conv2_1_1x1_down.weight'"),
])
def test_bad_state_dict_names_the_parameter(official, edit, fragment):
    sd = dict(official)
    edit(sd)
    with pytest.raises(ValueError, match="resnet50_ft") as e:
        IdentityNet().load_official(sd, source="w.pth")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        IdentityNet.from_file(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        IdentityNet.from_file(tmp_path / "junk.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled module, not a state dict
    with pytest.raises(ValueError, match="weights_only"):
        IdentityNet.from_file(tmp_path / "module.pth")


def test_frozen_and_always_in_eval_mode_but_passes_gradients(net):
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    outer = torch.nn.Sequential(net).train()  # a parent switching to training mode
    assert not outer[0].training
    x = _faces(1, 64).requires_grad_(True)
    target = _faces(1, 64, seed=3).requires_grad_(True)
    net.loss(x, target).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and target.grad is None


@pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode")  # the frozen network, by design
def test_stays_in_eval_mode_during_a_lightning_fit(tmp_path):
    import lightning as L

    class WithIdentity(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.identity = IdentityNet()
            self.head = torch.nn.Linear(2048, 1)
            self.modes = []

        def training_step(self, batch, _):
            self.modes.append(self.identity.training)
            return self.head(self.identity(batch[0])).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.head.parameters(), lr=0.1)

    model = WithIdentity()
    before = {k: v.clone() for k, v in model.identity.state_dict().items()}
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(_faces(2, 32)), batch_size=1)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=str(tmp_path))
    trainer.fit(model, data)
    assert model.modes == [False, False] and not model.identity.training
    for k, v in model.identity.state_dict().items():  # running statistics untouched
        assert torch.equal(v, before[k]), k


def _write_face(path, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_cli_prints_cosine_and_l2(net, weights_file, tmp_path, capsys):
    a, b = _write_face(tmp_path / "a.png", 0), _write_face(tmp_path / "b.png", 1)
    assert main(["identity", "--weights", str(weights_file), a, b]) == 0
    out = capsys.readouterr().out
    from g2g.data.datasets import load_image
    with torch.no_grad():
        f = net(torch.stack([load_image(a, 224), load_image(b, 224)]))
    cos, l2 = F.cosine_similarity(f[:1], f[1:]).item(), (f[0] - f[1]).norm().item()
    assert f"cosine similarity: {cos:.4f}" in out and f"L2 distance: {l2:.4f}" in out


def test_cli_errors_are_one_line(official, tmp_path, capsys):
    a = _write_face(tmp_path / "a.png", 0)
    assert main(["identity", "--weights", str(tmp_path / "none.pth"), a, a]) == 2
    err = capsys.readouterr().err
    assert err.startswith("g2g: error: ") and err.count("\n") == 1 and "none.pth" in err
    sd = {k: v for k, v in official.items() if not k.startswith(("conv5", "classifier"))}
    torch.save(sd, tmp_path / "partial.pth")
    assert main(["identity", "--weights", str(tmp_path / "partial.pth"), a, a]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "partial.pth" in err and "missing parameter 'conv5_1_1x1_reduce.weight'" in err
