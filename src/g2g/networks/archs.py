"""The generator architectures: each is a config class (its fields beyond `ArchConfig`'s, its checks)
that builds its content encoder E_A, class encoder E_B and decoder G.

- `g2g`: this package's networks: a spatial content code and an AdaIN (or FiLM) decoder.
- `funit`: FUNIT's FewShotGen layout (loads NVIDIA's published checkpoints).
- `lord`: LORD-style vector codes (the `naive` preset).
- `sprite`: one object on a plain background: the content code is a pose that places a template drawn
  from the class code (the `g2g` preset on the built-in data)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .arch_config import ArchConfig, register
from .decoders import AdaINDecoder
from .encoders import CLASS_POOLS, ClassEncoder, ContentEncoder
from .funit import FunitClassEncoder, FunitContentEncoder, FunitDecoder
from .lord import LordDecoder, VectorEncoder
from .sprite import LAYOUT_VIEWS, LayoutPaletteEncoder, PoseEncoder, SpriteDecoder, pose_dim


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


@register("g2g")
@dataclass(frozen=True)
class G2GArch(ArchConfig):
    """Spatial content code (content_channels × image_size/2**n_downs_content²) and a decoder whose
    residual blocks are conditioned on the class code through an MLP."""

    arch: str = "g2g"
    n_res_decoder: int = 2        # AdaIN residual blocks at the content code's resolution
    mlp_dim: int = 128            # hidden width of the class code → AdaIN parameter MLP
    n_mlp: int = 2                # linear layers of that MLP
    class_pool: str = "mean"      # the class encoder's global pooling: "mean" or "max"
    max_channels: int = 256       # channel cap in all three networks
    decoder_norm: str = "adain"   # "adain" (normalise, then class-conditioned affine) or "film" (affine only)
    content_norm: bool = False    # instance-normalise the content code (per channel and image)
    content_centre: bool = False  # subtract the mean content code of other images of the image's class
    n_content_levels: int = 0     # ≥ 2: each content number rounded to this many values in [-1, 1]; 0: continuous

    def validate(self) -> None:
        _check_choice("class_pool", self.class_pool, CLASS_POOLS)
        _check_choice("decoder_norm", self.decoder_norm, ("adain", "film"))
        if self.n_content_levels == 1:
            raise ValueError("n_content_levels must be 0 (a continuous content code) or at least 2, not 1")

    def build(self, learned: bool = True) -> tuple[nn.Module, nn.Module | None, nn.Module]:
        content = ContentEncoder(self.channels, self.nf, self.n_downs_content, self.n_res_content,
                                 self.content_channels, self.max_channels, self.content_norm,
                                 self.n_content_levels)
        klass = ClassEncoder(self.channels, self.nf, self.n_downs_class, self.class_dim, self.max_channels,
                             self.class_pool) if learned else None
        decoder = AdaINDecoder(self.content_channels, self.class_dim, self.nf, self.n_downs_content,
                               self.n_res_decoder, self.mlp_dim, self.n_mlp, self.channels, self.max_channels,
                               normalize=self.decoder_norm == "adain")
        return content, klass, decoder


@register("funit")
@dataclass(frozen=True)
class FunitArch(ArchConfig):
    """FUNIT's FewShotGen. FUNIT's hyper-parameters by their names here: nf, n_res_blks = n_res_content =
    n_res_decoder, nf_mlp = mlp_dim, latent_dim = class_dim, n_mlp_blks = n_mlp, n_downs_content,
    n_downs_class. The content code is the content encoder's last feature map (content_channels is
    derived: nf · 2**n_downs_content)."""

    arch: str = "funit"
    n_res_decoder: int = 2        # AdaIN residual blocks of the decoder
    mlp_dim: int = 128            # hidden width of the class code → AdaIN parameter MLP
    n_mlp: int = 2                # linear layers of that MLP

    def validate(self) -> None:
        if self.n_downs_class < 2 or self.n_mlp < 2 or self.n_res_decoder < 1:
            raise ValueError("arch 'funit' needs n_downs_class >= 2, n_mlp >= 2 and n_res_decoder >= 1 "
                             "(FUNIT's FewShotGen has no other forms)")
        object.__setattr__(self, "content_channels", self.nf * 2 ** self.n_downs_content)

    @property
    def crops(self) -> bool:
        return False

    def build(self, learned: bool = True) -> tuple[nn.Module, nn.Module | None, nn.Module]:
        content = FunitContentEncoder(self.channels, self.nf, self.n_downs_content, self.n_res_content)
        klass = FunitClassEncoder(self.channels, self.nf, self.n_downs_class, self.class_dim) if learned else None
        decoder = FunitDecoder(self.content_channels, self.class_dim, self.n_downs_content, self.n_res_decoder,
                               self.mlp_dim, self.n_mlp, self.channels)
        return content, klass, decoder


@register("lord")
@dataclass(frozen=True)
class LordArch(ArchConfig):
    """Vector content and class codes (content_channels and class_dim numbers) and a decoder that grows
    the image from a learned constant."""

    arch: str = "lord"
    n_res_decoder: int = 2        # upsampling blocks of the decoder: image_size / 2**n_res_decoder at the start
    mlp_dim: int = 128            # hidden width of the decoder's code MLP
    max_channels: int = 256       # channel cap in all three networks

    def validate(self) -> None:
        for name in ("n_downs_class", "n_res_decoder"):
            if self.image_size % 2 ** getattr(self, name):
                raise ValueError(f"image_size {self.image_size} is not divisible by 2**{name} = "
                                 f"{2 ** getattr(self, name)}")

    @property
    def content_shape(self) -> tuple[int, ...]:
        return (self.content_channels,)

    def build(self, learned: bool = True) -> tuple[nn.Module, nn.Module | None, nn.Module]:
        content = VectorEncoder(self.channels, self.nf, self.n_downs_content, self.content_channels,
                                self.image_size, self.max_channels)
        klass = VectorEncoder(self.channels, self.nf, self.n_downs_class, self.class_dim, self.image_size,
                              self.max_channels) if learned else None
        decoder = LordDecoder(self.content_channels, self.class_dim, self.image_size, self.n_res_decoder,
                              self.mlp_dim, self.channels)
        return content, klass, decoder


@register("sprite")
@dataclass(frozen=True)
class SpriteArch(ArchConfig):
    """The content code is a pose (position, scale, rotation, background colour) read from a
    content_channels-deep map; the class code draws an RGBA template that the pose places."""

    arch: str = "sprite"
    mlp_dim: int = 128            # hidden width of the pose head and of the class code → template MLP
    max_channels: int = 256       # channel cap of the encoders
    class_pool: str = "mean"      # the class encoder's global pooling: "mean" or "max"
    n_refine: int = 1             # passes that re-read the pose in the object's canonical view (0: none)
    n_fit: int = 0                # Gauss–Newton steps that fit the class template to the image at inference
                                  # (eval mode), refining the encoder's pose (0: the encoder's pose)
    pose_leak: float = 0.0        # each pose bound is tanh(r) + pose_leak · r (0: plain tanh)
    n_parts: int = 0              # 0: a free colour template; P > 0: a layout from the class code's first half
                                  # (read through layout_view), a palette of P colours from its second half
    layout_view: str = "sorted"   # n_parts > 0: what the layout half reads: "sorted" (each pixel's channels
                                  # sorted: hue-blind), "edges" (colour-gradient magnitude) or "figure"
                                  # (edges and the distance from the border's colour)

    def validate(self) -> None:
        _check_choice("class_pool", self.class_pool, CLASS_POOLS)
        _check_choice("layout_view", self.layout_view, LAYOUT_VIEWS)
        if not self.pose_leak >= 0:
            raise ValueError(f"pose_leak must be >= 0 (0: plain tanh bounds), got {self.pose_leak!r}")

    @property
    def content_shape(self) -> tuple[int, ...]:
        return (pose_dim(self.channels),)

    @property
    def pose_fit_steps(self) -> int:
        return self.n_fit

    def build(self, learned: bool = True) -> tuple[nn.Module, nn.Module | None, nn.Module]:
        content = PoseEncoder(self.channels, self.nf, self.n_downs_content, self.n_res_content,
                              self.content_channels, self.image_size, self.mlp_dim, self.max_channels,
                              self.n_refine, self.pose_leak)
        klass: nn.Module | None = None
        if learned and self.n_parts:
            klass = LayoutPaletteEncoder(self.channels, self.nf, self.n_downs_class,
                                         self.class_dim - self.class_dim // 2, self.class_dim // 2,
                                         self.max_channels, self.layout_view, self.class_pool)
        elif learned:
            klass = ClassEncoder(self.channels, self.nf, self.n_downs_class, self.class_dim, self.max_channels,
                                 self.class_pool)
        decoder = SpriteDecoder(self.class_dim, self.image_size, self.channels, self.mlp_dim, parts=self.n_parts)
        return content, klass, decoder
