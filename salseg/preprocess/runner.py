"""Preprocessing of one case (crop, normalise, resample, label values -> class indices), its inverse for
predictions, and the parallel, restartable runner over a dataset.

Order (as nnU-Net): crop to nonzero -> normalise (statistics of the cropped image, nonzero mask where planned)
-> resample to the configuration's spacing. 2d / 2.5d configurations resample in-plane only (z is kept).
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from salseg.errors import ConfigError, DataError
from salseg.lock import folder_lock
from salseg.parallel import Progress, map_parallel
from salseg.plans import Configuration, Plans, load_plans
from salseg.preprocess.freshness import clean_temp_files, plans_hash_of, stale_reason
from salseg.preprocess.crop import crop_to_nonzero, nonzero_mask, uncrop
from salseg.preprocess.normalize import normalize
from salseg.preprocess.resample import new_shape, resample_image, resample_probabilities, resample_seg, separate_axis

log = logging.getLogger(__name__)

MAX_LOCATIONS_PER_CLASS = 10_000


def labels_to_indices(seg: np.ndarray, label_values: Sequence[int], source: str = "label map") -> np.ndarray:
    """Label VALUES -> class INDICES (position in ``label_values``) as int16; undeclared values raise DataError."""
    values = np.asarray(sorted(int(v) for v in label_values), dtype=np.int64)
    seg = np.asarray(seg)
    lo, hi = (int(seg.min()), int(seg.max())) if seg.size else (0, 0)
    if lo >= 0 and hi < 1 << 16:
        lut = np.full(hi + 1, -2, dtype=np.int16)
        ok = values[values <= hi]
        lut[ok] = np.searchsorted(values, ok).astype(np.int16)
        out = lut[seg]
        bad = out == -2
    else:
        idx = np.clip(np.searchsorted(values, seg), 0, len(values) - 1)
        bad = values[idx] != seg
        out = idx.astype(np.int16)
    if bad.any():
        undeclared = sorted(set(np.unique(seg[bad]).tolist()))
        raise DataError(f"{source}: label values {undeclared} are not declared in dataset.json "
                        f"(declared: {values.tolist()})")
    return out


def target_spacing_zyx(spacing: Sequence[float], configuration: Configuration) -> list[float]:
    """The full (z, y, x) target spacing of a configuration for an image of ``spacing`` (2D configs keep z)."""
    sp = [float(s) for s in configuration.spacing]
    return sp if len(sp) == 3 else [float(spacing[0])] + sp


def sample_class_locations(seg: np.ndarray, num_classes: int, seed: int | Sequence[int]) -> dict[str, list]:
    """Up to ``MAX_LOCATIONS_PER_CLASS`` random [z, y, x] voxels per foreground class index (seeded)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {}
    for c in range(1, num_classes):
        flat = np.flatnonzero(seg == c)
        if flat.size > MAX_LOCATIONS_PER_CLASS:
            flat = np.sort(rng.choice(flat, MAX_LOCATIONS_PER_CLASS, replace=False))
        out[str(c)] = np.stack(np.unravel_index(flat, seg.shape), axis=1).astype(int).tolist() if flat.size else []
    return out


