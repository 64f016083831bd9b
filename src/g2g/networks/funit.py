"""FUNIT's few-shot generator (Liu et al. 2019, NVlabs/FUNIT `FewShotGen`) as G2G networks, and loading
NVIDIA's published generator checkpoints into them (SPEC §5.3).

The computation is FewShotGen's; the code is ours. Reflect padding lives inside the convolutions
(`padding_mode="reflect"`), and the AdaIN parameters are a forward argument of the decoder instead of
being assigned to its layers before each call. Parameter names therefore differ from NVIDIA's;
`funit_key_map` pairs every tensor of ours with one of FewShotGen's, one to one:

    ours (arch "funit")                FewShotGen
    content_encoder.convs.{i}          enc_content.model.{i}.conv          i = 0 (7×7), 1…n_downs (4×4/2)
    content_encoder.res.{j}.conv{k}    enc_content.model.{n_downs+1}.model.{j}.model.{k-1}.conv
    class_encoder.convs.{i}            enc_class_model.model.{i}.conv      i = 0 (7×7), 1…n_downs (4×4/2)
    class_encoder.head                 enc_class_model.model.{n_downs+2}   (model.{n_downs+1}: the pooling)
    decoder.res.{j}.conv{k}            dec.model.0.model.{j}.model.{k-1}.conv
    decoder.res.{j}.norm{k}.running_*  dec.model.0.model.{j}.model.{k-1}.norm.running_*   (unused)
    decoder.ups.{i}                    dec.model.{2i+2}.conv               (dec.model.{2i+1}: upsampling)
    decoder.to_rgb                     dec.model.{2·n_downs+1}.conv
    decoder.mlp.{i}                    mlp.model.{i}.fc

(each row covers `.weight` and `.bias`). Checkpoint files hold `{'gen': state dict, 'gen_test': state
dict}`: `gen_test` is the EMA generator FUNIT uses for inference, `gen` the one it trains.
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import adain, init_kaiming, instance_norm, upsample2x

if TYPE_CHECKING:
    from .generator import Generator, GeneratorConfig

# SPEC §5.3 / FUNIT `configs/funit_animals.yaml` as GeneratorConfig arguments:
# nf 64, n_res_blks 2, nf_mlp 256, latent_dim 64, n_mlp_blks 3, n_downs_content 3, n_downs_class 4; 128 px.
FUNIT_ANIMALS = dict(arch="funit", image_size=128, channels=3, nf=64, n_downs_content=3, n_res_content=2,
                     n_downs_class=4, class_dim=64, n_res_decoder=2, mlp_dim=256, n_mlp=3)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """FUNIT's Conv2dBlock convolution: reflect padding of (kernel − 1) // 2 (3 for 7×7, 1 for 4×4/2)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, padding_mode="reflect")


def _in_relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(instance_norm(x))  # instance norm without affine parameters, eps 1e-5 (nn.InstanceNorm2d)


