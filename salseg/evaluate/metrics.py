"""Segmentation metrics: one spacing-aware implementation (Dice, IoU, confusion counts, HD95, ASSD, NSD).

Surfaces follow medpy exactly (``medpy.metric.binary.__surface_distances`` with ``connectivity=1``): the surface
of a mask is ``mask XOR binary_erosion(mask, generate_binary_structure(ndim, 1))`` with voxels outside the image
counted as background; distances are Euclidean in mm (``distance_transform_edt(~surface, sampling=spacing)``)
from each surface voxel of one mask to the nearest surface voxel of the other. Hence:

- ``HD95`` = 95th percentile (numpy's linear interpolation) of both directed surface-distance sets pooled, as
  medpy's ``hd95``;
- ``ASSD`` = mean of both directed surface-distance sets concatenated, as medpy's ``assd``;
- ``NSD`` (normalised surface distance / surface Dice at tolerance ``tau`` mm) = (number of surface voxels of
  each mask lying within ``tau`` of the other's surface) / (total number of surface voxels of both masks).

Speed: per label, surfaces and the two distance transforms are computed ONCE, on the bounding box of both masks
plus a one-voxel margin (clipped to the image), and reused for HD95, ASSD and NSD. This is exact: every surface
voxel of both masks lies inside the box, erosion inside the box sees the same neighbours (a neighbour outside the
box is background, outside the image counts as background), and the distance transform of a box that contains
every surface voxel gives the exact distance to the nearest one.

Empty-mask rules (:func:`empty_rules`): Dice/IoU: both empty -> NaN (excluded from means, as nnU-Net), one empty
-> 0. NSD: both empty -> NaN, one empty -> 0. HD95/ASSD: both empty -> NaN; one empty -> NaN from the metric
functions here; the evaluation policy (:data:`EMPTY_POLICIES`, applied by :func:`apply_empty_policy`) then
either keeps NaN (``nan``) or imputes the worst case (``worst``, the default of ``salseg evaluate``): the diagonal
of the image's physical extent, ``sqrt(sum((shape_i * spacing_i)^2))`` mm (:func:`worst_distance`). Without it a
method that misses a structure entirely would get a better mean HD95 than one that finds it badly.

2D images stored as (1, Y, X) are evaluated in 2D with the in-plane spacing (the z axis has no neighbours).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

ALL_METRICS = ("dice", "iou", "hd95", "assd", "nsd")
DISTANCE_METRICS = ("hd95", "assd", "nsd")
METRIC_KEYS = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD", "nsd": "NSD"}
COUNT_KEYS = ("TP", "FP", "FN", "TN", "n_pred", "n_ref")
LOWER_IS_BETTER = {"HD95", "ASSD"}

EMPTY_POLICIES = ("worst", "nan")
IMPUTABLE = ("HD95", "ASSD")


def empty_rules(policy: str = "worst") -> str:
    """The empty-mask rules in words, as stored in summary.json under ``empty_rules``."""
    one = ("one empty -> the worst case, the diagonal of the image's physical extent in mm (sqrt of the sum of "
           "(shape * spacing)^2 over the axes), listed per case and label under 'imputed'"
           if policy == "worst" else
           "one empty -> NaN (distance to an empty surface is undefined), NaN values are excluded from means")
    return ("Dice, IoU: prediction and reference both empty -> NaN (excluded from means, as nnU-Net); one empty -> 0. "
            f"HD95, ASSD: both empty -> NaN; {one}. "
            "NSD: both empty -> NaN; one empty -> 0. "
            "Surfaces as medpy (mask XOR its erosion with connectivity 1, outside the image = background); "
            "distances in mm from the header spacing.")


EMPTY_RULES = empty_rules("worst")


def check_empty_policy(policy: str) -> str:
    p = str(policy).lower()
    if p not in EMPTY_POLICIES:
        raise ValueError(f"unknown empty-mask policy '{policy}'; choose from {', '.join(EMPTY_POLICIES)}")
    return p


def image_extent(shape: Sequence[int], spacing: Sequence[float] | None) -> list[float]:
    """Physical extent in mm per axis (shape * spacing); a 2D image stored as (1, Y, X) has its in-plane extent."""
    shape = [int(v) for v in shape]
    sp = [1.0] * len(shape) if spacing is None else [float(v) for v in spacing]
    if len(sp) != len(shape):
        raise ValueError(f"spacing {sp} does not match an array of {len(shape)} dimensions")
    if len(shape) == 3 and shape[0] == 1:
        shape, sp = shape[1:], sp[1:]
    return [n * s for n, s in zip(shape, sp)]


def worst_distance(extent_mm: Sequence[float]) -> float:
    """The worst-case surface distance: the diagonal of the image's physical extent (mm)."""
    return float(math.sqrt(sum(float(e) ** 2 for e in extent_mm)))


