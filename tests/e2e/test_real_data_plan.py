"""plan + preprocess on the real knee, GlaS and spine (CT, MRI) data of ../shared/data, imported with
`salseg convert folder`. Skips when the data folder is absent."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.dataset.io import read_image, read_label
from salseg.fileio import read_json, read_npz

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} not found")


def _cli(root, *args):
    from salseg_cli.main import app

    r = CliRunner().invoke(app, ["--root", str(root), *map(str, args)])
    assert r.exit_code == 0, r.output
    return r.output


def _import_plan_preprocess(root, name, convert_args, configs):
    _cli(root, "convert", "folder", *convert_args, "--name", name)
    _cli(root, "plan", name, "--configs", *configs)
    _cli(root, "preprocess", name)
    pre = next((root / "preprocessed").glob(f"Dataset*_{name}"))
    return pre, read_json(pre / "plans.json")


def _check_round_trip(pre, ident, case, raw_label, values):
    """revert(one-hot of the preprocessed seg) lands on the raw grid and matches the raw label map."""
    from salseg.preprocess import revert_preprocessing

    arr = read_npz(pre / ident / f"{case}.npz")
    props = read_json(pre / ident / f"{case}.json")
    seg = np.maximum(arr["seg"], 0)
    onehot = np.stack([seg == k for k in range(len(values))]).astype(np.float32)
    back = np.asarray(values)[revert_preprocessing(onehot, props).argmax(0)]
    assert back.shape == raw_label.shape
    return (back == raw_label).mean()


@pytest.mark.slow
def test_knee(tmp_path):
    pre, plans = _import_plan_preprocess(tmp_path, "Knee", ["--images", DATA / "knee" / "Image", "--labels",
                                                             DATA / "knee" / "Label", "--label-suffix", "_label"],
                                         ["3d_fullres"])
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["spacing"] == pytest.approx([1.0, 1.0, 1.0]) and plans["label_values"] == [0, 1, 2]
    assert cfg["patch_size"] == [128, 96, 192] and cfg["batch_size"] == 2   # nnU-Net 2.8.1's plan for the knee
    raw = read_label(DATA / "knee" / "Label" / "Case1_label.nii.gz")[0]
    assert _check_round_trip(pre, "3d_fullres", "Case1", raw, [0, 1, 2]) == 1.0
    assert len(read_json(pre / "splits.json")) == 5


def test_glas(tmp_path):
    pre, plans = _import_plan_preprocess(tmp_path, "GlaS", ["--images", DATA / "glas" / "Image", "--labels",
                                                            DATA / "glas" / "Label", "--label-suffix", "_label",
                                                            "--binary"], ["2d", "2.5d"])
    assert set(plans["configurations"]) == {"2d", "2.5d"} and plans["num_channels"] == 3
    assert plans["configurations"]["2d"]["normalization"] == ["rgb"] * 3
    arr = read_npz(pre / "2d" / "Case1.npz")
    img = read_image(DATA / "glas" / "Image" / "Case1.bmp")[0]
    assert arr["data"].shape[0] == 3 and arr["data"].shape[1] == 1
    assert all(a <= b for a, b in zip(arr["data"].shape[2:], img.shape[2:]))  # cropped at most, 1 mm kept
    assert set(np.unique(arr["seg"])) == {0, 1}


@pytest.mark.parametrize("sub,glob,modality,values", [
    ("sample_ct", "*_ct.nii.gz", "CT", [0, 21, 22, 23]),
    ("sample_mri", "*_T2w.nii.gz", "MRI", [0, 5, 6, 7, 105, 106, 205, 206, 207]),
])
def test_spine(tmp_path, sub, glob, modality, values):
    name = "Spine" + modality
    pre, plans = _import_plan_preprocess(tmp_path, name, [DATA / "spine" / sub, "--image-glob", glob,
                                                          "--label-glob", "*seg-vert*", "--modality", modality],
                                         ["3d_fullres"])
    assert plans["label_values"] == values
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["normalization"] == ["ct" if modality == "CT" else "zscore"]
    case = read_json(pre / "fingerprint.json")["cases"][0]
    props = read_json(pre / "3d_fullres" / f"{case}.json")
    raw_img = next((DATA / "spine" / sub).glob(glob))
    raw_lab, raw_props = read_label(next((DATA / "spine" / sub).glob("*seg-vert*")))
    assert props["original"]["direction"] == pytest.approx(raw_props["direction"])  # oblique direction kept
    assert not np.allclose(np.reshape(raw_props["direction"], (3, 3)), np.eye(3))
    assert read_image(raw_img)[1]["shape"] == props["original"]["shape"]
    assert _check_round_trip(pre, "3d_fullres", case, raw_lab, values) == 1.0  # 1.5 mm isotropic: exact
