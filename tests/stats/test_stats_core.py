"""salseg.stats against direct scipy calls; corrections; loading results; edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sst
from typer.testing import CliRunner

from salseg.errors import DataError
from salseg.evaluate.summary import build_summary
from salseg.fileio import write_json
from salseg.stats import analyse_results, analyse_table, correct, paired_test
from salseg_cli.main import app

REF = [0.80, 0.75, 0.90, 0.60, 0.85, 0.70]
NEW = [0.84, 0.78, 0.91, 0.66, 0.86, 0.77]


def _summary(values_by_case: dict[str, dict[int, float]], hd=None) -> dict:
    """A summary.json dict whose Dice (and HD95) per case and label are given."""
    per_case = []
    for cid, labs in values_by_case.items():
        m = {}
        for v, d in labs.items():
            m[v] = {"Dice": d, "IoU": d, "TP": 1, "FP": 0, "FN": 0, "TN": 0, "n_pred": 1, "n_ref": 1,
                    "HD95": (hd or {}).get(cid, 1.0), "ASSD": 1.0, "NSD": 1.0}
        per_case.append({"prediction_file": f"{cid}.nii.gz", "reference_file": f"{cid}.nii.gz", "metrics": m})
    labels = sorted({v for labs in values_by_case.values() for v in labs})
    return build_summary(per_case, labels, ("dice", "iou", "hd95", "assd", "nsd"), 1.0)


def _experiment(root, name, dice: list[float], folds=2, hd=None):
    """results/DS/<name>/fold_<f>/validation/summary.json with the cases split over folds."""
    exp = root / "results" / "Dataset001_X" / name
    cases = [f"case_{i:02d}" for i in range(len(dice))]
    for f in range(folds):
        sel = {c: {1: d} for i, (c, d) in enumerate(zip(cases, dice)) if i % folds == f}
        write_json(exp / f"fold_{f}" / "validation" / "summary.json",
                   _summary(sel, hd={c: h for c, h in zip(cases, hd)} if hd else None))
    return exp


def test_paired_t_against_scipy():
    r = paired_test(NEW, REF, "t")
    t = sst.ttest_rel(NEW, REF)
    d = np.array(NEW) - np.array(REF)
    half = sst.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert r["statistic"] == pytest.approx(t.statistic) and r["statistic"] > 0
    assert r["p"] == pytest.approx(t.pvalue)
    assert r["mean_diff"] == pytest.approx(d.mean())
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert r["std_method"] == pytest.approx(np.std(NEW, ddof=1)) and r["mean_reference"] == pytest.approx(np.mean(REF))


def test_wilcoxon_against_scipy():
    a = [1.0, 2.5, 3.0, 4.2, 5.0, 6.1, 7.3]
    b = [1.2, 2.0, 2.1, 3.0, 5.9, 4.0, 5.0]
    r = paired_test(a, b, "wilcoxon")
    assert r["p"] == pytest.approx(sst.wilcoxon(a, b).pvalue)
    assert r["statistic"] == pytest.approx(sst.wilcoxon(a, b, alternative="greater").statistic)


def test_holm_by_hand_and_bonferroni():
    p = [0.01, 0.04, 0.03, 0.5, math.nan]
    # by hand: sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, 3*0.03, max(0.09, 2*0.04), max(0.09, 1*0.5)
    holm = correct(p, "holm")
    assert holm[:4] == pytest.approx([0.04, 0.09, 0.09, 0.5]) and math.isnan(holm[4])
    assert correct(p, "bonferroni")[:4] == pytest.approx([0.04, 0.16, 0.12, 1.0])
    assert correct(p, "none")[:4] == p[:4]
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        return
    assert holm[:4] == pytest.approx(list(multipletests(p[:4], method="holm")[1]))


def test_compare_fold_folders_and_experiment_pooling(tmp_path):
    a = _experiment(tmp_path, "unet__none__2d", REF)
    b = _experiment(tmp_path, "unet__lstmsa__2d", NEW)
    # one fold each: cases 0, 2, 4
    rec = analyse_results([a / "fold_0", b / "fold_0"], metrics="dice", test="t", correction="none")["records"][0]
    sel = [0, 2, 4]
    t = sst.ttest_rel([NEW[i] for i in sel], [REF[i] for i in sel])
    assert rec["n"] == 3 and rec["p"] == pytest.approx(t.pvalue) and rec["statistic"] == pytest.approx(t.statistic)
    assert rec["method"] == "unet__lstmsa__2d/fold_0" and rec["dataset"] == "Dataset001_X"
    # experiment folders pool both folds; summary.json files work too; Holm over the two comparisons
    recs = analyse_results([a, b, b / "fold_1" / "validation" / "summary.json"], metrics="dice",
                           correction="holm")["records"]
    t_all = sst.ttest_rel(NEW, REF)
    assert recs[0]["n"] == 6 and recs[0]["p"] == pytest.approx(t_all.pvalue)
    assert recs[1]["n"] == 3 and recs[1]["only_in_reference"] == 3 and recs[1]["only_in_method"] == 0
    lo, hi = sorted(r["p"] for r in recs)
    holm = {lo: min(1.0, 2 * lo), hi: max(min(1.0, 2 * lo), min(1.0, hi))}
    assert [r["p_corrected"] for r in recs] == pytest.approx([holm[r["p"]] for r in recs])
    assert recs[0]["verdict"] == "better" and "excludes 0" in recs[0]["verdict_reason"]
    assert set(json.loads(json.dumps(recs[0]))) >= {"dataset", "method", "reference", "metric", "n", "statistic", "p",
                                                    "p_corrected", "mean_diff", "ci_low", "ci_high", "test"}


def test_distance_metric_lower_is_better(tmp_path):
    hd_ref = [5.0, 6.0, 7.5, 4.0, 9.0, 6.5]
    hd_new = [3.0, 4.5, 5.0, 3.5, 6.0, 4.0]
    a = _experiment(tmp_path, "unet__none__2d", REF, hd=hd_ref)
    b = _experiment(tmp_path, "unet__salstm__2d", NEW, hd=hd_new)
    rec = analyse_results([a, b], metrics="hd95", labels="1", test="wilcoxon")["records"][0]
    assert rec["p"] == pytest.approx(sst.wilcoxon(hd_new, hd_ref).pvalue)
    assert rec["mean_diff"] < 0 and rec["verdict"] == "better" and "lower is better" in rec["verdict_reason"]


def test_label_all_is_per_case_foreground_mean(tmp_path):
    s = _summary({"c1": {1: 0.8, 2: 0.4}, "c2": {1: 0.6, 2: math.nan}, "c3": {1: 0.9, 2: 0.7}})
    s2 = _summary({"c1": {1: 0.9, 2: 0.5}, "c2": {1: 0.7, 2: 0.1}, "c3": {1: 0.9, 2: 0.9}})
    write_json(tmp_path / "a" / "summary.json", s)
    write_json(tmp_path / "b" / "summary.json", s2)
    rec = analyse_results([tmp_path / "a", tmp_path / "b"], correction="none")["records"][0]
    ref_vals = [0.6, 0.6, 0.8]   # NaN label ignored inside a case
    new_vals = [0.7, 0.4, 0.9]
    assert rec["mean_reference"] == pytest.approx(np.mean(ref_vals))
    assert rec["p"] == pytest.approx(sst.ttest_rel(new_vals, ref_vals).pvalue)


def test_edge_cases(tmp_path):
    # fewer than 2 pairs
    r = paired_test([0.5], [0.4])
    assert r["n"] == 1 and "too few pairs" in r["note"]
    # identical inputs: no crash, clear note, for both tests
    for test in ("t", "wilcoxon"):
        r = paired_test(REF, REF, test)
        assert r["note"] == "identical, no test possible" and math.isnan(r["p"]) and r["mean_diff"] == 0
    # NaN metrics dropped pairwise and counted
    r = paired_test([0.1, math.nan, 0.3, 0.5, 0.4], [0.2, 0.2, math.nan, 0.3, 0.35])
    assert r["n"] == 3 and r["n_nan_dropped"] == 2
    assert r["p"] == pytest.approx(sst.ttest_rel([0.1, 0.5, 0.4], [0.2, 0.3, 0.35]).pvalue)
    # identical results through the API give a verdict, not an exception
    a = _experiment(tmp_path, "unet__none__2d", REF)
    rec = analyse_results([a, a / "fold_0"], correction="holm")["records"][0]
    assert rec["verdict"] == "not separable" and rec["verdict_reason"] == "identical, no test possible"
    assert rec["only_in_reference"] == 3
    # mismatched cases: nothing in common -> clear error
    write_json(tmp_path / "x" / "summary.json", _summary({"other_1": {1: 0.5}, "other_2": {1: 0.6}}))
    with pytest.raises(DataError, match="no case in common"):
        analyse_results([a, tmp_path / "x"])
    with pytest.raises(DataError, match="not found"):
        analyse_results([a, tmp_path / "nope"])
    with pytest.raises(DataError, match="no label 7"):
        analyse_results([a, a], labels="7")
    with pytest.raises(DataError, match="unknown test"):
        analyse_results([a, a], test="anova")


def _table(path):
    rows = ["dataset,baseline,method,value"]
    data = {
        "ACDC": {"none": [0.80, 0.82, 0.78, 0.85], "salstm": [0.82, 0.83, 0.80, 0.88],
                 "lstmsa": [0.81, 0.85, 0.79, 0.86]},
        "Synapse": {"none": [0.70, 0.72, 0.75, 0.68], "salstm": [0.71, 0.74, 0.74, 0.70],
                    "lstmsa": [0.73, 0.75, 0.78, 0.7]},
    }
    baselines = ["unet", "mtunet", "swinunet", "transunet"]
    for ds, methods in data.items():
        for m, vals in methods.items():
            for bl, v in zip(baselines, vals):
                rows.append(f"{ds},{bl},{m},{v}")
    rows.append("Synapse,extra_baseline,lstmsa,0.5")  # only in the method: not paired, counted
    path.write_text("\n".join(rows) + "\n")
    return data


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
def test_table_pairing_against_scipy(tmp_path, test):
    data = _table(tmp_path / "t.csv")
    recs = analyse_table(tmp_path / "t.csv", pair_by="baseline", reference="none", test=test,
                         correction="holm")["records"]
    assert [(r["dataset"], r["method"]) for r in recs] == [("ACDC", "salstm"), ("ACDC", "lstmsa"),
                                                          ("Synapse", "salstm"), ("Synapse", "lstmsa")]
    fn = sst.ttest_rel if test == "t" else sst.wilcoxon
    ps = []
    for r in recs:
        a, b = data[r["dataset"]][r["method"]], data[r["dataset"]]["none"]
        assert r["n"] == 4 and r["p"] == pytest.approx(fn(a, b).pvalue)
        if test == "t":   # Table VIII reports t and p to 4 decimals: both are scipy's
            assert round(r["statistic"], 4) == round(sst.ttest_rel(a, b).statistic, 4)
            assert round(r["p"], 4) == round(sst.ttest_rel(a, b).pvalue, 4)
        ps.append(r["p"])
    m = len(ps)
    order = np.argsort(ps)
    hand, running = [0.0] * m, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * ps[i]))
        hand[i] = running
    assert [r["p_corrected"] for r in recs] == pytest.approx(hand)
    assert recs[3]["only_in_method"] == 1


def test_table_bad_inputs(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("dataset,baseline,method\nA,u,none\n")
    with pytest.raises(DataError, match="missing column"):
        analyse_table(p)
    p.write_text("dataset,baseline,method,value\nA,u,none,0.5\nA,u,x,abc\n")
    with pytest.raises(DataError, match="line 3"):
        analyse_table(p)
    p.write_text("dataset,baseline,method,value\nA,u,base,0.5\nA,u,x,0.6\n")
    with pytest.raises(DataError, match="reference method 'none'"):
        analyse_table(p)
    p.write_text("dataset,baseline,method,value\nA,u,none,0.5\nA,u,x,0.6\n")
    assert "too few pairs" in analyse_table(p)["records"][0]["verdict_reason"]


def test_cli_per_case_and_table(tmp_path):
    runner = CliRunner()
    a = _experiment(tmp_path, "unet__none__2d", REF)
    b = _experiment(tmp_path, "unet__lstmsa__2d", NEW)
    res = runner.invoke(app, ["stats", str(a), str(b), "--metric", "dice", "--label", "all", "--test", "t",
                              "--correction", "holm", "--json", str(tmp_path / "r.json"), "--csv",
                              str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    recs = json.loads((tmp_path / "r.json").read_text())["records"]
    assert recs[0]["p"] == pytest.approx(sst.ttest_rel(NEW, REF).pvalue)
    assert (tmp_path / "r.csv").read_text().startswith("dataset,method,reference,metric")
    _table(tmp_path / "t.csv")
    res = runner.invoke(app, ["stats", "--table", str(tmp_path / "t.csv"), "--pair-by", "baseline",
                              "--reference", "none", "--json", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "t.json").read_text())["records"]) == 4
    for bad in (["stats", str(a)], ["stats", str(a), str(tmp_path / "nope")],
                ["stats", str(a), str(b), "--correction", "sidak"]):
        res = runner.invoke(app, bad)
        assert res.exit_code != 0 and "error" in res.output and "Traceback" not in res.output
