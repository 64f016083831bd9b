"""Collapse: a model that draws nothing useful. `diagnose` runs a generator on a fixed batch of real pairs
(x1, x2) of different classes and checks five signals, each against a threshold:

- short gain: mean PSNR(x̂, x) − PSNR(flat image of x's mean colour, x), in dB. The flat image is the
  best image of one colour, so a decoder that draws only a background gains ≤ 0 dB.
- class effect: mean |m − x̂| of the mixed images against the short reconstructions of their content
  source (m1 = G(a1, b2) against x̂1 = G(a1, b1)), as a fraction of the images' detail, the mean
  |x − flat image of x|. Near 0: the decoder ignores the class code.
- content effect: the same against the short reconstructions of their class source (m1 against
  x̂2 = G(a2, b2)). Near 0: the decoder ignores the content code.
- batch spread: the spread of x̂ over the batch (standard deviation per pixel, averaged) relative to the
  spread of x. Near 0: every image is drawn the same.
- pose off image (arch sprite): the fraction of poses (content codes) whose object centre lies outside
  the image or whose object is under a pixel across: the decoder then draws the background only.

Each threshold sits far from both sides. On 64 test pairs the bundled `shapes` and `digits` models gain
9.5–17.7 dB, their swaps change 32–158 % of the detail, their spread is 0.87–0.99 and no pose is off
the image; deliberately collapsed ones (a constant or background-only decoder, a decoder that ignores
one code, a pose moved off the image, an untrained generator) gain ≤ 0.4 dB or score ≤ 0.01 % on the
signal of their failure (tests/test_collapse.py). Training checks the signals with
`callbacks.CollapseAlarm`, `g2g eval` at the top of metrics.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from .evaluation.metrics import flat_image_baseline, per_image_psnr
from .networks.sprite import BASE_SCALE
from .wiring import g2g_forward

# signal → (threshold, collapsed when below it (True) or above it (False), the failure in words, the
# healthy value in words); the words take v (the value), p (100 v), t (the threshold) and q (100 t)
SIGNALS: dict[str, tuple[float, bool, str, str]] = {
    "short_gain_db": (1.0, True, "short reconstructions no better than a flat image ({v:+.1f} dB over it, "
                      "needs ≥ +{t:g})", "short reconstructions {v:+.1f} dB over a flat image"),
    "class_effect": (0.02, True, "mixed images ignore the class code (a class swap changes {p:.1f} % of the "
                     "image detail, needs ≥ {q:g} %)", "a class swap changes {p:.0f} % of the image detail"),
    "content_effect": (0.02, True, "mixed images ignore the content code (a content swap changes {p:.1f} %, "
                       "needs ≥ {q:g} %)", "a content swap {p:.0f} %"),
    "batch_spread": (0.1, True, "all images drawn alike (x̂ varies {v:.2f}× as much as x over the batch, "
                     "needs ≥ {t:g})", "x̂ varies {v:.2f}× as much as x"),
    "pose_off_image": (0.5, False, "the object is off the image in {p:.0f} % of the poses (needs ≤ {q:g} %)",
                       "{p:.0f} % of poses off the image"),
}
ADVICE = ("the model draws nothing useful: check that the data suits the architecture (arch sprite: one object "
          "on a plain background), lower the learning rates or train longer (docs/evaluation.md, Collapse)")


@dataclass(frozen=True)
class Diagnosis:
    """The signals of one batch and the verdict. pose_off_image is None for architectures without a pose."""

    short_gain_db: float
    class_effect: float
    content_effect: float
    batch_spread: float
    pose_off_image: float | None
    failed: tuple[str, ...]  # the signals past their thresholds, in the order of SIGNALS
    verdict: str             # one line: "collapse: …" or "no collapse: …"

    @property
    def collapsed(self) -> bool:
        return bool(self.failed)

    def signals(self) -> dict[str, float]:
        """The measured values by name (pose_off_image only where there is a pose)."""
        return {name: value for name in SIGNALS if (value := getattr(self, name)) is not None}

    def to_dict(self) -> dict[str, Any]:
        """For metrics.json: values, failed signals, verdict and every threshold."""
        return {**asdict(self), "collapsed": self.collapsed, "failed": list(self.failed),
                "thresholds": {name: threshold for name, (threshold, *_) in SIGNALS.items()}}


def _words(name: str, value: float, failed: bool) -> str:
    threshold, _, failure, healthy = SIGNALS[name]
    return (failure if failed else healthy).format(v=value, p=100 * value, t=threshold, q=100 * threshold)


def failed_signals(values: dict[str, float]) -> tuple[str, ...]:
    """The signals of `values` past their thresholds (NaN is past any), in the order of SIGNALS."""
    return tuple(name for name, (threshold, below, *_) in SIGNALS.items()
                 if name in values and not (values[name] >= threshold if below else values[name] <= threshold))


def verdict(values: dict[str, float]) -> str:
    """One line: the failed signals with their numbers and what to do, or "no collapse" with every value."""
    failed = failed_signals(values)
    if not failed:
        return "no collapse: " + ", ".join(_words(name, value, False) for name, value in values.items())
    parts = [_words(name, values[name], True) for name in failed]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"collapse: {listed}; {ADVICE}"


def pose_off_image(pose: torch.Tensor, image_size: int) -> torch.Tensor:
    """Which sprite poses (B, 4 + C) place the object off the image: its centre outside [-1, 1]² (image
    units) or its half extent BASE_SCALE · exp(log-scale) under one pixel (2 / image_size).  # (B,) bool"""
    centre, half_extent = pose[:, :2], BASE_SCALE * torch.exp(pose[:, 2])
    return (centre.abs().amax(dim=1) > 1) | (half_extent < 2 / image_size)


