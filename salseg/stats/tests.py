"""Paired tests on scipy.stats, oriented method minus reference, and the comparison records.

For paired values (NaN pairs dropped), d = method - reference:

- ``p_t`` = ``scipy.stats.ttest_rel(method, reference).pvalue`` and ``p_wilcoxon`` =
  ``scipy.stats.wilcoxon(method, reference).pvalue`` (two-sided), both always reported; ``test`` chooses which one is
  ``p`` (the one that is corrected and decides) and ``statistic`` (t, or W+ = sum of the ranks of the positive
  differences, ``scipy.stats.wilcoxon(method, reference, alternative="greater").statistic``);
- ``mean_diff`` with its t-interval (``ci_low``, ``ci_high``: ``scipy.stats.t.ppf``) and a paired bootstrap interval
  (``boot_ci_low``, ``boot_ci_high``): ``scipy.stats.bootstrap((d,), np.mean, method="BCa", n_resamples=n_boot,
  rng=np.random.default_rng(seed))`` -- resampling cases keeps each pair together;
- effect sizes ``effect_dz`` = mean(d) / SD(d) (ddof 1) and ``effect_rank_biserial`` = (W+ - W-) / (W+ + W-), the
  matched-pairs rank-biserial correlation (ranks of |d| over the non-zero differences);
- ``wins``/``ties``/``losses``: cases where the method is better / within ``tie`` / worse (direction from
  ``lower_is_better``);
- per arm: mean, median, SD (ddof 1) and IQR (75th - 25th percentile, numpy's linear interpolation).

With 2 or more seeds in an arm the comparison comes from salseg.stats.mixed instead (salseg.stats.compare); the
records of both have the same keys (:data:`RECORD_KEYS`), and :func:`finalize` corrects and decides them together.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats

from salseg.stats.corrections import correct
from salseg.stats.load import DISTANCE_NAMES
from salseg.stats.verdicts import ALPHA, caveats, decide

TESTS = ("t", "wilcoxon")
N_BOOT = 10000
SEED = 0
TIE_DEFAULT = 1e-3           # Dice-like metrics (Dice, IoU, NSD, table values)
TIE_DISTANCE = 0.1           # surface distances in mm (HD, HD95, HD95_MR, ASSD, MASD)


def default_tie(metric: str) -> float:
    return TIE_DISTANCE if str(metric).lower() in DISTANCE_NAMES else TIE_DEFAULT


def check_choices(test: str, correction: str) -> None:
    """Unknown test or correction names -> DataError listing the choices."""
    from salseg.errors import DataError
    from salseg.stats.corrections import CORRECTIONS

    if str(test).lower() not in TESTS:
        raise DataError(f"unknown test '{test}'; choose from {', '.join(TESTS)}")
    if str(correction).lower() not in CORRECTIONS:
        raise DataError(f"unknown correction '{correction}'; choose from {', '.join(CORRECTIONS)}")


def describe(x: np.ndarray) -> dict:
    """mean, median, SD (ddof 1) and IQR of one arm (NaN where undefined)."""
    if x.size == 0:
        return {"mean": math.nan, "median": math.nan, "std": math.nan, "iqr": math.nan}
    q25, q75 = np.percentile(x, [25, 75])
    return {"mean": float(x.mean()), "median": float(np.median(x)),
            "std": float(x.std(ddof=1)) if x.size > 1 else math.nan, "iqr": float(q75 - q25)}


def bootstrap_ci(d: np.ndarray, n_boot: int = N_BOOT, seed: int = SEED, confidence: float = 0.95) -> tuple:
    """BCa bootstrap interval of mean(d); NaN when it cannot be formed (n < 2, no resamples, constant d)."""
    if d.size < 2 or n_boot <= 0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = stats.bootstrap((d,), np.mean, n_resamples=int(n_boot), method="BCa", confidence_level=confidence,
                            rng=np.random.default_rng(int(seed)))
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def rank_biserial(d: np.ndarray) -> float:
    nz = d[d != 0]
    if nz.size == 0:
        return math.nan
    ranks = stats.rankdata(np.abs(nz))
    return float((ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum())


def _p_values(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> dict:
    out = {"p_t": math.nan, "t": math.nan, "p_wilcoxon": math.nan, "w_plus": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if d.size >= 2 and float(d.std(ddof=1)) > 0:
            r = stats.ttest_rel(a, b)
            out["t"], out["p_t"] = float(r.statistic), float(r.pvalue)
        if d.size >= 1 and np.any(d != 0):
            out["p_wilcoxon"] = float(stats.wilcoxon(a, b).pvalue)
            nz = d[d != 0]     # W+ = scipy.stats.wilcoxon(a, b, alternative="greater").statistic
            out["w_plus"] = float(stats.rankdata(np.abs(nz))[nz > 0].sum())
    return out


def describe_pair(a: np.ndarray, b: np.ndarray, tie: float, lower_is_better: bool) -> dict:
    """The figures of paired values that need no test: n, mean difference, d_z, rank-biserial r, win/tie/loss and
    each arm's mean, median, SD and IQR (``a`` method, ``b`` reference, no NaN)."""
    d = a - b
    n = int(d.size)
    higher, lower = int(np.count_nonzero(d > tie)), int(np.count_nonzero(d < -tie))
    out = {"n": n, "mean_diff": float(d.mean()) if n else math.nan, "effect_dz": math.nan,
           "effect_rank_biserial": rank_biserial(d), "tie": float(tie),
           "wins": lower if lower_is_better else higher, "ties": n - higher - lower,
           "losses": higher if lower_is_better else lower}
    if n >= 2 and float(d.std(ddof=1)) > 0:
        out["effect_dz"] = out["mean_diff"] / float(d.std(ddof=1))
    for side, x in (("method", a), ("reference", b)):
        for k, v in describe(x).items():
            out[f"{k}_{side}"] = v
    return out


