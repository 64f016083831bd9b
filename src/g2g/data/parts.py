"""The built-in `parts` dataset: multi-part, multi-colour objects of very different sizes.

Class = an arrangement of two or three parts (a body and attached parts at fixed offsets, sizes and
angles) x a palette of three colours (one per part slot). Content = the pose (position, scale from 35 % to
100 % of the image side, rotation) and a plain background colour drawn per image. `render` draws any
(class, content) pair, so the true mixed image render(class of x2, factors of x1) keeps x1's pose and
background and draws x2's object; swap error is measured exactly, as on `shapes`.
"""
from __future__ import annotations

import math

import torch

from .procedural import (ProceduralDataset, by_kind, coverage, hsv_to_rgb, pose_frame,
                         render_in_chunks, rotate)
from .shapes import check_render_args, length, sd_box, sd_triangle

# --- Parts ---------------------------------------------------------------------------------------
# A primitive maps local coordinates px, py (y up) and its two size parameters a, b to the signed
# distance to its edge (negative inside), in the object's units.


def _disk(px, py, a, b):  # radius a
    return length(px, py) - a


def _box(px, py, a, b):  # half width a, half height b
    return sd_box(px, py, a, b)


def _capsule(px, py, a, b):  # a segment of half length a along x, thickened by radius b
    return length((px.abs() - a).clamp(min=0), py) - b


def _triangle(px, py, a, b):  # equilateral, circumradius a, one vertex up
    return sd_triangle(px / a, py / a) * a


PRIMITIVES = ("disk", "box", "capsule", "triangle")
_SDFS = (_disk, _box, _capsule, _triangle)
DISK, BOX, CAPSULE, TRIANGLE = range(len(PRIMITIVES))
# Each part: (primitive, x, y, a, b, angle in degrees counter-clockwise, palette slot), in the object's
# frame whose unit disc holds the whole object; parts are painted in order, later ones on top. Every
# arrangement lacks rotational symmetry, so its rotation is identifiable over ROTATION_RANGE.
NO_PART = (-1, 0.0, 0.0, 0.0, 0.0, 0, 0)  # pads two-part arrangements
ARRANGEMENTS = {
    "snowman": ((DISK, 0.0, -0.38, 0.55, 0.0, 0, 0), (DISK, 0.0, 0.42, 0.36, 0.0, 0, 1),
                (BOX, 0.0, 0.80, 0.30, 0.08, 0, 2)),
    "mushroom": ((BOX, 0.0, -0.42, 0.20, 0.45, 0, 1), (DISK, 0.0, 0.20, 0.62, 0.0, 0, 0), NO_PART),
    "flag": ((BOX, -0.50, 0.0, 0.07, 0.78, 0, 1), (BOX, 0.02, 0.42, 0.45, 0.28, 0, 0),
             (TRIANGLE, 0.02, 0.42, 0.18, 0.0, -90, 2)),
    "robot": ((BOX, 0.0, -0.15, 0.55, 0.55, 0, 0), (CAPSULE, 0.0, 0.05, 0.28, 0.10, 0, 1),
              (DISK, 0.30, 0.62, 0.14, 0.0, 0, 2)),
    "mug": ((BOX, -0.20, -0.10, 0.45, 0.55, 0, 0), (CAPSULE, 0.36, -0.10, 0.25, 0.14, 90, 1), NO_PART),
    "rocket": ((CAPSULE, -0.10, 0.0, 0.50, 0.24, 0, 0), (TRIANGLE, 0.62, 0.0, 0.30, 0.0, -90, 1),
               (BOX, -0.62, 0.0, 0.10, 0.42, 0, 2)),
}
ARRANGEMENT_NAMES = tuple(ARRANGEMENTS)
PARTS = torch.tensor(list(ARRANGEMENTS.values()), dtype=torch.float32)  # (N_ARRANGEMENTS, 3 parts, 7)
# Palette colours are bright and saturated (value >= 0.85), so every part stands out from the
# background (value at most 0.45), and the three colours of a palette differ from each other.
PALETTE_NAMES = ("sunset", "ocean", "meadow", "candy", "traffic")
PALETTE_COLOURS = torch.tensor(  # (N_PALETTES, 3 slots, 3 = RGB) in [0, 1]
    [
        [[1.00, 0.45, 0.10], [1.00, 0.90, 0.20], [0.85, 0.10, 0.35]],
        [[0.10, 0.50, 1.00], [0.20, 0.95, 0.85], [1.00, 1.00, 1.00]],
        [[0.25, 0.85, 0.20], [0.95, 0.75, 0.35], [0.90, 0.15, 0.15]],
        [[1.00, 0.40, 0.80], [0.60, 0.30, 1.00], [0.40, 1.00, 0.90]],
        [[0.95, 0.10, 0.10], [1.00, 0.85, 0.00], [0.10, 0.85, 0.30]],
    ]
)
N_ARRANGEMENTS, N_PALETTES = len(ARRANGEMENTS), len(PALETTE_NAMES)
N_CLASSES = N_ARRANGEMENTS * N_PALETTES  # class_id = arrangement * N_PALETTES + palette
CLASS_NAMES = tuple(f"{a}/{p}" for a in ARRANGEMENT_NAMES for p in PALETTE_NAMES)
# Held out: arrangement i with palette (i + 1) mod 5 (i < 5): both seen in training, never together.
HELD_OUT_CLASSES = tuple(sorted(i * N_PALETTES + (i + 1) % N_PALETTES for i in range(N_PALETTES)))
SEEN_CLASSES = tuple(c for c in range(N_CLASSES) if c not in HELD_OUT_CLASSES)
CLASS_SETS = {"seen": SEEN_CLASSES, "heldout": HELD_OUT_CLASSES, "all": tuple(range(N_CLASSES))}

