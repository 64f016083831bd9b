"""Real datasets read from disk in their published layouts: CelebA aligned, FUNIT Animal
Faces, and unlabelled image folders.

Same contract as the other datasets: `labels` (N,) long, `num_classes`, `class_names`, `labelled`, and
`dataset[i] -> (image (3, size, size) float in [-1, 1], label int)`. Images are loaded lazily: the
shorter side is resized (antialiased bilinear), then the centre is cropped to a square. Splits and labels
come from the published list files, never from hard-coded indices; a missing list file is a
FileNotFoundError naming it and where it was looked for.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF2
from PIL import Image
from torch.utils.data import Dataset

from .files import SPLITS, check_size, check_split, decode_rgb, split_files, to_model_input
from .index import folder_index


class _ImageList(Dataset):
    """Image files (optionally a crop box in source pixels each) with labels; the shared loading part."""

    labelled = True

    def __init__(self, root: Path, paths: Sequence[str | Path], labels: Sequence[int] | torch.Tensor,
                 class_names: list[str], size: int, resize: int, boxes: list[tuple[int, int, int, int]] | None = None,
                 skip_bad_images: bool = False):
        check_size(size, 1)
        self.root, self.size, self.resize = root, size, resize
        self.paths, self.boxes = [os.fspath(p) for p in paths], boxes
        self.labels = torch.as_tensor(labels, dtype=torch.long)  # (N,)
        self.class_names, self.num_classes = class_names, len(class_names)
        self.skipped: list[str] = []
        if skip_bad_images:  # decode every file once now; drop (and list) the unreadable ones
            keep = [i for i in range(len(self.paths)) if self._readable(i)]
            self.paths = [self.paths[i] for i in keep]
            self.boxes = None if boxes is None else [boxes[i] for i in keep]
            self.labels = self.labels[keep]
        if not self.paths:
            raise ValueError(f"no usable images in {root} ({len(self.skipped)} unreadable skipped)")

    def _read(self, i: int) -> torch.Tensor | Image.Image:
        """`decode_rgb`'s pixels, cut to the box if there is one (outside the image: black, as PIL crops)."""
        path = self.paths[i]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found: {path}")
        img = decode_rgb(path)
        if self.boxes is None:
            return img
        left, upper, right, lower = self.boxes[i]
        if isinstance(img, Image.Image):
            return img.crop((left, upper, right, lower))
        return TF2.crop(img, upper, left, lower - upper, right - left)  # (3, lower - upper, right - left)

    def _readable(self, i: int) -> bool:
        try:
            self._read(i)
            return True
        except (ValueError, FileNotFoundError):
            self.skipped.append(self.paths[i])
            return False

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return to_model_input(self._read(i), self.size, self.resize), int(self.labels[i])  # (3, size, size)


def _first(items: list[str]) -> str:
    return items[0] + (f" (and {len(items) - 1} more)" if len(items) > 1 else "")


def _read_pairs(path: Path) -> list[tuple[str, int]]:
    """Lines `<file name> <integer>` (CelebA's list files) -> [(name, value)], in file order."""
    pairs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{n}: expected '<image file> <integer>', got {line.strip()!r}")
            pairs.append((parts[0], int(parts[1])))
    return pairs


# --- CelebA --------------------------------------------------------------------------------------

CELEBA_SUBDIRS = ("", "Eval", "Anno", "Img", "celeba")  # the official download's folders; torchvision's


def _find_celeba(root: Path, name: str) -> Path:
    for sub in CELEBA_SUBDIRS:
        if (root / sub / name).exists():
            return root / sub / name
    places = ", ".join(str(root / sub) for sub in CELEBA_SUBDIRS)
    raise FileNotFoundError(f"CelebA {name} not found (looked in {places}); it is part of the CelebA download "
                            "(mmlab.ie.cuhk.edu.hk/projects/CelebA.html)")


class CelebADataset(_ImageList):
    """CelebA aligned and cropped faces (178×218 JPEGs) with identity labels.

    root holds `img_align_celeba/`, `list_eval_partition.txt` (0 train, 1 val, 2 test) and
    `identity_CelebA.txt`, each directly in root or in the download's `Img/`, `Eval/`, `Anno/` folders.
    Labels are the identities present in the split, renumbered 0..C-1 in increasing identity order;
    `class_names` and `identities` keep the original identity numbers. Resize the shorter side to
    `size`, then crop the centre square.
    """

    def __init__(self, root: str | Path, split: str = "train", size: int = 64, skip_bad_images: bool = False):
        check_split(split)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"CelebA folder not found: {root}")
        images = _find_celeba(root, "img_align_celeba")
        partition = _find_celeba(root, "list_eval_partition.txt")
        identity_file = _find_celeba(root, "identity_CelebA.txt")
        code = SPLITS.index(split)
        names = [name for name, part in _read_pairs(partition) if part == code]  # 162,770 for train
        if not names:
            raise ValueError(f"{partition} lists no {split!r} images (partition code {code})")
        identity = dict(_read_pairs(identity_file))
        unknown = [n for n in names if n not in identity]
        if unknown:
            raise ValueError(f"{identity_file} has no identity for {_first(unknown)} "
                             f"({split!r} images of {partition.name})")
        ids = torch.tensor([identity[n] for n in names])  # (N,)
        classes, labels = ids.unique(sorted=True, return_inverse=True)
        folder = os.path.join(images, "")  # strings: 162,770 Path objects would take 0.5 s more
        super().__init__(root, [folder + n for n in names], labels, [str(c) for c in classes.tolist()], size,
                         size, skip_bad_images=skip_bad_images)
        self.identities = classes[self.labels]  # (N,) CelebA identity numbers (of the images kept)
        self.split = split


