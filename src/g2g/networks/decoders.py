"""AdaIN decoder: content code (spatial) + class code (vector) → image."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import MLP, AdaINConv, AdaINResBlock, ConvBlock, upsample2x


class AdaINDecoder(nn.Module):
    """Draws an image from a content code; the class code enters every layer through AdaIN.

    content (B, code_channels, h, w) → (B, out_channels, h·2**n_ups, w·2**n_ups) in [-1, 1].
    An MLP maps the class code to all AdaIN parameters at once (FUNIT), which are then split per layer
    and passed as forward arguments."""

    def __init__(self, code_channels: int = 2, class_dim: int = 64, nf: int = 32, n_ups: int = 2,
                 n_res: int = 2, mlp_dim: int = 128, n_mlp: int = 2, out_channels: int = 3,
                 max_channels: int = 256, normalize: bool = True):
        super().__init__()
        ch = min(nf * 2 ** n_ups, max_channels)
        self.stem = ConvBlock(code_channels, ch, 3)
        self.res = nn.ModuleList(AdaINResBlock(ch, normalize) for _ in range(n_res))
        ups = []
        for _ in range(n_ups):
            out = max(ch // 2, nf // 2)
            ups.append(AdaINConv(ch, out, normalize=normalize))
            ch = out
        self.ups = nn.ModuleList(ups)
        self.to_rgb = ConvBlock(ch, out_channels, 3, activation="none")
        self.splits = [m.n_params for m in [*self.res, *self.ups]]
        self.mlp = MLP(class_dim, sum(self.splits), mlp_dim, n_mlp)

    def forward(self, content: torch.Tensor, class_code: torch.Tensor) -> torch.Tensor:
        params = self.mlp(class_code).split(self.splits, dim=1)
        x = self.stem(content)
        for block, p in zip(self.res, params):
            x = block(x, p)
        for block, p in zip(self.ups, params[len(self.res):]):
            x = block(upsample2x(x), p)
        return torch.tanh(self.to_rgb(x))
