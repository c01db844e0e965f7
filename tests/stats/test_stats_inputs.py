"""Inputs of `salseg stats`: nnU-Net folders and schema, the long per-case CSV, seed folders, re-imputation of old
NaN files; warnings (protocol hashes, best checkpoint) and provenance; the CLI's JSON, Markdown, LaTeX and plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sst
from typer.testing import CliRunner

from salseg.errors import DataError
from salseg.fileio import write_json
from salseg.protocol import protocol_hash
from salseg.stats import analyse_cases, analyse_results, load_result
from salseg.stats.mixed import seed_model
from salseg_cli.main import app

from .test_stats_core import _summary

CASES = [f"case_{i:03d}" for i in range(8)]
DICE_A = [0.81, 0.77, 0.90, 0.62, 0.85, 0.71, 0.79, 0.88]
DICE_B = [0.84, 0.79, 0.91, 0.68, 0.86, 0.77, 0.80, 0.90]


def _nnunet_summary(dice: dict[str, float], folder: str) -> dict:
    """nnU-Net v2's summary.json schema: absolute file paths, counts, Dice/IoU, no distances."""
    per_case = []
    for cid, d in dice.items():
        m = {"Dice": d, "FN": 3, "FP": 2, "IoU": d / (2 - d), "TN": 900, "TP": 40, "n_pred": 42, "n_ref": 43}
        per_case.append({"metrics": {"1": m, "2": dict(m)},
                         "prediction_file": f"/data/nnUNet_results/{folder}/validation/{cid}.nii.gz",
                         "reference_file": f"/data/nnUNet_preprocessed/gt_segmentations/{cid}.nii.gz"})
    mean = {"1": {"Dice": float(np.mean(list(dice.values())))}, "2": {"Dice": float(np.mean(list(dice.values())))}}
    return {"foreground_mean": {"Dice": mean["1"]["Dice"]}, "mean": mean, "metric_per_case": per_case}


def _nnunet_trainer(root, dice: list[float]):
    tr = root / "nnUNet_results" / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__2d"
    for f in range(2):
        sel = {c: d for i, (c, d) in enumerate(zip(CASES, dice)) if i % 2 == f}
        write_json(tr / f"fold_{f}" / "validation" / "summary.json", _nnunet_summary(sel, f"fold_{f}"))
    write_json(tr / "plans.json", {"plans_name": "nnUNetPlans"})
    return tr


def _salseg_exp(root, name, dice, seeds=(0,), shift=None, protocol=None, checkpoint=None):
    exp = root / "results" / "Dataset001_X" / name
    for s in seeds:
        vals = {c: d + (shift or {}).get(s, 0.0) for c, d in zip(CASES, dice)}
        fold = "fold_0" if s == 0 else f"fold_0_seed{s}"
        write_json(exp / fold / "validation" / "summary.json", _summary({c: {1: v} for c, v in vals.items()}))
        cfg = {"fold": 0, "seed": s}
        if protocol is not None:
            cfg |= {"protocol": protocol, "protocol_hash": protocol_hash(protocol)}
        if checkpoint:
            cfg["validation_checkpoint"] = checkpoint
        write_json(exp / fold / "config.json", cfg)
        (exp / fold / "log.jsonl").write_text("".join(json.dumps({"epoch": e + 1, "epoch_time": 1.5}) + "\n"
                                                      for e in range(4)))
    return exp


def test_nnunet_trainer_folder_against_a_salseg_run(tmp_path):
    nn = _nnunet_trainer(tmp_path, DICE_A)
    ours = _salseg_exp(tmp_path, "unet__lstmsa__2d", DICE_B)
    with pytest.raises(DataError, match=r"scored on different labels \(\{1\} vs \{1, 2\}\)"):
        analyse_results([nn, ours], n_boot=0)     # nnU-Net's summary scored labels 1 and 2, the salseg run only 1
    rep = analyse_results([nn, ours], metrics=["dice", "hd95"], labels=["1"], n_boot=500)
    rec = rep["records"][0]
    assert len(rep["records"]) == 1 and rec["n"] == 8 and rec["metric"] == "dice"
    assert rec["p"] == pytest.approx(sst.ttest_rel(DICE_B, DICE_A).pvalue)
    assert rec["reference"] == "nnUNetTrainer__nnUNetPlans__2d" and rec["dataset"] == "Dataset001_X"
    assert any("hd95: not available in" in w and "dice, iou" in w for w in rep["warnings"])
    with pytest.raises(DataError, match="available in all: dice, iou"):
        analyse_results([nn, ours], metrics=["hd95"])
    # a crossval summary (a file, or the trainer folder without fold summaries) reads the same way
    cv = tmp_path / "cv" / "nnUNetTrainer__nnUNetPlans__2d"
    write_json(cv / "crossval_results_folds_0_1" / "summary.json",
               _nnunet_summary(dict(zip(CASES, DICE_A)), "crossval"))
    for path in (cv, cv / "crossval_results_folds_0_1" / "summary.json"):
        assert load_result(path).values == pytest.approx(dict(zip(CASES, DICE_A)))


