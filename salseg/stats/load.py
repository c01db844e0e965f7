"""Per-case metric values from a result: a ``fold_<f>`` folder, an experiment folder or a summary.json.

- ``.../fold_<f>``                      -> ``fold_<f>/validation/summary.json``
- ``.../<network>__<module>__<config>`` -> every ``fold_*/validation/summary.json`` pooled (cases must not repeat)
- a ``summary.json`` file, or a folder holding one (e.g. the output of ``salseg evaluate``)

Case id = prediction file name without its image ending. Metric names ``dice|iou|hd95|assd|nsd`` map to the
summary keys; label ``all`` = per-case mean over the foreground labels (NaN ignored), else a label value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from salseg.errors import DataError
from salseg.evaluate.metrics import METRIC_KEYS
from salseg.evaluate.summary import case_id_of
from salseg.fileio import read_json
from salseg.results import SUMMARY_JSON, VALIDATION_DIR, parse_experiment_name

LOWER_IS_BETTER_METRICS = {"hd95", "assd"}


@dataclass
class ResultValues:
    """One side of a comparison: display name, dataset (if known) and case id -> value (NaN allowed)."""

    name: str
    dataset: str
    values: dict[str, float]
    sources: list[Path] = field(default_factory=list)


def metric_key(metric: str) -> str:
    m = str(metric).lower()
    if m not in METRIC_KEYS:
        raise DataError(f"unknown metric '{metric}'; choose from {', '.join(METRIC_KEYS)}")
    return METRIC_KEYS[m]


def summary_files(path: Path) -> tuple[list[Path], str, str]:
    """(summary.json files, display name, dataset name) of a RESULT path."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: result not found (expected a fold_<f> folder, an experiment folder "
                        f"<network>__<module>__<config>, or a summary.json)")
    if path.is_file():
        parent = path.parent
        if parent.name == VALIDATION_DIR and parent.parent.name.startswith("fold_"):
            return [path], f"{parent.parent.parent.name}/{parent.parent.name}", _dataset_of(parent.parent.parent)
        return [path], parent.name or str(path), ""
    if path.name.startswith("fold_"):
        f = path / VALIDATION_DIR / SUMMARY_JSON
        if not f.is_file():
            raise DataError(f"{path}: no {VALIDATION_DIR}/{SUMMARY_JSON} (has this fold finished training?)")
        return [f], f"{path.parent.name}/{path.name}", _dataset_of(path.parent)
    folds = sorted(p for p in path.glob("fold_*") if p.is_dir())
    if folds:
        files = [p / VALIDATION_DIR / SUMMARY_JSON for p in folds if (p / VALIDATION_DIR / SUMMARY_JSON).is_file()]
        if not files:
            raise DataError(f"{path}: none of its folds ({', '.join(p.name for p in folds)}) has "
                            f"{VALIDATION_DIR}/{SUMMARY_JSON}")
        return files, path.name, _dataset_of(path)
    if (path / SUMMARY_JSON).is_file():
        return [path / SUMMARY_JSON], path.name, ""
    raise DataError(f"{path}: neither a fold_<f> folder, an experiment folder with fold_* folders, nor a folder "
                    f"holding {SUMMARY_JSON}")


def _dataset_of(experiment_dir: Path) -> str:
    try:
        parse_experiment_name(experiment_dir.name)
    except ValueError:
        return ""
    return experiment_dir.parent.name


def case_values(summary: dict, source: Path, key: str, label: str) -> dict[str, float]:
    """case id -> value of ``key`` for ``label`` ("all" = foreground mean) in one summary dict."""
    cases = summary.get("metric_per_case") if isinstance(summary, dict) else None
    if not isinstance(cases, list):
        raise DataError(f"{source}: not a summary.json (no 'metric_per_case' list)")
    out: dict[str, float] = {}
    for i, c in enumerate(cases):
        try:
            cid = case_id_of(c["prediction_file"])
            metrics = c["metrics"]
        except (KeyError, TypeError):
            raise DataError(f"{source}: metric_per_case[{i}] lacks 'prediction_file' or 'metrics'") from None
        if label == "all":
            fg = [v for k, v in metrics.items() if str(k) != "0"]
            if not fg:
                raise DataError(f"{source}: case {cid} has no foreground label")
            vals = [_value(v, key, source, cid, k) for k, v in metrics.items() if str(k) != "0"]
            finite = [v for v in vals if not math.isnan(v)]
            value = float(np.mean(finite)) if finite else math.nan
        else:
            if label not in metrics:
                raise DataError(f"{source}: case {cid} has no label {label} (labels: {', '.join(map(str, metrics))})")
            value = _value(metrics[label], key, source, cid, label)
        if cid in out:
            raise DataError(f"{source}: case {cid} appears twice")
        out[cid] = value
    return out


def _value(m: dict, key: str, source: Path, cid: str, label) -> float:
    if not isinstance(m, dict) or key not in m:
        raise DataError(f"{source}: case {cid} label {label} has no '{key}' (was it evaluated with this metric?)")
    v = m[key]
    return math.nan if v is None else float(v)


def load_result(path, metric: str = "dice", label: str | int = "all") -> ResultValues:
    """Per-case values of one RESULT (see module doc); folds of an experiment are pooled."""
    key = metric_key(metric)
    label = str(label).lower()
    if label != "all" and not label.lstrip("-").isdigit():
        raise DataError(f"label must be 'all' or a label value, got '{label}'")
    files, name, dataset = summary_files(Path(path))
    values: dict[str, float] = {}
    for f in files:
        part = case_values(read_json(f), f, key, label)
        dup = sorted(set(part) & set(values))
        if dup:
            raise DataError(f"{f}: case {dup[0]} also appears in another fold of {path}")
        values.update(part)
    if not values:
        raise DataError(f"{path}: no cases in {', '.join(map(str, files))}")
    return ResultValues(name=name, dataset=dataset, values=values, sources=files)