def one_empty(m: dict) -> bool:
    """Exactly one of prediction and reference is empty for this label (from its counts)."""
    return (m.get("n_pred", 0) == 0) != (m.get("n_ref", 0) == 0)


def apply_empty_policy(results: dict, extent_mm: Sequence[float], policy: str = "worst") -> dict[int, list[str]]:
    """Apply the policy in place to ``{label: metrics}``; returns ``{label: [imputed keys]}`` (labels with any)."""
    policy = check_empty_policy(policy)
    imputed: dict = {}
    if policy == "nan":
        return imputed
    worst = worst_distance(extent_mm)
    for label, m in results.items():
        if not one_empty(m):
            continue
        keys = [k for k in IMPUTABLE if k in m]
        for k in keys:
            m[k] = worst
        if keys:
            imputed[label] = keys
    return imputed


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """Validate metric names (case-insensitive); returns them lower-case in the canonical order."""
    names = [str(m).lower() for m in metrics]
    bad = [m for m in names if m not in ALL_METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(ALL_METRICS)}")
    return tuple(m for m in ALL_METRICS if m in names)


def _prepare(arr: np.ndarray, spacing: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Drop a singleton z axis of 2D images (with its spacing); return (array, spacing as float64)."""
    arr = np.asarray(arr)
    sp = np.ones(arr.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    if sp.shape != (arr.ndim,):
        raise ValueError(f"spacing {list(sp)} does not match an array of {arr.ndim} dimensions")
    if arr.ndim == 3 and arr.shape[0] == 1:
        return arr[0], sp[1:]
    return arr, sp


def _bbox(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """Half-open bounding box of a boolean mask, None if empty."""
    box = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        if nz.size == 0:
            return None
        box.append((int(nz[0]), int(nz[-1]) + 1))
    return box


def _union_box(a, b, shape) -> tuple[slice, ...] | None:
    """Union of two half-open boxes (either may be None), grown by one voxel and clipped to ``shape``."""
    boxes = [x for x in (a, b) if x is not None]
    if not boxes:
        return None
    return tuple(slice(max(0, min(bx[d][0] for bx in boxes) - 1), min(shape[d], max(bx[d][1] for bx in boxes) + 1))
                 for d in range(len(shape)))


def surface(mask: np.ndarray) -> np.ndarray:
    """medpy's surface: ``mask XOR erosion(mask)`` with connectivity 1 and background outside the array."""
    footprint = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)


