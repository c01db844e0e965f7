"""Surfaces, surface distances, boundary regions and skeletons of binary masks (the geometry behind the metrics).

Every function works on masks already cropped to a box that holds both masks plus a one-voxel margin (clipped
to the image; see :mod:`salseg.evaluate.metrics`), which is exact for everything here: surfaces see the same
neighbours (outside the image counts as background), the nearest surface voxel of a mask always lies in the box,
and skeletons are computed on the box padded with background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


def surface(mask: np.ndarray) -> np.ndarray:
    """medpy's surface (= Metrics Reloaded's border map): ``mask XOR erosion(mask)`` with connectivity 1 and
    background outside the array."""
    footprint = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)


def feature_transform(target: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Index of the nearest True voxel of ``target`` for every voxel (scipy's feature transform, in mm)."""
    return ndimage.distance_transform_edt(~target, sampling=spacing, return_distances=False, return_indices=True)


def distances_at(ft: np.ndarray, points: np.ndarray | tuple, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from each True voxel of ``points`` (C order; or a tuple of index arrays) to the voxel the
    feature transform ``ft`` names: the same arithmetic as ``distance_transform_edt(~target, sampling)[points]``,
    evaluated at ``points`` only."""
    idx = np.nonzero(points) if isinstance(points, np.ndarray) else points
    diff = (ft[(slice(None),) + tuple(idx)] - np.stack(idx)).astype(np.float64)
    diff *= spacing[:, None]
    np.multiply(diff, diff, diff)
    return np.sqrt(np.add.reduce(diff, axis=0))


def distances_to(target: np.ndarray, points: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from each True voxel of ``points`` to the nearest True voxel of ``target``."""
    return distances_at(feature_transform(target, spacing), points, spacing)


def nearest_distances(points: np.ndarray, targets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from each voxel index in ``points`` (N, ndim) to the nearest voxel index in ``targets``
    (M, ndim): the nearest one is found with a k-d tree on the physical coordinates, the distance is then computed
    from the integer index difference scaled by the spacing (the arithmetic of scipy's distance transform, so the
    values equal ``distance_transform_edt(~target, sampling)[points]`` and medpy's to the last bits)."""
    tree = cKDTree(targets * spacing, balanced_tree=False, compact_nodes=False)
    _, nearest = tree.query(points * spacing, k=1)
    diff = (targets[nearest] - points).astype(np.float64)
    diff *= spacing
    np.multiply(diff, diff, diff)
    return np.sqrt(np.add.reduce(diff, axis=1))


class SurfacePair:
    """Surfaces of two non-empty masks of one box and the directed surface distances, computed once and shared by
    every distance metric (HD, HD95, HD95_MR, ASSD, MASD, NSD, boundary IoU).

    The nearest surface voxel is found with a k-d tree over the surface voxels (about twice as fast as a feature
    transform of the box on organ-sized masks); boundary IoU, which needs the distance of every mask voxel to its
    own surface, uses the feature transform of the box.
    """

    def __init__(self, pred: np.ndarray, ref: np.ndarray, spacing: np.ndarray):
        self.pred, self.ref, self.spacing = pred, ref, spacing
        self.s_pred, self.s_ref = surface(pred), surface(ref)
        pts_pred, pts_ref = np.argwhere(self.s_pred), np.argwhere(self.s_ref)
        self.d_pred = nearest_distances(pts_pred, pts_ref, spacing)   # prediction surface -> reference surface
        self.d_ref = nearest_distances(pts_ref, pts_pred, spacing)    # reference surface -> prediction surface

    def boundary_region(self, which: str, width: float) -> np.ndarray:
        """Voxels of the mask closer than ``width`` mm to its own surface (the surface itself included)."""
        mask, surf = (self.pred, self.s_pred) if which == "pred" else (self.ref, self.s_ref)
        ft = feature_transform(surf, self.spacing)
        idx = np.nonzero(mask)
        keep = distances_at(ft, idx, self.spacing) < width
        region = np.zeros(mask.shape, bool)
        region[tuple(i[keep] for i in idx)] = True
        return region

    def boundary_iou(self, width: float) -> float:
        bp, br = self.boundary_region("pred", width), self.boundary_region("ref", width)
        union = int(np.count_nonzero(bp | br))
        return int(np.count_nonzero(bp & br)) / union if union else float("nan")


def skeleton(mask: np.ndarray) -> np.ndarray:
    """``skimage.morphology.skeletonize`` of a boolean mask, computed with one voxel of background around it (so a
    mask cropped to its box has the skeleton it has in the whole image)."""
    from skimage.morphology import skeletonize

    padded = np.pad(mask, 1)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    return np.asarray(skeletonize(padded), dtype=bool)[inner]


def cl_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Centreline Dice of two non-empty boolean masks (0 when a skeleton is empty or nothing overlaps)."""
    sk_p, sk_r = skeleton(pred), skeleton(ref)
    n_p, n_r = int(np.count_nonzero(sk_p)), int(np.count_nonzero(sk_r))
    if n_p == 0 or n_r == 0:
        return 0.0
    t_prec = np.count_nonzero(sk_p & ref) / n_p
    t_sens = np.count_nonzero(sk_r & pred) / n_r
    return 2 * t_prec * t_sens / (t_prec + t_sens) if (t_prec + t_sens) else 0.0
