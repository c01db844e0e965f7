"""Round 3, inputs read right or refused: palette label maps, colour-coded label maps, NaN/Inf in any command's
input, a CT dataset without foreground, a header declaring a huge image, file names that are not UTF-8, ITK's
multi-line warnings. Each refusal is one line naming the file, exit 2, nothing written."""

import logging
import os
import struct

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from salseg import results as R
from salseg.dataset.io import read_label, write_image
from tests.faults.helpers import DS, NAME, cli, one_line_error, raw_dataset
from tests.plan.rawdata_helpers import blob_case, image_2d_props, volume_props, write_raw_dataset

def check_problems(result) -> list[str]:
    """The problem lines of ``salseg check`` (exit 2, no traceback): each starts with the offending file."""
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return [ln.strip() for ln in result.output.splitlines() if ln.lstrip().startswith("/") and ": " in ln]


PRED = ("predict", NAME, "-n", "unet", "-c", "2d", "--device", "cpu", "-q")


def _nan_image(path, ending=None):
    arr = np.full((6, 16, 16), 100.0, np.float32)
    arr[2, 3, 4], arr[3, 5, 6], arr[4, 7, 8] = np.nan, np.inf, -np.inf
    write_image(arr, volume_props(arr.shape, (3.0, 1.0, 1.0)), path)
    return path


# ---------------------------------------------------------------- palette and colour label maps

PALETTE = [0, 0, 0, 0, 255, 0, 0, 0, 255, 0, 128, 128]  # red is 0 for every class: read as colour, classes vanish


def _png_dataset(root, label_arrays):
    rng = np.random.default_rng(0)
    cases = []
    for i, lab in enumerate(label_arrays):
        img = rng.integers(0, 255, size=(1, 1, 12, 12)).astype(np.float32)
        cases.append({"id": f"c{i}", "image": img, "label": np.zeros((1, 12, 12), np.uint8),
                      "props": image_2d_props((12, 12))})
    raw = write_raw_dataset(root, NAME, cases, file_ending=".png")
    for i, lab in enumerate(label_arrays):
        lab.save(raw / "labelsTr" / f"c{i}.png")
    return raw


def _palette(indices):
    im = Image.fromarray(np.asarray(indices, np.uint8), mode="P")
    im.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
    return im


def test_palette_label_read_as_indices_and_checked(tmp_path):
    idx = np.zeros((12, 12), np.uint8)
    idx[2:6, 2:6], idx[7:10, 7:10] = 1, 2
    raw = _png_dataset(tmp_path / "root", [_palette(idx), _palette(idx)])
    lab, _ = read_label(raw / "labelsTr" / "c0.png")
    np.testing.assert_array_equal(lab[0], idx)                # the indices, not the colours' first channel
    assert cli("check", NAME, root=tmp_path / "root").exit_code == 0
    bad = idx.copy()
    bad[0, 0] = 3                                             # an index dataset.json does not declare
    _palette(bad).save(raw / "labelsTr" / "c1.png")
    problems = check_problems(cli("check", NAME, root=tmp_path / "root"))
    assert len(problems) == 1 and problems[0].startswith(f"{raw / 'labelsTr' / 'c1.png'}: label values [3] not "
                                                         f"declared"), problems


