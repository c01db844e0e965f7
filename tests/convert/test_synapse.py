import json

import h5py
import numpy as np
import pytest
from tests.convert.conftest import array, geometry

from salseg.convert import convert_synapse
from salseg.errors import DataError

# official label of each TransUNet organ, in TransUNet's 1..8 order (written out independently of the converter)
TRANSUNET_ORDER = [8, 4, 3, 2, 6, 11, 1, 7]


def make_raw(src, write_img, rng, nums=(1, 5, 8)):
    for n in nums:
        img = rng.integers(-1000, 1000, (5, 8, 9)).astype(np.int16)
        lab = rng.integers(0, 14, (5, 8, 9)).astype(np.uint8)
        sp, org = (0.7 + 0.01 * n, 0.7 + 0.01 * n, 3.0), (-200.0, -150.0, 10.0 * n)
        write_img(src / "RawData" / "Training" / "img" / f"img{n:04d}.nii.gz", img, sp, org)
        write_img(src / "RawData" / "Training" / "label" / f"label{n:04d}.nii.gz", lab, sp, org)
    write_img(src / "RawData" / "Testing" / "img" / "img0061.nii.gz", np.zeros((5, 8, 9), np.int16))


def test_raw_13_labels(tmp_path, write_img, rng):
    src = tmp_path / "Synapse"
    make_raw(src, write_img, rng)
    out = convert_synapse(src, tmp_path / "root")
    assert out.name == "Dataset008_Synapse"
    ds = json.loads((out / "dataset.json").read_text())
    assert len(ds["labels"]) == 14 and ds["labels"]["pancreas"] == 11 and ds["channel_names"] == {"0": "CT"}
    assert sorted(ds["groups"]) == ["case0001", "case0005", "case0008"]
    for n in ("0001", "0005", "0008"):
        assert geometry(out / "imagesTr" / f"case{n}_0000.nii.gz") == \
            geometry(src / "RawData" / "Training" / "img" / f"img{n}.nii.gz")
        np.testing.assert_array_equal(array(out / "labelsTr" / f"case{n}.nii.gz"),
                                      array(src / "RawData" / "Training" / "label" / f"label{n}.nii.gz"))
    assert (out / "imagesTs" / "test0061_0000.nii.gz").is_file()


def test_raw_8organ_protocol(tmp_path, write_img, rng):
    src = tmp_path / "Synapse"
    make_raw(src, write_img, rng)
    out = convert_synapse(src, tmp_path / "root", protocol="8organ")
    ds = json.loads((out / "dataset.json").read_text())
    assert list(ds["labels"]) == ["background", "aorta", "gallbladder", "left_kidney", "right_kidney", "liver",
                                  "pancreas", "spleen", "stomach"]
    assert sorted(ds["groups"]) == ["case0005"]  # 0001 and 0008 are TransUNet test cases
    orig = array(src / "RawData" / "Training" / "label" / "label0001.nii.gz")
    expect = np.zeros_like(orig)
    for new, old in enumerate(TRANSUNET_ORDER, start=1):
        expect[orig == old] = new
    np.testing.assert_array_equal(array(out / "labelsTs" / "case0001.nii.gz"), expect)


def test_raw_refuses_missing_label(tmp_path, write_img, rng):
    src = tmp_path / "Synapse"
    make_raw(src, write_img, rng)
    gone = src / "RawData" / "Training" / "label" / "label0005.nii.gz"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)):
        convert_synapse(src, tmp_path / "root")


def make_transunet(src, rng):
    (src / "train_npz").mkdir(parents=True)
    (src / "test_vol_h5").mkdir()
    (src / "lists_Synapse").mkdir()
    vol = rng.random((3, 12, 12)).astype(np.float32)
    lab = rng.integers(0, 9, (3, 12, 12)).astype(np.uint8)
    names = []
    for k in range(3):
        np.savez(src / "train_npz" / f"case0005_slice{k:03d}.npz", image=vol[k], label=lab[k])
        names.append(f"case0005_slice{k:03d}")
    (src / "lists_Synapse" / "train.txt").write_text("\n".join(names) + "\n")
    timg, tlab = rng.random((4, 12, 12)).astype(np.float32), rng.integers(0, 9, (4, 12, 12)).astype(np.uint8)
    with h5py.File(src / "test_vol_h5" / "case0001.npy.h5", "w") as f:
        f["image"], f["label"] = timg, tlab
    (src / "lists_Synapse" / "test_vol.txt").write_text("case0001\n")
    return vol, lab, timg, tlab


def test_transunet_npz_h5(tmp_path, rng):
    src = tmp_path / "project_TransUNet" / "data" / "Synapse"
    vol, lab, timg, tlab = make_transunet(src, rng)
    out = convert_synapse(src, tmp_path / "root", spacing=(2.5, 0.8, 0.8))
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["groups"] == {"case0005": "case0005"} and ds["labels"]["stomach"] == 8
    np.testing.assert_allclose(array(out / "imagesTr" / "case0005_0000.nii.gz"), vol)
    np.testing.assert_array_equal(array(out / "labelsTr" / "case0005.nii.gz"), lab)
    np.testing.assert_allclose(array(out / "imagesTs" / "case0001_0000.nii.gz"), timg)
    np.testing.assert_array_equal(array(out / "labelsTs" / "case0001.nii.gz"), tlab)
    assert geometry(out / "imagesTs" / "case0001_0000.nii.gz")[0] == pytest.approx((0.8, 0.8, 2.5))


def test_transunet_refuses_bad_h5(tmp_path, rng):
    src = tmp_path / "Synapse"
    make_transunet(src, rng)
    bad = src / "test_vol_h5" / "case0001.npy.h5"
    with h5py.File(bad, "w") as f:
        f["img"] = np.zeros((2, 3, 3))
    with pytest.raises(DataError, match=f"{bad}: missing dataset"):
        convert_synapse(src, tmp_path / "root")
    bad.unlink()
    with pytest.raises(DataError, match=str(bad)):
        convert_synapse(src, tmp_path / "root")