def signals(x: torch.Tensor, x_hat: torch.Tensor, mixed: torch.Tensor, pose: torch.Tensor | None = None
            ) -> dict[str, float]:
    """The signals of images x = [x1, x2] (2B, C, H, W), their short reconstructions x̂ = [x̂1, x̂2] and the
    mixed images [m1, m2] = [G(a1, b2), G(a2, b1)]; pose: [a1, a2] (2B, 4 + C) of arch sprite."""
    x, x_hat, mixed = x.float(), x_hat.float(), mixed.float()
    flat = flat_image_baseline(x)  # each image's own mean colour
    detail = (x - flat).abs().mean().clamp_min(1e-6)
    half = len(x) // 2
    values = {"short_gain_db": (per_image_psnr(x_hat, x) - per_image_psnr(flat, x)).mean().item(),
              "class_effect": ((mixed - x_hat).abs().mean() / detail).item(),                   # m1 vs x̂1
              "content_effect": ((mixed - x_hat.roll(half, 0)).abs().mean() / detail).item(),   # m1 vs x̂2
              "batch_spread": (x_hat.std(dim=0).mean() / x.std(dim=0).mean().clamp_min(1e-6)).item()}
    if pose is not None:
        values["pose_off_image"] = pose_off_image(pose.float(), x.shape[-1]).float().mean().item()
    return values


@torch.no_grad()
def diagnose(generator, x1: torch.Tensor, x2: torch.Tensor, class_in1: torch.Tensor | None = None,
             class_in2: torch.Tensor | None = None, chunk: int | None = None) -> Diagnosis:
    """Collapse signals of a generator (E_A, E_B, G) on pairs x1, x2 (B, 3, H, W) of different classes, in
    eval mode (the sprite's pose fit runs). class_in1/class_in2: class references (B, K, 3, H, W) as in
    `g2g_forward`, else the images themselves. chunk: pairs per forward pass (default: all at once)."""
    sprite = getattr(getattr(generator, "config", None), "arch", None) == "sprite"
    step = chunk or len(x1)
    parts = []  # per chunk: x̂1, x̂2, m1, m2 (and the poses a1, a2)
    training = generator.training
    generator.eval()
    try:
        for i in range(0, len(x1), step):
            refs = [None if c is None else c[i:i + step] for c in (class_in1, class_in2)]
            res = g2g_forward(generator, x1[i:i + step], x2[i:i + step], refs[0], refs[1], long=False)
            parts.append([res.x1_hat, res.x2_hat, res.m1, res.m2, *((res.a1, res.a2) if sprite else ())])
    finally:
        generator.train(training)
    x1_hat, x2_hat, m1, m2, *poses = (torch.cat(p) for p in zip(*parts))
    values = signals(torch.cat([x1, x2]), torch.cat([x1_hat, x2_hat]), torch.cat([m1, m2]),
                     torch.cat(poses) if poses else None)
    return Diagnosis(values["short_gain_db"], values["class_effect"], values["content_effect"],
                     values["batch_spread"], values.get("pose_off_image"), failed_signals(values), verdict(values))
