"""The enlarged initial patch: the sampler crops enough for the sampled rotation and zoom, the spatial transform
crops the centre back, so rotated / zoomed-out patches have image content in their corners."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from batchgenerators.augmentations.utils import rotate_coords_2d, rotate_coords_3d

from salseg.train.augment import AugmentParams, augmentation_params, build_transforms, initial_patch_size
from salseg.train.data import Case, PatchSampler

OFF = dict(p_rotation=0.0, p_scale=0.0, mirror=False, p_noise=0.0, p_blur=0.0, p_brightness=0.0, p_contrast=0.0,
           p_lowres=0.0, p_gamma_inverted=0.0, p_gamma=0.0)


def _constant_case(shape=(1, 200, 200)) -> Case:
    """A constant image; its only "foreground location" is the centre, so oversampled windows sit there (away
    from the image border, where any crop is padded)."""
    seg = np.ones(shape, np.int16)
    return Case("const", np.ones((1, *shape), np.float32), seg, {}, {1: np.array([[0, 100, 100]])})


@pytest.mark.parametrize("patch, dim, want", [((32, 32), 2, (-180, 180)), ((32, 48), 2, (-180, 180)),
                                              ((32, 49), 2, (-15, 15)), ((96, 40), 2, (-15, 15)),
                                              ((16, 64, 64), 3, (-30, 30)), ((64, 64, 64), 3, (-30, 30))])
def test_rotation_range_follows_patch_aspect(patch, dim, want):
    assert augmentation_params(patch, dim).rotation_deg == want


def _corners(patch):
    half = (np.asarray(patch, float) - 1) / 2
    return np.stack(np.meshgrid(*[[-h, h] for h in half], indexing="ij")).reshape(len(patch), -1)


def test_initial_patch_covers_every_rotation_and_scale():
    rng = np.random.default_rng(0)
    for patch in ((32, 32), (40, 96), (20, 48, 64)):
        dim = len(patch)
        params = augmentation_params(patch, dim)
        crop = initial_patch_size(patch, params)
        assert all(c >= p and (c - p) % 2 == 0 for c, p in zip(crop, patch))
        lo, hi = np.deg2rad(params.rotation_deg)
        reach = np.zeros(dim)
        for _ in range(2000):  # batchgenerators' own rotation of the patch corners, at the largest scale
            a = rng.uniform(lo, hi, 3)
            pts = rotate_coords_2d(_corners(patch), a[0]) if dim == 2 else rotate_coords_3d(_corners(patch), *a)
            reach = np.maximum(reach, np.abs(pts * max(params.scale)).max(1))
        assert np.all(reach <= (np.asarray(crop) - 1) / 2 + 1e-6), (patch, crop, reach)
        assert np.all(reach > (np.asarray(crop) - 1) / 2 - 0.1 * np.asarray(crop))  # and not much larger
    # without rotation or scaling nothing is enlarged
    assert initial_patch_size((32, 48), AugmentParams((-180, 180), **OFF)) == [32, 48]


@pytest.mark.parametrize("angle, scale", [(45.0, 1.0), (45.0, 1.4), (-135.0, 1.4), (30.0, 1.4)])
def test_constant_image_rotated_has_no_padded_corners(angle, scale):
    patch = (32, 32)
    crop = initial_patch_size(patch, augmentation_params(patch, 2))
    forced = dataclasses.replace(AugmentParams((angle, angle), **OFF), p_rotation=1.0, p_scale=1.0,
                                 scale=(scale, scale))
    for c in (crop, list(patch)):  # enlarged: full corners; at the final size (the old behaviour): padded
        sampler = PatchSampler([_constant_case()], patch, 8, "2d", oversample=1.0, crop_size=c)
        batch = sampler.sample(np.random.default_rng(0))
        np.random.seed(0)
        random.seed(0)
        data, seg = build_transforms(patch, 2, forced)(batch["data"], batch["seg"].astype(np.float32),
                                                       np.random.default_rng(0))
        assert data.shape == (8, 1, 32, 32) and seg.shape == (8, 1, 32, 32)
        if c == crop:
            assert np.all(seg == 1) and np.allclose(data, 1.0, atol=1e-4)
        else:
            assert np.any(seg == -1) and np.any(np.abs(data - 1.0) > 0.5)


def test_enlarged_crop_is_centred_on_the_same_window():
    rng = np.random.default_rng(4)
    data = rng.normal(size=(2, 9, 40, 44)).astype(np.float32)
    seg = np.zeros((9, 40, 44), np.int16)
    seg[4, 30:33, 2:5] = 1  # foreground near the border
    case = Case("c", data, seg, {}, {1: np.argwhere(seg == 1)})
    for mode, patch, crop in (("2d", (16, 16), (40, 36)), ("2.5d", (16, 16), (40, 36)),
                              ("3d", (4, 16, 16), (8, 30, 24))):
        plain = PatchSampler([case], patch, 4, mode, 3, oversample=0.5)
        big = PatchSampler([case], patch, 4, mode, 3, oversample=0.5, crop_size=crop)
        a, b = plain.sample(np.random.default_rng(1)), big.sample(np.random.default_rng(1))
        off = [(c - p) // 2 for c, p in zip(crop, patch)]
        window = tuple([Ellipsis] + [slice(o, o + p) for o, p in zip(off, patch)])
        np.testing.assert_array_equal(b["data"][window], a["data"])
        np.testing.assert_array_equal(b["seg"][window], a["seg"])
        assert np.all((a["seg"][2:] == 1).reshape(2, -1).any(1))  # the oversampled half still holds foreground
    with pytest.raises(ValueError, match="same parity"):
        PatchSampler([case], (16, 16), 2, "2d", crop_size=(17, 16))
