"""Real data end to end (slow): the knee MRI of ../shared/data/knee imported with `convert folder`, a small 2D unet
trained on 3 cases, the 2 remaining volumes predicted from their raw files and evaluated: mean foreground Dice >= 0.80.

Run with ``python -m pytest -q -m slow tests/e2e/test_knee_train.py`` (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salseg_cli.main import app

KNEE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "knee"
TRAIN_CASES, TEST_CASES = ["Case1", "Case2", "Case3"], ["Case4", "Case5"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not KNEE.is_dir(), reason=f"real knee data not found at {KNEE} (../shared absent)")]


def _run(args):
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_knee_train_predict_evaluate(tmp_path):
    images, labels = tmp_path / "src" / "Image", tmp_path / "src" / "Label"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for c in TRAIN_CASES:  # the training subset, as links to the shared files
        (images / f"{c}.nii.gz").symlink_to(KNEE / "Image" / f"{c}.nii.gz")
        (labels / f"{c}_label.nii.gz").symlink_to(KNEE / "Label" / f"{c}_label.nii.gz")
    root = str(tmp_path / "root")
    _run(["--root", root, "convert", "folder", "--images", str(images), "--labels", str(labels),
          "--label-suffix", "_label", "--name", "Knee", "--label-name", "1=femur", "--label-name", "2=tibia"])
    _run(["--root", root, "plan", "Knee", "--configs", "2d"])
    _run(["--root", root, "preprocess", "Knee", "-c", "2d", "-j", "2"])
    _run(["--root", root, "train", "Knee", "-n", "unet", "--config", "2d", "--fold", "all", "--epochs", "50",
          "--iters-per-epoch", "25", "--batch-size", "8", "--patch-size", "96", "128", "--optimizer", "adam",
          "--lr", "0.001", "--width", "16", "-q"])

    scans = tmp_path / "scans"
    scans.mkdir()
    for c in TEST_CASES:  # new scans in the dataset's format: <case>_0000.nii.gz
        (scans / f"{c}_0000.nii.gz").symlink_to(KNEE / "Image" / f"{c}.nii.gz")
    ref = tmp_path / "ref"
    ref.mkdir()
    for c in TEST_CASES:
        (ref / f"{c}.nii.gz").symlink_to(KNEE / "Label" / f"{c}_label.nii.gz")
    out = tmp_path / "pred"
    _run(["--root", root, "predict", "-i", str(scans), "-o", str(out), "-d", "Knee", "-n", "unet", "--config", "2d",
          "-f", "all", "--no-mirroring"])
    _run(["evaluate", str(out), str(ref), "--labels", "1", "2"])
    summary = json.loads((out / "summary.json").read_text())
    dice = summary["foreground_mean"]["Dice"]
    print(f"knee held-out Dice: femur {summary['mean']['1']['Dice']:.4f}, tibia {summary['mean']['2']['Dice']:.4f}, "
          f"mean {dice:.4f}")
    assert len(summary["metric_per_case"]) == 2
    assert dice >= 0.80, summary["mean"]
