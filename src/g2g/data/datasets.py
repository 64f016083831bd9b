"""Labelled image datasets: scikit-learn's handwritten digits and any folder of images.

Same contract as `ShapesDataset`: `labels` (N,) long, `num_classes`, `class_names`, and
`dataset[i] -> (image (3, H, W) float in [-1, 1], label int)`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from .files import IMAGE_EXTENSIONS, SPLITS, check_size, check_split, decode_rgb, split_files, to_model_input
from .index import folder_index


def _stratified_split(labels: np.ndarray, split: str, seed: int, fractions=(0.7, 0.15, 0.15)) -> np.ndarray:
    """Indices of one split, stratified by label, deterministic from the seed (sorted)."""
    index = np.arange(len(labels))
    train, rest = train_test_split(index, train_size=fractions[0], stratify=labels, random_state=seed)
    val, test = train_test_split(
        rest, test_size=fractions[2] / (fractions[1] + fractions[2]), stratify=labels[rest], random_state=seed
    )
    return np.sort({"train": train, "val": val, "test": test}[split])


class DigitsDataset(Dataset):
    """scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 16 grey levels, 10 classes).

    Upsampled bilinearly to size x size and repeated to 3 channels; ink is bright (+1) on a dark (-1)
    background. Splits are 70/15/15, stratified, deterministic from the seed. Nothing is downloaded.
    """

    def __init__(self, split: str = "train", size: int = 32, seed: int = 0):
        check_split(split)
        check_size(size, 8)
        digits = load_digits()
        keep = _stratified_split(digits.target, split, seed)
        pixels = torch.from_numpy(digits.images[keep]).float() / 16.0  # (N, 8, 8) in [0, 1]
        # Bilinear interpolation is a convex combination, so values stay in [0, 1].
        pixels = F.interpolate(pixels.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
        self.images = (pixels * 2 - 1).expand(-1, 3, -1, -1).contiguous()  # (N, 3, size, size)
        self.labels = torch.from_numpy(digits.target[keep]).long()  # (N,)
        self.indices = torch.from_numpy(keep)  # rows of load_digits(), to trace an image back
        self.split, self.size, self.seed = split, size, seed
        self.num_classes = 10
        self.class_names = [str(d) for d in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


# --- Image files ---------------------------------------------------------------------------------


def load_image(path: str | Path, size: int, crop: bool = True) -> torch.Tensor:
    """Read one image file -> (3, size, size) float in [-1, 1].

    Any PIL-readable mode (grey, RGBA, palette, 16-bit) is converted to RGB (plain JPEGs are decoded by
    libjpeg-turbo, see `decode_rgb`); the shorter side is resized to `size` (antialiased bilinear), then
    the centre is cropped to a square. crop=False resizes both sides to `size` instead, ignoring the aspect
    ratio (FUNIT's test-time transform); an image of that size is left as it is.
    """
    path = Path(path)
    check_size(size, 1)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; expected an image file ({', '.join(IMAGE_EXTENSIONS)})")
    return to_model_input(decode_rgb(path), size, crop=crop)  # (3, size, size)


def _by_class(files: list[str], classes: list[str]) -> list[list[str]]:
    """Sorted relative paths ('cat/a.jpg') grouped by their first folder, one list per class, in order."""
    groups: dict[str, list[str]] = {c: [] for c in classes}
    for f in files:
        head, sep, _ = f.partition("/")
        if sep and head in groups:
            groups[head].append(f)
    return [groups[c] for c in classes]


class ImageFolderDataset(Dataset):
    """Images in a folder, loaded lazily.

    Layouts: root/<class>/<images> (labels from the sorted class folder names; images may be nested
    deeper) or root/<images> with no sub-folders (unlabelled: label 0, `labelled` False).
    split: None uses every image; "train"/"val"/"test" uses root/<split>/ when root holds split
    folders (train/, val/, test/), otherwise a deterministic 80/10/10 split of each class's files
    from `seed`.
    skip_bad_images: decode every file once now, drop unreadable ones and list them in `skipped`;
    otherwise an unreadable file raises ValueError naming it when it is loaded.
    The folder's listing is cached while the folder is unchanged (`index.folder_index`).
    """

    def __init__(
        self, root: str | Path, size: int = 64, split: str | None = None, skip_bad_images: bool = False, seed: int = 0
    ):
        check_split(split, allow_none=True)
        check_size(size, 1)
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"image folder not found: {root}")
        layout = ("expected a folder with one sub-folder of images per class, or a folder of images "
                  f"({', '.join(IMAGE_EXTENSIONS)})")
        if not root.is_dir():
            raise ValueError(f"{root} is a file; {layout}")
        self.split = split
        on_disk = [s for s in SPLITS if (root / s).is_dir()]
        if split is not None and on_disk:  # already split on disk: root/train, root/val, ...
            if split not in on_disk:
                raise ValueError(f"{root} has split folders {on_disk} but no {split!r} folder")
            root, split = root / split, None

        index = folder_index(root)
        class_dirs = index.top_dirs()
        loose = [f for f in index.files if "/" not in f]
        if class_dirs and loose:
            raise ValueError(f"{root} holds both images and sub-folders ({loose[0]}, {class_dirs[0]}/); {layout}")
        self.labelled = bool(class_dirs)
        if self.labelled:
            files = _by_class(index.files, class_dirs)
            empty = [d for d, f in zip(class_dirs, files) if not f]
            if empty:
                raise ValueError(f"class folder(s) {empty} in {root} hold no images; remove them or add images "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
            self.class_names = class_dirs
        else:
            files = [loose]
            if not loose:
                raise ValueError(f"no images found in {root}; {layout}")
            self.class_names = [root.name]
        if split is not None:
            files = [split_files(f, split, seed) for f in files]

        self.skipped: list[str] = []
        files = [[os.path.join(root, p) for p in f] for f in files]
        if skip_bad_images:
            files = [[p for p in f if self._readable(p)] for f in files]
        self.paths = [p for f in files for p in f]
        self.labels = torch.tensor([c for c, f in enumerate(files) for _ in f], dtype=torch.long)  # (N,)
        if not self.paths:
            raise ValueError(f"no usable images in {root} (split {self.split!r}, "
                             f"{len(self.skipped)} unreadable skipped)")
        self.root, self.size = root, size
        self.num_classes = len(self.class_names)

    def _readable(self, path: str) -> bool:
        try:
            decode_rgb(path)
            return True
        except ValueError:
            self.skipped.append(path)
            return False

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            image = load_image(self.paths[i], self.size)
        except ValueError as e:
            raise ValueError(f"{e}; remove or replace the file, or skip unreadable files with "
                             f"skip_bad_images (g2g train --data.skip_bad_images true)") from None
        return image, int(self.labels[i])
