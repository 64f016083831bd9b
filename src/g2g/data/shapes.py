"""The built-in `shapes` dataset: procedurally rendered images with ground-truth factors.

Class (the identity a model should transfer) = shape x colour scheme; content = position, scale,
rotation and background shade. Because `render` draws any (class, content) pair, the true mixed
image render(content of x1, class of x2) exists and swap error can be measured exactly.

Rendering is vectorised: every image is a signed distance function (SDF) evaluated on the pixel
grid, so a batch of 20,000 images at 32 px takes about a second on one CPU thread.
"""

import hashlib
import math

import torch
from torch.utils.data import Dataset

# No circle: its rotation is invisible, so render(content of a circle, class of a heart) would be
# undefined. Every shape's rotation is identifiable within ROTATION_RANGE (see there).
SHAPE_NAMES = ("bar", "square", "triangle", "star", "cross", "heart")
# A scheme is (fill, outline): two colours, so that telling schemes apart needs more than one hue.
# Fills are bright and saturated and outlines light, so neither is close to the grey background.
SCHEME_NAMES = ("red-white", "green-magenta", "blue-yellow", "yellow-red", "cyan-orange")
SCHEME_COLOURS = torch.tensor(  # (N_SCHEMES, 2 = fill/outline, 3 = RGB) in [0, 1]
    [
        [[0.90, 0.10, 0.10], [1.00, 1.00, 1.00]],
        [[0.10, 0.80, 0.15], [1.00, 0.25, 0.90]],
        [[0.15, 0.30, 1.00], [1.00, 0.90, 0.10]],
        [[1.00, 0.85, 0.10], [0.85, 0.05, 0.05]],
        [[0.05, 0.85, 0.90], [1.00, 0.50, 0.00]],
    ]
)
N_SHAPES = len(SHAPE_NAMES)
N_SCHEMES = len(SCHEME_NAMES)
N_CLASSES = N_SHAPES * N_SCHEMES  # class_id = shape * N_SCHEMES + scheme
CLASS_NAMES = tuple(f"{s}/{c}" for s in SHAPE_NAMES for c in SCHEME_NAMES)
# Held out: the diagonal shape i with scheme i (i < 5). Each held-out class combines a shape and a
# scheme that both occur in seen classes, so transferring it is compositional generalisation.
HELD_OUT_CLASSES = tuple(i * N_SCHEMES + i for i in range(min(N_SHAPES, N_SCHEMES)))
SEEN_CLASSES = tuple(c for c in range(N_CLASSES) if c not in HELD_OUT_CLASSES)

FACTOR_NAMES = ("x", "y", "scale", "rotation", "background")
# Factor ranges. Lengths are in units of half the image side (the image spans [-1, 1]).
# Rotation in degrees, counter-clockwise. The window is narrower than the smallest symmetry period
# (the star's 72 degrees, the bar's 180), so the rotation of every image is identifiable and the true
# swap target exists. Over a full turn it would not be: a square at 10 degrees looks exactly like one at
# 100, and a heart drawn with "the square's rotation" is then a guess (the Bayes-optimal swap of such a
# dataset reaches only 21.7 dB PSNR of the mean error at 32 px).
ROTATION_RANGE = (-25.0, 25.0)
RADIUS_RANGE = (0.50, 0.75)  # shape radius = 25 % .. 37.5 % of the image side
BACKGROUND_RANGE = (0.08, 0.45)  # grey level in [0, 1]: dark to mid, never near a bright fill
OUTLINE_FRACTION = 0.05  # outline width = 5 % of the image side (1.6 px at 32 px, 3.2 px at 64 px)
MIN_SIZE = 16
DEFAULT_SPLIT_SIZES = {"train": 20000, "val": 2000, "test": 2000}
CLASS_SETS = {"seen": SEEN_CLASSES, "heldout": HELD_OUT_CLASSES, "all": tuple(range(N_CLASSES))}


