import json

import numpy as np
import pytest
from tests.convert.conftest import OBLIQUE, array, geometry

from salseg.convert import convert_acdc
from salseg.errors import DataError


def make_official(src, write_img, rng, patients=(1, 2, 3), test_patients=(101,)):
    for split, ids in (("training", patients), ("testing", test_patients)):
        for n in ids:
            pid = f"patient{n:03d}"
            d = src / split / pid
            d.mkdir(parents=True)
            ed, es = 1, 8 + n % 5
            (d / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n")
            (d / f"{pid}_4d.nii.gz").write_bytes(b"ignored")
            sp = (1.4 + 0.05 * n, 1.4 + 0.05 * n, 5.0 + n)
            for f in (ed, es):
                arr = rng.integers(0, 500, (6, 12, 10)).astype(np.int16)
                lab = rng.integers(0, 4, (6, 12, 10)).astype(np.uint8)
                write_img(d / f"{pid}_frame{f:02d}.nii.gz", arr, sp, (n, 2.0, -3.0), OBLIQUE)
                write_img(d / f"{pid}_frame{f:02d}_gt.nii.gz", lab, sp, (n, 2.0, -3.0), OBLIQUE)
    return src


def test_official_layout(tmp_path, write_img, rng):
    src = make_official(tmp_path / "ACDC", write_img, rng)
    out = convert_acdc(src, tmp_path / "root")
    assert out.name == "Dataset027_ACDC"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}
    assert ds["numTraining"] == 6
    assert ds["groups"]["patient002_frame01"] == ds["groups"]["patient002_frame10"] == "patient002"
    assert sorted(ds["groups"]) == ["patient001_frame01", "patient001_frame09", "patient002_frame01",
                                    "patient002_frame10", "patient003_frame01", "patient003_frame11"]
    for cid in ds["groups"]:
        pid = cid.split("_")[0]
        srcimg = src / "training" / pid / f"{cid}.nii.gz"
        assert geometry(out / "imagesTr" / f"{cid}_0000.nii.gz") == geometry(srcimg)
        np.testing.assert_array_equal(array(out / "imagesTr" / f"{cid}_0000.nii.gz"), array(srcimg))
        np.testing.assert_array_equal(array(out / "labelsTr" / f"{cid}.nii.gz"),
                                      array(src / "training" / pid / f"{cid}_gt.nii.gz"))
    assert (out / "imagesTs" / "patient101_frame01_0000.nii.gz").is_file()
    assert (out / "labelsTs" / "patient101_frame01.nii.gz").is_file()


def test_official_refuses_missing_gt_and_existing(tmp_path, write_img, rng):
    src = make_official(tmp_path / "ACDC", write_img, rng)
    bad = src / "training" / "patient002" / "patient002_frame10_gt.nii.gz"
    bad.unlink()
    (src / "training" / "patient003" / "Info.cfg").unlink()
    with pytest.raises(DataError) as e:
        convert_acdc(src, tmp_path / "root")
    assert str(bad) in str(e.value) and "patient003/Info.cfg" in str(e.value)
    raw = tmp_path / "root" / "raw"
    assert not raw.exists() or not list(raw.iterdir())  # nothing half-written


def test_existing_folder_needs_overwrite(tmp_path, write_img, rng):
    from salseg.errors import SalsegError
    src = make_official(tmp_path / "ACDC", write_img, rng, patients=(1,), test_patients=())
    convert_acdc(src, tmp_path / "root")
    with pytest.raises(SalsegError, match="already exists"):
        convert_acdc(src, tmp_path / "root")
    out = convert_acdc(src, tmp_path / "root", overwrite=True)
    assert len(list((out / "imagesTr").iterdir())) == 2


def make_mtunet(src, rng, with_lists=True):
    vols = {}
    for split, cases in (("train", (1, 3)), ("valid", (5,))):
        (src / split).mkdir(parents=True)
        for c in cases:
            for fr in ("ED", "ES"):
                img = rng.random((4, 16, 16)).astype(np.float32)
                lab = rng.integers(0, 4, (4, 16, 16)).astype(np.uint8)
                vols[(c, fr)] = (img, lab)
                for k in range(4):
                    np.savez(src / split / f"case_{c:03d}_slice{fr}_{k}.npz", img=img[k], label=lab[k])
    (src / "test").mkdir()
    timg, tlab = rng.random((5, 16, 16)).astype(np.float32), rng.integers(0, 4, (5, 16, 16)).astype(np.uint8)
    np.savez(src / "test" / "case_002_volume_ED.npz", img=timg, label=tlab)
    if with_lists:
        (src / "lists_ACDC").mkdir()
        for split in ("train", "valid"):
            names = sorted(p.stem for p in (src / split).glob("*.npz"))
            (src / "lists_ACDC" / f"{split}.txt").write_text("\n".join(names) + "\n")
        (src / "lists_ACDC" / "test.txt").write_text("case_002_volume_ED.npz\n")
    return vols, (timg, tlab)


def test_mtunet_npz(tmp_path, rng):
    src = tmp_path / "ACDC_npz"
    vols, (timg, tlab) = make_mtunet(src, rng)
    out = convert_acdc(src, tmp_path / "root", spacing=(8.0, 1.5, 1.5))
    ds = json.loads((out / "dataset.json").read_text())
    assert sorted(ds["groups"]) == ["case_001_ED", "case_001_ES", "case_003_ED", "case_003_ES", "case_005_ED",
                                    "case_005_ES"]
    assert ds["groups"]["case_005_ES"] == "case_005"
    assert ds["source_split"]["case_005_ED"] == "valid" and ds["source_split"]["case_002_ED"] == "test"
    img, lab = vols[(3, "ES")]
    np.testing.assert_allclose(array(out / "imagesTr" / "case_003_ES_0000.nii.gz"), img)
    np.testing.assert_array_equal(array(out / "labelsTr" / "case_003_ES.nii.gz"), lab)
    assert geometry(out / "imagesTr" / "case_003_ES_0000.nii.gz")[0] == (1.5, 1.5, 8.0)
    np.testing.assert_array_equal(array(out / "labelsTs" / "case_002_ED.nii.gz"), tlab)


def test_mtunet_refuses_listed_missing_and_bad_keys(tmp_path, rng):
    src = tmp_path / "ACDC_npz"
    make_mtunet(src, rng)
    gone = src / "train" / "case_001_sliceED_2.npz"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)):
        convert_acdc(src, tmp_path / "root")
    np.savez(gone, image=np.zeros((16, 16)), label=np.zeros((16, 16)))
    with pytest.raises(DataError, match=r"case_001_sliceED_2.npz: missing key"):
        convert_acdc(src, tmp_path / "root")


def test_unknown_layout(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DataError, match="training"):
        convert_acdc(tmp_path / "src", tmp_path / "root")
