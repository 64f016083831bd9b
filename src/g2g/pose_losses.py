"""Training-only terms of the sprite architecture (networks/sprite.py): pose equivariance
(`lambda_equivariance`) and pose moments (`lambda_pose_moments`). Both make every class read poses in the
same units, signs and origin, which a swap needs and reconstruction cannot see."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import running_class_means
from .networks.sprite import POSE_GEOMETRY, pixel_weights, rotation_matrix

# --- Pose equivariance (`lambda_equivariance`) ---------------------------------------------------------
# Moving an image by a similarity transform moves its pose by the same transform. Asking the encoder to
# honour that fixes the units and the sign of every pose number the same way for every class: without it
# the square (whose template is symmetric under a quarter turn) learnt its angle with the opposite sign to
# the other shapes, and a pose read off a square drew every other shape turned the wrong way.
EQUIVARIANCE_RANGE = (0.2, 0.1, 0.1)  # largest rotation (rad), log-scale and shift (image units) drawn


def random_similarity(n: int, generator: torch.Generator, ranges: tuple[float, float, float] = EQUIVARIANCE_RANGE
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n random similarity transforms, uniform within ±ranges: angle (n,), log-scale (n,), shift (n, 2)."""
    u = torch.rand(n, 4, generator=generator) * 2 - 1
    return ranges[0] * u[:, 0], ranges[1] * u[:, 1], ranges[2] * u[:, 2:]


def transform_images(x: torch.Tensor, angle: torch.Tensor, log_scale: torch.Tensor,
                     shift: torch.Tensor) -> torch.Tensor:
    """Resample images (B, C, S, S): output point z shows the input at R(angle) z / exp(log_scale) + shift
    (edges extended), so objects turn by `angle`, grow by exp(log_scale) and move by −shift (rotated and
    scaled). `transform_poses` gives the pose of the result."""
    theta = torch.cat([rotation_matrix(angle, torch.exp(log_scale)), shift[:, :, None]], dim=2).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def transform_poses(pose: torch.Tensor, angle: torch.Tensor, log_scale: torch.Tensor,
                    shift: torch.Tensor) -> torch.Tensor:
    """The pose (B, 4 + C) of an object of pose `pose` after `transform_images` with the same arguments."""
    centre = torch.exp(log_scale)[:, None] * (rotation_matrix(-angle, torch.ones_like(angle))
                                              @ (pose[:, :2] - shift)[:, :, None]).squeeze(-1)
    return torch.cat([centre, pose[:, 2:3] + log_scale[:, None], pose[:, 3:4] + angle[:, None],
                      pose[:, POSE_GEOMETRY:]], dim=1)


def pose_error_px(pred: torch.Tensor, target: torch.Tensor, image_size: int) -> torch.Tensor:
    """Mean squared difference of two poses' geometry, each number converted to the pixels it moves a point
    of the object: translation by the image's half side, log-scale and angle by the nominal object radius
    (BASE_SCALE of the half side) — so one unit of error costs the same whichever number makes it."""
    error = (pred[:, :POSE_GEOMETRY] - target[:, :POSE_GEOMETRY]) * pixel_weights(image_size, pred.device)
    return error.pow(2).mean()


# --- Pose moments (`lambda_pose_moments`) --------------------------------------------------------------
# Every class shows the same distribution of poses, so the mean pose of every class should be the same.
# Reconstruction cannot see where each class's template puts its own frame (a heart template drawn 15 %
# larger with a pose 15 % smaller reconstructs as well), but a swap draws one class's template at another
# class's pose, so such offsets become swap error; the linear probe removes them only slowly.
POSE_MOMENT_RATE = 0.02  # weight of a batch in the running mean pose of each class (about 50 batches)


def pose_moments(pose: torch.Tensor, labels: torch.Tensor, means: torch.Tensor, seen: torch.Tensor,
                 image_size: int, rate: float = POSE_MOMENT_RATE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spread of the classes' mean poses, and the updated running means.

    pose (B, 4 + C), labels (B,); means (K, 4): running mean geometry of each class in pixels (see
    pixel_weights; updated by `running_class_means`), seen (K,) bool: classes met so far. The loss is half
    the mean squared pixel distance of the batch's classes' means from the mean over all seen classes,
    with gradient through the batch means only. Returns (loss, new means, new seen), the last two detached."""
    geometry = pose[:, :POSE_GEOMETRY] * pixel_weights(image_size, pose.device)
    updated, new_means, new_seen = running_class_means(geometry, labels, means, seen, rate)
    centre = new_means[new_seen].mean(dim=0)
    loss = 0.5 * (updated - centre).pow(2).sum(dim=1).mean()
    return loss, new_means, new_seen
