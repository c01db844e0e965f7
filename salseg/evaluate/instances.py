"""Instance-wise scores (``salseg evaluate --instances``): detection TP/FP/FN, F1, panoptic quality, matched Dice.

Instances are the connected components of each label (full connectivity: 8 in 2D, 26 in 3D, as cc3d's default
that panoptica uses), or the values of an instance label map as given (``--instance-maps``, e.g. GlaS: 0 is
background, every other value one gland). A predicted and a reference instance match when their IoU exceeds the
threshold (default 0.5). With a threshold >= 0.5 the matching is one-to-one without any assignment step: two
instances of one map are disjoint, so at most one instance of the other map can overlap a given instance by
more than half of their union.

Per case and label: ``TP_inst`` (matched pairs), ``FP_inst`` (unmatched predicted instances), ``FN_inst``
(unmatched reference instances), ``F1`` = 2 TP / (2 TP + FP + FN), ``PQ`` = sum of the matched IoUs /
(TP + FP/2 + FN/2) (= segmentation quality x recognition quality, Kirillov et al.), ``MatchedDice`` = mean Dice of
the matched pairs. No instance in either map -> F1 and PQ NaN; no matched pair -> MatchedDice NaN.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

MIN_MATCH_IOU = 0.5


def check_match_iou(threshold: float) -> float:
    t = float(threshold)
    if not MIN_MATCH_IOU <= t < 1.0:
        raise ValueError(f"instance matching IoU threshold must be in [0.5, 1) (one-to-one matching), got {threshold}")
    return t


def components(mask: np.ndarray) -> np.ndarray:
    """Connected components of a boolean mask, full connectivity; 0 = background, 1..N the instances."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    return ndimage.label(mask, structure=structure)[0]


def _dense(inst: np.ndarray) -> tuple[np.ndarray, int]:
    """Instance ids renumbered 0..N (0 stays background)."""
    inst = np.asarray(inst)
    values, inverse = np.unique(inst, return_inverse=True)
    inverse = inverse.reshape(inst.shape)
    if values.size and values[0] == 0:
        return inverse, int(values.size) - 1
    return inverse + 1, int(values.size)


def match_instances(pred_inst: np.ndarray, ref_inst: np.ndarray, threshold: float = 0.5) -> dict:
    """Match two instance maps (0 = background) by IoU > ``threshold``; returns counts, F1, PQ, matched Dice and
    the matched pairs' IoU and Dice."""
    threshold = check_match_iou(threshold)
    p, n_p = _dense(pred_inst)
    r, n_r = _dense(ref_inst)
    size_p = np.bincount(p.ravel(), minlength=n_p + 1)[1:]
    size_r = np.bincount(r.ravel(), minlength=n_r + 1)[1:]
    both = (p > 0) & (r > 0)
    pair = p[both].astype(np.int64) * (n_r + 1) + r[both]
    codes, inter = np.unique(pair, return_counts=True)
    ip, ir = codes // (n_r + 1), codes % (n_r + 1)
    union = size_p[ip - 1] + size_r[ir - 1] - inter
    iou = inter / union
    hit = iou > threshold
    ious = iou[hit]
    dices = 2 * inter[hit] / (size_p[ip[hit] - 1] + size_r[ir[hit] - 1])
    tp = int(hit.sum())
    fp, fn = n_p - tp, n_r - tp
    denom = tp + 0.5 * fp + 0.5 * fn
    return {"TP_inst": tp, "FP_inst": fp, "FN_inst": fn,
            "F1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else math.nan,
            "PQ": float(ious.sum() / denom) if denom else math.nan,
            "MatchedDice": float(dices.mean()) if tp else math.nan,
            "matched_iou": [float(v) for v in ious], "matched_dice": [float(v) for v in dices]}


def instance_scores(pred_inst: np.ndarray, ref_inst: np.ndarray, threshold: float = 0.5) -> dict:
    """The per-case summary keys of :func:`match_instances` (counts, F1, PQ, MatchedDice)."""
    m = match_instances(pred_inst, ref_inst, threshold)
    return {k: m[k] for k in ("TP_inst", "FP_inst", "FN_inst", "F1", "PQ", "MatchedDice")}


def label_instance_scores(pred: np.ndarray, ref: np.ndarray, threshold: float = 0.5) -> dict:
    """Instance scores of two boolean masks of one label: their connected components matched by IoU."""
    return instance_scores(components(pred), components(ref), threshold)
