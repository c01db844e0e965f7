import json

import numpy as np
import pytest
from tests.convert.conftest import OBLIQUE, array, geometry

from salseg.convert import convert_flare21
from salseg.errors import DataError


def make_flare(src, write_img, rng):
    for i in range(3):
        img = rng.integers(-1000, 1500, (4, 10, 8)).astype(np.int16)
        lab = rng.integers(0, 5, (4, 10, 8)).astype(np.uint8)
        sp, org = (0.8, 0.8, 2.5 + i), (1.0, -2.0, 30.0)
        write_img(src / "TrainingImg" / f"train_{i:03d}_0000.nii.gz", img, sp, org, OBLIQUE)
        write_img(src / "TrainingMask" / f"train_{i:03d}.nii.gz", lab, sp, org, OBLIQUE)
    write_img(src / "ValidationImg" / "validation_001_0000.nii.gz", np.zeros((4, 10, 8), np.int16))


def test_flare21(tmp_path, write_img, rng):
    src = tmp_path / "FLARE21"
    make_flare(src, write_img, rng)
    out = convert_flare21(src, tmp_path / "root")
    assert out.name == "Dataset050_FLARE21"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "liver": 1, "kidney": 2, "spleen": 3, "pancreas": 4}
    assert ds["channel_names"] == {"0": "CT"} and sorted(ds["groups"]) == ["train_000", "train_001", "train_002"]
    assert geometry(out / "imagesTr" / "train_002_0000.nii.gz") == geometry(src / "TrainingImg" / "train_002_0000.nii.gz")
    np.testing.assert_array_equal(array(out / "labelsTr" / "train_001.nii.gz"),
                                  array(src / "TrainingMask" / "train_001.nii.gz"))
    assert (out / "imagesTs" / "validation_001_0000.nii.gz").is_file()


def test_flare21_refuses(tmp_path, write_img, rng):
    src = tmp_path / "FLARE21"
    make_flare(src, write_img, rng)
    gone = src / "TrainingMask" / "train_001.nii.gz"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)):
        convert_flare21(src, tmp_path / "root")
    with pytest.raises(DataError, match="TrainingImg: missing folder"):
        convert_flare21(tmp_path / "nothing", tmp_path / "root")
