"""The built-in `scenes` dataset: one object on a patterned background, with ground-truth factors.

Class = the object: one of `shapes`' six shapes x a two-colour scheme of its own (not `shapes`' schemes).
Content = the object's pose (position, scale, rotation) and the whole background: a linear gradient,
stripes or checks between two muted colours, at an angle, period and phase. `render` draws any
(class, content) pair, so the true mixed image render(class of x2, factors of x1) keeps x1's pose and
x1's background and draws x2's object; swap error is measured exactly, as on `shapes`.
"""
from __future__ import annotations

import math

import torch

from .procedural import (ProceduralDataset, by_kind, coverage, hsv_to_rgb, pixel_grid,
                         pose_frame, render_in_chunks)
from .shapes import check_render_args, OUTLINE_FRACTION, ROTATION_RANGE, SDFS, SHAPE_NAMES

# A scheme is (fill, outline). Fills are bright and saturated, so they stand out from the muted
# backgrounds (saturation 0.5, value at most 0.55); the outline separates the fill from any background.
SCHEME_NAMES = ("white-black", "magenta-yellow", "lime-blue", "orange-white", "sky-red")
SCHEME_COLOURS = torch.tensor(  # (N_SCHEMES, 2 = fill/outline, 3 = RGB) in [0, 1]
    [
        [[1.00, 1.00, 1.00], [0.00, 0.00, 0.00]],
        [[1.00, 0.20, 0.85], [1.00, 0.95, 0.20]],
        [[0.60, 1.00, 0.10], [0.10, 0.20, 0.90]],
        [[1.00, 0.55, 0.05], [1.00, 1.00, 1.00]],
        [[0.35, 0.80, 1.00], [0.90, 0.05, 0.10]],
    ]
)
N_SHAPES, N_SCHEMES = len(SHAPE_NAMES), len(SCHEME_NAMES)
N_CLASSES = N_SHAPES * N_SCHEMES  # class_id = shape * N_SCHEMES + scheme
CLASS_NAMES = tuple(f"{s}/{c}" for s in SHAPE_NAMES for c in SCHEME_NAMES)
# Held out: shape i with scheme (i + 2) mod 5 (i < 5): a seen shape with a seen scheme, never together in
# training, and a different set from `shapes`' diagonal.
HELD_OUT_CLASSES = tuple(sorted(i * N_SCHEMES + (i + 2) % N_SCHEMES for i in range(N_SCHEMES)))
SEEN_CLASSES = tuple(c for c in range(N_CLASSES) if c not in HELD_OUT_CLASSES)
CLASS_SETS = {"seen": SEEN_CLASSES, "heldout": HELD_OUT_CLASSES, "all": tuple(range(N_CLASSES))}

POSE_NAMES = ("x", "y", "scale", "rotation")
BACKGROUND_NAMES = ("pattern", "hue_a", "value_a", "hue_b", "value_b", "angle", "period", "phase")
FACTOR_NAMES = POSE_NAMES + BACKGROUND_NAMES
PATTERN_NAMES = ("gradient", "stripes", "checks")  # the pattern factor in thirds
# Lengths in units of half the image side. Rotation: `shapes`' window, where every shape's rotation is
# identifiable (narrower than the star's 72-degree symmetry).
RADIUS_RANGE = (0.40, 0.75)  # object radius = 20 % .. 37.5 % of the image side
SATURATION = 0.5  # background colours: muted, so every scheme's fill stands out
VALUE_RANGE = (0.10, 0.55)
# Pattern period (one band of each colour): 2.4 to 6.4 px per band at 32 px. Angles cover a full turn.
PERIOD_RANGE = (0.30, 0.80)


# --- Background ----------------------------------------------------------------------------------
# Each pattern maps coordinates u (along the pattern's direction), v (across it), both (n, H, W), the
# period (n, 1, 1) in image units and in pixels, and the phase (n, 1, 1, in periods) to colour b's
# weight (n, H, W) in [0, 1].


def _bands(w: torch.Tensor, period_px: torch.Tensor) -> torch.Tensor:
    """Anti-aliased weight of the bands where w mod 1 lies in [0.25, 0.75] (w in periods)."""
    return coverage(((w - w.floor() - 0.5).abs() - 0.25) * period_px)


def _gradient(u, v, period, period_px, phase):
    return ((u / math.sqrt(2.0) + 1) / 2).clamp_(0, 1)  # u spans [-sqrt 2, sqrt 2] over the image


def _stripes(u, v, period, period_px, phase):
    return _bands(u / period + phase, period_px)