class FunitResBlock(nn.Module):
    """conv → IN → ReLU → conv → IN, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.conv2 = _conv(channels, channels, 3), _conv(channels, channels, 3)

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
        self.conv1, self.conv2 = _conv(channels, channels, 3), _conv(channels, channels, 3)
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
        self.convs = nn.ModuleList([_conv(in_channels, nf, 7)] +
                                   [_conv(a, b, 4, 2) for a, b in zip(widths, widths[1:])])
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
        self.convs = nn.ModuleList([_conv(in_channels, nf, 7)] +
                                   [_conv(a, b, 4, 2) for a, b in zip(widths, widths[1:])])
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
        self.res = nn.ModuleList(FunitAdaINResBlock(ch) for _ in range(n_res))
        self.ups = nn.ModuleList(_conv(ch // 2 ** i, ch // 2 ** (i + 1), 5) for i in range(n_ups))
        self.to_rgb = _conv(ch // 2 ** n_ups, out_channels, 7)
        dims = [latent_dim] + [mlp_dim] * (n_mlp - 1) + [sum(b.n_params for b in self.res)]
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
            x = _in_relu(upsample_conv5(x, conv))
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


# ---- NVIDIA's FewShotGen state dicts ↔ ours ----

def funit_key_map(config: GeneratorConfig) -> dict[str, str]:
    """Our state-dict key → FewShotGen's, for a generator of this config (arch "funit"); the table in
    this module's docstring, spelled out."""
    c, nd, ndc = config, config.n_downs_content, config.n_downs_class
    pairs: dict[str, str] = {}

    def conv(ours: str, theirs: str) -> None:
        pairs[f"{ours}.weight"], pairs[f"{ours}.bias"] = f"{theirs}.weight", f"{theirs}.bias"

    for i in range(nd + 1):
        conv(f"content_encoder.convs.{i}", f"enc_content.model.{i}.conv")
    for j in range(c.n_res_content):
        for k in (1, 2):
            conv(f"content_encoder.res.{j}.conv{k}",
                 f"enc_content.model.{nd + 1}.model.{j}.model.{k - 1}.conv")
    for i in range(ndc + 1):
        conv(f"class_encoder.convs.{i}", f"enc_class_model.model.{i}.conv")
    conv("class_encoder.head", f"enc_class_model.model.{ndc + 2}")
    for j in range(c.n_res_decoder):
        for k in (1, 2):
            theirs = f"dec.model.0.model.{j}.model.{k - 1}"
            conv(f"decoder.res.{j}.conv{k}", f"{theirs}.conv")
            for stat in ("running_mean", "running_var"):
                pairs[f"decoder.res.{j}.norm{k}.{stat}"] = f"{theirs}.norm.{stat}"
    for i in range(nd):
        conv(f"decoder.ups.{i}", f"dec.model.{2 * i + 2}.conv")
    conv("decoder.to_rgb", f"dec.model.{2 * nd + 1}.conv")
    for i in range(c.n_mlp):
        conv(f"decoder.mlp.{i}", f"mlp.model.{i}.fc")
    return pairs


def funit_config_from_state_dict(state: Mapping[str, torch.Tensor], image_size: int = 128) -> GeneratorConfig:
    """Read the architecture of a FewShotGen state dict from its keys and shapes (`image_size` is not
    stored in it: 128 is what FUNIT's animal models were trained and tested at)."""
    from .generator import GeneratorConfig

    def count(pattern: str) -> int:
        n = 0
        while pattern.format(n) in state:
            n += 1
        return n

    try:
        nf, channels = state["enc_content.model.0.conv.weight"].shape[:2]
        nd = count("enc_content.model.{}.conv.weight") - 1
        ndc = count("enc_class_model.model.{}.conv.weight") - 1
        class_dim = state[f"enc_class_model.model.{ndc + 2}.weight"].shape[0]
        mlp_dim = state["mlp.model.0.fc.weight"].shape[0]
    except (KeyError, AttributeError, IndexError, ValueError) as e:
        raise ValueError(f"not a FUNIT FewShotGen state dict (no usable {e})") from None
    return GeneratorConfig(arch="funit", image_size=image_size, channels=int(channels), nf=int(nf),
                           n_downs_content=nd, n_downs_class=ndc, class_dim=int(class_dim),
                           n_res_content=count(f"enc_content.model.{nd + 1}.model.{{}}.model.0.conv.weight"),
                           n_res_decoder=count("dec.model.0.model.{}.model.0.conv.weight"),
                           mlp_dim=int(mlp_dim), n_mlp=count("mlp.model.{}.fc.weight"))


