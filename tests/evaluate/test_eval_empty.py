"""Missing structures: --empty worst imputes the image diagonal for HD95/ASSD, --empty nan keeps NaN; summary.json
records the policy, the image extent and what was imputed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.dataset.io import read_label, write_image
from salseg.evaluate import evaluate_arrays, evaluate_folders, image_extent, worst_distance
from salseg_cli.main import app

SPACING = [2.0, 0.5, 0.8]
PROPS = {"spacing": SPACING, "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "ndim": 3}
SHAPE = (6, 16, 14)


def _pair():
    ref = np.zeros(SHAPE, np.uint8)
    ref[1:5, 3:12, 2:9] = 1
    ref[2:4, 12:15, 9:13] = 2
    pred = ref.copy()
    pred[pred == 2] = 0           # label 2 missed entirely
    pred[0, 0:2, 0:2] = 3         # label 3 predicted, absent from the reference
    return pred, ref


def test_worst_is_the_diagonal_of_the_physical_extent():
    assert image_extent((6, 16, 14), (2.0, 0.5, 0.8)) == pytest.approx([12.0, 8.0, 11.2])
    assert worst_distance([12.0, 8.0, 11.2]) == pytest.approx(math.sqrt(12 ** 2 + 8 ** 2 + 11.2 ** 2))
    assert image_extent((1, 20, 30), (999.0, 0.5, 0.25)) == pytest.approx([10.0, 7.5])   # 2D: in-plane only
    assert worst_distance([3.0, 4.0]) == pytest.approx(5.0)


def test_arrays_worst_and_nan_policies():
    pred, ref = _pair()
    diag = float(np.sqrt(np.sum((np.array(SHAPE) * np.array(SPACING)) ** 2)))
    worst = evaluate_arrays([("c0", pred, ref, SPACING)], [1, 2, 3, 4])
    case = worst["metric_per_case"][0]
    assert worst["empty_policy"] == "worst" and "diagonal" in worst["empty_rules"]
    assert case["image_extent_mm"] == pytest.approx([12.0, 8.0, 11.2])
    for lab in ("2", "3"):         # missed, and predicted where the reference has nothing
        m = case["metrics"][lab]
        assert m["HD95"] == pytest.approx(diag) and m["ASSD"] == pytest.approx(diag)
        assert m["NSD"] == 0.0 and m["Dice"] == 0.0
    every = ["HD", "HD95", "HD95_MR", "ASSD", "MASD"]   # every surface distance of the default set
    assert case["imputed"] == {"2": every, "3": every}
    assert all(case["metrics"][lab][k] == pytest.approx(diag) for lab in ("2", "3") for k in every)
    # both empty (label 4) keeps NaN; a found structure is not touched
    assert math.isnan(case["metrics"]["4"]["HD95"]) and case["metrics"]["1"]["HD95"] == 0.0
    assert worst["mean"]["2"]["HD95"] == pytest.approx(diag)
    nan = evaluate_arrays([("c0", pred, ref, SPACING)], [1, 2, 3, 4], empty="nan")
    c = nan["metric_per_case"][0]
    assert nan["empty_policy"] == "nan" and c["imputed"] == {} and c["image_extent_mm"] == pytest.approx([12, 8, 11.2])
    assert math.isnan(c["metrics"]["2"]["HD95"]) and math.isnan(c["metrics"]["3"]["ASSD"])
    assert c["metrics"]["1"] == case["metrics"]["1"]


def test_cli_empty_option(tmp_path):
    pred, ref = _pair()
    write_image(pred, PROPS, tmp_path / "p" / "c0.nii.gz")
    write_image(ref, PROPS, tmp_path / "r" / "c0.nii.gz")
    sp = read_label(tmp_path / "r" / "c0.nii.gz")[1]["spacing"]
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(tmp_path / "p"), str(tmp_path / "r"), "--labels", "1", "2"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "p" / "summary.json").read_text())
    diag = float(np.sqrt(np.sum((np.array(SHAPE) * np.array(sp)) ** 2)))
    assert s["metric_per_case"][0]["metrics"]["2"]["HD95"] == pytest.approx(diag)
    assert "missing structure" in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "p"), str(tmp_path / "r"), "--empty", "nan",
                              "--json", str(tmp_path / "n.json")])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "n.json").read_text())
    assert s["empty_policy"] == "nan" and math.isnan(s["metric_per_case"][0]["metrics"]["2"]["HD95"])
    res = runner.invoke(app, ["evaluate", str(tmp_path / "p"), str(tmp_path / "r"), "--empty", "zero"])
    assert res.exit_code == 2 and "empty-mask policy" in res.output and "Traceback" not in res.output
    with pytest.raises(Exception, match="empty-mask policy"):
        evaluate_folders(tmp_path / "p", tmp_path / "r", empty="zero")
