"""`salseg evaluate` end to end on small files, evaluate_arrays, and bad inputs."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.dataset.io import read_label, write_image
from salseg.evaluate import evaluate_arrays, evaluate_folders
from salseg_cli.main import app

medpy_binary = pytest.importorskip("medpy.metric.binary")

SPACING = [2.0, 0.5, 0.8]  # z, y, x
PROPS = {"spacing": SPACING, "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "ndim": 3}
runner = CliRunner()


def _case(i):
    ref = np.zeros((6, 16, 14), np.uint8)
    ref[1:5, 3:12, 2:9] = 1
    ref[2:4, 12:15, 9:13] = 2
    pred = np.roll(ref, i, axis=1)
    pred[0, 0, 0] = 1 if i == 2 else 0
    if i == 1:
        pred[pred == 2] = 0        # label 2 missed entirely in case 1
    return pred, ref


@pytest.fixture()
def folders(tmp_path):
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    arrays = {}
    for i in range(3):
        pred, ref = _case(i)
        write_image(pred, PROPS, pred_dir / f"c{i}.nii.gz")
        write_image(ref, PROPS, ref_dir / f"c{i}.nii.gz")
        arrays[f"c{i}"] = (pred, ref)
    write_image(ref, PROPS, ref_dir / "only_ref.nii.gz")
    return pred_dir, ref_dir, arrays


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_summary_and_csv(folders, tmp_path):
    pred_dir, ref_dir, arrays = folders
    res = _run("evaluate", pred_dir, ref_dir, "--labels", "1", "2", "--metrics", "dice", "iou", "hd95", "assd",
               "nsd", "--nsd-tolerance", "1.5", "--allow-missing")
    assert res.exit_code == 0, res.output
    s = json.loads((pred_dir / "summary.json").read_text())
    assert {"metric_per_case", "mean", "foreground_mean", "empty_rules", "nsd_tolerance_mm",
            "spacing_source"} <= set(s)
    assert s["nsd_tolerance_mm"] == 1.5 and s["unmatched"]["only_in_reference"] == ["only_ref"]
    assert len(s["metric_per_case"]) == 3 and set(s["mean"]) == {"1", "2"}
    keys = {"Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred", "n_ref", "HD95", "ASSD", "NSD"}
    header_spacing = read_label(ref_dir / "c0.nii.gz")[1]["spacing"]  # as stored (NIfTI keeps float32)
    for c in s["metric_per_case"]:
        assert c["prediction_file"] == c["reference_file"]
        pred, ref = arrays[c["prediction_file"].replace(".nii.gz", "")]
        for lab in ("1", "2"):
            m = c["metrics"][lab]
            assert set(m) == keys
            p, r = pred == int(lab), ref == int(lab)
            assert m["Dice"] == pytest.approx(medpy_binary.dc(p, r), rel=1e-9)
            assert (m["TP"], m["n_pred"], m["n_ref"]) == (int((p & r).sum()), int(p.sum()), int(r.sum()))
            if p.any():
                assert m["HD95"] == pytest.approx(medpy_binary.hd95(p, r, voxelspacing=header_spacing), rel=1e-9)
                assert m["ASSD"] == pytest.approx(medpy_binary.assd(p, r, voxelspacing=header_spacing), rel=1e-9)
            else:
                diag = math.sqrt(sum((n * sp) ** 2 for n, sp in zip(pred.shape, header_spacing)))
                assert m["HD95"] == pytest.approx(diag) and m["NSD"] == 0.0     # --empty worst (default)
                assert c["imputed"][lab] == ["HD95", "ASSD"]
    # means over cases (case c1's HD95 for label 2 imputed); foreground mean = mean of the label means
    hd2 = [c["metrics"]["2"]["HD95"] for c in s["metric_per_case"]]
    assert s["mean"]["2"]["HD95"] == pytest.approx(np.nanmean(hd2))
    assert s["mean"]["2"]["Dice"] == pytest.approx(np.mean([c["metrics"]["2"]["Dice"] for c in s["metric_per_case"]]))
    assert s["foreground_mean"]["Dice"] == pytest.approx((s["mean"]["1"]["Dice"] + s["mean"]["2"]["Dice"]) / 2)
    rows = list(csv.DictReader((pred_dir / "summary.csv").open()))
    assert len(rows) == 6 and rows[0]["case"] == "c0" and rows[0]["label"] == "1"
    assert float(rows[3]["Dice"]) == pytest.approx(s["metric_per_case"][1]["metrics"]["2"]["Dice"])


def test_cli_metric_subset_json_out_and_default_labels(folders, tmp_path):
    pred_dir, ref_dir, _ = folders
    out = tmp_path / "o" / "s.json"
    res = _run("evaluate", pred_dir, ref_dir, "--metrics", "dice", "hd95", "--json", out, "-j", "2", "--allow-missing")
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())
    assert s["labels"] == [1, 2]  # union of values found in the references
    assert set(s["mean"]["1"]) == {"Dice", "TP", "FP", "FN", "TN", "n_pred", "n_ref", "HD95"}
    assert (tmp_path / "o" / "s.csv").is_file() and not (pred_dir / "summary.json").exists()


def test_labels_from_dataset_json(folders):
    pred_dir, ref_dir, _ = folders
    (ref_dir.parent / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2, "c": 3}, "file_ending": ".nii.gz"}))
    s = evaluate_folders(pred_dir, ref_dir, metrics=("dice",), allow_missing=True)
    assert s["labels"] == [1, 2, 3]
    assert all(math.isnan(c["metrics"]["3"]["Dice"]) for c in s["metric_per_case"])
    assert math.isnan(s["mean"]["3"]["Dice"])
    assert s["foreground_mean"]["Dice"] == pytest.approx((s["mean"]["1"]["Dice"] + s["mean"]["2"]["Dice"]) / 2)


def test_evaluate_arrays_matches_folders(folders):
    pred_dir, ref_dir, arrays = folders
    s_files = evaluate_folders(pred_dir, ref_dir, labels=[1, 2], output=pred_dir / "x.json", allow_missing=True)
    header_spacing = read_label(ref_dir / "c0.nii.gz")[1]["spacing"]
    cases = [(cid, p, r, header_spacing) for cid, (p, r) in sorted(arrays.items())]
    s_arr = evaluate_arrays(cases, [1, 2], file_ending=".nii.gz")
    assert json.dumps(s_arr["metric_per_case"]) == json.dumps(s_files["metric_per_case"])
    for lab in ("1", "2"):
        for k, v in s_files["mean"][lab].items():
            assert s_arr["mean"][lab][k] == pytest.approx(v, nan_ok=True)


def test_bad_inputs(folders, tmp_path):
    pred_dir, ref_dir, _ = folders
    res = _run("evaluate", tmp_path / "missing", ref_dir)
    assert res.exit_code != 0 and "missing" in res.output and "not found" in res.output
    other = tmp_path / "other"
    write_image(np.zeros((6, 16, 14), np.uint8), PROPS, other / "zz.nii.gz")
    res = _run("evaluate", other, ref_dir)
    assert res.exit_code != 0 and "no prediction" in res.output
    # geometry mismatch names the file
    bad = tmp_path / "bad"
    write_image(_case(0)[0], dict(PROPS, spacing=[2.0, 0.5, 0.9]), bad / "c0.nii.gz")
    res = _run("evaluate", bad, ref_dir, "--allow-missing")
    assert res.exit_code != 0 and "c0.nii.gz" in res.output and "spacing" in res.output
    assert not (bad / "summary.json").exists()
    # unreadable file
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "c1.nii.gz").write_bytes(b"not an image")
    res = _run("evaluate", junk, ref_dir, "--allow-missing")
    assert res.exit_code != 0 and "c1.nii.gz" in res.output and "unreadable" in res.output
    res = _run("evaluate", pred_dir, ref_dir, "--metrics", "dice", "volume", "--allow-missing")
    assert res.exit_code != 0 and "unknown metric" in res.output
    assert "Traceback" not in res.output


def test_png_2d_pairs_and_equals_medpy_2d(tmp_path):
    ref = np.zeros((1, 20, 24), np.uint8)
    ref[0, 4:15, 5:18] = 1
    pred = np.zeros_like(ref)
    pred[0, 6:16, 3:15] = 1
    props = {"spacing": [999.0, 1.0, 1.0], "origin": [0.0, 0.0], "direction": [1, 0, 0, 1], "ndim": 2}
    write_image(pred, props, tmp_path / "p" / "img1.png")
    write_image(ref, props, tmp_path / "r" / "img1.png")
    s = evaluate_folders(tmp_path / "p", tmp_path / "r")
    m = s["metric_per_case"][0]["metrics"]["1"]
    assert m["HD95"] == pytest.approx(medpy_binary.hd95(pred[0], ref[0], voxelspacing=(1.0, 1.0)), rel=1e-9)
    assert m["TN"] == 20 * 24 - m["TP"] - m["FP"] - m["FN"]


def test_refuses_same_or_nested_folders_and_output_in_reference(folders, tmp_path, caplog):
    pred_dir, ref_dir, _ = folders
    before = sorted(p.name for p in ref_dir.iterdir())
    for args, words in (((ref_dir, ref_dir), "is the reference folder"),
                        ((pred_dir, pred_dir.parent), "nested"),
                        ((ref_dir / "sub", ref_dir), "nested"),
                        ((pred_dir, ref_dir, "--json", ref_dir / "s.json", "--allow-missing"), "reference folder")):
        if args[0] == ref_dir / "sub":
            write_image(_case(0)[0], PROPS, ref_dir / "sub" / "c0.nii.gz")
        res = _run("evaluate", *args)
        assert res.exit_code == 2 and words in res.output, res.output
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert sorted(p.name for p in ref_dir.iterdir()) == before + ["sub"]   # nothing written into the references


def test_warns_once_per_file_about_predicted_values_not_scored(folders, caplog):
    pred_dir, ref_dir, arrays = folders
    pred, _ = arrays["c0"]
    pred = pred.copy()
    pred[5, 0:2, 0:2] = 7
    write_image(pred, PROPS, pred_dir / "c0.nii.gz")
    with caplog.at_level("WARNING", logger="salseg.evaluate"):
        s = evaluate_folders(pred_dir, ref_dir, metrics=("dice",), allow_missing=True)
    msgs = [r.getMessage() for r in caplog.records if "not scored" in r.getMessage()]
    assert len(msgs) == 1 and "c0.nii.gz" in msgs[0] and "7" in msgs[0]
    assert s["prediction_values_not_scored"] == {"c0.nii.gz": [7]} and s["labels"] == [1, 2]
    caplog.clear()
    with caplog.at_level("WARNING", logger="salseg.evaluate"):
        s = evaluate_folders(pred_dir, ref_dir, labels=[1], metrics=("dice",), allow_missing=True)
    msgs = sorted(r.getMessage() for r in caplog.records if "not scored" in r.getMessage())
    assert len(msgs) == 2 and "2, 7" in msgs[0] and "c2.nii.gz" in msgs[1]   # label 2 not asked for (c1 lacks it)


def test_cli_per_label_nsd_tolerance(folders):
    pred_dir, ref_dir, arrays = folders
    res = _run("evaluate", pred_dir, ref_dir, "--labels", "1", "2", "--metrics", "nsd", "--nsd-tolerance", "1:2.0",
               "2:0.5", "--allow-missing")
    assert res.exit_code == 0, res.output
    s = json.loads((pred_dir / "summary.json").read_text())
    assert s["nsd_tolerance_mm"] == {"1": 2.0, "2": 0.5}
    assert "label 1: 2 mm, label 2: 0.5 mm" in s["metric_definitions"]["NSD"]["definition"]
    from salseg.evaluate.metrics import binary_metrics
    sp = read_label(ref_dir / "c0.nii.gz")[1]["spacing"]
    p, r = arrays["c0"]
    assert s["metric_per_case"][0]["metrics"]["2"]["NSD"] == binary_metrics(p == 2, r == 2, sp, ["nsd"], 0.5)["NSD"]
    res = _run("evaluate", pred_dir, ref_dir, "--labels", "1", "2", "--nsd-tolerance", "1:2.0", "--allow-missing")
    assert res.exit_code == 2 and "no NSD tolerance for label 2" in res.output
    res = _run("evaluate", pred_dir, ref_dir, "--nsd-tolerance", "abc", "--allow-missing")
    assert res.exit_code == 2 and "abc" in res.output and "Traceback" not in res.output
