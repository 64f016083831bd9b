"""FUNIT's few-shot generator (Liu et al. 2019, NVlabs/FUNIT `FewShotGen`) as G2G networks: content
encoder, class encoder and AdaIN decoder. Loading NVIDIA's published checkpoints into them is
networks/funit_checkpoint.py.

The computation is FewShotGen's; the code is ours. Reflect padding lives inside the convolutions
(`padding_mode="reflect"`), and the AdaIN parameters are a forward argument of the decoder instead of
being assigned to its layers before each call. Parameter names therefore differ from NVIDIA's
(`funit_checkpoint.funit_key_map` pairs them one to one).
"""
from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import adain, init_kaiming, instance_norm, upsample2x


def reflect_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """FUNIT's Conv2dBlock convolution: reflect padding of (kernel − 1) // 2 (3 for 7×7, 1 for 4×4/2)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, padding_mode="reflect")


def _in_relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(instance_norm(x))  # instance norm without affine parameters, eps 1e-5 (nn.InstanceNorm2d)


class FunitResBlock(nn.Module):
    """conv → IN → ReLU → conv → IN, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.conv2 = reflect_conv(channels, channels, 3), reflect_conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + instance_norm(self.conv2(_in_relu(self.conv1(x))))


class FunitAdaIN(nn.Module):
    """FUNIT's AdaIN: instance normalisation, then the per-sample affine map given in `params` (B, 2C),
    ordered [bias | scale] as FUNIT's MLP emits them (its "mean" then "std"); the scale is used as is.

    FUNIT's layer keeps running statistics in its state dict but always normalises with the instance's
    own; they are held here, unused, so that checkpoints convert key for key in both directions."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        bias, scale = params.split(self.channels, dim=1)
        return adain(x, scale, bias)


class FunitAdaINResBlock(nn.Module):
    """conv → AdaIN → ReLU → conv → AdaIN, plus the input. params (B, 4C): [first | second AdaIN]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.conv2 = reflect_conv(channels, channels, 3), reflect_conv(channels, channels, 3)
        self.norm1, self.norm2 = FunitAdaIN(channels), FunitAdaIN(channels)
        self.n_params = 4 * channels

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        p1, p2 = params.chunk(2, dim=1)
        return x + self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x), p1))), p2)


class FunitContentEncoder(nn.Module):
    """Image (B, C, H, W) → content code (B, nf·2**n_downs, H / 2**n_downs, W / 2**n_downs).
    7×7 conv, n_downs 4×4 stride-2 convs doubling the width, n_res residual blocks; IN + ReLU throughout."""

    def __init__(self, in_channels: int = 3, nf: int = 64, n_downs: int = 3, n_res: int = 2):
        super().__init__()
        widths = [nf * 2 ** i for i in range(n_downs + 1)]
        self.convs = nn.ModuleList([reflect_conv(in_channels, nf, 7)] +
                                   [reflect_conv(a, b, 4, 2) for a, b in zip(widths, widths[1:])])
        self.res = nn.ModuleList(FunitResBlock(widths[-1]) for _ in range(n_res))
        self.out_channels = widths[-1]
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = _in_relu(conv(x))
        for block in self.res:
            x = block(x)
        return x


class FunitClassEncoder(nn.Module):
    """Image (B, C, H, W) → class code (B, latent_dim); references (B, K, C, H, W) → mean code over K.
    7×7 conv, two 4×4 stride-2 convs doubling the width, n_downs − 2 more at that width (ReLU, no
    normalisation), global average pooling, 1×1 conv."""

    def __init__(self, in_channels: int = 3, nf: int = 64, n_downs: int = 4, latent_dim: int = 64):
        super().__init__()
        widths = [nf, 2 * nf] + [4 * nf] * (n_downs - 1)
        self.convs = nn.ModuleList([reflect_conv(in_channels, nf, 7)] +
                                   [reflect_conv(a, b, 4, 2) for a, b in zip(widths, widths[1:])])
        self.head = nn.Conv2d(widths[-1], latent_dim, 1)  # 1×1 conv as in FUNIT: its weights load as they are
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # (B, K, C, H, W): K references of one class each; FUNIT averages their codes
            b, k = x.shape[:2]
            return self.forward(x.flatten(0, 1)).view(b, k, -1).mean(dim=1)
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.head(x.mean(dim=(2, 3), keepdim=True)).flatten(1)  # (B, latent_dim)


