"""The seed-aware comparison: trained runs are a unit of replication beside the cases.

Data of one comparison: ``method`` (k_M runs x n units) and ``reference`` (k_R runs x n units), complete (every run
has every unit); a unit is a case, or a patient when cases share one (their values averaged per run first). The
model (cases crossed with methods, runs nested in methods)::

    y[a, r, c] = mu + beta * [a = method] + u[c] + w[a, c] + v[a, r] + e[a, r, c]
    u ~ N(0, s_case^2)   w ~ N(0, s_cm^2)   v ~ N(0, s_run^2)   e ~ N(0, s_res^2)

i.e. ``value ~ method + (1 | case) + (1 | case:method) + (1 | run)``. The case x method term is there because a
method's gain differs from case to case; without it, several seeds with little run noise would count that spread
as residual and overclaim. For this balanced layout the REML fit has a closed form (nested ANOVA), which is what
:func:`seed_model` computes, with mean squares

- ``S_run``: variance of the run means (each run's mean over the units) within arms, pooled,
  df = (k_M - 1) + (k_R - 1); it estimates s_run^2 + s_res^2 / n;
- ``S_d``: variance over units of d_c = mean over runs (method) - mean over runs (reference), df = n - 1; it
  estimates 2 s_cm^2 + c s_res^2 with c = 1/k_M + 1/k_R;
- ``MS_res``: the run x unit interaction within arms, df = sum (k_a - 1)(n - 1); it estimates s_res^2.

``beta_hat`` = mean(method) - mean(reference) (= the GLS estimate), and

    Var(beta_hat) = c s_run^2 + (2 s_cm^2 + c s_res^2) / n
    estimated by   c S_run + max(0, S_d - c MS_res) / n

(the case x method part truncated at 0, as REML does). ``t = beta_hat / SE`` with Satterthwaite degrees of freedom
``df = V^2 / sum_i (a_i MS_i)^2 / df_i`` over the terms of the estimate (df = df_run when the case x method part is
0). With one run per arm (df_run = 0) there is no run noise to estimate: the paired test on the units is used instead
(salseg.stats.tests) and the verdict says it compares two trained models.

:func:`hierarchical_bootstrap` resamples units (the same units for both arms, keeping the pairing) and, within each
arm, runs, both with replacement; the percentile interval of beta_hat over the resamples.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

MODEL = "mixed model: value ~ method + (1|case) + (1|case:method) + (1|run), Satterthwaite df"


def _arm_terms(y: np.ndarray) -> tuple[float, float, float, float]:
    """(sum of squares of the run means about the arm mean, its df, residual sum of squares, its df) of one arm."""
    k, n = y.shape
    run_means = y.mean(axis=1)
    unit_means = y.mean(axis=0)
    grand = float(y.mean())
    ss_run = float(((run_means - grand) ** 2).sum())
    resid = y - run_means[:, None] - unit_means[None, :] + grand
    return ss_run, k - 1, float((resid ** 2).sum()), (k - 1) * (n - 1)


def seed_model(method, reference, confidence: float = 0.95) -> dict:
    """Difference, SE, Satterthwaite df, t-interval, p and variance components (see the module doc); ``note`` says
    why the model cannot be fitted (else None)."""
    ym = np.asarray(method, dtype=np.float64)
    yr = np.asarray(reference, dtype=np.float64)
    out = {"mean_diff": math.nan, "se": math.nan, "df": math.nan, "statistic": math.nan, "p": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "var_run": math.nan, "var_case_method": math.nan,
           "var_residual": math.nan, "note": None}
    if ym.ndim != 2 or yr.ndim != 2 or ym.shape[1] != yr.shape[1]:
        raise ValueError(f"runs x units matrices with the same units expected, got {ym.shape} and {yr.shape}")
    n = ym.shape[1]
    km, kr = ym.shape[0], yr.shape[0]
    if not (np.all(np.isfinite(ym)) and np.all(np.isfinite(yr))):
        raise ValueError("the model needs complete, finite values")
    if n == 0:
        out["note"] = "model not fitted: no unit with a value in every run"
        return out
    out["mean_diff"] = float(ym.mean() - yr.mean())
    if n < 2:
        out["note"] = f"model not fitted: {n} unit with a value in every run (need at least 2)"
        return out
    if km + kr < 3:
        raise ValueError("the seed model needs 2 or more runs in at least one arm")
    terms = [_arm_terms(ym), _arm_terms(yr)]
    df_run = sum(t[1] for t in terms)
    df_res = sum(t[3] for t in terms)
    s_run = sum(t[0] for t in terms) / df_run
    ms_res = sum(t[2] for t in terms) / df_res
    d = ym.mean(axis=0) - yr.mean(axis=0)
    s_d = float(d.var(ddof=1))
    c = 1.0 / km + 1.0 / kr
    cm = s_d - c * ms_res
    var = c * s_run + max(0.0, cm) / n
    out["var_run"] = max(0.0, s_run - ms_res / n)
    out["var_case_method"] = max(0.0, cm / 2)
    out["var_residual"] = ms_res
    if not var > 0:
        out["note"] = "model not fitted: no variance between runs or cases (every run and case gives the same " \
                      "difference)"
        return out
    parts = [(c * s_run, df_run)]
    if cm > 0:
        parts += [(s_d / n, n - 1), (c * ms_res / n, df_res)]
    df = var ** 2 / sum(v ** 2 / f for v, f in parts)
    se = math.sqrt(var)
    t = out["mean_diff"] / se
    half = float(special.stdtrit(df, 0.5 + confidence / 2)) * se      # = scipy.stats.t.ppf, without its overhead
    out.update(se=se, df=float(df), statistic=float(t), p=float(2 * special.stdtr(df, -abs(t))),
               ci_low=out["mean_diff"] - half, ci_high=out["mean_diff"] + half)
    return out


def resample_weights(rng: np.random.Generator, k: int, n_boot: int) -> np.ndarray:
    """(n_boot, k) weights of k items in each of n_boot resamples with replacement (counts / k)."""
    idx = rng.integers(0, k, size=(n_boot, k)) + k * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * k).reshape(n_boot, k) / k


def hierarchical_bootstrap(method, reference, n_boot: int, seed: int, confidence: float = 0.95) -> tuple:
    """Percentile interval of mean(method) - mean(reference), resampling units (shared by both arms) and runs
    within each arm; NaN when it cannot be formed (fewer than 2 units, no resamples)."""
    ym = np.asarray(method, dtype=np.float64)
    yr = np.asarray(reference, dtype=np.float64)
    n = ym.shape[1]
    if n < 2 or n_boot <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(int(seed))
    unit_w = resample_weights(rng, n, int(n_boot))                                    # (B, n)
    diff = (resample_weights(rng, ym.shape[0], int(n_boot)) @ ym) - (resample_weights(rng, yr.shape[0],
                                                                                       int(n_boot)) @ yr)
    boot = (diff * unit_w).sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)
