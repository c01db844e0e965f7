"""Every bad input of the integrity check, each message naming the file; CLI exit code 2."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from salseg.dataset.check import assert_dataset_ok, check_dataset
from salseg.errors import DataError
from salseg_cli.main import app


def _w(path, arr, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), vector=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr, isVector=vector)
    img.SetSpacing(spacing[: img.GetDimension()])
    img.SetOrigin(origin[: img.GetDimension()])
    sitk.WriteImage(img, str(path))


def make_ds(root, n=3, channels=2):
    ds = root / "raw" / "Dataset001_Toy"
    for i in range(n):
        for c in range(channels):
            _w(ds / "imagesTr" / f"c{i}_{c:04d}.nii.gz", np.full((3, 4, 5), i + c, np.float32))
        _w(ds / "labelsTr" / f"c{i}.nii.gz", np.eye(4, 5, dtype=np.uint8)[None].repeat(3, 0) * 2)
    info = {"channel_names": {str(c): f"M{c}" for c in range(channels)}, "labels": {"background": 0, "a": 1, "b": 2},
            "numTraining": n, "file_ending": ".nii.gz"}
    (ds / "dataset.json").write_text(json.dumps(info))
    return ds


def test_clean_dataset_ok(tmp_path):
    ds = make_ds(tmp_path)
    assert check_dataset(ds) == []
    assert_dataset_ok(ds, num_workers=2)
    r = CliRunner().invoke(app, ["--root", str(tmp_path), "check", "Toy"])
    assert r.exit_code == 0 and "OK" in r.output


def _one(problems, path, text):
    hits = [p for p in problems if p.startswith(str(path)) and text in p]
    assert hits, f"no problem starting with {path} containing {text!r} in {problems}"


def test_every_bad_input_reported(tmp_path):
    ds = make_ds(tmp_path, n=9)
    img, lab = ds / "imagesTr", ds / "labelsTr"
    (img / "c0_0000.nii.gz").write_bytes(b"not an image")                                     # unreadable
    (img / "c1_0001.nii.gz").unlink()                                                         # missing channel
    (img / "c2_0000.nii.gz").unlink(); (img / "c2_0001.nii.gz").unlink()                      # label w/o image
    (lab / "c3.nii.gz").unlink()                                                              # image w/o label
    _w(lab / "c4.nii.gz", np.zeros((3, 4, 6), np.uint8))                                     # shape mismatch
    _w(lab / "c5.nii.gz", np.zeros((3, 4, 5), np.uint8), spacing=(1.0, 1.0, 3.0))            # spacing mismatch
    _w(lab / "c6.nii.gz", np.full((3, 4, 5), 5, np.uint8))                                   # undeclared label
    nan = np.zeros((3, 4, 5), np.float32); nan[1, 2, 3] = np.nan; nan[0, 0, 0] = np.inf
    _w(img / "c7_0001.nii.gz", nan)                                                           # NaN / Inf
    _w(img / "c8_0000.png", np.zeros((4, 5), np.uint8))                                       # wrong ending
    _w(lab / "c8.nii.gz", np.zeros((1, 4, 5), np.uint8), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 7.0))  # origin
    problems = check_dataset(ds, num_workers=2)
    _one(problems, img / "c0_0000.nii.gz", "unreadable")
    _one(problems, img / "c1_0001.nii.gz", "missing channel file")
    _one(problems, lab / "c2.nii.gz", "label without image")
    _one(problems, img / "c3_0000.nii.gz", "image without label")
    _one(problems, lab / "c4.nii.gz", "shape")
    _one(problems, lab / "c5.nii.gz", "spacing")
    _one(problems, lab / "c6.nii.gz", "[5] not declared")
    _one(problems, img / "c7_0001.nii.gz", "2 NaN/Inf")
    _one(problems, img / "c8_0000.png", "file ending")
    _one(problems, lab / "c8.nii.gz", "shape")
    _one(problems, ds / "dataset.json", "numTraining is 9")
    with pytest.raises(DataError) as e:
        assert_dataset_ok(ds)
    assert e.value.exit_code == 2 and all(p in str(e.value) for p in problems)
    r = CliRunner().invoke(app, ["--root", str(tmp_path), "check", "1", "-j", "2"])
    assert r.exit_code == 2
    flat = " ".join(r.output.split())
    assert str(lab / "c6.nii.gz") in flat.replace(" ", "") or "c6.nii.gz" in flat


def test_origin_and_direction_mismatch(tmp_path):
    ds = make_ds(tmp_path, n=2, channels=1)
    _w(ds / "labelsTr" / "c0.nii.gz", np.zeros((3, 4, 5), np.uint8), origin=(0.0, 0.0, 1.0))
    im = sitk.ReadImage(str(ds / "labelsTr" / "c1.nii.gz"))
    im.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(im, str(ds / "labelsTr" / "c1.nii.gz"))
    problems = check_dataset(ds)
    _one(problems, ds / "labelsTr" / "c0.nii.gz", "origin")
    _one(problems, ds / "labelsTr" / "c1.nii.gz", "direction")
    # within tolerance: a 1e-6 mm origin difference is fine
    _w(ds / "labelsTr" / "c0.nii.gz", np.zeros((3, 4, 5), np.uint8), origin=(0.0, 0.0, 1e-6))
    assert not [p for p in check_dataset(ds) if "c0.nii.gz" in p]


def test_channel_count_and_mixed_dims(tmp_path):
    ds = make_ds(tmp_path, n=3, channels=1)
    _w(ds / "imagesTr" / "c1_0000.nii.gz", np.zeros((3, 4, 5, 2), np.float32), vector=True)   # 2 channels in 1 file
    _w(ds / "imagesTr" / "c2_0000.nii.gz", np.zeros((4, 5), np.float32))                      # a 2D case
    _w(ds / "labelsTr" / "c2.nii.gz", np.zeros((4, 5), np.uint8))
    problems = check_dataset(ds)
    _one(problems, ds / "imagesTr" / "c1_0000.nii.gz", "2 channel(s) but dataset.json")
    _one(problems, ds / "imagesTr" / "c2_0000.nii.gz", "mixed 2D/3D")


def test_rgb_png_dataset_ok_and_bad_dataset_json(tmp_path):
    ds = tmp_path / "raw" / "Dataset002_Rgb"
    _w(ds / "imagesTr" / "a_0000.png", np.zeros((4, 5, 3), np.uint8), vector=True)
    _w(ds / "labelsTr" / "a.png", np.ones((4, 5), np.uint8))
    (ds / "dataset.json").write_text(json.dumps({"channel_names": {"0": "R", "1": "G", "2": "B"},
                                                 "labels": {"background": 0, "x": 1}, "numTraining": 1,
                                                 "file_ending": ".png"}))
    assert check_dataset(ds) == []
    (ds / "dataset.json").write_text("{broken")
    problems = check_dataset(ds)
    assert len(problems) == 1 and problems[0].startswith(str(ds / "dataset.json"))
