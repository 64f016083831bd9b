"""Checks of G2GModule's options: every user mistake as a one-line ValueError before anything is built."""
from __future__ import annotations

from . import losses
from .networks.generator import GeneratorConfig

NAN_POLICIES = ("stop", "skip")
DISCRIMINATORS = ("basic", "n_layers", "pixel", "projection")


def check_options(generator: GeneratorConfig, o: dict) -> None:
    """User mistakes in the module's options, as one-line ValueErrors before anything is built."""
    if o["gan_loss"] not in losses.GAN_LOSSES:
        raise ValueError(f"unknown gan_loss {o['gan_loss']!r}: use one of {', '.join(losses.GAN_LOSSES)}")
    if o["discriminator"] not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {o['discriminator']!r}: use one of {', '.join(DISCRIMINATORS)}")
    for name in ("lambda_class", "lambda_class_code", "lambda_content_probe", "lambda_pose_moments",
                 "lambda_class_centre"):
        if o[name] > 0 and o["num_classes"] < 2:
            raise ValueError(f"{name} > 0 needs a labelled dataset with at least 2 classes (got {o['num_classes']}):"
                             f" use one sub-folder per class, or set model.{name}: 0")
    fm = [k for k in ("lambda_fm_mixed", "lambda_fm_short", "lambda_fm_long", "lambda_fm_mixed_long") if o[k] > 0]
    if fm and o["discriminator"] != "projection":
        raise ValueError(f"{fm[0]} (feature matching) needs discriminator 'projection'")
    if o["discriminator"] == "projection" and o["gan_loss"] == "wgangp":
        raise ValueError("gan_loss 'wgangp' is not defined for the class-conditional 'projection' discriminator")
    if not o["clip_grad_norm"] >= 0:
        raise ValueError(f"clip_grad_norm must be >= 0 (0: no clipping), got {o['clip_grad_norm']!r}")
    if not 0 <= o["lr_tail"] <= 1:
        raise ValueError(f"lr_tail must be within [0, 1] (a fraction of the run; 0: constant rates), "
                         f"got {o['lr_tail']!r}")
    if not 0 < o["pose_moment_rate"] <= 1:
        raise ValueError(f"pose_moment_rate must be within (0, 1] (the weight of a batch in the running mean "
                         f"poses), got {o['pose_moment_rate']!r}")
    if not 0 <= o["long_start"] < 1:
        raise ValueError(f"long_start must be within [0, 1) (the fraction of the run before the reassembly pass "
                         f"is trained), got {o['long_start']!r}")
    if not (o["clip_spike"] == 0 or o["clip_spike"] >= 1):
        raise ValueError(f"clip_spike must be 0 (off) or >= 1 (a multiple of the running mean gradient norm), "
                         f"got {o['clip_spike']!r}")
    if o["nan_policy"] not in NAN_POLICIES:
        raise ValueError(f"unknown nan_policy {o['nan_policy']!r}: use one of {', '.join(NAN_POLICIES)}")
    if o["perceptual"] not in ("none", "vgg16"):
        raise ValueError(f"perceptual must be 'none' or 'vgg16', not {o['perceptual']!r}")
    if o["optimizer"] not in ("adam", "rmsprop"):
        raise ValueError(f"optimizer must be 'adam' or 'rmsprop', not {o['optimizer']!r}")
    for name in ("lambda_equivariance", "lambda_pose_moments"):
        if o[name] > 0 and generator.arch != "sprite":
            raise ValueError(f"{name} needs a pose content code: generator.arch 'sprite', not "
                             f"{generator.arch!r} (or set model.{name}: 0)")
    if o["init_from"] is not None and generator.arch != "funit":
        raise ValueError(f"init_from takes a FUNIT checkpoint: it needs generator.arch 'funit', not {generator.arch!r}")
