"""Sprite networks (`arch: sprite`): a layered decoder for one object on a plain background, such as the
built-in `shapes` data.

The class code is drawn as a canonical RGBA template (the "sprite"); the content code is a pose vector
(translation, log-scale, rotation and the background colour) that places the template on the background
by a similarity warp (`affine_grid` + `grid_sample`). Because the content code is a handful of numbers
that only move the template, it cannot carry the object's shape: the shape must come from the class code.
Sprite-and-transform models of this kind are the image-decomposition work of Monnier et al. (DTI-Sprites,
ICCV 2021) and of Jaderberg et al.'s spatial transformers; here the template is a function of the class
code, not one learned image per cluster, so a class code of a class never seen in training draws a
template too. The decoder suits data that is an object over a background; for photos (faces, animals)
use the `g2g` or `funit` architectures.

A swap draws one class's template at a pose read off another class, so it is only as good as the pose's
precision and as the agreement between classes on what a pose means. The pose encoder refines its first
estimate in the object's own frame (`PoseEncoder`); `lambda_equivariance` and `lambda_pose_moments` (their
terms are in pose_losses.py) make every class use the same units, signs and origin.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ClassEncoder, conv_trunk

# The pose vector, in natural units: (tx, ty) the template centre in image units (the image spans [-1, 1],
# x right, y down), log-scale relative to NOMINAL_SCALE, angle in radians, then the background colour per
# image channel in [-1, 1].
POSE_GEOMETRY = 4
MAX_ROTATION = math.pi / 2  # the coarse angle is bounded to (-90°, 90°) through tanh
BASE_SCALE = 0.62           # half the object's nominal extent in image units at log-scale 0
SCALE_RANGE = 0.5           # the coarse log-scale is bounded to ±0.5 through tanh
TEMPLATE_MARGIN = 1.25      # the template spans 1.25× the object's nominal extent, room for its edge
NOMINAL_SCALE = BASE_SCALE * TEMPLATE_MARGIN  # half the template's side in image units at log-scale 0
# Bounds of one refinement's correction: shift in template units, log-scale, angle in radians.
REFINE_SHIFT, REFINE_SCALE, REFINE_ROTATION = 0.5, 0.3, 0.5


def pose_dim(channels: int) -> int:
    """Length of the content code of arch sprite: 4 geometry numbers + one background value per channel."""
    return POSE_GEOMETRY + channels


def rotation_matrix(angle: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B,) angle and scale → (B, 2, 2) [[cos, sin], [-sin, cos]] / scale; products of these matrices add
    their angles and multiply their 1 / scale."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], 1)


def template_to_image(pose: torch.Tensor) -> torch.Tensor:
    """pose (B, ≥ 4) → (B, 2, 3) `affine_grid` matrices that map template coordinates to image coordinates:
    sampling an image with them gives the object's canonical view (centred, upright, nominal size)."""
    scale = NOMINAL_SCALE * torch.exp(pose[:, 2])
    return torch.cat([rotation_matrix(-pose[:, 3], 1 / scale), pose[:, :2, None]], dim=2)


