"""Discriminators: CycleGAN's PatchGAN, a class critic for class consistency on mixed images, and FUNIT's
multi-class projection ResNet discriminator."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import InstanceNorm, init_kaiming


def init_normal(module: nn.Module, gain: float = 0.02) -> None:
    """CycleGAN's `normal` initialisation: N(0, gain) weights, zero biases, N(1, gain) norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.weight is not None:  # the instance norms have no affine weights
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
                      nn.Conv2d(ndf, ndf * 2, 1), InstanceNorm(ndf * 2), nn.LeakyReLU(0.2, True),
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
                           InstanceNorm(ndf * mult), nn.LeakyReLU(0.2, True)]
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


class ActFirstResBlock(nn.Module):
    """FUNIT's discriminator block: LeakyReLU → 3×3 conv → LeakyReLU → 3×3 conv (reflect padding, no
    normalisation), plus a skip connection: a bias-free 1×1 projection of the input where the width
    changes, otherwise the input. FUNIT applies the first LeakyReLU in place, so its identity skip carries
    the activated input; that is what it computes, and what is computed here."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        hidden = min(in_ch, out_ch)
        self.conv1 = nn.Conv2d(in_ch, hidden, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(hidden, out_ch, 3, padding=1, padding_mode="reflect")
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.leaky_relu(x, 0.2)
        skip = a if self.skip is None else self.skip(x)
        return skip + self.conv2(F.leaky_relu(self.conv1(a), 0.2))


class ProjectionDiscriminator(nn.Module):
    """FUNIT's multi-class patch discriminator (GPPatchMcResDis). A 7×7 conv, then n_res_blocks
    ActFirstResBlocks in pairs, the second of each pair doubling the width (capped at max_channels), with a
    3×3/2 average pooling after every pair but the last; a LeakyReLU and a 1×1 conv give one score map per
    class, and the map of the image's class is its score.

    forward(x (B, C, H, W), y (B,) class indices) → (scores (B, 1, h, w), features (B, F, h, w)); the
    features (after the final LeakyReLU, as FUNIT returns them) serve feature matching. h = H / 2**(pairs−1).
    Hinge loss and R1 on real images as in FUNIT: see `losses.d_hinge_loss`, `losses.r1_penalty_funit`."""

    def __init__(self, num_classes: int, in_channels: int = 3, nf: int = 64, n_res_blocks: int = 10,
                 max_channels: int = 1024):
        super().__init__()
        if n_res_blocks < 2 or n_res_blocks % 2:
            raise ValueError(f"n_res_blocks must be an even number >= 2, got {n_res_blocks}")
        if num_classes < 1:
            raise ValueError(f"the projection discriminator needs class labels: num_classes {num_classes}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, nf, 7, padding=3, padding_mode="reflect")]
        ch = nf
        for i in range(n_res_blocks // 2):
            out = min(2 * ch, max_channels)
            layers += [ActFirstResBlock(ch, ch), ActFirstResBlock(ch, out)]
            if i < n_res_blocks // 2 - 1:
                layers += [nn.ReflectionPad2d(1), nn.AvgPool2d(3, stride=2)]
            ch = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(ch, num_classes, 1)
        self.num_classes = num_classes
        init_kaiming(self)

    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) → (score maps of every class (B, num_classes, h, w), features (B, F, h, w))."""
        features = F.leaky_relu(self.features(x), 0.2)
        return self.classifier(features), features

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps, features = self.score_maps(x)
        index = y.view(-1, 1, 1, 1).expand(-1, 1, *maps.shape[2:])
        return maps.gather(1, index), features  # (B, 1, h, w): the map of each image's class
