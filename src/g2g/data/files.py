"""Image files on disk, shared by every dataset that reads them: finding them, splitting them
deterministically, and decoding any file PIL reads into 8-bit RGB with one-line errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

SPLITS = ("train", "val", "test")
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
            sliver = min(w, h) > 0 and max(w, h) > MAX_ASPECT * min(w, h)
            if not sliver:
                img.load()  # decode now: Image.open only reads the header, so truncation shows up here
                return _to_rgb(img)
    except Exception as e:  # malformed files make decoders raise almost anything (struct.error, IndexError, ...)
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"cannot read image {path}: {reason} (not an image, truncated or corrupt)") from e
    raise ValueError(f"cannot read image {path}: it is {w} × {h} px, more than {MAX_ASPECT} times as long as "
                     f"it is wide; crop it around the object first")


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


def image_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files in folder, sorted so that the order is the same on every machine."""
    return sorted(
        p for p in (folder.rglob("*") if recursive else folder.iterdir())
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def split_files(files: list[Path], split: str, seed: int) -> list[Path]:
    """One class's share of an 80/10/10 split: a seeded shuffle of the sorted files, cut in three."""
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    n_train, n_val = round(0.8 * len(files)), round(0.1 * len(files))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(files))}
    start, stop = bounds[split]
    return sorted(files[k] for k in order[start:stop])
