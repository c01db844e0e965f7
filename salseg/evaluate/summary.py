"""summary.json building (nnU-Net keys + the metrics of the catalogue), means with NaN handling, JSON and CSV writing.

Means: ``mean[label][key]`` is the mean over cases ignoring NaN (NaN only if every case is NaN);
``foreground_mean[key]`` is the mean over the non-zero labels of ``mean[label][key]``, again ignoring NaN.
Label keys are strings in JSON (as nnU-Net writes them).

Per case, besides nnU-Net's keys: ``image_extent_mm`` (the image's physical extent, from which the worst-case
distance is derived, so ``salseg stats`` can re-impute a file written with ``--empty nan``) and ``imputed``
(``{label: ["HD95", "ASSD"]}`` for every label whose values the empty-mask policy imputed). Top level:
``empty_policy`` (``worst`` or ``nan``), ``empty_rules`` (the rules in words) and ``metric_definitions``
(per metric key its definition, parameters filled in, and its empty-mask convention;
:func:`salseg.evaluate.definitions.metric_definitions`).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from salseg.evaluate.definitions import (INSTANCE_COUNT_KEYS, INSTANCE_METRICS, METRIC_KEYS, metric_definitions,
                                         tolerance_json)
from salseg.evaluate.metrics import COUNT_KEYS, check_empty_policy, empty_rules
from salseg.fileio import atomic_path, write_json


def nanmean(values: Sequence[float]) -> float:
    """Mean ignoring NaN; NaN when nothing is left (no warning)."""
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def metric_keys(metrics: Sequence[str]) -> list[str]:
    """Per-label keys in summary order: Dice, IoU, counts, the other metrics requested (catalogue order), and the
    instance counts when instance metrics were asked for."""
    keys = [METRIC_KEYS[m] for m in ("dice", "iou") if m in metrics]
    keys += list(COUNT_KEYS)
    keys += [k for m, k in METRIC_KEYS.items() if m in metrics and m not in ("dice", "iou")]
    if any(m in metrics for m in INSTANCE_METRICS):
        keys += list(INSTANCE_COUNT_KEYS)
    return keys


def build_summary(per_case: list[dict], labels: Sequence[int], metrics: Sequence[str], nsd_tolerance,
                  spacing_source: str = "header", extra: dict | None = None, empty: str = "worst",
                  params: dict | None = None) -> dict:
    """``params``: the other metric parameters (boundary_width, match_iou, instances), recorded with the
    definitions. ``per_case``: [{"prediction_file", "reference_file", "metrics": {label(int): {key: value}}, optional
    "image_extent_mm": [mm per axis], "imputed": {label(int): [keys]}}]."""
    keys = metric_keys(metrics)
    empty = check_empty_policy(empty)
    cases = []
    for c in per_case:
        case = {"prediction_file": c["prediction_file"], "reference_file": c["reference_file"],
                "metrics": {str(v): {k: c["metrics"][v][k] for k in keys} for v in labels}}
        if c.get("image_extent_mm") is not None:
            case["image_extent_mm"] = [float(e) for e in c["image_extent_mm"]]
        case["imputed"] = {str(v): list(k) for v, k in (c.get("imputed") or {}).items() if int(v) in labels}
        cases.append(case)
    mean = {str(v): {k: nanmean([c["metrics"][str(v)][k] for c in cases]) for k in keys} for v in labels}
    fg = [str(v) for v in labels if int(v) != 0]
    foreground_mean = {k: nanmean([mean[v][k] for v in fg]) for k in keys}
    summary = {
        "metric_per_case": cases,
        "mean": mean,
        "foreground_mean": foreground_mean,
        "labels": [int(v) for v in labels],
        "metrics": list(metrics),
        "empty_policy": empty,
        "empty_rules": empty_rules(empty),
        **({"metric_parameters": dict(params)} if params else {}),
        "nsd_tolerance_mm": tolerance_json(nsd_tolerance),
        "metric_definitions": metric_definitions(metrics, labels, nsd_tolerance=nsd_tolerance, empty_policy=empty,
                                                 **(params or {})),
        "spacing_source": spacing_source,
    }
    if extra:
        summary.update(extra)
    return summary


def case_id_of(file_name: str) -> str:
    """Case id = file name without its image ending (``.nii.gz`` counts as one ending)."""
    from salseg.dataset.io import file_ending

    name = Path(file_name).name
    end = file_ending(name)
    return name[: len(name) - len(end)] if end and name.lower().endswith(end) else name


def csv_text(summary: dict) -> str:
    """One row per case and label: case, prediction_file, reference_file, label (label_name where dataset.json
    names the labels), then every metric key; with regions (BraTS-style dataset.json) one more row per case and
    region after its labels, the region's key (``(1, 2, 3)``) as its label and its name as its label_name."""
    cases = summary["metric_per_case"]
    labels = [str(v) for v in summary.get("labels", [])] or (list(cases[0]["metrics"]) if cases else [])
    keys = list(next(iter(summary["mean"].values())).keys()) if summary["mean"] else []
    regions = summary.get("regions") or {}
    names = {**(summary.get("label_names") or {}), **{k: r["name"] for k, r in regions.items()}}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case", "prediction_file", "reference_file", "label"] + (["label_name"] if names else []) + keys)
    for c in cases:
        rows = [(v, c["metrics"][v]) for v in labels] + [(k, c["region_metrics"][k]) for k in regions]
        for v, m in rows:
            w.writerow([case_id_of(c["prediction_file"]), c["prediction_file"], c["reference_file"], v]
                       + ([names.get(str(v), str(v))] if names else []) + [_fmt(m[k]) for k in keys])
    return buf.getvalue()


def _fmt(x) -> str:
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    return "nan" if math.isnan(x) else repr(x)


def write_summary(summary: dict, json_path: str | Path, csv_path: str | Path | None = None) -> tuple[Path, Path]:
    """Write summary.json and the CSV beside it (default: same name with ``.csv``), atomically."""
    json_path = Path(json_path)
    csv_path = Path(csv_path) if csv_path is not None else json_path.with_suffix(".csv")
    text = csv_text(summary)
    write_json(json_path, summary)
    with atomic_path(csv_path, ".csv") as tmp:
        tmp.write_text(text)
    return json_path, csv_path
