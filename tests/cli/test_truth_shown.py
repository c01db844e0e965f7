"""Issue 29: what the user sees tells the truth. progress.png has a title, a drawn learning rate with one epoch and
label names in its legend; the forest plot has one panel per metric with each interval on its point's row; a stale
lock's takeover is said in one line naming the dead holder; evaluate pairs `<case>_label` references and shows the
dataset's label names (table, summary.json, CSV)."""

from __future__ import annotations

import csv
import json
import logging
import socket
import subprocess
import sys
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.dataset.io import write_image
from salseg.dataset.labels import LabelSpec
from salseg.lock import LOCK_NAME, folder_lock
from salseg.stats.plots import forest
from salseg.train.report import progress_figure, progress_title
from salseg.train.targets import output_names
from salseg_cli.main import app

PROPS = {"spacing": [1.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "ndim": 3}


def test_progress_png_title_lr_panel_and_names():
    cfg = SimpleNamespace(dataset="Dataset004_Knee", network="mtunet", module="lstmsa", config="2.5d", fold=1, seed=0)
    spec = LabelSpec.plain([0, 1, 2], ("background", "femur", "tibia"))
    names = output_names(spec)
    assert names == {"1": "femur", "2": "tibia"}
    record = {"epoch": 1, "train_loss": 0.9, "lr": 0.003, "val_dice": {"1": 0.4, "2": 0.6}, "mean_fg_dice": 0.5}
    fig = progress_figure([record], progress_title(cfg), names)
    assert fig._suptitle.get_text() == "Dataset004_Knee: mtunet + lstmsa (2.5d), fold 1"
    (lr_line,) = fig.axes[2].get_lines()
    assert list(lr_line.get_ydata()) == [0.003] and lr_line.get_marker() == "o"  # one epoch: a visible point
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["mean foreground", "femur (1)", "tibia (2)"]
    ticks = [t for t in fig.axes[2].get_xticks() if fig.axes[2].get_xlim()[0] <= t <= fig.axes[2].get_xlim()[1]]
    assert ticks == [1.0]
    plt.close(fig)
    regions = LabelSpec((0, 1, 2), ("background", "a", "b"), ((1, 2), (2,)), ("whole", "core"), (1, 2))
    assert output_names(regions) == {"(1, 2)": "whole", "(2,)": "core"}


def _rec(metric, method, diff, lo, hi, label="all"):
    return {"metric": metric, "method": method, "reference": "base", "label": label, "verdict": "better",
            "mean_diff": diff, "ci_low": lo, "ci_high": hi, "boot_ci_low": lo + 0.001, "boot_ci_high": hi - 0.001}


def test_forest_one_panel_per_metric_and_intervals_on_the_point(tmp_path, monkeypatch):
    import salseg.stats.plots as P

    figures = []
    monkeypatch.setattr(P, "_save", lambda fig, path: figures.append(fig) or path)
    forest([_rec("dice", "a", 0.02, 0.01, 0.03), _rec("hd95", "a", -3.0, -5.0, -1.0),
            _rec("dice", "b", 0.01, -0.01, 0.03, label=2)], tmp_path / "f.png")
    fig = figures[-1]
    dice, hd = fig.axes
    assert "dice" in dice.get_title() and "hd95" in hd.get_title() and "(mm)" in hd.get_title()
    assert "(mm)" not in dice.get_title()
    assert dice.get_xlim()[1] < 1 and hd.get_xlim()[0] < -4  # own axes: Dice differences are not squashed at 0
    assert [t.get_text() for t in dice.get_yticklabels()] == ["a vs base", "b vs base [label 2]"]
    plt.close(fig)
    forest([_rec("dice", "a", 0.02, 0.01, 0.03)], tmp_path / "one.png")  # one comparison
    (ax,) = figures[-1].axes
    rows = {round(float(y), 6) for line in ax.get_lines() if line.get_linestyle() != "--" for y in line.get_ydata()}
    assert rows == {0.0}  # point, t-interval and bootstrap interval on one row
    plt.close(figures[-1])


def test_stale_lock_takeover_is_one_line_naming_the_holder(tmp_path, caplog):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": p.pid, "host": socket.gethostname(), "time": 0,
                                                  "command": "salseg train Knee unet"}))
    with caplog.at_level(logging.WARNING, logger="salseg.lock"), folder_lock(tmp_path, "fold folder fold_0"):
        pass
    (line,) = [r.getMessage() for r in caplog.records if "took over" in r.getMessage()]
    assert f"pid {p.pid}" in line and "salseg train Knee unet" in line and "fold folder fold_0" in line
    assert "\n" not in line


def test_evaluate_reference_suffix_and_label_names(tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "Label"
    pred.mkdir()
    ref.mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "femur": 1, "tibia": 2},
                                                       "channel_names": {"0": "MRI"}, "numTraining": 2,
                                                       "file_ending": ".nii.gz"}))
    for i in (1, 2):
        seg = np.zeros((4, 8, 8), np.uint8)
        seg[1:3, 1:4, 1:4] = 1
        seg[1:3, 5:7, 5:7] = 2
        write_image(seg, PROPS, ref / f"Case{i}_label.nii.gz")
        write_image(np.roll(seg, i - 1, axis=2), PROPS, pred / f"Case{i}.nii.gz")
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", str(pred), str(ref), "--reference-suffix", "_label"])
    assert r.exit_code == 0, r.output
    assert "femur (1)" in r.output and "tibia (2)" in r.output
    summary = json.loads((pred / "summary.json").read_text())
    assert summary["reference_suffix"] == "_label" and summary["label_names"] == {"0": "background", "1": "femur", "2": "tibia"}
    # case 1 identical, case 2 shifted one voxel: femur 2 x 3 x 3 voxels overlap in 2 x 3 x 2 -> Dice 24 / 36
    assert summary["mean"]["1"]["Dice"] == pytest.approx((1.0 + 24 / 36) / 2)
    rows = list(csv.DictReader((pred / "summary.csv").open()))
    assert {(r["label"], r["label_name"]) for r in rows} == {("1", "femur"), ("2", "tibia")}
    # without the option: the one suffix every reference shares pairs them too (and is recorded)
    r = runner.invoke(app, ["evaluate", str(pred), str(ref), "--json", str(tmp_path / "auto.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "auto.json").read_text())["reference_suffix"] == "_label"
    # a suffix the references do not carry: one line naming a file
    r = runner.invoke(app, ["evaluate", str(pred), str(ref), "--reference-suffix", "_seg"])
    assert r.exit_code == 2 and "_seg" in r.output and "Case1_label.nii.gz" in r.output, r.output


def test_stats_names_the_labels_summary_json_names(tmp_path):
    from salseg.stats import analyse_results
    from tests.stats.test_stats_inputs import DICE_A, DICE_B, _salseg_exp

    arms = [_salseg_exp(tmp_path, "unet__none__2d", DICE_A), _salseg_exp(tmp_path, "unet__lstmsa__2d", DICE_B)]
    for arm in arms:
        f = arm / "fold_0" / "validation" / "summary.json"
        f.write_text(json.dumps({**json.loads(f.read_text()), "label_names": {"0": "background", "1": "femur"}}))
    rep = analyse_results(arms, labels=["1"], n_boot=200)
    assert rep["label_names"]["1"] == "femur" and rep["records"][0]["label_name"] == "femur"
    r = CliRunner().invoke(app, ["stats", *map(str, arms), "--labels", "1", "--n-boot", "200"])
    assert r.exit_code == 0, r.output
    assert "femur (1)" in r.output and " L1" not in r.output, r.output
