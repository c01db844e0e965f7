"""Evaluate a folder of predictions against a folder of references (or arrays in memory) -> summary.json + CSV.

Files pair by case id = file name without its image ending (any ending of :mod:`salseg.dataset.io`, so a
``.nii.gz`` prediction pairs with a ``.nii.gz`` or ``.nii`` reference of the same case). Spacing comes from the
headers; prediction and reference must share the grid (shape, spacing, origin, direction).

Metric options travel as one dict (:func:`metric_options`): NSD tolerance (mm, or per label), boundary width (mm),
the instance matching IoU threshold, and whether the maps are instance maps as given (``instance_maps``: the
semantic metrics then score foreground = value > 0 as label 1, and the instances are the values).

A predicted label value that is not scored (absent from the references, or not among the labels asked for) is
named in a warning once per file and listed in summary.json under ``prediction_values_not_scored``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from salseg.dataset.io import ALL_ENDINGS, file_ending, read_label, same_geometry
from salseg.errors import ConfigError, DataError, SalsegError
from salseg.evaluate.definitions import DEFAULT_METRICS, parse_tolerance, tolerance_for
from salseg.evaluate.instances import check_match_iou
from salseg.evaluate.metrics import (ALL_METRICS, apply_empty_policy, check_empty_policy, check_metrics,
                                     empty_metrics, image_extent, label_metrics)
from salseg.evaluate.regions import (add_region_summary, region_metrics, spec_options, uncount_ignored,
                                     without_ignored)
from salseg.evaluate.summary import build_summary, case_id_of, metric_keys, write_summary
from salseg.results import SUMMARY_JSON

log = logging.getLogger("salseg.evaluate")

Progress = Callable[[str, int, int], None]
UNCERTAINTY = "_uncertainty"  # salseg.infer.export.uncertainty_path: <case>_uncertainty<ending>


def list_images(folder: Path) -> dict[str, Path]:
    """case id -> image file in ``folder`` (hidden and temporary files skipped)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith(".") or file_ending(p) not in ALL_ENDINGS:
            continue
        cid = case_id_of(p.name)
        if cid in out:
            raise DataError(f"{folder}: two files for case '{cid}' ({out[cid].name}, {p.name})")
        out[cid] = p
    return out


def metric_options(nsd_tolerance=1.0, boundary_width: float = 2.0, match_iou: float = 0.5,
                   instance_maps: bool = False) -> dict:
    """The metric parameters as one dict, validated (ConfigError, exit 2, on a bad value)."""
    try:
        tol = parse_tolerance(nsd_tolerance)
        match = check_match_iou(match_iou)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    width = float(boundary_width)
    if not 0 < width < float("inf"):
        raise ConfigError(f"boundary width must be a finite number > 0 mm, got {boundary_width}")
    return {"nsd_tolerance": tol, "boundary_width": width, "match_iou": match, "instance_maps": bool(instance_maps)}


def _validate(metrics: Iterable[str], opts: dict, empty: str = "worst") -> tuple[str, ...]:
    try:
        metrics = check_metrics(metrics)
        check_empty_policy(empty)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not metrics:
        raise ConfigError(f"no metric chosen; choose from {', '.join(ALL_METRICS)}")
    return metrics


def _params(opts: dict) -> dict:
    """The parameters recorded in summary.json beside the definitions."""
    return {"boundary_width": opts["boundary_width"], "match_iou": opts["match_iou"],
            "instances": "given" if opts["instance_maps"] else "components"}


def _values(arr: np.ndarray) -> list[int]:
    """The distinct values of a label map (bincount where the values allow it: much faster than np.unique)."""
    if np.issubdtype(arr.dtype, np.integer) and arr.size and 0 <= arr.min() and arr.max() < 2 ** 16:
        return [int(v) for v in np.flatnonzero(np.bincount(arr.ravel()))]
    return [int(v) for v in np.unique(arr)]


def _spec_from_dataset_json(ref_dir: Path):
    """The LabelSpec of the dataset.json beside ``ref_dir`` (labels, regions, ignore), or None."""
    path = ref_dir.parent / "dataset.json"
    if not path.is_file():
        return None
    from salseg.dataset.dataset_json import load_dataset_json

    try:
        return load_dataset_json(ref_dir.parent).label_spec
    except ConfigError as e:
        log.warning("ignoring %s for the label list: %s", path, e)
        return None


