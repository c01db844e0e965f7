"""``salseg predict`` / Predictor on a hand-made result folder: fold ensemble, geometry, and bad inputs
(clear message naming the file, exit != 0, nothing written)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from salseg import results
from salseg.infer.predictor import Predictor, predict_preprocessed

DATASET = "Dataset901_InferToy"  # as in conftest.py

BASE = ["predict", "-d", DATASET, "-n", "unet", "-c", "3d_fullres", "--device", "cpu", "-q"]


def run(root, *args):
    from salseg_cli.main import app

    result = CliRunner().invoke(app, ["--root", str(root), *BASE, *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_predict_ensembles_folds_and_keeps_geometry(toy_root, tmp_path):
    images = results.raw_dir(toy_root, DATASET) / "imagesTs"
    out = tmp_path / "out"
    code, text = run(toy_root, "-i", str(images), "-o", str(out), "-f", "0", "1", "--save-probabilities",
                     "--step", "0.5", "--no-mirroring")
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"case{i}.nii.gz" for i in range(2)] + [f"case{i}.npz" for i in range(2)]
        + [f"case{i}.json" for i in range(2)])  # the geometry of the probabilities (salseg ensemble reads it)
    src, got = sitk.ReadImage(str(images / "case1_0000.nii.gz")), sitk.ReadImage(str(out / "case1.nii.gz"))
    assert (got.GetSize(), got.GetSpacing(), got.GetOrigin(), got.GetDirection()) == \
        (src.GetSize(), src.GetSpacing(), src.GetOrigin(), src.GetDirection())
    labels = sitk.GetArrayFromImage(got)
    assert set(np.unique(labels)) <= {0, 1, 5}

    # independent reference: each fold alone, softmax averaged, reverted, argmax -> label values
    from salseg.dataset.io import read_images
    from salseg.preprocess import preprocess_case, revert_preprocessing

    pred = Predictor.from_results(toy_root, DATASET, "unet", "none", "3d_fullres", ["0", "1"], device="cpu")
    data, props = read_images([images / "case1_0000.nii.gz"])
    pdata, _, properties = preprocess_case(data, props, pred.plans, "3d_fullres")
    conf = pred.plans.configuration("3d_fullres").to_dict()
    probs = []
    for state in pred.state_dicts:
        pred.model.load_state_dict(state)
        probs.append(predict_preprocessed(pred.model, pdata, conf, num_classes=3, mirroring=False))
    full = revert_preprocessing((probs[0] + probs[1]) / 2, properties)
    np.testing.assert_array_equal(labels, np.array([0, 1, 5])[full.argmax(0)])
    saved = np.load(out / "case1.npz")["probabilities"]
    np.testing.assert_allclose(saved, full, atol=1e-5)
    assert not np.allclose(probs[0], probs[1])  # the two folds really differ


def test_default_folds_are_the_trained_ones(toy_root):
    pred = Predictor.from_results(toy_root, "InferToy", "unet", "none", "3d_fullres", None)
    assert pred.fold_names == ["0", "1"] and len(pred.state_dicts) == 2


def _assert_clean_failure(code, text, out, *needles):
    assert code != 0, text
    assert "Traceback" not in text
    flat = " ".join(text.split())
    for n in needles:
        assert n in flat, f"{n!r} not in {text!r}"
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture
def inputs(tmp_path, toy_root, write_vol):
    """A folder with one good case (so a late failure would show up as a partial output)."""
    folder = tmp_path / "in"
    write_vol(folder / "aaa_0000.nii.gz", np.zeros((7, 16, 23), np.float32))
    return folder


def test_missing_fold(toy_root, inputs, tmp_path):
    out = tmp_path / "out"
    code, text = run(toy_root, "-i", str(inputs), "-o", str(out), "-f", "0", "3")
    _assert_clean_failure(code, text, out, "fold_3", "fold 3 not found", "trained folds: 0, 1")


def test_missing_checkpoint(toy_root, inputs, tmp_path):
    out = tmp_path / "out"
    code, text = run(toy_root, "-i", str(inputs), "-o", str(out), "--checkpoint", "best")
    _assert_clean_failure(code, text, out, "checkpoint_best.pt", "not found")


def test_wrong_channel_count(toy_root, inputs, tmp_path, write_vol):
    write_vol(inputs / "bbb_0000.nii.gz", np.zeros((7, 16, 23), np.float32))
    write_vol(inputs / "bbb_0001.nii.gz", np.zeros((7, 16, 23), np.float32))
    out = tmp_path / "out"
    code, text = run(toy_root, "-i", str(inputs), "-o", str(out))
    _assert_clean_failure(code, text, out, "bbb_0000.nii.gz", "2 channel(s)", "expects 1")


def test_unreadable_file(toy_root, inputs, tmp_path):
    (inputs / "zzz_0000.nii.gz").write_bytes(b"this is not an image")
    out = tmp_path / "out"
    code, text = run(toy_root, "-i", str(inputs), "-o", str(out))
    _assert_clean_failure(code, text, out, "zzz_0000.nii.gz", "unreadable")


def test_wrong_dimensionality(toy_root, inputs, tmp_path):
    img = sitk.GetImageFromArray(np.zeros((18, 21), np.float32))
    sitk.WriteImage(img, str(inputs / "flat_0000.nii.gz"))
    out = tmp_path / "out"
    code, text = run(toy_root, "-i", str(inputs), "-o", str(out))
    _assert_clean_failure(code, text, out, "flat_0000.nii.gz", "2D image", "3D images")


def test_empty_folder_and_diffusion_flags(toy_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code, text = run(toy_root, "-i", str(empty), "-o", str(out))
    _assert_clean_failure(code, text, out, "no input images", "_0000.nii.gz")
    code, text = run(toy_root, "-i", str(empty), "-o", str(out), "--ensemble", "3")
    _assert_clean_failure(code, text, out, "--ensemble", "only apply to diffusion networks")


def test_unknown_experiment_lists_what_exists(toy_root, inputs, tmp_path):
    from salseg_cli.main import app

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["--root", str(toy_root), "predict", "-d", DATASET, "-n", "unet", "-m", "lstmsa",
                                 "-c", "2.5d", "-i", str(inputs), "-o", str(out)])
    _assert_clean_failure(r.exit_code, r.output, out, "no trained folds", "unet__none__3d_fullres")
