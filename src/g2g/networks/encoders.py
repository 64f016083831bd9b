"""Content encoder (spatial code) and class encoder (vector code, mean over K references)."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBlock, ResBlock, instance_norm


def conv_trunk(in_channels: int, nf: int, n_downs: int, n_res: int, code_channels: int, max_channels: int,
               norm: str, activation: str) -> list[nn.Module]:
    """The layers of a content-type encoder: a 7×7 block, n_downs stride-2 3×3 blocks doubling the width
    (capped at max_channels), n_res residual blocks and a 1×1 projection to code_channels."""
    layers: list[nn.Module] = [ConvBlock(in_channels, nf, 7, norm=norm, activation=activation)]
    ch = nf
    for _ in range(n_downs):
        out = min(ch * 2, max_channels)
        layers.append(ConvBlock(ch, out, 3, stride=2, norm=norm, activation=activation))
        ch = out
    layers += [ResBlock(ch, norm=norm, activation=activation) for _ in range(n_res)]
    layers.append(nn.Conv2d(ch, code_channels, 1))
    return layers


class ContentEncoder(nn.Module):
    """Image (B, 3, H, W) → content code (B, code_channels, H / 2**n_downs, W / 2**n_downs).

    Instance normalisation throughout removes per-image colour statistics, which belong to the class;
    the final 1×1 projection to few channels is the content bottleneck. normalize_code: the code itself
    is instance-normalised too (zero mean, unit variance per channel and image), so it says where things
    are relative to each other, not how much of them there is (stroke weight, contrast, size). levels
    (≥ 2): each number of the code is squashed into [-1, 1] and rounded to one of `levels` evenly spaced
    values (`quantize`), so the code is a small alphabet per position; 0 leaves it continuous."""

    def __init__(self, in_channels: int = 3, nf: int = 32, n_downs: int = 2, n_res: int = 1,
                 code_channels: int = 2, max_channels: int = 256, normalize_code: bool = False,
                 levels: int = 0):
        super().__init__()
        self.net = nn.Sequential(*conv_trunk(in_channels, nf, n_downs, n_res, code_channels, max_channels,
                                             "in", "relu"))
        self.normalize_code = normalize_code
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.net(x)
        code = instance_norm(code) if self.normalize_code else code
        return quantize(code, self.levels) if self.levels else code


def quantize(code: torch.Tensor, levels: int) -> torch.Tensor:
    """Finite scalar quantisation: tanh(code) rounded to `levels` evenly spaced values in [-1, 1] (2: the
    sign); the gradient passes the rounding as if it were not there (straight-through)."""
    squashed = torch.tanh(code)
    steps = levels - 1
    rounded = torch.round((squashed + 1) * (steps / 2)) * (2 / steps) - 1
    return squashed + (rounded - squashed).detach()


CLASS_POOLS = ("mean", "max")


class ClassEncoder(nn.Module):
    """Image (B, 3, H, W) → class code (B, code_dim); references (B, K, 3, H, W) → mean code over K.

    No normalisation layers: the class lives largely in colour statistics that instance
    normalisation would erase. Global pooling removes where things are: "mean" (average) or "max" (the
    strongest response of each feature anywhere, which does not grow with the object's area)."""

    def __init__(self, in_channels: int = 3, nf: int = 32, n_downs: int = 3, code_dim: int = 64,
                 max_channels: int = 256, pool: str = "mean"):
        super().__init__()
        if pool not in CLASS_POOLS:
            raise ValueError(f"class_pool must be one of {', '.join(CLASS_POOLS)}, not {pool!r}")
        self.pool = pool
        layers: list[nn.Module] = [ConvBlock(in_channels, nf, 7, activation="lrelu")]
        ch = nf
        for _ in range(n_downs):
            out = min(ch * 2, max_channels)
            layers.append(ConvBlock(ch, out, 3, stride=2, activation="lrelu"))
            ch = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch, code_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # (B, K, 3, H, W): K references of one class each
            b, k = x.shape[:2]
            return self.forward(x.flatten(0, 1)).view(b, k, -1).mean(dim=1)
        h = self.features(x)
        return self.head(h.mean(dim=(2, 3)) if self.pool == "mean" else h.amax(dim=(2, 3)))
