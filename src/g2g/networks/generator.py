"""The G2G generator: content encoder E_A, class encoder E_B and AdaIN decoder G, built from one
typed config that travels with the weights (an exported model needs nothing else). `arch` picks the
networks: this package's (`g2g`), FUNIT's FewShotGen (`funit`, networks/funit.py), which loads
NVIDIA's published checkpoints, LORD-style vector-code networks (`lord`, networks/lord.py, the `naive`
preset), or a sprite decoder for one object on a plain background (`sprite`, networks/sprite.py: the
content code is a pose, the class code draws the object; the `g2g` preset on `shapes`).
`class_encoder: vggface2` replaces E_B by the frozen VGGFace2 identity network (2048-d codes)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .decoders import AdaINDecoder
from .encoders import CLASS_POOLS, ClassEncoder, ContentEncoder
from .funit import FunitClassEncoder, FunitContentEncoder, FunitDecoder
from .identity import FEATURE_DIM, IdentityNet
from .lord import LordDecoder, VectorEncoder
from .sprite import LAYOUT_VIEWS, LayoutPaletteEncoder, PoseEncoder, SpriteDecoder, fit_pose, pose_dim

ARCHS = ("g2g", "funit", "lord", "sprite")
CLASS_ENCODERS = ("learned", "vggface2")


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of the generator. Defaults: the small 32 px model of the `g2g` demo preset.
    FUNIT's hyper-parameters by their names here: nf, n_res_blks = n_res_content = n_res_decoder,
    nf_mlp = mlp_dim, latent_dim = class_dim, n_mlp_blks = n_mlp, n_downs_content, n_downs_class."""

    arch: str = "g2g"             # "g2g", "funit" (FUNIT's FewShotGen layout, loads NVIDIA's checkpoints),
                                  # "lord" (vector codes) or "sprite" (pose code + class template)
    image_size: int = 32          # input and output side in pixels
    channels: int = 3             # image channels
    nf: int = 32                  # base width of all three networks
    n_downs_content: int = 2      # content code side = image_size / 2**n_downs_content
    content_channels: int = 2     # content code channels: the bottleneck (funit: always nf·2**n_downs_content;
                                  # sprite: channels of the pose encoder's last map, the code is the pose)
    n_res_content: int = 1        # residual blocks in the content encoder
    n_downs_class: int = 3        # downsamplings of the class encoder before global pooling
    class_dim: int = 64           # class code length
    n_res_decoder: int = 2        # AdaIN residual blocks at the content code's resolution
    mlp_dim: int = 128            # hidden width of the class code → AdaIN parameter MLP (sprite: of the
                                  # class code → template MLP and of the pose head)
    n_mlp: int = 2                # linear layers of that MLP
    n_refine: int = 1             # sprite: passes that re-read the pose in the object's canonical view (0: none)
    n_fit: int = 0                # sprite: Gauss–Newton steps that fit the class template to the image at
                                  # inference (eval mode), refining the encoder's pose (0: the encoder's pose)
    pose_leak: float = 0.0        # sprite: each pose bound tanh(r) + pose_leak · r, so a saturated pose regains a
                                  # gradient (0: plain tanh)
    n_parts: int = 0              # sprite: 0 = a free colour template; P > 0 = layout from the class code's first
                                  # half (read through layout_view), a palette of P colours from its second half
    layout_view: str = "sorted"   # sprite, n_parts > 0: what the layout half reads: "sorted" (each pixel's
                                  # channels sorted: hue-blind), "edges" (colour-gradient magnitude) or
                                  # "figure" (edges and the distance from the border's colour)
    class_pool: str = "mean"      # g2g, sprite: the class encoder's global pooling, "mean" or "max" (the
                                  # strongest response anywhere: does not grow with the object's area)
    max_channels: int = 256       # channel cap in all networks (g2g only; FUNIT has none)
    decoder_norm: str = "adain"   # "adain" (normalise, then class-conditioned affine) or "film" (affine
                                  # only; g2g only)
    class_encoder: str = "learned"  # "learned" (the arch's E_B) or "vggface2" (the frozen VGGFace2 ResNet-50:
                                    # class_dim is then 2048; its weights are part of an exported model)

    def __post_init__(self):
        # counts (n_*) may be 0, sizes and widths must be positive
        bad = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.type in (int, "int") and not (
            isinstance(getattr(self, f.name), int) and getattr(self, f.name) >= (0 if f.name.startswith("n_") else 1))]
        if bad:
            raise ValueError(f"generator config needs integers >= 1 (>= 0 for n_* counts), got {', '.join(bad)}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, not {self.arch!r}")
        if self.class_encoder not in CLASS_ENCODERS:
            raise ValueError(f"class_encoder must be one of {', '.join(CLASS_ENCODERS)}, not {self.class_encoder!r}")
        if self.class_encoder == "vggface2":  # pool5 features of the identity network are the class code
            object.__setattr__(self, "class_dim", FEATURE_DIM)
        if self.arch == "funit":
            if (self.decoder_norm != "adain" or self.n_downs_class < 2 or self.n_mlp < 2
                    or self.n_res_decoder < 1):
                raise ValueError("arch 'funit' needs decoder_norm 'adain', n_downs_class >= 2, n_mlp >= 2 "
                                 "and n_res_decoder >= 1 (FUNIT's FewShotGen has no other forms)")
            # FUNIT's content code is the content encoder's last feature map: no bottleneck projection
            object.__setattr__(self, "content_channels", self.nf * 2 ** self.n_downs_content)
        if self.arch == "lord":
            if self.decoder_norm != "adain":
                raise ValueError("arch 'lord' needs decoder_norm 'adain'")
            for name in ("n_downs_class", "n_res_decoder"):
                if self.image_size % 2 ** getattr(self, name):
                    raise ValueError(f"image_size {self.image_size} is not divisible by 2**{name} = "
                                     f"{2 ** getattr(self, name)}")
        if not self.pose_leak >= 0:
            raise ValueError(f"pose_leak must be >= 0 (0: plain tanh bounds), got {self.pose_leak!r}")
        if self.class_pool not in CLASS_POOLS:
            raise ValueError(f"class_pool must be one of {', '.join(CLASS_POOLS)}, not {self.class_pool!r}")
        if self.layout_view not in LAYOUT_VIEWS:
            raise ValueError(f"layout_view must be one of {', '.join(LAYOUT_VIEWS)}, not {self.layout_view!r}")
        if self.n_fit and self.arch != "sprite":
            raise ValueError(f"n_fit fits a sprite template to the image: it needs arch 'sprite', not {self.arch!r} "
                             f"(set n_fit 0)")
        if self.arch == "sprite" and self.decoder_norm != "adain":
            raise ValueError("arch 'sprite' has no normalisation choice: leave decoder_norm at 'adain'")
        if self.decoder_norm not in ("adain", "film"):
            raise ValueError(f"decoder_norm must be 'adain' or 'film', not {self.decoder_norm!r}")
        if self.image_size % 2 ** self.n_downs_content:
            raise ValueError(f"image_size {self.image_size} is not divisible by "
                             f"2**n_downs_content = {2 ** self.n_downs_content}")

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def content_shape(self) -> tuple[int, ...]:
        if self.arch == "lord":
            return (self.content_channels,)
        if self.arch == "sprite":
            return (pose_dim(self.channels),)
        side = self.image_size // 2 ** self.n_downs_content
        return (self.content_channels, side, side)


