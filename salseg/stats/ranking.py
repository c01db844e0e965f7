"""Rankings of 3 or more methods on the cases all of them have, and how stable they are.

- full-data ranking: methods ranked by their mean over the cases (1 = best; ``lower_is_better`` for distances;
  ties share the lowest rank, ``scipy.stats.rankdata(method="min")``);
- bootstrap: ``n_boot`` resamples of the cases with replacement (``np.random.default_rng(seed).integers(0, n,
  (n_boot, n))``), each ranked the same way: per method the mean rank, the distribution P(rank = k) for
  k = 1..M (sums to 1) and P(rank 1); when methods have 2 or more seeds (``seeds``), each resample also draws
  every such method's runs with replacement (after the cases, same generator), so the ranking's stability includes
  seed noise (``resamples`` says which);
- stability: Kendall's tau-b (as ``scipy.stats.kendalltau``, vectorised) between the full-data ranks and each bootstrap's ranks,
  median and 5th percentile (NaN taus, from a bootstrap where every method ties, are left out);
- significance map: for every ordered pair (i, j), the one-sided Wilcoxon p that i is better than j
  (``scipy.stats.wilcoxon(x_i, x_j, alternative="greater")``, "less" for distances), Holm-corrected over all
  ordered pairs of the map.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from salseg.stats.corrections import correct
from salseg.stats.mixed import resample_weights

N_BOOT_RANK = 1000


def _ranks(means: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Ranks along the last axis (1 = best)."""
    score = means if lower_is_better else -means
    return stats.rankdata(score, method="min", axis=-1).astype(int)


def kendall_tau_b(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between ``x`` (k,) and each row of ``ys`` (B, k), vectorised; equals
    ``scipy.stats.kendalltau(x, y).statistic`` per row (NaN where either side is constant)."""
    i, j = np.triu_indices(x.size, 1)
    sx = np.sign(x[i] - x[j]).astype(np.float64)              # (pairs,)
    sy = np.sign(ys[:, i] - ys[:, j]).astype(np.float64)      # (B, pairs)
    n0 = float(i.size)
    denom = np.sqrt((n0 - np.count_nonzero(sx == 0)) * (n0 - np.count_nonzero(sy == 0, axis=1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (sy * sx).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)


def significance_map(matrix: np.ndarray, lower_is_better: bool = False, correction: str = "holm") -> dict:
    """``matrix`` (cases, methods): p[i][j] raw and corrected that method i is better than method j."""
    m = matrix.shape[1]
    raw = [[math.nan] * m for _ in range(m)]
    alt = "less" if lower_is_better else "greater"
    cells = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(m):
            for j in range(m):
                if i == j:
                    continue
                d = matrix[:, i] - matrix[:, j]
                if np.any(d != 0):
                    raw[i][j] = float(stats.wilcoxon(matrix[:, i], matrix[:, j], alternative=alt).pvalue)
                cells.append((i, j))
    corrected_flat = correct([raw[i][j] for i, j in cells], correction)
    corr = [[math.nan] * m for _ in range(m)]
    for (i, j), p in zip(cells, corrected_flat):
        corr[i][j] = p
    return {"p": raw, "p_corrected": corr, "test": f"wilcoxon one-sided ({alt})", "correction": correction}


def _boot_means(matrix: np.ndarray, idx: np.ndarray, runs: dict[int, np.ndarray], rng) -> np.ndarray:
    """(n_boot, methods) means over the resampled cases ``idx``; a method in ``runs`` (column -> runs x cases)
    also has its runs resampled."""
    if not runs:
        return matrix[idx].mean(axis=1)
    b, n = idx.shape
    case_w = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n) / n
    out = case_w @ matrix
    for col, y in runs.items():
        out[:, col] = ((resample_weights(rng, y.shape[0], b) @ y) * case_w).sum(axis=1)
    return out


def _runs(seeds: dict | None, methods: list[str], cases: list[str], matrix: np.ndarray) -> dict[int, np.ndarray]:
    """column -> runs x cases of the methods with 2+ seeds (a seed's missing or NaN value: the case's mean)."""
    out = {}
    for i, m in enumerate(methods):
        per_seed = (seeds or {}).get(m) or {}
        if len(per_seed) > 1:
            y = np.asarray([[per_seed[s].get(c, np.nan) for c in cases] for s in sorted(per_seed)], dtype=float)
            out[i] = np.where(np.isnan(y), matrix[None, :, i], y)
    return out


def rank_bootstrap(values: dict[str, dict[str, float]], *, lower_is_better: bool = False,
                   n_boot: int = N_BOOT_RANK, seed: int = 0, correction: str = "holm",
                   seeds: dict[str, dict[int, dict[str, float]]] | None = None) -> dict | None:
    """Ranking of ``values`` (method -> case -> value) on the cases every method has with a finite value;
    None when fewer than 3 methods or 2 cases. ``seeds`` (method -> seed -> case -> value) adds the runs to the
    resampling."""
    methods = list(values)
    if len(methods) < 3:
        return None
    common = sorted(set.intersection(*(set(v) for v in values.values())))
    common = [c for c in common if all(not math.isnan(values[m][c]) for m in methods)]
    n, k = len(common), len(methods)
    if n < 2:
        return None
    matrix = np.asarray([[values[m][c] for m in methods] for c in common], dtype=np.float64)
    full = _ranks(matrix.mean(axis=0), lower_is_better)
    rng = np.random.default_rng(int(seed))
    idx = rng.integers(0, n, size=(int(n_boot), n))
    runs = _runs(seeds, methods, common, matrix)
    boot_means = _boot_means(matrix, idx, runs, rng)   # (n_boot, methods)
    boot = _ranks(boot_means, lower_is_better)          # (n_boot, methods)
    dist = np.stack([(boot == r).mean(axis=0) for r in range(1, k + 1)], axis=1)   # (methods, ranks)
    taus = kendall_tau_b(full, boot)
    taus = taus[~np.isnan(taus)]
    return {
        "methods": methods, "n_cases": n, "n_boot": int(n_boot), "seed": int(seed),
        "lower_is_better": bool(lower_is_better),
        "resamples": "cases and each method's seeds" if runs else "cases",
        "mean": [float(x) for x in matrix.mean(axis=0)],
        "rank": [int(r) for r in full],
        "mean_rank": [float(x) for x in boot.mean(axis=0)],
        "rank_probabilities": [[float(x) for x in row] for row in dist],
        "p_rank1": [float(x) for x in dist[:, 0]],
        "kendall_tau_median": float(np.median(taus)) if taus.size else math.nan,
        "kendall_tau_p05": float(np.percentile(taus, 5)) if taus.size else math.nan,
        "significance": significance_map(matrix, lower_is_better, correction),
    }
