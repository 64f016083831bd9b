"""`g2g eval`: the disentanglement report of SPEC §7 for an exported model (JSON + Markdown)."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from ..inference import G2GModel, atomic_write, load
from . import metrics as M


def _batched(fn, *tensors, chunk: int = 500):
    """Apply fn to aligned chunks of tensors and concatenate each output field (bounded memory)."""
    outs = [fn(*(t[i:i + chunk] for t in tensors)) for i in range(0, len(tensors[0]), chunk)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(o) for o in zip(*outs))
    return torch.cat(outs)


def make_pairs(labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n index pairs (i, j) with different labels where there are several classes. (n,), (n,)"""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(len(labels), (n,), generator=g)
    j = torch.randint(len(labels), (n,), generator=g)
    if len(labels.unique()) > 1:
        for _ in range(100):  # redraw partners of the same class (vectorised, a few rounds suffice)
            same = labels[i] == labels[j]
            if not same.any():
                break
            j[same] = torch.randint(len(labels), (int(same.sum()),), generator=g)
        keep = labels[i] != labels[j]
        i, j = i[keep], j[keep]
    return i, j


def evaluate_split(model: G2GModel, images: torch.Tensor, labels: torch.Tensor, classifier,
                   n_pairs: int, seed: int, factors: torch.Tensor | None = None, render=None) -> dict:
    """Reconstruction, swap fidelity (when a renderer gives the true mixed image), class transfer and
    leakage probes on one split. images (N, 3, H, W) in [-1, 1]; labels (N,); factors (N, F)."""
    i, j = make_pairs(labels, n_pairs, seed)
    x1, x2 = images[i], images[j]
    content, class_code = _batched(model.encode, images)
    # short reconstruction x̂ = G(a, b) of each image from its own codes
    x_hat = _batched(model.decode, content, class_code)
    res = {"short_reconstruction": M.image_metrics(x_hat, images)}
    swaps = _batched(lambda a, b: tuple(vars(model.swap(a, b)).values()), x1, x2)
    m1, _, r1, _ = swaps
    res["long_reconstruction"] = M.image_metrics(r1, x1)
    res["double_swap_to_short_ratio"] = res["long_reconstruction"]["l1"] / max(res["short_reconstruction"]["l1"], 1e-12)
    if render is not None and factors is not None:
        # the true mixed image: content factors of x1 drawn with the class of x2
        target = render(labels[j], factors[i], images.shape[-1])
        psnr = M.per_image_psnr(m1, target)
        lo, hi = M.bootstrap_ci(psnr.numpy(), seed=seed)
        res["swap"] = {**M.image_metrics(m1, target), "psnr_ci95": [lo, hi],
                       "baseline_flat_psnr": M.per_image_psnr(M.flat_image_baseline(target), target).mean().item(),
                       "baseline_copy_content_source_psnr": M.per_image_psnr(x1, target).mean().item()}
    if classifier is not None:
        shown = M.classify(classifier, m1)
        hit = (shown == labels[j]).float()
        res["class_transfer"] = {"accuracy": hit.mean().item(),
                                 "ci95": list(M.bootstrap_ci(hit.numpy(), seed=seed)),
                                 "content_source_class_rate": (shown == labels[i]).float().mean().item(),
                                 "chance": 1.0 / len(labels.unique())}
    n_probe = min(len(images), 3000)
    flat_content = content[:n_probe].flatten(1)
    counts = labels[:n_probe].unique(return_counts=True)[1]
    if len(counts) > 1 and int(counts.min()) >= 5:  # a held-out probe needs a few images of every class
        res["class_from_content_probe"] = M.linear_probe(flat_content, labels[:n_probe], seed=seed)
    elif len(counts) > 1:
        res["class_from_content_probe_skipped"] = "fewer than 5 test images in some class"
    if factors is not None:
        res["content_from_class_r2"] = M.factor_r2(class_code[:n_probe], factors[:n_probe], seed=seed)
        res["content_from_content_r2"] = M.factor_r2(flat_content, factors[:n_probe], seed=seed)
    return res


def _datasets(data: str, size: int, root: str | None, seed: int) -> dict:
    """The evaluation material per dataset: splits to evaluate and the classifier's training set."""
    from ..data.datamodule import make_dataset
    if data == "shapes":
        from ..data.shapes import ShapesDataset, render
        # the judge sees all 30 classes (held-out ones included): it is not the model under test
        judge = ShapesDataset("val", size=size, n=12000, seed=seed, classes="all")
        judge_test = ShapesDataset("test", size=size, n=3000, seed=seed + 1, classes="all")
        return {"judge": judge, "judge_test": judge_test, "render": render, "splits": {
            "seen_classes": ShapesDataset("test", size=size, seed=seed, classes="seen"),
            "heldout_classes": ShapesDataset("test", size=size, seed=seed, classes="heldout")}}
    train = make_dataset(data, "train", size, root, seed)
    test = make_dataset(data, "test", size, root, seed)
    return {"judge": train, "judge_test": test, "render": None, "splits": {"test": test}}