def preprocess_case(data: np.ndarray, props: dict, plans: Plans, config_name: str, seg: np.ndarray | None = None,
                    *, case_id: str = "", seed: int | None = None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """One case (C, Z, Y, X) + props (salseg.dataset.io) -> (data, seg indices or None, properties).

    ``seg`` holds label VALUES; the returned one holds class INDICES (int16, -1 = background outside the nonzero
    mask where the plans normalise with that mask; the ignore label, if any, becomes ``len(label_values)`` and has no
    class locations). ``properties`` follows docs/formats.md and is what
    :func:`revert_preprocessing` needs.
    """
    configuration = plans.configuration(config_name)
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 4:
        raise DataError(f"{case_id or 'image'}: expected an image (C, Z, Y, X), got shape {list(data.shape)}")
    C = plans.num_channels
    if data.shape[0] != C:
        raise DataError(f"{case_id or 'image'}: {data.shape[0]} channels, but the plans expect {C}")
    spacing = [float(s) for s in props["spacing"]]
    original_shape = [int(s) for s in data.shape[1:]]
    label_values = plans.label_values
    if seg is not None:
        if list(seg.shape) != original_shape:
            raise DataError(f"{case_id or 'label'}: label shape {list(seg.shape)} differs from image shape "
                            f"{original_shape}")
        seg = labels_to_indices(seg, plans.label_spec.allowed_values, case_id or "label map")
    data, seg, bbox = crop_to_nonzero(data, seg)
    shape_crop = [int(s) for s in data.shape[1:]]
    use_mask = list(configuration.use_mask_for_norm or [False] * C)
    mask = nonzero_mask(data) if any(use_mask) else None
    if mask is not None and seg is not None:
        seg = seg.copy()
        seg[(seg == 0) & ~mask] = -1
    data = normalize(data, configuration.normalization, configuration.intensity_properties, use_mask, mask)
    target = target_spacing_zyx(spacing, configuration)
    shape_new = new_shape(shape_crop, spacing, target)
    axis = separate_axis(spacing, target)
    data = resample_image(data, shape_new, axis)
    locations: dict = {}
    if seg is not None:
        seg = resample_seg(seg, shape_new, axis).astype(np.int16, copy=False)
        rng_seed = [int(plans.seed if seed is None else seed), zlib.crc32(case_id.encode())]
        locations = sample_class_locations(seg, len(label_values), rng_seed)
    original = {k: props[k] for k in ("spacing", "origin", "direction", "itk_size", "ndim", "shape") if k in props}
    original["shape"] = original_shape
    properties = {
        "case_id": case_id,
        "original": original,
        "crop_bbox": bbox,
        "shape_after_crop": shape_crop,
        "spacing_after_crop": spacing,
        "spacing": target,
        "shape_after_resample": [int(s) for s in shape_new],
        "separate_axis": axis,
        "class_locations": locations,
    }
    return data, seg, properties


def revert_preprocessing(probabilities, properties: dict) -> np.ndarray:
    """(K, Z', Y', X') probabilities on the preprocessed grid -> (K, Z, Y, X) on the ORIGINAL raw grid.

    Linear resampling back to the cropped shape (the thick axis nearest, as forward), then placement into the
    original shape; outside the crop the background (channel 0) has probability 1.
    """
    if hasattr(probabilities, "detach"):  # a torch tensor
        probabilities = probabilities.detach().cpu().float().numpy()
    prob = np.asarray(probabilities)
    if prob.ndim != 4:
        raise DataError(f"revert_preprocessing expects (K, Z, Y, X) probabilities, got shape {list(prob.shape)}")
    expected = properties.get("shape_after_resample")
    if expected is not None and list(prob.shape[1:]) != [int(s) for s in expected]:
        raise DataError(f"{properties.get('case_id', 'case')}: probabilities of shape {list(prob.shape[1:])} do "
                        f"not match the preprocessed shape {expected}")
    axis = properties.get("separate_axis")
    if "separate_axis" not in properties:
        axis = separate_axis(properties["spacing_after_crop"], properties["spacing"])
    prob = resample_probabilities(prob, properties["shape_after_crop"], axis)
    return uncrop(prob, properties["crop_bbox"], properties["original"]["shape"], fill_first=1.0)


# ---------------------------------------------------------------- dataset runner

def _case_outputs(out_dir: Path, case_id: str) -> tuple[Path, Path]:
    return out_dir / f"{case_id}.npz", out_dir / f"{case_id}.json"


def _preprocess_job(job: tuple) -> str:
    """Worker: read one case, preprocess it for each (config, out_dir), write npz then json atomically."""
    from salseg.dataset.io import read_images, read_label
    from salseg.fileio import write_json, write_npz

    case_id, images, label, plans, targets = job
    data, props = read_images([Path(p) for p in images])
    seg = read_label(Path(label))[0] if label else None
    for config_name, out_dir in targets:
        d, s, properties = preprocess_case(data, props, plans, config_name, seg, case_id=case_id)
        properties = {"plans_hash": plans_hash_of(plans, config_name), **properties}  # first: read back cheaply
        npz, js = _case_outputs(Path(out_dir), case_id)
        arrays = {"data": d} if s is None else {"data": d, "seg": s}
        write_npz(npz, compress=False, **arrays)
        write_json(js, properties, indent=None)
    return case_id


def preprocess_dataset(root: str | Path, dataset: str, *, configs: Sequence[str] | None = None,
                       num_workers: int = 1, force: bool = False, progress: Progress | None = None,
                       plans_name: str = "plans") -> dict:
    """Preprocess every training case of ``dataset`` for ``configs`` (default: all planned).

    Writes ``preprocessed/<ds>/<data_identifier>/<case>.npz`` (+ ``.json``); configurations sharing a data
    identifier (2d and 2.5d) are processed once. Finished cases (npz and json present, made with the current plans:
    :mod:`salseg.preprocess.freshness`) are skipped unless ``force``; stale ones are redone. Each output folder is
    locked for the run (:mod:`salseg.lock`) and cleaned of temporary files a killed run left. Returns a summary:
    processed / skipped / stale counts (``stale_reasons``: reason -> count), removed temp files, the folders.
    """
    from salseg.dataset.cases import list_cases
    from salseg.dataset.dataset_json import load_dataset_json
    from salseg.dataset.naming import resolve_dataset
    from salseg.results import config_dir, raw_dir

    root = Path(root)
    name = resolve_dataset(root, dataset)
    plans = load_plans(root, name, plans_name)
    names = list(configs) if configs else list(plans.configurations)
    unknown = [c for c in names if c not in plans.configurations]
    if unknown:
        raise ConfigError(f"configuration(s) {', '.join(unknown)} not in the plans of {name} "
                          f"(planned: {', '.join(plans.configurations)})")
    by_ident: dict[str, str] = {}
    for c in names:
        by_ident.setdefault(plans.configurations[c].data_identifier, c)
    raw = raw_dir(root, name)
    info = load_dataset_json(raw)
    cases = [c for c in list_cases(raw, info, "Tr") if c.images]
    folders = {ident: config_dir(root, name, ident) for ident in by_ident}
    with contextlib.ExitStack() as locks:
        for ident, out in folders.items():
            locks.enter_context(folder_lock(out, f"preprocessed {name}/{ident}"))
        removed = sum(clean_temp_files(out) for out in folders.values())
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted run", removed)
        jobs, skipped, reasons = _plan_jobs(cases, by_ident, folders, plans, force)
        stale = sum(reasons.values())
        if stale:
            log.warning("%s: %d preprocessed case file(s) are redone: %s", name, stale,
                        "; ".join(f"{n} {why}" for why, n in reasons.items()))
        map_parallel(_preprocess_job, jobs, num_workers=num_workers, progress=progress,
                     description=f"preprocessing {name}")
    processed = sum(len(j[4]) for j in jobs)
    log.debug("preprocessed %s: %d case files written, %d already done", name, processed, skipped)
    return {"dataset": name, "configs": names, "data_identifiers": list(by_ident), "processed": processed,
            "skipped": skipped, "stale": stale, "stale_reasons": reasons, "temp_removed": removed,
            "cases": len(cases), "folders": {ident: str(f) for ident, f in folders.items()}}


def _plan_jobs(cases, by_ident: dict, folders: dict, plans: Plans, force: bool):
    """(jobs, skipped count, {stale reason: count}) for the cases that need (re)doing."""
    jobs, skipped, reasons = [], 0, {}
    for case in cases:
        targets = []
        for ident, cname in by_ident.items():
            npz, js = _case_outputs(folders[ident], case.case_id)
            if force or not (npz.is_file() and js.is_file()):
                targets.append((cname, str(folders[ident])))
                continue
            why = stale_reason(js, plans_hash_of(plans, cname))
            if why:
                reasons[why] = reasons.get(why, 0) + 1
                targets.append((cname, str(folders[ident])))
            else:
                skipped += 1
        if targets:
            jobs.append((case.case_id, [str(p) for p in case.images], str(case.label) if case.label else None,
                         plans, targets))
    return jobs, skipped, reasons
