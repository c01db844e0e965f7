"""Scoring with a dataset's label description (salseg.dataset.labels.LabelSpec): the ignore label and regions.

- **ignore**: voxels whose reference holds the ignore value are left out of every metric: both maps are set to
  background there before scoring (so an ignored voxel is neither TP, FP, FN nor TN; surfaces are those of the
  labelled part). A prediction never holds the ignore value.
- **regions**: besides the per-label metrics, every region is scored as the binary pair (prediction value in the
  region, reference value in the region) with the same metrics, keyed as nnU-Net writes regions (``"(1, 2, 3)"``).
  summary.json gains ``regions`` (key -> name and values), ``region_mean``, ``region_foreground_mean`` and, per case,
  ``region_metrics`` and ``region_imputed``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from salseg.evaluate.definitions import tolerance_for
from salseg.evaluate.metrics import apply_empty_policy, label_metrics


def spec_options(spec) -> dict:
    """The parts of a LabelSpec the evaluator needs, as plain data (they travel to worker processes)."""
    if spec is None:
        return {"ignore": None, "regions": []}
    regions = [{"key": str(tuple(r)), "name": n, "values": list(r), "paints": int(v)}
               for r, n, v in zip(spec.regions, spec.region_names, spec.regions_class_order)]
    return {"ignore": spec.ignore, "regions": regions}


def without_ignored(pred: np.ndarray, ref: np.ndarray, ignore: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Both maps with the voxels the reference marks ``ignore`` set to background, and how many there were."""
    if ignore is None:
        return pred, ref, 0
    keep = ref != ignore
    return np.where(keep, pred, 0), np.where(keep, ref, 0), int(keep.size - np.count_nonzero(keep))


def uncount_ignored(results: dict, n_ignored: int) -> dict:
    """Take the ignored voxels (background in both maps after :func:`without_ignored`) out of every TN count."""
    for m in results.values():
        if n_ignored and "TN" in m:
            m["TN"] -= n_ignored
    return results


def region_metrics(pred: np.ndarray, ref: np.ndarray, spacing, metrics, opts: dict, extent,
                   empty: str) -> tuple[dict, dict]:
    """({region key: metrics}, {region key: imputed keys}) of one case (maps already without ignored voxels)."""
    out = {}
    for r in opts["regions"]:
        p, t = np.isin(pred, r["values"]).astype(np.uint8), np.isin(ref, r["values"]).astype(np.uint8)
        tol = tolerance_for(opts["nsd_tolerance"], r["paints"]) if "nsd" in metrics else 1.0
        out[r["key"]] = label_metrics(p, t, [1], spacing, metrics, tol, boundary_width=opts["boundary_width"],
                                      match_iou=opts["match_iou"])[1]
    imputed = apply_empty_policy(out, extent, empty)
    return uncount_ignored(out, opts.get("n_ignored", 0)), imputed


def add_region_summary(summary: dict, results: Sequence[dict], opts: dict, keys: Sequence[str]) -> dict:
    """Add the region section to ``summary`` (``results``: the per-case dicts, in ``metric_per_case`` order)."""
    from salseg.evaluate.summary import nanmean

    if opts.get("ignore") is not None:
        summary["ignore_label"] = int(opts["ignore"])
    if not opts["regions"]:
        return summary
    names = [r["key"] for r in opts["regions"]]
    for case, r in zip(summary["metric_per_case"], results):
        case["region_metrics"] = {n: {k: r["region_metrics"][n][k] for k in keys} for n in names}
        case["region_imputed"] = {n: list(v) for n, v in r["region_imputed"].items()}
    mean = {n: {k: nanmean([c["region_metrics"][n][k] for c in summary["metric_per_case"]]) for k in keys}
            for n in names}
    summary["regions"] = {r["key"]: {"name": r["name"], "values": r["values"], "paints": r["paints"]}
                          for r in opts["regions"]}
    summary["region_mean"] = mean
    summary["region_foreground_mean"] = {k: nanmean([mean[n][k] for n in names]) for k in keys}
    return summary
