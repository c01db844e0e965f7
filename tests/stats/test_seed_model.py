"""Runs as a unit of replication: the mixed model against a direct computation and statsmodels' MixedLM, the
hierarchical bootstrap against a loop with the same draws, patients as units, the minimum n, bad seed input, and a
small calibration run of the decision `stats` uses."""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sst
from typer.testing import CliRunner

from salseg.errors import DataError
from salseg.fileio import write_json
from salseg.stats import ONE_SEED, analyse_cases, analyse_results, comparison
from salseg.stats.mixed import hierarchical_bootstrap, seed_model
from salseg_cli.main import app

from .test_stats_core import _summary

RNG = np.random.default_rng(11)
N, KM, KR = 8, 3, 3
U = RNG.normal(0, 1, N)
YM = np.round(0.3 + U + RNG.normal(0, .5, N) + RNG.normal(0, .6, (KM, 1)) + RNG.normal(0, .4, (KM, N)), 4)
YR = np.round(U + RNG.normal(0, .5, N) + RNG.normal(0, .6, (KR, 1)) + RNG.normal(0, .4, (KR, N)), 4)


def _direct(ym, yr):
    """Mean squares by explicit sums (no shared code with salseg.stats.mixed)."""
    n = ym.shape[1]
    ss_run = ss_res = 0.0
    df_run = df_res = 0
    for y in (ym, yr):
        k = y.shape[0]
        g = sum(y[i, c] for i in range(k) for c in range(n)) / (k * n)
        rm = [sum(y[i]) / n for i in range(k)]
        cm = [sum(y[:, c]) / k for c in range(n)]
        ss_run += sum((r - g) ** 2 for r in rm)
        ss_res += sum((y[i, c] - rm[i] - cm[c] + g) ** 2 for i in range(k) for c in range(n))
        df_run += k - 1
        df_res += (k - 1) * (n - 1)
    d = [sum(ym[:, c]) / ym.shape[0] - sum(yr[:, c]) / yr.shape[0] for c in range(n)]
    dbar = sum(d) / n
    s_d = sum((x - dbar) ** 2 for x in d) / (n - 1)
    c = 1 / ym.shape[0] + 1 / yr.shape[0]
    s_run, ms_res = ss_run / df_run, ss_res / df_res
    terms = [(c * s_run, df_run), (s_d / n, n - 1), (-c * ms_res / n, df_res)]
    var = sum(t for t, _ in terms)
    df = var ** 2 / sum(t ** 2 / f for t, f in terms)
    return float(ym.mean() - yr.mean()), math.sqrt(var), df, (s_run - ms_res / n, (s_d - c * ms_res) / 2, ms_res)


def test_mixed_model_equals_direct_computation_and_statsmodels():
    fit = seed_model(YM, YR)
    diff, se, df, (v_run, v_cm, v_res) = _direct(YM, YR)
    assert v_run > 0 and v_cm > 0                       # no component at the boundary: REML = ANOVA
    assert fit["mean_diff"] == pytest.approx(diff, abs=1e-6) and fit["se"] == pytest.approx(se, abs=1e-6)
    assert fit["df"] == pytest.approx(df, abs=1e-6)
    assert fit["p"] == pytest.approx(2 * sst.t.sf(abs(diff / se), df), abs=1e-6)
    half = sst.t.ppf(0.975, df) * se
    assert fit["ci_low"] == pytest.approx(diff - half, abs=1e-6) and fit["ci_high"] == pytest.approx(diff + half,
                                                                                                     abs=1e-6)
    assert (fit["var_run"], fit["var_case_method"], fit["var_residual"]) == pytest.approx((v_run, v_cm, v_res))
    # statsmodels' REML fit of value ~ method + (1|case) + (1|case:method) + (1|run)
    import pandas as pd
    import statsmodels.formula.api as smf

    rows = [{"value": y[i, c], "method": int(a == "m"), "run": f"{a}{i}", "case": f"c{c}", "cm": f"{a}{c}", "g": 1}
            for a, y in (("m", YM), ("r", YR)) for i in range(y.shape[0]) for c in range(N)]
    model = smf.mixedlm("value ~ method", pd.DataFrame(rows), groups="g", re_formula="0",
                        vc_formula={"case": "0 + C(case)", "cm": "0 + C(cm)", "run": "0 + C(run)"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = model.fit(reml=True, method=["lbfgs"], gtol=1e-12)
    assert sm.params["method"] == pytest.approx(fit["mean_diff"], abs=1e-6)
    assert sm.bse["method"] == pytest.approx(fit["se"], rel=1e-4)
    names = list(model.exog_vc.names)
    assert sm.vcomp[names.index("run")] == pytest.approx(fit["var_run"], rel=1e-3)
    assert sm.vcomp[names.index("cm")] == pytest.approx(fit["var_case_method"], rel=1e-3)
    assert sm.scale == pytest.approx(fit["var_residual"], rel=1e-4)


def test_case_method_term_truncated_at_zero_and_unfittable_models():
    resid = np.array([[0.1, -0.05, -0.05], [-0.1, 0.05, 0.05]])      # run x case residual: zero row/column means
    ym = np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]]) + resid
    yr = ym - 0.2 + np.array([[0.1], [-0.1]]) - 2 * resid   # the same gain on every case: S_d = 0 < c MS_res
    fit = seed_model(ym, yr)
    s_run = (np.var(ym.mean(1), ddof=1) + np.var(yr.mean(1), ddof=1)) / 2
    assert fit["var_case_method"] == 0 and fit["df"] == pytest.approx(2.0)
    assert fit["se"] == pytest.approx(math.sqrt(1.0 * s_run))
    flat = np.full((2, 3), 0.5)
    assert seed_model(flat, flat)["note"].startswith("model not fitted: no variance")
    assert seed_model(ym[:, :1], yr[:, :1])["note"] == ("model not fitted: 1 unit with a value in every run "
                                                        "(need at least 2)")