def _checks(u, v, period, period_px, phase):
    # the product of two signed band waves is a checkerboard; anti-aliased where either changes sign
    su = 2 * _bands(u / period + phase, period_px) - 1
    sv = 2 * _bands(v / period + phase, period_px) - 1
    return 0.5 - 0.5 * su * sv


_PATTERNS = (_gradient, _stripes, _checks)


def background(factors: torch.Tensor, size: int) -> torch.Tensor:
    """The background alone of each factor row: factors (n, 12) in [0, 1] -> (n, 3, size, size) in [-1, 1].

    pattern picks gradient / stripes / checks (thirds of [0, 1]); colours a and b have hue hue_a / hue_b,
    saturation SATURATION and value in VALUE_RANGE; angle (a full turn) is the pattern's direction,
    period maps to PERIOD_RANGE, phase shifts stripes and checks by up to a period. A gradient goes from
    a to b across the image (period and phase do not show).
    """
    n = len(factors)
    kind = (factors[:, 4] * len(_PATTERNS)).long().clamp_(max=len(_PATTERNS) - 1)
    hue_a, value_a, hue_b, value_b, angle, period, phase = factors[:, 5:].unbind(1)
    lo, hi = VALUE_RANGE
    value = lo + torch.stack([value_a, value_b], 1) * (hi - lo)
    a, b = (hsv_to_rgb(torch.stack([hue_a, hue_b], 1), SATURATION, value) * 2 - 1).view(n, 2, 3, 1, 1).unbind(1)
    theta = (angle * 2 * math.pi).view(n, 1, 1)
    gx, gy = pixel_grid(size).view(1, 1, size), -pixel_grid(size).view(1, size, 1)  # y up
    u = torch.cos(theta) * gx + torch.sin(theta) * gy  # (n, H, W)
    v = torch.cos(theta) * gy - torch.sin(theta) * gx
    period = (PERIOD_RANGE[0] + period * (PERIOD_RANGE[1] - PERIOD_RANGE[0])).view(n, 1, 1)
    mix = by_kind(kind, _PATTERNS, torch.empty(n, size, size), u, v, period, period * (size / 2),
                  phase.view(n, 1, 1))
    return torch.addcmul(a, mix.unsqueeze(1), b - a)  # (n, 3, H, W)


# --- Rendering -----------------------------------------------------------------------------------


def render(class_ids: torch.Tensor, factors: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Draw scenes: class_ids (N,) long, factors (N, 12) in [0, 1] -> images (N, 3, size, size) in [-1, 1].

    Factors, in FACTOR_NAMES order: x, y, scale, rotation place the object as in `shapes` (scale maps to
    RADIUS_RANGE, rotation to `shapes`' ROTATION_RANGE); the other eight draw the background
    (`background`).
    """
    class_ids, factors = check_render_args(class_ids, factors, size, N_CLASSES, len(FACTOR_NAMES))
    return render_in_chunks(_render_chunk, class_ids, factors, size)


def _render_chunk(class_ids: torch.Tensor, factors: torch.Tensor, size: int, out: torch.Tensor) -> None:
    """Render n images into out (n, 3, size, size), in [-1, 1]."""
    n = len(class_ids)
    shape_ids, scheme_ids = class_ids // N_SCHEMES, class_ids % N_SCHEMES
    px, py, px_per_unit = pose_frame(factors[:, :4], RADIUS_RANGE, ROTATION_RANGE, size)
    dist = by_kind(shape_ids, SDFS, torch.empty(n, size, size), px, py) * px_per_unit  # (n, H, W), pixels
    dist = dist.unsqueeze(1)  # (n, 1, H, W)
    outer = coverage(dist)  # of the object
    inner = coverage(dist + max(1.0, OUTLINE_FRACTION * size))  # of the fill, inside the outline
    fill, outline = (SCHEME_COLOURS[scheme_ids] * 2 - 1).view(n, 2, 3, 1, 1).unbind(1)  # (n, 3, 1, 1)
    bg = background(factors, size)
    torch.addcmul(bg, outer, outline - bg, out=out)  # background -> outline colour
    out.addcmul_(inner, fill - outline)  # outline colour -> fill colour


class ScenesDataset(ProceduralDataset):
    """Rendered scenes with labels and factors: 30 classes, 25 seen and 5 held out (see ProceduralDataset)."""

    name, class_sets, class_names, factor_names = "scenes", CLASS_SETS, CLASS_NAMES, FACTOR_NAMES
    render = staticmethod(render)
