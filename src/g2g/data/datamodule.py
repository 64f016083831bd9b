"""LightningDataModule: builds the named dataset, pairs it, and serves step-indexed batches."""
from __future__ import annotations

import logging
from typing import Literal, cast

import lightning as L
import torch
from lightning.fabric.utilities.data import AttributeDict
from torch.utils.data import DataLoader

from .files import auto_workers
from .pairing import ImageDataset, PairDataset, StepBatchSampler, collate_batch

DATASETS = ("shapes", "scenes", "parts", "digits", "folder", "unlabelled", "celeba", "animals", "fonts")
# built-in datasets drawn from content factors, so the true mixed image render(class of x2, factors of x1)
# exists; each has seen classes (train, val, test) and held-out ones (val, test)
GROUND_TRUTH = ("shapes", "scenes", "parts")
# what --data.root must point at, for the datasets read from disk (data/real.py, data/fonts.py)
ROOTS = {"unlabelled": "a folder of images, any depth", "celeba": "the CelebA folder (img_align_celeba/, "
         "list_eval_partition.txt, identity_CelebA.txt)", "animals": "FUNIT's datasets/ folder (animals_list_*.txt)",
         "fonts": "a folder of .ttf/.otf/.ttc font files, any depth"}
log = logging.getLogger(__name__)


def make_dataset(name: str, split: str = "train", image_size: int = 32, root: str | None = None,
                 seed: int = 0, classes: str = "seen", skip_bad_images: bool = False) -> ImageDataset:
    """A labelled image dataset by name. `classes` applies to GROUND_TRUTH datasets only ('seen' or 'heldout')."""
    if name in GROUND_TRUTH:
        return ground_truth_dataset(name)(split=split, size=image_size, seed=seed, classes=classes)
    if name == "digits":
        from .datasets import DigitsDataset
        return DigitsDataset(split=split, size=image_size, seed=seed)
    if name == "folder":
        from .datasets import ImageFolderDataset
        if not root:
            raise ValueError("dataset 'folder' needs a root folder (one sub-folder per class): "
                             "`g2g train --data.root DIR`, `g2g eval --root DIR`")
        # root/train|val|test when the folder is split on disk, else a seeded 80/10/10 split per class
        return ImageFolderDataset(root, size=image_size, split=split, skip_bad_images=skip_bad_images,
                                  seed=seed)
    if name in ROOTS:
        from . import real
        if not root:
            raise ValueError(f"dataset {name!r} needs a root: pass --data.root DIR ({ROOTS[name]})")
        if name == "celeba":  # official partition file split, identity labels
            return real.CelebADataset(root, split, image_size, skip_bad_images)
        if name == "animals":  # FUNIT's train list (119 classes); val and test: its test list (30 classes)
            return real.AnimalFacesDataset(root, split, image_size, skip_bad_images=skip_bad_images)
        if name == "fonts":  # class: the font; train: training fonts, val and test: held-out font families
            from .fonts import FontsDataset
            return FontsDataset(root, split, image_size, seed)
        return real.UnlabelledFolderDataset(root, image_size, split, skip_bad_images, seed)
    raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


def ground_truth_dataset(name: str) -> type:
    """The dataset class of a GROUND_TRUTH dataset; its `render` and `factor_names` draw true mixed images."""
    from .parts import PartsDataset
    from .scenes import ScenesDataset
    from .shapes import ShapesDataset
    return {"shapes": ShapesDataset, "scenes": ScenesDataset, "parts": PartsDataset}[name]


class StepDataLoader(DataLoader):
    """A DataLoader over a `StepBatchSampler`, resumable mid-epoch: its state is the sampler's step, which
    Lightning saves in checkpoints and gives back on resume (`state_dict`/`load_state_dict`)."""

    def state_dict(self) -> dict[str, int]:
        return cast(StepBatchSampler, self.batch_sampler).state_dict()

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        cast(StepBatchSampler, self.batch_sampler).load_state_dict(state_dict)


