"""Resampling and normalisation against direct scipy / numpy computations."""

import numpy as np
import pytest
from scipy import ndimage

from salseg.errors import ConfigError
from salseg.preprocess.normalize import normalize
from salseg.preprocess.resample import new_shape, resample_image, resample_seg, separate_axis


def test_new_shape_and_separate_axis():
    assert new_shape([10, 100, 100], [5.0, 1.0, 1.0], [2.5, 2.0, 0.5]) == [20, 50, 200]
    assert separate_axis([5.0, 1.0, 1.0]) == 0
    assert separate_axis([1.0, 1.0, 1.0], [1.0, 1.0, 4.0]) == 2
    assert separate_axis([2.0, 1.0, 1.0]) is None
    assert separate_axis([5.0, 5.0, 1.0]) is None  # no single thick axis


def test_image_order3_matches_smooth_function():
    z, y, x = np.meshgrid(np.arange(8), np.arange(20), np.arange(20), indexing="ij")
    f = lambda zz, yy, xx: np.sin(0.3 * yy) + np.cos(0.25 * xx) + 0.1 * zz  # noqa: E731
    out = resample_image(f(z, y, x)[None].astype(np.float32), [8, 30, 30])
    # grid mode: new voxel centres at (i + 0.5) * 20/30 - 0.5
    c = (np.arange(30) + 0.5) * 20 / 30 - 0.5
    zz, yy, xx = np.meshgrid(np.arange(8), c, c, indexing="ij")
    inner = (slice(None), slice(3, -3), slice(3, -3))
    assert np.abs(out[0][inner] - f(zz, yy, xx)[inner]).max() < 0.02
    assert out.dtype == np.float32


def test_seg_one_hot_argmax_equals_direct_reference_and_keeps_small_structure():
    seg = np.zeros((1, 30, 30), np.int16)
    seg[0, 5:25, 5:25] = 1
    seg[0, 14:17, 14:17] = 2          # 3x3 structure: survives downsampling to 2/3 size
    out = resample_seg(seg, [1, 20, 20])
    ref = np.argmax(np.stack([ndimage.zoom((seg == c).astype(np.float32), (1, 2 / 3, 2 / 3), order=1,
                                           mode="nearest", grid_mode=True) for c in range(3)]), 0)
    assert np.array_equal(out, ref)
    assert (out == 2).sum() >= 1
    # values -1 are a class too
    seg2 = seg.copy()
    seg2[0, :2] = -1
    assert -1 in np.unique(resample_seg(seg2, [1, 20, 20]))


def test_anisotropic_thick_axis_is_nearest():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 6, 10, 10)).astype(np.float32)
    out = resample_image(data, [9, 10, 10], axis=0)
    for z in range(9):  # every output slice is a copy of one input slice (nearest along z)
        assert min(np.abs(out[0, z] - data[0, k]).max() for k in range(6)) < 1e-6
    seg = (data[0] > 0).astype(np.int16)
    outs = resample_seg(seg, [9, 10, 10], axis=0)
    for z in range(9):
        assert any(np.array_equal(outs[z], seg[k]) for k in range(6))


def test_normalization_schemes():
    rng = np.random.default_rng(1)
    x = rng.normal(50, 10, size=(3, 4, 16, 16)).astype(np.float32)
    props = {"0": {"mean": 45.0, "std": 5.0, "percentile_00_5": 30.0, "percentile_99_5": 60.0}}
    out = normalize(x, ["ct", "zscore", "rgb"], props)
    assert np.allclose(out[0], (np.clip(x[0], 30, 60) - 45) / 5, atol=1e-5)
    assert np.allclose(out[1], (x[1] - x[1].mean()) / x[1].std(), atol=1e-4)
    assert np.allclose(out[2], (x[2] / 255 - (x[2] / 255).mean()) / (x[2] / 255).std(), atol=1e-4)
    mask = np.zeros((4, 16, 16), bool)
    mask[:, 4:12, 4:12] = True
    m = normalize(x[1:2], ["zscore"], None, [True], mask)[0]
    assert np.all(m[~mask] == 0)
    assert m[mask].mean() == pytest.approx(0, abs=1e-5) and m[mask].std() == pytest.approx(1, abs=1e-4)
    with pytest.raises(ConfigError):
        normalize(x[:1], ["ct"], {})
    with pytest.raises(ConfigError):
        normalize(x, ["zscore"])