class PoseRegressor(nn.Module):
    """Image (B, C, S, S) → 4 + C unbounded numbers: a convolutional trunk without normalisation (instance
    normalisation would erase the background level, which is part of the pose), `n_downs` stride-2 blocks
    and `n_res` residual blocks, a 1×1 projection to `code_channels`, then an MLP from the flattened map.
    The last layer starts at zero."""

    def __init__(self, in_channels: int, nf: int, n_downs: int, n_res: int, code_channels: int, image_size: int,
                 hidden: int, max_channels: int):
        super().__init__()
        self.features = nn.Sequential(*conv_trunk(in_channels, nf, n_downs, n_res, code_channels, max_channels,
                                                  "none", "lrelu"))
        side = image_size // 2 ** n_downs
        hidden_layer, last = nn.Linear(code_channels * side * side, hidden), nn.Linear(hidden, pose_dim(in_channels))
        self.head = nn.Sequential(nn.Flatten(), hidden_layer, nn.LeakyReLU(0.2, inplace=True), last)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PoseEncoder(nn.Module):
    """Image (B, C, S, S) → pose code (B, 4 + C) in natural units (see POSE_GEOMETRY).

    A coarse regressor reads the pose from the whole image; each of `refine` refinement passes then samples
    the image in the current estimate's object frame (its canonical view: the object centred, upright, at
    nominal size when the estimate is right) and a second regressor reads the residual from that view:
    a shift, a scale and a rotation composed onto the estimate, and a background correction. Regressing
    position from a downsampled map is coarse (about half a pixel at 32 px); the residual in the
    canonical view is small and seen at full resolution, so one pass brings the short reconstruction from
    24 to 28 dB on `shapes` (the inverse-compositional spatial transformer of Lin & Lucey, CVPR 2017). Both
    last layers start at zero, so a fresh encoder gives the centred, upright, nominal-size pose.

    Each geometry number is bounded by a tanh. With leak > 0 it is tanh(r) + leak · r instead: a regressor
    output driven deep into the tanh's flat tail still gets a gradient back. Without it, a pose thrown off
    the image (translation at its bound, the refinement's too) stays there: its tanh passes no gradient and
    the invisible template none either."""

    def __init__(self, in_channels: int = 3, nf: int = 16, n_downs: int = 3, n_res: int = 0,
                 code_channels: int = 32, image_size: int = 32, hidden: int = 128, max_channels: int = 256,
                 refine: int = 1, leak: float = 0.0):
        super().__init__()
        self.leak = leak
        args = (in_channels, nf, n_downs, n_res, code_channels, image_size, hidden, max_channels)
        self.coarse = PoseRegressor(*args)
        self.fine = PoseRegressor(*args) if refine > 0 else None
        self.refine = refine

    def bound(self, r: torch.Tensor) -> torch.Tensor:
        return torch.tanh(r) + self.leak * r if self.leak else torch.tanh(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.coarse(x)
        shift = self.bound(r[:, :2])
        log_scale, angle = SCALE_RANGE * self.bound(r[:, 2]), MAX_ROTATION * self.bound(r[:, 3])
        background = r[:, POSE_GEOMETRY:]
        passes = [self.fine] * self.refine if self.fine is not None else []  # refine > 0 builds self.fine
        for fine in passes:
            frame = template_to_image(torch.stack([shift[:, 0], shift[:, 1], log_scale, angle], 1))
            view = F.grid_sample(x, F.affine_grid(frame, list(x.shape), align_corners=False), mode="bilinear",
                                 padding_mode="border", align_corners=False)
            d = fine(view)
            shift = shift + (frame[:, :, :2] @ (REFINE_SHIFT * self.bound(d[:, :2, None]))).squeeze(-1)
            log_scale = log_scale + REFINE_SCALE * self.bound(d[:, 2])
            angle = angle + REFINE_ROTATION * self.bound(d[:, 3])
            background = background + d[:, POSE_GEOMETRY:]
        return torch.cat([shift, log_scale[:, None], angle[:, None], torch.tanh(background)], dim=1)


LAYOUT_VIEWS = ("sorted", "edges", "figure")
LAYOUT_CHANNELS = {"edges": 1, "figure": 2}  # channels of each view; "sorted" keeps the image's
EDGE_SCALE = 0.25  # edge view: a step of this size (image units, [-1, 1] range) reads as tanh(1) = 0.76
FIGURE_SCALE = 0.5  # figure channel: a colour this far from the background reads as tanh(1); on `shapes`
                    # every fill and outline is at least 1.16 from every background grey (reads ≥ 0.98)


def _saturate(squared: torch.Tensor, scale: float) -> torch.Tensor:
    """Squared colour distances (..., C, H, W) → (..., 1, H, W): tanh(‖d‖ / scale), the norm over channels."""
    return torch.tanh(squared.sum(dim=-3, keepdim=True).add(1e-8).sqrt() / scale)


def layout_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """What the layout half of a palette class encoder sees of images (..., C, H, W).

    "sorted": each pixel's channels sorted, largest first (blind to hue, not to brightness).
    "edges": one channel, the saturated colour-gradient magnitude tanh(|∇x| / EDGE_SCALE): every boundary
        between two different colours reads about 1 whatever the colours (blind to hue and brightness).
    "figure": the edges and a figure channel, tanh(|x − b| / FIGURE_SCALE), where b is the median colour of
        the image's border: the object's whole area reads about 1 whatever its colours. The edges alone do not
        say which side of an outline is the object: on grey digits the figure channel is the ink.
    """
    if view == "sorted":
        return x.sort(dim=-3, descending=True).values
    if view not in LAYOUT_CHANNELS:
        raise ValueError(f"layout_view must be one of {', '.join(LAYOUT_VIEWS)}, not {view!r}")
    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    edges = _saturate(gx.square() + gy.square(), EDGE_SCALE)
    if view == "edges":
        return edges
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)  # (..., C, L)
    background = border.median(dim=-1).values[..., None, None]  # (..., C, 1, 1)
    return torch.cat([edges, _saturate((x - background).square(), FIGURE_SCALE)], dim=-3)


