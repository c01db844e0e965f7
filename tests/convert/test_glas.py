import json

import numpy as np
import pytest
from tests.convert.conftest import array

from salseg.convert import convert_glas
from salseg.errors import DataError


def _pair(write_img, rng, img_path, lab_path):
    img = rng.integers(0, 256, (14, 18, 3)).astype(np.uint8)
    inst = np.zeros((14, 18), np.uint8)
    inst[1:5, 1:6], inst[7:12, 8:15] = 1, 2  # two gland instances
    write_img(img_path, img, vector=True)
    write_img(lab_path, inst)
    return img, inst


def test_glas_official(tmp_path, write_img, rng):
    src = tmp_path / "Warwick_QU_Dataset"
    for name in ("train_1", "train_2", "train_10", "testA_1", "testB_1"):
        _pair(write_img, rng, src / f"{name}.bmp", src / f"{name}_anno.bmp")
    (src / "Grade.csv").write_text("name, patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)\n"
                                   "train_1,1,benign,adenomatous\ntrain_2,1,benign,adenomatous\n"
                                   "train_10,4,malignant,moderately differentiated\n")
    out = convert_glas(src, tmp_path / "root")
    assert out.name == "Dataset042_GlaS"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["groups"] == {"train_1": "patient1", "train_2": "patient1", "train_10": "patient4"}
    lab = array(out / "labelsTr" / "train_2.png")
    assert set(np.unique(lab)) == {0, 1} and lab.sum() == 4 * 5 + 5 * 7  # foreground = instance id > 0
    assert (out / "labelsTs" / "testA_1.png").is_file() and (out / "imagesTs" / "testB_1_0000.png").is_file()


def test_glas_subset_layout(tmp_path, write_img, rng):
    src = tmp_path / "glas"
    img, _ = _pair(write_img, rng, src / "Image" / "Case1.bmp", src / "Label" / "Case1_label.bmp")
    _pair(write_img, rng, src / "Image" / "Case2.bmp", src / "Label" / "Case2_label.bmp")
    out = convert_glas(src, tmp_path / "root")
    ds = json.loads((out / "dataset.json").read_text())
    assert sorted(ds["groups"]) == ["Case1", "Case2"] and ds["labels"] == {"background": 0, "gland": 1}
    np.testing.assert_array_equal(array(out / "imagesTr" / "Case1_0000.png"), img)


def test_glas_refuses_missing_annotation(tmp_path, write_img, rng):
    src = tmp_path / "glas"
    _pair(write_img, rng, src / "train_1.bmp", src / "train_1_anno.bmp")
    _pair(write_img, rng, src / "train_2.bmp", src / "train_2_anno.bmp")
    gone = src / "train_2_anno.bmp"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)):
        convert_glas(src, tmp_path / "root")
