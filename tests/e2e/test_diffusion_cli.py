"""Diffusion segmenters through the common CLI: plan -> preprocess -> train -> predict --ensemble 3
--save-uncertainty -> evaluate, on a tiny 2D dataset made here (tiny widths, one short epoch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from salseg_cli.main import app

CASES = [f"disc_{i:02d}" for i in range(6)]
# ldseg in its default (release) architecture has fixed widths; medsegdiff's paper preset takes a tiny width
TINY = {"ldseg": [], "medsegdiff": ["--width", "4"]}


def _run(args):
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def tiny_png(tmp_path_factory):
    root = tmp_path_factory.mktemp("diff")
    raw = root / "raw" / "Dataset960_Discs"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    for c in CASES:
        cy, cx, r = rng.integers(14, 34, 2).tolist() + [int(rng.integers(6, 11))]
        seg = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
        img = np.clip(60 + 120 * seg + rng.normal(0, 20, seg.shape), 0, 255).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(img), str(raw / "imagesTr" / f"{c}_0000.png"))
        sitk.WriteImage(sitk.GetImageFromArray(seg), str(raw / "labelsTr" / f"{c}.png"))
    (raw / "dataset.json").write_text(json.dumps({"name": "Discs", "channel_names": {"0": "gray"},
                                                  "labels": {"background": 0, "disc": 1},
                                                  "numTraining": len(CASES), "file_ending": ".png"}))
    _run(["--root", str(root), "plan", "Discs", "--configs", "2d"])
    _run(["--root", str(root), "preprocess", "Discs"])
    return root, raw


@pytest.mark.parametrize("network", ["ldseg", "medsegdiff"])
def test_train_predict_ensemble_uncertainty_evaluate(tiny_png, tmp_path, network):
    root, raw = tiny_png
    r = str(root)
    _run(["--root", r, "train", "Discs", "-n", network, "--config", "2d", "--fold", "0", "--epochs", "1",
          "--iters-per-epoch", "2", "--batch-size", "2", *TINY[network], "-q"])
    fold = root / "results" / "Dataset960_Discs" / f"{network}__none__2d" / "fold_0"
    assert (fold / "checkpoint_final.pt").is_file() and (fold / "validation" / "summary.json").is_file()

    out = tmp_path / "pred"
    _run(["--root", r, "predict", "Discs", "-i", str(raw / "imagesTr"), "-o", str(out), "-n", network,
          "--config", "2d", "-f", "0", "--ensemble", "3", "--steps", "2", "--save-uncertainty", "--seed", "1"])
    for c in CASES:
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{c}.png")))
        assert label.shape == (48, 48) and set(np.unique(label)) <= {0, 1}
        unc = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{c}_uncertainty.nii.gz")))
        assert unc.shape[-2:] == (48, 48) and np.all(unc >= 0) and np.all(np.isfinite(unc))
    _run(["evaluate", str(out), str(raw / "labelsTr"), "--labels", "1"])
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(CASES)
    assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0

    # a non-diffusion option on a diffusion network is fine; diffusion options on a segmenter are refused
    res = CliRunner().invoke(app, ["--root", r, "predict", "-i", str(raw / "imagesTr"), "-o", str(tmp_path / "x"),
                                   "-d", "Discs", "-n", "unet", "--config", "2d", "--ensemble", "3"])
    assert res.exit_code != 0


def test_official_preset_dpm_solver_staple_and_multi_threshold_evaluation(tiny_png, tmp_path):
    """medsegdiff -o preset=official-b (tiny width) trains with the hybrid + calibration loss, samples with
    DPM-Solver++, fuses 2 samples with STAPLE, and `evaluate --thresholds` scores the saved probabilities."""
    from salseg.evaluate.thresholds import threshold_scores
    from salseg.fileio import read_npz

    root, raw = tiny_png
    r = str(root)
    _run(["--root", r, "train", "Discs", "-n", "medsegdiff", "--config", "2d", "--fold", "0", "--epochs", "1",
          "--iters-per-epoch", "2", "--batch-size", "2", "--patch-size", "64", "64", "-o", "preset=official-b",
          "-o", "width=32", "-o", "res_blocks=1", "-o", "timesteps=20", "--overwrite", "-q"])
    cfg = json.loads((root / "results" / "Dataset960_Discs" / "medsegdiff__none__2d" / "fold_0" / "config.json")
                     .read_text())
    assert cfg["options"]["preset"] == "official-b"
    out = tmp_path / "pred"
    _run(["--root", r, "predict", "Discs", "-i", str(raw / "imagesTr"), "-o", str(out), "-n", "medsegdiff",
          "--config", "2d", "-f", "0", "--sampler", "dpm-solver", "--steps", "3", "--ensemble", "2",
          "--fusion", "staple", "--save-probabilities", "--no-mirroring"])
    text = _run(["evaluate", str(out), str(raw / "labelsTr"), "--thresholds", "0.1", "0.5", "0.9"])
    assert "averaged over thresholds 0.1, 0.5, 0.9" in text
    summary = json.loads((out / "summary_thresholds.json").read_text())
    assert summary["thresholds"] == [0.1, 0.5, 0.9] and len(summary["metric_per_case"]) == len(CASES)
    case = summary["metric_per_case"][0]
    arrays = read_npz(case["prediction_file"])
    ref = sitk.GetArrayFromImage(sitk.ReadImage(case["reference_file"]))[None]
    want = threshold_scores(arrays["probabilities"][1], ref == 1, (0.1, 0.5, 0.9))
    assert case["metrics"]["1"]["Dice"] == pytest.approx(want["Dice"], nan_ok=True)
    res = CliRunner().invoke(app, ["--root", r, "predict", "-i", str(raw / "imagesTr"), "-o", str(tmp_path / "y"),
                                   "-d", "Discs", "-n", "medsegdiff", "--config", "2d", "--fusion", "vote"])
    assert res.exit_code == 2 and "fusion" in res.output
