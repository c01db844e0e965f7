"""predict_preprocessed: 3D, 2D slice by slice, 2.5d slice models (neighbour clamping), diffusion pass-through."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from salseg.infer.predictor import DiffusionOptions, neighbour_indices, predict_preprocessed
from salseg.nets.capabilities import Capabilities


def pointwise(in_ch, classes, dim, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv3d if dim == 3 else nn.Conv2d
    return nn.Sequential(conv(in_ch, 6, 1), nn.Tanh(), conv(6, classes, 1)).eval()


def test_3d_equals_softmax_of_whole_volume():
    model = pointwise(2, 3, 3)
    data = np.random.default_rng(0).normal(size=(2, 7, 19, 13)).astype(np.float32)
    probs = predict_preprocessed(model, data, {"dim": 3, "patch_size": [4, 8, 8]}, num_classes=3, mirroring=True)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(data)[None])[0], 0).numpy()
    assert probs.shape == (3, 7, 19, 13) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, ref, atol=1e-5)


def test_2d_predicts_each_slice():
    model = pointwise(1, 2, 2, seed=1)
    data = np.random.default_rng(1).normal(size=(1, 5, 12, 30)).astype(np.float32)
    probs = predict_preprocessed(model, data, {"dim": 2, "patch_size": [8, 16], "batch_size": 3}, num_classes=2)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(data).transpose(0, 1)), 1).transpose(0, 1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)


def test_neighbour_indices_clamp_at_edges():
    np.testing.assert_array_equal(neighbour_indices(4, 3), [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]])
    np.testing.assert_array_equal(neighbour_indices(2, 5), [[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(neighbour_indices(1, 3), [[0, 0, 0]])


class SliceEcho(nn.Module):
    """Slice model whose logit j is the (mean) value of neighbour slice j: reveals which slices it was given."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.capabilities = Capabilities(slice_k=k)

    def forward(self, x):  # (B, K, C, H, W) -> (B, K, H, W)
        assert x.ndim == 5 and x.shape[1] == self.k
        return x.mean(dim=2)


class SliceEchoFeatures(SliceEcho):
    """The same with the per-slice cache (encode_slices / decode_from_cache) that the fast path uses."""

    def __init__(self):
        super().__init__(3)
        self.capabilities = Capabilities(slice_k=3, slice_cache=True)
        self.calls = 0

    def encode_slices(self, x):  # (N, C, H, W) -> [(N, 4, H, W)]
        self.calls += x.shape[0]
        return [x.mean(dim=1, keepdim=True).repeat(1, 4, 1, 1)]

    def decode_from_cache(self, cache, index):
        return torch.cat([cache[0][index[:, j]][:, :1] for j in range(3)], dim=1)


@pytest.mark.parametrize("model", [SliceEcho(3), SliceEcho(5), SliceEchoFeatures()], ids=["k3", "k5", "fast"])
def test_25d_neighbours_are_clamped(model):
    z = 6
    data = np.broadcast_to(np.arange(z, dtype=np.float32)[None, :, None, None] * 0.5, (2, z, 10, 14)).copy()
    k = model.k
    probs = predict_preprocessed(model, data, {"dim": 2, "patch_size": [8, 8], "neighbours": k}, num_classes=k,
                                 mirroring=True)
    expected_logits = torch.from_numpy(neighbour_indices(z, k).T.astype(np.float32) * 0.5)  # (K, Z)
    expected = torch.softmax(expected_logits, 0).numpy()[:, :, None, None]
    np.testing.assert_allclose(probs, np.broadcast_to(expected, probs.shape), atol=1e-5)


def test_25d_fast_path_equals_generic_path_and_reuses_features():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=1)

    class Generic(nn.Module):
        capabilities, k = Capabilities(slice_k=3), 3

        def forward(self, x):
            b = x.shape[0]
            f = conv(x.reshape(b * 3, *x.shape[2:])).reshape(b, 3, 4, *x.shape[3:])
            return f[:, 0, :2] + 2 * f[:, 1, :2] - f[:, 2, 2:]

    class Fast(Generic):
        capabilities, calls = Capabilities(slice_k=3, slice_cache=True), 0

        def encode_slices(self, x):
            Fast.calls += x.shape[0]
            return [conv(x)]

        def decode_from_cache(self, cache, index):
            fp, fm, fn = (cache[0][index[:, j]] for j in range(3))
            return fp[:, :2] + 2 * fm[:, :2] - fn[:, 2:]

    data = np.random.default_rng(3).normal(size=(1, 7, 12, 12)).astype(np.float32)
    cfg = {"dim": 2, "patch_size": [12, 12], "batch_size": 3}
    a = predict_preprocessed(Generic(), data, cfg, num_classes=2, mirroring=False)
    b = predict_preprocessed(Fast(), data, cfg, num_classes=2, mirroring=False)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert Fast.calls < 3 * 7  # features computed about once per slice (plus chunk borders), not K times


class ToyDiffusion(nn.Module):
    capabilities = Capabilities(diffusion=True)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.seen = []

    def sample(self, image, *, steps=None, sampler="ddim", generator=None, ensemble=1, return_samples=False):
        self.seen.append((steps, sampler, ensemble))
        samples = torch.stack([torch.softmax(self.conv(image) + torch.randn((image.shape[0], 2, *image.shape[2:]),
                                                                         generator=generator), 1)
                               for _ in range(ensemble)])
        return (samples.mean(0), samples) if return_samples else samples.mean(0)


def test_diffusion_options_pass_through_and_seed_is_reproducible():
    torch.manual_seed(0)
    model = ToyDiffusion()
    data = np.random.default_rng(0).normal(size=(1, 2, 16, 16)).astype(np.float32)
    cfg = {"dim": 2, "patch_size": [16, 16]}
    opts = DiffusionOptions(steps=7, sampler="ddpm", ensemble=3, seed=5, uncertainty=True)
    p1, u1 = predict_preprocessed(model, data, cfg, num_classes=2, mirroring=False, diffusion=opts,
                                  return_uncertainty=True)
    assert set(model.seen) == {(7, "ddpm", 3)}
    p2, u2 = predict_preprocessed(model, data, cfg, num_classes=2, mirroring=False, diffusion=opts,
                                  return_uncertainty=True)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(p1.sum(0), 1, atol=1e-5)
    assert u1.shape == (2, 16, 16) and (u1 > 0).all()
    p3 = predict_preprocessed(model, data, cfg, num_classes=2, mirroring=False,
                              diffusion=DiffusionOptions(seed=6, ensemble=3))
    assert not np.allclose(p1, p3)