def _case(pred: np.ndarray, ref: np.ndarray, spacing, labels: Sequence[int] | None, metrics, opts: dict,
          empty: str = "worst") -> dict:
    """Metrics of one case; ``labels=None`` evaluates every non-zero value present in either map. The empty-mask
    policy is applied here, where the image's extent is known."""
    instances = None
    if opts["instance_maps"]:   # instance ids as given: foreground = any id, scored as label 1
        instances = (pred, ref)
        pred, ref = (pred != 0).astype(np.uint8), (ref != 0).astype(np.uint8)
        labels = [1]
    pred, ref, n_ignored = without_ignored(pred, ref, opts.get("ignore"))
    found_ref: list[int] = []
    pred_values = [v for v in _values(pred) if v != 0]
    if labels is None:
        found_ref = [v for v in _values(ref) if v != 0]
        labels = sorted(set(found_ref) | set(pred_values))
    if "nsd" in metrics:
        for v in labels:
            try:
                tolerance_for(opts["nsd_tolerance"], v)
            except ValueError as e:
                raise ConfigError(str(e)) from None
    results = label_metrics(pred, ref, labels, spacing, metrics, opts["nsd_tolerance"],
                            boundary_width=opts["boundary_width"], match_iou=opts["match_iou"],
                            instance_maps=instances)
    extent = image_extent(pred.shape, spacing)
    imputed = apply_empty_policy(uncount_ignored(results, n_ignored), extent, empty)
    regions, region_imputed = region_metrics(pred, ref, spacing, metrics, dict(opts, n_ignored=n_ignored), extent,
                                             empty) if opts.get("regions") else ({}, {})
    return {"metrics": results, "ref_labels": found_ref, "n_voxels": int(pred.size) - n_ignored,
            "image_extent_mm": extent,
            "imputed": imputed, "pred_values": pred_values, "region_metrics": regions,
            "region_imputed": region_imputed}


def _evaluate_files(pred_path: Path, ref_path: Path, labels, metrics, opts: dict, empty: str = "worst") -> dict:
    pred, pprops = read_label(pred_path)
    ref, rprops = read_label(ref_path)
    diff = same_geometry(pprops, rprops)
    if diff is not None:
        raise DataError(f"{pred_path}: geometry differs from the reference {ref_path}: {diff}")
    out = _case(pred, ref, rprops["spacing"], labels, metrics, opts, empty)
    out.update(prediction_file=pred_path.name, reference_file=ref_path.name)
    return out


def _run(jobs: list[tuple], fn, num_workers: int, progress: Progress | None) -> list[dict]:
    """Run ``fn(*job)`` for every job, in order of jobs, reporting progress ("evaluate", done, total)."""
    total = len(jobs)
    results: list = [None] * total
    if progress:
        progress("evaluate", 0, total)
    if num_workers <= 1 or total <= 1:
        for i, job in enumerate(jobs):
            results[i] = fn(*job)
            if progress:
                progress("evaluate", i + 1, total)
        return results
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(num_workers, total), mp_context=ctx) as pool:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        try:
            for done, fut in enumerate(cf.as_completed(futures), 1):
                results[futures[fut]] = fut.result()
                if progress:
                    progress("evaluate", done, total)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return results


def _finish(results: list[dict], labels: Sequence[int] | None, metrics, opts: dict, extra: dict,
            empty: str = "worst") -> dict:
    if opts["instance_maps"]:
        labels = [1]
    if labels is None:
        labels = sorted({v for r in results for v in r["ref_labels"]})
        if not labels:
            raise DataError("the references contain no foreground label; pass the labels to evaluate explicitly")
    unscored = {}
    for r in results:
        extra_values = [v for v in r.get("pred_values", []) if v not in labels]
        if extra_values:
            unscored[r["prediction_file"]] = extra_values
            log.warning("%s: predicted label value(s) %s not among the labels scored %s (those of the references, "
                        "or --labels); not scored",
                        r["prediction_file"], ", ".join(map(str, extra_values)), list(labels))
    extra = dict(extra, prediction_values_not_scored=unscored)
    per_case = []
    for r in results:
        m = {v: (r["metrics"][v] if v in r["metrics"] else empty_metrics(r["n_voxels"], metrics)) for v in labels}
        per_case.append({"prediction_file": r["prediction_file"], "reference_file": r["reference_file"],
                         "metrics": m, "image_extent_mm": r.get("image_extent_mm"), "imputed": r.get("imputed")})
    summary = build_summary(per_case, labels, metrics, opts["nsd_tolerance"], extra=extra, empty=empty,
                            params=_params(opts))
    return add_region_summary(summary, results, opts, metric_keys(metrics))