# --- Signed distance functions -------------------------------------------------------------------
# Each takes local coordinates px, py (any equal shapes, y pointing up) and returns the signed
# distance to the shape's edge (negative inside). Every shape fits in the unit disc, so a shape of
# radius R stays inside a disc of radius R around its centre. Formulas: Inigo Quilez, "2D distance
# functions" (exact SDFs; exactness matters because the outline is a band of the interior distance).


def length(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x * x + y * y)


def sd_box(px, py, half_x, half_y):
    qx, qy = px.abs() - half_x, py.abs() - half_y
    return length(qx.clamp(min=0), qy.clamp(min=0)) + torch.maximum(qx, qy).clamp(max=0)


def _sd_bar(px, py):
    # A 2:1 rectangle, lying flat at rotation 0; corners at radius 0.97 (inside the unit disc).
    return sd_box(px, py, 0.86, 0.43)


def _sd_square(px, py, half=0.70):
    return sd_box(px, py, half, half)


def sd_triangle(px, py, circumradius=1.0):
    # Equilateral, centred on its circumcentre, one vertex up; r is half the side length.
    k = math.sqrt(3.0)
    r = circumradius * k / 2
    px, py = px.abs() - r, py + r / k
    fold = px + k * py > 0  # fold the plane so only one edge needs a distance
    px, py = torch.where(fold, (px - k * py) / 2, px), torch.where(fold, (-k * px - py) / 2, py)
    px = px - px.clamp(-2 * r, 0)
    return -length(px, py) * torch.sign(py)


def _sd_star(px, py, r=1.0, inner=0.5):
    # Five points; mirror into one 36-degree wedge with two reflections, then one edge segment.
    k1x, k1y = 0.809016994375, -0.587785252292
    px = px.abs()
    for kx, ky in ((k1x, k1y), (-k1x, k1y)):
        dot2 = 2 * (kx * px + ky * py).clamp(min=0)
        px, py = px - dot2 * kx, py - dot2 * ky
    px, py = px.abs(), py - r
    bax, bay = inner * -k1y, inner * k1x - 1.0
    h = ((px * bax + py * bay) / (bax * bax + bay * bay)).clamp(0.0, r)
    return length(px - bax * h, py - bay * h) * torch.sign(py * bax - px * bay)


def _sd_cross(px, py, arm=0.94, half_width=0.32):
    px, py = px.abs(), py.abs()
    px, py = torch.maximum(px, py), torch.minimum(px, py)  # symmetry about the diagonal
    qx, qy = px - arm, py - half_width
    k = torch.maximum(qx, qy)
    wx = torch.where(k > 0, qx, half_width - px)
    wy = torch.where(k > 0, qy, -k)
    return torch.sign(k) * length(wx.clamp(min=0), wy.clamp(min=0))


def _sd_heart(px, py, radius=0.632, centre_y=0.63):
    # Quilez's heart spans y in [0, 1.10]; (0, 0.63) is the centre of its smallest enclosing disc,
    # whose radius is 0.632, so rescale by that radius to fit the unit disc.
    px, py = px.abs() * radius, py * radius + centre_y
    lobe = length(px - 0.25, py - 0.75) - math.sqrt(2.0) / 4
    t = 0.5 * (px + py).clamp(min=0)
    tip = torch.sqrt(torch.minimum(px**2 + (py - 1) ** 2, (px - t) ** 2 + (py - t) ** 2))
    return torch.where(px + py > 1, lobe, tip * torch.sign(px - py)) / radius


SDFS = (_sd_bar, _sd_square, sd_triangle, _sd_star, _sd_cross, _sd_heart)


# --- Rendering -----------------------------------------------------------------------------------


def sample_factors(n: int, generator: torch.Generator) -> torch.Tensor:
    """Content factors uniform in [0, 1]: (n, 5), columns as in FACTOR_NAMES."""
    return torch.rand(n, len(FACTOR_NAMES), generator=generator)


