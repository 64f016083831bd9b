"""Image files on disk, shared by every dataset that reads them: splitting them deterministically,
decoding any file PIL reads into 8-bit RGB with one-line errors, and resizing to the model's size."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch
import torchvision.transforms.functional as TF
import torchvision.transforms.v2.functional as TF2
from PIL import Image, ImageOps

try:  # libjpeg-turbo through torchvision; TorchCodec supersedes it, and Pillow decodes everything without it
    from torchvision.io import ImageReadMode, decode_jpeg
    _decode_jpeg: Callable[..., torch.Tensor] | None = decode_jpeg
except ImportError:
    _decode_jpeg = None

SPLITS = ("train", "val", "test")
MAX_AUTO_WORKERS = 8  # a worker loads ~2,000 CelebA JPEGs/s at 128 px (`decode_rgb`); 8 keep far ahead of a step
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def check_split(split: str | None, allow_none: bool = False) -> None:
    if not (split in SPLITS or (allow_none and split is None)):
        allowed = ", ".join(repr(s) for s in SPLITS) + (" or None" if allow_none else "")
        raise ValueError(f"split must be one of {allowed}, got {split!r}")


def check_size(size: int, minimum: int) -> None:
    if not isinstance(size, int) or size < minimum:
        raise ValueError(f"size must be an int >= {minimum}, got {size!r}")


# Longest side over shortest side beyond which a file is refused from its header, before it is decoded.
# Resizing the shorter side to the model's size multiplies the longer one alike, so a 9 × 10,000,000 px
# header of a few hundred bytes (within PIL's decompression-bomb limit) becomes a 16 × 18-million px
# intermediate: 12 s and about 1 GB for one 16 px image. No photo of an object is 100 times as long as wide.
MAX_ASPECT = 100


def open_rgb(path: Path) -> Image.Image:
    """Decode an image file fully and convert it to 8-bit RGB; ValueError naming the file if unreadable."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            if not _sliver(w, h):
                img.load()  # decode now: Image.open only reads the header, so truncation shows up here
                return _to_rgb(img)
    except Exception as e:  # malformed files make decoders raise almost anything (struct.error, IndexError, ...)
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"cannot read image {path}: {reason} (not an image, truncated or corrupt)") from e
    raise ValueError(f"cannot read image {path}: it is {w} × {h} px, more than {MAX_ASPECT} times as long as "
                     f"it is wide; crop it around the object first")


def _sliver(w: int, h: int) -> bool:
    return min(w, h) > 0 and max(w, h) > MAX_ASPECT * min(w, h)


def _to_rgb(img: Image.Image) -> Image.Image:
    try:
        img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
    except Exception:  # malformed EXIF only loses the rotation; the pixels are fine
        pass
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit greyscale: convert('RGB') would clip at 255 and turn most pixels white; rescale instead.
        grey = np.asarray(img).astype(np.float64)  # (H, W) in [0, 65535]
        img = Image.fromarray(np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        # float greyscale (TIFF): values in [0, 1] are scaled to [0, 255], others clipped to it
        grey = np.nan_to_num(np.asarray(img, dtype=np.float64))  # (H, W)
        if grey.size and grey.min() >= 0 and grey.max() <= 1:
            grey = grey * 255
        img = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels have arbitrary colour underneath; show them over white, as a viewer would.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("RGB")


JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112


def decode_rgb(path: str | Path) -> torch.Tensor | Image.Image:
    """An image file's 8-bit RGB pixels: a (3, H, W) uint8 tensor where torchvision's libjpeg-turbo decoder
    takes it (a plain RGB or grey JPEG), else the PIL image of `open_rgb` (other formats, CMYK, EXIF-rotated
    or refused files). A 178 × 218 JPEG to 128 px loads in 0.43 ms this way against 0.80 ms through Pillow
    (one thread; `load_image`), the pixels within 1 level of Pillow's."""
    pixels = _decode_plain_jpeg(path)
    return open_rgb(Path(path)) if pixels is None else pixels


def _decode_plain_jpeg(path: str | Path) -> torch.Tensor | None:
    """(3, H, W) uint8 of a JPEG that needs no conversion but to RGB, or None (Pillow decides then)."""
    if _decode_jpeg is None:
        return None
    try:
        with open(path, "rb") as f:  # another format is not read beyond its first bytes here
            data = f.read(len(JPEG_MAGIC))
            if data != JPEG_MAGIC:
                return None
            data += f.read()
        with Image.open(io.BytesIO(data)) as img:  # the header only: size, mode, EXIF (about 20 µs)
            plain = (img.format == "JPEG" and img.mode in ("RGB", "L") and not _sliver(*img.size)
                     and img.getexif().get(EXIF_ORIENTATION, 1) == 1)
        if not plain:
            return None
        with warnings.catch_warnings():  # torchvision's deprecation of its decoders in favour of TorchCodec
            warnings.simplefilter("ignore", DeprecationWarning)
            return _decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except Exception:  # unreadable, truncated, corrupt, too large: open_rgb gives the verdict and the message
        return None


def to_model_input(img: torch.Tensor | Image.Image, size: int, resize: int | None = None,
                   crop: bool = True) -> torch.Tensor:
    """(3, size, size) float in [-1, 1] from `decode_rgb`'s pixels: the shorter side resized to `resize`
    (default size; antialiased bilinear), then the centre square of `size` cropped; crop=False resizes
    both sides to `size` instead, and leaves an image of that size as it is."""
    if isinstance(img, Image.Image):  # Pillow's own resampling
        if crop:
            img = TF.center_crop(TF.resize(img, size if resize is None else resize), [size, size])
        elif img.size != (size, size):
            img = TF.resize(img, [size, size])
        x = TF.pil_to_tensor(img)
    elif crop:  # uint8 tensor: torch's uint8 antialiased kernel
        x = TF2.center_crop(TF2.resize(img, [size if resize is None else resize], antialias=True), [size, size])
    else:
        x = img if img.shape[-2:] == (size, size) else TF2.resize(img, [size, size], antialias=True)
    return x.float() / 127.5 - 1.0  # (3, size, size)


T = TypeVar("T")


def split_files(files: list[T], split: str, seed: int) -> list[T]:
    """One class's share of an 80/10/10 split: a seeded shuffle of the sorted files, cut in three (kept in
    their sorted order)."""
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    n_train, n_val = round(0.8 * len(files)), round(0.1 * len(files))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(files))}
    start, stop = bounds[split]
    return [files[k] for k in sorted(order[start:stop])]


def auto_workers(dataset: object) -> int:
    """Worker processes for a dataset: 0 when its images are held in memory (an `images` tensor: shapes,
    digits), as workers would only copy them; else one per core available to this process, less one for
    the main process when there are 3 or more, at most MAX_AUTO_WORKERS."""
    if getattr(dataset, "images", None) is not None:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        return 0
    return min(MAX_AUTO_WORKERS, cores - 1 if cores >= 3 else cores)