def evaluate_folders(pred_dir, ref_dir, *, labels: Sequence[int] | None = None,
                     metrics: Iterable[str] = DEFAULT_METRICS, nsd_tolerance=1.0, num_workers: int = 1,
                     progress: Progress | None = None, output=None, empty: str = "worst",
                     cases: Sequence[str] | None = None, allow_missing: bool = False, boundary_width: float = 2.0,
                     match_iou: float = 0.5, instance_maps: bool = False, spec=None,
                     reference_suffix: str | None = None) -> dict:
    """Evaluate predictions against references; write summary.json (default ``pred_dir/summary.json``) and a CSV
    beside it; return the summary dict. ``empty``: the empty-mask policy for HD95/ASSD (``worst`` or ``nan``, see
    :mod:`salseg.evaluate.metrics`).

    Every reference needs a prediction and every prediction a reference (``cases``: only those case ids, each
    needing both), else DataError (exit 2) listing them and nothing is written; with ``allow_missing`` the pairs
    are scored and summary.json's ``missing`` (and ``unmatched``) lists the cases left out. Labels default to the
    foreground labels of ``dataset.json`` in ``ref_dir``'s parent, else to the union of the non-zero values found
    in the references. The label description (``spec``, a LabelSpec; default: that dataset.json's) adds the
    region metrics and leaves the reference's ignored voxels out (salseg.evaluate.regions). ``nsd_tolerance``: mm,
    ``{label: mm}`` or the CLI's strings (``["1:2.0", "2:1.0"]``).

    Identical or nested prediction and reference folders, and an output inside the reference folder, are refused
    (DataError) before anything is read: the references are never written to.

    ``reference_suffix`` (e.g. ``_label``): references are named ``<case><suffix><ending>``; None: as the
    predictions, or, when no name pairs, by the one suffix every reference shares (``Case3_label.nii.gz`` for
    ``Case3.nii.gz``; logged). summary.json records it (``reference_suffix``) and the label names of dataset.json
    (``label_names``).
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    for name, d in (("prediction", pred_dir), ("reference", ref_dir)):
        if not d.is_dir():
            raise DataError(f"{d}: {name} folder not found")
    opts = metric_options(nsd_tolerance, boundary_width, match_iou, instance_maps)
    metrics = _validate(metrics, opts, empty)
    spec = spec if spec is not None else _spec_from_dataset_json(ref_dir)
    opts.update(spec_options(spec))
    out = Path(output) if output is not None else pred_dir / SUMMARY_JSON
    _check_folders(pred_dir, ref_dir, out)
    preds, refs = list_images(pred_dir), list_images(ref_dir)
    refs, reference_suffix = pair_by_suffix(preds, refs, reference_suffix, ref_dir)
    for c in [c for c in preds if c.endswith(UNCERTAINTY) and c[: -len(UNCERTAINTY)] in preds and c not in refs]:
        del preds[c]  # predict's --save-uncertainty map beside its label map, not a prediction
    wanted = sorted(set(preds) | set(refs)) if cases is None else sorted({str(c) for c in cases})
    common = [c for c in wanted if c in preds and c in refs]
    only_pred = [c for c in wanted if c not in refs]   # no reference (given cases: with or without a prediction)
    only_ref = [c for c in wanted if c not in preds]   # no prediction
    if not common:
        raise DataError(f"no prediction in {pred_dir} ({len(preds)} image files) has a reference with the same name "
                        f"in {ref_dir} ({len(refs)} image files)"
                        + (f"; e.g. {preds[only_pred[0]].name} vs {refs[only_ref[0]].name}"
                           if only_pred and only_ref and only_pred[0] in preds and only_ref[0] in refs else ""))
    if (only_pred or only_ref) and not allow_missing:
        raise DataError(_missing_message(pred_dir, ref_dir, only_ref, only_pred, len(common)))
    if only_pred or only_ref:
        log.warning("%s", _missing_message(pred_dir, ref_dir, only_ref, only_pred, len(common), allowed=True))
    if labels is None and spec is not None:
        labels = spec.foreground_values
    labels = None if labels is None else sorted({int(v) for v in labels})
    jobs = [(preds[c], refs[c], labels, metrics, opts, empty) for c in common]
    results = _run(jobs, _evaluate_files, int(num_workers), progress)
    extra = {"prediction_folder": str(pred_dir.resolve()), "reference_folder": str(ref_dir.resolve()),
             "reference_suffix": reference_suffix, "label_names": label_names(spec),
             "unmatched": {"only_in_prediction": only_pred, "only_in_reference": only_ref},
             "missing": {"n_evaluated": len(common), "references_without_prediction": only_ref,
                         "predictions_without_reference": only_pred}}
    summary = _finish(results, labels, metrics, opts, extra, empty)
    write_summary(summary, out)
    return summary


def label_names(spec) -> dict[str, str]:
    """{label value: name} of a dataset's LabelSpec (names that are only the value left out); {} without one."""
    if spec is None:
        return {}
    return {str(v): str(n) for v, n in zip(spec.label_values, spec.label_names) if str(n) != str(v)}