class G2GDataModule(L.LightningDataModule):
    """Serves batches of pairs for the G2G step, and a fixed panel batch from the validation split."""

    def __init__(self, dataset: str = "shapes", root: str | None = None, image_size: int = 32,
                 batch_size: int = 32, supervised: bool = True, k_refs: int = 1,
                 steps_per_epoch: int = 200, num_workers: int | Literal["auto"] = "auto", seed: int = 0,
                 panel_size: int = 8, skip_bad_images: bool = False):
        """
        Args:
            dataset: 'shapes', 'scenes' (patterned backgrounds), 'parts' (multi-part objects) (built-in, ground
                truth), 'digits' (built-in, real), 'folder' (root/<class>/*.png),
                'unlabelled' (every image under root, random pairs), 'celeba', 'animals' (FUNIT Animal Faces) or
                'fonts' (every font file under root: class = typeface, one image per character).
            root: dataset folder, for datasets read from disk.
            image_size: side of the square images the model sees.
            batch_size: pairs per step (each pair is two images).
            supervised: pair images of different classes and take class codes from other images of the
                same class (needs labels); False pairs images at random as the original implementation did.
            k_refs: class references per image; the class code is their mean code.
            steps_per_epoch: batches per epoch (the data stream is endless; epochs only pace checkpoints).
            num_workers: DataLoader worker processes that decode images (0: in the main process). 'auto':
                0 for the datasets held in memory (built-in), else one per core available, less one
                for the main process when there are 3 or more, at most 8 (`auto_workers`). Workers
                persist across epochs; batches go to pinned memory when training on CUDA.
            seed: seed of the pairing and of the built-in datasets.
            panel_size: pairs in the fixed batch used for image panels.
            skip_bad_images: skip (and count) unreadable images in folders instead of stopping.
        """
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
        if batch_size < 1 or k_refs < 1 or steps_per_epoch < 1:
            raise ValueError("batch_size, k_refs and steps_per_epoch must be at least 1")
        if num_workers != "auto" and not (isinstance(num_workers, int) and num_workers >= 0):
            raise ValueError(f"num_workers must be 'auto' or an int >= 0, got {num_workers!r}")
        self.save_hyperparameters()
        self.train_set: PairDataset | None = None
        self.skipped_images: list[str] = []  # unreadable training files left out (skip_bad_images)
        self.sampler: StepBatchSampler | None = None

    @property
    def options(self) -> AttributeDict:
        """The constructor's arguments, as `save_hyperparameters` keeps them."""
        return cast(AttributeDict, self.hparams)

    def _base(self, split: str) -> ImageDataset:
        h = self.options
        return make_dataset(h.dataset, split, h.image_size, h.root, h.seed,
                            skip_bad_images=h.skip_bad_images)

    def setup(self, stage: str | None = None) -> None:
        self.train_pairs()

    def train_pairs(self) -> PairDataset:
        """The training pairs, built on first use."""
        if self.train_set is None:
            h = self.options
            base = self._base("train")
            self.skipped_images = list(getattr(base, "skipped", []))
            if self.skipped_images:
                log.warning("skipped %d unreadable image(s) in %s (skip_bad_images), e.g. %s",
                            len(self.skipped_images), h.root, self.skipped_images[0])
            supervised = h.supervised and getattr(base, "labelled", True)
            self.train_set = PairDataset(base, supervised, h.k_refs, h.seed)
        return self.train_set

    @property
    def num_classes(self) -> int:
        return int(getattr(self.train_pairs().base, "num_classes", 1))

    def train_dataloader(self) -> DataLoader:
        pairs = self.train_pairs()
        rank, world, step = 0, 1, None
        trainer = self.trainer
        if trainer is not None:  # the data stream continues at the trainer's step (also when resumed)
            rank, world, step = trainer.global_rank, trainer.world_size, lambda: trainer.global_step
        self.sampler = StepBatchSampler(self.options.batch_size, self.options.steps_per_epoch, rank, world, step)
        workers = self.options.num_workers
        workers = auto_workers(pairs.base) if workers == "auto" else workers
        # pinned host memory lets the copy to the GPU run asynchronously; on the CPU it is wasted work
        pin = trainer.strategy.root_device.type == "cuda" if trainer is not None else torch.cuda.is_available()
        return StepDataLoader(pairs, batch_sampler=self.sampler, collate_fn=collate_batch, num_workers=workers,
                              pin_memory=pin, persistent_workers=workers > 0)

    def panel_batch(self, n: int | None = None) -> dict:
        """A fixed batch of n pairs (default panel_size; validation split when there is one) for image
        panels and the copy-through alarm."""
        h, train = self.options, self.train_pairs()
        try:
            pairs = PairDataset(self._base("val"), train.supervised, h.k_refs, seed=h.seed + 1)
        except ValueError:  # no validation split, or too small to pair (e.g. 1 image)
            pairs = PairDataset(train.base, train.supervised, h.k_refs, seed=h.seed + 1)
        return pairs.__getitems__(list(range(h.panel_size if n is None else n)))
