"""Building blocks shared by the encoders, decoders and discriminators.

Conditioning is always a forward argument: `AdaIN.forward(x, params)` receives the per-sample scale and
bias it applies, so a decoder is a pure function of (content code, class code) with no hidden state.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Instance normalisation without affine parameters (F.instance_norm, nn.InstanceNorm2d), computed as
    group normalisation with one group per channel: the same function, 2-3x faster forward + backward
    on CPU, and channels-last stays channels-last (F.instance_norm copies it to contiguous and back).

    Under autocast a half-precision input stays half precision: autocast would run the norm in fp32, i.e.
    cast its input up and its output back down for the next convolution, two full-size copies per norm
    (a fifth of the 128 px cyclefunit step's GPU time); the kernel accumulates its statistics in fp32
    either way."""
    if x.dtype in (torch.bfloat16, torch.float16) and torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x, x.shape[1], eps=eps)
    return F.group_norm(x, x.shape[1], eps=eps)


class InstanceNorm(nn.Module):
    """nn.InstanceNorm2d(channels) (no affine parameters, no running statistics) through instance_norm."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "in":
        return InstanceNorm(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use 'in', 'bn' or 'none'")


def _activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}: use 'relu', 'lrelu' or 'none'")


class ConvBlock(nn.Sequential):
    """Same-padded convolution → normalisation → activation. Zero padding: on CPU a separate
    reflection-pad layer cost ~10 % of a training step (its backward pass) for no measurable gain."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 norm: str = "none", activation: str = "relu"):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2),
            _norm(norm, out_ch),
            _activation(activation),
        )


class ResBlock(nn.Module):
    """Two 3×3 convolutions with a skip connection; normalisation as given."""

    def __init__(self, channels: int, norm: str = "in", activation: str = "relu"):
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(channels, channels, 3, norm=norm, activation=activation),
            ConvBlock(channels, channels, 3, norm=norm, activation="none"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation: normalise each channel of each sample, then apply the given
    per-sample affine parameters. x: (B, C, H, W); scale, bias: (B, C). The affine map is one fused
    multiply-add (addcmul), one pass over the map instead of two."""
    return torch.addcmul(bias[:, :, None, None], instance_norm(x, eps), scale[:, :, None, None])


class AdaIN(nn.Module):
    """AdaIN as a module. `params` (B, 2C) holds [scale | bias]; the scale is predicted around 1 so that
    a zero-initialised predictor starts as plain instance normalisation. normalize=False gives FiLM
    (the same per-sample affine map without the instance normalisation)."""

    def __init__(self, channels: int, normalize: bool = True):
        super().__init__()
        self.channels = channels
        self.normalize = normalize

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        scale, bias = params.split(self.channels, dim=1)
        if self.normalize:
            return adain(x, 1.0 + scale, bias)
        return x * (1.0 + scale[:, :, None, None]) + bias[:, :, None, None]


class AdaINConv(nn.Module):
    """3×3 convolution → AdaIN(class) → activation: the decoder's conditioned unit."""

    def __init__(self, in_ch: int, out_ch: int, activation: str = "relu", normalize: bool = True):
        super().__init__()
        self.conv = ConvBlock(in_ch, out_ch, 3, activation="none")
        self.adain = AdaIN(out_ch, normalize)
        self.act = _activation(activation)
        self.n_params = 2 * out_ch

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return self.act(self.adain(self.conv(x), params))


class AdaINResBlock(nn.Module):
    """Residual block whose two convolutions are both conditioned through AdaIN (FUNIT's decoder block)."""

    def __init__(self, channels: int, normalize: bool = True):
        super().__init__()
        self.first = AdaINConv(channels, channels, activation="relu", normalize=normalize)
        self.second = AdaINConv(channels, channels, activation="none", normalize=normalize)
        self.n_params = self.first.n_params + self.second.n_params

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        p1, p2 = params.split([self.first.n_params, self.second.n_params], dim=1)
        return x + self.second(self.first(x, p1), p2)


class MLP(nn.Module):
    """Fully connected stack: in → hidden (n_blocks − 1 times, ReLU) → out."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, n_blocks: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (n_blocks - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def init_kaiming(module: nn.Module) -> None:
    """FUNIT's `kaiming` initialisation: He-normal (fan-in) weights and zero biases for every convolution
    and linear layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
