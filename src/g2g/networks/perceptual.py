"""Frozen VGG16 perceptual features and loss: torchvision's ImageNet VGG16, cut after the
one layer used.

API:
    vgg = VGGPerceptual(weights=None, layer="relu2_2")  # None: the torch hub cache file
    f = vgg(x)            # x (B, 3, H, W) RGB in [-1, 1] -> (B, C, H', H') features of `layer`
    d = vgg.loss(r, x)    # mean |VGG(r) - VGG(x)|; the target's features under no_grad

Only `features[:k]` of torchvision's VGG16 is built and loaded (relu2_2: 4 convolutions, k = 9), not
all four stages. The weights are read from `torch.hub.get_dir()/checkpoints/vgg16-397923af.pth` (where
torchvision caches them) or from a given file, with torch.load(weights_only=True); nothing is
downloaded. When the file is absent, a one-line FileNotFoundError says which file, where, and how to
use the L1 loss instead. Frozen: requires_grad False and always in eval mode (`train()` overridden).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

WEIGHTS_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1
WEIGHTS_URL = f"https://download.pytorch.org/models/{WEIGHTS_FILE}"
DISABLE_HINT = "perceptual: none"  # the config value that trains with the L1 loss instead
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names(cfg: list) -> list[str]:
    """Names of torchvision's `features` entries in order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, …"""
    names, block, i = [], 1, 1
    for v in cfg:
        if v == "M":
            names.append(f"pool{block}")
            block, i = block + 1, 1
        else:
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
            i += 1
    return names


LAYERS = tuple(_layer_names(cfgs["D"]))  # VGG16: 31 entries, relu2_2 is features[8]


def default_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


class VGGPerceptual(nn.Module):
    """torchvision VGG16 `features` up to and including `layer`, with ImageNet normalisation inside."""

    scale: torch.Tensor  # (1, 3, 1, 1) buffers: [-1, 1] → ImageNet-normalised as x · scale + shift
    shift: torch.Tensor

    def __init__(self, weights: str | Path | None = None, layer: str = "relu2_2"):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown VGG16 layer {layer!r}: choose one of {', '.join(LAYERS)}")
        self.layer = layer
        k = LAYERS.index(layer) + 1
        cfg, n = [], 0  # shortest prefix of the VGG16 config that makes k layers (conv+ReLU count 2)
        for v in cfgs["D"]:
            if n >= k:
                break
            cfg.append(v)
            n += 1 if v == "M" else 2
        # slicing keeps torchvision's indices, so state-dict keys read features.0.weight … as published
        self.features = make_layers(cfg)[:k]
        # [-1, 1] -> ImageNet-normalised in one multiply-add: (x + 1)/2 - mean) / std = x·scale + shift
        std, mean = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("scale", 0.5 / std, persistent=False)
        self.register_buffer("shift", (0.5 - mean) / std, persistent=False)
        self._load(weights)
        self.requires_grad_(False)
        self.eval()

    def _load(self, weights: str | Path | None) -> None:
        path = default_weights_path() if weights is None else Path(weights)
        if not path.is_file():
            where = "in the torch hub cache" if weights is None else "at the given path"
            raise FileNotFoundError(
                f"VGG16 weights not found {where}: {path} (torchvision's ImageNet VGG16 {WEIGHTS_FILE}, "
                f"from {WEIGHTS_URL}); put the file there, or use the L1 loss instead ({DISABLE_HINT})")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot load {path} as a state dict (weights_only=True): {first}") from e
        own = {f"features.{k}": v for k, v in self.features.state_dict().items()}
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
        for key, expected in own.items():
            if key not in state:
                raise ValueError(f"{path} is not a torchvision VGG16 state dict: missing parameter {key!r}")
            got = state[key]
            if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                raise ValueError(f"{path} is not a torchvision VGG16 state dict: parameter {key!r} has shape "
                                 f"{shape}, expected {tuple(expected.shape)}")
        # deeper layers and the classifier are not used
        self.features.load_state_dict({k[len("features."):]: state[k] for k in own})

    def train(self, mode: bool = True) -> VGGPerceptual:
        """Always eval (a frozen feature extractor), whatever the framework asks."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(torch.addcmul(self.shift, x, self.scale))  # (B, C, H', W')

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L1 distance of the features (the original report's 'VGG' loss); gradients reach `x` only."""
        with torch.no_grad():
            y = self(target)
        return F.l1_loss(self(x), y)
