"""One split's report, streamed: images are read in chunks and every metric keeps per-item numbers only.

Three passes over bounded sets of images (stream.py):
1. the sample: up to n_probe images (all of a small split) → their codes for the probes and DCI, the
   split's mean codes, and the short reconstructions;
2. the pairs: n_pairs test pairs (x1, x2) of different classes, with K − 1 other images of x2's class,
   read chunk by chunk → swap, long reconstruction, class transfer, K-shot, copy-through, code cycle,
   identity similarity, and the features of the mixed images for FID/KID;
3. FID/KID's real images: 2 × realism_images of the split, seeded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..inference import G2GModel
from ..wiring import g2g_forward
from . import external as X
from . import metrics as M
from .intervals import bootstrap_ci
from .pairs import make_pairs, same_class_others
from .sections import agreement, copy_through, cosines, dci_blocks, fidelity, leakage, reassembly
from .stream import Records, chunk_size, pooled, read_chunks, sample_indices


@dataclass(frozen=True)
class EvalSettings:
    """What `g2g eval` measures per split and how much work it spends on it."""

    n_pairs: int = 2000                    # test pairs (x1, x2) of different classes
    seed: int = 0                          # pairs, references, probes, forests and bootstrap resamples
    k_shots: tuple[int, ...] = (1, 5)      # class references per class code for K-shot class transfer
    n_probe: int = 3000                    # images used by each probe and DCI fit, and short reconstructions
    mlp_probes: bool = True                # MLP probes besides the linear ones
    dci_repeats: int = 3                   # DCI fits with different seeds (the interval is over them)
    realism_images: int = 1000             # mixed images for FID/KID (and twice as many real ones)
    realism_chunks: int = 5                # disjoint chunks FID/KID are averaged over
    lpips_net: str = "alex"                # LPIPS backbone: alex | vgg | squeeze
    workers: int | None = None             # image-reading processes (None: as training, `auto_workers`)

    def __post_init__(self):
        if self.n_pairs < 1 or self.n_probe < 1 or self.dci_repeats < 1 or self.realism_chunks < 1:
            raise ValueError("n_pairs, n_probe, dci_repeats and realism_chunks must be at least 1")
        if not self.k_shots or min(self.k_shots) < 1:
            raise ValueError(f"k_shots must be class-reference counts ≥ 1, got {self.k_shots}")
        if self.lpips_net not in X.LPIPS_BACKBONES:
            raise ValueError(f"unknown LPIPS network {self.lpips_net!r}: choose one of {', '.join(X.LPIPS_BACKBONES)}")


@dataclass
class Judges:
    """Networks that judge the model; None where unavailable (the report says why)."""

    classifier: torch.nn.Module | None = None
    lpips: object | None = None            # (pred, target) → (N,) distances
    inception: torch.nn.Module | None = None
    identity: torch.nn.Module | None = None
    skipped: dict = field(default_factory=dict)


def _scores(pred: torch.Tensor, target: torch.Tensor, lpips) -> dict[str, torch.Tensor]:
    """Per-image L1, PSNR, SSIM (and LPIPS).  # each (N,)"""
    out = M.per_image_metrics(pred, target)
    if lpips is not None:
        out["lpips"] = lpips(pred, target)
    return out


def _named(prefix: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in values.items()}


@torch.no_grad()
def _sample_pass(model: G2GModel, ds, sample: torch.Tensor, own: torch.Tensor | None, judges: Judges,
                 s: EvalSettings, chunk: int):
    """Codes (content pooled for the probes) and short reconstructions of the sample; the mean codes.
    own (n, K) other images of each sample image's class: a centred model's content centres (else None)."""
    rec, content_sum = Records(), None
    starts = list(range(0, len(sample), chunk))
    chunks = [sample[a:a + chunk] if own is None else torch.cat([sample[a:a + chunk], own[a:a + chunk].flatten()])
              for a in starts]
    for a, images in zip(starts, read_chunks(ds, chunks, s.workers)):
        b = min(chunk, len(sample) - a)
        x, refs = images[:b], None if own is None else images[b:].unflatten(0, (b, own.shape[1]))
        content, class_code = (t.cpu() for t in model.encode(x, refs))
        x_hat = model.decode(content, class_code).cpu()
        rec.add(content=pooled(content), class_code=class_code, **_named("short", _scores(x_hat, x, judges.lpips)),
                flat=M.per_image_psnr(M.flat_image_baseline(x), x))
        content_sum = content.sum(0) if content_sum is None else content_sum + content.sum(0)
    assert content_sum is not None  # the sample is never empty
    return rec, content_sum / len(sample), rec.cat("class_code").mean(0)


