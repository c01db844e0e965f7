"""Export: probabilities on the preprocessed grid -> label map (and optional probabilities) on the raw image grid.

The label map is written with the exact spacing, origin and direction of the input image (``properties["original"]``);
output channel i becomes label VALUE ``label_values[i]`` (non-contiguous values such as {0, 21, 22, 23} survive).

Two implementations of the same map (``method``):
- ``"torch"`` (default): all classes resampled at once with torch on the device of the prediction, in chunks of
  output slices (salseg.infer.resample_torch), argmax per chunk, and the crop placed into the original shape AFTER
  the argmax (one label volume at full size, never K probability volumes);
- ``"scipy"``: the reference path: ``revert_preprocessing`` (scipy ``zoom`` per class, un-crop of every class at
  full size), then the argmax. Kept for tests and benchmarks/export.py.
Both give the same labels up to float rounding at argmax ties (tests/infer/test_export_torch.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from salseg.dataset.io import VOLUME_ENDINGS, file_ending, write_image
from salseg.errors import ConfigError, DataError
from salseg.fileio import write_json, write_npz

METHODS = ("torch", "scipy")


def label_dtype(label_values: Sequence[int]) -> np.dtype:
    lo, hi = min(label_values), max(label_values)
    if lo >= 0 and hi < 256:
        return np.dtype(np.uint8)
    if -32768 <= lo and hi < 32768:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def labels_from_probabilities(probabilities: np.ndarray, label_values: Sequence[int]) -> np.ndarray:
    """Argmax over classes, mapped to label values: (K, Z, Y, X) -> (Z, Y, X)."""
    if probabilities.shape[0] != len(label_values):
        raise ValueError(f"{probabilities.shape[0]} probability channels but {len(label_values)} label values")
    lut = np.asarray(label_values, dtype=label_dtype(label_values))
    return lut[np.argmax(probabilities, axis=0)]


def probabilities_path(out_path: Path) -> Path:
    """``<case>.npz`` beside the label file ``<case><ending>``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name[: -len(file_ending(out_path))] + ".npz")


