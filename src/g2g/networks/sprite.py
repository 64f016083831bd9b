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
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import conv_trunk

# The pose vector: (tx, ty, log-scale, angle, background colour per image channel)
POSE_GEOMETRY = 4
MAX_ROTATION = math.pi / 2  # the angle code maps to (-90°, 90°) through tanh
BASE_SCALE = 0.62           # half the template's side in image units (the image spans [-1, 1]) at log-scale 0
SCALE_RANGE = 0.5           # log-scale code maps to exp(±0.5) times BASE_SCALE through tanh
TEMPLATE_MARGIN = 1.25      # the template spans 1.25× the object's nominal extent, room for its edge


def pose_dim(channels: int) -> int:
    """Length of the content code of arch sprite: 4 geometry numbers + one background value per channel."""
    return POSE_GEOMETRY + channels


class PoseEncoder(nn.Module):
    """Image (B, C, S, S) → pose code (B, 4 + C).

    A convolutional trunk without normalisation (instance normalisation would erase the background level,
    which is part of the pose), `n_downs` stride-2 blocks and `n_res` residual blocks, a 1×1 projection to
    `code_channels`, then an MLP from the flattened map to the pose. The last layer starts at zero, so
    every image starts at the centred, upright, nominal-size pose."""

    def __init__(self, in_channels: int = 3, nf: int = 16, n_downs: int = 3, n_res: int = 0,
                 code_channels: int = 32, image_size: int = 32, hidden: int = 128, max_channels: int = 256):
        super().__init__()
        self.features = nn.Sequential(*conv_trunk(in_channels, nf, n_downs, n_res, code_channels, max_channels,
                                                  "none", "lrelu"))
        side = image_size // 2 ** n_downs
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(code_channels * side * side, hidden),
                                  nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, pose_dim(in_channels)))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SpriteDecoder(nn.Module):
    """pose (B, 4 + C) + class code (B, class_dim) → image (B, C, S, S) in [-1, 1].

    template = MLP(class code) → (C + 1, T, T): colour through tanh, opacity through a sigmoid whose bias
    starts as a centred disc (so the first gradients already move a foreground); the template is warped
    by the pose's similarity transform and composited over the pose's flat background colour. An MLP
    straight to pixels learns a template per class within a few hundred steps on `shapes`, where
    convolutional template generators (tried first) had not drawn a silhouette after a thousand."""

    def __init__(self, class_dim: int = 64, image_size: int = 32, channels: int = 3, hidden: int = 256,
                 template_size: int | None = None):
        super().__init__()
        self.size, self.channels = image_size, channels
        self.template_size = t = template_size or image_size
        self.mlp = nn.Sequential(nn.Linear(class_dim, hidden), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Linear(hidden, (channels + 1) * t * t))
        with torch.no_grad():  # a small start: templates begin grey, opacity begins at the disc prior
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.zero_()
        centres = (torch.arange(t, dtype=torch.float32) + 0.5) / t * 2 - 1
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        radius = (xx ** 2 + yy ** 2).sqrt()
        # opacity logit: +4 at the centre falling through 0 at radius 0.7 of the template's half-side
        self.register_buffer("opacity_prior", (4.0 * (0.7 - radius) / 0.3)[None, None], persistent=False)

    def template(self, class_code: torch.Tensor) -> torch.Tensor:
        """class code (B, class_dim) → RGBA template (B, C + 1, T, T): colour in [-1, 1], opacity in [0, 1]."""
        t = self.mlp(class_code).view(-1, self.channels + 1, self.template_size, self.template_size)
        colour, opacity = t.split([self.channels, 1], dim=1)
        return torch.cat([torch.tanh(colour), torch.sigmoid(opacity + self.opacity_prior)], dim=1)

    def warp(self, pose: torch.Tensor) -> torch.Tensor:
        """pose (B, 4 + C) → the (B, 2, 3) sampling matrices of `affine_grid`: output pixel → template."""
        tx, ty = torch.tanh(pose[:, 0]), torch.tanh(pose[:, 1])
        scale = BASE_SCALE * TEMPLATE_MARGIN * torch.exp(SCALE_RANGE * torch.tanh(pose[:, 2]))
        angle = MAX_ROTATION * torch.tanh(pose[:, 3])
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], 1)  # (B, 2, 2)
        shift = torch.stack([tx, ty], -1).unsqueeze(-1)                                     # (B, 2, 1)
        return torch.cat([rot, -rot @ shift], dim=2)

    def forward(self, pose: torch.Tensor, class_code: torch.Tensor) -> torch.Tensor:
        template = self.template(class_code).to(pose.dtype)
        grid = F.affine_grid(self.warp(pose), [len(pose), self.channels + 1, self.size, self.size],
                             align_corners=False)
        placed = F.grid_sample(template, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        colour, opacity = placed.split([self.channels, 1], dim=1)
        background = torch.tanh(pose[:, POSE_GEOMETRY:])[:, :, None, None]
        return opacity * colour + (1 - opacity) * background
