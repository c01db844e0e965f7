"""Verdicts that cannot overclaim: "better" / "worse" / "not separable", always with a reason.

"better" or "worse" needs ALL of: the corrected p below alpha, a bootstrap interval of the mean difference that
excludes 0, and -- when the arms have several seeds -- |mean difference| > 2 x the between-seed SD of the reference
arm's mean (the method arm's when only it has seeds). Otherwise "not separable", with the first rule that failed
as ``verdict_reason`` (checked in this order):

1. the test was impossible (``too few pairs ...``, ``identical, no test possible``, ``constant difference ...``);
2. ``n too small: with n ≤ 5 a two-sided Wilcoxon cannot reach p < 0.05`` (Wilcoxon chosen, n ≤ 5: its smallest
   two-sided p is 2 / 2^n = 0.0625 at n = 5);
3. ``not significant: p_corrected=... ≥ alpha=...``;
4. ``CI includes 0: bootstrap [lo, hi]`` (or ``CI includes 0: no bootstrap interval`` when none could be formed);
5. ``within seed noise: |diff|=... ≤ 2 × between-seed SD ...``.

The direction (better / worse) is the sign of the mean difference, read with ``lower_is_better`` (HD95, ASSD).
"""

from __future__ import annotations

import math

ALPHA = 0.05
BETTER, WORSE, NOT_SEPARABLE = "better", "worse", "not separable"
WILCOXON_SMALL_N = "n too small: with n ≤ 5 a two-sided Wilcoxon cannot reach p < 0.05"


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def seed_noise(rec: dict) -> tuple[float | None, str]:
    """(between-seed SD used by the rule, whose it is) or (None, "") when neither arm has several seeds."""
    for side in ("reference", "method"):
        sd, k = rec.get(f"seed_sd_{side}"), rec.get(f"n_seeds_{side}") or 0
        if k >= 2 and not _nan(sd):
            return float(sd), side
    return None, ""


def decide(rec: dict, alpha: float = ALPHA) -> tuple[str, str]:
    """(verdict, reason) of one comparison record (see the module doc)."""
    if rec.get("note"):
        return NOT_SEPARABLE, rec["note"]
    if rec.get("test") == "wilcoxon" and rec.get("n", 0) <= 5:
        return NOT_SEPARABLE, WILCOXON_SMALL_N
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
    diff = float(rec["mean_diff"])
    sd, side = seed_noise(rec)
    if sd is not None and abs(diff) <= 2 * sd:
        return NOT_SEPARABLE, (f"within seed noise: |diff|={abs(diff):.4g} ≤ 2 × between-seed SD of the {side} "
                               f"arm's mean ({sd:.4g})")
    higher = diff > 0
    better = (not higher) if rec.get("lower_is_better") else higher
    reason = f"p_corrected={p:.3g} < {alpha:g}, bootstrap CI [{lo:+.4g}, {hi:+.4g}] excludes 0"
    if sd is not None:
        reason += f", |diff| > 2 × between-seed SD ({sd:.4g})"
    if rec.get("lower_is_better"):
        reason += f"; {'higher' if higher else 'lower'} {rec.get('metric')}, lower is better"
    return (BETTER if better else WORSE), reason
