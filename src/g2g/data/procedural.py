"""What the procedural datasets `scenes` and `parts` share: pose frames, colours, argument checks,
chunked rendering and the dataset class.

Each such dataset draws an image from a class id and a row of content factors in [0, 1]
(`render(class_ids, factors, size)`), so the true mixed image render(class of x2, factors of x1)
exists for any pair and swap error is measured exactly, as on `shapes`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from .shapes import check_dataset_args, split_seed

# Draws n images into out (n, 3, size, size) from class ids (n,) and factors (n, F).
ChunkRenderer = Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor], None]


def render_in_chunks(draw: ChunkRenderer, class_ids: torch.Tensor, factors: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, 3, size, size) drawn in chunks of ~2**18 pixels: each intermediate stays in cache and memory
    stays flat for any N."""
    out = torch.empty(len(class_ids), 3, size, size)
    chunk = max(1, 2**18 // (size * size))
    for start in range(0, len(class_ids), chunk):
        stop = start + chunk
        draw(class_ids[start:stop], factors[start:stop], size, out[start:stop])
    return out


def pixel_grid(size: int) -> torch.Tensor:
    """Pixel centres in image units: the image spans [-1, 1].  # (size,)"""
    return (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0


def pose_frame(pose: torch.Tensor, radius_range: tuple[float, float], rotation_range: tuple[float, float],
               size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each pixel in the object's own frame, for pose (n, 4) = x, y, scale, rotation in [0, 1].

    The object fits the unit disc of its frame; scale maps linearly to its radius in image units
    (radius_range), rotation to degrees counter-clockwise (rotation_range); x, y place the centre from
    as far left/up (0) to as far right/down (1) as the object fits with a 1 px margin (centred when it
    cannot move). Returns px, py (n, H, W), local coordinates with y up, and px_per_unit (n, 1, 1), the
    pixels per local unit (to turn local distances into pixels).
    """
    n = len(pose)
    x, y, scale, rotation = pose.unbind(1)  # each (n,)
    radius = radius_range[0] + scale * (radius_range[1] - radius_range[0])
    travel = (1.0 - radius - 2.0 / size).clamp(min=0)
    cx, cy = (2 * x - 1) * travel, (2 * y - 1) * travel  # image coordinates, y down
    theta = torch.deg2rad(rotation_range[0] + rotation * (rotation_range[1] - rotation_range[0]))
    # Rotating the grid by -theta turns the object by +theta; dividing by the radius makes it unit size.
    cos, sin = (torch.cos(theta) / radius).view(n, 1, 1), (torch.sin(theta) / radius).view(n, 1, 1)
    grid = pixel_grid(size)
    qx = grid.view(1, 1, size) - cx.view(n, 1, 1)  # (n, 1, W)
    qy = cy.view(n, 1, 1) - grid.view(1, size, 1)  # (n, H, 1), flipped so local y points up
    return cos * qx + sin * qy, cos * qy - sin * qx, (radius * (size / 2.0)).view(n, 1, 1)


def coverage(distance_px: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage from a signed distance in pixels (negative inside): 0 to 1 across one pixel."""
    return (0.5 - distance_px).clamp_(0, 1)


def hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor | float, value: torch.Tensor) -> torch.Tensor:
    """Colours from hue, saturation, value in [0, 1] (any equal shapes) -> (..., 3) RGB in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue.unsqueeze(-1) * 6) % 6
    s, v = torch.as_tensor(saturation).unsqueeze(-1), value.unsqueeze(-1)
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def by_kind(kinds: torch.Tensor, functions, out: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    """out[i] = functions[k](*(a[i] for a in args)) for the rows i of kind k, each kind on its whole sub-batch
    (rows of no listed kind keep their value in out).  # out (n, ...)"""
    for k, function in enumerate(functions):
        i = (kinds == k).nonzero().squeeze(1)
        if len(i):
            out[i] = function(*(a[i] for a in args))
    return out


def rotate(px: torch.Tensor, py: torch.Tensor, degrees: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates in a frame turned by `degrees` counter-clockwise (broadcasting)."""
    theta = degrees * (math.pi / 180)
    cos, sin = torch.cos(theta), torch.sin(theta)
    return cos * px + sin * py, cos * py - sin * px


class ProceduralDataset(Dataset):
    """Rendered images with labels and content factors, all rendered once at construction.

    split: "train", "val" or "test"; classes: "seen", "heldout" (never trained on, so not allowed with
    split "train") or "all". Labels are global class ids. A subclass sets `name` (seeds its streams),
    `class_sets`, `class_names`, `factor_names` and `render`.
    Memory: N * 3 * size**2 floats (20,000 images at 32 px = 0.25 GB).
    """

    name: str
    class_sets: dict[str, tuple[int, ...]]
    class_names: tuple[str, ...]
    factor_names: tuple[str, ...]
    render: Callable[..., torch.Tensor]

    def __init__(self, split: str = "train", size: int = 64, n: int | None = None, seed: int = 0,
                 classes: str = "seen"):
        n = check_dataset_args(split, size, n, classes, self.class_sets)

        generator = torch.Generator().manual_seed(split_seed(seed, split, classes, self.name))
        pool = torch.tensor(self.class_sets[classes])
        labels = pool[torch.arange(n) % len(pool)]  # balanced to within one image, then shuffled
        self.labels = labels[torch.randperm(n, generator=generator)]  # (N,) long
        self.factors = torch.rand(n, len(self.factor_names), generator=generator)  # (N, F) in [0, 1]
        self.images = type(self).render(self.labels, self.factors, size)  # (N, 3, size, size) in [-1, 1]
        self.split, self.size, self.seed, self.classes = split, size, seed, classes
        self.num_classes = len(self.class_sets["all"])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])
