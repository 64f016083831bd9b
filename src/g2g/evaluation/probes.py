"""What the codes tell about the data: probes for leakage (the class from content codes, the content
factors from class codes) and block-level DCI.

Codes are given per image; a spatial content code is flattened to a vector first. Every function is
seeded and leaves no global state changed.
"""

import warnings

import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .intervals import bootstrap_ci, r2_ci
from .metrics import as_matrix


def _as_labels(y) -> np.ndarray:
    return (y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).reshape(-1)


def _split(n: int, labels: np.ndarray | None, seed: int, test_fraction: float):
    """Train/test indices; stratified by labels when every class has two samples (else plain)."""
    stratify = None
    if labels is not None and np.unique(labels, return_counts=True)[1].min() >= 2:
        stratify = labels
    return train_test_split(np.arange(n), test_size=test_fraction, random_state=seed, stratify=stratify)


def _probe(model, features, labels, seed: int, test_fraction: float) -> dict:
    x, y = as_matrix(features), _as_labels(labels)
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
    x, f = as_matrix(features), as_matrix(factors)
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


def _normalised_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of distributions along axis, in log base of their length (1 = uniform, 0 = one-hot)."""
    k = p.shape[axis]
    if k < 2:
        return np.zeros(np.delete(p.shape, axis))
    p = p / np.clip(p.sum(axis=axis, keepdims=True), 1e-12, None)
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=axis) / np.log(k)


def _check_dci(names: list, blocks: list, discrete: set, factor_groups: dict | None, importance: str) -> dict:
    """The arguments of dci checked; returns the factor groups ({factor: group})."""
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
    return groups


def _forest_score(model, features: np.ndarray, y: np.ndarray, is_discrete: bool) -> float:
    """Held-out accuracy (discrete factor) or R² (continuous factor) of a fitted forest."""
    pred = model.predict(features)
    return (pred == y).mean() if is_discrete else r2_score(y.astype(float), pred)


def _permutation_importance(model, x: np.ndarray, y: np.ndarray, is_discrete: bool, columns: list,
                            score: float, rng: np.random.Generator, n_permutations: int) -> np.ndarray:
    """Drop of the held-out score when each block's columns of x (columns[j]: a (D,) mask) are shuffled
    by rows jointly, the shuffled score floored at chance (majority-class rate, or R² 0), averaged over
    n_permutations.  # (B,)"""
    floor = np.unique(y, return_counts=True)[1].max() / len(y) if is_discrete else 0.0
    drops = np.zeros(len(columns))
    for j, mask in enumerate(columns):
        shuffled = []
        for _ in range(n_permutations):
            xp = x.copy()
            xp[:, mask] = xp[rng.permutation(len(y))][:, mask]
            shuffled.append(max(_forest_score(model, xp, y, is_discrete), floor))
        drops[j] = max(score - float(np.mean(shuffled)), 0.0)
    return drops


def _dci_summary(weights: np.ndarray, informativeness: dict, blocks: list, names: list, groups: dict) -> dict:
    """Disentanglement, completeness and informativeness from the (B, K) importance of blocks for factors."""
    group_names = list(dict.fromkeys(groups[n] for n in names))
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
            "informativeness_per_factor": informativeness, "importance": weights.tolist()}


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
    groups = _check_dci(names, blocks, discrete, factor_groups, importance)
    mats = [as_matrix(codes[b]) for b in blocks]
    x = np.concatenate(mats, axis=1)  # (N, D), block j owns columns owner == j
    owner = np.repeat(np.arange(len(blocks)), [m.shape[1] for m in mats])
    columns = [owner == j for j in range(len(blocks))]
    rng = np.random.default_rng(seed)
    keep = rng.permutation(len(x))[:max_samples]
    x = x[keep]
    train, test = _split(len(x), None, seed, test_fraction)
    weights = np.zeros((len(blocks), len(names)))  # (B, K)
    informativeness = {}
    for k, name in enumerate(names):
        y, is_discrete = _as_labels(factors[name])[keep], name in discrete
        forest = RandomForestClassifier if is_discrete else RandomForestRegressor
        model = forest(n_estimators=n_estimators, max_features="sqrt", min_samples_leaf=2, random_state=seed,
                       n_jobs=1).fit(x[train], y[train])
        informativeness[name] = float(_forest_score(model, x[test], y[test], is_discrete))
        weights[:, k] = (np.bincount(owner, weights=model.feature_importances_, minlength=len(blocks))
                         if importance == "impurity" else
                         _permutation_importance(model, x[test], y[test], is_discrete, columns,
                                                 informativeness[name], rng, n_permutations))
    return {**_dci_summary(weights, informativeness, blocks, names, groups), "importance_kind": importance,
            "blocks": blocks, "factors": names, "factor_groups": groups, "n_samples": int(len(x))}
