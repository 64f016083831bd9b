"""The sections of one split's report, each computed from images and codes the report has already
made (see report.py). Every section carries its reference levels and 95 % intervals."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import metrics as M
from . import probes as P
from .intervals import bootstrap_ci, bootstrap_ratio_ci, seed_ci

DCI_METHOD = ("one random forest (50 trees) per factor on the codes of both blocks; block j's importance for "
              "factor k = drop of the held-out score (accuracy / R², floored at chance) when block j's rows are "
              "shuffled jointly (mean of 3 shuffles); disentanglement = importance-weighted 1 − entropy of each "
              "block's importance over the factor groups {class} and {content factors}; completeness = mean "
              "over the predicted factors of 1 − entropy over the blocks; informativeness = mean held-out "
              "accuracy (class) / R² (content factors)")


def _mean_ci(values: torch.Tensor, seed: int) -> tuple[float, list]:
    return values.mean().item(), list(bootstrap_ci(values, seed=seed))


def fidelity(per: dict[str, torch.Tensor], seed: int = 0, flat_psnr: torch.Tensor | None = None,
             copy_source: dict[str, torch.Tensor] | None = None) -> dict:
    """Mean L1, PSNR, SSIM (and LPIPS) of per-image values (M.per_image_metrics, "lpips"), each with a
    95 % bootstrap interval over images.

    Reference levels: flat_psnr, the PSNR of each target's own mean colour spread flat (knows only the
    average colour); copy_source, the per-image scores of the content source x1 itself (a copy-through
    model)."""
    out: dict[str, Any] = {}
    for name, values in per.items():
        out[name], out[f"{name}_ci95"] = _mean_ci(values, seed)
    if flat_psnr is not None:
        out["baseline_flat_psnr"] = flat_psnr.mean().item()
    if copy_source is not None:
        out["baseline_copy_content_source_psnr"] = copy_source["psnr"].mean().item()
        if "lpips" in copy_source:
            out["baseline_copy_content_source_lpips"] = copy_source["lpips"].mean().item()
    return out


def reassembly(long_l1: torch.Tensor, short_l1: torch.Tensor, seed: int = 0) -> dict:
    """Double-swap (long reconstruction r1) against short-reconstruction L1 error on the same images x1,
    from the per-image errors (N,) on the [-1, 1] scale.

    ratio = mean L1(r1, x1) / mean L1(x̂1, x1) with a paired bootstrap interval; 1 means the two swaps
    lose nothing beyond what one encode–decode loses; the project's goal is ≤ 1.1."""
    short = max(short_l1.mean().item(), 1e-12)
    return {"long_l1": long_l1.mean().item(), "short_l1": short_l1.mean().item(),
            "ratio": long_l1.mean().item() / short,
            "ratio_ci95": list(bootstrap_ratio_ci(long_l1, short_l1, seed=seed)),
            "reference": 1.0, "goal_max": 1.1}


def _rate(flags: torch.Tensor, seed: int) -> dict:
    flags = flags.float()
    return {"rate": flags.mean().item(), "ci95": list(bootstrap_ci(flags, seed=seed))}


def copy_through(by_reconstruction: torch.Tensor, by_target: torch.Tensor | None = None, seed: int = 0) -> dict:
    """Fraction of pairs (of different classes) whose mixed image copies its content source, from the
    per-pair flags of metrics.copy_through: against the true render where there is one, and against the
    short reconstruction always (the criterion the training callback uses). Goal 0; copying x1 scores 1."""
    out = {}
    if by_target is not None:
        out["true_render"] = _rate(by_target, seed)
    out["reconstruction"] = _rate(by_reconstruction, seed)
    return {**out, "goal": 0.0, "copy_model": 1.0}


def agreement(cos: torch.Tensor, unrelated: torch.Tensor, same: torch.Tensor | None = None,
              centred: bool = False, seed: int = 0) -> dict:
    """Mean cosine of recovered vs original codes (or features) per pair, with a 95 % bootstrap
    interval, and the reference levels: the mean cosine of the original with the code of an unrelated
    image (of another class) and, given `same`, with the code of another image of the same class. All
    three are per-pair cosines (N,) (see cosines); centred: the codes had the split's mean code
    subtracted first, so a component that all codes share does not make unrelated codes look alike."""
    out = {"agreement": cos.mean().item(), "ci95": list(bootstrap_ci(cos, seed=seed)),
           "unrelated_level": unrelated.mean().item(), "centred": centred}
    if same is not None:
        out["same_class_level"] = same.mean().item()
    return out


