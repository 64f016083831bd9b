"""Evaluation in bounded memory: images are read in chunks of indices (through DataLoader workers when the
dataset reads files), every metric keeps only per-item numbers, and whatever needs many images at once
(probes, DCI, FID) works on a bounded, seeded sample. Peak memory depends on the chunk and sample sizes,
never on the size of the split."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data.files import auto_workers

# pixels per chunk: 64 pairs at 32 px, 2 at 224 (each pair reads up to 2 + K − 1 images, and a FUNIT decoder
# holds about 50 MB of activations per 224-px image it draws)
CHUNK_PIXELS = 64 * 32 * 32
# the probes and DCI see content codes average-pooled to at most this many cells a side: a 224-px content
# code (512 × 28 × 28 in the FUNIT layout) would make 3,000 probe rows 4.8 GB; 8 × 8 keeps the 32-px codes
# of the presets whole
PROBE_CELLS = 8


def chunk_size(image_size: int, minimum: int = 2) -> int:
    """Items per chunk at this image side."""
    return max(minimum, CHUNK_PIXELS // (image_size * image_size))


def sample_indices(n_total: int, n: int, seed: int) -> torch.Tensor:
    """All indices in order when n_total ≤ n, else n of them drawn without replacement (seeded), sorted.
    # (min(n, n_total),) long"""
    if n_total <= n:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def pooled(content: torch.Tensor, cells: int = PROBE_CELLS) -> torch.Tensor:
    """Content codes for probes: spatial codes larger than cells × cells average-pooled to that size."""
    if content.dim() == 4 and max(content.shape[-2:]) > cells:
        return F.adaptive_avg_pool2d(content, (min(cells, content.shape[-2]), min(cells, content.shape[-1])))
    return content


class Subset(Dataset):
    """Some images of a dataset, with the same contract (labels, num_classes, class_names, and images /
    factors where the dataset holds them in memory)."""

    def __init__(self, base, indices: torch.Tensor):
        self.base, self.indices = base, torch.as_tensor(indices, dtype=torch.long)
        self.labels = torch.as_tensor(base.labels)[self.indices]
        self.num_classes = getattr(base, "num_classes", int(self.labels.max()) + 1)
        self.class_names = getattr(base, "class_names", None)
        for name in ("images", "factors"):
            values = getattr(base, name, None)
            if values is not None:
                setattr(self, name, values[self.indices])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.base[int(self.indices[i])]


class _Gather(Dataset):
    """One DataLoader item = the images of one chunk of indices, stacked."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitems__(self, idx: list[int]) -> torch.Tensor:
        return torch.stack([self.base[i][0] for i in idx])


def _as_is(batch: Any) -> Any:
    return batch  # __getitems__ already stacked the chunk


def read_chunks(dataset, chunks: Sequence[torch.Tensor], workers: int | None = None) -> Iterator[torch.Tensor]:
    """The images of each chunk of indices, in order.  # each (len(chunk), 3, H, W)"""
    images = getattr(dataset, "images", None)
    if images is not None:
        for idx in chunks:
            yield images[idx]
        return
    workers = auto_workers(dataset) if workers is None else workers  # as training reads files
    loader = DataLoader(_Gather(dataset), batch_sampler=[c.tolist() for c in chunks], collate_fn=_as_is,
                        num_workers=workers if len(chunks) > 1 else 0)
    yield from loader


class Records:
    """Per-item values gathered chunk by chunk: add(name=tensor, ...), then cat(name) → all rows."""

    def __init__(self) -> None:
        self._parts: dict[str, list[torch.Tensor]] = defaultdict(list)

    def add(self, **values: torch.Tensor) -> None:
        for name, value in values.items():
            self._parts[name].append(value.detach().cpu())

    def __contains__(self, name: str) -> bool:
        return name in self._parts

    def cat(self, name: str) -> torch.Tensor:
        return torch.cat(self._parts[name])

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """{suffix: rows} of every name 'prefix.suffix'."""
        return {n[len(prefix) + 1:]: self.cat(n) for n in self._parts if n.startswith(prefix + ".")}
