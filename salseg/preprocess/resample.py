"""Resampling of images (spline order 3), label maps (one-hot, linear, argmax) and probabilities (linear).

As nnU-Net: when a volume is anisotropic (largest / smallest spacing > 3, one clearly thickest axis), that thick
axis is resampled separately with nearest neighbour (order 0) and the other axes with the full order, so that
interpolation never mixes distant slices. All work is done by ``scipy.ndimage.zoom`` (grid mode: pixel edges
aligned, as ``skimage.transform.resize``); axes whose size does not change are never touched.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

ANISOTROPY_THRESHOLD = 3.0


def new_shape(shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> list[int]:
    """Shape after resampling ``shape`` from ``spacing`` to ``target_spacing`` (at least 1 per axis)."""
    return [max(1, int(round(s * sp / t))) for s, sp, t in zip(shape, spacing, target_spacing)]


def separate_axis(spacing: Sequence[float], target_spacing: Sequence[float] | None = None,
                  threshold: float = ANISOTROPY_THRESHOLD) -> int | None:
    """The thick axis to resample separately (nnU-Net's rule), or None.

    The original spacing decides first, then the target spacing; an axis is only returned when it is the single
    largest spacing and that spacing is more than ``threshold`` times the smallest.
    """
    for sp in (spacing, target_spacing):
        if sp is None:
            continue
        sp = np.asarray(sp, float)
        if sp.max() / sp.min() > threshold:
            thick = np.flatnonzero(sp == sp.max())
            return int(thick[0]) if len(thick) == 1 else None
    return None


def _zoom_axes(arr: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Zoom a (Z, Y, X) float array to ``shape``; unchanged axes are left alone (loops over z when only y, x
    change, so that the order-3 prefilter never runs along an axis that is not resampled)."""
    shape = [int(s) for s in shape]
    if list(arr.shape) == shape:
        return arr
    factors = [n / o for n, o in zip(shape, arr.shape)]
    mode = "nearest"
    if arr.shape[0] == shape[0] and arr.ndim == 3 and order > 1:
        out = np.empty(shape, dtype=arr.dtype)
        for z in range(arr.shape[0]):
            out[z] = ndimage.zoom(arr[z], factors[1:], order=order, mode=mode, grid_mode=True)
        return out
    out = ndimage.zoom(arr, factors, order=order, mode=mode, grid_mode=True)
    if list(out.shape) != shape:  # float rounding in scipy's output shape: never expected, but be exact
        out = out[tuple(slice(0, s) for s in shape)]
        out = np.pad(out, [(0, s - o) for s, o in zip(shape, out.shape)], mode="edge")
    return out


def resample_volume(arr: np.ndarray, shape: Sequence[int], order: int, axis: int | None) -> np.ndarray:
    """Resample a (Z, Y, X) float array to ``shape``: ``order`` on every axis, except ``axis`` (if not None),
    which is resampled separately with nearest neighbour."""
    shape = [int(s) for s in shape]
    if list(arr.shape) == shape:
        return arr
    if axis is None or arr.shape[axis] == shape[axis]:
        return _zoom_axes(arr, shape, order)
    inner = list(shape)
    inner[axis] = arr.shape[axis]
    arr = _zoom_axes(arr, inner, order)
    return _zoom_axes(arr, shape, 0)


def resample_image(data: np.ndarray, shape: Sequence[int], axis: int | None = None, order: int = 3) -> np.ndarray:
    """(C, Z, Y, X) float32 -> (C, *shape) float32, spline ``order`` (thick ``axis`` nearest)."""
    if list(data.shape[1:]) == [int(s) for s in shape]:
        return data.astype(np.float32, copy=False)
    out = np.empty((data.shape[0], *[int(s) for s in shape]), dtype=np.float32)
    for c in range(data.shape[0]):
        out[c] = resample_volume(data[c].astype(np.float32, copy=False), shape, order, axis)
    return out


def resample_seg(seg: np.ndarray, shape: Sequence[int], axis: int | None = None) -> np.ndarray:
    """Label map (Z, Y, X) of class indices (may contain -1) -> ``shape``: each class's one-hot mask is resampled
    linearly (thick ``axis`` nearest) and every voxel takes the class with the largest value (argmax), so a
    structure thinner than the new voxel survives where it dominates locally."""
    shape = [int(s) for s in shape]
    if list(seg.shape) == shape:
        return seg
    classes = np.unique(seg)
    if len(classes) == 1:
        return np.full(shape, classes[0], dtype=seg.dtype)
    best = np.full(shape, -1.0, dtype=np.float32)
    out = np.empty(shape, dtype=seg.dtype)
    for c in classes:
        prob = resample_volume((seg == c).astype(np.float32), shape, 1, axis)
        better = prob > best
        best[better] = prob[better]
        out[better] = c
    return out


def resample_probabilities(prob: np.ndarray, shape: Sequence[int], axis: int | None = None) -> np.ndarray:
    """(K, Z, Y, X) probabilities -> (K, *shape), linear (thick ``axis`` nearest)."""
    if list(prob.shape[1:]) == [int(s) for s in shape]:
        return prob
    dtype = prob.dtype if np.issubdtype(prob.dtype, np.floating) else np.float32
    out = np.empty((prob.shape[0], *[int(s) for s in shape]), dtype=dtype)
    for k in range(prob.shape[0]):
        out[k] = resample_volume(prob[k].astype(dtype, copy=False), shape, 1, axis)
    return out
