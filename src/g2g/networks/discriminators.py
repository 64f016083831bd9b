"""Discriminators: CycleGAN's PatchGAN and a class critic for class consistency on mixed images."""
from __future__ import annotations

import torch
from torch import nn


def init_normal(module: nn.Module, gain: float = 0.02) -> None:
    """CycleGAN's `normal` initialisation: N(0, gain) weights, zero biases, N(1, gain) norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class PatchGAN(nn.Module):
    """CycleGAN's NLayerDiscriminator (`basic` = 3 layers, `n_layers` = any depth) or PixelDiscriminator
    (`pixel`, 1×1 convolutions). Image (B, 3, H, W) → patch scores (B, 1, h, w). Instance norm."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, kind: str = "basic", n_layers: int = 3):
        super().__init__()
        if kind == "basic":
            n_layers = 3
        elif kind == "pixel":
            layers = [nn.Conv2d(in_channels, ndf, 1), nn.LeakyReLU(0.2, True),
                      nn.Conv2d(ndf, ndf * 2, 1), nn.InstanceNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
                      nn.Conv2d(ndf * 2, 1, 1)]
        elif kind != "n_layers":
            raise ValueError(f"unknown PatchGAN kind {kind!r}: use 'basic', 'n_layers' or 'pixel'")
        if kind != "pixel":
            layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            mult = 1
            for n in range(1, n_layers + 1):
                prev, mult = mult, min(2 ** n, 8)
                stride = 2 if n < n_layers else 1
                layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1),
                           nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        # smallest input whose last normalised layer still has more than one spatial element
        self.min_size = 1 if kind == "pixel" else 3 * 2 ** n_layers
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ClassCritic(nn.Module):
    """A small classifier trained on real images with their labels; on mixed images its cross-entropy
    against the class that should be shown is the class-consistency term. Image → logits (B, n)."""

    def __init__(self, num_classes: int, in_channels: int = 3, nf: int = 32, n_downs: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for i in range(n_downs):
            out = nf * 2 ** i
            layers += [nn.Conv2d(ch, out, 3, 2, 1), nn.LeakyReLU(0.2, True)]
            ch = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))
