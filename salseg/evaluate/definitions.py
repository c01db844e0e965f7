"""The metric catalogue: names, summary keys, definitions and empty-mask conventions, in one place.

``salseg evaluate`` writes, for every metric it computed, ``metric_definitions[key] = {"definition", "empty"}``
into summary.json (:func:`metric_definitions`); ``salseg stats`` refuses to pair two results whose definitions of
the compared metric differ. A definition names its parameters (NSD tolerance per label, boundary width), so two
NSD values at different tolerances are different metrics.

Distance metrics use medpy's surfaces (mask XOR its erosion with connectivity 1, outside the image = background),
which are also Metrics Reloaded's border maps; distances are Euclidean in mm from the header spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

SURFACE = "surfaces as medpy and Metrics Reloaded (mask XOR its erosion with connectivity 1, outside the image = " \
          "background), Euclidean distances in mm from the header spacing"


@dataclass(frozen=True)
class MetricDef:
    name: str            # CLI / stats name (lower case)
    key: str             # summary.json key
    definition: str
    empty: str           # the empty-mask convention in words (distances: completed by the --empty policy)
    lower_is_better: bool = False
    signed: bool = False  # 0 is best, either sign is an error: stats compares |value|, lower is better
    default: bool = True  # computed unless --metrics says otherwise
    kind: str = "semantic"  # semantic | instance


_BOTH_NAN = "prediction and reference both empty -> NaN (excluded from means)"
_ONE_ZERO = _BOTH_NAN + "; exactly one empty -> 0"
_DIST = _BOTH_NAN + "; exactly one empty -> {one}"

CATALOGUE: tuple[MetricDef, ...] = (
    MetricDef("dice", "Dice", "2 TP / (2 TP + FP + FN), voxel counts", _ONE_ZERO + " (as nnU-Net)"),
    MetricDef("iou", "IoU", "TP / (TP + FP + FN), voxel counts", _ONE_ZERO + " (as nnU-Net)"),
    MetricDef("precision", "Precision", "TP / (TP + FP) (positive predictive value), voxel counts",
              "nothing predicted -> NaN (undefined; the miss shows in Recall)"),
    MetricDef("recall", "Recall", "TP / (TP + FN) (sensitivity), voxel counts",
              "empty reference -> NaN (undefined; false positives show in Precision)"),
    MetricDef("rvd", "RVD", "relative volume difference (V_pred - V_ref) / V_ref, signed (0 is best; negative = "
              "under-segmentation)", "empty reference -> NaN", signed=True),
    MetricDef("hd", "HD", "Hausdorff distance: maximum of both directed surface-distance sets (mm); " + SURFACE,
              _DIST, lower_is_better=True),
    MetricDef("hd95", "HD95", "95th percentile (numpy linear interpolation) of both directed surface-distance sets "
              "POOLED (medpy.metric.binary.hd95) (mm); " + SURFACE, _DIST, lower_is_better=True),
    MetricDef("hd95_mr", "HD95_MR", "maximum of the two DIRECTED 95th percentiles (numpy linear interpolation) of the "
              "surface distances (Metrics Reloaded's hd_perc=95) (mm); " + SURFACE, _DIST, lower_is_better=True),
    MetricDef("assd", "ASSD", "mean of both directed surface-distance sets pooled (medpy.metric.binary.assd) (mm); "
              + SURFACE, _DIST, lower_is_better=True),
    MetricDef("masd", "MASD", "mean of the two directed mean surface distances, (mean d(P->R) + mean d(R->P)) / 2 "
              "(Metrics Reloaded's MASD) (mm); " + SURFACE, _DIST, lower_is_better=True),
    MetricDef("nsd", "NSD", "normalised surface distance (surface Dice): surface voxels of both masks within the "
              "tolerance {tol} of the other mask's surface / all surface voxels of both; " + SURFACE, _ONE_ZERO),
    MetricDef("boundary_iou", "BoundaryIoU", "boundary IoU (Cheng et al. 2021, as Metrics Reloaded): IoU of the "
              "boundary regions, a mask's voxels closer than {width} mm to its own surface; " + SURFACE, _ONE_ZERO,
              default=False),
    MetricDef("cldice", "clDice", "centreline Dice (Shit et al. 2021): 2 Tprec Tsens / (Tprec + Tsens), Tprec = "
              "|S(P) & R| / |S(P)|, Tsens = |S(R) & P| / |S(R)|, skeletons S from skimage.morphology.skeletonize on "
              "the voxel grid (spacing not used)", _ONE_ZERO + "; an empty skeleton -> 0", default=False),
    MetricDef("f1", "F1", "instance detection F1 = 2 TP / (2 TP + FP + FN) over instances matched one-to-one at "
              "IoU > {match}; instances: {inst}", "no instance in either -> NaN", default=False, kind="instance"),
    MetricDef("pq", "PQ", "panoptic quality = (sum of the matched pairs' IoU) / (TP + FP/2 + FN/2), instances "
              "matched at IoU > {match}; instances: {inst}", "no instance in either -> NaN", default=False,
              kind="instance"),
    MetricDef("matched_dice", "MatchedDice", "mean Dice of the matched instance pairs (IoU > {match}); instances: "
              "{inst}", "no matched pair -> NaN", default=False, kind="instance"),
)

BY_NAME = {m.name: m for m in CATALOGUE}
ALL_METRICS = tuple(m.name for m in CATALOGUE)
SEMANTIC_METRICS = tuple(m.name for m in CATALOGUE if m.kind == "semantic")
INSTANCE_METRICS = tuple(m.name for m in CATALOGUE if m.kind == "instance")
DEFAULT_METRICS = tuple(m.name for m in CATALOGUE if m.default)
METRIC_KEYS = {m.name: m.key for m in CATALOGUE}
LOWER_IS_BETTER = {m.key for m in CATALOGUE if m.lower_is_better}
DISTANCE_METRICS = ("hd", "hd95", "hd95_mr", "assd", "masd", "nsd", "boundary_iou")
IMPUTABLE = tuple(m.key for m in CATALOGUE if m.lower_is_better)   # surface distances in mm
INSTANCE_COUNT_KEYS = ("TP_inst", "FP_inst", "FN_inst")


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """Validate metric names (case-insensitive; ``all`` = every metric, ``default`` = the default set); returns
    them lower-case in the canonical order."""
    names = {str(m).lower() for m in metrics}
    if "all" in names:
        names |= set(ALL_METRICS)
    if "default" in names:
        names |= set(DEFAULT_METRICS)
    names -= {"all", "default"}
    bad = sorted(names - set(ALL_METRICS))
    if bad:
        raise ValueError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(ALL_METRICS)} (or all, default)")
    return tuple(m for m in ALL_METRICS if m in names)


def parse_tolerance(values: Sequence[str] | float | Mapping | None, default: float = 1.0) -> float | dict:
    """NSD tolerance from the CLI: ``["1.0"]`` -> 1.0; ``["1:2.0", "2:1.0"]`` -> {1: 2.0, 2: 1.0}; a plain number
    among label:value pairs is the tolerance of every other label (stored under ``None``). Must be > 0 mm."""
    if values is None:
        return float(default)
    if isinstance(values, (int, float)):
        values = [str(values)]
    if isinstance(values, Mapping):
        values = [f"{k}:{v}" if k is not None else str(v) for k, v in values.items()]
    out: dict = {}
    for raw in values:
        text = str(raw).strip()
        label, _, tol = text.rpartition(":")
        try:
            key = int(label) if label else None
            mm = float(tol)
        except ValueError:
            raise ValueError(f"NSD tolerance '{text}' is neither a number of mm nor LABEL:MM (e.g. 1:2.0)") from None
        if not mm > 0 or mm == float("inf"):
            raise ValueError(f"NSD tolerance must be a finite number > 0 mm, got '{text}'")
        if key in out:
            raise ValueError(f"NSD tolerance given twice for {'label ' + str(key) if key is not None else 'all'}")
        out[key] = mm
    if not out:
        return float(default)
    if list(out) == [None]:
        return out[None]
    return out


def tolerance_for(tol: float | Mapping, label: int) -> float:
    """The NSD tolerance (mm) of one label."""
    if not isinstance(tol, Mapping):
        return float(tol)
    for k in (label, str(label), None):
        if k in tol:
            return float(tol[k])
    raise ValueError(f"no NSD tolerance for label {label} (given for {', '.join(str(k) for k in tol)}); add "
                     f"{label}:MM or a plain number for the other labels")


def tolerance_json(tol: float | Mapping) -> float | dict:
    """The tolerance as stored in summary.json: a number, or {"label": mm, "default": mm}."""
    if not isinstance(tol, Mapping):
        return float(tol)
    return {("default" if k is None else str(k)): float(v) for k, v in tol.items()}


def metric_definitions(metrics: Sequence[str], labels: Sequence[int], *, nsd_tolerance=1.0,
                       boundary_width: float = 2.0, match_iou: float = 0.5, instances: str = "components",
                       empty_policy: str = "worst") -> dict:
    """``{key: {"definition": ..., "empty": ...}}`` for the metrics computed, parameters filled in."""
    one = ("the image's diagonal in mm (--empty worst)" if empty_policy == "worst" else "NaN (--empty nan)")
    inst = ("the label values of the maps as given (one instance per value)" if instances == "given" else
            "connected components of each label, full connectivity (8 in 2D, 26 in 3D)")
    if "nsd" not in metrics:
        tol = ""
    elif isinstance(nsd_tolerance, Mapping):
        tol = ", ".join(f"label {v}: {tolerance_for(nsd_tolerance, v):g} mm" for v in labels)
    else:
        tol = f"{float(nsd_tolerance):g} mm"
    out = {}
    for name in metrics:
        m = BY_NAME[name]
        out[m.key] = {"definition": m.definition.format(tol=tol, width=f"{float(boundary_width):g}",
                                                        match=f"{float(match_iou):g}", inst=inst),
                      "empty": m.empty.format(one=one)}
    return out
