import numpy as np
import pytest
import SimpleITK as sitk

from salseg.dataset.io import read_image, read_label, write_image
from salseg.dataset.naming import next_free_id, resolve_dataset
from salseg.errors import SalsegError


def _mk(root, *names):
    for n in names:
        (root / "raw" / n).mkdir(parents=True)


def test_resolve_by_name_id_full_name(tmp_path):
    _mk(tmp_path, "Dataset027_ACDC", "Dataset008_Synapse", "Dataset500_Knee")
    assert resolve_dataset(tmp_path, "ACDC") == "Dataset027_ACDC"
    assert resolve_dataset(tmp_path, "acdc") == "Dataset027_ACDC"
    assert resolve_dataset(tmp_path, "27") == "Dataset027_ACDC"
    assert resolve_dataset(tmp_path, 8) == "Dataset008_Synapse"
    assert resolve_dataset(tmp_path, "Dataset500_Knee") == "Dataset500_Knee"
    with pytest.raises(SalsegError) as e:
        resolve_dataset(tmp_path, "Brain")
    assert "Dataset027_ACDC" in str(e.value) and "Dataset500_Knee" in str(e.value)
    assert next_free_id(tmp_path, 27) == 501 and next_free_id(tmp_path, 42) == 42


def test_ambiguous_lists_matches(tmp_path):
    _mk(tmp_path, "Dataset027_ACDC", "Dataset127_ACDC")
    with pytest.raises(SalsegError, match="Dataset027_ACDC, Dataset127_ACDC"):
        resolve_dataset(tmp_path, "ACDC")


def test_io_round_trip_rgb_2d(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "a.png"))
    arr, props = read_image(tmp_path / "a.png")
    assert arr.shape == (3, 1, 7, 9) and arr.dtype == np.float32 and props["ndim"] == 2
    np.testing.assert_array_equal(arr[:, 0], np.moveaxis(rgb, -1, 0))
    write_image(arr[1].astype(np.uint8), props, tmp_path / "g.png")
    back, p2 = read_label(tmp_path / "g.png")
    np.testing.assert_array_equal(back[0], rgb[..., 1]) and p2["shape"] == [1, 7, 9]


def test_io_round_trip_3d_oblique(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    img = sitk.GetImageFromArray(arr)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    img.SetSpacing((0.7, 0.8, 3.5)); img.SetOrigin((-10.5, 3.25, 40.0)); img.SetDirection(direction)
    sitk.WriteImage(img, str(tmp_path / "v.nii.gz"))
    data, props = read_image(tmp_path / "v.nii.gz")
    assert props["spacing"] == pytest.approx([3.5, 0.8, 0.7]) and props["shape"] == [2, 3, 4]
    write_image(data[0].astype(np.int16), props, tmp_path / "w.nii.gz")
    out = sitk.ReadImage(str(tmp_path / "w.nii.gz"))
    ref = sitk.ReadImage(str(tmp_path / "v.nii.gz"))
    assert out.GetSpacing() == ref.GetSpacing() and out.GetOrigin() == ref.GetOrigin()
    np.testing.assert_allclose(out.GetDirection(), ref.GetDirection(), atol=1e-7)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), arr)
