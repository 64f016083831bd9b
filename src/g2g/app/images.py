"""Images in and out of the app: uploads (base64 data URLs) checked and read exactly as `g2g swap` reads
files, and results as PNG data URLs quantised exactly as `g2g swap` saves them."""
from __future__ import annotations

import base64
import binascii
import io
import tempfile
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.utils import save_image

from ..data.datasets import load_image
from ..data.files import IMAGE_EXTENSIONS

MAX_IMAGE_BYTES = 20 * 2**20  # one upload
MAX_SIDE = 4096               # pixels, either side, read from the header before decoding
KINDS = ", ".join(e.lstrip(".").upper() for e in IMAGE_EXTENSIONS)


def upload_bytes(upload: Any, what: str) -> tuple[str, bytes]:
    """{"name": file name, "data": data URL or base64} → (name, file bytes); ValueError if malformed."""
    if not isinstance(upload, dict) or not isinstance(upload.get("data"), str):
        raise ValueError(f"{what}: no image given; pick or upload one")
    name = str(upload.get("name") or what)
    data = upload["data"]
    if data.startswith("data:"):
        data = data.partition(",")[2]
    if len(data) > MAX_IMAGE_BYTES * 4 // 3 + 4:  # base64 grows by 4/3: refuse before decoding
        raise ValueError(_too_large(name, len(data) * 3 // 4))
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name}: the upload is not base64 data; upload the file again") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise ValueError(_too_large(name, len(raw)))
    return name, raw


def _too_large(name: str, n_bytes: int) -> str:
    return (f"{name} is {n_bytes / 2**20:.1f} MB, over the limit of {MAX_IMAGE_BYTES // 2**20} MB; "
            f"upload a smaller image")


def check_header(name: str, raw: bytes) -> None:
    """Refuse what is not an image, or is over MAX_SIDE px a side, from the header alone."""
    try:
        with Image.open(io.BytesIO(raw)) as img:
            w, h = img.size
    except Image.DecompressionBombError:  # a header of over 178 million pixels
        raise ValueError(f"{name} is over the limit of {MAX_SIDE} px a side; resize it first") from None
    except Exception:  # PIL raises many kinds on non-images (UnidentifiedImageError, SyntaxError, ...)
        raise ValueError(f"{name} is not an image; upload a {KINDS} file") from None
    if max(w, h) > MAX_SIDE:
        raise ValueError(f"{name} is {w} × {h} px, over the limit of {MAX_SIDE} px a side; resize it first")


def read_upload(upload: Any, what: str, size: int, crop: bool) -> torch.Tensor:
    """One upload → (3, size, size) in [-1, 1], by the very function `g2g swap` reads files with
    (`load_image`): any mode PIL can convert (CMYK, 16-bit, palette, alpha over white) becomes RGB."""
    name, raw = upload_bytes(upload, what)
    check_header(name, raw)
    with tempfile.TemporaryDirectory(prefix="g2g-app-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(raw)
        try:
            return load_image(path, size, crop=crop)
        except ValueError as e:  # name the user's file, not the temporary copy
            raise ValueError(str(e).replace(str(path), name)) from None


def read_uploads(uploads: Any, what: str, size: int, crop: bool, low: int, high: int) -> torch.Tensor:
    """A list of `low` to `high` uploads → (N, 3, size, size). A bad file is named "WHAT, file I" (just
    WHAT when it is the only one)."""
    if not isinstance(uploads, list) or not low <= len(uploads) <= high:
        count = len(uploads) if isinstance(uploads, list) else 0
        raise ValueError(f"{what}: give {low} to {high} images, not {count}")
    names = [what] if len(uploads) == 1 else [f"{what}, file {i + 1}" for i in range(len(uploads))]
    return torch.stack([read_upload(u, name, size, crop) for u, name in zip(uploads, names)])


def png_data_url(images: torch.Tensor, nrow: int = 8, padding: int = 0) -> str:
    """(3, H, W) or (B, 3, H, W) in [-1, 1] → a PNG data URL, quantised as `g2g swap` saves images
    (torchvision's save_image: round(255 x), clamped); several images are tiled `nrow` a row."""
    buffer = io.BytesIO()
    save_image(images.detach().cpu() * 0.5 + 0.5, buffer, format="png", nrow=nrow, padding=padding, pad_value=1.0)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
