"""Exported models: write the EMA generator as safetensors with its config, load it back without
unpickling anything, and use it: encode, decode, swap, grid."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .files import atomic_write
from .models import bundled_names, bundled_path
from .networks.generator import Generator, config_from_dict

CONFIG_KEY = "g2g_generator_config"


def export_generator(gen: Generator, path: str | Path) -> Path:
    """Write `path` (.safetensors, config in its metadata) and `path.json` beside it (the same config,
    for people). The safetensors file alone is enough to rebuild the model."""
    path = Path(path)
    config = json.dumps(gen.config.to_dict(), indent=2)
    tensors = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={CONFIG_KEY: config}))
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(config + "\n"))
    return path


def _resolve(path: str | Path) -> Path:
    """A model file, a folder holding model.safetensors, or the name of a bundled model (`g2g models`);
    a path that exists wins over a name."""
    given = Path(path)
    resolved = given / "model.safetensors" if given.is_dir() else given
    if resolved.exists():
        return resolved
    names = bundled_names()
    if str(path) in names and not given.exists():
        return bundled_path(str(path))
    hint = f", or a bundled model name ({', '.join(names)})" if names else ""
    if str(path) in names:  # an existing folder of that name
        hint += f"; the folder {given} hides the bundled model {path}: `g2g models` shows its file"
    raise FileNotFoundError(f"model file not found: {resolved} (give a .safetensors file written by "
                            f"`g2g export` or `g2g train`, a FUNIT generator checkpoint{hint})")


def _is_torch_file(path: Path) -> bool:
    """torch.save output: a zip archive (torch >= 1.6) or a bare pickle (older files, such as NVIDIA's
    2019 FUNIT checkpoints). A safetensors file starts with an 8-byte header length and then '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    return head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[8:9] != b"{")


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """An exported model (safetensors + config) or NVIDIA's FUNIT generator checkpoint ({'gen',
    'gen_test'}, whose EMA generator 'gen_test' is used), as a Generator in eval mode."""
    path = _resolve(path)
    if path.is_file() and _is_torch_file(path):
        from .networks.funit_checkpoint import load_funit_checkpoint
        return load_funit_checkpoint(path).to(device).eval()
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a safetensors model file ({e}); export one with `g2g export`") from None
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path} has no G2G generator config in its metadata; export it with `g2g export`")
    try:
        config = config_from_dict(json.loads(meta[CONFIG_KEY]), legacy=True)
    except (ValueError, TypeError) as e:  # not JSON, not an object, unknown keys, bad values
        raise ValueError(f"{path} has an unusable G2G generator config ({e}); re-export it with `g2g export`") from None
    gen = Generator(config)
    try:
        missing, unexpected = gen.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes
        first = str(e).strip().splitlines()[-1].strip()
        raise ValueError(f"{path}: weights do not match its config ({first}); re-export it with `g2g export`") from None
    if missing or unexpected:
        raise ValueError(f"{path} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}; "
                         f"re-export it with `g2g export`")
    return gen.to(device).eval()


@dataclass
class SwapResult:
    m1: torch.Tensor  # content of x1, class of x2
    m2: torch.Tensor  # content of x2, class of x1
    r1: torch.Tensor  # long reconstruction of x1 from the mixed images
    r2: torch.Tensor  # long reconstruction of x2


class G2GModel:
    """Inference wrapper around an exported generator. All methods take and return batches in [-1, 1]."""

    def __init__(self, generator: Generator):
        self.generator = generator.eval()
        self.config = generator.config

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @torch.no_grad()
    def encode(self, x: torch.Tensor, refs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) → (content codes (B, C, h, w), class codes (B, D)). refs (B, K, 3, H, W): other
        images of each image's class, on which a centred model (`config.content_centre`) centres the
        content code; without them it uses the mean centre of its training data. Other models ignore refs."""
        x = x.to(self.device)
        class_code = self.generator.encode_class(x)
        if refs is None or not getattr(self.generator, "centred", False):
            return self.generator.encode_content(x, class_code), class_code
        centre = self.generator.content_centre(refs.to(self.device))
        return self.generator.encode_content(x, class_code, centre), class_code

    @torch.no_grad()
    def encode_class(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, D); (B, K, 3, H, W) → mean class code over K references."""
        return self.generator.encode_class(x.to(self.device))

    @torch.no_grad()
    def decode(self, content: torch.Tensor, class_code: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(content.to(self.device), class_code.to(self.device))

    @torch.no_grad()
    def swap(self, x1: torch.Tensor, x2: torch.Tensor) -> SwapResult:
        """Mix pairs both ways and reassemble: the G2G pass without training noise."""
        from .wiring import g2g_forward
        res = g2g_forward(self.generator, x1.to(self.device), x2.to(self.device))
        assert res.r1 is not None and res.r2 is not None  # the full pass (long=True) draws them
        return SwapResult(res.m1, res.m2, res.r1, res.r2)

    @torch.no_grad()
    def grid(self, images: torch.Tensor) -> torch.Tensor:
        """All class × content combinations of N images: (N, N, 3, H, W), [i, j] = content of image j
        drawn with the class of image i (the diagonal is the short reconstruction)."""
        content, class_code = self.encode(images)
        n = images.shape[0]
        out = self.decode(torch.cat([content] * n), class_code.repeat_interleave(n, dim=0))  # any code rank
        return out.view(n, n, *out.shape[1:])

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8, code: str = "class") -> torch.Tensor:
        """Images (3, H, W) or (1, 3, H, W) → (steps, 3, H, W): code "class" keeps x_a's content code and
        blends the class code linearly from x_a's to x_b's, both ends included (first: the short
        reconstruction of x_a, last: m1 of `swap(x_a, x_b)`); code "content" keeps x_a's class code and
        blends the content code (last: m2). Arch sprite's content code is a pose: blending it moves,
        scales and turns the object and blends the background colour (the angle linearly, not the short
        way round)."""
        if code not in ("class", "content"):
            raise ValueError(f"code must be 'class' or 'content', not {code!r}")
        if not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an integer >= 2 (the two ends are included), got {steps!r}")
        x_a, x_b = _one_image(x_a, "x_a"), _one_image(x_b, "x_b")
        if x_a.shape != x_b.shape:
            raise ValueError(f"x_a and x_b must have the same size, got {tuple(x_a.shape)} and {tuple(x_b.shape)}")
        content, class_code = self.encode(torch.cat([x_a, x_b]))
        blended = content if code == "content" else class_code
        t = torch.linspace(0, 1, steps, device=self.device).view(-1, *[1] * (blended.dim() - 1))
        mix = torch.lerp(blended[:1], blended[1:], t)  # exact at both ends: (steps, *code shape)
        if code == "class":
            return self.decode(content[:1].expand(steps, *content.shape[1:]), mix)
        return self.decode(mix, class_code[:1].expand(steps, -1))


def _one_image(x: torch.Tensor, name: str) -> torch.Tensor:
    """(3, H, W) or (1, 3, H, W) → (1, 3, H, W)."""
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"{name} must be one image of shape (3, H, W) or (1, 3, H, W), got {tuple(x.shape)}")
    return x


def load(path: str | Path, device: str | torch.device = "cpu") -> G2GModel:
    """Load an exported model (.safetensors file or a folder holding model.safetensors), a bundled model
    by name (`load("shapes")`; `g2g models` lists them; an existing path wins over a name), or a FUNIT
    generator checkpoint as NVIDIA published them (`animal149_gen.pt`)."""
    return G2GModel(load_generator(path, device))
