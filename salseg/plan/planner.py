"""Plans from a fingerprint (DESIGN §4): target spacing, patch and batch size, topology, normalisation per config.

Follows nnU-Net v2's default planner so that both tools agree on the same data:
- target spacing: median per axis; the coarsest axis takes the 10th percentile of its spacings when it is more than
  3x coarser than the other axes AND has more than 3x fewer voxels (median shape) than each of them;
- patch: aspect-correct (a 256^3 / 2048^2 box in mm), clipped to the median shape after resampling, rounded DOWN to
  the stride of its topology (so it never exceeds the median shape), then shrunk along the axis that is largest
  relative to the median shape until the U-Net memory estimate at batch 2 fits ``gpu_memory_gb``;
- batch: what the remaining budget allows (reference batch 2 in 3D, 12 in 2D), capped so that one batch covers at
  most 5 % of the dataset's voxels, never below 2.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from salseg.errors import ConfigError
from salseg.plan import topology as topo
from salseg.preprocess.resample import new_shape

log = logging.getLogger(__name__)

ALL_CONFIGS = ("2d", "2.5d", "3d_fullres")
ANISOTROPY = 3.0
MAX_DATASET_COVERED = 0.05
MIN_BATCH = 2
DEFAULT_NEIGHBOURS = 3
NATURAL_ENDINGS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> list[float]:
    """Median spacing per axis; a thick, voxel-poor axis takes its 10th percentile (see module doc)."""
    spacings, shapes = np.asarray(spacings, float), np.asarray(shapes, float)
    target = np.percentile(spacings, 50, axis=0)
    median_size = np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    if not others:
        return [float(t) for t in target]
    other_sp = max(target[a] for a in others)
    aniso_spacing = target[worst] > ANISOTROPY * other_sp
    aniso_voxels = median_size[worst] * ANISOTROPY < min(median_size[a] for a in others)
    if aniso_spacing and aniso_voxels:
        t = float(np.percentile(spacings[:, worst], 10))
        if t < other_sp:  # never finer than the other axes
            t = max(other_sp, t) + 1e-5
        target[worst] = t
    return [float(t) for t in target]


def _estimate(patch, pools, dim, in_channels, num_classes) -> int:
    feats = topo.features_per_stage(len(pools), dim)
    return topo.feature_map_elements(patch, pools, feats, in_channels, num_classes)


def _topology(spacing, patch):
    """Topology for ``patch`` after rounding it down to its stride (recomputed until stable)."""
    patch = [int(p) for p in patch]
    while True:
        pools, convs, stride = topo.pool_and_conv_kernels(spacing, patch)
        rounded = [max(s, (p // s) * s) for p, s in zip(patch, stride)]
        if rounded == patch:
            return patch, pools, convs, stride
        patch = rounded


def patch_and_batch(spacing: Sequence[float], median_shape: Sequence[float], n_voxels_dataset: float,
                    in_channels: int, num_classes: int, gpu_memory_gb: float) -> dict:
    """Patch size, batch size and topology for one configuration (2 or 3 axes)."""
    dim = len(spacing)
    inv = 1.0 / np.asarray(spacing, float)
    edge = 256 ** 3 if dim == 3 else 2048 ** 2
    initial = [round(v) for v in inv * (edge / np.prod(inv)) ** (1 / dim)]
    median = [max(1, int(m)) for m in np.floor(np.asarray(median_shape, float) + 1e-6)]
    patch = [max(1, min(i, m)) for i, m in zip(initial, median)]
    patch, pools, convs, stride = _topology(spacing, patch)
    budget = topo.memory_budget(dim, gpu_memory_gb)
    ref_bs = topo.REFERENCE_BATCH[dim]
    estimate = _estimate(patch, pools, dim, in_channels, num_classes)
    while estimate / ref_bs * MIN_BATCH > budget:
        rel = [p / m for p, m in zip(patch, median)]
        order = np.argsort(rel, kind="stable")[::-1]
        axis = next((int(a) for a in order if patch[a] > stride[a]), None)
        if axis is None:
            log.warning("the smallest possible patch %s still exceeds the %.1f GB memory budget", patch,
                        gpu_memory_gb)
            break
        tmp = list(patch)
        tmp[axis] -= stride[axis]
        _, _, tmp_stride = topo.pool_and_conv_kernels(spacing, tmp)
        patch[axis] -= tmp_stride[axis]
        patch, pools, convs, stride = _topology(spacing, patch)
        estimate = _estimate(patch, pools, dim, in_channels, num_classes)
    batch = round(budget / estimate * ref_bs)
    cap = round(n_voxels_dataset * MAX_DATASET_COVERED / float(np.prod(patch, dtype=np.float64)))
    batch = max(min(batch, cap), MIN_BATCH)
    return {
        "patch_size": [int(p) for p in patch],
        "batch_size": int(batch),
        "pool_op_kernel_sizes": pools,
        "conv_kernel_sizes": convs,
        "features_per_stage": topo.features_per_stage(len(pools), dim),
        "patch_divisor": [int(s) for s in stride],
        "memory_estimate": int(estimate),
    }


def normalization_schemes(channel_names: dict, num_channels: int, file_ending: str) -> list[str]:
    """One scheme per data channel: ``rgb`` for natural images, ``ct`` for CT channels, else ``zscore``."""
    if file_ending.lower() in NATURAL_ENDINGS:
        return ["rgb"] * num_channels
    names = [str(channel_names.get(str(c), "")) for c in range(num_channels)]
    return ["ct" if n.strip().upper() == "CT" else "zscore" for n in names]


def plan_configurations(fingerprint: dict, *, channel_names: dict, labels: dict, gpu_memory_gb: float = 8.0,
                        configs: Sequence[str] | None = None) -> dict:
    """The ``configurations`` part of plans.json plus the dataset-level medians (see docs/formats.md)."""
    spacings = np.asarray(fingerprint["spacings"], float)
    shapes = np.asarray(fingerprint["shapes_after_crop"], float)
    is_2d = bool(fingerprint["is_2d"])
    wanted = list(configs) if configs else [c for c in ALL_CONFIGS if not (is_2d and c == "3d_fullres")]
    unknown = [c for c in wanted if c not in ALL_CONFIGS]
    if unknown:
        raise ConfigError(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(ALL_CONFIGS)}")
    if is_2d and "3d_fullres" in wanted:
        raise ConfigError("3d_fullres needs 3D images; this dataset is 2D (use 2d or 2.5d)")
    n_cases = len(spacings)
    fullres = target_spacing(spacings, shapes)
    new_shapes = np.array([new_shape(sh, sp, fullres) for sh, sp in zip(shapes, spacings)], float)
    median_new = np.median(new_shapes, axis=0)
    n_vox = float(np.prod(median_new, dtype=np.float64) * n_cases)
    C = int(fingerprint["num_channels"])
    K = len(set(int(v) for v in labels.values()))
    norm = normalization_schemes(channel_names, C, fingerprint.get("file_ending", ""))
    rel = fingerprint.get("median_relative_size_after_crop", 1.0)
    use_mask = [bool(rel < 0.75 and s == "zscore") for s in norm]
    intensity = fingerprint.get("foreground_intensity", {})
    out: dict = {}
    for name in wanted:
        dim = 3 if name == "3d_fullres" else 2
        spacing = fullres if dim == 3 else fullres[1:]
        median = list(median_new) if dim == 3 else list(median_new[1:])
        cfg = {"dim": dim, "data_identifier": "3d_fullres" if dim == 3 else "2d",
               "spacing": [float(s) for s in spacing]}
        pb = patch_and_batch(spacing, median, n_vox, C, K, gpu_memory_gb)
        cfg.update({"patch_size": pb.pop("patch_size"), "median_shape": [float(m) for m in median],
                    "batch_size": pb.pop("batch_size"), "normalization": list(norm),
                    "use_mask_for_norm": list(use_mask),
                    "intensity_properties": {str(c): dict(intensity.get(str(c), {})) for c in range(C)}})
        cfg.update(pb)
        if name == "2.5d":
            cfg["neighbours"] = DEFAULT_NEIGHBOURS
        out[name] = cfg
    return {
        "configurations": out,
        "fullres_spacing": fullres,
        "original_median_spacing": [float(s) for s in np.median(spacings, axis=0)],
        "original_median_shape": [float(s) for s in np.median(shapes, axis=0)],
    }
