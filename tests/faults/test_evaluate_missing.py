"""Fault 9: `evaluate` never scores a fraction of the cases silently."""

import json
import logging
import shutil

from salseg import results as R
from salseg.evaluate import evaluate_folders
from tests.faults.helpers import DS, cli, flat, one_line_error


def _folders(root, tmp_path, n_pred=1):
    ref = R.raw_dir(root, DS) / "labelsTr"
    pred = tmp_path / "pred"
    pred.mkdir()
    for p in sorted(ref.iterdir())[:n_pred]:
        shutil.copy(p, pred / p.name)
    return pred, ref


def test_missing_predictions_exit_2_and_nothing_written(planned_root, tmp_path):
    pred, ref = _folders(planned_root, tmp_path)
    r = cli("evaluate", pred, ref)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "3 case(s) have no prediction" in line and "case1, case2, case3" in line and "--allow-missing" in line
    assert not (pred / "summary.json").exists()


def test_allow_missing_lists_them(planned_root, tmp_path):
    pred, ref = _folders(planned_root, tmp_path)
    r = cli("evaluate", pred, ref, "--allow-missing")
    assert r.exit_code == 0, r.output
    assert "3 case(s) have no prediction" in flat(r)
    s = json.loads((pred / "summary.json").read_text())
    assert s["missing"] == {"n_evaluated": 1, "references_without_prediction": ["case1", "case2", "case3"],
                            "predictions_without_reference": []}
    assert len(s["metric_per_case"]) == 1


def test_prediction_without_reference(planned_root, tmp_path):
    pred, ref = _folders(planned_root, tmp_path, n_pred=4)
    shutil.copy(pred / "case0.nii.gz", pred / "extra.nii.gz")
    r = cli("evaluate", pred, ref)
    assert r.exit_code == 2 and "1 case(s) have no reference" in one_line_error(r) and "extra" in r.output


def test_given_cases_need_both(planned_root, tmp_path, caplog):
    pred, ref = _folders(planned_root, tmp_path, n_pred=2)
    with caplog.at_level(logging.INFO, logger="salseg"):
        s = evaluate_folders(pred, ref, cases=["case0", "case1"])
    assert s["missing"]["n_evaluated"] == 2 and not s["missing"]["references_without_prediction"]
    assert not [r for r in caplog.records if "prediction" in r.getMessage()]   # the other refs are not mentioned
    r = cli("evaluate", pred, ref)
    assert r.exit_code == 2


def test_trainer_validation_scores_its_own_cases(trained_root):
    fold = R.fold_dir(trained_root, DS, "unet", "none", "2d", 0)
    s = json.loads((fold / R.VALIDATION_DIR / R.SUMMARY_JSON).read_text())
    val = json.loads(R.splits_file(trained_root, DS).read_text())[0]["val"]
    assert s["missing"] == {"n_evaluated": len(val), "references_without_prediction": [],
                            "predictions_without_reference": []}


def test_thresholds_missing_probabilities(planned_root, tmp_path):
    import numpy as np

    from salseg.dataset.io import read_label
    from salseg.fileio import write_npz

    ref = R.raw_dir(planned_root, DS) / "labelsTr"
    pred = tmp_path / "probs"
    lab = read_label(ref / "case0.nii.gz")[0]
    onehot = np.stack([lab == v for v in (0, 1, 2)]).astype(np.float32)
    write_npz(pred / "case0.npz", probabilities=onehot, label_values=np.array([0, 1, 2]))
    r = cli("evaluate", pred, ref, "--thresholds", "0.5")
    assert r.exit_code == 2 and "3 reference(s)" in one_line_error(r) and "--allow-missing" in r.output
    r = cli("evaluate", pred, ref, "--thresholds", "0.5", "--allow-missing")
    assert r.exit_code == 0, r.output
    s = json.loads((pred / "summary_thresholds.json").read_text())
    assert s["missing"]["references_without_prediction"] == ["case1", "case2", "case3"]
    assert s["mean"]["1"]["Dice"] == 1.0
