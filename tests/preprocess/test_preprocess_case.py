"""preprocess_case / revert_preprocessing: geometry, label indices, round trips."""

import numpy as np
import pytest

from salseg.errors import DataError
from salseg.preprocess import labels_to_indices, preprocess_case, revert_preprocessing

from tests.plan.rawdata_helpers import volume_props
from tests.typed_plans import make_plans


def _plans(spacing, dim=3, values=(0, 21, 22, 23), norm="zscore", mask=False):
    cfg = {"dim": dim, "data_identifier": "3d_fullres" if dim == 3 else "2d", "spacing": list(spacing),
           "normalization": [norm], "use_mask_for_norm": [mask],
           "intensity_properties": {"0": {"mean": 0.0, "std": 1.0, "percentile_00_5": -5.0, "percentile_99_5": 5.0}}}
    return make_plans({"c": cfg}, values)


def _case(shape=(12, 30, 32), pad=(2, 3, 4)):
    rng = np.random.default_rng(0)
    data = np.zeros((1, *shape), np.float32)
    inner = tuple(slice(p, s - p) for p, s in zip(pad, shape))
    data[(0,) + inner] = rng.normal(10, 2, size=[s - 2 * p for p, s in zip(pad, shape)])
    seg = np.zeros(shape, np.int16)
    seg[4:8, 8:20, 10:20] = 21
    seg[4:8, 12:16, 20:26] = 22
    seg[5:7, 9:11, 12:14] = 23  # small structure
    return data, seg


def test_isotropic_round_trip_is_exact():
    data, seg = _case()
    props = volume_props(seg.shape, (1.0, 1.0, 1.0))
    plans = _plans([1.0, 1.0, 1.0])
    d, s, p = preprocess_case(data, props, plans, "c", seg, case_id="x")
    assert p["crop_bbox"] == [[2, 10], [3, 27], [4, 28]]
    assert list(d.shape) == [1, 8, 24, 24] and s.dtype == np.int16 and set(np.unique(s)) == {0, 1, 2, 3}
    assert p["shape_after_crop"] == p["shape_after_resample"] == [8, 24, 24]
    onehot = np.stack([(s == k) for k in range(4)]).astype(np.float32)
    back = revert_preprocessing(onehot, p)
    assert back.shape == (4, *seg.shape)
    values = np.array([0, 21, 22, 23])
    assert np.array_equal(values[back.argmax(0)], seg)
    assert np.all(back[0][:2] == 1)   # outside the crop: background probability 1
    # normalised with the cropped image's statistics
    crop = data[:, 2:10, 3:27, 4:28]
    assert np.allclose(d, (crop - crop.mean()) / crop.std(), atol=1e-4)
    for k in ("case_id", "original", "crop_bbox", "shape_after_crop", "spacing_after_crop", "spacing",
              "shape_after_resample", "class_locations"):
        assert k in p
    for k, locs in p["class_locations"].items():
        assert locs and all(s[tuple(loc)] == int(k) for loc in locs)


def test_anisotropic_round_trip_nearly_exact():
    data, seg = _case(shape=(12, 40, 40))
    props = volume_props(seg.shape, (4.0, 1.0, 1.0))
    plans = _plans([3.0, 0.75, 0.75])
    d, s, p = preprocess_case(data, props, plans, "c", seg, case_id="y")
    assert p["separate_axis"] == 0
    assert p["shape_after_resample"] == [round(8 * 4 / 3), round(34 * 4 / 3), round(32 * 4 / 3)]
    assert list(d.shape[1:]) == list(s.shape) == p["shape_after_resample"]
    onehot = np.stack([(s == k) for k in range(4)]).astype(np.float32)
    back = np.array([0, 21, 22, 23])[revert_preprocessing(onehot, p).argmax(0)]
    assert (back == seg).mean() > 0.98
    for v in (21, 22):
        inter = ((back == v) & (seg == v)).sum()
        assert 2 * inter / ((back == v).sum() + (seg == v).sum()) > 0.85


def test_2d_config_keeps_z_and_unlabelled_case():
    data, seg = _case()
    props = volume_props(seg.shape, (5.0, 1.0, 1.0))
    plans = _plans([0.5, 0.5], dim=2)
    d, s, p = preprocess_case(data, props, plans, "c", None)
    assert s is None and p["class_locations"] == {}
    assert p["spacing"] == [5.0, 0.5, 0.5] and list(d.shape[1:]) == [8, 48, 48]


def test_labels_to_indices_and_undeclared_values():
    seg = np.array([[0, 21], [23, 22]], np.int16)
    assert np.array_equal(labels_to_indices(seg, [0, 21, 22, 23]), [[0, 1], [3, 2]])
    with pytest.raises(DataError, match=r"\[5\]"):
        labels_to_indices(np.array([0, 5, 21]), [0, 21], "case.nii.gz")
    data, seg = _case()
    seg[0, 0, 0] = 7
    with pytest.raises(DataError, match="not declared"):
        preprocess_case(data, volume_props(seg.shape, (1, 1, 1)), _plans([1, 1, 1]), "c", seg, case_id="bad")


def test_mask_norm_marks_outside_as_minus_one():
    data, seg = _case()
    data[0, 5, 10, 10] = 0   # a hole inside the nonzero region is filled, not masked
    d, s, p = preprocess_case(data, volume_props(seg.shape, (1, 1, 1)), _plans([1, 1, 1], mask=True), "c", seg)
    assert (s == -1).sum() == 0  # the nonzero region is a box: everything inside the crop is in the mask
    data2 = data.copy()
    data2[0, 2:10, 3:8, 4:9] = 0  # a zero corner inside the crop box (touches the border: not a hole)
    seg2 = seg.copy()
    d2, s2, _ = preprocess_case(data2, volume_props(seg.shape, (1, 1, 1)), _plans([1, 1, 1], mask=True), "c", seg2)
    assert np.all(s2[:, :5, :5] == -1) and np.all(d2[0, :, :5, :5] == 0)