def _few_shot(model, x1, a1, b2, b_refs, m1, x1_hat, t, y2, judges, s, rec: Records) -> None:
    """Class transfer with the class code of x2 replaced by the mean code of K images of its class:
    x2 and K − 1 others (FUNIT's K-shot protocol; K = 1 is m1 itself). b_refs (n, K − 1, D): the class codes
    of the others, each encoded once for every K (a K-shot code is the mean of K image codes)."""
    for k in s.k_shots:
        m = m1 if k == 1 else model.decode(a1, torch.cat([b2[:, None], b_refs[:, :k - 1]], 1).mean(1)).cpu()
        if judges.classifier is not None:
            rec.add(**{f"k{k}.hit": (M.classify(judges.classifier, m) == y2).float()})
        if t is not None:
            rec.add(**{f"k{k}.psnr": M.per_image_psnr(m, t), f"k{k}.copy_target": M.copy_through(m, x1, target=t)})
        rec.add(**{f"k{k}.copy_rec": M.copy_through(m, x1, reconstruction=x1_hat)})


@torch.no_grad()
def _pair_chunk(model, x1, x2, xo, t, y2, judges, s, centres, fake: int, rec: Records, x_own=None) -> None:
    """Every per-pair number of one chunk of pairs; xo (n, K − 1, 3, H, W) other images of x2's class;
    x_own likewise of x1's class, for a centred model's content centres (else None)."""
    device = model.device
    res = g2g_forward(model.generator, x1.to(device), x2.to(device),
                      centre_in1=None if x_own is None else x_own.to(device), centre_in2=xo.to(device))
    # the codes of x1 and x2 (as model.encode gives them) and all that the full pass (long=True) draws
    parts = (res.m1, res.r1, res.x1_hat, res.a_m1, res.b_m1, res.a1, res.b1, res.a2, res.b2)
    m1, r1, x1_hat, a_m1, b_m1, a1, b1, a2, b2 = (v.cpu() for v in parts if v is not None)
    b_refs = model.encode_class(xo.flatten(0, 1)).cpu().unflatten(0, xo.shape[:2])  # (n, K − 1, D)
    rec.add(**_named("long", _scores(r1, x1, judges.lpips)),
            long_l1=(r1 - x1).abs().mean(dim=(1, 2, 3)), short_l1=(x1_hat - x1).abs().mean(dim=(1, 2, 3)),
            copy_rec=M.copy_through(m1, x1, reconstruction=x1_hat))
    if t is not None:
        rec.add(**_named("swap", _scores(m1, t, judges.lpips)), **_named("copy_source", _scores(x1, t, judges.lpips)),
                swap_flat=M.per_image_psnr(M.flat_image_baseline(t), t), copy_target=M.copy_through(m1, x1, target=t))
    if judges.classifier is not None:
        rec.add(shown=M.classify(judges.classifier, m1))
    _few_shot(model, x1, a1, b2, b_refs, m1, x1_hat, t, y2, judges, s, rec)
    content_centre, class_centre = centres
    cls = cosines(b2, b_m1, b1, b_refs[:, 0], center=class_centre)
    con = cosines(a1, a_m1, a2, center=content_centre)
    rec.add(**{"cycle_class": cls[0], "cycle_class_unrelated": cls[1], "cycle_class_same": cls[2],
               "cycle_content": con[0], "cycle_content_unrelated": con[1]})
    if judges.identity is not None:
        f = [X.features_of(judges.identity, v) for v in (m1, x1, x2, xo[:, 0])]
        rec.add(id_agree=M.pairwise_cosine(f[0], f[2]), id_unrelated=M.pairwise_cosine(f[1], f[2]),
                id_same=M.pairwise_cosine(f[3], f[2]), id_to_source=M.pairwise_cosine(f[0], f[1]))
    if judges.inception is not None and fake > 0:
        rec.add(fake_features=X.features_of(judges.inception, m1[:fake]))


