"""Metric primitives for SPEC §7: image fidelity, probes for leakage, DCI, an independent classifier,
the copy-through test, and 95 % intervals (bootstrap over test items, or t over seeds).

Images are float NCHW in [-1, 1]. Codes are given per image; a spatial content code is flattened to a
vector before probing. Every function is pure (seeded, no global state changed) and vectorised.
"""

import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .intervals import bootstrap_ci, r2_ci

PSNR_CAP_DB = 100.0  # identical images: PSNR is infinite; 100 dB (MSE 1e-10 on [0, 1]) keeps means finite


def _check_images(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f"expected two NCHW batches of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")


def per_image_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image pair on the [0, 1] scale (data range 1), capped at 100 dB.  # (N,)"""
    _check_images(pred, target)
    psnr = peak_signal_noise_ratio((pred.float() + 1) / 2, (target.float() + 1) / 2, data_range=1.0,
                                   reduction="none", dim=(1, 2, 3))
    return psnr.clamp(max=PSNR_CAP_DB)


def per_image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1, PSNR (dB) and SSIM of each image pair of two (N, C, H, W) batches in [-1, 1], on the [0, 1] scale.

    Each value is (N,). PSNR is capped at 100 dB. SSIM uses a Gaussian window of 11 (σ 1.5) from 64 px
    up, 7 (σ 1.0) from 16 px, else 3 (σ 0.5), so the window fits small images.
    """
    _check_images(pred, target)
    p, t = (pred.float() + 1) / 2, (target.float() + 1) / 2
    size = min(p.shape[-2:])
    kernel, sigma = (11, 1.5) if size >= 64 else (7, 1.0) if size >= 16 else (3, 0.5)
    ssim = structural_similarity_index_measure(p, t, gaussian_kernel=True, kernel_size=kernel, sigma=sigma,
                                               data_range=1.0, reduction="none")
    return {"l1": (p - t).abs().mean(dim=(1, 2, 3)), "psnr": per_image_psnr(pred, target), "ssim": ssim}


def image_metrics(pred: torch.Tensor, target: torch.Tensor, ci: bool = False, seed: int = 0) -> dict:
    """Mean L1, PSNR (dB) and SSIM of two (N, C, H, W) batches in [-1, 1] (see per_image_metrics).

    PSNR is the mean of per-image PSNRs (not the PSNR of the pooled MSE), so one perfect image cannot
    dominate. With ci, also "<name>_ci95": 95 % bootstrap intervals of each mean over the images.
    """
    per_image = per_image_metrics(pred, target)
    out = {k: v.mean().item() for k, v in per_image.items()}
    if ci:
        out.update({f"{k}_ci95": list(bootstrap_ci(v, seed=seed)) for k, v in per_image.items()})
    return out


def flat_image_baseline(target: torch.Tensor) -> torch.Tensor:
    """Each target's own mean colour spread over the whole image.  # (N, C, H, W)

    An optimistic floor for swap fidelity: a model that outputs this knows nothing but the average colour
    of the answer, which it could not know, so a swap that scores below it has failed.
    """
    return target.mean(dim=(2, 3), keepdim=True).expand_as(target).clone()


def _as_matrix(x) -> np.ndarray:
    """Tensor or array of N items of any shape → float (N, D)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def _as_labels(y) -> np.ndarray:
    return (y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).reshape(-1)


def _split(n: int, labels: np.ndarray | None, seed: int, test_fraction: float):
    """Train/test indices; stratified by labels when every class has two samples (else plain)."""
    stratify = None
    if labels is not None and np.unique(labels, return_counts=True)[1].min() >= 2:
        stratify = labels
    return train_test_split(np.arange(n), test_size=test_fraction, random_state=seed, stratify=stratify)


def _probe(model, features, labels, seed: int, test_fraction: float) -> dict:
    x, y = _as_matrix(features), _as_labels(labels)
    train, test = _split(len(x), y, seed, test_fraction)
    with warnings.catch_warnings():  # the iteration cap is the probe's budget; its score says what it reached
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = make_pipeline(StandardScaler(), model).fit(x[train], y[train])
    hits = clf.predict(x[test]) == y[test]
    counts = np.unique(y[test], return_counts=True)[1]
    return {"accuracy": float(hits.mean()), "ci95": list(bootstrap_ci(hits, seed=seed)),
            "chance": float(counts.max() / len(test)), "n_classes": int(len(np.unique(y))),
            "n_train": int(len(train)), "n_test": int(len(test))}


