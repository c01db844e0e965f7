"""Every figure of a comparison against a direct scipy/numpy computation: both intervals, both p-values, both effect
sizes, win/tie/loss, Holm over a mixed family, every verdict reason, and the ranking figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sst

from salseg.stats import analyse_results, correct, decide, paired_test, rank_bootstrap
from salseg.stats.ranking import kendall_tau_b
from salseg.stats.verdicts import MIN_UNITS, ONE_SEED, WILCOXON_SMALL_N, caveats

from .test_stats_core import _experiment

RNG = np.random.default_rng(7)
REF = np.round(RNG.uniform(0.6, 0.9, 14), 4)
NEW = np.round(REF + RNG.normal(0.02, 0.02, 14), 4)


def test_every_figure_of_one_comparison():
    r = paired_test(NEW, REF, "t", n_boot=2000, seed=3, tie=0.005)
    d = NEW - REF
    boot = sst.bootstrap((d,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(3))
    assert (r["boot_ci_low"], r["boot_ci_high"]) == (pytest.approx(boot.confidence_interval.low),
                                                     pytest.approx(boot.confidence_interval.high))
    half = sst.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert r["p_t"] == pytest.approx(sst.ttest_rel(NEW, REF).pvalue) and r["p"] == r["p_t"]
    assert r["p_wilcoxon"] == pytest.approx(sst.wilcoxon(NEW, REF).pvalue)
    assert r["statistic"] == pytest.approx(sst.ttest_rel(NEW, REF).statistic)
    assert r["effect_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    w_plus = sst.wilcoxon(NEW, REF, alternative="greater").statistic
    nz = np.count_nonzero(d)
    total = nz * (nz + 1) / 2
    assert r["effect_rank_biserial"] == pytest.approx((w_plus - (total - w_plus)) / total)
    assert (r["wins"], r["ties"], r["losses"]) == (int((d > 0.005).sum()), int((np.abs(d) <= 0.005).sum()),
                                                   int((d < -0.005).sum()))
    assert r["median_method"] == pytest.approx(np.median(NEW))
    assert r["iqr_reference"] == pytest.approx(np.percentile(REF, 75) - np.percentile(REF, 25))
    assert r["std_method"] == pytest.approx(np.std(NEW, ddof=1))
    # the Wilcoxon choice swaps p and the statistic only; lower-is-better swaps wins and losses
    w = paired_test(NEW, REF, "wilcoxon", n_boot=2000, seed=3, tie=0.005, lower_is_better=True)
    assert w["p"] == pytest.approx(r["p_wilcoxon"]) and w["statistic"] == pytest.approx(w_plus)
    assert (w["wins"], w["losses"]) == (r["losses"], r["wins"]) and w["boot_ci_low"] == r["boot_ci_low"]


def test_default_bootstrap_is_10000_bca_seed_0():
    r = paired_test(NEW, REF)
    boot = sst.bootstrap((NEW - REF,), np.mean, n_resamples=10000, method="BCa", rng=np.random.default_rng(0))
    assert r["boot_ci_low"] == pytest.approx(boot.confidence_interval.low)
    assert r["tie"] == 1e-3


def _mixed(root):
    """Three arms, labels 1 and 2, Dice and HD95 per case."""
    rng = np.random.default_rng(11)
    n = 8
    arms = {}
    for name, shift in (("unet__none__2d", 0.0), ("unet__lstmsa__2d", 0.03), ("unet__salstm__2d", -0.01)):
        dice = {lab: np.clip(rng.uniform(0.6, 0.9, n) + shift, 0, 1) for lab in (1, 2)}
        hd = {lab: rng.uniform(2, 9, n) - 10 * shift for lab in (1, 2)}
        arms[name] = (dice, hd)
    from salseg.evaluate.summary import build_summary
    from salseg.fileio import write_json

    paths = []
    for name, (dice, hd) in arms.items():
        per_case = [{"prediction_file": f"c{i}.nii.gz", "reference_file": f"c{i}.nii.gz",
                     "metrics": {lab: {"Dice": dice[lab][i], "IoU": 0.5, "TP": 1, "FP": 0, "FN": 0, "TN": 0,
                                       "n_pred": 1, "n_ref": 1, "HD95": hd[lab][i], "ASSD": 1.0, "NSD": 1.0}
                                 for lab in (1, 2)}} for i in range(n)]
        exp = root / "results" / "Dataset001_X" / name
        write_json(exp / "fold_0" / "validation" / "summary.json",
                   build_summary(per_case, [1, 2], ("dice", "iou", "hd95", "assd", "nsd"), 1.0))
        paths.append(exp)
    return paths, arms


def test_holm_over_a_mixed_family_of_labels_and_metrics(tmp_path):
    paths, arms = _mixed(tmp_path)
    recs = analyse_results(paths, metrics=["dice", "hd95"], labels=["1", "2", "all"], correction="holm",
                           n_boot=200)["records"]
    assert len(recs) == 2 * 3 * 2
    raw = []
    for r in recs:
        key = "Dice" if r["metric"] == "dice" else "HD95"
        vals = {}
        for name in (r["method"], r["reference"]):
            dice, hd = arms[name]
            src = dice if key == "Dice" else hd
            vals[name] = (src[1] + src[2]) / 2 if r["label"] == "all" else src[int(r["label"])]
        p = sst.ttest_rel(vals[r["method"]], vals[r["reference"]]).pvalue
        assert r["p"] == pytest.approx(p)
        assert r["lower_is_better"] == (key == "HD95")
        raw.append(p)
    m = len(raw)
    hand, running = [0.0] * m, 0.0
    for k, i in enumerate(np.argsort(raw)):
        running = max(running, min(1.0, (m - k) * raw[i]))
        hand[i] = running
    assert [r["p_corrected"] for r in recs] == pytest.approx(hand)
    assert correct(raw, "holm") == pytest.approx(hand)


def _rec(**kw):
    base = {"note": None, "test": "t", "n": 20, "p_corrected": 0.001, "boot_ci_low": 0.01, "boot_ci_high": 0.05,
            "mean_diff": 0.03, "lower_is_better": False, "metric": "dice"}
    return base | kw


def test_every_verdict_reason():
    assert decide(_rec()) == ("better", decide(_rec())[1]) and "excludes 0" in decide(_rec())[1]
    assert decide(_rec(mean_diff=-0.03, boot_ci_low=-0.05, boot_ci_high=-0.01))[0] == "worse"
    v, why = decide(_rec(mean_diff=-2.0, boot_ci_low=-3.0, boot_ci_high=-1.0, lower_is_better=True, metric="hd95"))
    assert v == "better" and "lower is better" in why
    assert decide(_rec(boot_ci_low=-0.001)) == ("not separable", "CI includes 0: bootstrap [-0.001, +0.05]")
    assert decide(_rec(boot_ci_low=math.nan))[1].startswith("CI includes 0")
    assert decide(_rec(p_corrected=0.2))[1] == "not significant: p_corrected=0.2 ≥ alpha=0.05"
    assert decide(_rec(test="wilcoxon", n=5)) == ("not separable", WILCOXON_SMALL_N)
    assert WILCOXON_SMALL_N == "n too small: with n ≤ 5 a two-sided Wilcoxon cannot reach p < 0.05"
    assert sst.wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]).pvalue > 0.05      # the fact behind the rule
    assert decide(_rec(test="wilcoxon", n=6))[0] == "better"
    # below MIN_UNITS units no verdict, whatever the p; patients are counted as such
    assert MIN_UNITS == 6 and decide(_rec(n=6))[0] == "better"
    assert decide(_rec(n=2, unit="patient")) == ("not separable",
                                                 "n too small: 2 patients (a verdict needs at least 6)")
    assert decide(_rec(n=5))[1] == "n too small: 5 cases (a verdict needs at least 6)"
    # the seed-aware model: its reason names it; a model that cannot be fitted says why
    v, why = decide(_rec(test="mixed", n_seeds_method=3, n_seeds_reference=3, df=4.0))
    assert v == "better" and "mixed model over 3 + 3 seeds, df 4.0" in why
    assert decide(_rec(test="mixed", note="model not fitted: no unit with a value in every run")) == (
        "not separable", "model not fitted: no unit with a value in every run")
    # the warnings that go with a verdict
    assert caveats(_rec(n_seeds_method=1, n_seeds_reference=1)) == [ONE_SEED]
    assert ONE_SEED == "seed noise not measured (1 seed per arm): this compares two trained models, not two methods"
    assert caveats(_rec(n_seeds_method=3, n_seeds_reference=3)) == []
    assert "one arm only (3 vs 1 seeds)" in caveats(_rec(n_seeds_method=3, n_seeds_reference=1))[0]
    assert caveats(_rec(n=2, unit="patient", n_cases=4)) == [
        "n too small: 2 patients (a verdict needs at least 6); no bootstrap interval",
        "4 cases from 2 patients: each patient's cases averaged first (dataset.json groups / group column); n counts "
        "patients"]
    assert decide(_rec(note="too few pairs (n=1; need at least 2)")) == ("not separable",
                                                                        "too few pairs (n=1; need at least 2)")
    assert decide(_rec(p_corrected=math.nan))[1] == "no test possible"
    # the notes come from paired_test
    assert paired_test([0.5], [0.4])["note"].startswith("too few pairs")
    assert paired_test(REF, REF)["note"] == "identical, no test possible"
    a, b = [1.5, 2.5, 3.5, 4.5], [1.0, 2.0, 3.0, 4.0]     # exactly constant difference
    assert paired_test(a, b)["note"] == "constant difference (zero variance), no t-test possible"
    assert paired_test(a, b, "wilcoxon")["note"] is None


def test_ranking_figures_against_numpy_and_scipy():
    rng = np.random.default_rng(5)
    n, methods = 12, ["a", "b", "c", "d"]
    data = {m: dict(zip([f"c{i}" for i in range(n)], rng.uniform(0.5, 0.9, n) + 0.02 * k))
            for k, m in enumerate(methods)}
    r = rank_bootstrap(data, n_boot=300, seed=4)
    mat = np.array([[data[m][c] for m in methods] for c in sorted(data["a"])])   # cases in sorted order
    full = sst.rankdata(-mat.mean(axis=0), method="min")
    assert r["rank"] == list(full) and r["mean"] == pytest.approx(list(mat.mean(axis=0)))
    idx = np.random.default_rng(4).integers(0, n, size=(300, n))
    boot = np.array([sst.rankdata(-mat[ix].mean(axis=0), method="min") for ix in idx])
    assert r["mean_rank"] == pytest.approx(list(boot.mean(axis=0)))
    probs = np.array(r["rank_probabilities"])
    assert probs.sum(axis=1) == pytest.approx(np.ones(4))
    for i in range(4):
        for k in range(4):
            assert probs[i, k] == pytest.approx(np.mean(boot[:, i] == k + 1))
    assert r["p_rank1"] == pytest.approx(list(probs[:, 0]))
    taus = np.array([sst.kendalltau(full, b).statistic for b in boot])
    taus = taus[~np.isnan(taus)]
    assert r["kendall_tau_median"] == pytest.approx(np.median(taus))
    assert r["kendall_tau_p05"] == pytest.approx(np.percentile(taus, 5))
    sig = r["significance"]
    raw, cells = [], []
    for i in range(4):
        for j in range(4):
            if i != j:
                p = sst.wilcoxon(mat[:, i], mat[:, j], alternative="greater").pvalue
                assert sig["p"][i][j] == pytest.approx(p)
                raw.append(p)
                cells.append((i, j))
    for (i, j), pc in zip(cells, correct(raw, "holm")):
        assert sig["p_corrected"][i][j] == pytest.approx(pc)
    # lower is better flips the ranking; fewer than 3 methods -> no ranking
    low = rank_bootstrap(data, lower_is_better=True, n_boot=50)
    assert low["rank"] == list(sst.rankdata(mat.mean(axis=0), method="min"))
    assert rank_bootstrap({m: data[m] for m in methods[:2]}) is None


def test_kendall_tau_b_vectorised_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = np.array([1, 2, 2, 4, 5])
    ys = rng.integers(1, 4, size=(100, 5))
    ys[0] = 3    # constant row -> NaN, as scipy
    ref = np.array([sst.kendalltau(x, y).statistic for y in ys])
    assert np.allclose(kendall_tau_b(x, ys), ref, equal_nan=True)


def test_results_ranking_in_the_report(tmp_path):
    from salseg.stats import analyse_results

    paths, _ = _mixed(tmp_path)
    rep = analyse_results(paths, metrics=["dice"], labels=["all"], n_boot=100, n_boot_rank=100)
    assert len(rep["ranking"]) == 1 and rep["ranking"][0]["methods"] == [p.name for p in paths]
    assert rep["methods"] == [p.name for p in paths]
    assert sum(rep["ranking"][0]["p_rank1"]) == pytest.approx(1.0)
    ex = _experiment(tmp_path / "two", "unet__none__2d", [0.5, 0.6, 0.7])
    assert analyse_results([ex, ex], n_boot=10)["ranking"] == []