def cosines(original: torch.Tensor, *others: torch.Tensor, center: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Per-row cosine of each of `others` with `original` (rows flattened; center subtracted from all
    first).  # each (N,)"""
    if center is not None:
        original, others = original - center, tuple(t - center for t in others)
    return [M.pairwise_cosine(t, original) for t in others]


def leakage(content: torch.Tensor, class_code: torch.Tensor, labels: torch.Tensor, factors: torch.Tensor | None,
            n_probe: int = 3000, mlp: bool = True, seed: int = 0) -> dict:
    """Probes on held-out codes: the class from content codes (goal: chance) and the content factors
    from class codes (goal: R² 0), linear and, with mlp, one-hidden-layer MLPs; and the content factors
    from content codes (R² near 1: the content code is informative)."""
    n = min(len(labels), n_probe)
    flat_content, y = content[:n].flatten(1), labels[:n]
    out: dict[str, Any] = {}
    counts = y.unique(return_counts=True)[1]
    if len(counts) > 1 and int(counts.min()) >= 5:  # a held-out probe needs a few images of every class
        out["class_from_content_probe"] = P.linear_probe(flat_content, y, seed=seed)
        if mlp:
            out["class_from_content_mlp_probe"] = P.mlp_probe(flat_content, y, seed=seed)
    elif len(counts) > 1:
        out["class_from_content_probe_skipped"] = "fewer than 5 test images in some class"
    if factors is not None:
        f = factors[:n]
        out["content_from_class_r2"] = {**P.factor_r2(class_code[:n], f, seed=seed), "goal": 0.0}
        if mlp:
            out["content_from_class_mlp_r2"] = {**P.mlp_factor_r2(class_code[:n], f, seed=seed), "goal": 0.0}
        out["content_from_content_r2"] = {**P.factor_r2(flat_content, f, seed=seed), "goal": 1.0}
    return out


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def dci_blocks(content: torch.Tensor, class_code: torch.Tensor, labels: torch.Tensor, factors: torch.Tensor,
               factor_names=(), n_probe: int = 3000, repeats: int = 3, seed: int = 0) -> dict:
    """Block-level DCI of the two code blocks (class code, content code) for the factors class + each
    content factor (see DCI_METHOD), fitted `repeats` times with different seeds (sample split and
    forests): the means, a 95 % t-interval over the repeats, and the reference levels."""
    n = min(len(labels), n_probe)
    names = [factor_names[c] if c < len(factor_names) else f"factor{c}" for c in range(factors.shape[1])]
    codes = {"class": class_code[:n], "content": content[:n].flatten(1)}
    fac = {"class": labels[:n], **{name: factors[:n, c] for c, name in enumerate(names)}}
    groups = {"class": "class", **{name: "content" for name in names}}
    runs = [P.dci(codes, fac, {"class"}, groups, seed=seed + r, max_samples=n) for r in range(repeats)]
    out: dict[str, Any] = {}
    for key in ("disentanglement", "completeness", "informativeness", "disentanglement_ungrouped"):
        values = [r[key] for r in runs]
        out[key] = float(np.mean(values))
        out[f"{key}_ci95"] = list(seed_ci(values)) if repeats > 1 else None
    for key in ("disentanglement_per_block", "completeness_per_factor", "informativeness_per_factor"):
        out[key] = {k: _mean_or_none([r[key][k] for r in runs]) for k in runs[0][key]}
    out["importance"] = np.mean([r["importance"] for r in runs], axis=0).tolist()  # (blocks, factors)
    out.update(blocks=runs[0]["blocks"], factors=runs[0]["factors"], factor_groups=groups,
               n_samples=runs[0]["n_samples"], repeats=repeats, method=DCI_METHOD)
    majority = labels[:n].unique(return_counts=True)[1].max().item() / n
    out["reference"] = {"ideal": 1.0, "uniform_importance": 0.0,  # D and C of codes that ignore the factors
                        "informativeness_chance": majority / len(names + ["class"])}
    return out
