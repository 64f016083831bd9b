"""Frozen VGGFace2 ResNet-50 face-identity network and its weight loading.

Loads the official `resnet50_ft` PyTorch state dict (flat Caffe-style names such as
`conv1_7x7_s2.weight`, `conv3_1_1x1_reduce_bn.running_var`; with or without the 8631-way
`classifier.*`) into a compact module of our own with the same parameter names, so the file loads as
published and the outputs equal the official definition's pool5 features.

API:
    net = IdentityNet.from_file("resnet50_ft_dag.pth")  # frozen, eval mode, requires_grad False
    f = net(x)                   # x (B, 3, H, W) RGB in [-1, 1], any size -> (B, 2048) pool5 features
    d = net.loss(m1, x2)         # mean |E_ID(m1) - E_ID(x2)|; the target's features under no_grad

Gradients flow through the network to its input (for identity losses on generated images), but the
network itself never trains: `train()` is overridden so a framework's `model.train()` leaves it in eval
mode (the original implementation's BatchNorm ran on batch statistics of 2 images).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 224
MEAN_RGB = (131.0912, 103.8827, 91.4953)  # training-set mean, 0..255 RGB, subtracted from the input
FEATURE_DIM = 2048
# (stage S, bottleneck blocks, bottleneck width): names conv{S}_{B}_*, output channels 4 × width
STAGES = ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512))


class IdentityNet(nn.Module):
    """VGGFace2 `resnet50_ft` trunk up to pool5: (B, 3, H, W) in [-1, 1] -> (B, 2048).

    Caffe-style ResNet-50: 7×7/2 conv + BN + ReLU, 3×3/2 max-pool (no padding, ceil mode), bottleneck
    stages of 3, 4, 6, 3 blocks where the first block of stages 3–5 strides on its first 1×1 conv and
    on the 1×1 projection shortcut, then the mean over the 7×7 map. Constructed with random weights;
    use `from_file` for the published ones.
    """

    shift: torch.Tensor  # (1, 3, 1, 1) buffer: 127.5 − the mean colour

    def __init__(self) -> None:
        super().__init__()
        self._conv_bn("conv1_7x7_s2", 3, 64, 7, stride=2, padding=3)
        self.blocks: list[tuple[str, bool]] = []  # (name prefix, has a projection shortcut)
        c_in = 64
        for stage, n_blocks, width in STAGES:
            for b in range(1, n_blocks + 1):
                name, first = f"conv{stage}_{b}", b == 1
                stride = 2 if first and stage > 2 else 1
                self._conv_bn(f"{name}_1x1_reduce", c_in, width, 1, stride=stride)
                self._conv_bn(f"{name}_3x3", width, width, 3, padding=1)
                self._conv_bn(f"{name}_1x1_increase", width, 4 * width, 1)
                if first:
                    self._conv_bn(f"{name}_1x1_proj", c_in, 4 * width, 1, stride=stride)
                self.blocks.append((name, first))
                c_in = 4 * width
        # [-1, 1] -> 0..255 minus the mean, as one multiply-add: (127.5 - mean) + 127.5 · x
        self.register_buffer("shift", 127.5 - torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _conv_bn(self, name: str, c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0) -> None:
        # attributes carry the official names, so the published state dict loads without renaming
        self.add_module(name, nn.Conv2d(c_in, c_out, k, stride, padding, bias=False))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(c_out, eps=1e-5))

    def _cbn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"{name}_bn")(getattr(self, name)(x))

    def train(self, mode: bool = True) -> IdentityNet:
        """Always eval: BatchNorm keeps its published running statistics whatever the framework asks."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=True)
        x = torch.add(self.shift, x, alpha=127.5)  # (B, 3, 224, 224), 0..255 minus mean
        x = F.relu(self._cbn("conv1_7x7_s2", x))  # (B, 64, 112, 112)
        x = F.max_pool2d(x, 3, stride=2, padding=0, ceil_mode=True)  # (B, 64, 56, 56)
        for name, projection in self.blocks:
            shortcut = self._cbn(f"{name}_1x1_proj", x) if projection else x
            y = F.relu(self._cbn(f"{name}_1x1_reduce", x))
            y = F.relu(self._cbn(f"{name}_3x3", y))
            x = F.relu(self._cbn(f"{name}_1x1_increase", y) + shortcut)
        return x.mean((2, 3))  # (B, 2048): pool5 (7×7 average pool of the 7×7 map)

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean absolute difference of identity features; gradients reach `x` only."""
        with torch.no_grad():
            y = self(target)
        return F.l1_loss(self(x), y)

    @classmethod
    def from_file(cls, path: str | Path) -> IdentityNet:
        """Load the official `resnet50_ft` state dict (torch.load with weights_only=True)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VGGFace2 weights not found: {path} (the resnet50_ft PyTorch state dict "
                                    "from the VGGFace2 release)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot load {path} as a state dict (weights_only=True): {first}") from e
        net = cls()
        net.load_official(state, source=str(path))
        return net

    def load_official(self, state: dict, source: str = "state dict") -> None:
        """Copy an official-format state dict in; ValueError naming the first missing, misshaped or
        unexpected parameter. `classifier.*` and missing `num_batches_tracked` counters are ignored."""
        if not isinstance(state, dict):
            raise ValueError(f"{source}: expected a state dict (name -> tensor), got {type(state).__name__}")
        own = self.state_dict()
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        problem = None
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        for kind, names in (("missing", missing), ("unexpected", unexpected)):
            if names and problem is None:
                more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
                problem = f"{kind} parameter {names[0]!r}{more}"
        if problem is None:
            for k, v in state.items():
                if not isinstance(v, torch.Tensor) or v.shape != own[k].shape:
                    shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                    problem = f"parameter {k!r} has shape {shape}, expected {tuple(own[k].shape)}"
                    break
        if problem:
            raise ValueError(f"{source} is not a VGGFace2 resnet50_ft state dict: {problem}")
        self.load_state_dict(state, strict=False)  # only num_batches_tracked may be absent