def _pair_pass(model, ds, i, j, others, own, judges, s, centres, render, chunk: int, n_fake: int) -> Records:
    """others (n, K − 1): other images of x2's class; own (n, K') of x1's class for a centred model, else None."""
    rec, n, k = Records(), len(i), others.shape[1]
    factors = getattr(ds, "factors", None)
    starts = list(range(0, n, chunk))
    extra = [torch.empty(0, dtype=i.dtype) if own is None else own[a:a + chunk].flatten() for a in starts]
    chunks = [torch.cat([i[a:a + chunk], j[a:a + chunk], others[a:a + chunk].flatten(), e])
              for a, e in zip(starts, extra)]
    for a, images in zip(starts, read_chunks(ds, chunks, s.workers)):
        b = min(chunk, n - a)
        x1, x2, xo = images[:b], images[b:2 * b], images[2 * b:2 * b + b * k].unflatten(0, (b, k))
        x_own = None if own is None else images[2 * b + b * k:].unflatten(0, (b, own.shape[1]))
        y2 = ds.labels[j[a:a + b]]
        t = None if render is None or factors is None else render(y2, factors[i[a:a + b]], images.shape[-1])
        _pair_chunk(model, x1, x2, xo, t, y2, judges, s, centres, max(0, min(b, n_fake - a)), rec, x_own)
    return rec


def _realism(ds, rec: Records, n: int, judges: Judges, s: EvalSettings, chunk: int) -> dict:
    """FID/KID of the first n mixed images against 2n real images of the split (seeded)."""
    if n < 2 * s.realism_chunks:
        return {"skipped": f"FID/KID: too few images ({len(ds)} real, {s.n_pairs} pairs) for "
                           f"{s.realism_chunks} chunks of at least 2"}
    real = torch.randperm(len(ds), generator=torch.Generator().manual_seed(s.seed))[:2 * n]
    chunks = list(real.split(chunk))
    f_real = torch.cat([X.features_of(judges.inception, x) for x in read_chunks(ds, chunks, s.workers)])
    return X.realism_of_features(rec.cat("fake_features"), f_real, s.realism_chunks)


def _hits(hit: torch.Tensor, labels: torch.Tensor, s: EvalSettings) -> dict:
    return {"accuracy": hit.mean().item(), "ci95": list(bootstrap_ci(hit, seed=s.seed)),
            "chance": 1.0 / len(labels.unique())}