class LayoutPaletteEncoder(nn.Module):
    """Image (B, C, H, W) → class code (B, layout_dim + palette_dim) for the palette template (`n_parts`):
    the layout half from a class encoder that sees a colour-blind view of the image (`layout_view`), the
    palette half from one that sees the image as it is.

    On `shapes`, a class encoder that saw the plain image snapped a held-out class (a seen shape in a seen
    scheme, never together) to a seen class of the same scheme, and drew that class's shape. Sorting each
    pixel's channels hides the hue but keeps each scheme's brightness profile (a bright fill in a dark
    outline, or the reverse); the edge view hides both. References (B, K, C, H, W) → mean code over K."""

    def __init__(self, in_channels: int, nf: int, n_downs: int, layout_dim: int, palette_dim: int,
                 max_channels: int, view: str = "sorted", pool: str = "mean"):
        super().__init__()
        if view not in LAYOUT_VIEWS:
            raise ValueError(f"layout_view must be one of {', '.join(LAYOUT_VIEWS)}, not {view!r}")
        self.view = view
        self.layout = ClassEncoder(LAYOUT_CHANNELS.get(view, in_channels), nf, n_downs, layout_dim, max_channels,
                                   pool)
        self.palette = ClassEncoder(in_channels, nf, n_downs, palette_dim, max_channels, pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.layout(layout_view(x, self.view)), self.palette(x)], dim=1)


