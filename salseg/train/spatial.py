"""The CPU path's spatial transform (rotation and scaling), reading from the case only the voxels it needs.

The sampler chooses a window per sample and the enlarged initial crop around it (salseg.train.data,
``PatchSampler.windows``); :func:`augment_windows` produces what batchgenerators' ``augment_spatial`` (no elastic
deformation, no random crop) would produce from that enlarged crop, without materialising it:

- the random draws are batchgenerators' own, in its order, from numpy's global state (rotation flag, one angle per
  axis, scale flag, the two-sided scale draw), and its coordinate helpers build the sampling grid;
- a sample that is neither rotated nor scaled is the centre of the enlarged crop: the window itself, cropped from
  the case (zero / -1 outside it), bit-identical;
- a rotated or scaled sample reads only the bounding box of its sampling coordinates, widened by ``MARGIN`` voxels
  and clipped to the enlarged crop and to ``MARGIN`` voxels of padding around the case; the cubic spline of the data (``order 3``) is fitted on that box instead of on
  the whole crop. The spline's prefilter is a recursive filter whose boundary influence decays as 0.268^n over n
  voxels, so a margin of 16 voxels changes values by less than 1e-9 of the data range; labels (``order 0``) are
  identical. tests/train/test_spatial.py compares both with batchgenerators on the enlarged crop.

In 3D the enlarged crop of a rotated and zoomed-out patch is several times the patch (and often larger than the
case, mostly padding); a sample that is not transformed (two in three with nnU-Net's probabilities) never needed it.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from batchgenerators.augmentations.utils import (create_zero_centered_coordinate_mesh, interpolate_img,
                                                 rotate_coords_2d, rotate_coords_3d, scale_coords)

from salseg.train.data import Window, crop_pad

MARGIN = 16   # voxels of image around the sampling coordinates that the cubic spline is fitted on


@functools.lru_cache(maxsize=4)
def _mesh(patch: tuple[int, ...]) -> np.ndarray:
    """batchgenerators' zero-centred coordinate mesh of the patch (built once per patch size: in 3D building it
    costs half as much as the cubic interpolation it feeds); callers copy it."""
    mesh = create_zero_centered_coordinate_mesh(patch)
    mesh.flags.writeable = False
    return mesh


def draw(dim: int, angles: Sequence[tuple[float, float]], p_rot: float, scale: tuple[float, float],
         p_scale: float) -> tuple[list[float] | None, float | None]:
    """batchgenerators' draws for one sample, in its order: (angles or None, scale factor or None)."""
    rot = None   # batchgenerators draws its per-axis probability (1 here) before each angle: kept for its sequence
    if np.random.uniform() < p_rot:
        rot = [np.random.uniform(*angles[0]) if np.random.uniform() <= 1 else 0.0]
        if dim == 3:
            rot += [np.random.uniform(*angles[i]) if np.random.uniform() <= 1 else 0.0 for i in (1, 2)]
    sc = None
    if np.random.uniform() < p_scale:
        if np.random.random() < 0.5 and scale[0] < 1:
            sc = np.random.uniform(scale[0], 1)
        else:
            sc = np.random.uniform(max(scale[0], 1), scale[1])
    return rot, sc


def transform_window(w: Window, patch: Sequence[int], rot, sc) -> tuple[np.ndarray, np.ndarray]:
    """(data (C', *patch) float32, seg (*patch) float32, -1 outside) of one window."""
    patch = [int(p) for p in patch]
    dim = len(patch)
    if rot is None and sc is None:
        start = [s + (c - p) // 2 for s, c, p in zip(w.start, w.size, patch)]
        return (crop_pad(w.data, start, patch, 0.0).astype(np.float32, copy=False),
                crop_pad(w.seg, start, patch, -1).astype(np.float32))
    coords = _mesh(tuple(patch)).copy()
    if rot is not None:
        coords = rotate_coords_3d(coords, *rot) if dim == 3 else rotate_coords_2d(coords, rot[0])
    if sc is not None:
        coords = scale_coords(coords, sc)
    lo, hi = [], []
    for d in range(dim):
        coords[d] += w.size[d] / 2.0 - 0.5          # batchgenerators' centre of the enlarged crop
        # the coordinates' box + MARGIN, within the enlarged crop and within MARGIN of the case (beyond: padding)
        n = w.seg.shape[d]
        lo.append(max(int(np.floor(coords[d].min())) - MARGIN, 0, -w.start[d] - MARGIN))
        hi.append(min(int(np.ceil(coords[d].max())) + MARGIN + 1, w.size[d], n - w.start[d] + MARGIN))
        coords[d] -= lo[d]
    size = [max(h - l, 1) for l, h in zip(lo, hi)]
    start = [s + l for s, l in zip(w.start, lo)]
    data = crop_pad(w.data, start, size, 0.0)
    seg = crop_pad(w.seg, start, size, -1).astype(np.float32)
    out = np.empty((data.shape[0], *patch), np.float32)
    for c in range(data.shape[0]):
        out[c] = interpolate_img(data[c], coords, 3, "constant", cval=0)
    return out, interpolate_img(seg, coords, 0, "constant", cval=-1, is_seg=True)


def augment_windows(windows: Sequence[Window], patch: Sequence[int], angles, p_rot: float,
                    scale: tuple[float, float], p_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The batch (data (B, C', *patch), seg (B, 1, *patch)) of ``windows``, rotated / scaled as batchgenerators
    would from their enlarged crops."""
    data, seg = [], []
    for w in windows:
        rot, sc = draw(len(patch), angles, p_rot, scale, p_scale)
        d, s = transform_window(w, patch, rot, sc)
        data.append(d)
        seg.append(s[None])
    return np.stack(data), np.stack(seg)