def properties_path(out_path: Path) -> Path:
    """``<case>.json`` beside the label file: the geometry that restores the ``.npz`` probabilities as an image."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name[: -len(file_ending(out_path))] + ".json")


def uncertainty_path(out_path: Path) -> Path:
    """``<case>_uncertainty<ending>`` (``.nii.gz`` when the label ending cannot hold float values)."""
    out_path = Path(out_path)
    end = file_ending(out_path)
    stem = out_path.name[: -len(end)]
    return out_path.with_name(stem + "_uncertainty" + (end if end in VOLUME_ENDINGS else ".nii.gz"))


def revert(probabilities: np.ndarray, properties: dict) -> np.ndarray:
    """Probabilities on the preprocessed grid -> (K, Z, Y, X) on the raw image grid (``revert_preprocessing``)."""
    from salseg.preprocess import revert_preprocessing

    out = revert_preprocessing(probabilities, properties)
    want = tuple(properties["original"]["shape"])
    if tuple(out.shape[1:]) != want:
        raise DataError(f"case {properties.get('case_id', '?')}: reverted shape {tuple(out.shape[1:])} differs "
                        f"from the original image shape {want}")
    return out


def _crop_geometry(properties: dict, shape_in) -> tuple[list[int], int | None, list, list[int]]:
    """(cropped shape, thick axis or None, crop bbox, original shape) of a case, checked against ``shape_in``."""
    from salseg.preprocess.resample import separate_axis

    expected = properties.get("shape_after_resample")
    if expected is not None and list(shape_in) != [int(s) for s in expected]:
        raise DataError(f"{properties.get('case_id', 'case')}: probabilities of shape {list(shape_in)} do "
                        f"not match the preprocessed shape {expected}")
    axis = properties.get("separate_axis")
    if "separate_axis" not in properties:
        axis = separate_axis(properties["spacing_after_crop"], properties["spacing"])
    crop = [int(s) for s in properties["shape_after_crop"]]
    bbox = [[int(a), int(b)] for a, b in properties["crop_bbox"]]
    original = [int(s) for s in properties["original"]["shape"]]
    if [b - a for a, b in bbox] != crop or any(b > s for (_, b), s in zip(bbox, original)):
        raise DataError(f"case {properties.get('case_id', '?')}: crop box {bbox} does not fit the cropped shape "
                        f"{crop} inside the original shape {original}")
    return crop, (None if axis is None else int(axis)), bbox, original


def _as_tensor(probabilities, device) -> torch.Tensor:
    if isinstance(probabilities, torch.Tensor):
        t = probabilities.detach()
        return t.float().to(device) if device is not None else t.float()
    return torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32)).to(device or "cpu")


def labels_torch(probabilities, properties: dict, label_values: Sequence[int], device=None,
                 chunk_bytes: int | None = None) -> np.ndarray:
    """The original-grid label map (values) of ``probabilities`` (K, Z', Y', X'): torch resampling, argmax per
    chunk, then un-crop (background value outside the crop box)."""
    from salseg.infer.resample_torch import DEFAULT_CHUNK_BYTES, resampled_labels

    prob = _as_tensor(probabilities, device)
    if prob.ndim != 4 or prob.shape[0] != len(label_values):
        raise ValueError(f"probabilities of shape {tuple(prob.shape)} do not match {len(label_values)} label values")
    crop, axis, bbox, original = _crop_geometry(properties, prob.shape[1:])
    with torch.inference_mode():
        idx = resampled_labels(prob, crop, axis, chunk_bytes or DEFAULT_CHUNK_BYTES).cpu().numpy()
    dtype = label_dtype(label_values)
    if list(label_values) == list(range(len(label_values))):
        inner = idx.astype(dtype, copy=False)
    else:
        inner = np.asarray(label_values, dtype=dtype)[idx]
    out = np.full(original, label_values[0], dtype=dtype)
    out[tuple(slice(a, b) for a, b in bbox)] = inner
    return out


def revert_torch(probabilities, properties: dict, device=None, fill_first: float = 1.0,
                 chunk_bytes: int | None = None) -> np.ndarray:
    """``revert`` with torch resampling: (K, Z, Y, X) float32 on the original grid (channel 0 = ``fill_first``
    outside the crop, the others 0)."""
    from salseg.infer.resample_torch import DEFAULT_CHUNK_BYTES, resampled_probabilities

    prob = _as_tensor(probabilities, device)
    crop, axis, bbox, original = _crop_geometry(properties, prob.shape[1:])
    with torch.inference_mode():
        inner = resampled_probabilities(prob, crop, axis, chunk_bytes or DEFAULT_CHUNK_BYTES)
    out = np.zeros((inner.shape[0], *original), dtype=np.float32)
    if inner.shape[0]:
        out[0] = fill_first
    out[(slice(None),) + tuple(slice(a, b) for a, b in bbox)] = inner
    return out


def region_labels(probabilities, properties: dict, spec, method: str = "torch", device=None):
    """(label map, region probabilities (R, Z, Y, X)) on the original grid of sigmoid region ``probabilities``:
    each region is its probability > 0.5, painted in ``spec.regions_class_order`` (0 outside the crop)."""
    if method == "scipy":
        if isinstance(probabilities, torch.Tensor):
            probabilities = probabilities.detach().float().cpu().numpy()
        prob = np.asarray(probabilities, dtype=np.float32)
        full = revert(np.concatenate([np.zeros_like(prob[:1]), prob]), properties)[1:]  # channel 0 takes the fill
    else:
        full = revert_torch(probabilities, properties, device, fill_first=0.0)
    return spec.regions_to_labels(full > 0.5), full


def export_prediction(probabilities, properties: dict, label_values: Sequence[int],
                      out_path: str | Path, save_probabilities: bool = False,
                      uncertainty: np.ndarray | None = None, method: str = "torch", device=None,
                      spec=None) -> Path:
    """Write the label map of ``probabilities`` (K, Z', Y', X') with the original geometry to ``out_path``.

    With ``save_probabilities`` also writes ``<case>.npz`` holding ``probabilities`` (K, Z, Y, X) float32 on the
    original grid and ``label_values``, and ``<case>.json`` with the geometry (``original``) to write them back as
    an image (salseg.infer.ensemble); an ``uncertainty`` map (Z', Y', X') is written as ``<case>_uncertainty``.
    Every file is written atomically. Returns the label file path. ``method`` "torch" (default) resamples on
    ``device`` (default: the tensor's own device, CPU for a numpy array); "scipy" is the reference path. A ``spec``
    (LabelSpec) with regions takes sigmoid probabilities, one per region (:func:`region_labels`); the npz then also
    holds ``regions_class_order``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown export method {method!r}; choose {' or '.join(METHODS)}")
    out_path = Path(out_path)
    original = properties["original"]
    regions = spec is not None and spec.has_regions
    if regions:
        labels, full = region_labels(probabilities, properties, spec, method, device)
    elif method == "scipy":
        if isinstance(probabilities, torch.Tensor):
            probabilities = probabilities.detach().float().cpu().numpy()
        full = revert(np.asarray(probabilities, dtype=np.float32), properties)
        labels = labels_from_probabilities(full, label_values)
    else:
        labels = labels_torch(probabilities, properties, label_values, device)
        full = revert_torch(probabilities, properties, device) if save_probabilities else None
    if uncertainty is not None:
        # as channel 1 of a pair: outside the crop revert fills channel 0 with 1 and the others with 0
        unc = np.asarray(uncertainty, dtype=np.float32)[None]
        pair = np.concatenate([np.zeros_like(unc), unc])
        unc = (revert(pair, properties) if method == "scipy" else revert_torch(pair, properties, device))[1]
        write_image(unc.astype(np.float32), original, uncertainty_path(out_path))
    if save_probabilities:
        extra = {"regions_class_order": np.asarray(spec.regions_class_order, dtype=np.int64)} if regions else {}
        write_npz(probabilities_path(out_path), probabilities=full.astype(np.float32),
                  label_values=np.asarray(label_values, dtype=np.int64), **extra)
        write_json(properties_path(out_path), {"case_id": properties.get("case_id"), "original": original,
                                               "label_values": [int(v) for v in label_values],
                                               "file_ending": file_ending(out_path)})
    write_image(labels, original, out_path)
    return out_path