def pair_by_suffix(preds: dict, refs: dict, suffix: str | None, ref_dir: Path) -> tuple[dict, str]:
    """References keyed by the prediction's case id: ``<case><suffix>`` -> ``<case>``. ``suffix`` None: "" when
    any name pairs as it is, else the suffix from the last ``_`` that every reference shares, if it pairs."""
    if suffix is None:
        if set(preds) & set(refs) or not refs:
            return refs, ""
        tails = {cid[cid.rfind("_"):] if "_" in cid else "" for cid in refs}
        if len(tails) != 1 or not next(iter(tails)):
            return refs, ""
        suffix = tails.pop()
        stripped = {cid[: -len(suffix)]: p for cid, p in refs.items()}
        if not set(preds) & set(stripped):
            return refs, ""
        log.info("references in %s paired by their suffix %r (%s for %s); --reference-suffix sets it", ref_dir,
                 suffix, next(iter(refs.values())).name, next(iter(stripped)))
        return stripped, suffix
    if not suffix:
        return refs, ""
    bad = [p.name for cid, p in refs.items() if not cid.endswith(suffix)]
    if bad:
        raise DataError(f"{ref_dir / bad[0]}: reference name does not end with the reference suffix {suffix!r} "
                        f"({len(bad)} of {len(refs)} files)")
    return {cid[: -len(suffix)]: p for cid, p in refs.items()}, suffix


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_folders(pred_dir: Path, ref_dir: Path, output: Path) -> None:
    """Refuse identical or nested prediction/reference folders and any output inside the reference folder."""
    p, r = pred_dir.resolve(), ref_dir.resolve()
    if p == r:
        raise DataError(f"{pred_dir}: the prediction folder is the reference folder; give the predictions and the "
                        f"references in separate folders")
    if _inside(p, r) or _inside(r, p):
        outer, inner = (ref_dir, pred_dir) if _inside(p, r) else (pred_dir, ref_dir)
        raise DataError(f"{inner}: lies inside {outer}; prediction and reference folders must not be nested")
    if _inside(output.resolve().parent, r):
        raise DataError(f"{output}: would be written into the reference folder {ref_dir}; choose another --json path")


def _missing_message(pred_dir: Path, ref_dir: Path, no_pred: list[str], no_ref: list[str], n_pairs: int,
                     allowed: bool = False) -> str:
    def some(ids):
        return ", ".join(ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")

    parts = []
    if no_pred:
        parts.append(f"{len(no_pred)} case(s) have no prediction in {pred_dir}: {some(no_pred)}")
    if no_ref:
        parts.append(f"{len(no_ref)} case(s) have no reference in {ref_dir}: {some(no_ref)}")
    tail = (f"scoring only the {n_pairs} complete pair(s) (--allow-missing)" if allowed else
            f"nothing evaluated; pass --allow-missing to score only the {n_pairs} complete pair(s)")
    return "; ".join(parts) + "; " + tail


def _evaluate_array_case(case_id, pred, ref, spacing, labels, metrics, opts, ending, empty="worst") -> dict:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise DataError(f"case {case_id}: prediction shape {list(pred.shape)} differs from reference "
                        f"{list(ref.shape)}")
    if len(spacing) != pred.ndim:
        raise DataError(f"case {case_id}: spacing {list(spacing)} does not match a {pred.ndim}D array")
    out = _case(pred, ref, spacing, labels, metrics, opts, empty)
    out.update(prediction_file=f"{case_id}{ending}", reference_file=f"{case_id}{ending}")
    return out


def evaluate_arrays(cases: Sequence[tuple], labels: Sequence[int] | None = None, *,
                    metrics: Iterable[str] = DEFAULT_METRICS, nsd_tolerance=1.0, num_workers: int = 1,
                    progress: Progress | None = None, output=None, file_ending: str = "",
                    empty: str = "worst", boundary_width: float = 2.0, match_iou: float = 0.5,
                    instance_maps: bool = False, spec=None) -> dict:
    """Evaluate in-memory cases ``[(case_id, pred (Z,Y,X), ref (Z,Y,X), spacing (z,y,x)), ...]``.

    Returns the summary dict (same schema as :func:`evaluate_folders`; ``prediction_file`` = case id +
    ``file_ending``); writes summary.json + CSV when ``output`` is given. Used by training validation.
    """
    opts = metric_options(nsd_tolerance, boundary_width, match_iou, instance_maps)
    opts.update(spec_options(spec))
    metrics = _validate(metrics, opts, empty)
    if not cases:
        raise SalsegError("no cases to evaluate")
    labels = None if labels is None else sorted({int(v) for v in labels})
    jobs = [(cid, p, r, sp, labels, metrics, opts, file_ending, empty) for cid, p, r, sp in cases]
    results = _run(jobs, _evaluate_array_case, int(num_workers), progress)
    summary = _finish(results, labels, metrics, opts, {"spacing_source": "given"}, empty)
    if output is not None:
        write_summary(summary, output)
    return summary