FACTOR_NAMES = ("x", "y", "scale", "rotation", "background_hue", "background_saturation", "background_value")
# Object radius in units of half the image side: the object spans 35 % to 100 % of the image side
# (at the top of the range it fills the frame and no longer moves).
RADIUS_RANGE = (0.35, 1.0)
ROTATION_RANGE = (-40.0, 40.0)
SATURATION_RANGE = (0.0, 0.6)  # background: grey to muted colour, dark to mid
VALUE_RANGE = (0.05, 0.45)


def background(factors: torch.Tensor, size: int) -> torch.Tensor:
    """The plain background of each factor row: factors (n, 7) in [0, 1] -> (n, 3, size, size) in [-1, 1]."""
    hue, saturation, value = factors[:, 4:].unbind(1)
    saturation = SATURATION_RANGE[0] + saturation * (SATURATION_RANGE[1] - SATURATION_RANGE[0])
    value = VALUE_RANGE[0] + value * (VALUE_RANGE[1] - VALUE_RANGE[0])
    colour = hsv_to_rgb(hue, saturation, value) * 2 - 1  # (n, 3)
    return colour.view(-1, 3, 1, 1).expand(-1, 3, size, size).clone()


def render(class_ids: torch.Tensor, factors: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Draw objects: class_ids (N,) long, factors (N, 7) in [0, 1] -> images (N, 3, size, size) in [-1, 1].

    Factors, in FACTOR_NAMES order: x, y place the centre from as far left/up (0) to as far right/down
    (1) as the object fits at its scale; scale maps to RADIUS_RANGE; rotation to ROTATION_RANGE (degrees,
    counter-clockwise); the background's hue, saturation (SATURATION_RANGE) and value (VALUE_RANGE).
    """
    class_ids, factors = check_render_args(class_ids, factors, size, N_CLASSES, len(FACTOR_NAMES))
    return render_in_chunks(_render_chunk, class_ids, factors, size)


def _placed(sdf):
    """A primitive evaluated in its part's frame: params (k, 5, 1, 1) = x, y, a, b, angle."""
    def distance(px: torch.Tensor, py: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        x, y, a, b, angle = params.unbind(1)  # each (k, 1, 1)
        return sdf(*rotate(px - x, py - y, angle), a, b)
    return distance


_PLACED = tuple(_placed(sdf) for sdf in _SDFS)


def _render_chunk(class_ids: torch.Tensor, factors: torch.Tensor, size: int, out: torch.Tensor) -> None:
    """Render n images into out (n, 3, size, size), in [-1, 1]: the background, then each part on top."""
    n = len(class_ids)
    arrangement, palette = class_ids // N_PALETTES, class_ids % N_PALETTES
    px, py, px_per_unit = pose_frame(factors[:, :4], RADIUS_RANGE, ROTATION_RANGE, size)
    colours = PALETTE_COLOURS[palette] * 2 - 1  # (n, 3 slots, 3)
    out.copy_(background(factors, size))
    rows = torch.arange(n)
    for part in PARTS[arrangement].unbind(1):  # (n, 7) each: the first, second, third part of every image
        params = part[:, 1:6].view(n, 5, 1, 1)
        dist = by_kind(part[:, 0].long(), _PLACED, torch.full((n, size, size), math.inf), px, py, params)
        cover = coverage(dist * px_per_unit).unsqueeze(1)  # (n, 1, H, W)
        colour = colours[rows, part[:, 6].long()].view(n, 3, 1, 1)
        out.addcmul_(cover, colour - out)  # paint the part over what is there


class PartsDataset(ProceduralDataset):
    """Rendered multi-part objects with labels and factors: 30 classes, 25 seen and 5 held out (see
    ProceduralDataset)."""

    name, class_sets, class_names, factor_names = "parts", CLASS_SETS, CLASS_NAMES, FACTOR_NAMES
    render = staticmethod(render)