def _pair_sections(rec: Records, labels, i, j, target: bool, judges: Judges, s: EvalSettings) -> dict:
    res: dict[str, Any] = {"long_reconstruction": fidelity(rec.group("long"), s.seed)}
    res["reassembly"] = reassembly(rec.cat("long_l1"), rec.cat("short_l1"), s.seed)
    if target:
        res["swap"] = fidelity(rec.group("swap"), s.seed, rec.cat("swap_flat"), rec.group("copy_source"))
    if judges.classifier is not None:
        shown = rec.cat("shown")
        res["class_transfer"] = {**_hits((shown == labels[j]).float(), labels, s),
                                 "content_source_class_rate": (shown == labels[i]).float().mean().item()}
    res["few_shot"] = {}
    for k in s.k_shots:
        entry: dict[str, Any] = {"k": k}
        if f"k{k}.hit" in rec:
            entry["class_transfer"] = _hits(rec.cat(f"k{k}.hit"), labels, s)
        if f"k{k}.psnr" in rec:
            psnr = rec.cat(f"k{k}.psnr")
            entry["swap_psnr"] = {"psnr": psnr.mean().item(), "ci95": list(bootstrap_ci(psnr, seed=s.seed))}
        by_target = rec.cat(f"k{k}.copy_target") if f"k{k}.copy_target" in rec else None
        entry["copy_through"] = copy_through(rec.cat(f"k{k}.copy_rec"), by_target, s.seed)
        res["few_shot"][f"k{k}"] = entry
    res["copy_through"] = copy_through(rec.cat("copy_rec"), rec.cat("copy_target") if target else None, s.seed)
    res["code_cycle"] = {
        "class": agreement(rec.cat("cycle_class"), rec.cat("cycle_class_unrelated"), rec.cat("cycle_class_same"),
                           centred=True, seed=s.seed),
        "content": agreement(rec.cat("cycle_content"), rec.cat("cycle_content_unrelated"), centred=True, seed=s.seed)}
    if judges.identity is not None:
        same = agreement(rec.cat("id_agree"), rec.cat("id_unrelated"), rec.cat("id_same"), seed=s.seed)
        res["identity_similarity"] = {**same, "to_content_source": rec.cat("id_to_source").mean().item()}
    return res


def evaluate_split(model: G2GModel, ds, judges: Judges, s: EvalSettings = EvalSettings(), render=None,
                   factor_names: tuple[str, ...] = ()) -> dict:
    """Every metric of one split: ds is a dataset (labels (N,), items (image (3, H, W) in [-1, 1], label),
    and `factors` (N, F) with factor_names where known); render(class_ids, factors, size) draws the true
    mixed images (shapes)."""
    labels = torch.as_tensor(ds.labels)
    factors = getattr(ds, "factors", None)
    chunk = chunk_size(int(ds[0][0].shape[-1]))
    i, j = make_pairs(labels, s.n_pairs, s.seed)
    others = same_class_others(labels, j, max(max(s.k_shots), 2) - 1, s.seed)  # (n, K − 1) of x2's class
    sample = sample_indices(len(labels), s.n_probe, s.seed)
    # a centred model centres each content code on other images of its class (as many as x2's others)
    centred = getattr(model.generator, "centred", False)
    own_sample = same_class_others(labels, sample, others.shape[1], s.seed + 7) if centred else None
    own = same_class_others(labels, i, others.shape[1], s.seed + 11) if centred else None
    codes, content_centre, class_centre = _sample_pass(model, ds, sample, own_sample, judges, s, chunk)
    n_fake = min(s.realism_images, len(i), len(labels) // 2) if judges.inception is not None else 0
    rec = _pair_pass(model, ds, i, j, others, own, judges, s, (content_centre, class_centre), render, chunk, n_fake)
    res: dict[str, Any] = {"n_images": len(labels), "n_pairs": len(i),
                           "sample": {"pairs": len(i), "images": len(sample), "chunk_pairs": chunk,
                                      "realism_per_side": n_fake}}
    res["short_reconstruction"] = fidelity(codes.group("short"), s.seed, flat_psnr=codes.cat("flat"))
    res.update(_pair_sections(rec, labels, i, j, "swap.psnr" in rec, judges, s))
    res["double_swap_to_short_ratio"] = res["long_reconstruction"]["l1"] / max(res["short_reconstruction"]["l1"], 1e-12)
    content, class_code = codes.cat("content"), codes.cat("class_code")
    sample_factors = None if factors is None else factors[sample]
    res.update(leakage(content, class_code, labels[sample], sample_factors, s.n_probe, s.mlp_probes, s.seed))
    if sample_factors is not None:
        res["dci"] = dci_blocks(content, class_code, labels[sample], sample_factors, factor_names, s.n_probe,
                                s.dci_repeats, s.seed)
    if judges.inception is not None:
        res["realism"] = _realism(ds, rec, n_fake, judges, s, chunk)
    return res
