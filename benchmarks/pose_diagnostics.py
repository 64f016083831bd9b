"""Where a sprite model's swaps and double swaps lose, on `shapes` test images with known factors.

    python benchmarks/pose_diagnostics.py outputs/demo/model.safetensors [--out pose.json] [--n 3000]

For an exported `arch: sprite` model (the `g2g` preset) it measures, in pixels that a point of the object
moves (`sprite.pixel_weights`: translation by the image's half side, log-scale and angle at the nominal
object radius):
- pose noise on real images: per class, each pose number regressed on the true pose (centre, log radius,
  angle) by an affine map; the residual rms is what the encoder gets wrong, whatever units it chose;
- read-back of generated images: the pose read from the short reconstruction x̂ = G(a, b) and from the
  mixed image m1 = G(a1, b2), against the pose a that drew them (rms; and the mean per drawn shape for m1,
  a shape's constant offset);
- the double swap split up: the double-swap / short-reconstruction L1 ratio (as `g2g eval` reports it),
  and the same with only the pose read back from m1 (class code of x1) or only the class code read back
  from m2 (pose of x1).
A double swap reads generated images twice, so its loss over the short reconstruction follows the read-back
noise of generated images, not the pose noise on real ones.
Poses are read as the model reads them at inference, with its pose fit (`n_fit`); `--fit N` overrides the
number of fit steps (`--fit 0`: the encoder alone).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from g2g.data.shapes import (N_SCHEMES, RADIUS_RANGE, ROTATION_RANGE, SHAPE_NAMES,  # noqa: E402
                             ShapesDataset)
from g2g.evaluation.pairs import batched, make_pairs  # noqa: E402
from g2g.inference import load  # noqa: E402
from g2g.networks.generator import Generator  # noqa: E402
from g2g.networks import sprite  # noqa: E402

NAMES = ("x", "y", "scale", "angle")  # the pose's geometry numbers, each reported in pixels


def true_pose(factors: torch.Tensor, size: int) -> torch.Tensor:
    """Factors (N, 5) of `shapes.render` → the drawn geometry (N, 4): centre x, y in image units, log radius,
    angle in radians (the quantities the renderer places the shape by)."""
    x, y, scale, rotation, _ = factors.unbind(1)
    radius = RADIUS_RANGE[0] + scale * (RADIUS_RANGE[1] - RADIUS_RANGE[0])
    travel = 1.0 - radius - 2.0 / size
    angle = torch.deg2rad(ROTATION_RANGE[0] + rotation * (ROTATION_RANGE[1] - ROTATION_RANGE[0]))
    return torch.stack([(2 * x - 1) * travel, (2 * y - 1) * travel, radius.log(), angle], 1)


def affine_residuals(pose: torch.Tensor, truth: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """pose (N, P) minus its least-squares affine fit on truth (N, T), fitted per label. (N, P)"""
    design = torch.cat([truth, torch.ones(len(truth), 1)], 1).double()
    out = torch.empty_like(pose)
    for c in labels.unique():
        sel = labels == c
        solution = torch.linalg.lstsq(design[sel], pose[sel].double()).solution
        out[sel] = (pose[sel].double() - design[sel] @ solution).to(pose.dtype)
    return out


def rms(error: torch.Tensor) -> dict:
    """Per-number rms of (N, 4) pixel errors, by name."""
    return {name: round(v, 4) for name, v in zip(NAMES, error.pow(2).mean(0).sqrt().tolist(), strict=True)}


@torch.no_grad()
def diagnose(gen, images: torch.Tensor, labels: torch.Tensor, factors: torch.Tensor, n_pairs: int = 2000,
             seed: int = 0, chunk: int = 500) -> dict:
    """The measurements of the module docstring for a sprite Generator on shapes images (N, 3, S, S)."""
    size = images.shape[-1]
    px = sprite.pixel_weights(size)

    def geometry(codes):
        return codes[:, :sprite.POSE_GEOMETRY]

    def in_chunks(fn, *tensors):  # `g2g eval`'s chunking
        return batched(fn, *tensors, chunk=chunk)

    code = in_chunks(gen.encode_class, images)
    pose = in_chunks(gen.encode_content, images, code)  # a pose fit (n_fit) uses these class codes
    x_hat = in_chunks(gen.decode, pose, code)
    out = {"image_size": size, "n_images": len(images), "unit": "pixels a point of the object moves"}
    out["real_pose_noise_px"] = rms(affine_residuals(geometry(pose), true_pose(factors, size), labels) * px)
    out["short_readback_px"] = rms((geometry(in_chunks(gen.encode_content, x_hat)) - geometry(pose)) * px)

    i, j = make_pairs(labels, n_pairs, seed)
    a1, a2, b1, b2 = pose[i], pose[j], code[i], code[j]
    m1, m2 = in_chunks(gen.decode, a1, b2), in_chunks(gen.decode, a2, b1)
    a_m1, b_m2 = in_chunks(gen.encode_content, m1), in_chunks(gen.encode_class, m2)
    readback = (geometry(a_m1) - geometry(a1)) * px
    out["mixed_readback_px"] = rms(readback)
    shapes = labels[j] // N_SCHEMES
    out["mixed_readback_mean_px_by_drawn_shape"] = {
        name: {k: round(v, 4) for k, v in zip(NAMES, readback[shapes == s].mean(0).tolist(), strict=True)}
        for s, name in enumerate(SHAPE_NAMES) if (shapes == s).any()}

    x1 = images[i]
    short = (x_hat[i] - x1).abs().mean().item()
    ratio = {"double_swap": in_chunks(gen.decode, a_m1, b_m2), "pose_read_back_only": in_chunks(gen.decode, a_m1, b1),
             "class_read_back_only": in_chunks(gen.decode, a1, b_m2)}
    out["short_l1"] = round(short, 5)
    out["to_short_l1"] = {name: round((im - x1).abs().mean().item() / short, 4) for name, im in ratio.items()}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="an exported arch-sprite model (.safetensors)")
    p.add_argument("--n", type=int, default=3000, help="test images (seen classes)")
    p.add_argument("--pairs", type=int, default=2000, help="test pairs of different classes")
    p.add_argument("--seed", type=int, default=0, help="test set and pairing seed")
    p.add_argument("--fit", type=int, help="pose fit steps instead of the model's n_fit (0: the encoder alone)")
    p.add_argument("--out", help="write the measurements as JSON here")
    args = p.parse_args(argv)
    gen = load(args.model).generator
    if gen.config.arch != "sprite":
        raise SystemExit(f"{args.model} is arch {gen.config.arch!r}: these diagnostics read a sprite pose code")
    if args.fit is not None:
        if args.fit < 0:
            raise SystemExit(f"--fit must be >= 0, got {args.fit}")
        refit = Generator(dataclasses.replace(gen.config, n_fit=args.fit))
        refit.load_state_dict(gen.state_dict())
        gen = refit.eval()
    print(f"pose fit steps (n_fit): {gen.config.n_fit}")
    ds = ShapesDataset("test", size=gen.config.image_size, n=args.n, seed=args.seed, classes="seen")
    out = diagnose(gen, ds.images, ds.labels, ds.factors, args.pairs, args.seed)
    for key in ("real_pose_noise_px", "short_readback_px", "mixed_readback_px"):
        print(f"{key:22s} " + "  ".join(f"{k} {v:.3f}" for k, v in out[key].items()))
    print("double swap / short L1 " + "  ".join(f"{k} {v:.3f}" for k, v in out["to_short_l1"].items()))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