def linear_probe(features, labels, seed: int = 0, test_fraction: float = 0.3) -> dict:
    """Held-out accuracy of a logistic regression predicting labels from (N, ...) features.

    Returns {"accuracy", "ci95", "chance", "n_classes", "n_train", "n_test"}; chance is the frequency of
    the most common class in the test part, the goal for a content code that holds no class; ci95 is a
    bootstrap interval over the test part.
    """
    model = LogisticRegression(max_iter=1000, random_state=seed)
    return _probe(model, features, labels, seed, test_fraction)


def mlp_probe(features, labels, seed: int = 0, test_fraction: float = 0.3, hidden: int = 256) -> dict:
    """As linear_probe with a one-hidden-layer MLP (early stopping on 10 % of the train part)."""
    model = MLPClassifier(hidden_layer_sizes=(hidden,), early_stopping=True, max_iter=200, random_state=seed)
    return _probe(model, features, labels, seed, test_fraction)


def _regress(model, features, factors, seed: int, test_fraction: float) -> dict:
    x, f = _as_matrix(features), _as_matrix(factors)
    train, test = _split(len(x), None, seed, test_fraction)
    with warnings.catch_warnings():  # as in _probe
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x[train], f[train] if f.shape[1] > 1 else f[train, 0])
    pred = model.predict(x[test]).reshape(len(test), -1)
    r2 = r2_score(f[test], pred, multioutput="raw_values")
    return {"r2": [float(v) for v in r2], "mean": float(r2.mean()), "ci95": list(r2_ci(f[test], pred, seed))}


def factor_r2(features, factors, seed: int = 0, test_fraction: float = 0.3) -> dict:
    """Held-out R² of ridge regressions predicting each continuous factor (column) from features.

    features (N, ...), factors (N, K) or (N,). Returns {"r2": [K floats], "mean": float, "ci95"},
    unclipped: 0 is the goal for leakage (e.g. content factors from class codes), and negative means
    worse than the mean; ci95 is a bootstrap interval of the mean R² over the test part.
    """
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15), alpha_per_target=True))
    return _regress(model, features, factors, seed, test_fraction)


def mlp_factor_r2(features, factors, seed: int = 0, test_fraction: float = 0.3, hidden: int = 256) -> dict:
    """As factor_r2 with a one-hidden-layer MLP (standardised inputs and targets, early stopping)."""
    mlp = MLPRegressor(hidden_layer_sizes=(hidden,), early_stopping=True, max_iter=200, random_state=seed)
    model = make_pipeline(StandardScaler(), TransformedTargetRegressor(mlp, transformer=StandardScaler()))
    return _regress(model, features, factors, seed, test_fraction)


class Classifier(nn.Module):
    """Small CNN for 3×H×W images in [-1, 1], H from 16 to 128: conv blocks, global average pool, linear."""

    def __init__(self, num_classes: int, width: int = 16, in_channels: int = 3):
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 4 * width]
        blocks = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < 3:  # halve three times: 32 px ends at 4×4, 128 px at 16×16
                blocks.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))  # (N, num_classes) logits


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by its own integer shift in [-max_shift, max_shift] (edge padding + crop)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")  # (N, C, H + 2s, W + 2s)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=gen, device=gen.device)).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    return padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 15,
                     batch_size: int = 32, lr: float = 6e-3, seed: int = 0, max_seconds: float | None = None,
                     width: int = 16) -> Classifier:
    """Train the independent classifier of SPEC §7 on real (N, 3, H, W) images; returns it in eval mode.

    Adam; the learning rate warms up over the first 5 % of training, then decays to 0 along a cosine,
    where progress is the larger of steps done / (epochs × batches) and elapsed / max_seconds, so a
    run cut short by max_seconds still ends annealed. The only augmentation is a random shift of up to
    H/16 px (the class does not change). Runs on the images' device.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    device, batch_size = images.device, min(batch_size, len(images))
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = Classifier(num_classes, width=width, in_channels=images.shape[1]).to(device)
    gen = torch.Generator().manual_seed(seed)
    labels = labels.to(device).long()
    steps = epochs * (len(images) // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    max_shift = max(1, images.shape[-1] // 16)
    start, step = time.monotonic(), 0
    model.train()
    while True:
        order = torch.randperm(len(images), generator=gen).to(device)
        for idx in order[: len(order) - len(order) % batch_size].view(-1, batch_size):  # drop the ragged end
            progress = step / steps
            if max_seconds is not None:
                progress = max(progress, (time.monotonic() - start) / max_seconds)
            if progress >= 1:
                return model.eval()
            for group in opt.param_groups:
                group["lr"] = lr * min(progress / 0.05, 0.5 * (1 + math.cos(math.pi * progress)))
            x = _random_shift(images[idx].float(), max_shift, gen)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1


@torch.no_grad()
def classify(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted class of each (N, 3, H, W) image in [-1, 1].  # (N,) long, on the images' device"""
    device = next(model.parameters()).device
    preds = [model(chunk.to(device).float()).argmax(1) for chunk in images.split(batch_size)]
    return torch.cat(preds).to(images.device)