def test_long_cases_csv_with_metric_label_seed(tmp_path):
    rows = ["case,method,value,metric,label,seed"]
    rng = np.random.default_rng(2)
    truth = {}
    for m, shift in (("nnunet", 0.0), ("salseg", 0.02), ("other", -0.01)):
        for s in (0, 1):
            for c, d in zip(CASES, DICE_A):
                v = round(d + shift + rng.normal(0, 0.01), 5)
                truth.setdefault(m, {}).setdefault(s, {})[c] = v
                rows.append(f"{c},{m},{v},dice,all,{s}")
                rows.append(f"{c},{m},{round(10 - 20 * shift + s, 3)},hd95,1,{s}")
    p = tmp_path / "cases.csv"
    p.write_text("\n".join(rows) + "\n")
    rep = analyse_cases(p, n_boot=300, n_boot_rank=100)
    dice = [r for r in rep["records"] if r["metric"] == "dice"]
    assert [r["method"] for r in dice] == ["salseg", "other"] and dice[0]["reference"] == "nnunet"
    avg = {m: [np.mean([truth[m][s][c] for s in (0, 1)]) for c in CASES] for m in truth}
    # two seeds per arm: the mixed model decides, on the runs x cases matrices
    mat = {m: np.array([[truth[m][s][c] for c in CASES] for s in (0, 1)]) for m in truth}
    fit = seed_model(mat["salseg"], mat["nnunet"])
    assert dice[0]["test"] == "mixed" and dice[0]["p"] == pytest.approx(fit["p"]) and dice[0]["df"] == fit["df"]
    assert dice[0]["mean_diff"] == pytest.approx(np.mean(avg["salseg"]) - np.mean(avg["nnunet"]))
    assert dice[0]["mean_reference"] == pytest.approx(np.mean(avg["nnunet"]))
    seed_means = [np.mean([truth["nnunet"][s][c] for c in CASES]) for s in (0, 1)]
    assert dice[0]["seed_sd_reference"] == pytest.approx(np.std(seed_means, ddof=1))
    assert dice[0]["n_seeds_reference"] == 2 and dice[0]["seed_sd_dice_reference"] == pytest.approx(
        np.std(seed_means, ddof=1))
    hd = [r for r in rep["records"] if r["metric"] == "hd95"]
    assert len(hd) == 2 and hd[0]["label"] == "1" and hd[0]["lower_is_better"] and hd[0]["tie"] == 0.1
    assert len(rep["records"]) == 4 and {r["metric"] for r in rep["ranking"]} == {"dice", "hd95"}
    assert analyse_cases(p, reference="salseg", metrics=["dice"], n_boot=50)["records"][0]["reference"] == "salseg"
    bad = tmp_path / "bad.csv"
    bad.write_text("case,method\nc1,a\n")
    with pytest.raises(DataError, match="missing column"):
        analyse_cases(bad)
    bad.write_text("case,method,value\nc1,a,0.5\nc1,a,0.6\n")
    with pytest.raises(DataError, match="line 3: duplicate"):
        analyse_cases(bad)
    with pytest.raises(DataError, match="reference method 'zzz'"):
        analyse_cases(p, reference="zzz")