def test_convert_folder_reads_palette_masks_as_indices(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    idx = np.zeros((12, 12), np.uint8)
    idx[2:6, 2:6], idx[7:10, 7:10] = 1, 2
    Image.fromarray(np.full((12, 12), 90, np.uint8)).save(src / "images" / "a.png")
    _palette(idx).save(src / "labels" / "a.png")
    r = cli("convert", "folder", "--images", src / "images", "--labels", src / "labels", "--name", "Pal",
            root=tmp_path / "root")
    assert r.exit_code == 0, r.output
    out = tmp_path / "root" / "raw" / "Dataset500_Pal" / "labelsTr" / "a.png"
    np.testing.assert_array_equal(np.asarray(Image.open(out)), idx)


def test_colour_coded_label_refused_with_how_to_convert(tmp_path):
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[2:6, 2:6] = (255, 0, 0)
    raw = _png_dataset(tmp_path / "root", [Image.fromarray(rgb)])
    problems = check_problems(cli("check", NAME, root=tmp_path / "root"))
    line = problems[0]
    assert len(problems) == 1 and f"{raw / 'labelsTr' / 'c0.png'}: colour-coded label map (pixel 2,2 is RGB (255, 0, 0))" in line, line
    assert "greyscale or palette (indexed) image whose values are the class numbers" in line
    grey = np.zeros((12, 12, 3), np.uint8)
    grey[2:6, 2:6] = 1                                        # a grey map stored as RGB: one channel is kept
    Image.fromarray(grey).save(raw / "labelsTr" / "c0.png")
    assert cli("check", NAME, root=tmp_path / "root").exit_code == 0


# ---------------------------------------------------------------- NaN / Inf

@pytest.mark.parametrize("command", ["check", "plan"])
def test_nan_refused_by_check_and_plan(tmp_path, command):
    root = tmp_path / "root"
    raw = raw_dataset(root)
    bad = _nan_image(raw / "imagesTr" / "case1_0000.nii.gz")  # NIfTI: ITK's reader would give 0 for them
    r = cli(command, NAME, root=root)
    line = check_problems(r) if command == "check" else [one_line_error(r)]
    assert f"{bad}: 3 NaN/Inf value(s) among 1536 voxels" in line[0] and len(line) == 1, r.output
    assert not R.plans_file(root, DS).exists()


def test_nan_added_after_planning_refused_by_preprocess(planned_root):
    folder = R.config_dir(planned_root, DS, "2d")
    for p in folder.glob("case2.*"):
        p.unlink()
    bad = _nan_image(R.raw_dir(planned_root, DS) / "imagesTr" / "case2_0000.nii.gz")
    r = cli("preprocess", NAME, "-c", "2d", root=planned_root)
    assert r.exit_code == 2, r.output
    assert f"{bad}: 3 NaN/Inf value(s)" in one_line_error(r)
    assert not list(folder.glob("case2*")) and not list(folder.glob(".*part*"))


@pytest.mark.parametrize("ending", [".nii.gz", ".mha"])
def test_nan_refused_by_predict(trained_root, tmp_path, ending):
    src = tmp_path / "in"
    bad = _nan_image(src / f"scan_0000{ending}")
    r = cli(*PRED, "-i", src, "-o", tmp_path / "out", root=trained_root)
    assert r.exit_code == 2, r.output
    assert f"{bad}: 3 NaN/Inf value(s)" in one_line_error(r)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- CT without foreground

def test_ct_dataset_without_foreground_refused_at_plan(tmp_path):
    rng = np.random.default_rng(0)
    cases = [blob_case(f"case{i}", (6, 16, 16), (3.0, 1.0, 1.0), rng, ct=True) for i in range(3)]
    for c in cases:
        c["label"][:] = 0
    write_raw_dataset(tmp_path / "root", NAME, cases, channel_names={"0": "CT"})
    r = cli("plan", NAME, root=tmp_path / "root")
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert f"{DS}: channel 0 'CT' is normalised as CT" in line and "no foreground voxels" in line, line
    assert not R.plans_file(tmp_path / "root", DS).exists()


# ---------------------------------------------------------------- a header declaring a huge image

def test_huge_declared_size_refused_before_allocating(trained_root, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 2), np.float32)), str(src / "big_0000.nii"))
    data = bytearray((src / "big_0000.nii").read_bytes())
    data[40:56] = struct.pack("<8h", 3, 30000, 30000, 30000, 1, 1, 1, 1)  # 2.7e13 voxels, 108 TB as float32
    (src / "big_0000.nii").write_bytes(bytes(data))
    r = cli(*PRED, "-i", src, "-o", tmp_path / "out", root=trained_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert f"{src / 'big_0000.nii'}: the header declares an image of 30000 x 30000 x 30000 voxels" in line, line
    assert "of available memory" in line and "SALSEG_MAX_IMAGE_VOXELS" in line
    assert not (tmp_path / "out").exists()

    img = R.raw_dir(trained_root, DS) / "imagesTr" / "case0_0000.nii.gz"       # the limit can be set
    monkeypatch.setenv("SALSEG_MAX_IMAGE_VOXELS", "1000")
    r = cli(*PRED, "-i", img, "-o", tmp_path / "out", root=trained_root)
    assert r.exit_code == 2 and "above the limit of 1e+03 ($SALSEG_MAX_IMAGE_VOXELS)" in one_line_error(r)
    monkeypatch.setenv("SALSEG_MAX_IMAGE_VOXELS", "lots")
    r = cli(*PRED, "-i", img, "-o", tmp_path / "out", root=trained_root)
    assert r.exit_code == 2 and "$SALSEG_MAX_IMAGE_VOXELS='lots': expected a positive whole number" in \
        one_line_error(r)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- file names that are not UTF-8

def test_non_utf8_name_refused_by_check_plan_and_predict(tmp_path, trained_root):
    root = tmp_path / "fresh"
    raw = raw_dataset(root)
    os.rename(raw / "imagesTr" / "case1_0000.nii.gz", os.fsencode(raw / "imagesTr") + b"/case\xff1_0000.nii.gz")
    shown = f"{raw / 'imagesTr'}/case\\xff1_0000.nii.gz: file name is not valid UTF-8"
    for command in ("check", "plan"):                       # SimpleITK would abort the process (exit 134)
        problems = check_problems(cli(command, NAME, root=root))
        assert any(p.startswith(shown) for p in problems), problems
    src = tmp_path / "in"
    src.mkdir()
    (src / "ok_0000.nii.gz").write_bytes((raw / "imagesTr" / "case0_0000.nii.gz").read_bytes())
    with open(os.fsencode(src) + b"/scan\xe9_0000.nii.gz", "wb") as f:
        f.write((raw / "imagesTr" / "case0_0000.nii.gz").read_bytes())
    r = cli(*PRED, "-i", src, "-o", tmp_path / "out", root=trained_root)
    assert r.exit_code == 2, r.output
    assert f"{src}/scan\\xe9_0000.nii.gz: file name is not valid UTF-8" in one_line_error(r)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- ITK's warnings

def test_itk_warning_is_one_log_line(tmp_path, caplog):
    props = volume_props((3, 4, 4), (1.0, 1.0, 1.0), direction=[1, 0, 0, 0, 1, 0, 0, 0.5, 1])  # not orthogonal
    with caplog.at_level(logging.WARNING, logger="salseg.itk"):
        write_image(np.zeros((3, 4, 4), np.float32), props, tmp_path / "x.nii.gz")
    records = [r for r in caplog.records if r.name == "salseg.itk"]
    assert records, "ITK gave no warning"
    assert records[0].getMessage() == "NiftiImageIO: Non-orthogonal direction matrix coerced to orthogonal"


@pytest.mark.parametrize("ending,dtype", [(".nii.gz", np.float32), (".nii", np.float64), (".nii.gz", np.int16)])
def test_nifti_nonfinite_count_across_chunks(tmp_path, monkeypatch, ending, dtype):
    """The NIfTI count streams the file in chunks; odd chunk sizes split values: the count stays numpy's."""
    from salseg.dataset import integrity

    rng = np.random.default_rng(1)
    arr = rng.normal(size=(5, 7, 9)).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        arr.flat[rng.choice(arr.size, 17, replace=False)] = rng.choice([np.nan, np.inf, -np.inf], 17)
    path = tmp_path / f"x{ending}"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    want = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    for chunk in (7, 1000, 1 << 20):
        monkeypatch.setattr(integrity, "CHUNK", chunk)
        assert integrity.verify_image_file(path, count_nonfinite=True) == want
