"""Sliding window: Gaussian map, tiling, equality with whole-image prediction, weighting, mirroring TTA."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from salseg.infer.sliding_window import (compute_steps, gaussian_importance_map, mirror_combinations,
                                         sliding_window_predict, sliding_window_predict_batch)


def pointwise_model(in_ch: int, classes: int, dim: int, seed: int = 0) -> nn.Module:
    """A nonlinear model whose output at a voxel depends only on that voxel: tiling cannot change it."""
    torch.manual_seed(seed)
    conv = nn.Conv3d if dim == 3 else nn.Conv2d
    return nn.Sequential(conv(in_ch, 8, 1), nn.Tanh(), conv(8, classes, 1)).eval()


@pytest.mark.parametrize("size", [(33,), (17, 25), (9, 13, 21)])
def test_gaussian_map_matches_scipy_and_is_symmetric(size):
    g = gaussian_importance_map(size).double().numpy()
    assert g.shape == size
    assert g.max() == pytest.approx(1.0)
    assert (g > 0).all()
    for axis in range(len(size)):
        np.testing.assert_allclose(g, np.flip(g, axis), atol=1e-12)
    # reference: nnU-Net builds it by Gaussian-filtering a delta at the centre (odd sizes: exact centre)
    delta = np.zeros(size)
    delta[tuple(s // 2 for s in size)] = 1
    ref = gaussian_filter(delta, [s / 8 for s in size], mode="constant", cval=0, truncate=8)
    ref /= ref.max()
    np.testing.assert_allclose(g, ref, rtol=1e-3, atol=1e-6)


def test_gaussian_map_sigma():
    g = gaussian_importance_map((41,), sigma_scale=0.25).numpy()
    sigma = 41 * 0.25
    assert g[20] == pytest.approx(1.0)
    assert g[20 + 5] == pytest.approx(np.exp(-0.5 * (5 / sigma) ** 2), rel=1e-6)


@pytest.mark.parametrize("im,p,step", [(100, 32, 0.5), (32, 32, 0.5), (33, 32, 0.5), (70, 20, 0.25), (50, 7, 1.0)])
def test_compute_steps_cover_the_image(im, p, step):
    (s,) = compute_steps([im], [p], step)
    assert s[0] == 0 and s[-1] == im - p
    assert all(b - a <= p * step + 1 for a, b in zip(s, s[1:]))
    covered = np.zeros(im, bool)
    for a in s:
        covered[a:a + p] = True
    assert covered.all()
    if im > p:  # the fewest tiles: one fewer would need a larger step
        assert (im - p) / max(len(s) - 2, 1) > p * step or len(s) == 2


@pytest.mark.parametrize("dim,shape,patch", [
    (2, (37, 50), (16, 24)),
    (2, (10, 12), (16, 16)),          # smaller than the patch: padded and cropped back
    (3, (11, 19, 23), (8, 8, 12)),
    (3, (5, 20, 9), (8, 8, 8)),        # smaller along some axes only
])
def test_sliding_window_equals_whole_image(dim, shape, patch):
    model = pointwise_model(2, 3, dim)
    torch.manual_seed(1)
    image = torch.randn(2, *shape)
    with torch.no_grad():
        full = model(image[None])[0]
    out = sliding_window_predict(model, image, patch, num_classes=3, step=0.5, batch_size=3)
    assert out.shape == (3, *shape) and out.dtype == torch.float32
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)


def test_gaussian_weighting_of_tile_outputs():
    """A model returning each tile's mean intensity everywhere: the merged value at a voxel must be the
    Gaussian-weighted mean of the means of the tiles covering it (computed here independently with numpy)."""

    def tile_mean(x):
        return x.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, *x.shape[2:]).clone()

    torch.manual_seed(2)
    image = torch.rand(1, 30, 22)
    patch, step = (12, 10), 0.5
    out = sliding_window_predict(tile_mean, image, patch, num_classes=1, step=step).numpy()[0]

    ys, xs = compute_steps(image.shape[1:], patch, step)
    g = np.exp(-0.5 * ((np.arange(12) - 5.5) / 1.5) ** 2)[:, None] * np.exp(-0.5 * ((np.arange(10) - 4.5) / 1.25) ** 2)
    num, den = np.zeros((30, 22)), np.zeros((30, 22))
    img = image.numpy()[0].astype(np.float64)
    for y, x in itertools.product(ys, xs):
        m = img[y:y + 12, x:x + 10].mean()
        num[y:y + 12, x:x + 10] += g * m
        den[y:y + 12, x:x + 10] += g
    np.testing.assert_allclose(out, num / den, rtol=1e-5)
    # without Gaussian weighting: plain mean of the covering tiles
    flat = sliding_window_predict(tile_mean, image, patch, num_classes=1, step=step, gaussian=False).numpy()[0]
    num, den = np.zeros((30, 22)), np.zeros((30, 22))
    for y, x in itertools.product(ys, xs):
        num[y:y + 12, x:x + 10] += img[y:y + 12, x:x + 10].mean()
        den[y:y + 12, x:x + 10] += 1
    np.testing.assert_allclose(flat, num / den, rtol=1e-5)


def symmetric_conv(dim: int) -> nn.Module:
    """A conv whose kernel is symmetric under every flip: the model commutes with mirroring."""
    torch.manual_seed(3)
    conv = (nn.Conv3d if dim == 3 else nn.Conv2d)(2, 3, 3, padding=1)
    with torch.no_grad():
        w = conv.weight
        for axis in range(2, 2 + dim):
            w.copy_(0.5 * (w + torch.flip(w, [axis])))
    return conv.eval()


@pytest.mark.parametrize("dim", [2, 3])
def test_mirroring_of_equivariant_model_equals_no_tta(dim):
    model = symmetric_conv(dim)
    image = torch.randn(2, *((9, 14, 12) if dim == 3 else (21, 17)))
    patch = (8, 8, 8) if dim == 3 else (10, 10)
    axes = tuple(range(dim))
    plain = sliding_window_predict(model, image, patch, num_classes=3)
    tta = sliding_window_predict(model, image, patch, num_classes=3, mirror_axes=axes)
    torch.testing.assert_close(tta, plain, atol=1e-5, rtol=1e-5)


def test_mirroring_averages_flipped_predictions():
    torch.manual_seed(4)
    model = nn.Conv2d(1, 2, 3, padding=1).eval()  # not flip-equivariant
    image = torch.randn(1, 12, 16)
    with torch.no_grad():
        x = image[None]
        ref = sum(torch.flip(model(torch.flip(x, [d + 2 for d in c])), [d + 2 for d in c])
                  for c in mirror_combinations((0, 1))) / 4
    # the patch covers the image: one tile, so the result is exactly the TTA average
    out = sliding_window_predict(model, image, (12, 16), num_classes=2, mirror_axes=(0, 1))
    torch.testing.assert_close(out, ref[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, sliding_window_predict(model, image, (12, 16), num_classes=2), atol=1e-3)
    assert len(mirror_combinations((0, 1, 2))) == 8


def test_batch_of_images_matches_single_predictions():
    model = pointwise_model(1, 2, 2)
    images = torch.randn(5, 1, 20, 18)
    many = sliding_window_predict_batch(model, images, (8, 8), num_classes=2, batch_size=4)
    for i in range(5):
        one = sliding_window_predict(model, images[i], (8, 8), num_classes=2)
        torch.testing.assert_close(many[i], one)


def test_bad_output_shape_is_reported():
    with pytest.raises(ValueError, match="does not match"):
        sliding_window_predict(lambda x: x[:, :1], torch.zeros(2, 8, 8), (8, 8), num_classes=3)
