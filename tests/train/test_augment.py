"""Slice-consistent augmentation: the K slices of a 2.5d sample get one spatial transform and one set of intensity
parameters (only the noise field differs); the channels of an RGB image keep their own draws."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from salseg.train.augment import AugmentParams, augmentation_params, build_transforms
from salseg.train.intensity import augment_intensity, contrast, gamma

OFF = dict(p_rotation=0.0, p_scale=0.0, mirror=False, p_noise=0.0, p_blur=0.0, p_brightness=0.0, p_contrast=0.0,
           p_lowres=0.0, p_gamma_inverted=0.0, p_gamma=0.0)
ALWAYS = dict(p_rotation=1.0, p_scale=1.0, p_blur=1.0, p_blur_channel=1.0, p_brightness=1.0, p_contrast=1.0,
              p_lowres=1.0, p_lowres_channel=1.0, p_gamma_inverted=1.0, p_gamma=1.0)


def _identical_slices(n: int, k: int = 3, c: int = 1, size: int = 24) -> np.ndarray:
    plane = np.random.default_rng(0).normal(size=(n, 1, c, size, size)).astype(np.float32)
    return np.repeat(plane, k, axis=1)  # (B, K, C, Y, X) with K identical slices


def _augment(data, params, seed=0):
    np.random.seed(seed)
    random.seed(seed)
    seg = (data[:, data.shape[1] // 2, :1] > 0).astype(np.float32) if data.ndim == 5 else \
        (data[:, :1] > 0).astype(np.float32)
    return build_transforms(data.shape[-2:], 2, params)(data.copy(), seg, np.random.default_rng(seed))


@pytest.mark.parametrize("settings", [dict(p_noise=0.0), dict(ALWAYS, p_noise=0.0)], ids=["defaults", "always"])
def test_identical_slices_stay_identical_without_noise(settings):
    data = _identical_slices(200 if "p_blur" not in settings else 40)
    params = dataclasses.replace(augmentation_params((24, 24), 2), **settings)
    out, _ = _augment(data, params)
    assert out.shape == data.shape
    assert all(np.array_equal(s[0], s[j]) for s in out for j in range(1, 3))
    assert np.mean([not np.allclose(o, d) for o, d in zip(out, data)]) > (0.99 if "p_blur" in settings else 0.3)


def test_noise_field_differs_per_slice_with_one_variance():
    data = _identical_slices(20, k=3, size=48)
    params = dataclasses.replace(AugmentParams((0.0, 0.0), **OFF), p_noise=1.0, noise_variance=(0.05, 0.1))
    out, _ = _augment(data, params)
    diff = out - data
    sd = diff.std(axis=(2, 3, 4))  # (B, K)
    assert not np.array_equal(out[:, 0], out[:, 1])
    np.testing.assert_allclose(sd / sd[:, :1], 1.0, atol=0.1)  # one variance per sample, across its slices
    assert sd.std() > 0.005  # ...drawn anew per sample


@pytest.mark.parametrize("name", ["brightness", "contrast", "gamma", "blur", "lowres"])
def test_rgb_channels_get_their_own_draws(name):
    rng = np.random.default_rng(1)
    plane = rng.uniform(0, 1, size=(30, 1, 16, 16)).astype(np.float32)
    rgb = np.repeat(plane, 3, axis=1)  # (B, C=3, Y, X), identical channels
    p = {"brightness": dict(p_brightness=1.0), "contrast": dict(p_contrast=1.0), "gamma": dict(p_gamma=1.0),
         "blur": dict(p_blur=1.0, p_blur_channel=1.0), "lowres": dict(p_lowres=1.0, p_lowres_channel=1.0)}[name]
    params = dataclasses.replace(AugmentParams((0.0, 0.0), **OFF), **p)
    out, _ = _augment(rgb, params)
    assert out.shape == rgb.shape
    assert np.mean([not np.allclose(s[0], s[1]) for s in out]) > 0.9


def test_brightness_is_one_multiplier_per_channel_for_all_slices():
    data = np.abs(_identical_slices(10, k=3, c=2)) + 0.5
    data[:, 1] *= 1.7  # slices differ now
    params = dataclasses.replace(AugmentParams((0.0, 0.0), **OFF), p_brightness=1.0)
    out = augment_intensity(data.copy(), params, np.random.default_rng(0))
    ratio = out / data  # (B, K, C, Y, X)
    for b in range(10):
        for c in range(2):
            r = ratio[b, :, c]
            np.testing.assert_allclose(r, r.flat[0], rtol=1e-5)
            assert 0.75 <= r.flat[0] <= 1.25
    assert ratio[:, 0, 0, 0, 0].std() > 0.01


def test_contrast_and_gamma_against_hand_formulas():
    g = np.random.default_rng(3).normal(size=(3, 1, 12, 12)).astype(np.float32)  # (K, C, Y, X), distinct slices
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    got = g.copy()
    contrast(got, rng_a, (0.75, 1.25))
    f = rng_b.uniform(0.75, 1) if rng_b.random() < 0.5 else rng_b.uniform(1, 1.25)
    want = np.clip((g - g.mean()) * f + g.mean(), g.min(), g.max())  # statistics over all K slices
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    got = g.copy()
    gamma(got, np.random.default_rng(7), (0.7, 1.5), invert=False)
    np.testing.assert_allclose([got.mean(), got.std()], [g.mean(), g.std()], atol=1e-4)  # stats kept
    ref = np.random.default_rng(7)
    gm = ref.uniform(0.7, 1) if ref.random() < 0.5 else ref.uniform(1, 1.5)
    lo, rn = g.min(), g.max() - g.min()
    h = ((g - lo) / (rn + 1e-7)) ** gm * (rn + 1e-7) + lo
    np.testing.assert_allclose(got, (h - h.mean()) / (h.std() + 1e-8) * g.std() + g.mean(), atol=1e-4)


def test_blur_acts_in_plane_per_slice():
    data = _identical_slices(1, k=3, size=20)
    data[:, 1] = 0.0
    params = dataclasses.replace(AugmentParams((0.0, 0.0), **OFF), p_blur=1.0, p_blur_channel=1.0,
                                 blur_sigma=(0.8, 0.8))
    out = augment_intensity(data.copy(), params, np.random.default_rng(0))
    np.testing.assert_allclose(out[0, 0, 0], gaussian_filter(data[0, 0, 0], 0.8), atol=1e-6)
    assert np.all(out[0, 1] == 0.0)  # nothing leaks between slices


@pytest.mark.parametrize("shape", [(3, 20, 24), (1, 12, 16, 18)])
def test_low_resolution_equals_the_batched_path_and_keeps_a_constant(shape):
    """The CPU path's simulated low resolution (nearest down, bicubic / trilinear up) is the batched path's
    function for the same zoom; a constant image stays constant, a checkerboard loses its finest detail."""
    import torch

    from salseg.train.gpu_augment import simulate_low_resolution
    from salseg.train.intensity import low_resolution

    rng = np.random.default_rng(0)
    x = rng.normal(size=(shape[0], 1, *shape[1:])).astype(np.float32)   # (K, C=1, *spatial)
    got = x.copy()
    low_resolution(got, np.random.default_rng(5), (0.5, 0.5), 1.0)
    ref = simulate_low_resolution(torch.from_numpy(x[:, 0][None].copy()).reshape(1, shape[0], *shape[1:]),
                                  torch.full((1, shape[0]), 0.5))[0].numpy() if len(shape) == 3 else \
        simulate_low_resolution(torch.from_numpy(x[:, 0][None].copy()), torch.full((1, 1), 0.5))[0].numpy()
    np.testing.assert_allclose(got[:, 0], ref, atol=1e-5, rtol=0)
    assert np.abs(got - x).mean() > 0.3                                  # half the resolution of white noise
    const = np.full_like(x, 2.5)
    low_resolution(const, np.random.default_rng(5), (0.5, 0.5), 1.0)
    np.testing.assert_allclose(const, 2.5, atol=1e-5)
