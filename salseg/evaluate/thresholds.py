"""Multi-threshold Dice/IoU on probability outputs (``salseg evaluate --thresholds``): the official MedSegDiff protocol.

For each foreground label the prediction's probability map p is scaled by its maximum (``p / max(p)``, as the
official evaluation does with its fused sample), thresholded at every t of ``thresholds`` (default 0.1, 0.3, 0.5,
0.7, 0.9), and Dice and IoU against the reference label are averaged over the thresholds. Empty rules follow
salseg's metrics: a threshold where both masks are empty gives NaN and is left out of the average (the official code
adds 1e-4 to numerator and denominator, so there such a threshold counts as 1); a map that is 0 everywhere is not
scaled.

Inputs: ``<case>.npz`` files written by ``salseg predict --save-probabilities`` (``probabilities`` (K, ...) on the
raw grid and ``label_values``), paired by case id with the reference label maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from salseg.dataset.io import read_label
from salseg.errors import ConfigError, DataError
from salseg.evaluate.evaluator import list_images
from salseg.evaluate.summary import nanmean
from salseg.fileio import read_npz, write_json

DEFAULT_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
PROTOCOL = ("probability / its maximum, thresholded at each threshold; Dice and IoU averaged over the thresholds "
            "(official MedSegDiff evaluation)")


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(t) for t in thresholds)
    if not values or any(not 0.0 <= t < 1.0 for t in values):
        raise ConfigError(f"--thresholds must be values in [0, 1), got {list(thresholds)}")
    return values


def _dice_iou(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    tp = np.count_nonzero(pred & ref)
    n_p, n_r = np.count_nonzero(pred), np.count_nonzero(ref)
    if n_p + n_r == 0:
        return float("nan"), float("nan")
    return 2.0 * tp / (n_p + n_r), tp / (n_p + n_r - tp)


def threshold_scores(prob: np.ndarray, ref: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict:
    """Dice and IoU of one probability map against a boolean reference, each averaged over the thresholds, with
    the per-threshold values."""
    thresholds = check_thresholds(thresholds)
    p = np.asarray(prob, dtype=np.float64)
    peak = float(p.max()) if p.size else 0.0
    if peak > 0:
        p = p / peak
    ref = np.asarray(ref, dtype=bool)
    pairs = [_dice_iou(p > t, ref) for t in thresholds]
    dice, iou = [d for d, _ in pairs], [i for _, i in pairs]
    return {"Dice": nanmean(dice), "IoU": nanmean(iou), "Dice_per_threshold": dice, "IoU_per_threshold": iou}


def evaluate_probabilities(pred_dir, ref_dir, *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                           labels: Sequence[int] | None = None, output=None, allow_missing: bool = False) -> dict:
    """Multi-threshold Dice/IoU of every ``<case>.npz`` in ``pred_dir`` against ``ref_dir``; writes the summary
    (default ``pred_dir/summary_thresholds.json``) and returns it. A reference without a probability file is an
    error unless ``allow_missing`` (then listed under ``missing``)."""
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    thresholds = check_thresholds(thresholds)
    for d in (pred_dir, ref_dir):
        if not d.is_dir():
            raise DataError(f"{d}: not a folder")
    probs = {p.name[:-4]: p for p in sorted(pred_dir.glob("*.npz")) if not p.name.startswith(".")}
    if not probs:
        raise DataError(f"{pred_dir}: no <case>.npz probability files (write them with `salseg predict "
                        f"--save-probabilities`)")
    refs = list_images(ref_dir)
    missing = sorted(set(probs) - set(refs))
    if missing:
        raise DataError(f"{ref_dir}: no reference for {', '.join(missing[:5])}"
                        f"{' (+%d more)' % (len(missing) - 5) if len(missing) > 5 else ''}")
    no_prob = sorted(set(refs) - set(probs))
    if no_prob and not allow_missing:
        raise DataError(f"{pred_dir}: {len(no_prob)} reference(s) in {ref_dir} have no <case>.npz probability file: "
                        f"{', '.join(no_prob[:5])}{' (+%d more)' % (len(no_prob) - 5) if len(no_prob) > 5 else ''}; "
                        f"nothing evaluated; pass --allow-missing to score only the {len(probs)} present")
    per_case, chosen = [], None
    for cid, path in probs.items():
        arrays = read_npz(path)
        if "probabilities" not in arrays or "label_values" not in arrays:
            raise DataError(f"{path}: needs arrays 'probabilities' and 'label_values' (salseg predict output)")
        values = [int(v) for v in arrays["label_values"]]
        ref, _ = read_label(refs[cid])
        prob = arrays["probabilities"]
        if tuple(prob.shape[1:]) != tuple(ref.shape):
            raise DataError(f"{path}: probabilities of shape {list(prob.shape[1:])} but the reference "
                            f"{refs[cid].name} has shape {list(ref.shape)}")
        chosen = [v for v in (labels or values[1:])]
        unknown = [v for v in chosen if v not in values]
        if unknown:
            raise ConfigError(f"{path}: label value(s) {unknown} have no probability channel (it has {values})")
        metrics = {str(v): threshold_scores(prob[values.index(v)], ref == v, thresholds) for v in chosen}
        per_case.append({"prediction_file": str(path), "reference_file": str(refs[cid]), "metrics": metrics})
    mean = {str(v): {k: nanmean([c["metrics"][str(v)][k] for c in per_case]) for k in ("Dice", "IoU")}
            for v in chosen}
    summary = {"thresholds": list(thresholds), "threshold_protocol": PROTOCOL, "labels": chosen,
               "metric_per_case": per_case, "mean": mean,
               "missing": {"n_evaluated": len(per_case), "references_without_prediction": no_prob,
                           "predictions_without_reference": []},
               "foreground_mean": {k: nanmean([m[k] for m in mean.values()]) for k in ("Dice", "IoU")}}
    write_json(Path(output) if output else pred_dir / "summary_thresholds.json", summary)
    return summary
