"""Paired tests on scipy.stats, oriented method minus reference, and the comparison records with verdicts.

- ``t``: ``scipy.stats.ttest_rel(method, reference)`` (two-sided); statistic = t.
- ``wilcoxon``: ``scipy.stats.wilcoxon(method, reference)`` (two-sided) for p; statistic = W+ = sum of the ranks of
  the positive differences (``scipy.stats.wilcoxon(method, reference, alternative="greater").statistic``), so that
  larger = the method scores higher, as for t.
- mean difference and its 95 % confidence interval from the t distribution (``scipy.stats.t.ppf``), for both tests.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats

from salseg.stats.corrections import correct

TESTS = ("t", "wilcoxon")
ALPHA = 0.05


def check_choices(test: str, correction: str) -> None:
    """Unknown test or correction names -> DataError listing the choices."""
    from salseg.errors import DataError
    from salseg.stats.corrections import CORRECTIONS

    if str(test).lower() not in TESTS:
        raise DataError(f"unknown test '{test}'; choose from {', '.join(TESTS)}")
    if str(correction).lower() not in CORRECTIONS:
        raise DataError(f"unknown correction '{correction}'; choose from {', '.join(CORRECTIONS)}")


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), (float(x.std(ddof=1)) if x.size > 1 else math.nan)


def paired_test(method: Sequence[float], reference: Sequence[float], test: str = "t", confidence: float = 0.95) -> dict:
    """Test paired values (NaN pairs dropped). Returns n, n_nan_dropped, statistic, p, mean_diff, ci_low, ci_high,
    mean/std of both sides and ``note`` (why no test was possible, else None)."""
    test = str(test).lower()
    if test not in TESTS:
        raise ValueError(f"unknown test '{test}'; choose from {', '.join(TESTS)}")
    a = np.asarray(method, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    d = a - b
    n = int(d.size)
    out = {"n": n, "n_nan_dropped": int((~keep).sum()), "statistic": math.nan, "p": math.nan,
           "mean_diff": float(d.mean()) if n else math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "note": None, "test": test}
    out["mean_method"], out["std_method"] = _mean_std(a)
    out["mean_reference"], out["std_reference"] = _mean_std(b)
    if n < 2:
        out["note"] = f"too few pairs (n={n}; need at least 2)"
        return out
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    out["ci_low"], out["ci_high"] = out["mean_diff"] - half, out["mean_diff"] + half
    if np.all(d == 0):
        out["note"] = "identical, no test possible"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if test == "t":
            if sd == 0:
                out["note"] = "constant difference (zero variance), no t-test possible"
                return out
            r = stats.ttest_rel(a, b)
            out["statistic"], out["p"] = float(r.statistic), float(r.pvalue)
        else:
            r = stats.wilcoxon(a, b)
            out["p"] = float(r.pvalue)
            out["statistic"] = float(stats.wilcoxon(a, b, alternative="greater").statistic)
            nz = d[d != 0]
            ranks = stats.rankdata(np.abs(nz))
            out["_direction"] = float(ranks[nz > 0].sum() - ranks[nz < 0].sum())
    return out


def verdict(rec: dict, alpha: float = ALPHA) -> str:
    """A plain sentence: "method better (p_corr=0.003)", "no significant difference (p_corr=0.41)", ..."""
    if rec.get("note"):
        return rec["note"]
    p = rec["p_corrected"]
    if math.isnan(p):
        return "no test possible"
    if p >= alpha:
        return f"no significant difference (p_corr={p:.3g})"
    direction = rec.get("_direction", rec["mean_diff"])
    higher = direction > 0
    lower_better = rec.get("lower_is_better", False)
    better = (not higher) if lower_better else higher
    word = "better" if better else "worse"
    if lower_better:
        return f"method {word}: {'higher' if higher else 'lower'} {rec['metric']}, lower is better (p_corr={p:.3g})"
    return f"method {word} (p_corr={p:.3g})"


RECORD_KEYS = ("dataset", "method", "reference", "metric", "label", "test", "n", "n_nan_dropped", "only_in_method",
               "only_in_reference", "statistic", "p", "p_corrected", "mean_diff", "ci_low", "ci_high", "mean_method",
               "std_method", "mean_reference", "std_reference", "lower_is_better", "verdict")


def make_record(*, dataset: str, method: str, reference: str, metric: str, label, lower_is_better: bool,
                result: dict, only_in_method: int = 0, only_in_reference: int = 0) -> dict:
    rec = dict(result)
    rec.update(dataset=dataset, method=method, reference=reference, metric=metric, label=label,
               lower_is_better=lower_is_better, only_in_method=only_in_method, only_in_reference=only_in_reference)
    return rec


def finalize(records: list[dict], correction: str = "holm", alpha: float = ALPHA) -> list[dict]:
    """Correct the p-values over all records of one call, add verdicts, return records with RECORD_KEYS."""
    corrected = correct([r["p"] for r in records], correction)
    out = []
    for r, pc in zip(records, corrected):
        r = dict(r, p_corrected=pc)
        r["verdict"] = verdict(r, alpha)
        out.append({k: r.get(k) for k in RECORD_KEYS} | {"correction": str(correction).lower()})
    return out
