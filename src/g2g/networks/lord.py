"""LORD-style networks of the `naive` preset: two symmetric convolutional encoders that
give vector codes, and LORD's generator (Gabbay & Hoshen 2020, avivga/lord-pytorch `model/modules.py`),
where the content code goes in directly, through fully connected layers, and the class code enters every
upsampling layer through AdaIN (a forward argument here, not parameters assigned to the layers).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import adain, upsample2x


class VectorEncoder(nn.Module):
    """Image (B, C, S, S) → code (B, code_dim). DCGAN-style, as the original implementation's naive
    encoders: n_downs 4×4 stride-2 convolutions doubling the width (capped at max_channels), batch norm and
    LeakyReLU, then one convolution over the whole remaining map (S / 2**n_downs square) to code_dim
    channels.
    Content and class encoders are the same network with their own weights."""

    def __init__(self, in_channels: int = 3, nf: int = 32, n_downs: int = 5, code_dim: int = 256,
                 image_size: int = 128, max_channels: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for i in range(n_downs):
            out = min(nf * 2 ** i, max_channels)
            layers += [nn.Conv2d(ch, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            ch = out
        side = image_size // 2 ** n_downs
        layers.append(nn.Conv2d(ch, code_dim, side))  # (B, code_dim, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class LordDecoder(nn.Module):
    """content (B, content_dim) + class code (B, class_dim) → image (B, out_channels, S, S) in [-1, 1].

    Three linear layers (LeakyReLU) map the content code to a (width, s, s) map, s = S / 2**n_adain; then
    n_adain × (nearest 2× upsampling, 3×3 conv, LeakyReLU, AdaIN with the class code); a 5×5 conv to 64
    channels, LeakyReLU, and a 7×7 conv with tanh (LORD: sigmoid, for images in [0, 1]). The AdaIN
    parameters of all layers are one linear map of the class code (LORD's per-layer `Modulation`),
    [scale | bias] per layer, the scale used as it is."""

    def __init__(self, content_dim: int = 256, class_dim: int = 256, image_size: int = 128, n_adain: int = 4,
                 width: int = 256, out_channels: int = 3):
        super().__init__()
        s = image_size // 2 ** n_adain
        self.start = (width, s, s)
        dims = [content_dim, s * s * width // 8, s * s * width // 4, s * s * width]
        self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(n_adain))
        self.modulation = nn.Linear(class_dim, n_adain * 2 * width)
        self.to_rgb = nn.ModuleList([nn.Conv2d(width, 64, 5, padding=2), nn.Conv2d(64, out_channels, 7, padding=3)])

    def forward(self, content: torch.Tensor, class_code: torch.Tensor) -> torch.Tensor:
        b, width = content.shape[0], self.start[0]
        params = self.modulation(class_code).view(b, len(self.convs), 2, width)  # (B, n_adain, [scale, bias], width)
        x = content
        for linear in self.fc:
            x = F.leaky_relu(linear(x), 0.01)
        x = x.view(b, *self.start)  # (B, width, s, s)
        for i, conv in enumerate(self.convs):
            x = adain(F.leaky_relu(conv(upsample2x(x)), 0.01), params[:, i, 0], params[:, i, 1])
        x = F.leaky_relu(self.to_rgb[0](x), 0.01)
        return torch.tanh(self.to_rgb[1](x))
