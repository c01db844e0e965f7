"""Plans from a fingerprint (DESIGN §4): target spacing, patch and batch size, topology, normalisation per config.

Follows nnU-Net v2's planners (the default one and the ResEnc presets, salseg.plan.presets) so that both tools
agree on the same data:
- target spacing: median per axis; the coarsest axis takes the 10th percentile of its spacings when it is more than
  3x coarser than the other axes AND has more than 3x fewer voxels (median shape) than each of them;
- patch: aspect-correct (a 256^3 / 2048^2 box in mm), clipped to the (fractional) median shape after resampling,
  padded UP to the stride of its topology (as nnU-Net; it may exceed the median shape, the sampler pads), then
  shrunk along the axis that is largest relative to the median shape until the preset network's feature-map count
  (nnU-Net's network-based estimate, salseg.plan.topology) fits the preset's reference (default: at batch 2);
- batch: what the remaining budget allows (reference batch 2 in 3D, 12 in 2D), capped so that one batch covers at
  most 5 % (default) / 100 % (ResEnc presets) of the dataset's voxels, never below 2;
- 2d: the fullres spacing and median shape without axis 0 (salseg slices along axis 0; nnU-Net moves the coarsest
  axis first, which is the same whenever axis 0 is the coarsest or all are equal, see docs/formats.md).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from salseg.errors import ConfigError
from salseg.plan import topology as topo
from salseg.plan.memory import slice_module_batch
from salseg.plan.presets import Preset, get_preset
from salseg.preprocess.resample import new_shape

log = logging.getLogger(__name__)

ALL_CONFIGS = ("2d", "2.5d", "3d_fullres")
ANISOTROPY = 3.0
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


def _arch(preset: Preset, n_stages: int, dim: int) -> dict:
    return {"features_per_stage": topo.features_per_stage(n_stages, dim), **preset.blocks(n_stages)}


def _estimate(patch, pools, arch: dict, num_classes: int) -> int:
    """The preset network's feature-map elements (nnU-Net's network-based estimate, no deep supervision)."""
    feats = arch["features_per_stage"]
    if "n_blocks_per_stage" in arch:
        return topo.resenc_unet_elements(patch, pools, feats, num_classes, arch["n_blocks_per_stage"],
                                         arch["n_conv_per_stage_decoder"][0] if arch["n_conv_per_stage_decoder"]
                                         else 1)
    return topo.plain_unet_elements(patch, pools, feats, num_classes, arch["n_conv_per_stage"][0],
                                    topo.CONVS_PER_STAGE)


def _topology(spacing, patch):
    """(pools, convs, stride, patch padded up to the stride) for ``patch`` (nnU-Net's get_pool_and_conv_props)."""
    pools, convs, stride = topo.pool_and_conv_kernels(spacing, patch)
    return pools, convs, stride, topo.pad_to_stride(patch, stride)


def patch_and_batch(spacing: Sequence[float], median_shape: Sequence[float], n_voxels_dataset: float,
                    in_channels: int, num_classes: int, gpu_memory_gb: float | None = None,
                    preset: str | Preset = "default") -> dict:
    """Patch size, batch size and topology for one configuration (2 or 3 axes), as ``preset``'s nnU-Net planner.

    ``num_classes`` is what the memory estimate counts for the heads (nnU-Net: ``len(dataset.json labels)``);
    ``gpu_memory_gb`` defaults to the preset's target.
    """
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    gpu = preset.gpu_memory_gb if gpu_memory_gb is None else float(gpu_memory_gb)
    dim = len(spacing)
    inv = 1.0 / np.asarray(spacing, float)
    edge = 256 ** 3 if dim == 3 else 2048 ** 2
    initial = [round(v) for v in inv * (edge / np.prod(inv)) ** (1 / dim)]
    median = [float(m) for m in median_shape]
    pools, convs, stride, patch = _topology(spacing, [min(i, m) for i, m in zip(initial, median)])
    arch = _arch(preset, len(pools), dim)
    reference = preset.reference(dim, gpu)
    ref_bs = topo.REFERENCE_BATCH[dim]
    estimate = _estimate(patch, pools, arch, num_classes)

    def too_big(e):
        return (e / ref_bs * MIN_BATCH if preset.shrink_at_min_batch else e) > reference

    while too_big(estimate):
        # shrink the axis that is largest relative to the median shape (the last of equals, as nnU-Net's argsort)
        axis = int(np.argsort([p / m for p, m in zip(patch, median)], kind="stable")[-1])
        tmp = list(patch)
        tmp[axis] -= stride[axis]
        _, _, tmp_stride = topo.pool_and_conv_kernels(spacing, tmp)
        if patch[axis] - tmp_stride[axis] < 1:
            log.warning("the smallest possible patch %s still exceeds the %.1f GB memory target", patch, gpu)
            break
        patch = list(patch)
        patch[axis] -= tmp_stride[axis]
        pools, convs, stride, patch = _topology(spacing, patch)
        arch = _arch(preset, len(pools), dim)
        estimate = _estimate(patch, pools, arch, num_classes)
    batch = round(reference / estimate * ref_bs)
    cap = round(n_voxels_dataset * preset.max_dataset_covered / float(np.prod(patch, dtype=np.float64)))
    batch = max(min(batch, cap), MIN_BATCH)
    return {
        "patch_size": [int(p) for p in patch],
        "batch_size": int(batch),
        "pool_op_kernel_sizes": [[int(v) for v in p] for p in pools],
        "conv_kernel_sizes": [[int(v) for v in k] for k in convs],
        **arch,
        "patch_divisor": [int(s) for s in stride],
        "memory_estimate": int(estimate),
    }


def nnunet_transpose(fullres_spacing: Sequence[float]) -> list[int]:
    """nnU-Net's ``transpose_forward``: the coarsest axis first, the others in order (salseg does not transpose)."""
    worst = int(np.argmax(fullres_spacing))
    return [worst] + [a for a in range(len(fullres_spacing)) if a != worst]


def normalization_schemes(channel_names: dict, num_channels: int, file_ending: str) -> list[str]:
    """One scheme per data channel: ``rgb`` for natural images, ``ct`` for CT channels, else ``zscore``."""
    if file_ending.lower() in NATURAL_ENDINGS:
        return ["rgb"] * num_channels
    names = [str(channel_names.get(str(c), "")) for c in range(num_channels)]
    return ["ct" if n.strip().upper() == "CT" else "zscore" for n in names]


def plan_configurations(fingerprint: dict, *, channel_names: dict, labels: dict, gpu_memory_gb: float | None = None,
                        configs: Sequence[str] | None = None, preset: str = "default",
                        num_training: int | None = None) -> dict:
    """The ``configurations`` part of plans.json plus the dataset-level medians (see docs/formats.md).

    ``preset``: default | resenc-m | resenc-l | resenc-xl (salseg.plan.presets); ``gpu_memory_gb`` defaults to the
    preset's target; ``num_training`` (dataset.json ``numTraining``, as nnU-Net) defaults to the fingerprinted cases.
    """
    spacings = np.asarray(fingerprint["spacings"], float)
    shapes = np.asarray(fingerprint["shapes_after_crop"], float)
    is_2d = bool(fingerprint["is_2d"])
    wanted = list(configs) if configs else [c for c in ALL_CONFIGS if not (is_2d and c == "3d_fullres")]
    unknown = [c for c in wanted if c not in ALL_CONFIGS]
    if unknown:
        raise ConfigError(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(ALL_CONFIGS)}")
    if is_2d and "3d_fullres" in wanted:
        raise ConfigError("3d_fullres needs 3D images; this dataset is 2D (use 2d or 2.5d)")
    n_cases = int(num_training or len(spacings))
    fullres = target_spacing(spacings, shapes)
    if len(fullres) == 3 and nnunet_transpose(fullres)[0] != 0 and any(c != "3d_fullres" for c in wanted):
        log.warning("axis %d is the coarsest (spacing %s): nnU-Net would slice 2d along it; salseg's 2d/2.5d slice "
                    "along axis 0, so these 2d plans differ from nnU-Net's (docs/formats.md)",
                    nnunet_transpose(fullres)[0], [round(f, 4) for f in fullres])
    new_shapes = np.array([new_shape(sh, sp, fullres) for sh, sp in zip(shapes, spacings)], float)
    median_new = np.median(new_shapes, axis=0)
    n_vox = float(np.prod(median_new, dtype=np.float64) * n_cases)
    C = int(fingerprint["num_channels"])
    K = len(labels)  # what nnU-Net's estimate counts for the heads (the network has one output per label value)
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
        pb = patch_and_batch(spacing, median, n_vox, C, K, gpu_memory_gb, preset)
        cfg.update({"patch_size": pb.pop("patch_size"), "median_shape": [float(m) for m in median],
                    "batch_size": pb.pop("batch_size"), "normalization": list(norm),
                    "use_mask_for_norm": list(use_mask),
                    "intensity_properties": {str(c): dict(intensity.get(str(c), {})) for c in range(C)}})
        cfg.update(pb)
        if name == "2.5d":  # sized for the costliest slice-module position, so every arm shares one batch
            cfg["neighbours"] = DEFAULT_NEIGHBOURS
            cfg["batch_size"], why = slice_module_batch(cfg, K, "head", DEFAULT_NEIGHBOURS)
            cfg["batch_size_reason"] = f"2.5d plans: {why} (the costliest position; every module and none fit)"
        out[name] = cfg
    return {
        "configurations": out,
        "fullres_spacing": fullres,
        "original_median_spacing": [float(s) for s in np.median(spacings, axis=0)],
        "original_median_shape": [float(s) for s in np.median(shapes, axis=0)],
        "nnunet_transpose_forward": nnunet_transpose(fullres) if len(fullres) == 3 else None,
    }