def _normalised_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of distributions along axis, in log base of their length (1 = uniform, 0 = one-hot)."""
    k = p.shape[axis]
    if k < 2:
        return np.zeros(np.delete(p.shape, axis))
    p = p / np.clip(p.sum(axis=axis, keepdims=True), 1e-12, None)
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=axis) / np.log(k)


def dci(codes: dict, factors: dict, discrete: set, factor_groups: dict | None = None, seed: int = 0,
        max_samples: int = 2000, n_estimators: int = 50, test_fraction: float = 0.3,
        importance: str = "permutation", n_permutations: int = 3) -> dict:
    """Block-level DCI (Eastwood & Williams 2018): each code block (e.g. "content", "class") is one unit.

    codes: {block: (N, ...) codes}; factors: {name: (N,) values}; discrete: names of the categorical
    factors (random-forest classifier; the others use a regressor), fitted per factor on all blocks.
    Importance of block j for factor k:
    - "permutation" (default): how much the held-out score (accuracy, or R²) drops when block j's rows
      are shuffled jointly (its columns keep their relations, their link to the factor is cut), the
      shuffled score floored at chance (majority-class rate, or R² 0), averaged over n_permutations;
    - "impurity": the sum of the forest's impurity importances over j's dimensions (columns sum to 1).
      This credits a block with the noise splits a deep forest makes on its many dimensions: a class
      block of 30 one-hot dimensions takes ~7 % of every content factor, so a perfectly disentangled code
      scores ~0.75; permutation credits a block only with what the prediction needs from it.
    Disentanglement = Σ_j ρ_j (1 − H_G(P_j·)), ρ_j the block's share of all importance; completeness =
    mean over factors that some block predicts of 1 − H_B(P_·k); informativeness = mean held-out
    accuracy (discrete) or R² (continuous). A factor no block predicts has zero importance and so no
    weight in either.

    factor_groups ({factor: group}, e.g. shape → "class", position → "content") sums importance within
    each group before the disentanglement entropy, so a content block that holds several content factors
    still counts as disentangled; without it each factor is its own group (plain Eastwood & Williams),
    and a block holding K' of K factors equally scores at most 1 − log_K K'. At most max_samples random
    samples are used. Returns a JSON-serialisable dict.
    """
    blocks, names = list(codes), list(factors)
    if not blocks or not names:
        raise ValueError("dci needs at least one code block and one factor")
    if importance not in ("permutation", "impurity"):
        raise ValueError(f"importance must be 'permutation' or 'impurity', not {importance!r}")
    unknown = set(discrete) - set(names)
    if unknown:
        raise ValueError(f"discrete factors {sorted(unknown)} are not among the factors {names}")
    groups = factor_groups if factor_groups is not None else {n: n for n in names}
    if set(groups) != set(names):
        raise ValueError(f"factor_groups must name each factor exactly once: {names}, got {sorted(groups)}")
    group_names = list(dict.fromkeys(groups[n] for n in names))
    mats = [_as_matrix(codes[b]) for b in blocks]
    x = np.concatenate(mats, axis=1)  # (N, D), block j owns columns owner == j
    owner = np.repeat(np.arange(len(blocks)), [m.shape[1] for m in mats])
    rng = np.random.default_rng(seed)
    keep = rng.permutation(len(x))[:max_samples]
    x = x[keep]
    train, test = _split(len(x), None, seed, test_fraction)
    weights = np.zeros((len(blocks), len(names)))  # (B, K)
    informativeness = {}
    for k, name in enumerate(names):
        y = _as_labels(factors[name])[keep]
        is_discrete = name in discrete
        forest = RandomForestClassifier if is_discrete else RandomForestRegressor
        model = forest(n_estimators=n_estimators, max_features="sqrt", min_samples_leaf=2, random_state=seed,
                       n_jobs=1).fit(x[train], y[train])

        def score(features, y_test=y[test]):
            pred = model.predict(features)
            return (pred == y_test).mean() if is_discrete else r2_score(y_test.astype(float), pred)

        informativeness[name] = float(score(x[test]))
        if importance == "impurity":
            weights[:, k] = np.bincount(owner, weights=model.feature_importances_, minlength=len(blocks))
            continue
        floor = np.unique(y[test], return_counts=True)[1].max() / len(test) if is_discrete else 0.0
        for j in range(len(blocks)):
            shuffled = []
            for _ in range(n_permutations):
                xp = x[test].copy()
                xp[:, owner == j] = xp[rng.permutation(len(test))][:, owner == j]
                shuffled.append(max(score(xp), floor))
            weights[j, k] = max(informativeness[name] - float(np.mean(shuffled)), 0.0)
    group_of = np.array([group_names.index(groups[n]) for n in names])
    by_group = np.stack([weights[:, group_of == g].sum(1) for g in range(len(group_names))], 1)  # (B, G)
    per_block = 1 - _normalised_entropy(by_group, axis=1)  # (B,) over factor groups
    total = weights.sum()
    rho = weights.sum(1) / total if total > 0 else np.zeros(len(blocks))
    predicted = weights.sum(0) > 0  # factors some block predicts
    per_factor = 1 - _normalised_entropy(weights, axis=0)  # (K,) over blocks
    ungrouped = (rho * (1 - _normalised_entropy(weights, axis=1))).sum()  # each factor its own group
    return {"disentanglement": float((rho * per_block).sum()),
            "completeness": float(per_factor[predicted].mean()) if predicted.any() else 0.0,
            "disentanglement_ungrouped": float(ungrouped),
            "informativeness": float(np.mean(list(informativeness.values()))),
            "disentanglement_per_block": dict(zip(blocks, per_block.tolist())),
            "completeness_per_factor": {n: float(c) if p else None
                                        for n, c, p in zip(names, per_factor, predicted)},
            "informativeness_per_factor": informativeness,
            "importance": weights.tolist(), "importance_kind": importance, "blocks": blocks, "factors": names,
            "factor_groups": groups, "n_samples": int(len(x))}


def pairwise_cosine(a, b) -> torch.Tensor:
    """Cosine similarity of the flattened rows of two (N, ...) batches.  # (N,)"""
    a, b = (torch.as_tensor(_as_matrix(t)) for t in (a, b))
    return F.cosine_similarity(a, b, dim=1)


