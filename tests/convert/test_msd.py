"""MSD task folder (4D multi-modal NIfTI, MSD dataset.json) -> raw dataset: channels, geometry, labels, regions."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from tests.convert.conftest import array, geometry

from salseg.convert import convert_msd
from salseg.dataset.dataset_json import load_dataset_json
from salseg.errors import DataError

SPACING4, ORIGIN4 = (0.9, 1.1, 2.5, 1.0), (3.0, -7.0, 12.0, 0.0)
DIR4 = (0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # x/y swapped


def _write4d(path, arr):          # arr (C, Z, Y, X) -> a 4D NIfTI with 4x4 geometry
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.JoinSeries([sitk.GetImageFromArray(a) for a in arr])
    img.SetSpacing(SPACING4)
    img.SetOrigin(ORIGIN4)
    img.SetDirection(DIR4)
    sitk.WriteImage(img, str(path))


def _write3d(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING4[:3])
    img.SetOrigin(ORIGIN4[:3])
    img.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(path))


def make_task(tmp_path, rng, name="Task01_BrainTumour"):
    src = tmp_path / name
    training = []
    for i in (1, 2, 3):
        _write4d(src / "imagesTr" / f"BRATS_{i:03d}.nii.gz", rng.normal(0, 1, (4, 5, 6, 7)).astype(np.float32))
        _write3d(src / "labelsTr" / f"BRATS_{i:03d}.nii.gz", rng.integers(0, 4, (5, 6, 7)).astype(np.uint8))
        training.append({"image": f"./imagesTr/BRATS_{i:03d}.nii.gz", "label": f"./labelsTr/BRATS_{i:03d}.nii.gz"})
    _write4d(src / "imagesTs" / "BRATS_101.nii.gz", rng.normal(0, 1, (4, 5, 6, 7)).astype(np.float32))
    (src / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS junk")
    (src / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "description": "Gliomas segmentation tumour and oedema in on brain images",
        "reference": "https://www.med.upenn.edu/sbia/brats2017.html", "licence": "CC-BY-SA 4.0",
        "release": "2.0 04/05/2018", "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": 3, "numTest": 1, "training": training, "test": ["./imagesTs/BRATS_101.nii.gz"]}))
    return src


def test_msd_4d_split_with_geometry(tmp_path, rng):
    src = make_task(tmp_path, rng)
    out = convert_msd(src, tmp_path / "root")
    assert out.name == "Dataset001_BrainTumour"
    info = load_dataset_json(out)
    assert info.channel_names == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    assert info.labels == {"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}
    assert info.num_training == 3 and not info.label_spec.has_regions
    four = sitk.ReadImage(str(src / "imagesTr" / "BRATS_002.nii.gz"))
    whole = sitk.GetArrayFromImage(four)
    for c in range(4):
        f = out / "imagesTr" / f"BRATS_002_{c:04d}.nii.gz"
        sp, org, direction, size = geometry(f)
        assert sp == pytest.approx(SPACING4[:3]) and org == pytest.approx(ORIGIN4[:3])
        assert direction == pytest.approx((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)) and size == (7, 6, 5)
        np.testing.assert_array_equal(array(f), whole[c])
    assert not (out / "imagesTr" / "BRATS_002_0004.nii.gz").exists()
    assert geometry(out / "labelsTr" / "BRATS_002.nii.gz")[:3] == geometry(out / "imagesTr" / "BRATS_002_0000.nii.gz")[:3]
    np.testing.assert_array_equal(array(out / "labelsTr" / "BRATS_003.nii.gz"),
                                  array(src / "labelsTr" / "BRATS_003.nii.gz"))
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [f"BRATS_101_{c:04d}.nii.gz" for c in range(4)]


def test_msd_brats_regions(tmp_path, rng):
    out = convert_msd(make_task(tmp_path, rng), tmp_path / "root", regions=True)
    spec = load_dataset_json(out).label_spec
    assert spec.regions == ((1, 2, 3), (2, 3), (3,)) and spec.regions_class_order == (1, 2, 3)
    assert spec.region_names == ("whole tumour", "tumour core", "enhancing tumour")


def test_msd_refuses_malformed(tmp_path, rng):
    src = make_task(tmp_path, rng)
    gone = src / "labelsTr" / "BRATS_002.nii.gz"
    gone.unlink()
    with pytest.raises(DataError, match=f"{gone}: missing file listed"):
        convert_msd(src, tmp_path / "root")
    src2 = make_task(tmp_path / "b", rng, "Task05_Prostate")
    d = json.loads((src2 / "dataset.json").read_text())
    d["modality"] = {"0": "T2", "1": "ADC"}
    (src2 / "dataset.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match="4D image with 4 volumes, but dataset.json 'modality' declares 2"):
        convert_msd(src2, tmp_path / "root")
    d["labels"] = {"0": "background", "1": "PZ", "2": "TZ"}
    d["modality"] = {"0": "T2", "1": "ADC", "2": "x", "3": "y"}
    (src2 / "dataset.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match="--regions .* needs Task01_BrainTumour"):
        convert_msd(src2, tmp_path / "root", regions=True)
    with pytest.raises(DataError, match="not an MSD task folder name"):
        convert_msd(tmp_path / "b", tmp_path / "root")
    raw = tmp_path / "root" / "raw"
    assert not raw.exists() or not list(raw.iterdir())                 # nothing half-written


def test_msd_cli_writes_and_checks(tmp_path, rng):
    from typer.testing import CliRunner

    from salseg_cli.main import app
    src = make_task(tmp_path, rng)
    r = CliRunner().invoke(app, ["--root", str(tmp_path / "root"), "convert", "msd", str(src), "--regions"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["--root", str(tmp_path / "root"), "check", "1"])
    assert r.exit_code == 0, r.output
