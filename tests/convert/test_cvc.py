import json

import numpy as np
import pytest
from tests.convert.conftest import array

from salseg.convert import convert_cvc
from salseg.errors import DataError


def make_cvc(base, write_img, rng, ending=".tif", n=6):
    for i in range(1, n + 1):
        img = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
        m = np.zeros((12, 16), np.uint8)
        m[2:2 + i, 3:9] = 255
        write_img(base / "Original" / f"{i}{ending}", img, vector=True)
        write_img(base / "Ground Truth" / f"{i}{ending}", m)


def test_cvc_tif_with_sequences(tmp_path, write_img, rng):
    src = tmp_path / "CVC-ClinicDB"
    make_cvc(src, write_img, rng)
    csv = tmp_path / "seq.csv"
    csv.write_text("sequence,first,last\nA,1,2\nB,3,6\n")
    out = convert_cvc(src, tmp_path / "root", sequences_csv=csv)
    assert out.name == "Dataset041_CVCClinicDB"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["frame_order"] == [f"frame_{i:04d}" for i in range(1, 7)]
    assert ds["groups"] == {"frame_0001": "A", "frame_0002": "A", "frame_0003": "B", "frame_0004": "B",
                            "frame_0005": "B", "frame_0006": "B"}
    lab = array(out / "labelsTr" / "frame_0004.png")
    assert lab.sum() == 4 * 6 and lab.max() == 1
    np.testing.assert_array_equal(array(out / "imagesTr" / "frame_0004_0000.png"), array(src / "Original" / "4.tif"))


def test_cvc_png_copy_and_frame_order(tmp_path, write_img, rng):
    src = tmp_path / "CVC"
    make_cvc(src / "PNG", write_img, rng, ".png", n=11)
    out = convert_cvc(src, tmp_path / "root")
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["frame_order"][-2:] == ["frame_0010", "frame_0011"]  # numeric, not lexical, order
    assert ds["groups"]["frame_0010"] == "frame_0010"


def test_cvc_refuses(tmp_path, write_img, rng):
    src = tmp_path / "CVC"
    make_cvc(src, write_img, rng)
    gone = src / "Ground Truth" / "3.tif"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)):
        convert_cvc(src, tmp_path / "root")
    make_cvc(src, write_img, rng)
    csv = tmp_path / "seq.csv"
    csv.write_text("1,2\n4,6\n")
    with pytest.raises(DataError, match=rf"{csv}: frames \[3\] are in no sequence"):
        convert_cvc(src, tmp_path / "root", sequences_csv=csv)
