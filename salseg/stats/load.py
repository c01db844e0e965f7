"""Per-case metric values from a result: salseg or nnU-Net result folders, or a summary.json.

- ``.../fold_<f>`` or ``.../fold_<f>_seed<S>`` -> its ``validation/summary.json``
- ``.../<network>__<module>__<config>`` (salseg) or ``.../<Trainer>__<Plans>__<config>`` (nnU-Net v2) -> every
  ``fold_*/validation/summary.json`` pooled over folds (cases must not repeat within one seed); seeds
  (``fold_<f>_seed<S>``) are averaged per case; an nnU-Net folder without fold summaries falls back to its
  ``crossval_results_folds_*/summary.json``
- a ``summary.json`` file (salseg's, or nnU-Net's schema, which has Dice/IoU/counts but no HD95, ASSD or NSD), or a
  folder holding one (e.g. the output of ``salseg evaluate``)
- the patients of the cases: ``groups`` of ``<root>/raw/<dataset>/dataset.json`` when the result lies in
  ``<root>/results/<dataset>/`` (:func:`result_groups`)

CSV inputs (a long per-case table and a per-baseline table) are read by :mod:`salseg.stats.csv_input`. Every seed
of a method must cover the same cases (:func:`check_seed_coverage`).

Case id = prediction file name without its image ending. Metric names (``dice``, ``hd95``, ``hd95_mr``, ... of
:mod:`salseg.evaluate.definitions`) map to the summary keys; label ``all`` = per-case mean over the foreground
labels (NaN ignored), else a label value.
Missing structures follow the requested empty-mask policy: a file written with ``nan`` (or before the policy
existed) is re-imputed from its stored ``image_extent_mm`` under ``worst``, or refused when it lacks it; a file
written with ``worst`` gives NaN again under ``nan`` (its ``imputed`` lists say which values).

Definitions: a salseg summary.json records each metric's definition (``metric_definitions``); the results of one
comparison must agree on the compared metric's definition (:func:`load_arms`, :func:`check_definitions`), else
DataError naming both results (a summary without definitions, nnU-Net's or an older salseg's, is not checked);
label 'all' / 'regions' needs the same scored labels / regions in every result (:func:`check_label_sets`).
Signed metrics (RVD) are read as |value| and named ``|rvd|`` (:func:`display_metric`).
A value that is not a number is a DataError naming the file, case, label and key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from salseg.errors import DataError
from salseg.evaluate.definitions import CATALOGUE
from salseg.evaluate.metrics import IMPUTABLE, METRIC_KEYS, check_empty_policy, one_empty, worst_distance
from salseg.evaluate.summary import case_id_of
from salseg.fileio import read_json
from salseg.results import SUMMARY_JSON, VALIDATION_DIR, parse_experiment_name, parse_fold_name

# The one place stats reads a metric's direction from (the catalogue's flags): the surface distances, and the signed
# metrics (RVD), which are compared by their absolute value and named |name| in every output.
DISTANCE_NAMES = {m.name for m in CATALOGUE if m.lower_is_better}
SIGNED_METRICS = {m.name for m in CATALOGUE if m.signed}
LOWER_IS_BETTER_METRICS = DISTANCE_NAMES | SIGNED_METRICS
_SIGNED_KEYS = {m.key for m in CATALOGUE if m.signed}


def display_metric(metric: str) -> str:
    """The metric's name in records, tables and plots: ``|rvd|`` for a signed metric (compared as |value|)."""
    m = str(metric).lower()
    return f"|{m}|" if m in SIGNED_METRICS else m


@dataclass
class ResultValues:
    """One side of a comparison: display name, dataset (if known), case id -> value (NaN allowed; averaged over
    seeds), and per seed the values it came from."""

    name: str
    dataset: str
    values: dict[str, float]
    sources: list[Path] = field(default_factory=list)
    seeds: dict[int, dict[str, float]] = field(default_factory=dict)
    fold_dirs: list[Path] = field(default_factory=list)
    spacing_sources: set = field(default_factory=set)
    groups: dict[str, str] = field(default_factory=dict)
    definition: str | None = None   # the compared metric's definition in its summary.json (None: not recorded)
    scored: tuple = ()   # label 'all' / 'regions': the labels (regions) its per-case mean is over

    @property
    def n_seeds(self) -> int:
        return max(1, len(self.seeds))

    def seed_sd(self) -> float:
        """SD (ddof 1) over seeds of the arm's mean over the cases every seed has; NaN with fewer than 2 seeds."""
        return seed_sd(self.seeds)


