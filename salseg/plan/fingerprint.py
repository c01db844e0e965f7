"""Dataset fingerprint (docs/formats.md ``fingerprint.json``): per case spacing and shape after crop-to-nonzero,
per-channel foreground intensity statistics from seeded samples of voxels under label > 0, class voxel counts.
Voxels under the dataset's ignore label (if any) are neither foreground samples nor class counts; their number is
``ignored_voxel_count``."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from salseg.dataset.cases import Case
from salseg.dataset.dataset_json import DatasetInfo
from salseg.dataset.io import read_images, read_label
from salseg.errors import DataError
from salseg.plan.planner import normalization_schemes
from salseg.preprocess.crop import bbox_slices, nonzero_bbox
from salseg.parallel import map_parallel

log = logging.getLogger(__name__)

TOTAL_SAMPLES = 10_000_000     # foreground intensity samples over the whole dataset (split over cases)
MIN_SAMPLES_PER_CASE = 10_000


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the case id (not on the order or the worker)."""
    return np.random.default_rng([int(seed), zlib.crc32(case_id.encode())])


def class_counts(seg: np.ndarray) -> dict[int, int]:
    flat = seg.ravel()
    if flat.size and flat.min() >= 0:
        counts = np.bincount(flat.astype(np.intp, copy=False))
        return {int(v): int(n) for v, n in enumerate(counts) if n}
    values, counts = np.unique(flat, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts)}


def fingerprint_case(job: tuple) -> dict:
    """One case -> geometry after crop, foreground samples (C, n) and class counts. Runs in a worker."""
    case_id, images, label, n_samples, seed, ignore = job
    data, props = read_images([Path(p) for p in images])
    seg = read_label(Path(label))[0] if label else None
    bbox = nonzero_bbox(data)
    sl = bbox_slices(bbox)
    shape_crop = [b - a for a, b in bbox]
    out = {"case_id": case_id, "spacing": [float(s) for s in props["spacing"]], "shape_before_crop": props["shape"],
           "shape_after_crop": shape_crop, "ndim": int(props["ndim"]), "num_channels": int(data.shape[0]),
           "relative_size_after_crop": float(np.prod(shape_crop) / max(1, np.prod(props["shape"])))}
    if seg is None:
        out["samples"] = np.zeros((data.shape[0], 0), np.float32)
        out["class_counts"] = {}
        return out
    fg = seg[sl] > 0
    if ignore is not None:
        fg &= seg[sl] != ignore
    vals = data[(slice(None),) + sl][:, fg]                      # (C, n_fg)
    if vals.shape[1] > n_samples:
        idx = case_rng(seed, case_id).choice(vals.shape[1], n_samples, replace=False)
        vals = vals[:, np.sort(idx)]
    out["samples"] = np.ascontiguousarray(vals, dtype=np.float32)
    out["class_counts"] = class_counts(seg)
    out["ignored"] = out["class_counts"].pop(ignore, 0) if ignore is not None else 0
    return out


def intensity_stats(samples: np.ndarray) -> dict:
    """mean, std, min, max, median and the 0.5 / 99.5 percentiles of a 1D sample (zeros / ones if empty)."""
    if samples.size == 0:
        return {"mean": 0.0, "std": 1.0, "min": 0.0, "max": 0.0, "median": 0.0,
                "percentile_00_5": 0.0, "percentile_99_5": 0.0}
    s = samples.astype(np.float64, copy=False)
    p005, p50, p995 = np.percentile(s, [0.5, 50.0, 99.5])
    return {"mean": float(s.mean()), "std": float(s.std()), "min": float(s.min()), "max": float(s.max()),
            "median": float(p50), "percentile_00_5": float(p005), "percentile_99_5": float(p995)}


def _check_ct_foreground(dataset_name: str, info: DatasetInfo, samples: list[np.ndarray]) -> None:
    """CT channels are normalised with the foreground intensity percentiles, mean and std: refuse a dataset whose
    labels give none (all background) or a single value (every image would preprocess to a constant)."""
    schemes = normalization_schemes(info.channel_names, len(samples), info.file_ending)
    for c, (scheme, s) in enumerate(zip(schemes, samples)):
        if scheme != "ct":
            continue
        name = info.channel_names.get(str(c), "CT")
        if s.size == 0:
            why = "its label maps have no foreground voxels (every label is 0)"
        elif float(np.percentile(s, 0.5)) == float(np.percentile(s, 99.5)):
            why = f"all its foreground voxels have one intensity ({float(s[0]):g})"
        else:
            continue
        raise DataError(f"{dataset_name}: channel {c} '{name}' is normalised as CT with the foreground intensity "
                        f"range, but {why}, so every image would become a constant; label the structures "
                        f"(labelsTr) or name the channel something other than CT in dataset.json channel_names")


def compute_fingerprint(dataset_name: str, info: DatasetInfo, cases: list[Case], *, num_workers: int = 1,
                        seed: int = 0, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The fingerprint dict of ``cases`` (training cases of a checked raw dataset)."""
    n = max(1, len(cases))
    per_case = max(MIN_SAMPLES_PER_CASE, TOTAL_SAMPLES // n)
    ignore = info.label_spec.ignore
    jobs = [(c.case_id, [str(p) for p in c.images], str(c.label) if c.label else None, per_case, seed, ignore)
            for c in cases]
    results = map_parallel(fingerprint_case, jobs, num_workers=num_workers, progress=progress,
                           description="fingerprint")
    channels = {r["num_channels"] for r in results}
    ndims = {r["ndim"] for r in results}
    if len(channels) > 1 or len(ndims) > 1:  # the integrity check normally catches this first
        raise DataError(f"{dataset_name}: cases differ in channel count {sorted(channels)} or dimension "
                        f"{sorted(ndims)}")
    C = channels.pop() if channels else info.num_channels
    counts: dict[int, int] = {}
    for r in results:
        for v, k in r["class_counts"].items():
            counts[v] = counts.get(v, 0) + k
    samples = [np.concatenate([r["samples"][c] for r in results]) if results else np.zeros(0, np.float32)
               for c in range(C)]
    _check_ct_foreground(dataset_name, info, samples)
    rel = [r["relative_size_after_crop"] for r in results]
    return {
        "dataset_name": dataset_name,
        "num_cases": len(results),
        "num_channels": int(C),
        "file_ending": info.file_ending,
        "spacings": [r["spacing"] for r in results],
        "shapes_after_crop": [r["shape_after_crop"] for r in results],
        "shapes_before_crop": [r["shape_before_crop"] for r in results],
        "median_relative_size_after_crop": float(np.median(rel)) if rel else 1.0,
        "is_2d": bool(ndims and ndims.pop() == 2),
        "cases": [r["case_id"] for r in results],
        "foreground_intensity": {str(c): intensity_stats(samples[c]) for c in range(C)},
        "class_voxel_counts": {str(v): int(counts[v]) for v in sorted(counts)},
        **({"ignored_voxel_count": int(sum(r.get("ignored", 0) for r in results))} if ignore is not None else {}),
        "seed": int(seed),
    }
