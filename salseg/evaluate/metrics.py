"""Segmentation metrics: one spacing-aware implementation of every metric in :mod:`salseg.evaluate.definitions`.

Overlap metrics come from voxel counts: Dice, IoU, Precision, Recall, RVD. Distance metrics share one
:class:`salseg.evaluate.geometry.SurfacePair` per label: surfaces follow medpy exactly
(``medpy.metric.binary.__surface_distances`` with ``connectivity=1``, which is also Metrics Reloaded's border map):
the surface of a mask is ``mask XOR binary_erosion(mask, generate_binary_structure(ndim, 1))`` with voxels outside
the image counted as background; distances are Euclidean in mm from each surface voxel of one mask to the nearest
surface voxel of the other. Hence:

- ``HD`` = the largest distance of both directed sets; ``HD95`` = 95th percentile (numpy's linear interpolation)
  of both directed sets POOLED, as medpy's ``hd95``; ``HD95_MR`` = the larger of the two DIRECTED 95th
  percentiles, as Metrics Reloaded;
- ``ASSD`` = mean of both directed sets pooled, as medpy's ``assd``; ``MASD`` = mean of the two directed means;
- ``NSD`` (surface Dice at tolerance ``tau`` mm, per label if given) = (surface voxels of each mask within ``tau``
  of the other's surface) / (all surface voxels of both masks);
- ``BoundaryIoU`` (opt-in) = IoU of the voxels of each mask closer than ``boundary_width`` mm to its own surface;
- ``clDice`` (opt-in) = centreline Dice from ``skimage.morphology.skeletonize`` skeletons.

Instance metrics (F1, PQ, MatchedDice; :mod:`salseg.evaluate.instances`) are computed per label when asked for.

Speed: per label, surfaces and the two feature transforms are computed ONCE, on the bounding box of both masks
plus a one-voxel margin (clipped to the image), and reused by every distance metric. This is exact: every surface
voxel of both masks lies inside the box, erosion inside the box sees the same neighbours (a neighbour outside the
box is background, outside the image counts as background), and the distance transform of a box that contains
every surface voxel gives the exact distance to the nearest one.

Empty-mask rules: per metric in :mod:`salseg.evaluate.definitions` (``empty``). Distance metrics (HD, HD95,
HD95_MR, ASSD, MASD) are NaN here when exactly one mask is empty; the evaluation policy (:data:`EMPTY_POLICIES`,
applied by :func:`apply_empty_policy`) then either keeps NaN (``nan``) or imputes the worst case (``worst``, the
default of ``salseg evaluate``): the diagonal of the image's physical extent,
``sqrt(sum((shape_i * spacing_i)^2))`` mm (:func:`worst_distance`). Without it a method that misses a structure
entirely would get a better mean HD95 than one that finds it badly.

2D images stored as (1, Y, X) are evaluated in 2D with the in-plane spacing (the z axis has no neighbours).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from salseg.evaluate.definitions import (ALL_METRICS, DEFAULT_METRICS, DISTANCE_METRICS, IMPUTABLE,  # noqa: F401
                                         INSTANCE_METRICS, LOWER_IS_BETTER, METRIC_KEYS, check_metrics,
                                         tolerance_for)
from salseg.evaluate.geometry import SurfacePair, cl_dice, distances_to, surface  # noqa: F401 (re-exported)
from salseg.evaluate.instances import instance_scores, label_instance_scores

COUNT_KEYS = ("TP", "FP", "FN", "TN", "n_pred", "n_ref")
EMPTY_POLICIES = ("worst", "nan")


def empty_rules(policy: str = "worst") -> str:
    """The empty-mask rules in words, as stored in summary.json under ``empty_rules``."""
    one = ("one empty -> the worst case, the diagonal of the image's physical extent in mm (sqrt of the sum of "
           "(shape * spacing)^2 over the axes), listed per case and label under 'imputed'"
           if policy == "worst" else
           "one empty -> NaN (distance to an empty surface is undefined), NaN values are excluded from means")
    return ("Dice, IoU: prediction and reference both empty -> NaN (excluded from means, as nnU-Net); one empty -> 0. "
            f"HD, HD95, HD95_MR, ASSD, MASD: both empty -> NaN; {one}. "
            "NSD, BoundaryIoU, clDice: both empty -> NaN; one empty -> 0. "
            "Precision: nothing predicted -> NaN; Recall, RVD: empty reference -> NaN. "
            "F1, PQ: no instance in either -> NaN; MatchedDice: no matched pair -> NaN. "
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


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _overlap(tp: int, fp: int, fn: int, metrics: tuple[str, ...]) -> dict:
    """Dice, IoU, Precision, Recall, RVD from the voxel counts (empty rules of the catalogue)."""
    out: dict = {}
    n_pred, n_ref = tp + fp, tp + fn
    if "dice" in metrics:
        out["Dice"] = _ratio(2 * tp, 2 * tp + fp + fn)
    if "iou" in metrics:
        out["IoU"] = _ratio(tp, tp + fp + fn)
    if "precision" in metrics:
        out["Precision"] = _ratio(tp, n_pred)
    if "recall" in metrics:
        out["Recall"] = _ratio(tp, n_ref)
    if "rvd" in metrics:
        out["RVD"] = _ratio(n_pred - n_ref, n_ref)
    return out


def _distances(pair: SurfacePair, metrics: tuple[str, ...], tol: float, width: float) -> dict:
    """The distance metrics of two non-empty masks from their shared surfaces."""
    d_pred, d_ref = pair.d_pred, pair.d_ref
    out: dict = {}
    if "hd" in metrics:
        out["HD"] = float(max(d_pred.max(), d_ref.max()))
    pooled = np.concatenate((d_pred, d_ref)) if ("hd95" in metrics or "assd" in metrics) else None
    if "hd95" in metrics:
        out["HD95"] = float(np.percentile(pooled, 95))
    if "hd95_mr" in metrics:
        out["HD95_MR"] = float(max(np.percentile(d_pred, 95), np.percentile(d_ref, 95)))
    if "assd" in metrics:
        out["ASSD"] = float(pooled.mean())
    if "masd" in metrics:
        out["MASD"] = float((d_pred.mean() + d_ref.mean()) / 2)
    if "nsd" in metrics:
        ok = int(np.count_nonzero(d_pred <= tol)) + int(np.count_nonzero(d_ref <= tol))
        out["NSD"] = ok / (d_pred.size + d_ref.size)
    if "boundary_iou" in metrics:
        out["BoundaryIoU"] = pair.boundary_iou(width)
    return out


SHAPE_KEYS = {"hd": "HD", "hd95": "HD95", "hd95_mr": "HD95_MR", "assd": "ASSD", "masd": "MASD", "nsd": "NSD",
              "boundary_iou": "BoundaryIoU", "cldice": "clDice"}
ZERO_IF_ONE_EMPTY = ("nsd", "boundary_iou", "cldice")


def _binary_metrics(p: np.ndarray, r: np.ndarray, spacing: np.ndarray, n_voxels: int, metrics: tuple[str, ...],
                    nsd_tolerance: float, box: tuple[slice, ...] | None, boundary_width: float = 2.0,
                    match_iou: float = 0.5, instances: tuple | None = None) -> dict:
    """Metrics of one binary pair; ``p`` and ``r`` are already cropped to ``box`` (None = both empty).
    ``instances``: (pred instance map, ref instance map) of the box, instead of connected components."""
    if box is None:
        tp = fp = fn = 0
    else:
        tp = int(np.count_nonzero(p & r))
        fp = int(np.count_nonzero(p)) - tp
        fn = int(np.count_nonzero(r)) - tp
    out: dict = {"TP": tp, "FP": fp, "FN": fn, "TN": int(n_voxels) - tp - fp - fn, "n_pred": tp + fp,
                 "n_ref": tp + fn}
    out.update(_overlap(tp, fp, fn, metrics))
    if any(m in metrics for m in INSTANCE_METRICS):
        if box is None:
            out.update({"TP_inst": 0, "FP_inst": 0, "FN_inst": 0, "F1": math.nan, "PQ": math.nan,
                        "MatchedDice": math.nan})
        elif instances is not None:
            out.update(instance_scores(instances[0], instances[1], match_iou))
        else:
            out.update(label_instance_scores(p, r, match_iou))
    shape = [m for m in SHAPE_KEYS if m in metrics]
    if not shape:
        return out
    n_pred, n_ref = tp + fp, tp + fn
    if n_pred == 0 or n_ref == 0:
        one = (n_pred + n_ref) > 0
        for m in shape:
            out[SHAPE_KEYS[m]] = 0.0 if (m in ZERO_IF_ONE_EMPTY and one) else math.nan
        return out
    if any(m in DISTANCE_METRICS for m in shape):
        out.update(_distances(SurfacePair(p, r, spacing), metrics, nsd_tolerance, boundary_width))
    if "cldice" in metrics:
        out["clDice"] = cl_dice(p, r)
    return out


def binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None,
                   metrics: Iterable[str] = DEFAULT_METRICS, nsd_tolerance: float = 1.0,
                   boundary_width: float = 2.0, match_iou: float = 0.5) -> dict:
    """All requested metrics of two binary masks (anything non-zero is foreground). Keys as in summary.json."""
    metrics = check_metrics(metrics)
    p, sp = _prepare(np.asarray(pred).astype(bool, copy=False), spacing)
    r, _ = _prepare(np.asarray(ref).astype(bool, copy=False), spacing)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    box = _union_box(_bbox(p), _bbox(r), p.shape)
    if box is not None:
        p, r = p[box], r[box]
    return _binary_metrics(p, r, sp, int(np.prod(pred.shape)), metrics, nsd_tolerance, box, boundary_width,
                           match_iou)


def empty_metrics(n_voxels: int, metrics: Iterable[str] = DEFAULT_METRICS) -> dict:
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
                  metrics: Iterable[str] = DEFAULT_METRICS, nsd_tolerance: float | Mapping = 1.0, *,
                  boundary_width: float = 2.0, match_iou: float = 0.5,
                  instance_maps: tuple[np.ndarray, np.ndarray] | None = None) -> dict[int, dict]:
    """Per-label metrics of two label maps of equal shape (Z, Y, X) or (Y, X); ``spacing`` in the same axis order.

    ``nsd_tolerance``: mm, or ``{label: mm}`` (``None`` key: every other label). ``instance_maps``: (pred, ref)
    instance id maps of the same shape, used for the instance metrics instead of connected components.
    """
    metrics = check_metrics(metrics)
    pred, sp = _prepare(pred, spacing)
    ref, _ = _prepare(ref, spacing)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if instance_maps is not None:
        instance_maps = tuple(_prepare(m, spacing)[0] for m in instance_maps)
    labels = [int(v) for v in labels]
    bp, br = _label_boxes(pred, labels), _label_boxes(ref, labels)
    n = int(pred.size)
    results = {}
    for v in labels:   # one region per label value; each is a (prediction mask, reference mask) pair in its box
        tol = tolerance_for(nsd_tolerance, v) if "nsd" in metrics else 1.0
        box = _union_box(bp[v], br[v], pred.shape)
        if box is None:
            results[v] = _binary_metrics(None, None, sp, n, metrics, tol, None)
            continue
        inst = None if instance_maps is None else tuple(np.where(m[box] == v, i[box], 0) for m, i in
                                                        ((pred, instance_maps[0]), (ref, instance_maps[1])))
        results[v] = _binary_metrics(pred[box] == v, ref[box] == v, sp, n, metrics, tol, box, boundary_width,
                                     match_iou, inst)
    return results


def dice(pred, ref) -> float:
    return binary_metrics(pred, ref, metrics=("dice",))["Dice"]


def hd95(pred, ref, spacing=None) -> float:
    return binary_metrics(pred, ref, spacing, metrics=("hd95",))["HD95"]


def assd(pred, ref, spacing=None) -> float:
    return binary_metrics(pred, ref, spacing, metrics=("assd",))["ASSD"]


def nsd(pred, ref, spacing=None, tolerance: float = 1.0) -> float:
    return binary_metrics(pred, ref, spacing, metrics=("nsd",), nsd_tolerance=tolerance)["NSD"]