def paired_test(method: Sequence[float], reference: Sequence[float], test: str = "t", confidence: float = 0.95, *,
                n_boot: int = N_BOOT, seed: int = SEED, tie: float = TIE_DEFAULT,
                lower_is_better: bool = False) -> dict:
    """Test paired values (NaN pairs dropped); see the module doc for every field. ``note`` says why the chosen
    test was impossible (else None)."""
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
    out = {"n_nan_dropped": int((~keep).sum()), "test": test, "note": None, "ci_low": math.nan,
           "ci_high": math.nan, "se": math.nan, "df": math.nan} | describe_pair(a, b, tie, lower_is_better)
    ps = _p_values(a, b, d)
    out["p_t"], out["p_wilcoxon"] = ps["p_t"], ps["p_wilcoxon"]
    out["statistic"], out["p"] = (ps["t"], ps["p_t"]) if test == "t" else (ps["w_plus"], ps["p_wilcoxon"])
    out["boot_ci_low"], out["boot_ci_high"] = bootstrap_ci(d, n_boot, seed, confidence)
    if n < 2:
        out["note"] = f"too few pairs (n={n}; need at least 2)"
        return out
    sd = float(d.std(ddof=1))
    out["se"], out["df"] = sd / math.sqrt(n), float(n - 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * out["se"]
    out["ci_low"], out["ci_high"] = out["mean_diff"] - half, out["mean_diff"] + half
    if np.all(d == 0):
        out["note"] = "identical, no test possible"
    elif test == "t" and sd == 0:
        out["note"] = "constant difference (zero variance), no t-test possible"
    return out


RECORD_KEYS = ("dataset", "method", "reference", "metric", "label", "test", "n", "n_nan_dropped", "only_in_method",
               "only_in_reference", "mean_method", "median_method", "std_method", "iqr_method", "mean_reference",
               "median_reference", "std_reference", "iqr_reference", "mean_diff", "ci_low", "ci_high", "boot_ci_low",
               "boot_ci_high", "statistic", "p", "p_t", "p_wilcoxon", "p_corrected", "effect_dz",
               "effect_rank_biserial", "wins", "ties", "losses", "tie", "model", "unit", "n_cases", "n_incomplete",
               "se", "df", "var_run", "var_case_method", "var_residual", "n_seeds_method", "n_seeds_reference",
               "seed_sd_method", "seed_sd_reference", "seed_sd_dice_method", "seed_sd_dice_reference",
               "lower_is_better", "verdict", "verdict_reason", "warnings")


def make_record(*, dataset: str, method: str, reference: str, metric: str, label, lower_is_better: bool,
                result: dict, only_in_method: int = 0, only_in_reference: int = 0, **extra) -> dict:
    """A comparison record from :func:`paired_test`'s result; ``extra`` carries seed figures
    (``n_seeds_*``, ``seed_sd_*``). Win/loss counts come from ``result`` (pass ``lower_is_better`` to
    :func:`paired_test` too)."""
    rec = dict(result)
    rec.update(dataset=dataset, method=method, reference=reference, metric=metric, label=label,
               lower_is_better=lower_is_better, only_in_method=only_in_method, only_in_reference=only_in_reference)
    rec.update(extra)
    return rec


def finalize(records: list[dict], correction: str = "holm", alpha: float = ALPHA) -> list[dict]:
    """Correct the p-values over ALL records of one call (every comparison, label and metric), add verdicts and
    their reasons, return records with RECORD_KEYS (+ ``correction``, ``alpha``)."""
    corrected = correct([r["p"] for r in records], correction)
    out = []
    for r, pc in zip(records, corrected):
        r = dict(r, p_corrected=pc)
        r["verdict"], r["verdict_reason"] = decide(r, alpha)
        r["warnings"] = caveats(r)
        out.append({k: r.get(k) for k in RECORD_KEYS} | {"correction": str(correction).lower(),
                                                          "alpha": float(alpha)})
    return out
