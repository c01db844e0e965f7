import json
from pathlib import Path

import numpy as np
import pytest
from tests.convert.conftest import OBLIQUE, array, geometry
from typer.testing import CliRunner

from salseg.convert import convert_folder
from salseg.dataset.check import check_dataset
from salseg.errors import DataError
from salseg_cli.main import app

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} absent (real data for tests)")


def test_folder_fixture(tmp_path, write_img, rng):
    for i in (1, 2, 10):
        img = rng.normal(100, 10, (3, 5, 6)).astype(np.float32)
        lab = np.zeros((3, 5, 6), np.uint8)
        lab[0, :2], lab[2, 3:] = 4, 7
        write_img(tmp_path / "Image" / f"Case{i}.nii.gz", img, (1.0, 1.0, 2.0), (0, 0, i), OBLIQUE)
        write_img(tmp_path / "Label" / f"Case{i}_label.nii.gz", lab, (1.0, 1.0, 2.0), (0, 0, i), OBLIQUE)
    out = convert_folder(tmp_path / "Image", tmp_path / "Label", tmp_path / "root", name="Toy",
                         label_names={7: "tumour"})
    ds = json.loads((out / "dataset.json").read_text())
    assert out.name == "Dataset500_Toy"
    assert ds["labels"] == {"background": 0, "label_4": 4, "tumour": 7} and ds["channel_names"] == {"0": "MRI"}
    assert sorted(ds["groups"]) == ["Case1", "Case10", "Case2"]
    assert geometry(out / "imagesTr" / "Case10_0000.nii.gz") == geometry(tmp_path / "Image" / "Case10.nii.gz")
    out = convert_folder(tmp_path / "Image", tmp_path / "Label", tmp_path / "root", name="Toy", binary=True,
                         overwrite=True)
    assert out.name == "Dataset500_Toy"  # same name -> same id, replaced
    assert json.loads((out / "dataset.json").read_text())["labels"] == {"background": 0, "foreground": 1}
    assert set(np.unique(array(out / "labelsTr" / "Case2.nii.gz"))) == {0, 1}


def test_folder_refuses_unpaired(tmp_path, write_img, rng):
    for n in ("a", "b"):
        write_img(tmp_path / "img" / f"{n}.nii.gz", np.zeros((2, 3, 3), np.float32))
    write_img(tmp_path / "lab" / "a_label.nii.gz", np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(DataError, match=str(tmp_path / "img" / "b.nii.gz") + ": no matching label"):
        convert_folder(tmp_path / "img", tmp_path / "lab", tmp_path / "root")


@needs_shared
def test_cli_folder_knee(tmp_path):
    r = CliRunner().invoke(app, ["--root", str(tmp_path), "convert", "folder", "--images", str(SHARED / "knee/Image"),
                                 "--labels", str(SHARED / "knee/Label"), "--name", "Knee", "--label-name", "1=femur"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "raw" / "Dataset500_Knee"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["numTraining"] == 5 and ds["labels"] == {"background": 0, "femur": 1, "label_2": 2}
    lines = r.output.splitlines()  # the unnamed label, and the option that names it on a line of its own
    assert "label_2: no name given" in r.output and "  --label-names 2=NAME --overwrite" in lines, r.output
    assert "  salseg check Dataset500_Knee" in lines, r.output
    assert sorted(ds["groups"]) == [f"Case{i}" for i in range(1, 6)]
    assert geometry(out / "imagesTr" / "Case3_0000.nii.gz") == geometry(SHARED / "knee/Image/Case3.nii.gz")
    np.testing.assert_array_equal(array(out / "labelsTr" / "Case3.nii.gz"), array(SHARED / "knee/Label/Case3_label.nii.gz"))


@needs_shared
def test_cli_folder_glas_binary(tmp_path):
    r = CliRunner().invoke(app, ["--root", str(tmp_path), "convert", "folder", str(SHARED / "glas"), "--binary",
                                 "--name", "GlaS5", "--id", "77"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "raw" / "Dataset077_GlaS5"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["numTraining"] == 5 and ds["labels"] == {"background": 0, "foreground": 1}
    assert ds["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    inst = array(SHARED / "glas/Label/Case4_label.bmp")
    inst = inst[..., 0] if inst.ndim == 3 else inst
    np.testing.assert_array_equal(array(out / "labelsTr" / "Case4.png"), (inst > 0).astype(np.uint8))
    assert check_dataset(out) == []


@needs_shared
def test_cli_folder_spine_ct(tmp_path):
    ct = SHARED / "spine/sample_ct"
    r = CliRunner().invoke(app, ["--root", str(tmp_path), "convert", "folder", "--images", str(ct), "--labels",
                                 str(ct), "--image-glob", "*_ct.nii.gz", "--label-glob", "*seg-vert*msk.nii.gz",
                                 "--name", "SpineCT"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "raw" / "Dataset500_SpineCT"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "label_21": 21, "label_22": 22, "label_23": 23}
    assert ds["channel_names"] == {"0": "CT"}
    src_geo = geometry(ct / "sub-ct_label-22_ct.nii.gz")
    assert src_geo[2] != (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)  # oblique source
    assert geometry(out / "imagesTr" / "sub-ct_label-22_ct_0000.nii.gz") == src_geo  # kept exactly
    assert geometry(out / "labelsTr" / "sub-ct_label-22_ct.nii.gz") == geometry(ct / "sub-ct_seg-vert_label-22_msk.nii.gz")
    np.testing.assert_array_equal(array(out / "labelsTr" / "sub-ct_label-22_ct.nii.gz"),
                                  array(ct / "sub-ct_seg-vert_label-22_msk.nii.gz"))
    assert check_dataset(out) == []


def test_cli_folder_needs_sources(tmp_path):
    r = CliRunner().invoke(app, ["--root", str(tmp_path), "convert", "folder"])
    assert r.exit_code == 2 and "--images" in r.output


def test_source_folders_guess_image_and_label_subfolders(tmp_path):
    from salseg.convert.folder import source_folders
    from salseg.errors import ConfigError

    (tmp_path / "Images").mkdir()
    (tmp_path / "labelsTr").mkdir()
    assert source_folders(tmp_path) == (tmp_path / "Images", tmp_path / "labelsTr")
    given = tmp_path / "mine"
    assert source_folders(tmp_path, labels=given) == (tmp_path / "Images", given)
    assert source_folders(None, given, given) == (given, given)
    flat = tmp_path / "flat"
    flat.mkdir()
    assert source_folders(flat) == (flat, flat)  # images and labels side by side
    with pytest.raises(ConfigError, match="--images and --labels"):
        source_folders(None, images=given)


@needs_shared
def test_cli_folder_knee_named_labels_give_no_hint(tmp_path):
    r = CliRunner().invoke(app, ["--root", str(tmp_path), "convert", "folder", str(SHARED / "knee"), "--name", "Knee",
                                 "--label-names", "1=femur", "2=tibia"])
    assert r.exit_code == 0, r.output
    ds = json.loads((tmp_path / "raw" / "Dataset500_Knee" / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "femur": 1, "tibia": 2}
    assert "--label-names" not in r.output and "no name" not in r.output


def test_generic_label_names():
    from salseg.convert.folder import generic_label_names

    assert generic_label_names({"background": 0, "femur": 1, "label_2": 2, "label_7": 7}) == [2, 7]
    assert generic_label_names({"background": 0, "label_3": 2}) == []  # a name that only looks generic
