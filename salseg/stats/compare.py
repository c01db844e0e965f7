"""One comparison, the one way every input goes (result folders, ``--cases``, ``--table``, ``bench``).

For a method arm and a reference arm (each: seed -> case -> value):

1. the cases both arms have; a case enters only when every seed of both arms has a finite value for it (NaN cases
   counted in ``n_nan_dropped``, cases some seed lacks in ``n_incomplete``);
2. cases that share a patient (``groups``: case -> patient) are averaged per patient and seed first, so the unit of
   the test is the patient and ``n`` counts patients (``unit`` = "patient", ``n_cases`` the cases behind them);
3. one seed per arm: the paired test on the units (salseg.stats.tests.paired_test, BCa bootstrap); 2 or more seeds
   in an arm: the mixed model with runs as a unit of replication (salseg.stats.mixed.seed_model) and the
   hierarchical bootstrap;
4. below ``MIN_UNITS`` units no bootstrap is run (and the verdict says "n too small").

:func:`comparison` is the function ``salseg stats``, ``bench`` and benchmarks/verdict_calibration.py share.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from salseg.stats.mixed import MODEL, hierarchical_bootstrap, seed_model
from salseg.stats.tests import N_BOOT, SEED, TIE_DEFAULT, describe_pair, paired_test
from salseg.stats.verdicts import MIN_UNITS

PAIRED_MODEL = {"t": "paired t-test on the units (one seed per arm)",
                "wilcoxon": "Wilcoxon signed-rank test on the units (one seed per arm)"}


def _matrix(runs: list[Mapping[str, float]], cases: list[str]) -> np.ndarray:
    return np.asarray([[float(r.get(c, math.nan)) for c in cases] for r in runs], dtype=np.float64).reshape(
        len(runs), len(cases))


def _per_unit(y: np.ndarray, cases: list[str], groups: Mapping[str, str]) -> tuple[np.ndarray, list[str]]:
    """Columns of ``y`` averaged per group (case -> group; a case without one is its own unit)."""
    units = [groups.get(c, c) for c in cases]
    if len(set(units)) == len(units):
        return y, list(cases)
    order = sorted(set(units))
    cols = [np.mean(y[:, [i for i, u in enumerate(units) if u == g]], axis=1) for g in order]
    return (np.stack(cols, axis=1) if cols else np.zeros((y.shape[0], 0))), order


def seed_comparison(ym: np.ndarray, yr: np.ndarray, *, n_boot: int = N_BOOT, seed: int = SEED,
                    tie: float = TIE_DEFAULT, lower_is_better: bool = False) -> dict:
    """The record fields of the mixed model on complete runs x units matrices (no NaN)."""
    out = describe_pair(ym.mean(axis=0), yr.mean(axis=0), tie, lower_is_better)
    fit = seed_model(ym, yr)
    out.update({k: fit[k] for k in ("se", "df", "statistic", "p", "ci_low", "ci_high", "var_run", "var_case_method",
                                    "var_residual", "note")})
    out.update(test="mixed", model=MODEL, p_t=math.nan, p_wilcoxon=math.nan, mean_diff=fit["mean_diff"])
    lo, hi = hierarchical_bootstrap(ym, yr, n_boot if ym.shape[1] >= MIN_UNITS else 0, seed)
    out["boot_ci_low"], out["boot_ci_high"] = lo, hi
    return out


def comparison(method: Mapping[int, Mapping[str, float]], reference: Mapping[int, Mapping[str, float]], *,
               test: str = "t", groups: Mapping[str, str] | None = None, n_boot: int = N_BOOT, seed: int = SEED,
               tie: float = TIE_DEFAULT, lower_is_better: bool = False) -> dict:
    """Uncorrected comparison figures of ``method`` vs ``reference`` (seed -> case -> value each), see the module
    doc; the keys of :data:`salseg.stats.tests.RECORD_KEYS` that a result can give."""
    runs_m = [method[s] for s in sorted(method)]
    runs_r = [reference[s] for s in sorted(reference)]
    common = sorted(set.intersection(*(set(r) for r in runs_m + runs_r)))
    union = set.union(*(set(r) for r in runs_m)) & set.union(*(set(r) for r in runs_r))
    ym, yr = _matrix(runs_m, common), _matrix(runs_r, common)
    finite = np.isfinite(ym).all(axis=0) & np.isfinite(yr).all(axis=0)
    kept = [c for c, f in zip(common, finite) if f]
    groups = groups or {}
    um, units = _per_unit(ym[:, finite], kept, groups)
    ur, _ = _per_unit(yr[:, finite], kept, groups)
    extra = {"unit": "patient" if len(units) < len(kept) else "case", "n_cases": len(kept),
             "n_incomplete": len(union) - len(common), "n_seeds_method": len(runs_m),
             "n_seeds_reference": len(runs_r)}
    boot = n_boot if len(units) >= MIN_UNITS else 0
    if len(runs_m) == 1 and len(runs_r) == 1:
        out = paired_test(um[0], ur[0], test, n_boot=boot, seed=seed, tie=tie, lower_is_better=lower_is_better)
        out["model"] = PAIRED_MODEL[out["test"]]
        out.update(var_run=math.nan, var_case_method=math.nan, var_residual=math.nan)
    else:
        out = seed_comparison(um, ur, n_boot=boot, seed=seed, tie=tie, lower_is_better=lower_is_better)
    out["n_nan_dropped"] = int((~finite).sum())
    return out | extra