def load_funit_state_dict(gen: Generator, state: Mapping[str, torch.Tensor],
                          source: str = "state dict") -> Generator:
    """Copy a FewShotGen state dict into `gen` (arch "funit") by key mapping. A missing, misshaped or
    unexpected key raises a one-line ValueError that names it (NVIDIA's name) and `source`."""
    if gen.config.arch != "funit":
        raise ValueError(f"{source}: FUNIT weights need a generator of arch 'funit', not {gen.config.arch!r}")
    ours = gen.state_dict()
    pairs = funit_key_map(gen.config)
    converted = {}
    for mine, theirs in pairs.items():
        if theirs not in state:
            raise ValueError(f"{source}: missing key {theirs!r} (expected by a FUNIT generator with "
                             f"nf {gen.config.nf}, n_downs_content {gen.config.n_downs_content})")
        t = state[theirs]
        if not isinstance(t, torch.Tensor) or t.shape != ours[mine].shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{source}: key {theirs!r} has shape {got}, expected {tuple(ours[mine].shape)}")
        converted[mine] = t.to(torch.float32).contiguous()
    extra = sorted(set(state) - set(pairs.values()))
    if extra:
        raise ValueError(f"{source}: unexpected key {extra[0]!r} ({len(extra)} in all): "
                         f"not a FUNIT generator of this architecture")
    gen.load_state_dict(converted, assign=any(t.is_meta for t in ours.values()))
    return gen


def to_funit_state_dict(gen: Generator) -> dict[str, torch.Tensor]:
    """Our weights under FewShotGen's names: what NVIDIA's code loads with `load_state_dict`."""
    ours = gen.state_dict()
    return {theirs: ours[mine] for mine, theirs in funit_key_map(gen.config).items()}


def read_funit_checkpoint(path: str | Path, which: str = "gen_test") -> dict[str, torch.Tensor]:
    """One state dict of a FUNIT generator checkpoint (torch.save of {'gen': ..., 'gen_test': ...}), read
    without unpickling code (weights_only). which: 'gen_test' (EMA, for inference) or 'gen' (training)."""
    if which not in ("gen", "gen_test"):
        raise ValueError(f"which must be 'gen' or 'gen_test', not {which!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FUNIT checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path} is not a safetensors model file, and as a torch file it was refused "
                         f"(weights_only unpickling: {first}); give a model written by `g2g export`") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path} is not a readable torch file ({str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, Mapping) or which not in ckpt:
        hint = (" (a G2G training checkpoint: export it first with `g2g export`)"
                if isinstance(ckpt, Mapping) and "state_dict" in ckpt else "")
        raise ValueError(f"{path} is not a safetensors model file nor a FUNIT generator checkpoint (no {which!r} "
                         f"entry){hint or '; give a model written by `g2g export`'}")
    if not isinstance(ckpt[which], Mapping):
        raise ValueError(f"{path}: {which!r} is a {type(ckpt[which]).__name__}, not a state dict")
    return ckpt[which]


def load_funit_checkpoint(path: str | Path, which: str = "gen_test", image_size: int = 128,
                          config: GeneratorConfig | None = None) -> Generator:
    """A Generator (arch "funit") holding one generator of NVIDIA's FUNIT checkpoint. The architecture is
    read from the file unless `config` is given; 'gen_test' is FUNIT's EMA generator, used for inference."""
    from .generator import Generator

    state = read_funit_checkpoint(path, which)
    if config is None:
        try:
            config = funit_config_from_state_dict(state, image_size)
        except ValueError as e:
            raise ValueError(f"{path}[{which!r}]: {e}") from None
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        gen = Generator(config)
    return load_funit_state_dict(gen, state, source=f"{path}[{which!r}]").eval()


def init_from_funit_checkpoint(gen: Generator, path: str | Path, which: str = "gen") -> Generator:
    """Initialise an existing generator (arch "funit", e.g. the one a training module built from its
    config) from a FUNIT checkpoint, in place. For training (an `init_from: PATH` option), load 'gen' into
    the trained generator and 'gen_test' into its EMA copy, as FUNIT's own resume does."""
    return load_funit_state_dict(gen, read_funit_checkpoint(path, which), source=f"{path}[{which!r}]")