def cosine_agreement(a, b) -> float:
    """Mean cosine similarity of the flattened rows of two (N, ...) batches."""
    return pairwise_cosine(a, b).mean().item()


def copy_through(mixed: torch.Tensor, content_source: torch.Tensor, target: torch.Tensor | None = None,
                 reconstruction: torch.Tensor | None = None) -> torch.Tensor:
    """Which mixed images m1 = G(a1, b2) of pairs of different classes copy their content source x1.  # (N,) bool

    Distances are mean squared errors per image. Give exactly one of:
    target, the true mixed image t (on `shapes`, render(content of x1, class of x2)): m1 copies through
    when it is closer to x1 than to t, ‖m1 − x1‖ < ‖m1 − t‖. An identity "model" (m1 = x1) scores 1,
    the oracle (m1 = t) 0.
    reconstruction, the short reconstruction x̂1 = G(a1, b1), where no true mixed image exists: m1 copies
    through when swapping the class code moved the image by no more than x̂1 misses x1,
    ‖m1 − x̂1‖ ≤ ‖x̂1 − x1‖, i.e. m1 is as good a reconstruction of x1 as x̂1. An identity model
    (m1 = x̂1 = x1) and a decoder that ignores the class code score 1; a model whose class swap changes
    the image by more than its reconstruction error scores 0.
    """
    if (target is None) == (reconstruction is None):
        raise ValueError("copy_through needs exactly one of target (true mixed image) or reconstruction")
    _check_images(mixed, content_source)
    if target is not None:
        _check_images(mixed, target)
        return _mse(mixed, content_source) < _mse(mixed, target)
    _check_images(mixed, reconstruction)
    return _mse(mixed, reconstruction) <= _mse(reconstruction, content_source)


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).square().mean(dim=(1, 2, 3))  # (N,)
