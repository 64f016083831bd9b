"""Test pairs and class references for evaluation, and chunked application of a model to many images.
Used by `g2g eval`, `g2g demo` and the benchmarks, so that all of them draw the same pairs for a seed."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def batched(fn: Callable[..., Any], *tensors: torch.Tensor, chunk: int = 500) -> Any:
    """Apply fn to aligned chunks of tensors and concatenate each output field on the CPU: a tensor, or
    a tuple of tensors where fn returns tuples."""
    outs = [fn(*(t[i:i + chunk] for t in tensors)) for i in range(0, len(tensors[0]), chunk)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat([o.cpu() for o in field_]) for field_ in zip(*outs))
    return torch.cat([o.cpu() for o in outs])


def make_pairs(labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n index pairs (i, j) with different labels where there are several classes. (n,), (n,)"""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(len(labels), (n,), generator=g)
    j = torch.randint(len(labels), (n,), generator=g)
    if len(labels.unique()) > 1:
        for _ in range(100):  # redraw partners of the same class (vectorised, a few rounds suffice)
            same = labels[i] == labels[j]
            if not same.any():
                break
            j[same] = torch.randint(len(labels), (int(same.sum()),), generator=g)
        keep = labels[i] != labels[j]
        i, j = i[keep], j[keep]
    return i, j


def same_class_others(labels: torch.Tensor, idx: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """k other images of the class of each image idx, distinct while the class has k others (then
    repeated; an image alone in its class stands for itself).  # (n, k) indices"""
    order = torch.argsort(labels, stable=True)                 # images grouped by class
    classes, counts = labels.unique(return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    c = torch.searchsorted(classes, labels[idx])
    start, others = starts[c], counts[c] - 1                   # (n,)
    # the k smallest of `others` random keys per row are k distinct offsets among the class's others
    width = max(int(others.max()), 1)
    keys = torch.rand(len(idx), width, generator=torch.Generator().manual_seed(seed + 1))
    keys[torch.arange(width) >= others[:, None]] = 2.0
    off = keys.argsort(1)[:, :k] % others.clamp(min=1)[:, None]   # (n, min(k, width))
    off = off.repeat(1, -(-k // off.shape[1]))[:, :k]
    own = rank[idx][:, None]                                   # position of the image itself in `order`
    pos = start[:, None] + off
    pos = pos + (pos >= own)                                   # step over the image itself
    return order[torch.where(others[:, None] > 0, pos, own)]