def test_seed_folders_averaged_per_case_and_the_seed_model(tmp_path):
    shift = {0: 0.0, 1: 0.03, 2: -0.03}
    ref = _salseg_exp(tmp_path, "unet__none__2d", DICE_A, seeds=(0, 1, 2), shift=shift)
    new = [d + e for d, e in zip(DICE_A, (0.012, 0.010, 0.015, 0.011, 0.013, 0.012, 0.009, 0.014))]
    meth = _salseg_exp(tmp_path, "unet__stack__2d", new, seeds=(0, 1, 2), shift=shift)
    rv = load_result(ref)
    assert rv.n_seeds == 3 and rv.values == pytest.approx(dict(zip(CASES, DICE_A)))
    seed_means = [np.mean(DICE_A) + s for s in shift.values()]
    assert rv.seed_sd() == pytest.approx(np.std(seed_means, ddof=1))
    rec = analyse_results([ref, meth], n_boot=300)["records"][0]
    assert rec["n_seeds_reference"] == 3 and rec["seed_sd_reference"] == pytest.approx(np.std(seed_means, ddof=1))
    assert rec["seed_sd_dice_method"] == pytest.approx(np.std(seed_means, ddof=1))
    # the seed offsets are shared by the arms' cases: the mixed model counts them (3 + 3 runs), the case-level
    # gain (about +0.012 on every case) is not separable from run noise of SD 0.03
    s_run, s_d = np.var(list(shift.values()), ddof=1), np.var(np.subtract(new, DICE_A), ddof=1)
    var = (2 / 3) * s_run + s_d / len(CASES)
    df = var ** 2 / (((2 / 3) * s_run) ** 2 / 4 + (s_d / len(CASES)) ** 2 / (len(CASES) - 1))
    assert rec["test"] == "mixed" and rec["se"] == pytest.approx(math.sqrt(var)) and rec["df"] == pytest.approx(df)
    assert rec["p"] == pytest.approx(2 * sst.t.sf(abs(rec["mean_diff"]) / math.sqrt(var), df))
    assert rec["verdict"] == "not separable" and rec["verdict_reason"].startswith("not significant")
    # one seed folder on its own is a fold folder like any other
    assert load_result(ref / "fold_0_seed1").values == pytest.approx({c: d + 0.03 for c, d in zip(CASES, DICE_A)})


def test_protocol_warning_provenance_and_best_checkpoint(tmp_path):
    p1 = {"lr": 0.01, "epochs": 50, "batch": 2}
    p2 = {"lr": 0.01, "epochs": 20, "batch": 4}
    a = _salseg_exp(tmp_path, "unet__none__2d", DICE_A, protocol=p1)
    b = _salseg_exp(tmp_path, "unet__lstmsa__2d", DICE_B, protocol=p2, checkpoint="best")
    rep = analyse_results([a, b], n_boot=100)
    w = [x for x in rep["warnings"] if "protocol_hash differs" in x]
    assert len(w) == 1 and "epochs (unet__none__2d=50, unet__lstmsa__2d=20)" in w[0] and "batch (" in w[0]
    assert "lr (" not in w[0]
    assert any("checkpoint 'best'" in x and "unet__lstmsa__2d" in x for x in rep["warnings"])
    prov = rep["provenance"]
    for key in ("salseg_version", "metric_implementation", "spacing_source", "aggregation", "empty_policy", "tie",
                "n_boot", "n_boot_rank", "seed", "arms"):
        assert key in prov, key
    assert prov["n_boot"] == 100 and prov["empty_policy"] == "worst" and prov["spacing_source"] == ["header"]
    arm = prov["arms"]["unet__none__2d"]
    assert arm["protocol_hash"] == protocol_hash(p1) and arm["checkpoint"] == ["final"]
    assert arm["training_wall_time_s"] == pytest.approx(6.0) and "params" in arm and "peak_rss_bytes" in arm
    assert arm["params"] is None                      # no checkpoint, not in config.json
    import torch

    torch.save({"model": {"conv.weight": torch.zeros(3, 4), "bn.running_mean": torch.zeros(4),
                          "bn.num_batches_tracked": torch.tensor(1)}}, a / "fold_0" / "checkpoint_final.pt")
    assert analyse_results([a, b], n_boot=10)["provenance"]["arms"]["unet__none__2d"]["params"] == 12
    same = _salseg_exp(tmp_path / "s", "unet__stack__2d", DICE_B, protocol=p1)
    assert not [x for x in analyse_results([a, same], n_boot=10)["warnings"] if "protocol" in x]
    old = _salseg_exp(tmp_path / "o", "unet__salstm__2d", DICE_B)          # trained before protocols existed
    cfg = json.loads((old / "fold_0" / "config.json").read_text())
    write_json(old / "fold_0" / "config.json", cfg | {"protocol": {}, "protocol_hash": ""})  # the defaults
    assert any("records no protocol" in x for x in analyse_results([a, old], n_boot=10)["warnings"])


