"""The G2G forward pass: disassembly and mixing, short reconstruction, reassembly, long
reconstruction — one function returning one typed result."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .networks.generator import Generator


@dataclass
class G2GResult:
    """Every code and image of one G2G pass over pairs (x1, x2). Images (B, 3, H, W); content codes
    (B, C, h, w) (arch lord: (B, C)); class codes (B, D). Content codes are the encoder outputs before any
    training noise."""

    a1: torch.Tensor            # content code of x1
    a2: torch.Tensor            # content code of x2
    b1: torch.Tensor            # class code of x1 (or of x1's class references)
    b2: torch.Tensor            # class code of x2 (or of x2's class references)
    m1: torch.Tensor            # mixed: G(a1, b2) — content of x1, class of x2
    m2: torch.Tensor            # mixed: G(a2, b1) — content of x2, class of x1
    x1_hat: torch.Tensor | None = None  # short reconstruction G(a1, b1)
    x2_hat: torch.Tensor | None = None  # short reconstruction G(a2, b2)
    a_m1: torch.Tensor | None = None   # content code of m1 (≈ a1 ideally)
    a_m2: torch.Tensor | None = None   # content code of m2 (≈ a2)
    b_m1: torch.Tensor | None = None   # class code of m1 (≈ b2)
    b_m2: torch.Tensor | None = None   # class code of m2 (≈ b1)
    r1: torch.Tensor | None = None     # long reconstruction G(a(m1), b(m2)) ≈ x1
    r2: torch.Tensor | None = None     # long reconstruction G(a(m2), b(m1)) ≈ x2
    q1: torch.Tensor | None = None     # re-rendered mixed image G(a(m1), b2) ≈ m1 (with rerender=True)
    q2: torch.Tensor | None = None     # re-rendered mixed image G(a(m2), b1) ≈ m2


def _noisy(code: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    """Additive Gaussian noise on content codes (LORD's bottleneck); drawn on the CPU from an explicit
    generator so a run is reproducible and resumable on any device."""
    if sigma == 0:
        return code
    noise = torch.randn(code.shape, generator=generator, dtype=code.dtype)
    return code + sigma * noise.to(code.device)


def augmented(x: torch.Tensor, strength: float, generator: torch.Generator | None) -> torch.Tensor:
    """Random distortions of what the content encoder sees, so its code cannot hold them: per image, a
    3×3 max filter (thicker bright strokes), a min filter (thinner) or neither, then a random scale
    (1 ± 0.25·strength), shear (± 0.3·strength) and shift (± 7.5 %·strength of the side). The images
    drawn from the code are compared with the undistorted x, so the class code has to supply what the
    distortions took away."""
    if strength == 0:
        return x
    n = x.shape[0]
    u = torch.rand(n, 5, generator=generator).to(x.device)                       # (B, 5) in [0, 1)
    which = (u[:, 0] * 3).long().view(n, 1, 1, 1)                                 # 0 max, 1 min, 2 neither
    x = torch.where(which == 0, F.max_pool2d(x, 3, 1, 1),
                    torch.where(which == 1, -F.max_pool2d(-x, 3, 1, 1), x))
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)                # (B, 2, 3) affine maps
    scale = 1 + 0.25 * strength * (2 * u[:, 1] - 1)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 1] = scale, scale, 0.3 * strength * (2 * u[:, 2] - 1)
    theta[:, :, 2] = 0.15 * strength * (2 * u[:, 3:] - 1)                       # (grid units: the side is 2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def _centres(gen: Generator, class_in1: torch.Tensor | None, class_in2: torch.Tensor | None,
             content_augment: float, generator: torch.Generator | None) -> torch.Tensor | None:
    """The content centres of x1's and x2's classes (2B, *content_shape) from their class references,
    distorted like the images (`augmented`), for a centred generator given both references; else None."""
    if not getattr(gen, "centred", False) or class_in1 is None or class_in2 is None:
        return None
    refs = [r if r.dim() == 5 else r[:, None] for r in (class_in1, class_in2)]
    refs = [torch.cat(refs)] if refs[0].shape == refs[1].shape else refs
    return torch.cat([gen.content_centre(augmented(r.flatten(0, 1), content_augment, generator).view_as(r))
                      for r in refs])


def _content(gen: Generator, x: torch.Tensor, class_code: torch.Tensor | None,
             centre: torch.Tensor | None) -> torch.Tensor:
    """gen.encode_content, given a centre only where there is one."""
    if centre is None:
        return gen.encode_content(x, class_code)
    return gen.encode_content(x, class_code, centre)


def g2g_forward(gen: Generator, x1: torch.Tensor, x2: torch.Tensor,
                class_in1: torch.Tensor | None = None, class_in2: torch.Tensor | None = None,
                content_noise: float = 0.0, generator: torch.Generator | None = None,
                long: bool = True, short: bool = True, rerender: bool = False,
                content_augment: float = 0.0, centre_in1: torch.Tensor | None = None,
                centre_in2: torch.Tensor | None = None) -> G2GResult:
    """Run the G2G pass on pairs x1, x2 (B, 3, H, W).

    class_in1/class_in2: what the class codes are computed from — by default the images themselves (the
    original implementation's unsupervised pairing); with labels, other images of the same class (B, K, 3, H, W), so a
    class code cannot carry the instance's content. `long=False` stops after the disassembly stage;
    `short=False` skips the short reconstructions (a training objective without them need not draw them);
    `content_augment` > 0 distorts the content encoder's view of x1, x2 (`augmented`; training only);
    a centred generator (`content_centre`) centres each content code on its class references (on the
    running mean centre without references; a(m1) on x2's class): centre_in1/centre_in2 (B, K, 3, H, W), other
    images of x1's and x2's classes, default class_in1/class_in2;
    `rerender=True` also redraws each mixed image from the content code read back from it and its own class
    code (q1 = G(a(m1), b2), q2 = G(a(m2), b1)), in the long reconstructions' decoder call.
    Decodes that can share a call are batched: mixed and short reconstructions are one decoder call,
    the reassembly encodes and the long reconstructions one call each."""
    b = x1.shape[0]
    x = torch.cat([x1, x2])
    centre = _centres(gen, class_in1 if centre_in1 is None else centre_in1,
                      class_in2 if centre_in2 is None else centre_in2, content_augment, generator)
    if class_in1 is None and class_in2 is None:
        codes = gen.encode_class(x)                                              # (2B, D)
        a = _content(gen, augmented(x, content_augment, generator), codes, centre)  # (2B, C, h, w)
    else:  # a sprite pose fit (eval mode) uses the image's own class code, not its references'
        codes = gen.encode_class(torch.cat([x1 if class_in1 is None else class_in1,
                                            x2 if class_in2 is None else class_in2]))
        a = _content(gen, augmented(x, content_augment, generator), None, centre)
    a1, a2 = a.split(b)
    b1, b2 = codes.split(b)
    an = _noisy(a, content_noise, generator)
    if short:  # one decoder call: [m1, m2, x̂1, x̂2] = G([a1, a2, a1, a2], [b2, b1, b1, b2])
        m1, m2, x1_hat, x2_hat = gen.decode(torch.cat([an, an]), torch.cat([b2, b1, b1, b2])).split(b)
    else:
        (m1, m2), x1_hat, x2_hat = gen.decode(an, codes.roll(b, dims=0)).split(b), None, None
    result = G2GResult(a1, a2, b1, b2, m1, m2, x1_hat, x2_hat)
    if not long:
        return result
    mixed = torch.cat([m1, m2])
    b_m = gen.encode_class(mixed)
    a_m = _content(gen, mixed, b_m, None if centre is None else centre.roll(b, dims=0))  # m1: x2's class
    result.a_m1, result.a_m2 = a_m.split(b)
    result.b_m1, result.b_m2 = b_m.split(b)
    # r1 = G(a(m1), b(m2)), r2 = G(a(m2), b(m1)): swap the class halves back; with rerender the same call
    # also draws q1 = G(a(m1), b2), q2 = G(a(m2), b1)
    a_m, classes = _noisy(a_m, content_noise, generator), b_m.roll(b, dims=0)
    if rerender:
        a_m, classes = torch.cat([a_m, a_m]), torch.cat([classes, codes.roll(b, dims=0)])
    result.r1, result.r2, *q = gen.decode(a_m, classes).split(b)
    if rerender:
        result.q1, result.q2 = q
    return result
