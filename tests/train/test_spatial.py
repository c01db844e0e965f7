"""The CPU spatial transform (salseg.train.spatial) against batchgenerators' SpatialTransform on the enlarged crop:
the same draws, labels identical, data equal to float precision, while reading only the voxels it needs."""

from __future__ import annotations

import numpy as np
import pytest
from batchgenerators.transforms.spatial_transforms import SpatialTransform

from salseg.train.augment import augmentation_params, initial_patch_size
from salseg.train.data import Case, PatchSampler, crop_pad
from salseg.train.spatial import augment_windows


def _reference(crops: np.ndarray, segs: np.ndarray, patch, angles, p_rot, p_scale, scale):
    """batchgenerators on the materialised enlarged crops, as the loader ran it before."""
    dim = len(patch)
    kw = dict(angle_x=angles[0], angle_y=angles[1] if dim == 3 else (0, 0), angle_z=angles[2] if dim == 3 else (0, 0))
    t = SpatialTransform(list(patch), patch_center_dist_from_border=None, do_elastic_deform=False, do_rotation=True,
                         p_rot_per_axis=1, do_scale=True, scale=scale, border_mode_data="constant",
                         border_cval_data=0, order_data=3, border_mode_seg="constant", border_cval_seg=-1,
                         order_seg=0, random_crop=False, p_el_per_sample=0, p_scale_per_sample=p_scale,
                         p_rot_per_sample=p_rot, independent_scale_for_each_axis=False, **kw)
    out = t(data=crops, seg=segs.astype(np.float32))
    return out["data"], out["seg"]


def _case(shape, seed=0) -> Case:
    rng = np.random.default_rng(seed)
    seg = np.zeros(shape, np.int16)
    seg[tuple(slice(n // 4, 3 * n // 4) for n in shape)] = 1
    seg[tuple(slice(n // 3, n // 2) for n in shape)] = 2
    data = (seg[None] * 2.0 + rng.normal(size=(2, *shape))).astype(np.float32)
    return Case("c", data, seg, {}, {1: np.argwhere(seg == 1), 2: np.argwhere(seg == 2)})


@pytest.mark.parametrize("mode,shape,patch,p", [("2d", (5, 40, 56), (24, 32), 1.0),
                                                ("2d", (5, 40, 56), (24, 32), 0.2),
                                                ("3d", (20, 24, 28), (12, 16, 16), 1.0),
                                                ("2d", (4, 12, 14), (24, 32), 1.0)])   # case << crop: mostly padding
def test_equals_batchgenerators_on_the_enlarged_crop(mode, shape, patch, p):
    dim = len(patch)
    params = augmentation_params(patch, dim)
    crop = initial_patch_size(patch, params)
    sampler = PatchSampler([_case(shape)], patch, 12, mode, oversample=0.5, crop_size=crop)
    lo, hi = (float(np.deg2rad(v)) for v in params.rotation_deg)
    angles = [(lo, hi)] * 3
    windows = sampler.windows(np.random.default_rng(1))
    assert any(w.start[d] < 0 or w.start[d] + w.size[d] > w.seg.shape[d] for w in windows for d in range(dim))
    crops = np.stack([crop_pad(w.data, w.start, w.size, 0.0) for w in windows])
    segs = np.stack([crop_pad(w.seg, w.start, w.size, -1)[None] for w in windows])
    np.random.seed(7)
    ref_d, ref_s = _reference(crops, segs, patch, angles, p, p, params.scale)
    np.random.seed(7)
    got_d, got_s = augment_windows(windows, patch, angles, p, tuple(params.scale), p)
    assert got_d.shape == ref_d.shape == (12, 2, *patch) and got_s.shape == ref_s.shape == (12, 1, *patch)
    np.testing.assert_array_equal(got_s, ref_s)
    np.testing.assert_allclose(got_d, ref_d, rtol=0, atol=1e-5)
    assert len(np.unique(got_s)) >= 3            # labels and padding present: the comparison is not vacuous
    # with other draws the result differs: the seed, not the data alone, decides
    np.random.seed(8)
    other, _ = augment_windows(windows, patch, angles, p, tuple(params.scale), p)
    assert np.abs(other - ref_d).max() > 0.1


def test_untransformed_samples_are_the_window_and_the_sampler_draws_are_unchanged():
    """p = 0: every sample is the chosen window itself, bit for bit; ``windows`` draws as ``sample`` does."""
    patch = (16, 20)
    case = _case((4, 30, 30))
    sampler = PatchSampler([case], patch, 6, "2.5d", 3, crop_size=(24, 28))
    windows = sampler.windows(np.random.default_rng(3))
    batch = sampler.sample(np.random.default_rng(3))
    np.testing.assert_array_equal(np.stack([crop_pad(w.data, w.start, w.size, 0.0) for w in windows]), batch["data"])
    data, seg = augment_windows([type(w)(w.data.reshape(-1, *w.data.shape[-2:]), w.seg, w.start, w.size)
                                 for w in windows], patch, [(0, 0)] * 3, 0.0, (1.0, 1.0), 0.0)
    centre = batch["data"][:, :, :, 4:20, 4:24].reshape(6, -1, *patch)
    np.testing.assert_array_equal(data, centre)
    np.testing.assert_array_equal(seg, batch["seg"][:, :, 4:20, 4:24].astype(np.float32))