# --- FUNIT Animal Faces --------------------------------------------------------------------------

ANIMAL_LISTS = {"train": "animals_list_train.txt", "val": "animals_list_test.txt", "test": "animals_list_test.txt"}
ANIMAL_COORDINATES = "animalface_coordinates.txt"
IMAGENET_TRAIN = Path("ILSVRC") / "Data" / "CLS-LOC" / "train"


class AnimalFacesDataset(_ImageList):
    """FUNIT's Animal Faces: faces of 149 ImageNet carnivore classes, cut out with FUNIT's boxes.

    root is FUNIT's `datasets/` folder: `animals_list_train.txt` (119 classes) and `animals_list_test.txt`
    (30 unseen classes; also used for 'val', as FUNIT publishes no validation list), one entry
    `<synset>/<ImageNet file>_<x1>_<y1>_<x2>_<y2>.jpg` per line, the class being the synset folder. Images:
    `animals/<entry>` (written by FUNIT's tools/extract_animalfaces.py), or, when `animals/` is absent,
    cut on the fly from the ImageNet training images in `ILSVRC/Data/CLS-LOC/train/` with the boxes of
    `animalface_coordinates.txt` (`<synset>/<ImageNet file> x1 y1 x2 y2` per line).
    Transform as FUNIT's evaluation: shorter side to `resize` (default size·140/128), centre crop `size`.
    """

    def __init__(self, root: str | Path, split: str = "train", size: int = 128, resize: int | None = None,
                 skip_bad_images: bool = False):
        check_split(split)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"Animal Faces folder not found: {root}")
        list_file = root / ANIMAL_LISTS[split]
        if not list_file.is_file():
            raise FileNotFoundError(f"Animal Faces list file not found: {list_file} (published with FUNIT, "
                                    "github.com/NVlabs/FUNIT, in datasets/)")
        entries = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        if not entries:
            raise ValueError(f"{list_file} lists no images")
        classes = sorted({e.split("/")[0] for e in entries})
        index = {c: i for i, c in enumerate(classes)}
        labels = [index[e.split("/")[0]] for e in entries]
        paths, boxes = self._locate(root, entries)
        resize = round(size * 140 / 128) if resize is None else resize
        if resize < size:
            raise ValueError(f"resize ({resize}) must be at least size ({size})")
        super().__init__(root, paths, labels, classes, size, resize, boxes, skip_bad_images)
        self.split = split

    @staticmethod
    def _locate(root: Path, entries: list[str]) -> tuple[list[str], list | None]:
        """Extracted crops when `animals/` exists, else (ImageNet file, box) from the coordinate file."""
        if (root / "animals").is_dir():
            return [os.path.join(root, "animals", e) for e in entries], None
        coordinates, imagenet = root / ANIMAL_COORDINATES, root / IMAGENET_TRAIN
        if not coordinates.is_file() or not imagenet.is_dir():
            raise FileNotFoundError(
                f"Animal Faces images not found: expected {root / 'animals'}/ (from FUNIT's "
                f"tools/extract_animalfaces.py) or {coordinates} with the ImageNet training images in {imagenet}/")
        crops = {}  # extracted file name (as in the list files) -> (ImageNet file, box)
        for n, line in enumerate(coordinates.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5 or not all(p.lstrip("-").isdigit() for p in parts[1:]):
                raise ValueError(f"{coordinates}:{n}: expected '<synset>/<file> x1 y1 x2 y2', got {line.strip()!r}")
            box = tuple(int(p) for p in parts[1:])
            # the name FUNIT's tools/extract_animalfaces.py gives the crop: '%s_%d_%d_%d_%d.jpg'
            crops["_".join([parts[0], *map(str, box)]) + ".jpg"] = (parts[0], box)
        unknown = [e for e in entries if e not in crops]
        if unknown:
            raise ValueError(f"{coordinates} has no box for {_first(unknown)}")
        return [os.path.join(imagenet, crops[e][0]) for e in entries], [crops[e][1] for e in entries]


# --- unlabelled folders --------------------------------------------------------------------------


class UnlabelledFolderDataset(_ImageList):
    """Every image under root, at any depth, without labels: pairs are drawn at random (the original
    implementation's unsupervised pairing). split: None uses every image; 'train'/'val'/'test' uses root/<split>/ when
    root holds split folders, otherwise a seeded 80/10/10 split of the sorted files. The folder's listing
    is cached while the folder is unchanged (`index.folder_index`)."""

    labelled = False

    def __init__(self, root: str | Path, size: int = 64, split: str | None = None,
                 skip_bad_images: bool = False, seed: int = 0):
        check_split(split, allow_none=True)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        if split is not None and any((root / s).is_dir() for s in SPLITS):
            if not (root / split).is_dir():
                raise ValueError(f"{root} has split folders but no {split!r} folder")
            root, split = root / split, None
        files = [os.path.join(root, f) for f in folder_index(root).files]
        if not files:
            raise ValueError(f"no images found under {root}")
        if split is not None:
            files = split_files(files, split, seed)
        super().__init__(root, files, [0] * len(files), [root.name], size, size, skip_bad_images=skip_bad_images)
        self.split = split