def check_render_args(class_ids, factors, size, n_classes: int, n_factors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated (class_ids (N,) long, factors (N, F) float) on the CPU, or a ValueError saying what is wrong."""
    class_ids, factors = torch.as_tensor(class_ids), torch.as_tensor(factors, dtype=torch.float32)
    if class_ids.dim() != 1 or class_ids.dtype.is_floating_point:
        raise ValueError(f"class_ids must be an integer tensor of shape (N,), got {tuple(class_ids.shape)} "
                         f"{class_ids.dtype}")
    if factors.shape != (len(class_ids), n_factors):
        raise ValueError(f"factors must have shape (N, {n_factors}) = ({len(class_ids)}, {n_factors}) to match "
                         f"class_ids, got {tuple(factors.shape)}")
    if len(class_ids) and not (0 <= int(class_ids.min()) and int(class_ids.max()) < n_classes):
        lo, hi = int(class_ids.min()), int(class_ids.max())
        raise ValueError(f"class_ids must lie in [0, {n_classes}), got min {lo}, max {hi}")
    if len(factors) and not bool(((factors >= 0) & (factors <= 1)).all()):
        raise ValueError("factors must lie in [0, 1] (draw them with torch.rand); got values outside or NaN")
    if not isinstance(size, int) or size < MIN_SIZE:
        raise ValueError(f"size must be an int >= {MIN_SIZE}, got {size!r}")
    return class_ids.cpu().long(), factors.cpu()


def render(class_ids: torch.Tensor, factors: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Draw shapes: class_ids (N,) long, factors (N, 5) in [0, 1] -> images (N, 3, size, size) in [-1, 1].

    Factor meaning: x, y place the centre from as far left/up (0) to as far right/down (1) as the
    shape fits at its scale (1 px margin); scale maps linearly to RADIUS_RANGE; rotation to
    ROTATION_RANGE (degrees, counter-clockwise); background to a grey level in BACKGROUND_RANGE.
    """
    class_ids, factors = check_render_args(class_ids, factors, size, N_CLASSES, len(FACTOR_NAMES))
    out = torch.empty(len(class_ids), 3, size, size)
    # Chunks of ~2**18 pixels keep each (chunk, size, size) intermediate (1 MB) in cache: about
    # twice as fast as one big batch, and memory stays flat for any N.
    chunk = max(1, 2**18 // (size * size))
    for start in range(0, len(class_ids), chunk):
        stop = start + chunk
        _render_chunk(class_ids[start:stop], factors[start:stop], size, out=out[start:stop])
    return out


def _render_chunk(class_ids: torch.Tensor, factors: torch.Tensor, size: int, out: torch.Tensor) -> None:
    """Render n images into out (n, 3, size, size), in [-1, 1]."""
    n = len(class_ids)
    shape_ids, scheme_ids = class_ids // N_SCHEMES, class_ids % N_SCHEMES
    x, y, scale, rotation, background = factors.unbind(1)  # each (n,)

    radius = RADIUS_RANGE[0] + scale * (RADIUS_RANGE[1] - RADIUS_RANGE[0])  # (n,)
    travel = 1.0 - radius - 2.0 / size  # furthest the centre may go while the shape stays inside
    cx, cy = (2 * x - 1) * travel, (2 * y - 1) * travel  # image coords, y down
    lo, hi = ROTATION_RANGE
    theta = torch.deg2rad(lo + rotation * (hi - lo))
    # Rotating the grid by -theta turns the shape by +theta; dividing by the radius makes it unit size.
    cos, sin = (torch.cos(theta) / radius).view(n, 1, 1), (torch.sin(theta) / radius).view(n, 1, 1)

    grid = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0  # pixel centres
    qx = grid.view(1, 1, size) - cx.view(n, 1, 1)  # (n, 1, W)
    qy = cy.view(n, 1, 1) - grid.view(1, size, 1)  # (n, H, 1), flipped so local y points up
    px_per_unit = (radius * (size / 2.0)).view(n, 1, 1)  # local distance -> pixels

    dist = torch.empty(n, size, size)  # signed distance to the edge, in pixels
    for shape, sdf in enumerate(SDFS):  # loop over 6 shapes, each on its whole sub-batch
        i = (shape_ids == shape).nonzero().squeeze(1)
        if len(i):
            px = cos[i] * qx[i] + sin[i] * qy[i]  # (k, H, W) local coordinates
            py = cos[i] * qy[i] - sin[i] * qx[i]
            dist[i] = sdf(px, py) * px_per_unit[i]
    dist = dist.unsqueeze(1)  # (n, 1, H, W)

    # Anti-aliasing: coverage ramps from 0 to 1 across one pixel at each edge.
    outer = (0.5 - dist).clamp_(0, 1)  # coverage of the shape
    inner = (0.5 - max(1.0, OUTLINE_FRACTION * size) - dist).clamp_(0, 1)  # of the fill, inside the outline
    # Colours are mapped to [-1, 1] before blending (blending is linear, so this is the same image).
    fill, outline = (SCHEME_COLOURS[scheme_ids] * 2 - 1).view(n, 2, 3, 1, 1).unbind(1)  # (n, 3, 1, 1)
    grey = BACKGROUND_RANGE[0] + background * (BACKGROUND_RANGE[1] - BACKGROUND_RANGE[0])
    grey = (grey * 2 - 1).view(n, 1, 1, 1)
    torch.addcmul(grey, outer, outline - grey, out=out)  # background -> outline colour
    out.addcmul_(inner, fill - outline)  # outline colour -> fill colour


# --- Dataset -------------------------------------------------------------------------------------


def split_seed(seed: int, split: str, classes: str, dataset: str = "shapes") -> int:
    # A stable hash (unlike Python's hash()) so each (dataset, seed, split, classes) gets its own fixed stream.
    digest = hashlib.sha256(f"g2g-{dataset}/{seed}/{split}/{classes}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def check_dataset_args(split: str, size: int, n: int | None, classes: str, class_sets: dict) -> int:
    """The image count of a built-in dataset's split (n, or the split's default), or a ValueError saying
    which argument is wrong."""
    if split not in DEFAULT_SPLIT_SIZES:
        raise ValueError(f"split must be one of {sorted(DEFAULT_SPLIT_SIZES)}, got {split!r}")
    if classes not in class_sets:
        raise ValueError(f"classes must be one of {sorted(class_sets)}, got {classes!r}")
    if classes == "heldout" and split == "train":
        raise ValueError("held-out classes are never trained on: use classes='heldout' with split 'val' or "
                         "'test', or classes='seen' for training")
    if not isinstance(size, int) or size < MIN_SIZE:
        raise ValueError(f"size must be an int >= {MIN_SIZE}, got {size!r}")
    n = DEFAULT_SPLIT_SIZES[split] if n is None else n
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (or None for the split's default), got {n!r}")
    return n


class ShapesDataset(Dataset):
    """Rendered shapes with labels and factors, all rendered once at construction.

    split: "train", "val" or "test"; classes: "seen" (25 classes), "heldout" (5, never trained on,
    so not allowed with split "train") or "all". Labels are global class ids in [0, N_CLASSES).
    Memory: N * 3 * size**2 floats (20,000 images at 64 px = 0.98 GB; at 32 px = 0.25 GB).
    """

    factor_names, render = FACTOR_NAMES, staticmethod(render)  # what the evaluation draws true mixed images with

    def __init__(
        self, split: str = "train", size: int = 64, n: int | None = None, seed: int = 0, classes: str = "seen"
    ):
        n = check_dataset_args(split, size, n, classes, CLASS_SETS)

        generator = torch.Generator().manual_seed(split_seed(seed, split, classes))
        pool = torch.tensor(CLASS_SETS[classes])
        # Cycle through the classes so they are balanced to within one image, then shuffle.
        labels = pool[torch.arange(n) % len(pool)]
        self.labels = labels[torch.randperm(n, generator=generator)]  # (N,) long
        self.factors = sample_factors(n, generator)  # (N, 5) in [0, 1]
        self.images = render(self.labels, self.factors, size)  # (N, 3, size, size) in [-1, 1]
        self.split, self.size, self.seed, self.classes = split, size, seed, classes
        self.num_classes = N_CLASSES
        self.class_names = list(CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])