def _nan_summary(with_extent: bool, policy="nan") -> dict:
    s = _summary({"c1": {1: 0.8, 2: 0.0}, "c2": {1: 0.7, 2: 0.6}, "c3": {1: 0.9, 2: 0.5}}, hd={})
    for c in s["metric_per_case"]:
        c["metrics"]["1"]["HD95"] = 2.0
        c["metrics"]["2"]["HD95"] = 3.0
    miss = s["metric_per_case"][0]["metrics"]["2"]
    miss.update(HD95=math.nan, n_pred=0, TP=0, FN=5)
    s["empty_policy"] = policy
    if with_extent:
        for c in s["metric_per_case"]:
            c["image_extent_mm"] = [30.0, 40.0]
    else:
        del s["empty_policy"]
    return s


def test_old_nan_files_are_reimputed_or_refused(tmp_path):
    write_json(tmp_path / "new" / "summary.json", _nan_summary(True))
    rv = load_result(tmp_path / "new", "hd95", "2")
    assert rv.values["c1"] == pytest.approx(50.0)          # sqrt(30^2 + 40^2)
    assert math.isnan(load_result(tmp_path / "new", "hd95", "2", empty="nan").values["c1"])
    assert load_result(tmp_path / "new", "hd95", "all").values["c1"] == pytest.approx((2.0 + 50.0) / 2)
    write_json(tmp_path / "old" / "summary.json", _nan_summary(False))
    with pytest.raises(DataError, match="stores no image size"):
        load_result(tmp_path / "old", "hd95", "2")
    assert load_result(tmp_path / "old", "dice", "2").values["c1"] == 0.0    # Dice needs no imputation
    # a file written with --empty worst gives NaN back under --empty nan
    s = _nan_summary(True)
    s["empty_policy"] = "worst"
    s["metric_per_case"][0]["metrics"]["2"]["HD95"] = 50.0
    s["metric_per_case"][0]["imputed"] = {"2": ["HD95", "ASSD"]}
    write_json(tmp_path / "worst" / "summary.json", s)
    assert load_result(tmp_path / "worst", "hd95", "2").values["c1"] == 50.0
    assert math.isnan(load_result(tmp_path / "worst", "hd95", "2", empty="nan").values["c1"])


def test_cli_outputs_json_md_latex_plots(tmp_path):
    from matplotlib import image as mpimg

    a = _salseg_exp(tmp_path, "unet__none__2d", DICE_A)
    b = _salseg_exp(tmp_path, "unet__lstmsa__2d", DICE_B)
    c = _salseg_exp(tmp_path, "unet__stack__2d", [d + 0.01 for d in DICE_A])
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["stats", str(a), str(b), str(c), "--metric", "dice", "--label", "all", "1",
                                   "--n-boot", "300", "--n-boot-rank", "100", "--json", str(out / "r.json"),
                                   "--md", str(out / "r.md"), "--latex", str(out / "r.tex"), "--csv",
                                   str(out / "r.csv"), "--plots", str(out / "plots")])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "r.json").read_text())
    assert set(rep) >= {"records", "ranking", "warnings", "provenance"} and len(rep["records"]) == 4
    assert rep["provenance"]["n_boot"] == 300 and len(rep["ranking"]) == 2
    md = (out / "r.md").read_text()
    assert md.startswith("| Metric | Method | Mean ± SD | Difference [95% bootstrap CI] | p (corrected)")
    rec = rep["records"][0]
    assert f"{rec['mean_diff']:+.4f} [{rec['boot_ci_low']:+.4f}, {rec['boot_ci_high']:+.4f}]" in md
    assert rec["verdict_reason"] in md
    tex = (out / "r.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and r"unet\_\_lstmsa\_\_2d" in tex
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == ["forest.png", "ranks_Dataset001_X_dice_1.png", "ranks_Dataset001_X_dice_all.png",
                    "significance_Dataset001_X_dice_1.png", "significance_Dataset001_X_dice_all.png"]
    for name in pngs:
        img = mpimg.imread(out / "plots" / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "ranking by dice" in res.output and "Kendall" in res.output
    for bad in (["stats", str(a), str(b), "--empty", "zero"], ["stats", str(a), "--cases", str(out / "r.csv")],
                ["stats", "--cases", str(tmp_path / "nope.csv")], ["stats", str(a), str(b), "--metric", "volume"]):
        r = CliRunner().invoke(app, bad)
        assert r.exit_code == 2 and "error" in r.output.lower() and "Traceback" not in r.output, (bad, r.output)
