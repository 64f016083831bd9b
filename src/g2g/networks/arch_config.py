"""Generator architecture configs: the fields every architecture shares, a registry of the
architectures (each registers its own config class and builder, networks/archs.py), and parsing of the
config dict that travels with exported weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ClassVar

from torch import nn

from .identity import FEATURE_DIM

CLASS_ENCODERS = ("learned", "vggface2")
ARCHS: dict[str, type["ArchConfig"]] = {}  # arch name → its config class (which builds the networks)


@dataclass(frozen=True)
class ArchConfig:
    """Fields of every architecture. Counts (n_*) may be 0; sizes and widths must be positive."""

    arch: str = "g2g"             # the architecture: a key of ARCHS
    image_size: int = 32          # input and output side in pixels
    channels: int = 3             # image channels
    nf: int = 32                  # base width of all three networks
    n_downs_content: int = 2      # content code side = image_size / 2**n_downs_content
    content_channels: int = 2     # content code channels: the bottleneck
    n_res_content: int = 1        # residual blocks in the content encoder
    n_downs_class: int = 3        # downsamplings of the class encoder before global pooling
    class_dim: int = 64           # class code length
    class_encoder: str = "learned"  # "learned" (the arch's E_B) or "vggface2" (the frozen VGGFace2 ResNet-50:
                                    # class_dim is then 2048; its weights are part of an exported model)

    name: ClassVar[str] = ""      # the registry key of a concrete architecture

    def __post_init__(self) -> None:
        bad = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.type in (int, "int") and not (
            isinstance(getattr(self, f.name), int) and getattr(self, f.name) >= (0 if f.name.startswith("n_") else 1))]
        if bad:
            raise ValueError(f"generator config needs integers >= 1 (>= 0 for n_* counts), got {', '.join(bad)}")
        if self.arch != self.name:
            raise ValueError(f"arch {self.arch!r} given to the config of arch {self.name!r}: use generator_config()")
        if self.class_encoder not in CLASS_ENCODERS:
            raise ValueError(f"class_encoder must be one of {', '.join(CLASS_ENCODERS)}, not {self.class_encoder!r}")
        if self.class_encoder == "vggface2":  # pool5 features of the identity network are the class code
            object.__setattr__(self, "class_dim", FEATURE_DIM)
        if self.image_size % 2 ** self.n_downs_content:
            raise ValueError(f"image_size {self.image_size} is not divisible by "
                             f"2**n_downs_content = {2 ** self.n_downs_content}")
        self.validate()

    def validate(self) -> None:
        """Checks of an architecture's own fields (one-line ValueErrors)."""

    def build(self, learned: bool = True) -> tuple[nn.Module, nn.Module | None, nn.Module]:
        """(content encoder, class encoder, decoder), built in this order (the order of the random
        initialisation); the class encoder is None when not `learned` (a frozen network replaces it)."""
        raise NotImplementedError

    @property
    def content_shape(self) -> tuple[int, ...]:
        side = self.image_size // 2 ** self.n_downs_content
        return (self.content_channels, side, side)

    @property
    def pose_fit_steps(self) -> int:
        """Steps of the inference-time pose fit (arch sprite); 0 for the others."""
        return 0

    @property
    def crops(self) -> bool:
        """Whether input images are centre-cropped to a square (FUNIT's models resize both sides)."""
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(name: str) -> Callable[[type[ArchConfig]], type[ArchConfig]]:
    def add(cls: type[ArchConfig]) -> type[ArchConfig]:
        cls.name = name
        ARCHS[name] = cls
        return cls
    return add


def config_from_dict(d: dict[str, Any], legacy: bool = False) -> ArchConfig:
    """The config of `d["arch"]` (default "g2g") from a plain dict. Keys that this architecture does not
    have are an error, except with `legacy`: configs exported with every architecture's fields in one flat
    set carry the other architectures' (unused) keys, which are dropped."""
    if not isinstance(d, dict):
        raise ValueError(f"a generator config is a mapping of keys to values, not {type(d).__name__}")
    arch = d.get("arch", "g2g")
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, not {arch!r}")
    cls = ARCHS[arch]
    known = {f.name for f in fields(cls)}
    if legacy:
        others = {f.name for c in ARCHS.values() for f in fields(c)}
        d = {k: v for k, v in d.items() if k in known or k not in others}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"generator keys {unknown} are not options of arch {arch!r}; its keys: {sorted(known)}")
    return cls(**{**d, "arch": arch})


def generator_config(**kwargs: Any) -> ArchConfig:
    """`config_from_dict(kwargs)`: e.g. generator_config(arch="sprite", n_fit=2)."""
    return config_from_dict(kwargs)