def check_seed_coverage(seeds: dict[int, dict[str, float]], who: str) -> None:
    """Every seed must have the same cases: else a DataError naming ``who``, the seed and a missing case."""
    if len(seeds) < 2:
        return
    every = set().union(*(set(v) for v in seeds.values()))
    for s, vals in sorted(seeds.items()):
        lacking = sorted(every - set(vals))
        if lacking:
            raise DataError(f"{who} has seed {s} for only {len(vals)} of {len(every)} cases (e.g. '{lacking[0]}' "
                            f"is missing); every seed of a method must cover the same cases")


def result_groups(fold_dirs) -> dict[str, str]:
    """case -> patient from ``groups`` in ``<root>/raw/<dataset>/dataset.json`` of a result that lies in
    ``<root>/results/<dataset>/<experiment>/``; empty when there is none."""
    from salseg.dataset import load_dataset_json
    from salseg.results import raw_dir

    for d in fold_dirs:
        exp = Path(d).resolve().parent
        if exp.parent.parent.name == "results":
            raw = raw_dir(exp.parent.parent.parent, exp.parent.name)
            if (raw / "dataset.json").is_file():
                return dict(load_dataset_json(raw).groups)
    return {}


def seed_sd(seeds: dict[int, dict[str, float]]) -> float:
    if len(seeds) < 2:
        return math.nan
    common = set.intersection(*(set(v) for v in seeds.values()))
    means = []
    for vals in seeds.values():
        x = np.asarray([vals[c] for c in sorted(common)], dtype=np.float64)
        x = x[~np.isnan(x)]
        if x.size:
            means.append(float(x.mean()))
    return float(np.std(means, ddof=1)) if len(means) >= 2 else math.nan


def metric_key(metric: str) -> str:
    m = str(metric).lower()
    if m not in METRIC_KEYS:
        raise DataError(f"unknown metric '{metric}'; choose from {', '.join(METRIC_KEYS)}")
    return METRIC_KEYS[m]


def _fold_summaries(path: Path) -> list[tuple[Path, int, Path]]:
    """(summary file, seed, fold dir) of every finished fold folder in an experiment folder."""
    out = []
    for p in sorted(path.iterdir()):
        parsed = parse_fold_name(p.name) if p.is_dir() else None
        if parsed and (p / VALIDATION_DIR / SUMMARY_JSON).is_file():
            out.append((p / VALIDATION_DIR / SUMMARY_JSON, parsed[1], p))
    return out


def result_label_names(paths) -> dict[str, str]:
    """{label value: name} from the summary.json files of ``paths`` (``label_names``, written by evaluate from
    dataset.json); {} where none records them. Unreadable files are left to the loaders' own errors."""
    names: dict[str, str] = {}
    for path in paths:
        try:
            files = summary_files(Path(path))[0]
        except DataError:
            continue
        for f, _, _ in files:
            try:
                names.update({str(k): str(v) for k, v in (read_json(f).get("label_names") or {}).items()})
            except (DataError, OSError, ValueError, AttributeError):
                continue
    return names


