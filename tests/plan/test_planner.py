"""Planner rules: target spacing, patch / batch size against the memory budget, topology."""

import numpy as np
import pytest

from salseg.plan import topology as topo
from salseg.plan.planner import patch_and_batch, plan_configurations, target_spacing


def test_target_spacing_median_when_isotropic_enough():
    sp = np.array([[1.0, 0.8, 0.8], [1.2, 0.7, 0.7], [2.0, 0.9, 0.9]])
    sh = np.array([[100, 200, 200]] * 3)
    assert target_spacing(sp, sh) == pytest.approx([1.2, 0.8, 0.8])


def test_target_spacing_thick_axis_takes_10th_percentile():
    z = np.array([5.0, 10.0, 6.0, 8.0, 7.5, 10.0, 9.0])
    sp = np.stack([z, np.full(7, 1.5), np.full(7, 1.6)], 1)
    sh = np.array([[10, 200, 210]] * 7)
    t = target_spacing(sp, sh)
    assert t[0] == pytest.approx(np.percentile(z, 10))
    assert t[1:] == pytest.approx([1.5, 1.6])


def test_thick_axis_with_many_voxels_keeps_median():
    z = np.array([5.0, 10.0, 6.0])
    sp = np.stack([z, np.full(3, 1.0), np.full(3, 1.0)], 1)
    sh = np.array([[100, 120, 120]] * 3)  # not 3x fewer voxels along z
    assert target_spacing(sp, sh)[0] == pytest.approx(6.0)


def test_thick_axis_never_finer_than_others():
    sp = np.array([[1.0, 4.0, 4.0], [1.0, 4.0, 4.0], [20.0, 4.0, 4.0], [20.0, 4.0, 4.0], [20.0, 4.0, 4.0]])
    sh = np.array([[5, 100, 100]] * 5)
    t = target_spacing(sp, sh)
    assert 4.0 < t[0] < 4.001


def _stride(pools):
    return list(np.prod(np.array(pools), axis=0))


@pytest.mark.parametrize("spacing,median", [([1.0, 1.0, 1.0], [160, 104, 240]), ([5.5, 1.5, 1.5], [9, 170, 190]),
                                            ([1.0, 1.0], [522, 775]), ([0.7, 0.7], [37, 45])])
def test_patch_fits_padded_median_divisible_and_batch_at_least_two(spacing, median):
    pb = patch_and_batch(spacing, median, float(np.prod(median)) * 10, 1, 3, 8.0)
    patch, stride = pb["patch_size"], _stride(pb["pool_op_kernel_sizes"])
    assert stride == pb["patch_divisor"]
    assert all(p <= -(-m // s) * s for p, m, s in zip(patch, median, stride))   # median padded UP to the stride
    assert all(p % s == 0 for p, s in zip(patch, stride))
    assert pb["batch_size"] >= 2
    assert pb["memory_estimate"] * 2 / topo.REFERENCE_BATCH[len(spacing)] <= topo.memory_budget(len(spacing), 8.0)


def test_memory_budget_shrinks_patch():
    big = patch_and_batch([1.0, 1.0, 1.0], [300, 300, 300], 3e8, 1, 2, 8.0)
    small = patch_and_batch([1.0, 1.0, 1.0], [300, 300, 300], 3e8, 1, 2, 2.0)
    assert np.prod(small["patch_size"]) < np.prod(big["patch_size"])
    for pb, gb in ((big, 8.0), (small, 2.0)):   # default rule: the estimate at batch 2 fits
        assert pb["memory_estimate"] * 2 / 2 <= topo.memory_budget(3, gb)


def test_batch_capped_at_five_percent_of_dataset():
    median = [64, 64]
    n_vox = 64 * 64 * 400.0
    pb = patch_and_batch([1.0, 1.0], median, n_vox, 1, 2, 8.0)
    assert pb["patch_size"] == [64, 64]
    assert pb["batch_size"] == round(n_vox * 0.05 / (64 * 64)) == 20
    tiny = patch_and_batch([1.0, 1.0], median, 64 * 64 * 3.0, 1, 2, 8.0)
    assert tiny["batch_size"] == 2  # the cap is below 2: never fewer than 2


def test_topology_coarse_axis_not_pooled_and_kernel_one():
    pools, convs, stride = topo.pool_and_conv_kernels([5.0, 1.25, 1.25], [10, 128, 128])
    assert pools[0] == [1, 1, 1]
    assert convs[0] == [1, 3, 3]                 # slice axis 4x coarser: 1 at the first stage
    assert pools[1] == [1, 2, 2] and pools[2] == [1, 2, 2]
    assert stride[1] == stride[2] == 2 ** (len(pools) - 1)
    assert convs[-1] == [3, 3, 3]
    # pooling stops once an axis would go below 4 voxels: 128 -> 4 after 5 poolings
    assert stride[1] == 32
    assert 10 // stride[0] >= 4


def test_plain_unet_elements_by_hand():
    # 2 stages, 2D, patch 8x8, pool [1,1],[2,2], features 32, 64, 3 classes
    n = topo.plain_unet_elements([8, 8], [[1, 1], [2, 2]], [32, 64], 3, deep_supervision=True)
    enc = 2 * 32 * 64 + 2 * 64 * 16
    dec = 2 * 32 * 64 + 32 * 64 + 3 * 64
    assert n == enc + dec


def test_plan_configurations_2d_dataset_has_no_3d():
    fp = {"spacings": [[999.0, 1.0, 1.0]] * 3, "shapes_after_crop": [[1, 60, 80]] * 3, "is_2d": True,
          "num_channels": 3, "file_ending": ".png", "foreground_intensity": {}}
    out = plan_configurations(fp, channel_names={"0": "R", "1": "G", "2": "B"}, labels={"bg": 0, "fg": 1})
    assert set(out["configurations"]) == {"2d", "2.5d"}
    c = out["configurations"]["2.5d"]
    assert c["neighbours"] == 3 and c["data_identifier"] == "2d" and c["normalization"] == ["rgb"] * 3
    from salseg.errors import ConfigError
    with pytest.raises(ConfigError, match="3d_fullres"):
        plan_configurations(fp, channel_names={"0": "R"}, labels={"bg": 0}, configs=["3d_fullres"])
