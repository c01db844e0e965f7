"""Verdicts that cannot overclaim: "better" / "worse" / "not separable", always with a reason, and the warnings every
output carries.

"better" or "worse" needs ALL of: at least ``MIN_UNITS`` independent units (cases, or patients when cases share
one), the corrected p below alpha, and a bootstrap interval of the mean difference that excludes 0. The p and the
interval come from the paired test on the units when each arm has one seed, and from the mixed model with runs as a
unit of replication (salseg.stats.mixed) plus the hierarchical bootstrap when an arm has 2 or more. Otherwise
"not separable", with the first rule that failed as ``verdict_reason`` (checked in this order):

1. the test or model was impossible (``too few pairs ...``, ``identical, no test possible``, ``constant difference
   ...``, ``model not fitted: ...``);
2. ``n too small: with n ≤ 5 a two-sided Wilcoxon cannot reach p < 0.05`` (Wilcoxon chosen, n ≤ 5: its smallest
   two-sided p is 2 / 2^n = 0.0625 at n = 5);
3. ``n too small: 2 patients (a verdict needs at least 6)``: below ``MIN_UNITS`` no verdict and no bootstrap;
4. ``not significant: p_corrected=... ≥ alpha=...``;
5. ``CI includes 0: bootstrap [lo, hi]`` (or ``CI includes 0: no bootstrap interval`` when none could be formed).

``MIN_UNITS`` = 6: the smallest n at which both offered tests can reach p < 0.05 (Wilcoxon's smallest two-sided p is
2/2^n: 0.0625 at n = 5, 0.031 at n = 6), so a verdict never depends on which test was chosen; and the bootstrap of a
mean of n values has C(2n-1, n) distinct resamples (126 at n = 5, 462 at n = 6), too few below that for the 2.5 %
and 97.5 % ends of an interval to mean anything.

The direction (better / worse) is the sign of the mean difference, read with ``lower_is_better`` (the surface
distances and |RVD|: salseg.stats.load.LOWER_IS_BETTER_METRICS).
:func:`caveats` lists the warnings of a record (one seed per arm, n too small, cases averaged per patient, cases
left out); they go into the record's ``warnings`` and every output.
"""

from __future__ import annotations

import math

ALPHA = 0.05
MIN_UNITS = 6
BETTER, WORSE, NOT_SEPARABLE = "better", "worse", "not separable"
WILCOXON_SMALL_N = "n too small: with n ≤ 5 a two-sided Wilcoxon cannot reach p < 0.05"
ONE_SEED = "seed noise not measured (1 seed per arm): this compares two trained models, not two methods"


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _units(n: int, unit: str | None) -> str:
    unit = unit or "case"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def too_small(rec: dict) -> str | None:
    """The "n too small" reason of a record with fewer than MIN_UNITS units, else None."""
    n = rec.get("n")
    if n is None or n >= MIN_UNITS:
        return None
    return f"n too small: {_units(n, rec.get('unit'))} (a verdict needs at least {MIN_UNITS})"


def decide(rec: dict, alpha: float = ALPHA) -> tuple[str, str]:
    """(verdict, reason) of one comparison record (see the module doc)."""
    if rec.get("note"):
        return NOT_SEPARABLE, rec["note"]
    if rec.get("test") == "wilcoxon" and rec.get("n", 0) <= 5:
        return NOT_SEPARABLE, WILCOXON_SMALL_N
    small = too_small(rec)
    if small:
        return NOT_SEPARABLE, small
    p = rec.get("p_corrected")
    if _nan(p):
        return NOT_SEPARABLE, "no test possible"
    if p >= alpha:
        return NOT_SEPARABLE, f"not significant: p_corrected={p:.3g} ≥ alpha={alpha:g}"
    lo, hi = rec.get("boot_ci_low"), rec.get("boot_ci_high")
    if _nan(lo) or _nan(hi):
        return NOT_SEPARABLE, "CI includes 0: no bootstrap interval"
    if lo <= 0 <= hi:
        return NOT_SEPARABLE, f"CI includes 0: bootstrap [{lo:+.4g}, {hi:+.4g}]"
    higher = float(rec["mean_diff"]) > 0
    better = (not higher) if rec.get("lower_is_better") else higher
    reason = f"p_corrected={p:.3g} < {alpha:g}, bootstrap CI [{lo:+.4g}, {hi:+.4g}] excludes 0"
    if rec.get("test") == "mixed":
        reason += (f" (mixed model over {rec.get('n_seeds_method')} + {rec.get('n_seeds_reference')} seeds, "
                   f"df {rec.get('df', math.nan):.1f})")
    if rec.get("lower_is_better"):
        reason += f"; {'higher' if higher else 'lower'} {rec.get('metric')}, lower is better"
    return (BETTER if better else WORSE), reason


def caveats(rec: dict) -> list[str]:
    """The warnings of one record, in the words every output uses."""
    out = []
    k_m, k_r = rec.get("n_seeds_method"), rec.get("n_seeds_reference")
    if k_m == 1 and k_r == 1:
        out.append(ONE_SEED)
    elif k_m and k_r and min(k_m, k_r) == 1:
        out.append(f"seed noise measured on one arm only ({k_m} vs {k_r} seeds): the model assumes both arms' "
                   f"runs vary alike")
    small = too_small(rec)
    if small:
        out.append(small + "; no bootstrap interval")
    if rec.get("unit") == "patient":
        out.append(f"{rec.get('n_cases')} cases from {_units(rec.get('n'), 'patient')}: each patient's cases "
                   f"averaged first (dataset.json groups / group column); n counts patients")
    if rec.get("n_incomplete"):
        out.append(f"{rec['n_incomplete']} case(s) without a value in every seed of both arms left out")
    return out