def summary_files(path: Path) -> tuple[list[tuple[Path, int, Path | None]], str, str]:
    """([(summary.json, seed, fold dir or None)], display name, dataset name) of a RESULT path."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: result not found (expected a fold_<f> folder, an experiment folder "
                        f"<network>__<module>__<config>, an nnU-Net trainer folder, or a summary.json)")
    if path.is_file():
        parent = path.parent
        fold = parse_fold_name(parent.parent.name) if parent.name == VALIDATION_DIR else None
        if fold:
            return ([(path, fold[1], parent.parent)], f"{parent.parent.parent.name}/{parent.parent.name}",
                    _dataset_of(parent.parent.parent))
        return [(path, 0, None)], parent.name or str(path), ""
    fold = parse_fold_name(path.name)
    if fold:
        f = path / VALIDATION_DIR / SUMMARY_JSON
        if not f.is_file():
            raise DataError(f"{path}: no {VALIDATION_DIR}/{SUMMARY_JSON} (has this fold finished training?)")
        return [(f, fold[1], path)], f"{path.parent.name}/{path.name}", _dataset_of(path.parent)
    files = _fold_summaries(path)
    if files:
        return files, path.name, _dataset_of(path)
    crossval = sorted(path.glob("crossval_results_folds_*/" + SUMMARY_JSON))
    if crossval:   # nnU-Net trainer folder without fold validation summaries
        return [(crossval[-1], 0, None)], path.name, _dataset_of(path)
    folds = sorted(p.name for p in path.glob("fold_*") if p.is_dir())
    if folds:
        raise DataError(f"{path}: none of its folds ({', '.join(folds)}) has {VALIDATION_DIR}/{SUMMARY_JSON}")
    if (path / SUMMARY_JSON).is_file():
        return [(path / SUMMARY_JSON, 0, None)], path.name, ""
    raise DataError(f"{path}: neither a fold_<f> folder, an experiment folder with fold_* folders, nor a folder "
                    f"holding {SUMMARY_JSON}")


def _dataset_of(experiment_dir: Path) -> str:
    try:
        parse_experiment_name(experiment_dir.name)
    except ValueError:
        return ""
    return experiment_dir.parent.name


def _cases(summary, source: Path) -> list:
    cases = summary.get("metric_per_case") if isinstance(summary, dict) else None
    if not isinstance(cases, list):
        raise DataError(f"{source}: not a summary.json (no 'metric_per_case' list)")
    return cases


def available_metrics(summary: dict, source: Path) -> list[str]:
    """Metric names (dice, iou, ...) that every foreground label of every case carries."""
    found = None
    for c in _cases(summary, source):
        for k, m in (c.get("metrics") or {}).items():
            if str(k) != "0" and isinstance(m, dict):
                have = {name for name, key in METRIC_KEYS.items() if key in m}
                found = have if found is None else found & have
    return [m for m in METRIC_KEYS if m in (found or set())]


def _value(m: dict, key: str, source: Path, cid: str, label, case: dict, file_policy: str, empty: str) -> float:
    if not isinstance(m, dict) or key not in m:
        raise DataError(f"{source}: case {cid} label {label} has no '{key}' (was it evaluated with this metric?)")
    raw = m[key]
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, (int, float, str))):
        raw = "not a number"
    try:
        v = math.nan if raw is None else float(raw)
    except ValueError:
        raise DataError(f"{source}: case {cid} label {label}: '{key}' is not a number ({str(m[key])[:40]!r})") \
            from None
    if key not in IMPUTABLE:
        return abs(v) if key in _SIGNED_KEYS else v
    imputed = key in ((case.get("imputed") or {}).get(str(label)) or [])
    if empty == "nan":
        return math.nan if (file_policy == "worst" and imputed) else v
    if math.isnan(v) and one_empty(m):  # written with NaN for a missing structure: re-impute
        extent = case.get("image_extent_mm")
        if not extent:
            raise DataError(f"{source}: case {cid} label {label}: {key} is NaN for a missing structure and the file "
                            f"stores no image size (image_extent_mm) to impute the worst case; re-run salseg "
                            f"evaluate, or use --empty nan")
        return worst_distance(extent)
    return v


def case_values(summary: dict, source: Path, key: str, label: str, empty: str = "worst") -> dict[str, float]:
    """case id -> value of ``key`` for ``label`` ("all" = foreground mean; "regions" = mean over the regions; a
    region key such as "(1, 2, 3)" = that region, from ``region_metrics``) in one summary dict."""
    cases = _cases(summary, source)
    file_policy = str(summary.get("empty_policy", "nan"))
    out: dict[str, float] = {}
    for i, c in enumerate(cases):
        try:
            cid = case_id_of(c["prediction_file"])
            metrics = c["metrics"]
        except (KeyError, TypeError):
            raise DataError(f"{source}: metric_per_case[{i}] lacks 'prediction_file' or 'metrics'") from None
        if label == REGIONS or label.startswith("("):   # region scores: the same rules on region_metrics
            metrics, c = c.get("region_metrics") or {}, dict(c, imputed=c.get("region_imputed") or {})
            if not metrics:
                raise DataError(f"{source}: case {cid} has no region metrics (a dataset with regions, evaluated by "
                                f"salseg evaluate, has them)")
        if label in ("all", REGIONS):
            fg = [k for k in metrics if str(k) != "0"]
            if not fg:
                raise DataError(f"{source}: case {cid} has no foreground label")
            vals = [_value(metrics[k], key, source, cid, k, c, file_policy, empty) for k in fg]
            finite = [v for v in vals if not math.isnan(v)]
            value = float(np.mean(finite)) if finite else math.nan
        else:
            if label not in metrics:
                raise DataError(f"{source}: case {cid} has no label {label} (labels: {', '.join(map(str, metrics))})")
            value = _value(metrics[label], key, source, cid, label, c, file_policy, empty)
        if cid in out:
            raise DataError(f"{source}: case {cid} appears twice")
        out[cid] = value
    return out


def average_seeds(seeds: dict[int, dict[str, float]]) -> dict[str, float]:
    """Per case, the mean over the seeds that have it (NaN ignored; NaN if every seed's value is NaN)."""
    out: dict[str, float] = {}
    for cid in sorted({c for vals in seeds.values() for c in vals}):
        xs = [vals[cid] for vals in seeds.values() if cid in vals and not math.isnan(vals[cid])]
        out[cid] = float(np.mean(xs)) if xs else math.nan
    return out


REGIONS = "regions"


def check_label(label) -> str:
    """'all', 'regions', a label value, or a region as its values (``(1, 2, 3)``, also ``1,2,3`` -> ``(1, 2, 3)``)."""
    label = str(label).lower().strip()
    if "," in label or label.startswith("("):
        parts = [p.strip() for p in label.strip("()").split(",") if p.strip()]
        if parts and all(p.isdigit() for p in parts):
            return str(tuple(int(p) for p in parts))
    if label not in ("all", REGIONS) and not label.lstrip("-").isdigit():
        raise DataError(f"label must be 'all', 'regions', a label value or a region like '(1, 2, 3)', got '{label}'")
    return label


def load_result(path, metric: str = "dice", label: str | int = "all", empty: str = "worst") -> ResultValues:
    """Per-case values of one RESULT (see module doc): folds pooled per seed, seeds averaged per case."""
    key = metric_key(metric)
    metric = str(metric).lower()
    label = check_label(label)
    try:
        empty = check_empty_policy(empty)
    except ValueError as e:
        raise DataError(str(e)) from None
    files, name, dataset = summary_files(Path(path))
    seeds: dict[int, dict[str, float]] = {}
    spacing = set()
    definition: tuple[str, Path] | None = None
    scored: tuple[tuple, Path] | None = None
    for f, seed, _ in files:
        summary = read_json(f)
        spacing.add(str(summary.get("spacing_source", "not recorded (not a salseg summary)")))
        d = _definition(summary, key)
        if d is not None and definition is not None and d != definition[0]:
            raise DataError(f"{f}: {key} is defined differently than in {definition[1]} ({d} vs {definition[0]}); "
                            f"re-evaluate the folds with the same options")
        definition = definition or ((d, f) if d is not None else None)
        if metric not in available_metrics(summary, f) and _cases(summary, f):
            raise DataError(f"{f}: no {METRIC_KEYS[metric]} in this summary; available metrics: "
                            f"{', '.join(available_metrics(summary, f)) or 'none'}")
        part = case_values(summary, f, key, label, empty)
        if label in ("all", REGIONS):
            have = scored_labels(summary, f, label)
            if scored is not None and have != scored[0]:
                raise DataError(f"{f}: scored on labels {_braced(have)}, {scored[1]} on {_braced(scored[0])}"
                                f"; re-evaluate the folds with the same labels")
            scored = scored or (have, f)
        values = seeds.setdefault(seed, {})
        dup = sorted(set(part) & set(values))
        if dup:
            raise DataError(f"{f}: case {dup[0]} also appears in another fold of {path}"
                            + (f" (seed {seed})" if seed else ""))
        values.update(part)
    check_seed_coverage(seeds, f"{path}")
    values = average_seeds(seeds) if len(seeds) > 1 else next(iter(seeds.values()), {})
    if not values:
        raise DataError(f"{path}: no cases in {', '.join(str(f) for f, _, _ in files)}")
    fold_dirs = [d for _, _, d in files if d is not None]
    return ResultValues(name=name, dataset=dataset, values=values, sources=[f for f, _, _ in files], seeds=seeds,
                        fold_dirs=fold_dirs, spacing_sources=spacing, groups=result_groups(fold_dirs),
                        definition=definition[0] if definition else None, scored=scored[0] if scored else ())


def _definition(summary: dict, key: str) -> str | None:
    d = (summary.get("metric_definitions") or {}).get(key) if isinstance(summary, dict) else None
    return str(d.get("definition")) if isinstance(d, dict) and d.get("definition") else None


def check_definitions(arms: list[ResultValues], key: str) -> None:
    """Refuse (DataError) results whose summary.json files define ``key`` differently, naming both."""
    defined = [a for a in arms if a.definition]
    for a in defined[1:]:
        if a.definition != defined[0].definition:
            b = defined[0]
            raise DataError(f"{key} is defined differently in {a.name} ({a.definition}) and in {b.name} "
                            f"({b.definition}); results computed with different metric definitions cannot be "
                            f"paired: re-run salseg evaluate on both with the same options")


def _braced(labels: tuple) -> str:
    return "{" + ", ".join(labels) + "}"


def scored_labels(summary: dict, source: Path, label: str) -> tuple:
    """The foreground labels (label 'all') or regions (label 'regions') any case of a summary was scored on."""
    field = "region_metrics" if label == REGIONS else "metrics"
    found = {str(k) for c in _cases(summary, source) if isinstance(c, dict)
             for k in (c.get(field) or {}) if str(k) != "0"}
    return tuple(sorted(found, key=lambda k: (len(k), k)))


def check_label_sets(arms: list[ResultValues], paths, label: str) -> None:
    """Refuse (DataError, naming both results) a per-case mean over labels ('all', 'regions') when the results were
    scored on different labels: the means would average different structures."""
    for a, p in zip(arms[1:], list(paths)[1:]):
        if a.scored != arms[0].scored:
            what = "regions" if label == REGIONS else "labels"
            common = [k for k in arms[0].scored if k in a.scored]
            raise DataError(
                f"{p} and {list(paths)[0]} were scored on different {what} ({_braced(a.scored)} vs "
                f"{_braced(arms[0].scored)}); label '{label}' would average different structures: compare "
                + (f"the labels both have (--labels {' '.join(common)}) or " if common and label == "all" else "")
                + f"re-evaluate both on the same {what}")


def load_arms(paths, metric: str = "dice", label: str | int = "all", empty: str = "worst") -> list[ResultValues]:
    """:func:`load_result` of every path, refused when they define the metric differently or (label 'all' or
    'regions') were scored on different labels."""
    paths = list(paths)
    arms = [load_result(p, metric, label, empty) for p in paths]
    check_definitions(arms, metric_key(metric))
    check_label_sets(arms, paths, check_label(label))
    return arms


def result_metrics(path) -> list[str]:
    """Metrics available in every summary of a RESULT."""
    files, _, _ = summary_files(Path(path))
    out = None
    for f, _, _ in files:
        have = set(available_metrics(read_json(f), f))
        out = have if out is None else out & have
    return [m for m in METRIC_KEYS if m in (out or set())]