def _tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    images = getattr(ds, "images", None)
    if images is None:
        images = torch.stack([ds[i][0] for i in range(len(ds))])
    return images, torch.as_tensor(ds.labels)


def run_eval(model_path, data: str = "shapes", root: str | None = None, out_dir: str | Path = "outputs/eval",
             seed: int = 0, n_pairs: int = 2000, classifier_seconds: float = 60.0) -> dict:
    model = load(model_path)
    size = model.config.image_size
    sets = _datasets(data, size, root, seed)
    judge_x, judge_y = _tensors(sets["judge"])
    classifier = None
    report: dict = {"model": str(model_path), "data": data, "image_size": size, "seed": seed}
    if len(judge_y.unique()) > 1:
        n_cls = int(getattr(sets["judge"], "num_classes", int(judge_y.max()) + 1))
        classifier = M.train_classifier(judge_x, judge_y, n_cls, seed=seed, max_seconds=classifier_seconds)
        tx, ty = _tensors(sets["judge_test"])
        report["classifier_accuracy_real_test"] = (M.classify(classifier, tx) == ty).float().mean().item()
    for name, ds in sets["splits"].items():
        x, y = _tensors(ds)
        report[name] = evaluate_split(model, x, y, classifier, n_pairs, seed,
                                      getattr(ds, "factors", None), sets["render"])
    report["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "numpy": np.__version__}
    report["markdown"] = to_markdown(report)
    out = Path(out_dir)
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
    atomic_write(out / "metrics.md", lambda tmp: Path(tmp).write_text(report["markdown"] + "\n"))
    return report


def _rows(split: dict) -> list[tuple[str, str, str]]:
    """(metric, value, reference) rows for one evaluated split."""
    rows = []
    s, l = split["short_reconstruction"], split["long_reconstruction"]
    rows.append(("short reconstruction PSNR / SSIM / L1", f"{s['psnr']:.2f} dB / {s['ssim']:.3f} / {s['l1']:.4f}", "higher / higher / lower"))
    rows.append(("long reconstruction PSNR / SSIM / L1", f"{l['psnr']:.2f} dB / {l['ssim']:.3f} / {l['l1']:.4f}", "≈ short"))
    rows.append(("double-swap / short L1 ratio", f"{split['double_swap_to_short_ratio']:.2f}", "≤ 1.1"))
    if "swap" in split:
        w = split["swap"]
        rows.append(("swap PSNR vs true render (95 % CI)",
                     f"{w['psnr']:.2f} dB [{w['psnr_ci95'][0]:.2f}, {w['psnr_ci95'][1]:.2f}]", "higher"))
        rows.append(("baseline: flat image of the target's mean colour", f"{w['baseline_flat_psnr']:.2f} dB", "swap must beat"))
        rows.append(("baseline: copy the content source x1", f"{w['baseline_copy_content_source_psnr']:.2f} dB", "swap must beat"))
        rows.append(("swap SSIM vs true render", f"{w['ssim']:.3f}", "1 is perfect"))
    if "class_transfer" in split:
        c = split["class_transfer"]
        rows.append(("class transfer accuracy (95 % CI; chance)",
                     f"{100 * c['accuracy']:.1f} % [{100 * c['ci95'][0]:.1f}, {100 * c['ci95'][1]:.1f}]; {100 * c['chance']:.1f} %",
                     "higher"))
        rows.append(("mixed image shows the content source's class", f"{100 * c['content_source_class_rate']:.1f} %",
                     "0 (copy-through alarm)"))
    if "class_from_content_probe" in split:
        p = split["class_from_content_probe"]
        rows.append(("class from content code (linear probe; chance)", f"{100 * p['accuracy']:.1f} %; {100 * p['chance']:.1f} %",
                     "chance (goal)"))
    if "content_from_class_r2" in split:
        rows.append(("content factors from class code (R²)", f"{split['content_from_class_r2']['mean']:.3f}", "0 (goal)"))
        rows.append(("content factors from content code (R²)", f"{split['content_from_content_r2']['mean']:.3f}", "1 (informative)"))
    return rows


def to_markdown(report: dict) -> str:
    splits = [k for k in report if isinstance(report[k], dict) and "short_reconstruction" in report[k]]
    lines = [f"# G2G evaluation — {report['data']} ({report['image_size']} px)", ""]
    if "classifier_accuracy_real_test" in report:
        lines += [f"Independent classifier accuracy on real test images: "
                  f"{100 * report['classifier_accuracy_real_test']:.1f} %", ""]
    lines += ["| metric | " + " | ".join(splits) + " | reference |",
              "|---|" + "---|" * len(splits) + "---|"]
    per_split = [_rows(report[s]) for s in splits]
    for k, (name, _, ref) in enumerate(per_split[0]):
        values = [rows[k][1] if k < len(rows) else "" for rows in per_split]
        lines.append(f"| {name} | " + " | ".join(values) + f" | {ref} |")
    return "\n".join(lines)
