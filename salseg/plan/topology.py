"""U-Net topology for a patch (pooling and conv kernels per axis) and its memory estimate, as nnU-Net v2 plans them.

Pooling: at each stage every axis is halved while (a) its current size is at least ``2 * MIN_FEATURE_MAP`` (8), i.e.
at least 4 remain after pooling, and (b) its current spacing is less than twice the finest current spacing among
the axes still allowed to pool. A stage where only one axis could pool needs it to be >= 3 * MIN_FEATURE_MAP.
Conv kernels are 3 on an axis once its spacing is within 2x of the finest, 1 before (a very coarse axis such as the
slice axis of a cine MRI gets 1 at the first stages); the bottleneck is always 3.

The memory estimate counts the feature-map elements of the network the plans are made for, as nnU-Net's
``compute_conv_feature_map_size`` counts them on the network its planner instantiates (PlainConvUNet or
ResidualEncoderUNet, built WITHOUT deep supervision, so only the full-resolution head is counted); nnU-Net's
reference values are calibrated against that count. Patches are padded UP to the total stride, as nnU-Net does.
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


def pad_to_stride(patch_size: Sequence[float], stride: Sequence[int]) -> list[int]:
    """Each axis rounded UP to a multiple of its stride (nnU-Net pads the patch; the median clip may be fractional)."""
    return [int(math.ceil(float(p) / s - 1e-9) * s) for p, s in zip(patch_size, stride)]


def _stage_sizes(patch_size: Sequence[int], pools: Sequence[Sequence[int]]) -> list[list[int]]:
    sizes, size = [], [int(s) for s in patch_size]
    for stride in pools:
        size = [a // b for a, b in zip(size, stride)]
        sizes.append(size)
    return sizes


def _vox(size: Sequence[int]) -> int:
    return int(np.prod(size, dtype=np.int64))


def _decoder_elements(sizes, features, num_classes: int, convs_decoder: int, deep_supervision: bool) -> int:
    """Decoder stage i restores encoder stage n-2-i: its convs, the transposed conv's output, the head(s)."""
    total, n = 0, len(sizes)
    for i in range(n - 1):
        s = n - 2 - i
        vox = _vox(sizes[s])
        total += (convs_decoder + 1) * features[s] * vox
        if deep_supervision or i == n - 2:
            total += num_classes * vox
    return total


def plain_unet_elements(patch_size: Sequence[int], pools: Sequence[Sequence[int]], features: Sequence[int],
                        num_classes: int, convs_encoder: int = CONVS_PER_STAGE, convs_decoder: int = CONVS_PER_STAGE,
                        deep_supervision: bool = False) -> int:
    """Feature-map elements (outputs of every conv, norm-free count) of nnU-Net's PlainConvUNet per sample, as its
    ``compute_conv_feature_map_size`` counts them; the planner builds it without deep supervision."""
    sizes = _stage_sizes(patch_size, pools)
    enc = sum(convs_encoder * f * _vox(sz) for f, sz in zip(features, sizes))
    return enc + _decoder_elements(sizes, features, num_classes, convs_decoder, deep_supervision)


def resenc_encoder_elements(patch_size: Sequence[int], pools: Sequence[Sequence[int]], features: Sequence[int],
                            blocks: Sequence[int]) -> int:
    """Residual encoder: the stem, then per block two convs, plus the skip projection of a block that strides or
    changes the width (nnU-Net's ``ResidualEncoder.compute_conv_feature_map_size``)."""
    sizes = _stage_sizes(patch_size, pools)
    total = features[0] * _vox(patch_size)
    for s, (f, sz) in enumerate(zip(features, sizes)):
        cin = features[s - 1] if s else features[0]
        projected = cin != f or any(p != 1 for p in pools[s])
        total += (2 * blocks[s] + (1 if projected else 0)) * f * _vox(sz)
    return total


def resenc_unet_elements(patch_size: Sequence[int], pools: Sequence[Sequence[int]], features: Sequence[int],
                         num_classes: int, blocks: Sequence[int], convs_decoder: int = 1,
                         deep_supervision: bool = False) -> int:
    """Feature-map elements of nnU-Net's ResidualEncoderUNet per sample (encoder above + the plain decoder)."""
    sizes = _stage_sizes(patch_size, pools)
    return (resenc_encoder_elements(patch_size, pools, features, blocks)
            + _decoder_elements(sizes, features, num_classes, convs_decoder, deep_supervision))


def encoder_decoder_elements(conf: dict, num_classes: int) -> tuple[int, int]:
    """(encoder, decoder) feature-map elements of a plans configuration's network (resenc when the configuration
    has ``n_blocks_per_stage``, else the plain U-Net) at its patch size."""
    patch, pools, feats = conf["patch_size"], conf["pool_op_kernel_sizes"], conf["features_per_stage"]
    sizes = _stage_sizes(patch, pools)
    n = len(pools)
    dec_convs = list(conf.get("n_conv_per_stage_decoder") or [])
    if conf.get("n_blocks_per_stage"):
        blocks = (list(conf["n_blocks_per_stage"]) + [6] * n)[:n]
        enc = resenc_encoder_elements(patch, pools, feats, blocks)
        dec_convs = dec_convs or [1]
    else:
        convs = list(conf.get("n_conv_per_stage") or [CONVS_PER_STAGE])
        enc = sum(convs[0] * f * _vox(sz) for f, sz in zip(feats, sizes))
        dec_convs = dec_convs or [CONVS_PER_STAGE]
    return enc, _decoder_elements(sizes, feats, num_classes, dec_convs[0], False)


def memory_budget(dim: int, gpu_memory_gb: float) -> float:
    """Feature-map elements that fit ``gpu_memory_gb`` at the reference batch size."""
    return REFERENCE_VALUE[dim] * (float(gpu_memory_gb) / REFERENCE_GB)