def distances_to(target: np.ndarray, points: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from each True voxel of ``points`` (C order) to the nearest True voxel of ``target``.

    Same arithmetic as ``distance_transform_edt(~target, sampling=spacing)[points]`` (scipy computes the feature
    transform, then the scaled index differences), but the distances are evaluated at ``points`` only.
    """
    ft = ndimage.distance_transform_edt(~target, sampling=spacing, return_distances=False, return_indices=True)
    idx = np.nonzero(points)
    diff = (ft[(slice(None),) + idx] - np.stack(idx)).astype(np.float64)
    diff *= spacing[:, None]
    np.multiply(diff, diff, diff)
    return np.sqrt(np.add.reduce(diff, axis=0))


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances (pred -> ref, ref -> pred) in mm, for non-empty boolean masks of one box."""
    sp, sr = surface(pred), surface(ref)
    return distances_to(sr, sp, spacing), distances_to(sp, sr, spacing)


def _binary_metrics(p: np.ndarray, r: np.ndarray, spacing: np.ndarray, n_voxels: int, metrics: tuple[str, ...],
                    nsd_tolerance: float, box: tuple[slice, ...] | None) -> dict:
    """Metrics of one binary pair; ``p`` and ``r`` are already cropped to ``box`` (None = both empty)."""
    if box is None:
        tp = fp = fn = 0
    else:
        tp = int(np.count_nonzero(p & r))
        fp = int(np.count_nonzero(p)) - tp
        fn = int(np.count_nonzero(r)) - tp
    out: dict = {"TP": tp, "FP": fp, "FN": fn, "TN": int(n_voxels) - tp - fp - fn, "n_pred": tp + fp,
                 "n_ref": tp + fn}
    if "dice" in metrics:
        out["Dice"] = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else math.nan
    if "iou" in metrics:
        out["IoU"] = tp / (tp + fp + fn) if (tp + fp + fn) else math.nan
    wanted = [m for m in DISTANCE_METRICS if m in metrics]
    if not wanted:
        return out
    n_pred, n_ref = tp + fp, tp + fn
    if n_pred == 0 or n_ref == 0:
        one_empty = (n_pred + n_ref) > 0
        for m in wanted:
            out[METRIC_KEYS[m]] = 0.0 if (m == "nsd" and one_empty) else math.nan
        return out
    d_pred, d_ref = surface_distances(p, r, spacing)
    if "hd95" in metrics:
        out["HD95"] = float(np.percentile(np.hstack((d_pred, d_ref)), 95))
    if "assd" in metrics:
        out["ASSD"] = float(np.concatenate([d_pred, d_ref]).mean())
    if "nsd" in metrics:
        ok = int(np.count_nonzero(d_pred <= nsd_tolerance)) + int(np.count_nonzero(d_ref <= nsd_tolerance))
        out["NSD"] = ok / (d_pred.size + d_ref.size)
    return out


def binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None,
                   metrics: Iterable[str] = ALL_METRICS, nsd_tolerance: float = 1.0) -> dict:
    """All requested metrics of two binary masks (anything non-zero is foreground). Keys as in summary.json."""
    metrics = check_metrics(metrics)
    p, sp = _prepare(np.asarray(pred).astype(bool, copy=False), spacing)
    r, _ = _prepare(np.asarray(ref).astype(bool, copy=False), spacing)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    box = _union_box(_bbox(p), _bbox(r), p.shape)
    if box is not None:
        p, r = p[box], r[box]
    return _binary_metrics(p, r, sp, int(np.prod(pred.shape)), metrics, nsd_tolerance, box)


def empty_metrics(n_voxels: int, metrics: Iterable[str] = ALL_METRICS) -> dict:
    """The result for a label absent from both prediction and reference (all metrics by the empty rules)."""
    return _binary_metrics(None, None, np.ones(1), n_voxels, check_metrics(metrics), 1.0, None)


def _label_boxes(arr: np.ndarray, labels: Sequence[int]) -> dict[int, list[tuple[int, int]] | None]:
    """Bounding boxes of each label value, in one pass where the values allow it."""
    pos = [v for v in labels if v > 0]
    out: dict[int, list | None] = {}
    if pos and np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0 and max(pos) < 2 ** 31:
        objs = ndimage.find_objects(arr, max_label=max(pos))
        for v in pos:
            o = objs[v - 1]
            out[v] = None if o is None else [(s.start, s.stop) for s in o]
    for v in labels:
        if v not in out:
            out[v] = _bbox(arr == v)
    return out


def label_metrics(pred: np.ndarray, ref: np.ndarray, labels: Sequence[int], spacing: Sequence[float] | None = None,
                  metrics: Iterable[str] = ALL_METRICS, nsd_tolerance: float = 1.0) -> dict[int, dict]:
    """Per-label metrics of two label maps of equal shape (Z, Y, X) or (Y, X); ``spacing`` in the same axis order."""
    metrics = check_metrics(metrics)
    pred, sp = _prepare(pred, spacing)
    ref, _ = _prepare(ref, spacing)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    labels = [int(v) for v in labels]
    bp, br = _label_boxes(pred, labels), _label_boxes(ref, labels)
    n = int(pred.size)
    results = {}
    for v in labels:
        box = _union_box(bp[v], br[v], pred.shape)
        if box is None:
            results[v] = _binary_metrics(None, None, sp, n, metrics, nsd_tolerance, None)
        else:
            results[v] = _binary_metrics(pred[box] == v, ref[box] == v, sp, n, metrics, nsd_tolerance, box)
    return results


def dice(pred, ref) -> float:
    return binary_metrics(pred, ref, metrics=("dice",))["Dice"]


def hd95(pred, ref, spacing=None) -> float:
    return binary_metrics(pred, ref, spacing, metrics=("hd95",))["HD95"]


def assd(pred, ref, spacing=None) -> float:
    return binary_metrics(pred, ref, spacing, metrics=("assd",))["ASSD"]


def nsd(pred, ref, spacing=None, tolerance: float = 1.0) -> float:
    return binary_metrics(pred, ref, spacing, metrics=("nsd",), nsd_tolerance=tolerance)["NSD"]