class FunitDecoder(nn.Module):
    """content (B, C, h, w) + class code (B, latent_dim) → image (B, out_channels, h·2**n_ups, w·2**n_ups).

    n_res AdaIN residual blocks, then n_ups × (nearest 2× upsampling, 5×5 conv halving the width, IN,
    ReLU), 7×7 conv, tanh. The MLP maps the class code to every AdaIN parameter at once; they are split per
    layer in FUNIT's assignment order (block by block, first then second AdaIN, each [bias | scale])."""

    def __init__(self, content_channels: int = 512, latent_dim: int = 64, n_ups: int = 3, n_res: int = 2,
                 mlp_dim: int = 256, n_mlp: int = 3, out_channels: int = 3):
        super().__init__()
        ch = content_channels
        blocks = [FunitAdaINResBlock(ch) for _ in range(n_res)]
        self.res = nn.ModuleList(blocks)
        self.ups = nn.ModuleList(reflect_conv(ch // 2 ** i, ch // 2 ** (i + 1), 5) for i in range(n_ups))
        self.to_rgb = reflect_conv(ch // 2 ** n_ups, out_channels, 7)
        dims = [latent_dim] + [mlp_dim] * (n_mlp - 1) + [sum(b.n_params for b in blocks)]
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        init_kaiming(self)

    def adain_params(self, class_code: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) → (B, n_res, 4C): the AdaIN parameters of each residual block."""
        x = class_code
        for i, linear in enumerate(self.mlp):
            x = linear(x) if i == len(self.mlp) - 1 else F.relu(linear(x))
        return x.view(x.shape[0], len(self.res), -1)

    def forward(self, content: torch.Tensor, class_code: torch.Tensor) -> torch.Tensor:
        params = self.adain_params(class_code)
        x = content
        for j, block in enumerate(self.res):
            x = block(x, params[:, j])
        for conv in self.ups:
            x = _in_relu(upsample_conv5(x, cast(nn.Conv2d, conv)))
        return torch.tanh(self.to_rgb(x))


# the taps of a 5-tap filter that fall on low-resolution samples p−1, p, p+1 after nearest 2× upsampling,
# for even (2p) and odd (2p+1) output positions: (phase, low-res tap, high-res tap)
_PHASE_TAPS = torch.tensor([[[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]],
                            [[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]]], dtype=torch.float32)


def upsample_conv5(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(upsample2x(x)) for FUNIT's 5×5 reflect-padded convolution, at 9/25 of the FLOPs.

    After nearest upsampling, each of the four output phases (even/odd row × even/odd column) is a 3×3
    convolution of the low-resolution input with summed taps of the 5×5 kernel: one convolution with 4×
    the output channels, then a pixel shuffle. Reflect padding of the upsampled map differs from
    upsampling the reflect-padded input in one row and column at each border, so the two output rows and
    columns along each border are computed the direct way, from thin slices. (B, C, h, w) → (B, C', 2h, 2w)."""
    w, b = conv.weight, conv.bias
    h_in, w_in = x.shape[-2:]
    if min(h_in, w_in) < 2 or conv.kernel_size != (5, 5) or conv.padding_mode != "reflect":
        return conv(upsample2x(x))
    taps = _PHASE_TAPS.to(w)
    # (C', C, 5, 5) → (C', 2, 2, C, 3, 3): phase (ry, rx) kernel = taps[ry] · W · taps[rx]ᵀ
    k = torch.einsum("yah,oihw,xbw->oyxiab", taps, w, taps).reshape(-1, w.shape[1], 3, 3)
    y = F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k,
                                 None if b is None else b.repeat_interleave(4)), 2)

    def direct(part: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
        return F.conv2d(F.pad(upsample2x(part), pad, mode="reflect"), w, b)

    # two input rows (four upsampled, two reflected) give exactly the two border rows; columns alike
    y[..., :2, :] = direct(x[..., :2, :], (2, 2, 2, 0))
    y[..., -2:, :] = direct(x[..., -2:, :], (2, 2, 0, 2))
    y[..., :, :2] = direct(x[..., :, :2], (2, 0, 2, 2))
    y[..., :, -2:] = direct(x[..., :, -2:], (0, 2, 2, 2))
    return y
