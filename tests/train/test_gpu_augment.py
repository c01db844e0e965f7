"""Batched augmentation (``--augment-device``, run here on the CPU device): the same parameter distributions as the
batchgenerators path (its draws recorded), integer label maps aligned with the image, one loader per run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

import salseg.train.spatial as cpu_spatial
from salseg.errors import ConfigError
from salseg.train.augment import build_transforms, run_batches
from salseg.train.data import Case, PatchSampler
from salseg.train.gpu_augment import BatchAugmenter, BatchAugmentSpec, make_augmenter, rotation_matrices

N = 1500  # samples per distribution comparison


def _record_batchgenerators_spatial(monkeypatch, dim: int, n: int) -> dict:
    """Run the CPU path (salseg.train.spatial, batchgenerators' draws and coordinate helpers) on n tiny samples,
    recording the angles and scales it draws."""
    rec = {"angles": [], "scale": []}
    rot_fn = "rotate_coords_2d" if dim == 2 else "rotate_coords_3d"
    orig_rot, orig_scale = getattr(cpu_spatial, rot_fn), cpu_spatial.scale_coords

    def rot(coords, *angles):
        rec["angles"].append(angles)
        return orig_rot(coords, *angles)

    def scale(coords, sc):
        rec["scale"].append(sc)
        return orig_scale(coords, sc)

    monkeypatch.setattr(cpu_spatial, rot_fn, rot)
    monkeypatch.setattr(cpu_spatial, "scale_coords", scale)
    patch = (4, 4) if dim == 2 else (4, 4, 4)
    np.random.seed(0)
    build_transforms(patch, dim)(np.zeros((n, 1, *patch), np.float32), np.zeros((n, 1, *patch), np.float32),
                                 np.random.default_rng(0))
    return rec


@pytest.mark.parametrize("dim", [2, 3])
def test_spatial_parameter_distributions_match_batchgenerators(monkeypatch, dim):
    rec = _record_batchgenerators_spatial(monkeypatch, dim, N)
    patch = (4, 4) if dim == 2 else (4, 4, 4)
    aug = make_augmenter(build_transforms(patch, dim), patch, dim, "cpu", seed=1)
    p = aug.draw_spatial(N)
    # how often each is applied (binomial, 0.2 each): within 4 standard errors of each other
    se = np.sqrt(2 * 0.2 * 0.8 / N)
    assert abs(len(rec["angles"]) / N - p["rotated"].float().mean().item()) < 4 * se
    assert abs(len(rec["scale"]) / N - p["scaled"].float().mean().item()) < 4 * se
    # the values drawn when applied: two-sample Kolmogorov-Smirnov per axis and for the scale
    cpu_angles = np.asarray(rec["angles"], float)
    ours = p["angles"][p["rotated"]].numpy()
    for axis in range(cpu_angles.shape[1]):
        assert stats.ks_2samp(cpu_angles[:, axis], ours[:, axis]).pvalue > 1e-3, axis
    assert stats.ks_2samp(np.asarray(rec["scale"]), p["scale"][p["scaled"]].numpy()).pvalue > 1e-3
    assert set(aug.spec.mirror_axes) == set(range(dim))
    assert abs(p["mirror"].float().mean().item() - 0.5) < 4 * np.sqrt(0.25 / (N * dim))


def test_intensity_parameters_match_the_cpu_path():
    """Brightness on a constant image shows every draw: how often it applies and the multiplier's distribution."""
    import dataclasses

    from salseg.train.augment import augmentation_params
    from salseg.train.intensity import augment_intensity

    off = {f.name: 0.0 for f in dataclasses.fields(augmentation_params((2, 2), 2)) if f.name.startswith("p_")
           and not f.name.endswith("_channel")}
    params = dataclasses.replace(augmentation_params((2, 2), 2), **{**off, "p_brightness": 0.15})
    cpu = augment_intensity(np.ones((4 * N, 1, 1, 2, 2), np.float32), params, np.random.default_rng(0))
    cpu = cpu[:, 0, 0, 0, 0]
    aug = BatchAugmenter(BatchAugmentSpec.from_params(params, (2, 2), 2), "cpu", seed=2)
    ours = aug.intensity(torch.ones(4 * N, 1, 2, 2))[:, 0, 0, 0].numpy()
    a, b = cpu[cpu != 1], ours[ours != 1]
    assert abs(len(a) - len(b)) / (4 * N) < 4 * np.sqrt(2 * 0.15 * 0.85 / (4 * N))
    assert stats.ks_2samp(a, b).pvalue > 1e-3


INTENSITY_OFF = dict(p_noise=0.0, p_blur=0.0, p_brightness=0.0, p_contrast=0.0, p_lowres=0.0, p_gamma_inverted=0.0,
                     p_gamma=0.0)


def _set(spec: BatchAugmentSpec, **settings) -> None:
    """Change the spec's AugmentParams (the one place the settings live)."""
    spec.params = dataclasses.replace(spec.params, **settings)


def test_spec_reads_every_setting_of_the_cpu_path():
    spec = BatchAugmentSpec.from_transforms(build_transforms((8, 8, 8), 3), (8, 8, 8), 3)
    a = spec.params
    assert a.p_rotation == a.p_scale == 0.2 and tuple(a.scale) == (0.7, 1.4)
    assert all(lo < 0 < hi for lo, hi in spec.angles) and spec.mirror_axes == (0, 1, 2)
    assert a.p_noise == 0.1 and a.p_blur == 0.2 and a.p_brightness == 0.15 and a.p_contrast == 0.15
    assert a.p_lowres == 0.25 and [(p, inv) for p, _, inv in spec.gammas] == [(0.1, True), (0.3, False)]
    with pytest.raises(ConfigError, match="augment-device"):
        make_augmenter(build_transforms((8, 8), 2), (8, 8), 2, "tpu")


def test_rotation_matrices_as_batchgenerators():
    from batchgenerators.augmentations.utils import create_matrix_rotation_2d, rotate_coords_3d

    a = torch.tensor([[0.3, -0.7, 1.1]], dtype=torch.float64)
    coords = np.random.default_rng(0).normal(size=(3, 5))
    ref = rotate_coords_3d(coords, 0.3, -0.7, 1.1)
    got = rotation_matrices(a, 3)[0].numpy().T @ coords   # our spatial map is R^T applied to coordinates
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(rotation_matrices(a, 2)[0].numpy(), create_matrix_rotation_2d(0.3), atol=1e-12)


def _blobs(b: int, shape) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    seg = torch.zeros(b, 1, *shape, dtype=torch.int64)
    grids = torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")
    for i in range(b):
        for label in (1, 2):
            c = [torch.randint(3, n - 3, (1,), generator=g).item() for n in shape]
            d2 = sum((gr - ci) ** 2 for gr, ci in zip(grids, c))
            seg[i, 0][d2 <= 16] = label
    return seg.float() * 10, seg


@pytest.mark.parametrize("shape", [(32, 32), (12, 20, 20)])
def test_labels_stay_integer_and_aligned_with_the_image(shape):
    dim = len(shape)
    patch = tuple(n - 4 for n in shape)  # input larger than the patch: the centre is cut out
    spec = BatchAugmentSpec.from_transforms(build_transforms(patch, dim), patch, dim)
    _set(spec, p_rotation=1.0, p_scale=1.0, **INTENSITY_OFF)   # every sample rotated and scaled, nothing else
    aug = BatchAugmenter(spec, "cpu", seed=3)
    image, seg = _blobs(6, shape)
    out, lab = aug(image, seg)
    assert out.shape == (6, 1, *patch) and lab.shape == (6, 1, *patch) and lab.dtype == torch.int64
    assert set(lab.unique().tolist()) <= {-1, 0, 1, 2} and (lab == 2).any()
    inside = lab >= 0
    agree = (torch.round(out / 10).clamp(0, 2) == lab)[inside].float().mean().item()
    assert agree > 0.95  # only interpolation at blob edges differs
    # the same check fails when the label map is sampled with a different transform
    out2, _ = BatchAugmenter(spec, "cpu", seed=4)(image, seg)
    assert (torch.round(out2 / 10).clamp(0, 2) == lab)[inside].float().mean().item() < agree - 0.02


def test_identity_samples_are_exact_crops_and_mirrors():
    spec = BatchAugmentSpec.from_transforms(build_transforms((6, 8), 2), (6, 8), 2)
    _set(spec, p_rotation=0.0, p_scale=0.0, **INTENSITY_OFF)
    aug = BatchAugmenter(spec, "cpu", seed=5)
    x = torch.arange(2 * 9 * 11, dtype=torch.float32).reshape(2, 1, 9, 11)
    seg = (x.long() % 3)
    torch.manual_seed(0)
    p = aug.draw_spatial(2)
    out, lab = aug.spatial(x, seg, p)
    crop = x[:, :, 1:7, 1:9]                   # start (9 - 6) // 2 = 1, (11 - 8) // 2 = 1
    for i in range(2):
        ref = crop[i]
        for axis in range(2):
            if p["mirror"][i, axis]:
                ref = ref.flip(axis + 1)
        torch.testing.assert_close(out[i], ref, atol=1e-3, rtol=0)
        assert torch.equal(lab[i], ref.long() % 3)


def _case(shape=(6, 24, 24)):
    rng = np.random.default_rng(0)
    seg = (rng.random(shape) > 0.7).astype(np.int16)
    return Case("c", rng.normal(size=(1, *shape)).astype(np.float32), seg, {}, {1: np.argwhere(seg == 1)})


def test_run_loader_batched_path_and_reproducible():
    """One loader for the run: 2 epochs x 3 batches, batched augmentation on the CPU device, 2.5d shapes; the
    same seed gives the same batches, with and without workers."""
    s = PatchSampler([_case()], (16, 16), 2, "2.5d", 3)
    tr = build_transforms((16, 16), 2)

    def run(workers, augment):
        aug = make_augmenter(tr, (16, 16), 2, "cpu", seed=0) if augment else None
        with run_batches(s, tr, 3, [0, 0], range(2), workers=workers, augmenter=aug) as stream:
            return [b for e in range(2) for b in stream.epoch(e)]

    a = run(0, True)
    assert len(a) == 6 and a[0]["data"].shape == (2, 3, 1, 16, 16) and a[0]["target"].shape == (2, 1, 16, 16)
    assert all(set(b["target"].unique().tolist()) <= {-1, 0, 1} for b in a)
    assert all(torch.equal(x["data"], y["data"]) for x, y in zip(a, run(0, True)))
    plain0, plain1 = run(0, False), run(1, False)
    assert all(torch.equal(x["data"], y["data"]) for x, y in zip(plain0, plain1))
    import multiprocessing
    assert multiprocessing.active_children() == []


def test_slice_consistent_intensity_keeps_identical_slices_identical():
    """With AugmentParams-style settings (slice-consistent), K identical slices stay identical (noise off: the
    noise field is the only per-slice draw); with per-slice-channel draws they do not."""
    spec = BatchAugmentSpec.from_transforms(build_transforms((16, 16), 2), (16, 16), 2)
    _set(spec, p_noise=0.0, p_blur=1.0, p_brightness=1.0, p_contrast=1.0, p_lowres=1.0, p_gamma_inverted=1.0,
         p_gamma=0.0)
    one = torch.randn(8, 1, 1, 20, 20)
    data, seg = one.expand(8, 3, 1, 20, 20).clone(), torch.zeros(8, 1, 20, 20, dtype=torch.int64)
    spec.slice_consistent = True
    out, _ = BatchAugmenter(spec, "cpu", seed=6)(data, seg)
    torch.testing.assert_close(out[:, 0], out[:, 2], atol=1e-5, rtol=0)
    spec.slice_consistent = False
    out, _ = BatchAugmenter(spec, "cpu", seed=6)(data, seg)
    assert (out[:, 0] - out[:, 2]).abs().max() > 1e-2
