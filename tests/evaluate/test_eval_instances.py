"""Instance-wise evaluation: a constructed case with known TP/FP/FN, the CLI (--instances, --instance-maps), and
agreement with panoptica on the same inputs (connected components in 3D, instance maps as given in 2D)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.dataset.io import write_image
from salseg.evaluate import evaluate_arrays, match_instances
from salseg.evaluate.metrics import label_metrics
from salseg_cli.main import app


def _known_case():
    """3D, label 1: a matched pair (IoU 0.875), a missed lesion (FN), a spurious one (FP), an under-segmented one
    (IoU 0.25: FN + FP) and a 2x2 blob predicted exactly, its voxels set in diagonal pairs (IoU 1). Label 2: one
    matched pair."""
    ref = np.zeros((8, 40, 40), np.uint8)
    pred = np.zeros_like(ref)
    ref[1:3, 2:10, 2:10] = 1
    pred[1:3, 3:10, 2:10] = 1               # TP, IoU 7/8
    ref[4:6, 20:25, 20:25] = 1              # FN
    pred[4:6, 30:35, 2:6] = 1               # FP
    ref[1:3, 2:8, 30:38] = 1
    pred[1:3, 2:4, 30:36] = 1               # IoU 12/48 = 0.25: FN + FP
    ref[5, 10:12, 10:12] = 1
    pred[5, 10, 10] = pred[5, 11, 11] = 1
    pred[5, 10, 11] = pred[5, 11, 10] = 1
    ref[6:8, 30:36, 30:36] = 2
    pred[6:8, 30:36, 31:36] = 2
    return pred, ref


def test_known_tp_fp_fn_f1_pq():
    pred, ref = _known_case()
    res = label_metrics(pred, ref, [1, 2], (2.0, 1.0, 1.0), ["dice", "f1", "pq", "matched_dice"])
    m = res[1]
    assert (m["TP_inst"], m["FP_inst"], m["FN_inst"]) == (2, 2, 2)
    assert m["F1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    assert m["PQ"] == pytest.approx((0.875 + 1.0) / (2 + 1 + 1))
    assert m["MatchedDice"] == pytest.approx((2 * 0.875 / 1.875 + 1.0) / 2)
    assert (res[2]["TP_inst"], res[2]["FP_inst"], res[2]["FN_inst"]) == (1, 0, 0)
    assert res[2]["PQ"] == pytest.approx(60 / 72)


def test_matching_threshold_and_ids_as_given():
    ref = np.array([[1, 1, 0, 7, 7, 7, 7]])
    pred = np.array([[5, 0, 0, 3, 3, 3, 0]])   # 5 vs 1: IoU 0.5 (not > 0.5); 3 vs 7: IoU 0.75
    m = match_instances(pred, ref, 0.5)
    assert (m["TP_inst"], m["FP_inst"], m["FN_inst"]) == (1, 1, 1) and m["matched_iou"] == [0.75]
    assert match_instances(pred, ref, 0.8)["TP_inst"] == 0
    with pytest.raises(ValueError, match="0.5"):
        match_instances(pred, ref, 0.3)


def _panoptica(pred, ref, semantic: bool):
    panoptica = pytest.importorskip("panoptica")
    from panoptica import (CCABackend, ConnectedComponentsInstanceApproximator, InputType, NaiveThresholdMatching,
                           Panoptica_Evaluator)

    kw = {"instance_approximator": ConnectedComponentsInstanceApproximator(cca_backend=CCABackend.cc3d)} \
        if semantic else {}
    ev = Panoptica_Evaluator(expected_input=InputType.SEMANTIC if semantic else InputType.UNMATCHED_INSTANCE,
                             instance_matcher=NaiveThresholdMatching(matching_threshold=0.5), verbose=False, **kw)
    assert panoptica
    return ev.evaluate(pred, ref, verbose=False)["ungrouped"]


def test_against_panoptica_connected_components_3d():
    pred, ref = _known_case()
    rng = np.random.default_rng(0)
    noise = rng.random(ref.shape) < 0.01          # a few single-voxel false positives
    pred = np.where((pred == 0) & noise, 1, pred).astype(np.uint8)
    p1, r1 = (pred == 1).astype(np.uint8), (ref == 1).astype(np.uint8)
    ours = label_metrics(p1, r1, [1], (1, 1, 1), ["f1", "pq", "matched_dice"])[1]
    theirs = _panoptica(p1, r1, semantic=True)
    assert (ours["TP_inst"], ours["FP_inst"], ours["FN_inst"]) == (theirs.tp, theirs.fp, theirs.fn)
    assert ours["F1"] == pytest.approx(theirs.rq, rel=1e-12)
    assert ours["PQ"] == pytest.approx(theirs.pq, rel=1e-12)
    assert ours["MatchedDice"] == pytest.approx(theirs.sq_dsc, rel=1e-12)


def test_against_panoptica_instance_maps_2d():
    rng = np.random.default_rng(1)
    ref = np.zeros((60, 60), np.uint16)
    pred = np.zeros_like(ref)
    for i in range(1, 9):                       # glands as instance ids (GlaS-like), predicted with jitter
        y, x = rng.integers(2, 50, 2)
        h, w = rng.integers(3, 9, 2)
        ref[y:y + h, x:x + w] = i
        dy, dx = rng.integers(-2, 3, 2)
        pred[max(0, y + dy):y + dy + h, max(0, x + dx):x + dx + w] = 20 + i
    s = evaluate_arrays([("g", pred, ref, (1.0, 1.0))], metrics=["dice", "f1", "pq", "matched_dice"],
                        instance_maps=True)
    ours = s["metric_per_case"][0]["metrics"]["1"]
    theirs = _panoptica(pred, ref, semantic=False)
    assert s["labels"] == [1] and s["metric_parameters"]["instances"] == "given"
    assert (ours["TP_inst"], ours["FP_inst"], ours["FN_inst"]) == (theirs.tp, theirs.fp, theirs.fn)
    assert ours["PQ"] == pytest.approx(theirs.pq, rel=1e-12) and ours["F1"] == pytest.approx(theirs.rq, rel=1e-12)
    assert ours["Dice"] == pytest.approx(2 * ((pred > 0) & (ref > 0)).sum() / ((pred > 0).sum() + (ref > 0).sum()))


PROPS = {"spacing": [1.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "ndim": 3}


def test_cli_instances(tmp_path):
    pred, ref = _known_case()
    write_image(pred, PROPS, tmp_path / "p" / "c0.nii.gz")
    write_image(ref, PROPS, tmp_path / "r" / "c0.nii.gz")
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "p"), str(tmp_path / "r"), "--instances",
                                   "--metrics", "dice", "hd95"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "p" / "summary.json").read_text())
    m = s["metric_per_case"][0]["metrics"]["1"]
    assert (m["TP_inst"], m["FP_inst"], m["FN_inst"], m["F1"]) == (2, 2, 2, 0.5) and "PQ" in s["foreground_mean"]
    assert "IoU > 0.5" in s["metric_definitions"]["F1"]["definition"] and "F1" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "p"), str(tmp_path / "r"), "--instances",
                                   "--match-iou", "0.2"])
    assert res.exit_code == 2 and "0.5" in res.output and "Traceback" not in res.output
    assert math.isfinite(m["MatchedDice"])