def test_hierarchical_bootstrap_equals_a_loop_with_the_same_draws():
    lo, hi = hierarchical_bootstrap(YM, YR, 500, seed=3)
    rng = np.random.default_rng(3)
    units = rng.integers(0, N, (500, N))
    runs_m = rng.integers(0, KM, (500, KM))
    runs_r = rng.integers(0, KR, (500, KR))
    boot = [YM[runs_m[b]][:, units[b]].mean() - YR[runs_r[b]][:, units[b]].mean() for b in range(500)]
    assert (lo, hi) == (pytest.approx(np.percentile(boot, 2.5)), pytest.approx(np.percentile(boot, 97.5)))
    assert hierarchical_bootstrap(YM, YR, 500, seed=3) == (lo, hi)          # seeded: the same interval again
    assert math.isnan(hierarchical_bootstrap(YM[:, :1], YR[:, :1], 500, 0)[0])


def _seeds(y, cases):
    return {s: dict(zip(cases, row)) for s, row in enumerate(y)}


def test_patients_are_units_in_both_paths():
    cases = [f"p{i // 2}_f{i % 2}" for i in range(12)]
    groups = {c: c.split("_")[0] for c in cases}
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.6, 0.9, 12), rng.uniform(0.6, 0.9, 12)
    r = comparison({0: dict(zip(cases, a))}, {0: dict(zip(cases, b))}, groups=groups, n_boot=100)
    pa, pb = a.reshape(6, 2).mean(1), b.reshape(6, 2).mean(1)
    assert r["unit"] == "patient" and r["n"] == 6 and r["n_cases"] == 12
    assert r["p"] == pytest.approx(sst.ttest_rel(pa, pb).pvalue) and r["mean_diff"] == pytest.approx(np.mean(pa - pb))
    ym, yr = rng.uniform(0.6, 0.9, (3, 12)), rng.uniform(0.6, 0.9, (2, 12))
    r = comparison(_seeds(ym, cases), _seeds(yr, cases), groups=groups, n_boot=100)
    fit = seed_model(ym.reshape(3, 6, 2).mean(2), yr.reshape(2, 6, 2).mean(2))
    assert r["test"] == "mixed" and r["n"] == 6 and r["p"] == pytest.approx(fit["p"]) and r["df"] == fit["df"]
    # without groups every case is a unit
    assert comparison({0: dict(zip(cases, a))}, {0: dict(zip(cases, b))}, n_boot=0)["unit"] == "case"


def _acdc(root: Path):
    """4 test images of 2 patients (ED and ES frames), one seed, lstmsa about +0.06 on every image."""
    cases = ["patient001_frame01", "patient001_frame12", "patient002_frame01", "patient002_frame14"]
    write_json(root / "raw" / "Dataset027_ACDC" / "dataset.json",
               {"name": "ACDC", "channel_names": {"0": "cineMRI"}, "labels": {"background": 0, "LV": 1},
                "numTraining": 4, "file_ending": ".nii.gz", "groups": {c: c[:10] for c in cases}})
    out = []
    for name, dice in (("mtunet__none__2.5d", [0.71, 0.64, 0.80, 0.69]), ("mtunet__lstmsa__2.5d",
                                                                       [0.77, 0.71, 0.855, 0.745])):
        vals = dict(zip(cases, dice))
        exp = root / "results" / "Dataset027_ACDC" / name
        write_json(exp / "fold_0" / "validation" / "summary.json", _summary({c: {1: v} for c, v in vals.items()}))
        out.append(exp)
    return out


