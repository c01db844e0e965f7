"""Crop to the nonzero region (nnU-Net): the bounding box of voxels where any channel is nonzero."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_fill_holes

Bbox = list[list[int]]   # [[z0, z1], [y0, y1], [x0, x1]], half-open


def nonzero_bbox(data: np.ndarray) -> Bbox:
    """Half-open bounding box of voxels where any channel of ``data`` (C, Z, Y, X) is nonzero.

    An all-zero image keeps its full extent. (Filling holes, as nnU-Net does, never changes the box.)
    """
    mask = np.any(data != 0, axis=0)
    bbox = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return [[0, int(s)] for s in mask.shape]
        bbox.append([int(hit[0]), int(hit[-1]) + 1])
    return bbox


def bbox_slices(bbox: Bbox) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in bbox)


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Voxels where any channel is nonzero, holes filled (nnU-Net's mask for mask-aware normalisation)."""
    mask = np.any(data != 0, axis=0)
    return binary_fill_holes(mask) if mask.ndim and mask.any() else mask


def crop_to_nonzero(data: np.ndarray, seg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, Bbox]:
    """(data cropped, seg cropped or None, bbox). ``data`` is (C, Z, Y, X); ``seg`` (Z, Y, X)."""
    bbox = nonzero_bbox(data)
    sl = bbox_slices(bbox)
    data = data[(slice(None),) + sl]
    if seg is not None:
        seg = seg[sl]
    return data, seg, bbox


def uncrop(arr: np.ndarray, bbox: Bbox, shape, fill_first: float = 1.0) -> np.ndarray:
    """Place (K, z, y, x) ``arr`` at ``bbox`` in a (K, *shape) array: zeros outside, channel 0 = ``fill_first``."""
    out = np.zeros((arr.shape[0], *[int(s) for s in shape]), dtype=arr.dtype)
    if arr.shape[0]:
        out[0] = fill_first
    out[(slice(None),) + bbox_slices(bbox)] = arr
    return out