class Generator(nn.Module):
    """E_A, E_B and G with the three primitive operations; the G2G wiring composes them."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig(), class_encoder: nn.Module | None = None):
        """class_encoder: the network for class_encoder 'vggface2' (the loaded identity network), instead
        of a randomly initialised one to load weights into."""
        super().__init__()
        c = config
        self.config = c
        learned = c.class_encoder == "learned"
        if c.arch == "funit":
            self.content_encoder = FunitContentEncoder(c.channels, c.nf, c.n_downs_content, c.n_res_content)
            if learned:
                self.class_encoder = FunitClassEncoder(c.channels, c.nf, c.n_downs_class, c.class_dim)
            self.decoder = FunitDecoder(c.content_channels, c.class_dim, c.n_downs_content, c.n_res_decoder,
                                        c.mlp_dim, c.n_mlp, c.channels)
        elif c.arch == "lord":
            self.content_encoder = VectorEncoder(c.channels, c.nf, c.n_downs_content, c.content_channels,
                                                 c.image_size, c.max_channels)
            if learned:
                self.class_encoder = VectorEncoder(c.channels, c.nf, c.n_downs_class, c.class_dim, c.image_size,
                                                   c.max_channels)
            self.decoder = LordDecoder(c.content_channels, c.class_dim, c.image_size, c.n_res_decoder, c.mlp_dim,
                                       c.channels)
        elif c.arch == "sprite":
            self.content_encoder = PoseEncoder(c.channels, c.nf, c.n_downs_content, c.n_res_content,
                                               c.content_channels, c.image_size, c.mlp_dim, c.max_channels,
                                               c.n_refine, c.pose_leak)
            if learned and c.n_parts:
                self.class_encoder = LayoutPaletteEncoder(c.channels, c.nf, c.n_downs_class,
                                                          c.class_dim - c.class_dim // 2, c.class_dim // 2,
                                                          c.max_channels, c.layout_view, c.class_pool)
            elif learned:
                self.class_encoder = ClassEncoder(c.channels, c.nf, c.n_downs_class, c.class_dim, c.max_channels,
                                                  c.class_pool)
            self.decoder = SpriteDecoder(c.class_dim, c.image_size, c.channels, c.mlp_dim, parts=c.n_parts)
        else:
            self.content_encoder = ContentEncoder(c.channels, c.nf, c.n_downs_content, c.n_res_content,
                                                  c.content_channels, c.max_channels)
            if learned:
                self.class_encoder = ClassEncoder(c.channels, c.nf, c.n_downs_class, c.class_dim, c.max_channels,
                                                  c.class_pool)
            self.decoder = AdaINDecoder(c.content_channels, c.class_dim, c.nf, c.n_downs_content,
                                        c.n_res_decoder, c.mlp_dim, c.n_mlp, c.channels, c.max_channels,
                                        normalize=c.decoder_norm == "adain")
        if not learned:  # frozen, always in eval mode, with the published weights (given, or loaded later)
            self.class_encoder = IdentityNet() if class_encoder is None else class_encoder

    def encode_content(self, x: torch.Tensor, class_code: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) → (B, content_channels, h, w); arch lord: (B, content_channels); sprite: (B, 4 + C).

        Arch sprite with n_fit > 0, in eval mode: the encoder's pose is refined by fitting the template of
        the image's own class code (`class_code`, (B, D), computed from x when not given) to the image;
        the refinement carries no gradient. Training (train mode) uses the encoder's pose alone."""
        content = self.content_encoder(x)
        if self.config.arch == "sprite" and self.config.n_fit and not self.training:
            code = self.encode_class(x) if class_code is None else class_code
            content = content + (fit_pose(self.decoder, x, content, code, self.config.n_fit) - content).detach()
        return content

    def encode_class(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, class_dim); (B, K, 3, H, W) → mean over the K references."""
        if x.dim() == 5:  # K references of one class each, encoded as one batch
            b, k = x.shape[:2]
            return self.class_encoder(x.flatten(0, 1)).view(b, k, -1).mean(dim=1)
        return self.class_encoder(x)

    def decode(self, content: torch.Tensor, class_code: torch.Tensor) -> torch.Tensor:
        """content (B, C, h, w) (arch lord, sprite: (B, C)), class code (B, class_dim) → image (B, 3, H, W)
        in [-1, 1]"""
        return self.decoder(content, class_code)