def test_the_two_patient_one_seed_study_is_not_separable_and_says_why_everywhere(tmp_path):
    ref, meth = _acdc(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["stats", str(ref), str(meth), "--json", str(out / "r.json"), "--csv",
                                   str(out / "r.csv"), "--md", str(out / "r.md"), "--latex", str(out / "r.tex")])
    assert res.exit_code == 0, res.output
    reason = "n too small: 2 patients (a verdict needs at least 6)"
    rec = json.loads((out / "r.json").read_text())["records"][0]
    assert rec["verdict"] == "not separable" and rec["verdict_reason"] == reason
    assert rec["n"] == 2 and rec["n_cases"] == 4 and rec["unit"] == "patient"
    assert math.isnan(rec["boot_ci_low"]) if isinstance(rec["boot_ci_low"], float) else rec["boot_ci_low"] is None
    assert ONE_SEED in rec["warnings"] and ONE_SEED in json.loads((out / "r.json").read_text())["warnings"]
    flat = " ".join(res.output.split())
    assert reason in flat and ONE_SEED in flat
    for name in ("r.csv", "r.md"):
        text = (out / name).read_text()
        assert reason in text and ONE_SEED in text, name
    assert "seed noise not measured (1 seed per arm)" in (out / "r.tex").read_text()


def test_bad_seed_input_is_one_line_exit_2(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("case,method,value,seed\nc1,a,0.5,0\nc1,b,0.6,1.5\n")
    with pytest.raises(DataError, match=r"line 3: seed '1.5' is not an integer"):
        analyse_cases(p)
    rows = ["case,method,value,seed"] + [f"c{i},a,0.{i + 1},{s}" for i in range(6) for s in (0, 1)]
    rows += [f"c{i},b,0.{i + 2},{s}" for i in range(6) for s in (0, 1) if s == 0 or i < 3]
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"method 'b' has seed 1 for only 3 of 6 cases \(e.g. 'c3' is missing\)"):
        analyse_cases(p)
    p.write_text("case,method,value,group\nc1,a,0.5,p1\nc1,b,0.6,p2\n")
    with pytest.raises(DataError, match="case 'c1' is in group 'p2' here and in 'p1' before"):
        analyse_cases(p)
    p.write_text("case,method,value,seed\nc1,a,0.5,x\n")
    res = CliRunner().invoke(app, ["stats", "--cases", str(p)])
    assert res.exit_code == 2 and "seed 'x' is not an integer" in res.output and "Traceback" not in res.output
    # a model that cannot be fitted is "not separable" with the reason
    p.write_text("case,method,value,seed\n" + "".join(f"c{i},{m},0.5,{s}\n" for i in range(6) for m in "ab"
                                                       for s in (0, 1)))
    rec = analyse_cases(p, n_boot=50)["records"][0]
    assert rec["verdict"] == "not separable" and rec["verdict_reason"].startswith("model not fitted: no variance")


def test_seed_folders_with_a_missing_fold_are_named(tmp_path):
    from .test_stats_core import _experiment

    a = _experiment(tmp_path, "unet__none__2d", [0.8, 0.7, 0.9, 0.6], folds=2)
    s1 = a / "fold_0_seed1" / "validation"
    write_json(s1 / "summary.json", _summary({"case_00": {1: 0.8}, "case_02": {1: 0.9}}))
    write_json(a / "fold_1_seed1" / "x.json", {})         # seed 1's fold 1 never finished
    with pytest.raises(DataError, match="has seed 1 for only 2 of 4 cases"):
        analyse_results([a, a])


def test_a_small_calibration_run():
    """200 simulated studies, no true difference, 3 seeds per arm, run SD = case SD: salseg's verdicts stay at
    alpha (within the Monte-Carlo margin), the naive paired t-test on seed means does not."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "verdict_calibration.py"
    spec = importlib.util.spec_from_file_location("verdict_calibration", path)
    cal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cal)
    ours, naive = cal.cell(10, 3, 1.0, 0.0, studies=200, n_boot=50, seed=1)
    assert ours <= 0.05 + cal.margin(200) and naive > 0.3


def test_ranking_bootstrap_resamples_runs_when_seeds_exist():
    from salseg.stats import rank_bootstrap
    from salseg.stats.mixed import resample_weights

    rng = np.random.default_rng(4)
    cases = [f"c{i}" for i in range(7)]
    runs = {m: rng.uniform(0.5, 0.9, (k, 7)) for m, k in (("a", 3), ("b", 1), ("c", 2))}
    seeds = {m: _seeds(y, cases) for m, y in runs.items()}
    values = {m: dict(zip(cases, y.mean(axis=0))) for m, y in runs.items()}
    r = rank_bootstrap(values, n_boot=200, seed=9, seeds=seeds)
    assert r["resamples"] == "cases and each method's seeds"
    g = np.random.default_rng(9)
    idx = g.integers(0, 7, (200, 7))
    means = np.stack([runs["a"].mean(0)[idx].mean(1), runs["b"][0][idx].mean(1), runs["c"].mean(0)[idx].mean(1)], 1)
    for col, m in ((0, "a"), (2, "c")):               # methods with 2+ seeds: runs drawn after the cases, in order
        w = resample_weights(g, runs[m].shape[0], 200)
        means[:, col] = np.array([np.mean((w[b] @ runs[m])[idx[b]]) for b in range(200)])
    ranks = sst.rankdata(-means, method="min", axis=1)
    assert r["mean_rank"] == pytest.approx(list(ranks.mean(axis=0)))
    assert rank_bootstrap(values, n_boot=200, seed=9)["resamples"] == "cases"
