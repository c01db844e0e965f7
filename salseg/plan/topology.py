"""U-Net topology for a patch (pooling and conv kernels per axis) and its memory estimate, as nnU-Net v2 plans them.

Pooling: at each stage every axis is halved while (a) its current size is at least ``2 * MIN_FEATURE_MAP`` (8), i.e.
at least 4 remain after pooling, and (b) its current spacing is less than twice the finest current spacing among
the axes still allowed to pool. A stage where only one axis could pool needs it to be >= 3 * MIN_FEATURE_MAP.
Conv kernels are 3 on an axis once its spacing is within 2x of the finest, 1 before (a very coarse axis such as the
slice axis of a cine MRI gets 1 at the first stages); the bottleneck is always 3.

The memory estimate counts the feature-map elements of nnU-Net's PlainConvUNet with deep supervision (the same
count as ``compute_conv_feature_map_size``), which nnU-Net's reference values are calibrated against.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

MIN_FEATURE_MAP = 4
BASE_FEATURES = 32
MAX_FEATURES = {2: 512, 3: 320}
CONVS_PER_STAGE = 2
# nnU-Net v2 reference: feature-map elements that fit 8 GB with batch size 12 (2D) / 2 (3D)
REFERENCE_VALUE = {2: 85_000_000, 3: 560_000_000}
REFERENCE_BATCH = {2: 12, 3: 2}
REFERENCE_GB = 8.0


def pool_and_conv_kernels(spacing: Sequence[float], patch_size: Sequence[int],
                          min_feature_map: int = MIN_FEATURE_MAP) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """(pool_op_kernel_sizes, conv_kernel_sizes, stride) for ``patch_size`` at ``spacing``.

    ``pool_op_kernel_sizes[0]`` is all ones (the stride of the first stage, nnU-Net v2 convention); ``stride`` is the
    total downsampling per axis, i.e. what every patch size must be divisible by.
    """
    dim = len(spacing)
    sp = [float(s) for s in spacing]
    size = [float(s) for s in patch_size]
    pools: list[list[int]] = [[1] * dim]
    convs: list[list[int]] = []
    kernel = [1] * dim
    num_pool = [0] * dim
    while True:
        valid = [a for a in range(dim) if size[a] >= 2 * min_feature_map]
        if not valid:
            break
        finest = min(sp[a] for a in valid)
        valid = [a for a in valid if sp[a] / finest < 2]
        if len(valid) == 1 and size[valid[0]] < 3 * min_feature_map:
            break
        if not valid:
            break
        for a in range(dim):
            if kernel[a] != 3 and sp[a] / min(sp) < 2:
                kernel[a] = 3
        stage = [1] * dim
        for a in valid:
            stage[a] = 2
            num_pool[a] += 1
            sp[a] *= 2
            size[a] = math.ceil(size[a] / 2)
        pools.append(stage)
        convs.append(list(kernel))
    convs.append([3] * dim)
    stride = [2 ** n for n in num_pool]
    return pools, convs, stride


def features_per_stage(n_stages: int, dim: int) -> list[int]:
    return [min(BASE_FEATURES * 2 ** i, MAX_FEATURES[dim]) for i in range(n_stages)]


def feature_map_elements(patch_size: Sequence[int], pools: Sequence[Sequence[int]], features: Sequence[int],
                         in_channels: int, num_classes: int, deep_supervision: bool = True) -> int:
    """Feature-map elements of a plain conv U-Net (per sample), counted like nnU-Net's estimate."""
    del in_channels  # the input itself is not counted (as nnU-Net)
    size = [int(s) for s in patch_size]
    total = 0
    sizes = []
    for s, stride in enumerate(pools):  # encoder: CONVS_PER_STAGE convs, the first one strided
        size = [a // b for a, b in zip(size, stride)]
        sizes.append(size)
        total += CONVS_PER_STAGE * features[s] * int(np.prod(size, dtype=np.int64))
    n = len(pools)
    for i in range(n - 1):  # decoder stage i restores encoder stage n-2-i
        s = n - 2 - i
        vox = int(np.prod(sizes[s], dtype=np.int64))
        total += CONVS_PER_STAGE * features[s] * vox   # convs
        total += features[s] * vox                      # transposed conv output
        if deep_supervision or i == n - 2:
            total += num_classes * vox                  # segmentation head
    return total


def memory_budget(dim: int, gpu_memory_gb: float) -> float:
    """Feature-map elements that fit ``gpu_memory_gb`` at the reference batch size."""
    return REFERENCE_VALUE[dim] * (float(gpu_memory_gb) / REFERENCE_GB)
