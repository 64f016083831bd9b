"""Pair and reference sampling.

A pair is a pure function of (seed, global sample index): the data order of a run depends only on the
step, so a resumed run sees exactly the batches the uninterrupted run would have seen, and no RNG state
has to be saved for the data."""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ImageDataset(Protocol):
    """What PairDataset needs of a base dataset: a length and (image (3, H, W), label) items. The datasets
    of this package also have `labels` (N,) long, `num_classes` and `class_names`."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]: ...


class PairDataset(Dataset):
    """Draws (x1, x2) pairs and class references from a labelled base dataset.

    supervised=True: x2 is of a different class than x1, and the class codes come from `k_refs` other
    images of each one's class (so a class code cannot carry the instance's content).
    supervised=False: x2 is any image and each class code comes from the image itself (the original
    implementation's unsupervised pairing; also the only option for unlabelled folders).

    Items are dicts: x1, x2 (3, H, W); y1, y2 (labels); ref1, ref2 (K, 3, H, W)."""

    def __init__(self, base: ImageDataset, supervised: bool = True, k_refs: int = 1, seed: int = 0):
        labels = torch.as_tensor(getattr(base, "labels", torch.zeros(len(base), dtype=torch.long)))
        if len(labels) < 2:
            raise ValueError("the dataset needs at least 2 images to form pairs")
        classes, counts = labels.unique(return_counts=True)
        if supervised and len(classes) < 2:
            raise ValueError("supervised pairing needs at least 2 classes; use supervised=False "
                             "(data.supervised: false) for unlabelled images")
        self.base = base
        self.supervised = supervised
        self.k_refs = k_refs
        self.seed = seed
        self.labels = labels.numpy()
        self.classes = classes.numpy()
        # members[c] = indices of class c, for drawing same-class references
        order = np.argsort(self.labels, kind="stable")
        self.members = dict(zip(self.classes.tolist(), np.split(order, np.cumsum(counts.numpy())[:-1])))

    def __len__(self) -> int:
        return len(self.base)  # nominal: any non-negative index is valid

    def _indices(self, index: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        i1 = int(rng.integers(len(self.labels)))
        if not self.supervised:
            i2 = int(rng.integers(len(self.labels) - 1))
            i2 += i2 >= i1                         # any image but x1 itself
            return i1, i2, np.array([i1]), np.array([i2])
        c1 = self.labels[i1]
        others = self.classes[self.classes != c1]
        c2 = others[rng.integers(len(others))]
        i2 = int(rng.choice(self.members[c2]))
        return i1, i2, self._refs(rng, c1, i1), self._refs(rng, c2, i2)

    def _refs(self, rng: np.random.Generator, c: int, exclude: int) -> np.ndarray:
        pool = self.members[c]
        if len(pool) > 1:
            pool = pool[pool != exclude]
        return rng.choice(pool, size=self.k_refs, replace=len(pool) < self.k_refs)

    def _images(self, idx: np.ndarray) -> torch.Tensor:
        images = getattr(self.base, "images", None)
        if images is not None:
            return images[torch.as_tensor(idx)]
        return torch.stack([self.base[int(i)][0] for i in idx])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Whole batch at once (the DataLoader uses this when present): one gather per tensor."""
        i1, i2, r1, r2 = map(np.stack, zip(*(self._indices(i) for i in indices)))
        b, k = r1.shape
        # each distinct image is read once: without labels the references are x1 and x2 themselves
        unique, where = np.unique(np.concatenate([i1, i2, r1.ravel(), r2.ravel()]), return_inverse=True)
        images = self._images(unique)[torch.as_tensor(where.ravel())]
        x1, x2, ref1, ref2 = images.split([b, b, b * k, b * k])
        return {"x1": x1, "x2": x2, "ref1": ref1.unflatten(0, (b, k)), "ref2": ref2.unflatten(0, (b, k)),
                "y1": torch.as_tensor(self.labels[i1]), "y2": torch.as_tensor(self.labels[i2])}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def collate_batch(batch: Any) -> Any:
    """`__getitems__` already returns the collated batch (a dict of tensors): pass it through."""
    return batch


class StepBatchSampler(Sampler[list[int]]):
    """Yields the batches of steps start, start+1, … up to the next multiple of steps_per_epoch, as
    global sample indices (epochs are aligned to multiples of steps_per_epoch, resumed or not).

    The batch of step t on rank r is [(t·world + r)·B, …, (t·world + r)·B + B − 1]: disjoint across
    ranks and steps, and fixed by t alone. `step_source` (the trainer's step count) sets `start` each
    time iteration begins, so resuming continues exactly, also from a checkpoint written mid-epoch
    (Lightning then skips `on_train_epoch_start`) and with worker processes (which draw indices as soon
    as the iterator exists). `state_dict` is that step: the whole state of the stream."""

    def __init__(self, batch_size: int, steps_per_epoch: int, rank: int = 0, world_size: int = 1,
                 step_source: Callable[[], int] | None = None):
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.rank = rank
        self.world_size = world_size
        self.step_source = step_source
        self.start = 0

    def state_dict(self) -> dict[str, int]:
        """{'step': the step whose batch comes next}: the step source's count (the same on every rank;
        batches that worker processes drew ahead but no step used are drawn again on resume), else `start`."""
        return {"step": self.step_source() if self.step_source is not None else self.start}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the stream at state['step'] (the step source, when there is one, gives the same step)."""
        self.start = int(state["step"])

    def _end(self) -> int:
        return (self.start // self.steps_per_epoch + 1) * self.steps_per_epoch

    def __len__(self) -> int:
        return self._end() - self.start

    def __iter__(self):
        if self.step_source is not None:
            self.start = self.step_source()
        for t in range(self.start, self._end()):
            first = (t * self.world_size + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))