class SpriteDecoder(nn.Module):
    """pose (B, 4 + C) + class code (B, class_dim) → image (B, C, S, S) in [-1, 1].

    template = MLP(class code) → (C + 1, T, T): colour through tanh, opacity through a sigmoid whose bias
    starts as a centred disc (so the first gradients already move a foreground); the template is warped
    by the pose's similarity transform and composited over the pose's flat background colour. An MLP
    straight to pixels learns a template per class within a few hundred steps on `shapes`; a
    convolutional template generator has not drawn a silhouette after a thousand.

    parts > 0 (a palette template): the class code's first half draws the layout — opacity and a soft
    assignment of every template pixel to one of `parts` parts (softmax) — and its second half the
    palette, one colour per part; a pixel's colour is its parts' colours weighted by the assignment.
    Layout and colours then come from different numbers, so a class that combines a seen layout with a
    seen palette in a new way (a held-out class of `shapes`) is drawn from the two halves it would need;
    a single MLP from the whole code has no reason to compose them."""

    def __init__(self, class_dim: int = 64, image_size: int = 32, channels: int = 3, hidden: int = 256,
                 template_size: int | None = None, parts: int = 0):
        super().__init__()
        if parts and class_dim < 2:
            raise ValueError(f"a palette template (parts {parts}) splits the class code in two: class_dim must "
                             f"be >= 2, got {class_dim}")
        self.size, self.channels, self.parts = image_size, channels, parts
        self.template_size = t = template_size or image_size
        self.layout_dim = class_dim - class_dim // 2 if parts else class_dim
        maps = 1 + parts if parts else channels + 1  # opacity + part logits, or colour + opacity
        layout_in, layout_out = nn.Linear(self.layout_dim, hidden), nn.Linear(hidden, maps * t * t)
        self.mlp = nn.Sequential(layout_in, nn.LeakyReLU(0.2, inplace=True), layout_out)
        self.palette: nn.Sequential | None = None
        if parts:
            palette_in, palette_out = nn.Linear(class_dim // 2, hidden), nn.Linear(hidden, parts * channels)
            self.palette = nn.Sequential(palette_in, nn.LeakyReLU(0.2, inplace=True), palette_out)
        with torch.no_grad():  # a small start: templates begin grey, opacity begins at the disc prior
            layout_out.weight.mul_(0.1)
            layout_out.bias.zero_()
            if parts:  # parts begin as unequal colours so that each can take its own pixels
                palette_out.weight.mul_(0.1)
                palette_out.bias.copy_(torch.linspace(-0.5, 0.5, parts).repeat_interleave(channels))
        centres = (torch.arange(t, dtype=torch.float32) + 0.5) / t * 2 - 1
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        radius = (xx ** 2 + yy ** 2).sqrt()
        # opacity logit: +4 at the centre falling through 0 at radius 0.7 of the template's half-side
        self.register_buffer("opacity_prior", (4.0 * (0.7 - radius) / 0.3)[None, None], persistent=False)
        # part logits: part p is favoured on the p-th ring from the centre out, so parts start apart
        rings = [-(radius - 0.7 * (p + 0.5) / parts).abs() * 4 for p in range(parts)]
        self.register_buffer("part_prior", torch.stack(rings)[None] if parts else None, persistent=False)

    def template(self, class_code: torch.Tensor) -> torch.Tensor:
        """class code (B, class_dim) → RGBA template (B, C + 1, T, T): colour in [-1, 1], opacity in [0, 1]."""
        t = self.template_size
        if self.palette is None:  # no parts: the MLP draws colour and opacity
            maps = self.mlp(class_code).view(-1, self.channels + 1, t, t)
            colour, opacity = maps.split([self.channels, 1], dim=1)
            return torch.cat([torch.tanh(colour), torch.sigmoid(opacity + self.opacity_prior)], dim=1)
        layout, palette = class_code.split([self.layout_dim, class_code.shape[1] - self.layout_dim], dim=1)
        maps = self.mlp(layout).view(-1, 1 + self.parts, t, t)
        opacity, assignment = maps.split([1, self.parts], dim=1)
        weights = torch.softmax(assignment + self.part_prior, dim=1)                       # (B, P, T, T)
        colours = torch.tanh(self.palette(palette)).view(-1, self.parts, self.channels)     # (B, P, C)
        colour = torch.einsum("bptu,bpc->bctu", weights, colours)
        return torch.cat([colour, torch.sigmoid(opacity + self.opacity_prior)], dim=1)

    @staticmethod
    def warp(pose: torch.Tensor) -> torch.Tensor:
        """pose (B, 4 + C) → the (B, 2, 3) sampling matrices of `affine_grid`: image → template coordinates."""
        a = rotation_matrix(pose[:, 3], NOMINAL_SCALE * torch.exp(pose[:, 2]))
        return torch.cat([a, -a @ pose[:, :2, None]], dim=2)

    def forward(self, pose: torch.Tensor, class_code: torch.Tensor) -> torch.Tensor:
        return self.place(self.template(class_code).to(pose.dtype), pose)

    def layers(self, template: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RGBA template (B, C + 1, T, T) warped to pose (B, 4 + C) → colour (B, C, S, S), opacity (B, 1, S, S)."""
        grid = F.affine_grid(self.warp(pose), [pose.shape[0], self.channels + 1, self.size, self.size],
                             align_corners=False)
        placed = F.grid_sample(template, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return placed.split([self.channels, 1], dim=1)

    def place(self, template: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """RGBA template (B, C + 1, T, T) at pose (B, 4 + C) over its background → image (B, C, S, S)."""
        return composite(*self.layers(template, pose), pose)


def composite(colour: torch.Tensor, opacity: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Warped template layers (B, C, S, S), (B, 1, S, S) over the background colour of pose (B, 4 + C)."""
    background = pose[:, POSE_GEOMETRY:, None, None].clamp(-1, 1)
    return opacity * colour + (1 - opacity) * background


# --- Pose fit at inference (`n_fit`) ----------------------------------------------------------------
# A regressor reads the pose to about 1/1000 of the image's width (0.033 px at 32 px on `shapes`), and a
# double swap pays that error twice (the pose of x1, then the pose of m1) where a short reconstruction pays
# it once. Fitting the template to the image (Lucas–Kanade's analysis by synthesis) removes most of it:
# m1 was drawn exactly by a template at a pose, so fitting that template finds that pose again.
FIT_EPS = 1e-3      # central-difference step of the Jacobian in pose units (0.016 px of shift at 32 px)
FIT_DAMPING = 1e-3  # Levenberg–Marquardt damping, relative to the diagonal of JᵀJ
UNCOVERED = 0.01    # template opacity below which a pixel counts as background for the fitted background


@torch.no_grad()
def fit_pose(decoder: SpriteDecoder, x: torch.Tensor, pose: torch.Tensor, class_code: torch.Tensor,
             steps: int) -> torch.Tensor:
    """Refine poses (B, 4 + C) of images x (B, C, S, S) against the template of their class codes (B, D),
    drawn once, `steps` times: a damped Gauss–Newton step of the geometry on the squared error
    ‖x − G(pose, class code)‖², then the background as the median of the pixels the template leaves
    uncovered. A median, not the least-squares level: that would take up what the template gets wrong (on
    `digits`, whose background is black, ink the template missed turned it grey). The Jacobian is taken
    by central differences (grid_sample has no forward-mode derivative), all 8 displaced poses in one
    call. A step is kept only for the images whose error it lowers, so a template that fits badly (an
    unseen class) cannot leave a pose worse than the encoder's. Returns the refined poses."""
    template = decoder.template(class_code).to(pose.dtype)
    b, g = len(pose), POSE_GEOMETRY
    offsets = FIT_EPS * torch.eye(g, pose.shape[1], dtype=pose.dtype, device=pose.device)
    offsets = torch.cat([offsets, -offsets])                                       # (2G, 4 + C)
    wide = template.repeat(2 * g, 1, 1, 1)                                         # (2G·B, C + 1, T, T)
    error = (x - decoder.place(template, pose)).flatten(1)                         # (B, N)
    for _ in range(steps):
        drawn = decoder.place(wide, (pose[None] + offsets[:, None]).flatten(0, 1)).view(2, g, b, -1)
        jac = ((drawn[0] - drawn[1]) / (2 * FIT_EPS)).permute(1, 2, 0)              # (B, N, G)
        jtj = jac.transpose(1, 2) @ jac                                            # (B, G, G)
        jtj = jtj + torch.diag_embed(FIT_DAMPING * jtj.diagonal(dim1=1, dim2=2) + 1e-8)
        step = torch.linalg.solve(jtj, jac.transpose(1, 2) @ error[..., None]).squeeze(-1)
        geometry = pose[:, :g] + step
        colour, opacity = decoder.layers(template, torch.cat([geometry, pose[:, g:]], dim=1))
        uncovered = torch.where(opacity < UNCOVERED, x, torch.nan).flatten(2).nanmedian(dim=2).values  # (B, C)
        background = torch.where(uncovered.isnan(), pose[:, g:], uncovered)  # all covered: keep the encoder's
        candidate = torch.cat([geometry, background], dim=1)
        new_error = (x - composite(colour, opacity, candidate)).flatten(1)
        better = new_error.pow(2).sum(1) < error.pow(2).sum(1)                    # (B,)
        pose = torch.where(better[:, None], candidate, pose)
        error = torch.where(better[:, None], new_error, error)
    return pose


def pixel_weights(image_size: int, device: torch.device | None = None) -> torch.Tensor:
    """(4,) pixels per unit of each geometry number: the half side for translation, the nominal object
    radius for log-scale and angle."""
    half = image_size / 2
    return torch.tensor([half, half, BASE_SCALE * half, BASE_SCALE * half], device=device)
