"""Fault 1: a truncated or corrupt image is refused everywhere, naming the file (SimpleITK alone zero-fills it)."""

import numpy as np
import pytest
import SimpleITK as sitk

from salseg import results as R
from salseg.dataset.integrity import verify_image_file
from salseg.dataset.io import read_image
from salseg.errors import DataError
from tests.faults.helpers import DS, NAME, cli, one_line_error, raw_dataset

FORMATS = [(".nii.gz", False), (".nii", False), (".mha", True), (".mha", False), (".mhd", False), (".nrrd", True),
           (".nrrd", False), (".png", False), (".tif", False)]


def _write(path, arr, compress):
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path), useCompression=compress)
    return path


def _data_file(path):
    return path.with_suffix(".raw") if path.suffix == ".mhd" else path


@pytest.mark.parametrize("ending,compress", FORMATS)
def test_each_format_cut_is_refused(tmp_path, ending, compress):
    rng = np.random.default_rng(1)
    arr = rng.integers(1, 200, size=(40, 40) if ending in (".png", ".tif") else (4, 20, 30)).astype(np.uint8)
    path = _write(tmp_path / f"img{ending}", arr, compress)
    verify_image_file(path)                                   # a whole file passes
    assert np.array_equal(read_image(path)[0][0].reshape(arr.shape), arr)
    target = _data_file(path)
    whole = target.read_bytes()
    for cut in (len(whole) // 2, 200):
        target.write_bytes(whole[:cut])
        # SimpleITK alone may read it (zeros where data is missing); salseg refuses it, naming the file
        with pytest.raises(DataError, match=r"img\.[\w.]+: (truncated or corrupt|unreadable image)"):
            read_image(path)


def test_gzip_crc_and_length_checked(tmp_path):
    arr = np.arange(4 * 20 * 30, dtype=np.int16).reshape(4, 20, 30)
    path = _write(tmp_path / "img.nii.gz", arr, True)
    whole = bytearray(path.read_bytes())
    for pos in (-8, -3):                                      # CRC-32, then ISIZE of the gzip trailer
        bad = bytearray(whole)
        bad[pos] ^= 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(DataError, match="gzip"):
            verify_image_file(path)


def test_nifti_declared_size(tmp_path):
    """An uncompressed NIfTI whose voxel data is shorter than the header declares (gzip stream intact)."""
    import gzip

    arr = np.ones((4, 20, 30), np.float32)
    path = _write(tmp_path / "img.nii", arr, False)
    raw = path.read_bytes()
    gz = tmp_path / "short.nii.gz"
    gz.write_bytes(gzip.compress(raw[: len(raw) - 100]))     # a valid gzip stream of a cut file
    with pytest.raises(DataError, match="declares"):
        verify_image_file(gz)


def _cut(path, size=None):
    b = path.read_bytes()
    path.write_bytes(b[: min(size, len(b) // 2) if size is not None else len(b) // 2])


@pytest.fixture
def raw_root(tmp_path):
    root = tmp_path / "root"
    raw_dataset(root)
    return root


def test_check_lists_every_truncated_file(raw_root):
    raw = R.raw_dir(raw_root, DS)
    _cut(raw / "imagesTr" / "case1_0000.nii.gz")
    _cut(raw / "labelsTr" / "case2.nii.gz", 200)
    r = cli("check", NAME, "-j", "2", root=raw_root)
    assert r.exit_code == 2, r.output
    assert "case1_0000.nii.gz: truncated" in r.output and "case2.nii.gz: truncated" in r.output, r.output
    assert "OK" not in r.output


@pytest.mark.parametrize("size", [None, 200])
def test_plan_refuses_and_writes_nothing(raw_root, size):
    _cut(R.raw_dir(raw_root, DS) / "imagesTr" / "case1_0000.nii.gz", size)
    r = cli("plan", NAME, root=raw_root)
    assert r.exit_code == 2, r.output
    assert "case1_0000.nii.gz" in one_line_error(r)
    assert not R.plans_file(raw_root, DS).exists()


@pytest.mark.parametrize("size", [None, 200])
def test_preprocess_refuses_the_case(planned_root, size):
    folder = R.config_dir(planned_root, DS, "2d")
    for p in folder.iterdir():
        p.unlink()
    _cut(R.raw_dir(planned_root, DS) / "labelsTr" / "case3.nii.gz", size)
    r = cli("preprocess", NAME, "-c", "2d", root=planned_root)
    assert r.exit_code == 2, r.output
    assert "case3.nii.gz" in one_line_error(r)
    assert not list(folder.glob("case3*")) and not list(folder.glob(".*part*"))


@pytest.mark.parametrize("size", [None, 200])
def test_predict_refuses_before_writing(trained_root, tmp_path, size):
    img = tmp_path / "new_0000.nii.gz"
    img.write_bytes((R.raw_dir(trained_root, DS) / "imagesTr" / "case0_0000.nii.gz").read_bytes())
    _cut(img, size)
    out = tmp_path / "out"
    r = cli("predict", "-i", img, "-o", out, "-d", NAME, "-n", "unet", "-c", "2d", "--device", "cpu", "-q",
            root=trained_root)
    assert r.exit_code == 2, r.output
    assert "new_0000.nii.gz" in one_line_error(r)
    assert not out.exists() or not list(out.iterdir())
