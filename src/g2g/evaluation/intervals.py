"""95 % intervals: percentile bootstrap over test items (means, ratios of means, R²), and Student-t
over independent seeds or chunks."""
import math

import numpy as np
import torch
from scipy.stats import t as student_t


def _vector(values) -> np.ndarray:
    """Tensor, array or list of N numbers → float (N,)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _bootstrap(n: int, statistic, n_boot: int, seed: int) -> tuple[float, float]:
    """95 % percentile interval of statistic(w) over n_boot resamples of n items with replacement.

    statistic maps resampling counts w (b, n) (how often each item was drawn) to (b,) values, so
    means, ratios of means and R² are matrix products; chunks keep w at most 4 M entries."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // max(n, 1))
    values = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n, (b, n)) + n * np.arange(b)[:, None]
        values.append(statistic(np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(float)))
    low, high = np.percentile(np.concatenate(values), [2.5, 97.5])
    return float(low), float(high)


def bootstrap_ci(values, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of (N,) values."""
    v = _vector(values)
    return _bootstrap(len(v), lambda w: w @ v / len(v), n_boot, seed)


def bootstrap_ratio_ci(numerator, denominator, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of mean(numerator) / mean(denominator) over paired (N,) values."""
    a, b = _vector(numerator), _vector(denominator)
    return _bootstrap(len(a), lambda w: (w @ a) / np.clip(w @ b, 1e-12, None), n_boot, seed)


def seed_ci(values) -> tuple[float, float]:
    """95 % Student-t interval of the mean of R ≥ 2 values from independent seeds."""
    v = np.asarray(values, dtype=float)
    half = student_t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def r2_ci(truth: np.ndarray, pred: np.ndarray, seed: int, n_boot: int = 1000) -> tuple[float, float]:
    """95 % bootstrap interval (over rows) of the mean over columns of R²; truth, pred (N, K)."""
    n = len(truth)

    def mean_r2(w):  # w (b, N) resampling counts → (b,)
        ss_res = w @ (truth - pred) ** 2
        ss_tot = w @ truth**2 - (w @ truth) ** 2 / n
        return (1 - ss_res / np.clip(ss_tot, 1e-12, None)).mean(1)

    return _bootstrap(n, mean_r2, n_boot, seed)
