import json

import numpy as np
import pytest
from tests.convert.conftest import array

from salseg.convert import convert_isic2018
from salseg.errors import DataError


def make_isic(src, write_img, rng):
    for split, ids, gt in (("Training", (0, 1, 3), True), ("Validation", (6,), True), ("Test", (9,), False)):
        for i in ids:
            h, w = 20 + i, 30 + 2 * i  # sizes vary
            img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
            write_img(src / f"ISIC2018_Task1-2_{split}_Input" / f"ISIC_{i:07d}.jpg", img, vector=True)
            if gt:
                m = np.zeros((h, w), np.uint8)
                m[5:12, 4:20] = 255
                write_img(src / f"ISIC2018_Task1_{split}_GroundTruth" / f"ISIC_{i:07d}_segmentation.png", m)
    (src / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("ignored")


def test_isic(tmp_path, write_img, rng):
    src = tmp_path / "isic"
    make_isic(src, write_img, rng)
    out = convert_isic2018(src, tmp_path / "root")
    assert out.name == "Dataset040_ISIC2018"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["file_ending"] == ".png" and ds["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert sorted(ds["groups"]) == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000003"]
    lab = array(out / "labelsTr" / "ISIC_0000003.png")
    assert lab.shape == (23, 36) and set(np.unique(lab)) == {0, 1} and lab[5:12, 4:20].all() and lab.sum() == 7 * 16
    img = array(out / "imagesTr" / "ISIC_0000003_0000.png")
    assert img.shape == (23, 36, 3)
    np.testing.assert_array_equal(img, array(src / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000003.jpg"))
    assert (out / "labelsTs" / "ISIC_0000006.png").is_file() and (out / "imagesTs" / "ISIC_0000009_0000.png").is_file()
    assert not (out / "labelsTs" / "ISIC_0000009.png").exists()
    out2 = convert_isic2018(src, tmp_path / "root2", validation_to_train=True)
    assert "ISIC_0000006" in json.loads((out2 / "dataset.json").read_text())["groups"]


def test_isic_refuses_missing_mask(tmp_path, write_img, rng):
    src = tmp_path / "isic"
    make_isic(src, write_img, rng)
    gone = src / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000001_segmentation.png"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)):
        convert_isic2018(src, tmp_path / "root")
